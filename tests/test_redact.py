"""Credentials in URLs never reach what is shown or recorded."""

import pytest

from smallcnn.redact import redact, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://host/data/cats.zip", "https://host/data/cats.zip"),
        ("https://user:secret@host/p.zip", "https://***@host/p.zip"),
        # An unescaped @ in the password: the host is what follows the last one.
        ("https://user:se@cret@host/p.zip", "https://***@host/p.zip"),
        ("https://host:8443/p.zip?token=secret", "https://host:8443/p.zip?***"),
        (
            "https://user@host/p.zip?X-Amz-Signature=secret#k=secret",
            "https://***@host/p.zip?***#***",
        ),
        ("file:///data/cats.zip", "file:///data/cats.zip"),
        (None, None),
    ],
)
def test_redact_url_hides_userinfo_query_and_fragment_only(url, shown):
    assert redact_url(url) == shown


def test_redact_walks_a_config_and_urls_inside_text():
    config = {
        "data": {
            "url": "https://user:secret@host/p.zip?token=secret",
            "mirrors": ["s3://key:secret@bucket/p.zip", ("http://h/x?secret",)],
            "sha256": None,
            "min_side": 32,
        },
        "note": "fetched (https://user:secret@host/p.zip?token=secret), then checked.",
    }
    shown = redact(config)
    assert "secret" not in repr(shown)
    assert shown["data"]["url"] == "https://***@host/p.zip?***"
    assert shown["data"]["mirrors"] == ["s3://***@bucket/p.zip", ("http://h/x?***",)]
    assert (shown["data"]["sha256"], shown["data"]["min_side"]) == (None, 32)
    assert shown["note"] == "fetched (https://***@host/p.zip?***), then checked."
    assert config["data"]["url"].startswith("https://user:secret@"), "the input was modified"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://host/o.zip;sig=secret", "https://host/o.zip;***"),
        ("https://host/a;v=secret/b.zip?t=secret", "https://host/a;***/b.zip?***"),
        ("//user:secret@host/p.zip", "//***@host/p.zip"),
        ("http://us\u00a0er:secret@host/a.zip", "http://***@host/a.zip"),
    ],
)
def test_redact_url_hides_path_parameters_and_odd_userinfo(url, shown):
    assert redact_url(url) == shown


# Each line holds its secret as SECRET: the audit's gaps, and the forms a log line can take.
LINES = [
    "downloading http://user:pw@host/a b.zip?t=SECRET failed",
    "GET https://host/o.zip;sig=SECRET: 403",
    "Failed to parse: http://us\u00a0er:SECRET@host:99999/a.zip",
    "Failed to parse: http://us er:SECRET@host/a.zip",
    "redirected to //user:SECRET@mirror/a.zip",
    "Max retries exceeded with url: /a%20b.zip;sig=SECRET?t=SECRET (Caused by ...)",
    "Authorization: Bearer SECRET",
    "authorization=Basic SECRET",
    "headers: {'Authorization': 'Bearer SECRET', 'Accept': '*/*'}",
    "token rejected: Bearer SECRET.part2",
    "KAGGLE_KEY=SECRET kaggle competitions download",
    "env: KAGGLE_API_TOKEN='SECRET'",
    'kaggle.json: {"username": "me", "key": "SECRET"}',
    "{'api_key': 'SECRET'}",
]


@pytest.mark.parametrize("line", LINES)
def test_redact_hides_each_secret_a_log_line_can_carry(line):
    shown = redact(line)
    assert "SECRET" not in shown and "***" in shown


def test_redact_keeps_what_names_the_problem():
    assert redact("Authorization: Bearer SECRET") == "Authorization: Bearer ***"
    assert redact("Proxy-Authorization: SECRET") == "Proxy-Authorization: ***"
    assert redact('{"username": "me", "key": "SECRET"}') == '{"username": "me", "key": "***"}'
    assert redact("KAGGLE_KEY=SECRET now") == "KAGGLE_KEY=*** now"
    assert redact("see http://user:pw@host/a b.zip?t=SECRET.") == (
        "see http://***@host/a b.zip?***."
    )
    for line in [
        "prepare: 4,000 files, 3,998 usable (cat 1999, dog 1999) in 12.3 s",
        'File "/work/smallcnn/data.py", line 3, in <module>',
        "Epoch 3/30 - loss: 0.6931 - accuracy: 0.5000 - val_loss: 0.69",
        "error: class 'cat' has 4 usable images but the split asks for 5 (train 3 + test 2)",
        "see https://host/data/cats.zip; then run again",
        "x = a // b",
    ]:
        assert redact(line) == line


def test_a_config_with_a_raw_space_in_its_url_shows_no_secret():
    data = {"source": "url", "url": "http://user:pw@host/a b.zip?t=SECRET", "sha256": None}
    shown = redact(data)
    assert shown["url"] == "http://***@host/a b.zip?***"
    assert shown["sha256"] is None
