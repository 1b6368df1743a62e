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
