"""Resumable training: the state of a run, owned by smallcnn and committed once per epoch.

A run's backup directory holds one small JSON state file and the files it names: the weights of
the last finished epoch (`epoch-NNNN.weights.h5`, with the optimizer's variables: Keras 3's
save_weights stores them, the iteration count and learning rate included), the best model so far
(`best-NNNN.keras`, the file that is published) and, when early stopping restores weights by
another metric than the checkpoint's, that metric's best weights. Every file is written under a
temporary name in the same folder and renamed into place; the state file is renamed last and
names each file with its sha256. So whatever instant a job is killed at, the state file on disk
describes one finished epoch whose files are all complete; files no state names are deleted.

The callback keeps its own counters (best values, waits, learning rate, timings,
the epoch history) instead of restoring the private attributes of Keras' callbacks, so the
callbacks' order does not matter and nothing depends on Keras internals.
"""

import contextlib
import csv
import json
import logging
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from smallcnn.atomic import atomic_write
from smallcnn.fingerprint import file_sha256

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1
TMP_PREFIX = "tmp-"
CACHE_DIR = "cache"
# ReduceLROnPlateau's default min_delta: an improvement smaller than this is a plateau. Not a
# setting of the config, as it is not one of the book's.
PLATEAU_MIN_DELTA = 1e-4


def mode(monitor):
    return "min" if monitor.removeprefix("val_") == "loss" else "max"


def is_improvement(value, best, monitor, min_delta=0.0):
    """Keras' rule (strictly better by more than min_delta); a non-finite value never is."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    if mode(monitor) == "min":
        return value + min_delta < best
    return value - min_delta > best


class Backup:
    """The backup directory of one run: load its state, write files into it atomically."""

    def __init__(self, directory, fingerprint):
        self.directory = Path(directory)
        self.fingerprint = fingerprint

    def path(self, name):
        return self.directory / name

    def load(self):
        """The last committed state, or None (and an empty directory) when it cannot be resumed."""
        state, why = self._read()
        if why:
            self.reset(why)
            return None
        self.prune(state)
        return state

    def _read(self):
        path = self.path(STATE_FILE)
        if not path.exists():
            return None, "no backup"
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            return None, "unreadable backup state"
        if state.get("version") != STATE_VERSION or state.get("fingerprint") != self.fingerprint:
            return None, "backup made with other settings or inputs"
        for entry in state["files"].values():
            file = self.path(entry["file"])
            # A file that is missing or altered cannot be the one this state was committed with.
            if not file.exists() or file_sha256(file) != entry["sha256"]:
                return None, f"backup file {entry['file']} is missing or damaged"
        return state, None

    def reset(self, why):
        if self.directory.exists():
            log.info("starting afresh (%s): clearing %s", why, self.directory)
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)

    def prune(self, state):
        """Delete what no committed state names: files of an epoch being redone, temporaries."""
        keep = {STATE_FILE, "tensorboard", CACHE_DIR}
        keep |= {entry["file"] for entry in state["files"].values()}
        for item in self.directory.iterdir():
            if item.name in keep:
                continue
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()

    def write(self, name, save):
        """Write file `name` with `save(path)` under a temporary name (a prefix: Keras checks the
        extension), then rename it; its entry in the state."""
        with atomic_write(self.path(name), prefix=TMP_PREFIX, suffix="", durable=True) as tmp:
            save(str(tmp))
            digest = file_sha256(tmp)
        return {"file": name, "sha256": digest}

    def commit(self, state):
        """Make `state` the one a rerun resumes from; then delete the files it replaced."""
        with atomic_write(self.path(STATE_FILE), prefix=TMP_PREFIX, suffix="", durable=True) as tmp:
            tmp.write_text(json.dumps(state))
        self.prune(state)

    def discard(self):
        """Remove the backup once its outputs are published: the state first, so that a kill
        while deleting leaves a directory that is not mistaken for a resumable backup."""
        self.path(STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    @contextlib.contextmanager
    def cache(self):
        """A folder for the decoded-image disk cache, inside the backup so that a killed job
        leaves nothing in the system's temp dir; emptied before use (a killed job's cache may be
        partial, and TensorFlow refuses a cache whose lock file remains) and after."""
        path = self.path(CACHE_DIR)
        shutil.rmtree(path, ignore_errors=True)
        Path(path).mkdir(parents=True)
        try:
            yield str(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)


def replay_shuffles(dataset, epochs):
    """Advance a dataset's reshuffling past `epochs` epochs, so that a resumed run sees the batch
    order the uninterrupted run would: a seeded tf.data shuffle draws a new order per iterator,
    and Keras makes one iterator per epoch. Not for a repeated dataset (steps_per_epoch set),
    which Keras reads through one iterator for the whole run: its order after a resume differs
    from the uninterrupted run's, still seeded."""
    for _ in range(epochs):
        iter(dataset)


