"""The source fingerprint: what changes it, what does not, and how long it takes."""

import os
import shutil
import time
import zipfile

import pytest
from conftest import make_class_images

from smallcnn.fingerprint import source_fingerprint


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
