"""Logging for Snakemake jobs: everything a job writes goes to its log file, not the terminal.

TensorFlow's C++ layer writes its start-up messages (cuInit, oneDNN, absl) to file descriptor 2
directly, past sys.stderr, so descriptors 1 and 2 themselves point at the log while a job runs.
The terminal keeps Snakemake's progress and, of a job, only why it failed.
"""

import contextlib
import logging
import os
import sys
import traceback
from pathlib import Path

from smallcnn.errors import UserError


@contextlib.contextmanager
def job_log(path):
    """Send everything the block writes to `path`: prints, warnings, logging, and the output of
    C and C++ libraries. Import TensorFlow inside the block, or its start-up messages miss it.

    A UserError ends the job with its one-line message (no traceback) in the log and on the
    terminal, and exit status 1; another exception's traceback goes to both as well.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _flush_python_streams()
    terminal = {fd: os.dup(fd) for fd in (1, 2)}
    # Append mode: descriptors 1, 2 and the logging stream write to one file without overwriting
    # each other.
    with open(path, "a", encoding="utf-8", buffering=1) as log_file:
        for fd in terminal:
            os.dup2(log_file.fileno(), fd)
        # Its own stream rather than sys.stderr, which a test runner may have replaced.
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
        except UserError as error:
            message = f"error: {error}\n"
            log_file.write(message)
            os.write(terminal[2], message.encode("utf-8", "replace"))
            raise SystemExit(1) from None
        except Exception:
            # Into the log here; Python prints it on the terminal once the descriptors are back.
            log_file.write(traceback.format_exc())
            raise
        finally:
            root.removeHandler(handler)
            _flush_python_streams()
            for fd, saved in terminal.items():
                os.dup2(saved, fd)
                os.close(saved)


def _flush_python_streams():
    # What Python buffered belongs where the descriptors pointed when it was written.
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
