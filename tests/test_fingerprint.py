"""The source fingerprint: what changes it, what does not, and how long it takes."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, make_class_images

from smallcnn import fingerprint
from smallcnn.errors import UserError
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
def test_metadata_reads_no_files_content(tmp_path, monkeypatch):
    """What keeps a 25,000-photo folder fast (bench/fingerprint.py times it): metadata mode stats
    files and never opens one."""
    for k in range(3):
        folder = tmp_path / f"class{k}"
        folder.mkdir()
        for i in range(200):
            (folder / f"{i}.jpg").write_bytes(b"x" * i)
    before = source_fingerprint(tmp_path)

    def no_reading(*args, **kwargs):
        raise AssertionError(f"opened {args[0]!r}")

    monkeypatch.setattr("builtins.open", no_reading)
    monkeypatch.setattr("os.open", no_reading)
    assert source_fingerprint(tmp_path) == before


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


def test_a_mode_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(
        UserError, match="^data.fingerprint is 'sha'; write one of metadata, content$"
    ):
        source_fingerprint(tmp_path, "sha")


@pytest.mark.parametrize("mode", ["metadata", "content"])
def test_a_file_name_that_is_not_utf8_counts(tmp_path, mode):
    """A name in another encoding (Latin-1 here) reaches Python with surrogates in it."""
    source = tmp_path / "photos"
    (source / "cat").mkdir(parents=True)
    name = os.fsdecode(b"caf\xe9.jpg")
    (source / "cat" / name).write_bytes(b"one")
    first = source_fingerprint(source, mode)
    (source / "cat" / name).write_bytes(b"other bytes")
    assert source_fingerprint(source, mode) != first


@pytest.mark.parametrize("mode", ["metadata", "content"])
def test_a_missing_source_or_a_file_that_is_no_zip_has_a_fingerprint(tmp_path, mode):
    missing = source_fingerprint(tmp_path / "nowhere", mode)
    assert missing == source_fingerprint(tmp_path / "elsewhere", mode)
    (tmp_path / "empty").mkdir()
    assert missing != source_fingerprint(tmp_path / "empty", mode)
    # prepare says what is wrong with a file that is no zip; its fingerprint follows the file.
    broken = tmp_path / "photos.zip"
    broken.write_bytes(b"not a zip")
    first = source_fingerprint(broken, mode)
    broken.write_bytes(b"not a zip either")
    assert source_fingerprint(broken, mode) != first


def test_content_of_a_zip_follows_its_members_bytes(tmp_path):
    def archive(name, members):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as handle:
            for member, data in members.items():
                handle.writestr(zipfile.ZipInfo(member, (2001, 1, 1, 0, 0, 0)), data)
        return source_fingerprint(path, "content")

    first = archive("a.zip", {"cat/1.jpg": b"one", "dog/1.jpg": b"two"})
    assert archive("b.zip", {"cat/1.jpg": b"one", "dog/1.jpg": b"two"}) == first
    assert archive("c.zip", {"cat/1.jpg": b"one", "dog/1.jpg": b"TWO"}) != first
    assert archive("d.zip", {"cat/1.jpg": b"one", "dog/2.jpg": b"two"}) != first


def cache_file_state(cache):
    stat = cache.stat()
    return stat.st_ino, stat.st_mtime_ns, json.loads(cache.read_text())


def test_the_cache_is_made_where_asked_and_written_only_when_something_changed(
    tmp_path, monkeypatch
):
    settled(monkeypatch)
    source = tmp_path / "photos"
    make_class_images(source, per_class=2, size=(32, 32))
    # Folders that do not exist yet, as .snakemake/smallcnn in a fresh working directory.
    cache = tmp_path / "work" / ".snakemake" / "smallcnn" / "sums.json"
    first = source_fingerprint(source, "content", cache)
    before = cache_file_state(cache)
    reads = []
    real = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: reads.append(path) or real(path))
    for _ in range(2):
        assert source_fingerprint(source, "content", cache) == first
    assert reads == [] and cache_file_state(cache) == before
    # A file gone: nothing to read, yet the cache forgets it.
    (source / "dog" / "1.jpg").unlink()
    source_fingerprint(source, "content", cache)
    (entry,) = json.loads(cache.read_text())["sources"].values()
    assert sorted(entry["files"]) == ["cat/0.jpg", "cat/1.jpg", "dog/0.jpg"]
    assert reads == []


def test_a_zip_content_sum_is_cached_too(tmp_path, monkeypatch):
    settled(monkeypatch)
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("cat/1.jpg", b"one")
    cache = tmp_path / "sums.json"
    first = source_fingerprint(archive, "content", cache)
    calls = []
    real = fingerprint._archive_sha256
    monkeypatch.setattr(fingerprint, "_archive_sha256", lambda p: calls.append(p) or real(p))
    assert source_fingerprint(archive, "content", cache) == first
    assert calls == []


def test_a_cache_of_another_version_or_shape_is_ignored(tmp_path, monkeypatch):
    settled(monkeypatch)
    source = tmp_path / "photos"
    make_class_images(source, classes=("cat",), per_class=1, size=(32, 32))
    cache = tmp_path / "sums.json"
    expected = source_fingerprint(source, "content")
    source_fingerprint(source, "content", cache)
    stored = json.loads(cache.read_text())
    (entry,) = stored["sources"].values()
    entry["files"]["cat/0.jpg"][4] = "0" * 64
    for unusable in ({**stored, "version": 2}, [stored], "a string"):
        cache.write_text(json.dumps(unusable))
        assert source_fingerprint(source, "content", cache) == expected


def test_a_cache_that_cannot_be_written_costs_only_time(tmp_path):
    source = tmp_path / "photos"
    make_class_images(source, classes=("cat",), per_class=1, size=(32, 32))
    (tmp_path / "a-file").write_text("")
    expected = source_fingerprint(source, "content")
    assert source_fingerprint(source, "content", tmp_path / "a-file" / "sums.json") == expected


def test_the_cache_keeps_the_most_recently_used_sources(tmp_path, monkeypatch):
    settled(monkeypatch)
    monkeypatch.setattr(fingerprint, "CACHED_SOURCES", 2)
    cache = tmp_path / "sums.json"
    # Used in an order other than their names': z, a, m.
    for name in ("z", "a", "m"):
        make_class_images(tmp_path / name, classes=("cat",), per_class=1, size=(16, 16))
        source_fingerprint(tmp_path / name, "content", cache)
    kept = json.loads(cache.read_text())["sources"]
    assert sorted(kept) == [str((tmp_path / name).resolve()) for name in ("a", "m")]


def test_a_file_that_cannot_be_read_counts_by_its_error(tmp_path):
    def denied(path):
        raise PermissionError(13, "Permission denied")

    sums = fingerprint.SumCache(None, tmp_path)
    stat = tmp_path.stat()
    assert sums.sha256("x.jpg", tmp_path, stat, denied) == "unreadable: Permission denied"


def test_the_cache_is_written_beside_itself_and_renamed_into_place(tmp_path, monkeypatch):
    """A rename is atomic only within one file system: the temporary file must not go to the
    system's temporary folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    renamed = []
    real = os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: renamed.append((src, dst)) or real(src, dst)
    )
    target = tmp_path / "state" / "sums.json"
    sums = fingerprint.SumCache(target, tmp_path)
    sums.seen["x.jpg"] = [1, 2, 3, 4, "cafe"]
    sums.changed = True
    sums.save()
    ((temporary, destination),) = renamed
    assert Path(temporary).parent == target.parent and Path(destination) == target
    cached = json.loads(target.read_text())["sources"][str(tmp_path.resolve())]["files"]
    assert cached == {"x.jpg": [1, 2, 3, 4, "cafe"]}
    assert sorted(p.name for p in target.parent.iterdir()) == ["sums.json", "sums.json.lock"]


