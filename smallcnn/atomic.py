"""Writing a file so that no reader, and no rerun after a kill, ever sees half of it."""

import contextlib
import os
from pathlib import Path


def replace_durably(tmp, target):
    """Rename `tmp` over `target` once its bytes are on disk, so that a crash leaves either."""
    with open(tmp, "rb+") as stream:
        os.fsync(stream.fileno())
    os.replace(tmp, target)
    directory = os.open(Path(target).parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def atomic_write(target, *, prefix="", suffix=".tmp", durable=False):
    """A temporary path beside `target` (`prefix` + its name + `suffix`) to write to, renamed
    over `target` when the block ends, deleted when it raises. A kill leaves the temporary
    behind and `target` as it was.

    `durable`: the bytes are on disk before the rename (fsync), for a file that others are
    trusted to match after a power cut: the resume state and the files it names, a download.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(prefix + target.name + suffix)
    try:
        yield tmp
        if durable:
            replace_durably(tmp, target)
        else:
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
