"""Logging for Snakemake jobs: everything a job prints goes to its log file and to stderr."""

import contextlib
import logging
import sys
from pathlib import Path

from smallcnn.errors import UserError


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def _open_streams(self):
        # Libraries that captured sys.stderr inside the block (absl) may write after it closed.
        return [stream for stream in self.streams if not stream.closed]

    def write(self, text):
        for stream in self._open_streams():
            stream.write(text)
            stream.flush()
        return len(text)

    def flush(self):
        for stream in self._open_streams():
            stream.flush()

    def isatty(self):
        return False

    def close(self):
        # absl closes sys.stderr's handler at interpreter exit; the log file closes itself.
        self.flush()


@contextlib.contextmanager
def job_log(path):
    """Send prints, warnings and logging of the block to `path` as well as to stderr.

    A UserError ends the job with its one-line message (no traceback) and exit status 1.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log_file:
        tee = _Tee(log_file, sys.__stderr__)
        handler = logging.StreamHandler(tee)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            with contextlib.redirect_stdout(tee), contextlib.redirect_stderr(tee):
                yield
        except UserError as error:
            tee.write(f"error: {error}\n")
            raise SystemExit(1) from None
        finally:
            root.removeHandler(handler)