def record_download(tmp_path, data):
    archive, record = tmp_path / "archive.zip", tmp_path / "archive.json"
    archive.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    record.write_text(json.dumps({"sha256": sha256, "bytes": len(data)}))
    return archive, record, sha256


def test_a_pinned_sum_is_checked_against_the_recorded_download(tmp_path):
    archive, record, sha256 = record_download(tmp_path, b"the archive")
    # Nothing to check: no pin, no archive or no record yet.
    assert fingerprint.check_downloaded_sha256(archive, record, None) is None
    assert fingerprint.check_downloaded_sha256(tmp_path / "no.zip", record, sha256) is None
    assert fingerprint.check_downloaded_sha256(archive, tmp_path / "no.json", sha256) is None
    assert fingerprint.check_downloaded_sha256(archive, record, sha256.upper()) == sha256
    message = (
        rf"^data.sha256 is {'0' * 64} but the archive already downloaded, {archive}, has sha256 "
        rf"{sha256}: correct data.sha256, or delete {archive} to download it again$"
    )
    with pytest.raises(UserError, match=message):
        fingerprint.check_downloaded_sha256(archive, record, "0" * 64)


def test_the_recorded_sum_is_trusted_only_for_the_archive_as_downloaded(tmp_path, monkeypatch):
    archive, record, sha256 = record_download(tmp_path, b"the archive")
    reads = []
    real = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: reads.append(path) or real(path))
    assert fingerprint.check_downloaded_sha256(archive, record, sha256) == sha256
    assert reads == []
    # Same size, written after the record: hashed again.
    stat = record.stat()
    archive.write_bytes(b"THE ARCHIVE")
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    with pytest.raises(UserError, match=hashlib.sha256(b"THE ARCHIVE").hexdigest()):
        fingerprint.check_downloaded_sha256(archive, record, sha256)
    # Another size, dated as the record: hashed again.
    archive.write_bytes(b"a longer archive")
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(UserError, match=hashlib.sha256(b"a longer archive").hexdigest()):
        fingerprint.check_downloaded_sha256(archive, record, sha256)
    # A record that is not JSON: hashed again.
    archive.write_bytes(b"the archive")
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    record.write_text("{")
    assert fingerprint.check_downloaded_sha256(archive, record, sha256) == sha256
    assert len(reads) == 3


