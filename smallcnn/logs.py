"""Where output goes: a Snakemake job's to its log file, redacted; a command's native noise
nowhere, unless the command fails.

TensorFlow's C++ layer writes its start-up messages (cuInit, oneDNN, absl) to file descriptor 2
directly, past sys.stderr, so both context managers work on descriptors 1 and 2 themselves.
"""

import contextlib
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

from smallcnn import relay
from smallcnn.errors import UserError
from smallcnn.redact import redact

PACKAGE_PARENT = str(Path(__file__).resolve().parents[1])
# How long a job waits, at its end, for its log to be complete.
DRAIN_SECONDS = 30


@contextlib.contextmanager
def job_log(path):
    """Send everything the block writes to `path`: prints, warnings, logging, the output of C
    and C++ libraries, and the job's last words. Import TensorFlow inside the block, or its
    start-up messages miss it.

    Everything passes through `redact` first: descriptors 1 and 2 point at a pipe, and a helper
    process (`python -m smallcnn.relay`) appends what arrives to the log, line by line, with
    credentials hidden. It runs on its own, so a job that crashes (a segfault, an abort in C++)
    or is killed still leaves its last lines in the log.

    A UserError ends the job with its one-line message (no traceback) in the log and on the
    terminal, and exit status 1; another exception's traceback goes to both as well, redacted.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _flush_python_streams()
    terminal = {fd: os.dup(fd) for fd in (1, 2)}
    redactor, pipe = _start_redactor(path)
    for fd in terminal:
        os.dup2(pipe, fd)
    os.close(pipe)
    try:
        # Its own stream rather than sys.stderr, which a test runner may have replaced.
        with (
            open(os.dup(2), "w", encoding="utf-8", errors="replace", buffering=1) as stream,
            _logging_to(stream),
        ):
            try:
                yield
            except UserError as error:
                _last_words(f"error: {error}\n", stream, terminal[2])
                raise SystemExit(1) from None
            except Exception:
                _last_words(traceback.format_exc(), stream, terminal[2])
                raise SystemExit(1) from None
    finally:
        _flush_python_streams()
        for fd, saved in terminal.items():
            os.dup2(saved, fd)
            os.close(saved)
        # Every writer of the pipe is closed now (unless the job left a process running that
        # holds it): the helper writes what is left and ends.
        with contextlib.suppress(subprocess.TimeoutExpired):
            redactor.wait(DRAIN_SECONDS)


@contextlib.contextmanager
def _logging_to(stream):
    """Logging records and Python warnings, of every logger, to `stream` while the block runs."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _start_redactor(path):
    """(the helper process appending to `path`, the descriptor writing to it)."""
    reader, writer = os.pipe()
    redactor = _helper(["log", str(path)], stdin=reader)
    os.close(reader)
    return redactor, writer


def _helper(arguments, **popen):
    """A `python -m smallcnn.relay` process: the standard library and this package only (-S),
    so that it starts in milliseconds."""
    path = os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-S", "-P", "-m", "smallcnn.relay", *arguments],
        env={**os.environ, "PYTHONPATH": path},
        **popen,
    )


def _last_words(text, log_stream, terminal_fd):
    """A job's error, redacted, in its log (through the helper) and on the terminal."""
    text = redact(text)
    log_stream.write(text)
    log_stream.flush()
    os.write(terminal_fd, text.encode("utf-8", "replace"))


@contextlib.contextmanager
def native_output_held():
    """Hold what is written to descriptor 2 while the block runs (TensorFlow's C++ start-up
    lines, absl's, Python warnings) and drop it if the block ends normally. If the block raises,
    or the process dies in it (a segfault, an abort in C++), it is written to the terminal,
    redacted, before anything else: a real failure keeps its explanation.

    A helper process holds the output, so that it outlives a crash. Write your own messages after
    the block, or to a stream on a copy of descriptor 2 taken before it.
    """
    _flush_python_streams()
    terminal = os.dup(2)
    data_reader, data_writer = os.pipe()
    verdict_reader, verdict_writer = os.pipe()
    holder = _helper(
        ["hold", str(verdict_reader)],
        stdin=data_reader,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        pass_fds=(verdict_reader,),
    )
    os.close(data_reader)
    os.close(verdict_reader)
    os.dup2(data_writer, 2)
    os.close(data_writer)
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        _flush_python_streams()
        if succeeded:
            os.write(verdict_writer, relay.SUCCEEDED)
        os.close(verdict_writer)
        os.dup2(terminal, 2)
        os.close(terminal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            holder.wait(DRAIN_SECONDS)


def print_redacted(kind, error, trace):
    """sys.excepthook for commands: an uncaught exception's traceback, redacted, on stderr."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, error, trace))))


def _flush_python_streams():
    # What Python buffered belongs where the descriptors pointed when it was written.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
