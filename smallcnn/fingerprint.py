"""What Snakemake checks of the data source while it builds its DAG: the fingerprint of a local
source, and a pinned sum against the archive already downloaded. Standard library only, so that
Snakemake's own environment imports it.

Snakemake dates a folder input by the folder's own mtime, which changes when a file is added
directly in it but not when one is added to, or rewritten in, a class folder below it. The
prepare and split rules therefore read the source through `ancient()` and carry this fingerprint
as a `params:` entry instead: Snakemake reruns them exactly when it changes.

Two modes (`data.fingerprint`):
- `metadata` (the default) reads no image: 0.02 s of CPU for the zip of 4,000 photos, 0.13 s
  for a folder of 25,000 files (bench/fingerprint.py; the README has the figures).
  - a folder: every file's path, size and mtime (as `layouts.walk_files` lists them, which is
    what prepare reads: links to class folders followed). Adding, removing, renaming, resizing or
    touching a file changes it, and so does a rewrite that moves the mtime, as writing does; a
    rewrite to the same size whose mtime is then set back (`touch -r`, `cp -p`, `rsync -t`) does
    not. Touching the folder itself does not.
  - a zip: every member's name, size, CRC-32 and date from the central directory. Touching or
    copying the archive does not change it; a change to what the directory says does. A member's
    bytes changed under an unchanged directory entry (patched in place, or crafted to keep its
    CRC) do not.
- `content`: the sha256 of every file's bytes (of a zip, every member's uncompressed bytes, read
  as prepare reads them: a member whose bytes fail its CRC counts as unreadable), with the names.
  Any change to what prepare would read changes it; touching a file, or re-zipping the same
  members, does not. The sums are cached (`SumCache`) by each file's path, size, mtime, ctime and
  inode, so an unchanged source is not read again: a rewrite with its mtime set back still moves
  its ctime, which no user call can set. Of CPU: 0.13 s for the zip and 1.1 s for the 25,000
  files (324 MB) with nothing cached; nothing and 0.26 s with the sums cached.

Why the zip's members are read rather than their CRC list taken as content: the central
directory is what the archive claims, written by the tool that made it and not checked against
the bytes until a member is read; a member patched in place keeps its entry, and CRC-32 is 32
bits that anyone can match with other bytes of the same length.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

from smallcnn.atomic import atomic_write
from smallcnn.errors import UserError
from smallcnn.layouts import walk_files

# Hex digits kept: 64 bits, plenty to tell versions of one source apart.
LENGTH = 16
CHUNK_BYTES = 1 << 20
MODES = ("metadata", "content")
# A file whose ctime is this close to the moment it is read is hashed but not cached: another
# write within the file system's timestamp granularity (a few ms here, 2 s on FAT; NFS servers
# stamp with their own clock) could leave size, mtime and ctime as they were.
RACY_SECONDS = 2.0
# Sources whose sums the cache keeps: the most recently fingerprinted.
CACHED_SOURCES = 8


def source_fingerprint(path, mode="metadata", cache=None):
    """A short hex string that changes whenever the files of the folder or zip at `path` do, as
    `mode` sees them (see the module's docstring). `cache`: the file that keeps content sums
    between runs (content mode only; None reads everything every time)."""
    if mode not in MODES:
        raise UserError(f"data.fingerprint is {mode!r}; write one of {', '.join(MODES)}")
    path = Path(path)
    digest = hashlib.sha256()
    sums = SumCache(cache, path) if mode == "content" else None
    if path.is_dir():
        digest.update(b"folder\n")
        for name, stat in walk_files(path):
            if stat is None:
                facts = "dangling link"
            elif sums:
                facts = sums.sha256(name, path / name, stat, file_sha256)
            else:
                facts = f"{stat.st_size}\0{stat.st_mtime_ns}"
            digest.update(f"{name}\0{facts}\n".encode("utf-8", "surrogateescape"))
    elif path.is_file():
        if sums:
            facts = sums.sha256(".", path, path.stat(), _archive_sha256)
            digest.update(f"content\0{facts}".encode())
        else:
            digest.update(_archive_metadata(path))
    else:
        # Missing: Snakemake reports the missing input itself.
        digest.update(b"missing")
    if sums:
        sums.save()
    return digest.hexdigest()[:LENGTH]


def _archive_metadata(path):
    try:
        with zipfile.ZipFile(path) as archive:
            lines = [b"zip\n"]
            for info in archive.infolist():
                facts = f"{info.file_size}\0{info.CRC}\0{info.date_time}"
                lines.append(f"{info.filename}\0{facts}\n".encode("utf-8", "surrogateescape"))
            return b"".join(lines)
    except (zipfile.BadZipFile, OSError):
        # prepare reports what is wrong with it; this only has to change when the file does.
        stat = os.stat(path)
        return f"file\0{stat.st_size}\0{stat.st_mtime_ns}".encode()


def _archive_sha256(path):
    """One sum over a zip's member names and uncompressed bytes (a file that is no zip: over
    its bytes). A member that cannot be read counts by its error, as prepare rejects it."""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(path) as archive:
            digest.update(b"zip\n")
            for info in archive.infolist():
                try:
                    member = hashlib.sha256()
                    with archive.open(info) as stream:
                        for block in iter(lambda s=stream: s.read(CHUNK_BYTES), b""):
                            member.update(block)
                    facts = member.hexdigest()
                except (zipfile.BadZipFile, RuntimeError, ValueError, EOFError, OSError) as error:
                    # zipfile raises BadZipFile on a bad CRC, RuntimeError when encrypted.
                    facts = f"unreadable: {type(error).__name__}: {error}"
                digest.update(f"{info.filename}\0{facts}\n".encode("utf-8", "surrogateescape"))
    except zipfile.BadZipFile:
        return f"file {file_sha256(path)}"
    return digest.hexdigest()


class SumCache:
    """Sums of the files of one source, kept in a JSON file between runs and keyed by what
    changes when a file does: path, size, mtime, ctime and inode.

    Safe for concurrent use (Snakemake builds the DAG again in every cluster job): the file is
    only ever replaced whole (written beside, then renamed), so a reader sees one version or the
    next; writers take an exclusive lock on `<file>.lock` and re-read the file under it, so that
    one writer's sources are not lost to another's. A cache that cannot be read or written only
    costs time.
    """

    def __init__(self, file, source):
        self.file = Path(file) if file else None
        self.source = str(Path(source).resolve())
        self.known = self._read().get("sources", {}).get(self.source, {}).get("files", {})
        self.seen = {}
        self.changed = False

    def sha256(self, key, path, stat, compute):
        """The sum of the file at `path` (`key` within the source; `stat` taken before): from
        the cache if the file's identity is unchanged, else `compute(path)`."""
        identity = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
        entry = self.known.get(key)
        if entry and entry[:4] == identity:
            self.seen[key] = entry
            return entry[4]
        started = time.time_ns()
        self.changed = True
        try:
            value = compute(path)
            after = os.stat(path)
        except OSError as error:
            # prepare reports the file; here it only has to count differently from its bytes.
            return f"unreadable: {error.strerror or error}"
        settled = stat.st_ctime_ns < started - RACY_SECONDS * 1e9
        unchanged = [after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino] == identity
        if settled and unchanged:
            self.seen[key] = [*identity, value]
        return value

    def save(self):
        """Write this source's sums as seen in this run, if any was computed or any is gone."""
        if not self.file or not (self.changed or self.seen.keys() != self.known.keys()):
            return
        with contextlib.suppress(OSError):
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{self.file}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                cache = self._read()
                sources = cache.get("sources", {})
                sources[self.source] = {"used": time.time(), "files": self.seen}
                recent = sorted(sources, key=lambda key: sources[key]["used"])[-CACHED_SOURCES:]
                with atomic_write(self.file, durable=True) as tmp:
                    tmp.write_text(
                        json.dumps(
                            {"version": 1, "sources": {k: sources[k] for k in recent}},
                            separators=(",", ":"),
                        ),
                        encoding="utf-8",
                    )

    def _read(self):
        if not self.file:
            return {}
        try:
            cache = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return cache if isinstance(cache, dict) and cache.get("version") == 1 else {}


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
