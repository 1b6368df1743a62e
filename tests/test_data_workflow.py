"""The data stage run by Snakemake: the demo, config validation, no network, the real photos."""

import csv
import hashlib
import json
import os
import re
import shutil
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from conftest import REPO, make_class_images, run_snakemake, tree_digest

from smallcnn import near_duplicates

SPLITS = ("train", "validation", "test")


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def load_count(directory):
    """Images of a split folder, every one decoded through image_dataset_from_directory."""
    dataset = keras.utils.image_dataset_from_directory(
        directory, image_size=(32, 32), batch_size=128, shuffle=False
    )
    return sum(int(batch.shape[0]) for batch, _ in dataset)


def assert_split(workdir, counts):
    """splits.csv and the folders agree, have counts[split] per class and share no content."""
    rows = read_csv(workdir / "results" / "data" / "splits.csv")
    per = Counter((row["split"], row["label"]) for row in rows)
    labels = sorted({row["label"] for row in rows})
    assert per == Counter({(s, label): counts[s] for s in SPLITS for label in labels})
    by_sha = Counter(row["sha256"] for row in rows)
    assert max(by_sha.values()) == 1
    for split in SPLITS:
        folder = workdir / "results" / "data" / split
        # Snakemake leaves a .snakemake_timestamp file in directory outputs; Keras ignores it.
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == labels
        assert load_count(folder) == counts[split] * len(labels)
    return rows


@pytest.mark.slow
def test_data_stage_of_the_demo(tmp_path):
    counts = {"train": 6, "validation": 2, "test": 2}
    run_snakemake(
        tmp_path,
        ["results/data/splits.csv"],
        configfiles=[REPO / "config" / "demo.yaml"],
        config={"split": counts},
    )
    assert_split(tmp_path, counts)
    summary = json.loads((tmp_path / "results" / "data" / "rejections.json").read_text())
    assert {"empty", "truncated", "corrupt", "junk", "duplicate"} <= set(summary["by_reason"])
    log = (tmp_path / "logs" / "prepare.log").read_text()
    assert "rejected truncated" in log and "usable" in log
    assert (tmp_path / "benchmarks" / "prepare.tsv").exists()


def planned(workdir, config, target="results/data/splits.csv"):
    """The rules a dry run plans for `target`."""
    result = run_snakemake(workdir, [target], config=config, args=["--dry-run"])
    return set(re.findall(r"^(?:local)?rule (\w+):", result.stdout, re.MULTILINE))


@pytest.mark.slow
def test_a_local_folder_reruns_the_data_stage_exactly_when_its_files_change(tmp_path):
    photos = tmp_path / "photos"
    make_class_images(photos, per_class=6, size=(40, 40))
    before = tree_digest(photos)
    counts = {"train": 3, "validation": 1, "test": 1}
    config = {"data": {"source": "local", "path": str(photos)}, "split": counts}
    work = tmp_path / "work"
    run_snakemake(work, ["results/data/splits.csv"], config=config)
    rows = assert_split(work, counts)
    assert tree_digest(photos) == before
    for row in rows:
        placed = work / "results" / "data" / row["split"] / row["path"]
        assert not placed.samefile(photos / row["file"])
        assert hashlib.sha256(placed.read_bytes()).hexdigest() == row["sha256"]

    assert planned(work, config) == set()
    for folder in (photos, photos / "cat"):
        os.utime(folder)
    assert planned(work, config) == set(), "touching the folders planned a rerun"

    data_stage = {"prepare", "split"}
    kept = tmp_path / "kept.jpg"
    changes = [
        ("added", lambda: shutil.copy2(photos / "cat" / "0.jpg", photos / "cat" / "new.jpg")),
        ("removed", lambda: (photos / "cat" / "new.jpg").unlink()),  # back as it was run
        ("removed", lambda: (photos / "dog" / "0.jpg").rename(kept)),
        ("renamed", lambda: kept.rename(photos / "dog" / "renamed.jpg")),
        ("rewritten", lambda: (photos / "cat" / "1.jpg").write_bytes(b"not a photo any more")),
    ]
    expected = [data_stage, set(), data_stage, data_stage, data_stage]
    for (what, change), plan in zip(changes, expected, strict=True):
        change()
        assert planned(work, config) == plan, f"after a file was {what}"


