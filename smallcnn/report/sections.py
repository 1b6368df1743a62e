"""The report's sections, each a plain dict for the template."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from smallcnn import figures, registry
from smallcnn.errors import UserError
from smallcnn.report import charts, classes
from smallcnn.report.render import format_percent as percent
from smallcnn.stats import accuracy_ci95, t_quantile
from smallcnn.summary_csv import spread

THUMBNAIL_PIXELS = 112
AUGMENTATION_COLUMNS = 5
# The book's figures are for Dogs vs. Cats: beside any other classes they mean nothing.
BOOK_CLASSES = ["cat", "dog"]
# The training keys the settings table shows (steps_per_epoch and callbacks are in the YAML).
SETTING_KEYS = tuple(k for k in registry.TRAINING_KEYS if k not in ("steps_per_epoch", "callbacks"))


# Short headers: the settings table must fit the page beside the conv base column.
SETTING_HEADERS = {
    "batch_size": "batch",
    "learning_rate": "learning rate",
    "dense_units": "dense",
    "class_weight": "class weight",
}


def interval(runs):
    """95% interval of the mean test accuracy: over the test images (Wilson) for one seed,
    over the seeds (t-interval) for several."""
    accuracies = [run.metrics["test_accuracy"] for run in runs]
    if len(runs) == 1:
        metrics = runs[0].metrics
        return (
            tuple(metrics["accuracy_ci95"])
            if metrics.get("accuracy_ci95")
            else accuracy_ci95(
                round(metrics["test_accuracy"] * metrics["n_test"]), metrics["n_test"]
            )
        )
    stats = spread(accuracies)
    half = t_quantile(0.975, len(runs) - 1) * stats["sd"] / np.sqrt(len(runs))
    return max(0.0, stats["mean"] - half), min(1.0, stats["mean"] + half)


def summary_rows(runs_by_experiment, experiments, best, primary):
    rows = []
    for name, runs in runs_by_experiment.items():
        declared = experiments[name]
        first = runs[0].metrics
        accuracy = spread(run.metrics["test_accuracy"] for run in runs)
        low, high = interval(runs)
        book = None
        if declared["book_settings"] and list(first["class_names"]) == BOOK_CLASSES:
            book = registry.KINDS[declared["kind"]].book_accuracy
        rows.append(
            {
                "name": name,
                "kind": declared["kind"],
                "description": declared["description"],
                "n_seeds": len(runs),
                "accuracy": accuracy["mean"],
                "sd": accuracy["sd"],
                "min": accuracy["min"],
                "max": accuracy["max"],
                "seed_accuracies": [run.metrics["test_accuracy"] for run in runs],
                "ci_low": low,
                "ci_high": high,
                "loss": spread(run.metrics["test_loss"] for run in runs)["mean"],
                "auc": spread(run.metrics["roc_auc"] for run in runs)["mean"],
                "balanced_accuracy": spread(run.metrics["balanced_accuracy"] for run in runs)[
                    "mean"
                ],
                "macro_f1": spread(run.metrics["macro_f1"] for run in runs)["mean"],
                "primary": spread(run.metrics.get(primary) for run in runs)["mean"],
                "n_test": first["n_test"],
                "best_epoch": first["best_epoch"],
                "epochs_run": first["epochs_run"],
                "epochs_mean": spread(run.metrics["epochs_run"] for run in runs)["mean"],
                "stopped_early": sum(bool(run.metrics["stopped_early"]) for run in runs),
                "monitor": runs[0].summary.get("monitor"),
                "train_seconds": spread(run.metrics["train_seconds"] for run in runs)["mean"],
                "params_trainable": first["params_trainable"],
                "params_total": first["params_total"],
                "book": book,
                "is_best": name == best,
            }
        )
    return rows


def accuracy_alt(rows):
    parts = []
    for row in rows:
        text = (
            f"{row['name']} {percent(row['accuracy'])} "
            f"(95% interval {percent(row['ci_low'])} to {percent(row['ci_high'])}"
        )
        if row["n_seeds"] > 1:
            text += f"; {row['n_seeds']} seeds, sd {percent(row['sd'])}"
        if row["book"]:
            text += f"; book {percent(row['book'])}"
        parts.append(text + ")")
    return "Test accuracy per experiment with 95% intervals: " + "; ".join(parts) + "."


def learning_rate_changes(summary):
    """(epoch, rate) of each change after the first epoch, in epoch order."""
    changes = []
    for change in summary.get("lr_changes") or []:
        if change["epoch"] > 1:
            changes.append((int(change["epoch"]), float(change["learning_rate"])))
    return sorted(changes)


def final_epoch(history):
    if history.empty:
        return None
    last = history.iloc[-1]
    return {
        key: float(last[key])
        for key in ("accuracy", "val_accuracy", "loss", "val_loss")
        if key in history
    }


def training_runs(runs_by_experiment):
    """What the learning curves draw: each run's training, or with folds each fold model's (a
    run-like record per seed and fold, its seed named "<seed> fold <i>")."""
    result = {}
    for name, runs in runs_by_experiment.items():
        if not all(run.folds for run in runs):
            result[name] = runs
            continue
        result[name] = [
            SimpleNamespace(
                experiment=name,
                seed=f"{run.seed} fold {fold.fold}",
                history=fold.history,
                summary=fold.summary,
                metrics={
                    key: fold.summary.get(key)
                    for key in ("best_epoch", "epochs_run", "stopped_early")
                },
            )
            for run in runs
            for fold in run.folds
        ]
    return result


def learning_curve_sections(runs_by_experiment, writer):
    sections = []
    for name, runs in runs_by_experiment.items():
        seeds = ", ".join(str(run.seed) for run in runs)
        kept = ", ".join(
            f"{run.metrics['best_epoch']} of {run.metrics['epochs_run']}" for run in runs
        )
        alt = (
            f"Learning curves of {name}: training and validation accuracy and loss, and the "
            "learning rate, per epoch "
            f"for seed{'s' if len(runs) > 1 else ''} {seeds}; kept epoch {kept}."
        )
        title = f"{name}: seeds {seeds}" if len(runs) > 1 else f"{name}: kept epoch {kept}"
        sections.append(
            {
                "name": name,
                "figure": writer.save(
                    charts.learning_curves(runs, title), "learning-curves", name, alt=alt
                ),
                "monitor": runs[0].summary.get("monitor"),
                "runs": [
                    {
                        "seed": run.seed,
                        "best_epoch": run.metrics["best_epoch"],
                        "epochs_run": run.metrics["epochs_run"],
                        "stopped_early": run.metrics["stopped_early"],
                        "first_rate": (
                            float(run.history["learning_rate"].iloc[0])
                            if "learning_rate" in run.history and len(run.history)
                            else None
                        ),
                        "lr_changes": learning_rate_changes(run.summary),
                        "final": final_epoch(run.history),
                    }
                    for run in runs
                ],
            }
        )
    return sections


def augmentation_section(inputs, settings, experiments, splits, writer):
    augmenting = [e["name"] for e in experiments if e["settings"].get("augment")]
    if settings.augmentation is None:
        return {"figure": None, "experiments": augmenting}
    train = splits[splits["split"] == "train"].sort_values("file")
    if train.empty:
        raise UserError(f"{inputs.splits} lists no training image to show augmented")
    relative = train.iloc[0]["path"]
    path = Path(inputs.train) / relative
    if not path.is_file():
        raise UserError(f"{path} is listed in {inputs.splits} but missing; rerun the split job")
    original, augmented = augmented_versions(
        path,
        settings.augmentation,
        settings.seed,
        settings.image_size,
        settings.augmentation_examples,
    )
    figure = writer.save(
        figures.image_grid(
            [original, *augmented],
            ["original", *(f"augmented {i}" for i in range(1, len(augmented) + 1))],
            columns=min(AUGMENTATION_COLUMNS, len(augmented) + 1),
        ),
        "augmentation",
        "grid",
        alt=(
            f"The training image {relative} resized to {settings.image_size[0]}x"
            f"{settings.image_size[1]} and {len(augmented)} random versions of it made by the "
            "training pipeline's augmentation layers (rotated, shifted, sheared, zoomed, flipped)."
        ),
    )
    return {
        "figure": figure,
        "experiments": augmenting,
        "image": relative,
        "settings": settings.augmentation,
    }


def augmented_versions(path, augmentation, seed, image_size, count):
    """The image at `path` as the pipeline loads it, and `count` augmented versions of it made by
    the pipeline's own augmentation layers (imported here: only this section needs TensorFlow)."""
    import keras

    from smallcnn.models import build_augmentation

    height, width = image_size
    image = keras.utils.load_img(path, target_size=(height, width), interpolation="bilinear")
    original = np.asarray(image, dtype="float32")
    augmenter = build_augmentation(dict(augmentation), seed)
    # One batch of copies: the random layers draw a different transform for every image in it.
    batch = np.repeat(original[None], count, axis=0)
    augmented = keras.ops.convert_to_numpy(augmenter(batch, training=True))
    return to_pixels(original), [to_pixels(array) for array in augmented]


