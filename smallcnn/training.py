"""One training loop for every kind of experiment, resumable after a killed job.

Everything a run writes while it trains lives in `backup_dir`, which is not a declared output
(Snakemake deletes declared outputs before rerunning a job): the state of the run and the files
it names (smallcnn.resume), TensorBoard logs and the disk cache of decoded images. The declared
outputs are published from there when training ends. A rerun with the same settings and inputs
resumes after the last finished epoch; a backup made with anything different is discarded.
"""

import json
import logging
import math
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from smallcnn import builders, cached_validation, datasets, devices, monitoring, registry, resume
from smallcnn.atomic import atomic_write
from smallcnn.errors import UserError
from smallcnn.fingerprint import run_fingerprint

log = logging.getLogger(__name__)


def _optimizer(name, learning_rate):
    optimizers = {
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
    }
    return optimizers[name](learning_rate=learning_rate)


def compile_model(model, settings, n_classes, monitors):
    metrics = ["accuracy"]
    if any(m.removeprefix("val_") == "auc" for m in monitors):
        if n_classes != 2:
            raise UserError("monitoring auc needs two classes; monitor val_loss or val_accuracy")
        metrics.append(keras.metrics.AUC(name="auc"))
    model.compile(
        optimizer=_optimizer(settings["optimizer"], settings["learning_rate"]),
        loss="binary_crossentropy" if n_classes == 2 else "sparse_categorical_crossentropy",
        metrics=metrics,
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
    total = sum(counts)
    return {k: total / (n_classes * count) for k, count in enumerate(counts)}


def build_model(settings, inputs, data):
    """The experiment's model, uncompiled, and the record of the weights it started from."""
    return getattr(builders, registry.KINDS[settings["kind"]].builder)(settings, inputs, data)


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
    name = f"{settings['experiment']}/{settings['seed']}"
    seed = settings["seed"]
    keras.utils.set_random_seed(seed)
    runtime = devices.configure(settings["precision"], settings["multi_gpu"], threads=threads)
    work_dir = Path(backup_dir)
    callbacks = settings["callbacks"]
    backup = resume.Backup(work_dir, run_fingerprint(settings, inputs))
    state = None
    if callbacks["backup"]:
        state = backup.load()
    else:
        backup.reset("backups are off")
    keeper = resume.ResumableTraining(callbacks, backup, state, resumable=callbacks["backup"])
    if keeper.initial_epoch:
        log.info(
            "%s: resuming after epoch %d of %d", name, keeper.initial_epoch, settings["epochs"]
        )

    with backup.cache() as cache_dir:
        data = datasets.training_data(settings, inputs, cache_dir)
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
        weighting = class_weights(settings["class_weight"], data.labels, len(data.class_names))
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
        "class_weight": settings["class_weight"],
        "class_weights": (
            {data.class_names[k]: round(w, 6) for k, w in weighting.items()} if weighting else None
        ),
        "lr_changes": _lr_changes(rows),
        "precision": runtime.policy,
        "device": runtime.device,
        "intra_op_threads": runtime.intra_op_threads,
        "inter_op_threads": runtime.inter_op_threads,
        "seed": seed,
        **({"fold": settings["fold"], "folds": settings["folds"]} if "fold" in settings else {}),
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
    """Copy `source` to `target` atomically: a reader never sees half a file, and a failure
    leaves no temporary behind (nor a kill: a rerun publishes over it)."""
    with atomic_write(target) as tmp:
        shutil.copyfile(source, tmp)
