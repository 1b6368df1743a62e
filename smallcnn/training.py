"""One training loop for every kind of experiment, resumable after a killed job.

Everything a run writes while it trains lives in `backup_dir`, which is not a declared output
(Snakemake deletes declared outputs before rerunning a job): the BackupAndRestore checkpoint,
the best model so far, the CSV history, TensorBoard logs and the callbacks' own state. The
declared outputs are published from there when training ends. A rerun with the same settings and
inputs resumes after the last finished epoch; a backup made with anything different is discarded.
"""

import csv
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from smallcnn import cached_validation, datasets, devices, features, models, registry
from smallcnn.errors import UserError

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
HISTORY_FILE = "history.csv"


def fingerprint(settings, inputs):
    """Hash of the settings and the identity of every input: a backup is resumed only when equal."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for key in sorted(inputs):
        for path in _paths(inputs[key]):
            digest.update(f"{key}={path}".encode())
            path = Path(path)
            if path.is_dir():
                for item in sorted(path.rglob("*")):
                    if item.is_file():
                        stat = item.stat()
                        entry = f"{item.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}"
                        digest.update(entry.encode())
            elif path.is_file():
                digest.update(features.file_sha256(path).encode())
    return digest.hexdigest()


def _paths(value):
    if not value:
        return []
    if isinstance(value, str | os.PathLike):
        return [str(value)]
    return [str(v) for v in value]


def _single(value):
    paths = _paths(value)
    return paths[0] if paths else None


def _mode(monitor):
    return "min" if monitor.removeprefix("val_") == "loss" else "max"


class RunState:
    """The part of a run that Keras' BackupAndRestore does not keep, saved per finished epoch."""

    def __init__(self, directory, fingerprint_):
        self.directory = Path(directory)
        self.path = self.directory / STATE_FILE
        self.fingerprint = fingerprint_
        self.epochs = {}  # str(epochs finished) -> state after that epoch
        self.complete = False

    def load(self):
        """Read the saved state; False (and a clean directory) when it cannot be resumed."""
        if not self.path.exists():
            self.reset("no backup")
            return False
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.reset("unreadable backup state")
            return False
        if saved.get("fingerprint") != self.fingerprint:
            self.reset("backup made with other settings or inputs")
            return False
        self.epochs = saved["epochs"]
        self.complete = saved.get("complete", False)
        return True

    def reset(self, why):
        if self.directory.exists():
            log.info("starting afresh (%s): clearing %s", why, self.directory)
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        self.epochs, self.complete = {}, False

    def save(self):
        # Atomic: a job killed while writing leaves the previous state intact.
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(
            json.dumps(
                {"fingerprint": self.fingerprint, "epochs": self.epochs, "complete": self.complete}
            )
        )
        os.replace(tmp, self.path)