def test_an_archive_dated_as_its_record_is_the_download(tmp_path, monkeypatch):
    """Not newer than the record: the download writes the archive, then its record."""
    archive, record, sha256 = record_download(tmp_path, b"the archive")
    reads = []
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: reads.append(path) or "f" * 64)
    stat = record.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint.check_downloaded_sha256(archive, record, sha256) == sha256
    assert reads == []


def test_a_file_hash_is_sha256_unless_asked_otherwise(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"weights")
    assert fingerprint.file_hash(path) == hashlib.sha256(b"weights").hexdigest()
    assert fingerprint.file_sha256(path) == hashlib.sha256(b"weights").hexdigest()
    assert fingerprint.file_hash(path, "md5") == hashlib.md5(b"weights").hexdigest()


def test_a_sum_taken_from_the_cache_is_kept_when_the_cache_is_written_again(tmp_path, monkeypatch):
    settled(monkeypatch)
    source, cache = tmp_path / "photos", tmp_path / "sums.json"
    make_class_images(source, per_class=1, size=(32, 32))
    source_fingerprint(source, "content", cache)
    # dog/0.jpg changes, so the cache is written again, with cat/0.jpg's sum as it was read.
    (source / "dog" / "0.jpg").write_bytes(b"another photo")
    second = source_fingerprint(source, "content", cache)
    reads = []
    real = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda path: reads.append(path) or real(path))
    assert source_fingerprint(source, "content", cache) == second
    assert reads == []


