"""One training loop for every kind of experiment, resumable after a killed job.

Everything a run writes while it trains lives in `backup_dir`, which is not a declared output
(Snakemake deletes declared outputs before rerunning a job): the state of the run and the files
it names (smallcnn.resume), TensorBoard logs and the disk cache of decoded images. The declared
outputs are published from there when training ends. A rerun with the same settings and inputs
resumes after the last finished epoch; a backup made with anything different is discarded.
"""

import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

from smallcnn import (
    cached_validation,
    datasets,
    devices,
    features,
    models,
    monitoring,
    registry,
    resume,
)
from smallcnn.errors import UserError

log = logging.getLogger(__name__)


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
    config = settings.get("callbacks") or {}
    backup = resume.Backup(work_dir, fingerprint(settings, inputs))
    state = None
    if config.get("backup", True):
        state = backup.load()
    else:
        backup.reset("backups are off")
    keeper = resume.ResumableTraining(config, backup, state, backup=config.get("backup", True))
    if keeper.initial_epoch:
        log.info(
            "%s: resuming after epoch %d of %d", name, keeper.initial_epoch, settings["epochs"]
        )

    with backup.cache() as cache_dir:
        if registry.KINDS[settings["kind"]].inputs == "features":
            data = _feature_data(settings, inputs)
        else:
            data = _image_data(settings, inputs, cache_dir)
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
        if keeper.finished(settings["epochs"]):
            log.info("%s: training had finished before the job stopped; publishing", name)
        else:
            if not settings.get("steps_per_epoch"):  # else one iterator spans the whole run
                resume.replay_shuffles(data.train, keeper.initial_epoch)
            with runtime.strategy.scope():
                validation = cached_validation.setup(
                    model, settings, inputs, data.validation, cache_dir, runtime
                )
            monitors = monitoring.run_callbacks(settings, inputs, data, work_dir / "tensorboard")
            model.fit(
                data.train,
                validation_data=validation.data,
                epochs=settings["epochs"],
                steps_per_epoch=data.steps,
                # The cached validation first: the others read the val_* it puts in the logs.
                # Then the keeper: it puts the learning rate in the logs that the loggers read.
                callbacks=[*validation.callbacks, keeper, *monitors],
                initial_epoch=keeper.initial_epoch,
                class_weight=weighting,
                # The datasets shuffle themselves, seeded.
                shuffle=False,
                verbose=2,
            )
    best = keeper.best_model()
    if best is None:
        raise UserError(
            f"{name}: no epoch produced a finite {keeper.monitor}, so there is no best model "
            "(the loss diverged: lower the learning rate)"
        )
    state = keeper.state
    rows = state["history"]
    summary = {
        "experiment": settings["experiment"],
        "kind": settings["kind"],
        "epochs_run": len(rows),
        "best_epoch": state["checkpoint"]["best_epoch"],
        "stopped_early": state["stopped_early"],
        "train_seconds": round(state["train_seconds"], 3),
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
    monitoring.end_of_training(settings, inputs, best, work_dir / "tensorboard")
    _publish(best, model_path)
    resume.write_history(rows, history_path)
    Path(tensorboard_dir).mkdir(parents=True, exist_ok=True)
    if (work_dir / "tensorboard").exists():
        shutil.copytree(work_dir / "tensorboard", tensorboard_dir, dirs_exist_ok=True)
    (work_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _publish(work_dir / "summary.json", summary_path)
    backup.discard()
    log.info(
        "%s: %d epochs, best epoch %s by %s; model %s",
        name,
        summary["epochs_run"],
        summary["best_epoch"],
        keeper.monitor,
        model_path,
    )
    return summary


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
    """Copy `source` to `target` under a temporary name, then rename: a reader never sees half a
    file, and a failure leaves no temporary behind (nor a kill: a rerun publishes over it)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    try:
        shutil.copyfile(source, tmp)
        resume.crash_point("publish", 0)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