class ResumableCallbacks:
    """The callbacks of one run and how to restore their state after a restart."""

    def __init__(self, settings, work_dir, state, resume_epoch):
        import keras

        config = settings.get("callbacks") or {}
        self.work_dir = Path(work_dir)
        self.state = state
        self.resume_epoch = resume_epoch
        self.restored = state.epochs.get(str(resume_epoch)) if resume_epoch else None
        checkpoint = config.get("checkpoint") or {}
        self.monitor = checkpoint.get("monitor", "val_loss")
        restored = self.restored or {}
        self.checkpoint = keras.callbacks.ModelCheckpoint(
            str(self.work_dir / "best-{epoch:04d}.keras"),
            monitor=self.monitor,
            mode=_mode(self.monitor),
            save_best_only=True,
            initial_value_threshold=restored.get("checkpoint_best"),
        )
        self.early_stopping = None
        stopping = config.get("early_stopping") or {}
        if stopping.get("enabled", True):
            self.early_stopping = keras.callbacks.EarlyStopping(
                monitor=stopping.get("monitor", "val_loss"),
                mode=_mode(stopping.get("monitor", "val_loss")),
                patience=stopping.get("patience", 10),
                restore_best_weights=stopping.get("restore_best_weights", True),
            )
        self.reduce_lr = None
        plateau = config.get("reduce_lr") or {}
        if plateau.get("enabled", True):
            self.reduce_lr = keras.callbacks.ReduceLROnPlateau(
                monitor=plateau.get("monitor", "val_loss"),
                mode=_mode(plateau.get("monitor", "val_loss")),
                factor=plateau.get("factor", 0.5),
                patience=plateau.get("patience", 4),
                min_lr=plateau.get("min_lr", 1e-7),
            )
        self.backup = config.get("backup", True)
        self.tensorboard = config.get("tensorboard", True)
        self.best_epoch = restored.get("best_epoch")
        self.train_seconds = restored.get("train_seconds", 0.0)

    @property
    def monitors(self):
        names = [self.monitor]
        names += [cb.monitor for cb in (self.early_stopping, self.reduce_lr) if cb is not None]
        return names

    def callbacks(self):
        import keras

        keeper = self

        class LogLearningRate(keras.callbacks.Callback):
            """Put the learning rate an epoch ran with in its logs, with or without reduce_lr."""

            def on_epoch_end(self, epoch, logs=None):
                logs["learning_rate"] = float(
                    keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
                )

        class SaveState(keras.callbacks.Callback):
            """Restores the callbacks' state at the start, saves it after every epoch."""

            def on_train_begin(self, logs=None):
                # After the other callbacks' on_train_begin, which reset their state.
                keeper.restore()
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                now = time.perf_counter()
                keeper.train_seconds += now - self.started
                self.started = now
                keeper.record(epoch)

        history = self.work_dir / HISTORY_FILE
        callbacks = [LogLearningRate()]
        callbacks += [cb for cb in (self.early_stopping, self.reduce_lr) if cb is not None]
        callbacks += [
            self.checkpoint,
            keras.callbacks.CSVLogger(str(history), append=self.resume_epoch > 0),
        ]
        if self.tensorboard:
            callbacks.append(
                keras.callbacks.TensorBoard(
                    str(self.work_dir / "tensorboard"), write_graph=False, profile_batch=0
                )
            )
        callbacks.append(SaveState())
        if self.backup:
            # Last: the epoch's state is saved before the checkpoint that says the epoch is done.
            callbacks.append(
                keras.callbacks.BackupAndRestore(
                    str(self.work_dir / "keras"), delete_checkpoint=False
                )
            )
        return callbacks

    def restore(self):
        if not self.restored:
            return
        saved = self.restored
        self.checkpoint.best = saved["checkpoint_best"]
        if self.early_stopping is not None and saved.get("early_stopping"):
            stopping = saved["early_stopping"]
            self.early_stopping.best = stopping["best"]
            self.early_stopping.wait = stopping["wait"]
            self.early_stopping.best_epoch = stopping["best_epoch"]
            best_model = self.best_model_path()
            if (
                self.early_stopping.restore_best_weights
                and best_model
                and (self.early_stopping.monitor == self.monitor)
            ):
                import keras

                self.early_stopping.best_weights = keras.saving.load_model(
                    best_model, compile=False
                ).get_weights()
        if self.reduce_lr is not None and saved.get("reduce_lr"):
            plateau = saved["reduce_lr"]
            self.reduce_lr.best = plateau["best"]
            self.reduce_lr.wait = plateau["wait"]
            self.reduce_lr.cooldown_counter = plateau["cooldown_counter"]

    def record(self, epoch):
        improved = self.checkpoint.best is not None and (
            (self.work_dir / f"best-{epoch + 1:04d}.keras").exists()
        )
        if improved:
            self.best_epoch = epoch + 1
        entry = {
            "checkpoint_best": _number(self.checkpoint.best),
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "stopped_early": bool(self.early_stopping and self.early_stopping.stopped_epoch),
        }
        if self.early_stopping is not None:
            entry["early_stopping"] = {
                "best": _number(self.early_stopping.best),
                "wait": self.early_stopping.wait,
                "best_epoch": self.early_stopping.best_epoch,
            }
        if self.reduce_lr is not None:
            entry["reduce_lr"] = {
                "best": _number(self.reduce_lr.best),
                "wait": self.reduce_lr.wait,
                "cooldown_counter": self.reduce_lr.cooldown_counter,
            }
        # Keep the previous epoch's entry too: a job killed between this save and the
        # BackupAndRestore checkpoint resumes from that one.
        self.state.epochs = {
            key: value for key, value in self.state.epochs.items() if int(key) == epoch
        }
        self.state.epochs[str(epoch + 1)] = entry
        self.state.save()
        # Only now, and only the models no kept entry refers to: a resumed run needs its best.
        referenced = {
            f"best-{e['best_epoch']:04d}.keras"
            for e in self.state.epochs.values()
            if e["best_epoch"]
        }
        for model in self.work_dir.glob("best-*.keras"):
            if model.name not in referenced:
                model.unlink()

    def best_model_path(self):
        if self.best_epoch is None:
            return None
        path = self.work_dir / f"best-{self.best_epoch:04d}.keras"
        return path if path.exists() else None