# Written into Snakemake's record of the prepare and split jobs: a new value reruns them for
# every user, so a change to what is hashed, or how, must be deliberate (then update these).
PINNED_FINGERPRINTS = {
    "folder-metadata": "85c20870d44815cb",
    "folder-content": "53c50d921e516327",
    "zip-metadata": "e87863a2560ffbbb",
    "zip-content": "26d079a0acec2a0e",
    "missing-metadata": "ffa63583dfa6706b",
}


def pinned_sources(root):
    """A folder (with a dangling link) and a zip (with a member whose bytes fail its CRC), all
    dated 2001-09-09."""
    folder = root / "photos"
    for name, data in {"cat/1.jpg": b"one", "dog/2.jpg": b"two two"}.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        os.utime(folder / name, ns=(10**18, 10**18))
    (folder / "dog" / "3.jpg").symlink_to(root / "nowhere.jpg")
    archive = root / "photos.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for member, data in {"cat/1.jpg": b"one", "dog/2.jpg": b"two two"}.items():
            handle.writestr(zipfile.ZipInfo(member, (2001, 9, 9, 1, 46, 40)), data)
    data = archive.read_bytes()
    # The stored (uncompressed) bytes of dog/2.jpg, changed under their directory entry.
    archive.write_bytes(data.replace(b"two two", b"TWO TWO"))
    return folder, archive


def test_the_fingerprints_of_a_source_stay_as_released(tmp_path):
    folder, archive = pinned_sources(tmp_path)
    seen = {
        "folder-metadata": source_fingerprint(folder, "metadata"),
        "folder-content": source_fingerprint(folder, "content"),
        "zip-metadata": source_fingerprint(archive, "metadata"),
        "zip-content": source_fingerprint(archive, "content"),
        "missing-metadata": source_fingerprint(tmp_path / "nowhere", "metadata"),
    }
    assert seen == PINNED_FINGERPRINTS


def run_inputs(root):
    """A training run's inputs as the rules pass them: a folder (with a file name that is not
    UTF-8 and a dangling link), a file, a list of files and an input the kind does not use."""
    folder = root / "train"
    make_class_images(folder, per_class=1, size=(32, 32))
    (folder / "cat" / os.fsdecode(b"caf\xe9.jpg")).write_bytes(b"latin-1 name")
    (folder / "dog" / "gone.jpg").symlink_to(root / "nowhere.jpg")
    weights = root / "base.weights.h5"
    weights.write_bytes(b"weights")
    listed = [root / "a.h5", root / "b.h5"]
    for path in listed:
        path.write_bytes(path.name.encode())
    return {"train": str(folder), "weights": weights, "features": listed, "validation": None}


def test_a_run_fingerprint_follows_every_setting_and_input(tmp_path):
    inputs = run_inputs(tmp_path)
    settings = {"learning_rate": 1e-3, "epochs": 2, "init": Path("start.keras")}
    first = fingerprint.run_fingerprint(settings, inputs)
    # The same run, however its settings and inputs are ordered.
    reordered = (dict(reversed(settings.items())), dict(reversed(inputs.items())))
    assert fingerprint.run_fingerprint(*reordered) == first
    assert fingerprint.run_fingerprint({**settings, "epochs": 3}, inputs) != first
    assert fingerprint.run_fingerprint(settings, {**inputs, "training": inputs["train"]}) != first

    changed = []
    # A file of the folder rewritten to another size.
    (tmp_path / "train" / "cat" / "0.jpg").write_bytes(b"rewritten")
    changed.append(fingerprint.run_fingerprint(settings, inputs))
    # A file input by its content, not its date: touched, the same run; rewritten, another.
    os.utime(inputs["weights"], ns=(1, 1))
    assert fingerprint.run_fingerprint(settings, inputs) == changed[-1]
    inputs["weights"].write_bytes(b"WEIGHTS")
    changed.append(fingerprint.run_fingerprint(settings, inputs))
    inputs["features"][1].write_bytes(b"B.H5")
    changed.append(fingerprint.run_fingerprint(settings, inputs))
    assert len({first, *changed}) == 4
