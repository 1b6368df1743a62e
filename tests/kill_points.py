"""Test-only fault injection: a training job SIGKILLs itself at an exact instant.

Production code knows nothing of it. The job a test starts (test_resume.run_job) imports this
module and calls `arm("<point>:<epoch>")`, which wraps the function where that point is:

- batch:N   after the first batch of epoch N;
- write:N   epoch N's first backup file written under its temporary name, not yet renamed;
- state:N   epoch N's backup files renamed into place, the state naming them not yet written;
- publish:0 the first output (the model) copied under its temporary name, not yet renamed.
"""

import contextlib
import os
import re
import signal

from smallcnn import resume, training


def _kill():
    os.kill(os.getpid(), signal.SIGKILL)


def _epoch_of(name):
    """The epoch of a backup file, from its name (best-0002.keras, epoch-0002.weights.h5)."""
    return int(re.search(r"\d{4}", name).group())


def arm(spec):
    point, epoch = spec.split(":")
    epoch = int(epoch)
    if point == "batch":

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0 and self.state["epoch"] + 1 == epoch:
                _kill()

        resume.ResumableTraining.on_train_batch_end = on_train_batch_end
    elif point == "write":
        write = resume.Backup.write

        def write_then_kill(self, name, save):
            def save_then_kill(path):
                save(path)
                if _epoch_of(name) == epoch:
                    _kill()

            return write(self, name, save_then_kill)

        resume.Backup.write = write_then_kill
    elif point == "state":
        commit = resume.Backup.commit

        def kill_then_commit(self, state):
            if state["epoch"] == epoch:
                _kill()
            commit(self, state)

        resume.Backup.commit = kill_then_commit
    elif point == "publish":
        atomic_write = training.atomic_write

        @contextlib.contextmanager
        def write_then_kill(target, **options):
            with atomic_write(target, **options) as tmp:
                yield tmp
                _kill()

        training.atomic_write = write_then_kill
    else:
        raise ValueError(f"unknown kill point {point!r}")