class ResumableTraining(keras.callbacks.Callback):
    """Checkpoint-best, early stopping, reduce-LR-on-plateau and the per-epoch backup in one
    callback, with the semantics of Keras' callbacks of those names and the `callbacks:` config.

    `callbacks`: the run's validated `callbacks` settings (config.yaml's, merged with its kind's
    and its own), every key present: this class has no defaults of its own. `backup`: the run's
    Backup; `state` what Backup.load returned (None for a fresh run). `resumable` False keeps
    only the best model and the history, for a run that is not to be resumed.
    """

    def __init__(self, callbacks, backup, state=None, resumable=True):
        super().__init__()
        self.backup = backup
        self.resumable = resumable
        self.monitor = callbacks["checkpoint"]["monitor"]
        stopping = callbacks["early_stopping"]
        self.stopping = stopping if stopping["enabled"] else None
        plateau = callbacks["reduce_lr"]
        self.plateau = plateau if plateau["enabled"] else None
        self.state = state or {
            "version": STATE_VERSION,
            "fingerprint": backup.fingerprint,
            "epoch": 0,
            "history": [],
            "train_seconds": 0.0,
            "learning_rate": None,
            "stopped_early": False,
            "seed_states": None,
            "files": {},
            "checkpoint": {"best": None, "best_epoch": None},
            "early_stopping": {"best": None, "best_epoch": None, "wait": 0},
            "reduce_lr": {"best": None, "wait": 0},
        }

    @property
    def monitors(self):
        return [self.monitor] + [c["monitor"] for c in (self.stopping, self.plateau) if c]

    @property
    def initial_epoch(self):
        return self.state["epoch"]

    def finished(self, epochs):
        return self.state["stopped_early"] or self.state["epoch"] >= epochs

    def best_model(self):
        entry = self.state["files"].get("best")
        return self.backup.path(entry["file"]) if entry else None

    def _seed_variables(self):
        # Dropout and augmentation draw from these; save_weights leaves them out.
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def on_train_begin(self, logs=None):
        files = self.state["files"]
        if "weights" not in files:
            return
        optimizer = self.model.optimizer
        if not optimizer.built:
            # Its variables must exist for load_weights to fill them.
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.backup.path(files["weights"]["file"]))
        optimizer.learning_rate = self.state["learning_rate"]
        for variable, value in zip(self._seed_variables(), self.state["seed_states"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        state = self.state
        state["train_seconds"] += time.perf_counter() - self._started
        optimizer = self.model.optimizer
        # The rate this epoch ran with, before a plateau lowers it (as ReduceLROnPlateau logs it);
        # in the logs, later callbacks such as TensorBoard see it too.
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        number = epoch + 1
        state["history"].append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        files = dict(state["files"])
        checkpoint = state["checkpoint"]
        if is_improvement(logs.get(self.monitor), checkpoint["best"], self.monitor):
            checkpoint.update(best=float(logs[self.monitor]), best_epoch=number)
            files["best"] = self.backup.write(f"best-{number:04d}.keras", self.model.save)
        if self.stopping:
            self._early_stopping(epoch, logs, files)
        if self.plateau:
            self._reduce_lr(logs, optimizer)
        state["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        state["seed_states"] = [
            keras.ops.convert_to_numpy(v).tolist() for v in self._seed_variables()
        ]
        if self.resumable:
            files["weights"] = self.backup.write(
                f"epoch-{number:04d}.weights.h5", self.model.save_weights
            )
        state["files"] = files
        state["epoch"] = number
        self.backup.commit(state)

    def _early_stopping(self, epoch, logs, files):
        config, counters = self.stopping, self.state["early_stopping"]
        monitor = config["monitor"]
        value = logs.get(monitor)
        if value is None:
            return
        counters["wait"] += 1
        if is_improvement(value, counters["best"], monitor):
            counters.update(best=float(value), best_epoch=epoch + 1, wait=0)
            if self._keeps_own_best_weights():
                files["stop_best"] = self.backup.write(
                    f"stop-best-{epoch + 1:04d}.weights.h5", self.model.save_weights
                )
        elif counters["wait"] >= config["patience"] and epoch > 0:
            self.state["stopped_early"] = True
            self.model.stop_training = True

    def _keeps_own_best_weights(self):
        config = self.stopping
        return config["restore_best_weights"] and config["monitor"] != self.monitor

    def _reduce_lr(self, logs, optimizer):
        config, counters = self.plateau, self.state["reduce_lr"]
        monitor = config["monitor"]
        value = logs.get(monitor)
        if value is None:
            return
        # Cooldown 0, as ReduceLROnPlateau's default (the config does not set one either).
        if is_improvement(value, counters["best"], monitor, min_delta=PLATEAU_MIN_DELTA):
            counters.update(best=float(value), wait=0)
        else:
            counters["wait"] += 1
            if counters["wait"] >= config["patience"]:
                rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
                min_lr = config["min_lr"]
                if rate > np.float32(min_lr):
                    optimizer.learning_rate = max(rate * config["factor"], min_lr)
                    counters["wait"] = 0

    def on_train_end(self, logs=None):
        """Early stopping's restore_best_weights: the model in memory ends at its best epoch (the
        published model is the checkpoint's best either way)."""
        if not (self.stopping and self.stopping["restore_best_weights"]):
            return
        entry = self.state["files"].get("stop_best" if self._keeps_own_best_weights() else "best")
        if entry:
            self.model.load_weights(self.backup.path(entry["file"]))


def write_history(rows, path):
    """The per-epoch history as CSVLogger writes it: epoch, then the metrics in sorted order."""
    keys = sorted({key for row in rows for key in row} - {"epoch"})
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["epoch", *keys])
        writer.writeheader()
        writer.writerows(rows)
