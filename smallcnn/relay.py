"""The helper processes of smallcnn.logs: `python -m smallcnn.relay log LOG` appends its standard
input to LOG, redacted; `python -m smallcnn.relay hold FD` holds its standard input and writes it
to its standard error, redacted, unless descriptor FD says the block succeeded.

Both run until every writer of their input has closed it, so they outlive a process that
crashes: its last lines still reach the log or the terminal. Standard library and
smallcnn.redact only, so that they start in milliseconds (`python -S`).
"""

import os
import re
import signal
import sys
import tempfile

from smallcnn.redact import redact

CHUNK_BYTES = 1 << 16
# A line longer than this is redacted and written in pieces, so that memory stays bounded.
LONGEST_LINE = 1 << 20
_LINE_END = re.compile(rb"[\r\n]")
SUCCEEDED = b"ok"


def copy_redacted(read, target):
    """Copy what `read()` returns (bytes, b"" at the end) to the binary file `target`, line by
    line through `redact`. A line ends at a newline or a carriage return (a progress bar's
    update), so that a log followed with tail -f stays current."""
    pending = b""
    while chunk := read():
        pending += chunk
        ends = [match.end() for match in _LINE_END.finditer(pending)]
        cut = ends[-1] if ends else (len(pending) if len(pending) > LONGEST_LINE else 0)
        if cut:
            _write_redacted(target, pending[:cut])
            pending = pending[cut:]
    if pending:
        _write_redacted(target, pending)


def _write_redacted(target, data):
    text = data.decode("utf-8", "surrogateescape")
    target.write(redact(text).encode("utf-8", "surrogateescape"))
    target.flush()


def _read_stdin():
    return os.read(0, CHUNK_BYTES)


def log(path):
    try:
        with open(path, "ab") as target:
            copy_redacted(_read_stdin, target)
    except OSError as error:
        # A log that cannot be written (a full disk) must not break the job's own writes.
        print(f"cannot write the job log {path}: {error}", file=sys.stderr)
        while _read_stdin():
            pass


def hold(verdict_fd):
    with tempfile.TemporaryFile() as held:
        while chunk := _read_stdin():
            held.write(chunk)
        if os.read(verdict_fd, len(SUCCEEDED)) == SUCCEEDED:
            return
        held.seek(0)
        with open(2, "wb", closefd=False) as terminal:
            copy_redacted(lambda: held.read(CHUNK_BYTES), terminal)


def main(argv):
    # A Ctrl-C or a TERM sent to the process group must not end the copy before the last words
    # of the process it serves (a traceback) are written: it ends when that process closes the
    # pipe.
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    command, argument = argv
    if command == "log":
        log(argument)
    else:
        hold(int(argument))


if __name__ == "__main__":
    main(sys.argv[1:])