def _number(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _backed_up_epoch(work_dir):
    """Epochs finished according to the BackupAndRestore checkpoint (0 when there is none)."""
    metadata = Path(work_dir) / "keras" / "training_metadata.json"
    if not metadata.exists():
        return 0
    try:
        return int(json.loads(metadata.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def _readable(work_dir):
    """Whether the BackupAndRestore weights file is complete (a kill while writing it is not)."""
    import h5py

    weights = Path(work_dir) / "keras" / "latest.weights.h5"
    if not weights.exists():
        return True
    try:
        with h5py.File(weights, "r") as h5:
            h5.visititems(lambda _, item: item.shape if isinstance(item, h5py.Dataset) else None)
    except (OSError, RuntimeError, KeyError):
        return False
    return True


def _truncate_history(path, epochs):
    """Keep the rows of the first `epochs` epochs: later ones belong to epochs being redone."""
    if not path.exists():
        return
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    if not rows:
        return
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < epochs]
    with open(path, "w", newline="") as stream:
        csv.writer(stream).writerows(kept)


def _optimizer(name, learning_rate):
    import keras

    optimizers = {
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    if name not in optimizers:
        raise UserError(f"unknown optimizer {name!r}: choose one of {', '.join(optimizers)}")
    return optimizers[name](learning_rate=learning_rate)


def compile_model(model, settings, n_classes, monitors):
    import keras

    metrics = ["accuracy"]
    if any(m.removeprefix("val_") == "auc" for m in monitors):
        if n_classes != 2:
            raise UserError("monitoring auc needs two classes; monitor val_loss or val_accuracy")
        metrics.append(keras.metrics.AUC(name="auc"))
    model.compile(
        optimizer=_optimizer(settings.get("optimizer", "rmsprop"), settings["learning_rate"]),
        loss="binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy",
        metrics=metrics,
    )


class _Data:
    """Training and validation batches, and what the model needs to know about them."""

    def __init__(
        self, train, validation, class_names, input_shape, steps, weights, conv_base, labels
    ):
        self.train = train
        # Training labels, for the class weights.
        self.labels = labels
        self.validation = validation
        self.class_names = class_names
        self.input_shape = input_shape
        self.steps = steps
        self.weights = weights
        self.conv_base = conv_base


def _feature_data(settings, inputs):
    import tensorflow as tf

    train = features.read_features(_single(inputs["train"]))
    validation = features.read_features(_single(inputs["validation"]))
    if validation.class_names != train.class_names:
        raise UserError(
            f"validation classes {validation.class_names} differ from training classes "
            f"{train.class_names}"
        )
    batch_size = settings["batch_size"]
    dataset = tf.data.Dataset.from_tensor_slices((train.features, train.labels))
    if settings.get("steps_per_epoch"):
        dataset = dataset.repeat()
    dataset = dataset.shuffle(len(train.labels), seed=settings["seed"])
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    val = tf.data.Dataset.from_tensor_slices((validation.features, validation.labels))
    val = val.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    attrs = train.attrs
    conv_base = {
        "name": attrs["base_model"],
        "weights": attrs["weights_source"],
        "weights_sha256": attrs["weights_sha256"],
        "input_size": list(attrs["input_size"]),
    }
    weights = {"source": attrs["weights_source"], "sha256": attrs["weights_sha256"]}
    return _Data(
        dataset,
        val,
        train.class_names,
        train.features.shape[1:],
        _steps(settings, len(train.labels)),
        weights,
        conv_base,
        train.labels,
    )


# Above this ratio of the largest to the smallest class, class_weight: auto weighs classes.
IMBALANCE_RATIO = 1.5


def class_weights(setting, labels, n_classes):
    """{class index: weight} for Keras, or None for equal weights.

    balanced is inverse class frequency, n / (n_classes * n_k) (scikit-learn's "balanced"), so
    that every class contributes as much to the loss as it would in a balanced split.
    """
    counts = [0] * n_classes
    for label in labels:
        counts[int(label)] += 1
    if min(counts) == 0:
        raise UserError(
            f"the training split has no image of class {counts.index(0)}: every class needs "
            "training images"
        )
    if setting == "auto":
        setting = "balanced" if max(counts) > IMBALANCE_RATIO * min(counts) else "none"
    if setting == "none":
        return None
    if setting != "balanced":
        raise UserError(f"class_weight is {setting!r}: use auto, none or balanced")
    total = sum(counts)
    return {k: total / (n_classes * count) for k, count in enumerate(counts)}


def _steps(settings, n):
    if settings.get("steps_per_epoch"):
        return settings["steps_per_epoch"]
    return math.ceil(n / settings["batch_size"])


def _image_data(settings, inputs, cache_dir):
    size = tuple(settings["image_size"])
    train = datasets.load_images(
        _single(inputs["train"]),
        size,
        settings["batch_size"],
        shuffle=True,
        seed=settings["seed"],
        cache=True,
        cache_dir=cache_dir,
        repeat=bool(settings.get("steps_per_epoch")),
    )
    validation = datasets.load_images(
        _single(inputs["validation"]),
        size,
        settings["batch_size"],
        class_names=train.class_names,
        cache=True,
        cache_dir=cache_dir,
    )
    return _Data(
        train.dataset,
        validation.dataset,
        train.class_names,
        (*size, 3),
        _steps(settings, len(train.files)),
        None,
        None,
        train.labels,
    )


def build_model(settings, inputs, data):
    """The experiment's model, uncompiled, and the record of the weights it started from."""
    import keras

    kind = settings["kind"]
    n_classes = len(data.class_names)
    seed = settings["seed"]
    builder = registry.KINDS[kind].builder
    build = getattr(models, builder) if builder else None
    if kind in ("scratch", "augmented"):
        model = build(
            data.input_shape,
            n_classes,
            dropout=settings["dropout"],
            dense_units=settings["dense_units"],
            augmentation=settings.get("augmentation"),
            seed=seed,
            class_names=data.class_names,
            name=settings["experiment"],
        )
        return model, None
    if kind == "features":
        model = build(
            data.input_shape,
            n_classes,
            dense_units=settings["dense_units"],
            dropout=settings["dropout"],
            seed=seed,
            class_names=data.class_names,
            conv_base=data.conv_base,
        )
        return model, data.weights
    conv_base = settings["conv_base"]
    if kind == "frozen":
        weights_path = _single(inputs.get("weights"))
        record = features.weights_record(conv_base["weights"], weights_path)
        base = models.build_conv_base(conv_base["name"], weights_path, data.input_shape)
        model = build(
            base,
            n_classes,
            dense_units=settings["dense_units"],
            dropout=settings["dropout"],
            augmentation=settings.get("augmentation"),
            seed=seed,
            class_names=data.class_names,
            conv_base={
                "name": base.name,
                "weights": record["source"],
                "weights_sha256": record["sha256"],
            },
        )
        return model, record
    if kind == "finetuned":
        start = _single(inputs["start"])
        model = keras.saving.load_model(start, compile=False)
        class_names, base_info = models.model_info(model)
        if class_names != data.class_names:
            raise UserError(
                f"{start} was trained on classes {class_names}, the training split has "
                f"{data.class_names}: rerun the experiment it starts from"
            )
        if tuple(model.input_shape[1:]) != tuple(data.input_shape):
            raise UserError(
                f"{start} takes images of {model.input_shape[1:3]}, image_size is "
                f"{data.input_shape[:2]}: rerun the experiment it starts from"
            )
        model = models.with_augmentation(
            model, settings.get("augmentation"), seed, name=settings["experiment"]
        )
        models.make_finetunable(model, conv_base["unfreeze_from"])
        record = None
        if base_info:
            record = {"source": base_info["weights"], "sha256": base_info["weights_sha256"]}
        return model, record
    raise UserError(f"unknown kind of experiment {kind!r}: one of {', '.join(registry.KINDS)}")


def train(
    settings,
    inputs,
    model_path,
    history_path,
    summary_path,
    tensorboard_dir,
    backup_dir,
    threads=None,
):
    """Train one experiment; write the best model, its history, a summary and TensorBoard logs.

    `threads`: the job's CPU threads (not a setting: running with more or fewer must neither
    rerun the job nor discard its backup).
    """
    import keras
    import tensorflow as tf

    name = f"{settings['experiment']}/{settings['seed']}"
    seed = settings["seed"]
    keras.utils.set_random_seed(seed)
    runtime = devices.configure(
        settings.get("precision", "auto"), settings.get("multi_gpu", True), threads=threads
    )
    work_dir = Path(backup_dir)
    state = RunState(work_dir, fingerprint(settings, inputs))
    resume_epoch = 0
    if (settings.get("callbacks") or {}).get("backup", True):
        if state.load():
            resume_epoch = _backed_up_epoch(work_dir)
            if str(resume_epoch) not in state.epochs or not _readable(work_dir):
                state.reset(f"backup of epoch {resume_epoch} is incomplete")
                resume_epoch = 0
    else:
        state.reset("backups are off")
    _truncate_history(work_dir / HISTORY_FILE, resume_epoch)
    for stale in work_dir.glob("best-*.keras"):
        if int(stale.stem.split("-")[1]) > resume_epoch:
            stale.unlink()  # written by an epoch that is being redone
    if resume_epoch:
        log.info("%s: resuming after epoch %d of %d", name, resume_epoch, settings["epochs"])

    with tempfile.TemporaryDirectory(prefix="smallcnn-cache-") as cache_dir:
        if registry.KINDS[settings["kind"]].inputs == "features":
            data = _feature_data(settings, inputs)
        else:
            data = _image_data(settings, inputs, cache_dir)
        keeper = ResumableCallbacks(settings, work_dir, state, resume_epoch)
        with runtime.strategy.scope():
            model, weights = build_model(settings, inputs, data)
            compile_model(model, settings, len(data.class_names), keeper.monitors)
        log.info(
            "%s: %d parameters, %d trainable",
            model.name,
            model.count_params(),
            sum(int(w.numpy().size) for w in model.trainable_weights),
        )
        # Also when early stopping had ended training: resuming would train past its decision.
        weighting = class_weights(
            settings.get("class_weight", "none"), data.labels, len(data.class_names)
        )
        if weighting:
            log.info(
                "%s: class weights %s",
                name,
                ", ".join(f"{data.class_names[k]} {w:.3f}" for k, w in weighting.items()),
            )
        if state.complete or state.epochs.get(str(resume_epoch), {}).get("stopped_early"):
            log.info("%s: training had finished before the job stopped; publishing", name)
        else:
            with runtime.strategy.scope():
                validation = cached_validation.setup(
                    model, settings, inputs, data.validation, cache_dir, runtime
                )
            model.fit(
                data.train,
                validation_data=validation.data,
                epochs=settings["epochs"],
                steps_per_epoch=data.steps,
                # The cached validation first: the others read the val_* it puts in the logs.
                callbacks=validation.callbacks + keeper.callbacks(),
                class_weight=weighting,
                # The datasets shuffle themselves, seeded.
                shuffle=False,
                verbose=2,
            )
            state.complete = True
            state.save()
    best = keeper.best_model_path()
    if best is None:
        raise UserError(
            f"{name}: no epoch produced a finite {keeper.monitor}, so there is no best model "
            "(the loss diverged: lower the learning rate)"
        )
    rows = _history_rows(work_dir / HISTORY_FILE)
    summary = {
        "experiment": name,
        "kind": settings["kind"],
        "epochs_run": len(rows),
        "best_epoch": keeper.best_epoch,
        "stopped_early": _last_state(state).get("stopped_early", False),
        "train_seconds": round(_last_state(state).get("train_seconds", 0.0), 3),
        "monitor": keeper.monitor,
        "class_names": data.class_names,
        "class_weight": settings.get("class_weight", "none"),
        "class_weights": (
            {data.class_names[k]: round(w, 6) for k, w in weighting.items()} if weighting else None
        ),
        "lr_changes": _lr_changes(rows),
        "precision": runtime.policy,
        "device": runtime.device,
        "intra_op_threads": runtime.intra_op_threads,
        "inter_op_threads": runtime.inter_op_threads,
        "seed": seed,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "weights": weights,
    }
    _publish(best, model_path)
    _publish(work_dir / HISTORY_FILE, history_path)
    Path(tensorboard_dir).mkdir(parents=True, exist_ok=True)
    if (work_dir / "tensorboard").exists():
        shutil.copytree(work_dir / "tensorboard", tensorboard_dir, dirs_exist_ok=True)
    Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(work_dir, ignore_errors=True)
    log.info(
        "%s: %d epochs, best epoch %s by %s; model %s",
        name,
        summary["epochs_run"],
        summary["best_epoch"],
        keeper.monitor,
        model_path,
    )
    return summary


def _last_state(state):
    return state.epochs[max(state.epochs, key=int)] if state.epochs else {}


def _history_rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _lr_changes(rows):
    """Epochs (1-based) that ran with a new learning rate, from the history."""
    changes, previous = [], None
    for row in rows:
        rate = float(row["learning_rate"])
        if previous is not None and not math.isclose(rate, previous, rel_tol=1e-6):
            changes.append({"epoch": int(row["epoch"]) + 1, "learning_rate": rate})
        previous = rate
    return changes


def _publish(source, target):
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
