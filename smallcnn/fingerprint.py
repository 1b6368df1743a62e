"""A cheap identity of a local data source, computed when Snakemake builds its DAG.

Snakemake dates a folder input by the folder's own mtime, which changes when a file is added
directly in it but not when one is added to, or rewritten in, a class folder below it. The
prepare and split rules therefore read the source through `ancient()` and carry this fingerprint
as a `params:` entry instead: Snakemake reruns them exactly when it changes.

No image is read, so it takes well under a second for tens of thousands of files (see the README
for figures). Its parts:
- a folder: every file's path, size and mtime (as `layouts.walk_files` lists them, which is what
  prepare reads: links to class folders followed). Adding, removing, renaming, rewriting or
  touching a file changes it; touching the folder itself does not.
- a zip: every member's name, size, CRC-32 and date from the central directory. Touching or
  copying the archive does not change it; any change to what it holds does.
"""

import hashlib
import os
import zipfile
from pathlib import Path

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
