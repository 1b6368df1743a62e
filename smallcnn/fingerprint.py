"""What Snakemake checks of the data source while it builds its DAG: the fingerprint of a local
source, and a pinned sum against the archive already downloaded. Standard library only, so that
Snakemake's own environment imports it.

Snakemake dates a folder input by the folder's own mtime, which changes when a file is added
directly in it but not when one is added to, or rewritten in, a class folder below it. The
prepare and split rules therefore read the source through `ancient()` and carry this fingerprint
as a `params:` entry instead: Snakemake reruns them exactly when it changes.

No image is read: 0.05 s for a zip of 4,000 photos, 0.3 s for a folder of 25,000 files (page
cache warm, 2 cores under load). Its parts:
- a folder: every file's path, size and mtime (as `layouts.walk_files` lists them, which is what
  prepare reads: links to class folders followed). Adding, removing, renaming, rewriting or
  touching a file changes it; touching the folder itself does not.
- a zip: every member's name, size, CRC-32 and date from the central directory. Touching or
  copying the archive does not change it; any change to what it holds does.
"""

import hashlib
import json
import os
import zipfile
from pathlib import Path

from smallcnn.errors import UserError
from smallcnn.layouts import walk_files

# Hex digits kept: 64 bits, plenty to tell versions of one source apart.
LENGTH = 16


def source_fingerprint(path):
    """A short hex string that changes whenever the files of the folder or zip at `path` do."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        digest.update(b"folder\n")
        for name, stat in walk_files(path):
            facts = f"{stat.st_size}\0{stat.st_mtime_ns}" if stat else "dangling link"
            digest.update(f"{name}\0{facts}\n".encode("utf-8", "surrogateescape"))
    elif path.is_file():
        try:
            with zipfile.ZipFile(path) as archive:
                digest.update(b"zip\n")
                for info in archive.infolist():
                    facts = f"{info.file_size}\0{info.CRC}\0{info.date_time}"
                    digest.update(f"{info.filename}\0{facts}\n".encode("utf-8", "surrogateescape"))
        except (zipfile.BadZipFile, OSError):
            # prepare reports what is wrong with it; this only has to change when the file does.
            stat = os.stat(path)
            digest.update(f"file\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    else:
        # Missing: Snakemake reports the missing input itself.
        digest.update(b"missing")
    return digest.hexdigest()[:LENGTH]


def check_downloaded_sha256(archive, record, sha256):
    """Check a pinned data.sha256 against the archive already downloaded, in place.

    Snakemake calls this while it builds the DAG, so pinning the right sum reruns nothing. The
    sum that the download recorded is trusted while the archive is as the download left it (the
    recorded size, not newer than the record); otherwise the archive is hashed again. Returns the
    archive's sum, or None when there is nothing to check yet (the download job checks a new
    download). A different sum raises a UserError naming both.
    """
    archive, record = Path(archive), Path(record)
    if not sha256 or not archive.is_file() or not record.is_file():
        return None
    seen = _recorded_sha256(archive, record) or file_sha256(archive)
    if seen.lower() != sha256.lower():
        raise UserError(
            f"data.sha256 is {sha256} but the archive already downloaded, {archive}, has sha256 "
            f"{seen}: correct data.sha256, or delete {archive} to download it again"
        )
    return seen


def _recorded_sha256(archive, record):
    try:
        facts = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    stat = archive.stat()
    if facts.get("bytes") != stat.st_size or stat.st_mtime_ns > record.stat().st_mtime_ns:
        return None
    return facts.get("sha256")


def file_hash(path, algorithm="sha256"):
    """The hex digest of a file's content, read in chunks (weights files run to hundreds of MB)."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


def file_sha256(path):
    return file_hash(path, "sha256")


def run_fingerprint(settings, inputs):
    """Identity of a training run: a hash of its settings and of every input, folders by every
    file's path, size and mtime (as `source_fingerprint` reads a folder), files by content. A
    backup is resumed only by a run with the same fingerprint."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for key in sorted(inputs):
        value = inputs[key]
        paths = [value] if isinstance(value, str | os.PathLike) else list(value or [])
        for path in map(Path, paths):
            digest.update(f"{key}={path}".encode())
            if path.is_dir():
                for name, stat in walk_files(path):
                    facts = f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "dangling link"
                    digest.update(f"{name}:{facts}".encode("utf-8", "surrogateescape"))
            elif path.is_file():
                digest.update(file_sha256(path).encode())
    return digest.hexdigest()