@pytest.mark.slow
def test_content_fingerprint_reruns_the_data_stage_on_a_same_size_rewrite(tmp_path):
    """What `metadata` misses (test_fingerprint shows it): the same size, the mtime set back."""
    photos = tmp_path / "photos"
    make_class_images(photos, per_class=5, size=(40, 40))
    config = {
        "data": {"source": "local", "path": str(photos), "fingerprint": "content"},
        "split": {"train": 3, "validation": 1, "test": 1},
    }
    work = tmp_path / "work"
    run_snakemake(work, ["results/data/splits.csv"], config=config)
    cache = json.loads((work / ".snakemake" / "smallcnn" / "source-sums.json").read_text())
    assert list(cache["sources"]) == [str(photos.resolve())]
    path = photos / "dog" / "3.jpg"
    stat = path.stat()
    path.write_bytes(bytes(255 - b for b in path.read_bytes()))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert planned(work, config) == {"prepare", "split"}


@pytest.mark.slow
@pytest.mark.parametrize("change", [{"max_distance": 4}, {"enabled": False}])
def test_changing_the_near_duplicate_check_reruns_the_data_stage(tmp_path, change):
    make_class_images(tmp_path / "photos", per_class=5, size=(40, 40))
    config = {
        "data": {"source": "local", "path": str(tmp_path / "photos")},
        "split": {"train": 3, "validation": 1, "test": 1},
    }
    run_snakemake(tmp_path / "work", ["results/data/splits.csv"], config=config)
    config["data"]["near_duplicates"] = change
    result = run_snakemake(
        tmp_path / "work", ["results/data/splits.csv"], config=config, args=["-n"]
    )
    planned = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("rule ")]
    assert planned == ["prepare:", "split:"]


def test_a_misspelt_split_key_fails_validation_naming_it(tmp_path):
    result = run_snakemake(
        tmp_path,
        ["results/data/splits.csv"],
        config={"split": {"valdation": 5}},
        args=["-n"],
        check=False,
    )
    assert result.returncode != 0
    assert "valdation" in result.stdout + result.stderr


