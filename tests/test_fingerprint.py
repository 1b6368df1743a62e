"""The source fingerprint: what changes it, what does not, and how long it takes."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
from conftest import REPO, make_class_images

from smallcnn import fingerprint
from smallcnn.fingerprint import source_fingerprint
from smallcnn.layouts import walk_files


def test_a_folder_fingerprint_changes_with_its_files_not_with_the_folder(tmp_path):
    source = tmp_path / "photos"
    make_class_images(source, per_class=3, size=(32, 32))
    first = source_fingerprint(source)
    assert len(first) == 16 and first == source_fingerprint(source)

    for folder in (source, source / "cat"):
        os.utime(folder, ns=(1, 1))
    assert source_fingerprint(source) == first, "touching a folder changed it"

    changes = {
        "added": lambda: (source / "cat" / "new.jpg").write_bytes(b"x"),
        "removed": lambda: (source / "dog" / "0.jpg").unlink(),
        "renamed": lambda: (source / "cat" / "1.jpg").rename(source / "cat" / "9.jpg"),
        "rewritten": lambda: (source / "dog" / "1.jpg").write_bytes(b"other bytes"),
    }
    seen = {first}
    for what, change in changes.items():
        change()
        now = source_fingerprint(source)
        assert now not in seen, f"a {what} file left the fingerprint unchanged"
        seen.add(now)


def test_a_file_rewritten_with_the_same_size_changes_it_by_its_mtime(tmp_path):
    source = tmp_path / "photos"
    (path,) = make_class_images(source, classes=("cat",), per_class=1)
    stat = path.stat()
    before = source_fingerprint(source)
    path.write_bytes(bytes(stat.st_size))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert source_fingerprint(source) != before


def test_a_file_rewritten_to_another_size_with_its_mtime_restored_changes_it(tmp_path):
    """A tool that keeps timestamps (rsync -t, cp -p, a zip extracted again) can rewrite a file
    and leave its mtime as it was: the size is then all that tells the fingerprint."""
    source = tmp_path / "photos"
    (path,) = make_class_images(source, classes=("cat",), per_class=1)
    stat = path.stat()
    before = source_fingerprint(source)
    path.write_bytes(bytes(stat.st_size + 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert source_fingerprint(source) != before


def test_files_in_a_linked_class_folder_count(tmp_path):
    elsewhere = tmp_path / "disk2"
    make_class_images(elsewhere, classes=("dog",), per_class=2)
    source = tmp_path / "photos"
    make_class_images(source, classes=("cat",), per_class=2)
    (source / "dog").symlink_to(elsewhere / "dog", target_is_directory=True)
    before = source_fingerprint(source)
    # Rewritten in place: the linked folder's own mtime stays as it was.
    (elsewhere / "dog" / "0.jpg").write_bytes(b"x")
    assert source_fingerprint(source) != before


def test_a_zip_fingerprint_follows_its_members_not_the_file(tmp_path):
    source = tmp_path / "photos"
    make_class_images(source, per_class=2, size=(32, 32))

    def write(path, skip=()):
        with zipfile.ZipFile(path, "w") as archive:
            for file in sorted(source.rglob("*.jpg")):
                if file.name not in skip:
                    archive.write(file, file.relative_to(source).as_posix())
        return path

    archive = write(tmp_path / "a.zip")
    first = source_fingerprint(archive)
    os.utime(archive, ns=(1, 1))
    copy = shutil.copy(archive, tmp_path / "copy.zip")
    assert source_fingerprint(archive) == source_fingerprint(copy) == first
    assert source_fingerprint(write(tmp_path / "fewer.zip", skip={"0.jpg"})) != first


@pytest.mark.slow  # creating the files takes 2-30 s, with the disk shared
def test_25000_files_take_under_two_seconds(tmp_path):
    for k in range(5):
        folder = tmp_path / f"class{k}"
        folder.mkdir()
        for i in range(5000):
            (folder / f"{i}.jpg").touch()
    started = time.perf_counter()
    source_fingerprint(tmp_path)
    assert time.perf_counter() - started < 2.0


# ---- data.fingerprint: content -------------------------------------------------------------


def rewrite_keeping_size_and_mtime(path):
    """What `metadata` cannot see: other bytes of the same length, the mtime set back."""
    stat = path.stat()
    data = path.read_bytes()
    path.write_bytes(bytes(255 - b for b in data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_content_sees_a_same_size_rewrite_with_its_mtime_set_back(tmp_path):
    source = tmp_path / "photos"
    make_class_images(source, per_class=2, size=(32, 32))
    before = {mode: source_fingerprint(source, mode) for mode in ("metadata", "content")}
    rewrite_keeping_size_and_mtime(source / "cat" / "1.jpg")
    assert source_fingerprint(source, "metadata") == before["metadata"]
    assert source_fingerprint(source, "content") != before["content"]


def test_content_ignores_a_touch(tmp_path):
    source = tmp_path / "photos"
    make_class_images(source, per_class=2, size=(32, 32))
    before = {mode: source_fingerprint(source, mode) for mode in ("metadata", "content")}
    os.utime(source / "dog" / "0.jpg", ns=(1, 1))
    assert source_fingerprint(source, "metadata") != before["metadata"]
    assert source_fingerprint(source, "content") == before["content"]


def settled(monkeypatch):
    """Files written by the test count as settled (not rewritable within one timestamp tick)."""
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0)


def test_an_unchanged_file_is_not_read_again_and_a_new_ctime_reads_it(tmp_path, monkeypatch):
    settled(monkeypatch)
    source, cache = tmp_path / "photos", tmp_path / "state" / "sums.json"
    make_class_images(source, per_class=2, size=(32, 32))
    first = source_fingerprint(source, "content", cache)
    assert source_fingerprint(source, "content") == first
    stored = json.loads(cache.read_text())
    (entry,) = stored["sources"].values()
    assert sorted(entry["files"]) == ["cat/0.jpg", "cat/1.jpg", "dog/0.jpg", "dog/1.jpg"]
    path = source / "cat" / "0.jpg"
    assert entry["files"]["cat/0.jpg"][4] == hashlib.sha256(path.read_bytes()).hexdigest()

    # A sum the cache holds is used as it is: the file was not read.
    entry["files"]["cat/0.jpg"][4] = "0" * 64
    cache.write_text(json.dumps(stored))
    assert source_fingerprint(source, "content", cache) != first
    # Setting the mtime to what it was moves the ctime: the file is read again.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert source_fingerprint(source, "content", cache) == first


def test_a_file_changed_just_before_it_is_read_is_not_cached(tmp_path):
    source, cache = tmp_path / "photos", tmp_path / "sums.json"
    make_class_images(source, per_class=1, size=(32, 32))
    source_fingerprint(source, "content", cache)
    (entry,) = json.loads(cache.read_text())["sources"].values()
    assert entry["files"] == {}


def test_a_zip_member_patched_under_its_directory_entry_changes_content_only(tmp_path):
    """The central directory's CRC list is what the archive claims, not its bytes: a member
    overwritten in place keeps it. Content reads the members, as prepare does."""
    source = tmp_path / "photos"
    make_class_images(source, per_class=2, size=(32, 32))
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:
        for file in sorted(source.rglob("*.jpg")):
            handle.write(file, file.relative_to(source).as_posix())
    before = {mode: source_fingerprint(archive, mode) for mode in ("metadata", "content")}
    data = bytearray(archive.read_bytes())
    member = (source / "dog" / "1.jpg").read_bytes()
    start = data.index(member)
    data[start + 100 : start + 110] = bytes(10)
    archive.write_bytes(bytes(data))
    assert source_fingerprint(archive, "metadata") == before["metadata"]
    assert source_fingerprint(archive, "content") != before["content"]

    # The same members zipped again, with other dates and compression: the same content.
    again = tmp_path / "again.zip"
    with zipfile.ZipFile(again, "w", zipfile.ZIP_DEFLATED) as handle:
        for file in sorted(source.rglob("*.jpg")):
            info = zipfile.ZipInfo(file.relative_to(source).as_posix(), (2001, 2, 3, 4, 5, 6))
            handle.writestr(info, file.read_bytes())
    assert source_fingerprint(again, "content") == before["content"]
    assert source_fingerprint(again, "metadata") != before["metadata"]


def test_writers_that_read_the_cache_before_each_other_lose_nothing(tmp_path, monkeypatch):
    settled(monkeypatch)
    cache = tmp_path / "sums.json"
    sources = [tmp_path / name for name in ("a", "b")]
    for k, source in enumerate(sources):
        make_class_images(source, per_class=1, size=(32, 32), seed=k)
    # Both read the (empty) cache, then each writes: the second must keep the first's sums.
    first, second = (fingerprint.SumCache(cache, source) for source in sources)
    for sums, source in ((first, sources[0]), (second, sources[1])):
        for name, stat in walk_files(source):
            sums.sha256(name, source / name, stat, fingerprint.file_sha256)
    first.save()
    second.save()
    stored = json.loads(cache.read_text())["sources"]
    assert sorted(stored) == [str(source.resolve()) for source in sources]


WRITER = """
import os, sys
from pathlib import Path
from smallcnn import fingerprint
fingerprint.RACY_SECONDS = 0
touched = sorted(Path(sys.argv[1]).rglob("*.jpg"))[0]
for _ in range(int(sys.argv[3])):
    os.utime(touched)  # a new ctime: one sum to compute, and the cache to write again
    fingerprint.source_fingerprint(sys.argv[1], "content", sys.argv[2])
"""


def test_concurrent_jobs_never_see_a_partial_cache_and_keep_every_source(tmp_path):
    """Snakemake builds the DAG again in every cluster job: several processes read and write
    the cache at once."""
    cache = tmp_path / ".snakemake" / "sums.json"
    sources = [tmp_path / f"source{k}" for k in range(3)]
    for k, source in enumerate(sources):
        make_class_images(source, classes=("cat", "dog"), per_class=20, size=(16, 16), seed=k)
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(source), str(cache), "15"],
            cwd=REPO,
            stderr=subprocess.PIPE,
        )
        for source in sources
    ]
    reads = 0
    while any(writer.poll() is None for writer in writers):
        if cache.exists():
            cache_text = cache.read_text()
            assert json.loads(cache_text)["version"] == 1, "a reader saw a partial cache"
            reads += 1
    assert [writer.wait() for writer in writers] == [0, 0, 0], writers[0].stderr.read()
    assert reads > 0
    stored = json.loads(cache.read_text())["sources"]
    assert sorted(stored) == sorted(str(source.resolve()) for source in sources)
    assert all(len(entry["files"]) == 40 for entry in stored.values())