def to_pixels(array):
    return np.clip(np.rint(array), 0, 255).astype("uint8")


def confusion_sections(runs_by_experiment, writer):
    """Each experiment's confusion matrix, summed over its seeds, as report.classes shows it."""
    sections = []
    for name, runs in runs_by_experiment.items():
        names = list(runs[0].metrics["class_names"])
        matrix = np.zeros((len(names), len(names)), dtype=int)
        for run in runs:
            counts = np.asarray(run.metrics["confusion_matrix"], dtype=int)
            if counts.shape != matrix.shape:
                raise UserError(
                    f"the confusion matrix of {name} (seed {run.seed}) is not "
                    f"{len(names)}x{len(names)} for its {len(names)} classes; rerun its evaluation"
                )
            matrix += counts
        pooled = {"confusion_matrix": matrix.tolist(), "class_names": names}
        sections.append({**classes.class_section(name, pooled, writer), "n_seeds": len(runs)})
    return sections


def misclassified_section(best_run, test_dir, count, writer):
    """The best experiment's most confidently wrong test images (its first seed)."""
    predictions = best_run.predictions
    wrong = predictions[~predictions["correct"]]
    shown = wrong.sort_values(["probability", "file"], ascending=[False, True]).head(count)
    images = []
    pictures = []
    for row in shown.itertuples():
        path = Path(test_dir) / row.file
        if not path.is_file():
            raise UserError(
                f"{path} is in the predictions of {best_run.experiment} but missing; "
                "rerun the split job"
            )
        small = figures.thumbnail(path, THUMBNAIL_PIXELS)
        images.append(
            {
                "file": row.file,
                "label": row.label,
                "predicted": row.predicted,
                "probability": float(row.probability),
                "uri": figures.png_data_uri(figures.png_bytes(small)),
                "alt": f"Test image {row.file}: a {row.label}, taken for a {row.predicted} "
                f"with probability {float(row.probability):.2f}.",
            }
        )
        pictures.append(np.asarray(small))
    gallery = None
    if images:
        gallery = writer.save(
            figures.image_grid(
                pictures,
                [f"{i['label']} as {i['predicted']}\np={i['probability']:.2f}" for i in images],
                columns=min(6, len(images)),
            ),
            "errors",
            f"most-confidently-wrong-{best_run.experiment}",
            alt=f"The {len(images)} test images {best_run.experiment} got most confidently wrong.",
        )
    return {
        "model": best_run.experiment,
        "seed": best_run.seed,
        "n_wrong": len(wrong),
        "n_test": len(predictions),
        "images": images,
        "gallery": gallery,
    }