def test_a_refused_data_url_is_quoted_without_its_credentials(tmp_path):
    url = "ftp://user:SECRET@host/x.zip?token=SECRET"
    result = run_snakemake(
        tmp_path,
        ["results/data/splits.csv"],
        config={"data": {"url": url}},
        args=["-n"],
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'ftp://***@host/x.zip?***' does not match" in output and "SECRET" not in output


@pytest.mark.parametrize(
    ("split", "says"),
    [
        # A mix: neither all counts nor all fractions.
        ({"train": 0.7, "validation": 500, "test": 0.15}, "is not valid under any of the given"),
        ({"train": 0.7, "validation": 0.2, "test": 0.2}, "the fractions add up to 1.1"),
        ({"train": 0.7, "validation": 0.15, "test": 0.15, "max_per_class": 0}, "max_per_class"),
        # More per class than the cap lets any class have: train used to get the rest.
        (
            {"train": 3, "validation": 2, "test": 2, "max_per_class": 4},
            "raise split.max_per_class to at least 7",
        ),
    ],
)
def test_bad_split_fractions_stop_the_run_naming_the_key(tmp_path, split, says):
    result = run_snakemake(
        tmp_path, ["results/data/splits.csv"], config={"split": split}, args=["-n"], check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert says in output and "split" in output


def test_fractions_pass_validation_and_size_the_demo(tmp_path):
    split = {"train": 0.7, "validation": 0.15, "test": 0.15, "max_per_class": 40}
    run_snakemake(
        tmp_path,
        ["resources/demo"],
        configfiles=[REPO / "config" / "demo.yaml"],
        config={"split": split},
    )
    demo = tmp_path / "resources" / "demo"
    made = Counter(p.parent.name for p in demo.glob("*/*-[0-9][0-9][0-9][0-9].jpg"))
    assert made == {"horizontal": 40, "vertical": 40}


@pytest.mark.slow
def test_no_network_ends_the_download_job_with_one_line(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {"data": {"source": "url", "url": f"http://127.0.0.1:{port}/cats.zip"}}
    result = run_snakemake(tmp_path, ["results/data/splits.csv"], config=config, check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs" / "download" / "url.log").read_text()
    assert "error: cannot reach 127.0.0.1" in log and "data.source: local" in log
    assert "Traceback" not in log
    assert not (tmp_path / "resources" / "downloads" / "url.zip").exists()


@pytest.mark.slow
def test_the_real_photos_split_by_fraction_has_no_near_duplicate_across_splits(
    tmp_path, shared_data
):
    split = {"train": 0.5, "validation": 0.25, "test": 0.25}
    config = {"data": {"source": "local", "path": str(shared_data)}, "split": split}
    run_snakemake(tmp_path, ["results/data/splits.csv"], config=config)
    manifest = {row["file"]: row for row in read_csv(tmp_path / "results/data/manifest.csv")}
    # The same kittens twice, with different bytes: one is kept.
    pair = [manifest[f"train/cat.{n}.jpg"] for n in (4126, 4575)]
    assert sorted(row["status"] for row in pair) == ["near_duplicate", "ok"]
    rows = read_csv(tmp_path / "results" / "data" / "splits.csv")
    per_class = Counter(row["label"] for row in manifest.values() if row["status"] == "ok")
    assert sum(per_class.values()) == len(rows) > 3990
    for label, n in per_class.items():
        assert assert_fraction_split(rows, label, n, split)
    hashes = np.array([int(manifest[row["file"]]["phash"], 16) for row in rows], dtype=np.uint64)
    first, second, _ = near_duplicates.close_pairs(hashes, config_max_distance())
    assert [(rows[i]["file"], rows[j]["file"]) for i, j in zip(first, second, strict=True)] == []


def assert_fraction_split(rows, label, n, fractions):
    found = Counter(row["split"] for row in rows if row["label"] == label)
    return sum(found.values()) == n and all(
        abs(found[name] - n * fraction) < 1 for name, fraction in fractions.items()
    )


def config_max_distance():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return config["data"]["near_duplicates"]["max_distance"]


@pytest.mark.slow
def test_a_url_source_pins_its_sum_in_place_and_never_shows_its_credentials(tmp_path):
    make_class_images(tmp_path / "photos", per_class=5, size=(40, 40))
    archive = shutil.make_archive(tmp_path / "photos", "zip", tmp_path / "photos")
    url = f"file://user:secret@{archive}?token=secret"
    counts = {"train": 3, "validation": 1, "test": 1}
    config = {"data": {"source": "url", "url": url}, "split": counts}
    work = tmp_path / "work"
    run_snakemake(work, ["results/data/splits.csv"], config=config)
    downloaded = work / "resources" / "downloads" / "url.zip"
    record = json.loads((work / "resources" / "downloads" / "url.json").read_text())
    assert record["url"] == f"file://***@{archive}?***"
    log = work / "logs" / "download" / "url.log"
    recorded = [log, *(work / ".snakemake" / "metadata").iterdir()]
    assert all("secret" not in path.read_text() for path in recorded)

    # The right sum, a new token and another source's key: no download, nothing rerun.
    def unchanged():
        return downloaded.stat().st_ino, downloaded.stat().st_mtime_ns, log.read_text()

    before = unchanged()
    config["data"].update(sha256=record["sha256"].upper(), kaggle_competition="other")
    config["data"]["url"] = url.replace("token=secret", "token=renewed")
    assert planned(work, config) == set()
    run_snakemake(work, ["results/data/splits.csv"], config=config)
    assert unchanged() == before

    config["data"]["sha256"] = "0" * 64
    result = run_snakemake(work, ["results/data/splits.csv"], config=config, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"data.sha256 is {'0' * 64}" in output and f"has sha256 {record['sha256']}" in output
    assert unchanged() == before


class Answers(BaseHTTPRequestHandler):
    """A zip at any path, except /refuse*: a 502 whose reason phrase carries credentials, as a
    proxy's error can (the download's error message quotes the reason)."""

    protocol_version = "HTTP/1.1"
    REASON = (
        "Bad Gateway from //proxy:SECRET@10.0.0.1 with Authorization: Bearer SECRET, "
        'KAGGLE_KEY=SECRET and {"key": "SECRET"}'
    )

    def do_GET(self):
        self.server.paths.append(self.path)
        if self.path.startswith("/refuse"):
            self.send_response(502, self.REASON)
            body = b""
        else:
            self.send_response(200)
            body = self.server.archive
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def answers(tmp_path):
    make_class_images(tmp_path / "photos", per_class=5, size=(40, 40))
    archive = shutil.make_archive(tmp_path / "photos", "zip", tmp_path / "photos")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    server.daemon_threads = True
    server.archive, server.paths = Path(archive).read_bytes(), []
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def files_holding(root, secret, but=()):
    return [
        path.relative_to(root).as_posix()
        for path in sorted(Path(root).rglob("*"))
        if path.is_file() and path.name not in but and secret.encode() in path.read_bytes()
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unparseable", "refused", "downloaded"])
def test_no_secret_of_a_data_url_reaches_logs_results_or_metadata(tmp_path, answers, case):
    """The audit's gaps, each through the real download rule: a URL requests cannot parse
    (its error quotes it whole), a non-breaking space in the userinfo, path parameters, a raw
    space before the query; and an answer whose text carries credentials. The whole working
    directory is searched: logs/, resources/, .snakemake/ (metadata and Snakemake's own log).
    The jobs after the download see only the archive's path (test_a_url_source_pins_...)."""
    port = answers.server_address[1]
    url, target = {
        "unparseable": (
            "https://user:SECRET@127.0.0.1:99999/a.zip?token=SECRET",
            "resources/downloads/url.zip",
        ),
        "refused": (
            f"http://us\u00a0er:SECRET@127.0.0.1:{port}/refuse.zip;sig=SECRET?token=SECRET",
            "resources/downloads/url.zip",
        ),
        "downloaded": (
            f"http://user:SECRET@127.0.0.1:{port}/a b.zip;sig=SECRET?t=SECRET",
            "resources/downloads/url.zip",
        ),
    }[case]
    config = {
        "data": {"source": "url", "url": url},
        "split": {"train": 3, "validation": 1, "test": 1},
    }
    work = tmp_path / "work"
    result = run_snakemake(work, [target], config=config, check=False)
    terminal = result.stdout + result.stderr
    assert (result.returncode == 0) == (case == "downloaded"), terminal
    assert "SECRET" not in terminal
    assert files_holding(work, "SECRET", but={"test-config.yaml"}) == []
    log = (work / "logs" / "download" / "url.log").read_text()
    if case == "unparseable":
        assert "error: cannot download https://***@127.0.0.1:99999/a.zip?***" in log
    elif case == "refused":
        assert answers.paths == ["/refuse.zip;sig=SECRET?token=SECRET"]
        assert "answered 502 Bad Gateway from //***@10.0.0.1 with Authorization: Bearer ***" in log
        assert "error: 127.0.0.1 answered 502" in terminal
    else:
        assert answers.paths == ["/a%20b.zip;sig=SECRET?t=SECRET"]
        record = json.loads((work / "resources" / "downloads" / "url.json").read_text())
        assert record["url"] == f"http://***@127.0.0.1:{port}/a b.zip;***?***"