def settings_rows(experiments, runs_by_experiment):
    """The effective settings of each experiment: its kind's defaults merged with its overrides,
    and the class weights its training used (the same for every seed: one split)."""
    rows = []
    for experiment in experiments:
        summary = runs_by_experiment[experiment["name"]][0].summary
        settings = experiment["settings"]
        base = experiment["conv_base"] or {}
        overridden = set(experiment["overrides"])
        inherited = registry.KINDS[experiment["kind"]].inherited_keys
        cells = [
            {
                "key": SETTING_HEADERS.get(key, key),
                "value": settings.get(key, "kept" if key in inherited else "-"),
                "overridden": key in overridden,
            }
            for key in SETTING_KEYS
        ]
        rows.append(
            {
                "name": experiment["name"],
                "kind": experiment["kind"],
                "start": experiment["start"],
                "cells": cells,
                "base": base.get("name"),
                "weights": base.get("weights"),
                "unfreeze_from": base.get("unfreeze_from"),
                "base_overridden": "conv_base" in overridden,
                "callbacks": settings.get("callbacks") or {},
                "class_weights": summary.get("class_weights"),
            }
        )
    return rows


def pretrained_weights(summary):
    """{"source", "sha256"} of the conv base's weights, or None for a randomly initialised base
    (or none at all)."""
    weights = summary.get("weights") or {}
    if weights.get("source") in (None, "none"):
        return None
    sha256 = weights.get("sha256")
    return {"source": weights["source"], "sha256": None if sha256 in (None, "none") else sha256}
