"""The comparison report: one self-contained HTML file that says which approach wins on this data,
by how much, whether the difference is real, and what happened during training."""

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import yaml

from smallcnn import figures, provenance
from smallcnn.errors import UserError
from smallcnn.stats import discordant_pairs, mcnemar_exact

log = logging.getLogger(__name__)

# The book's progression: each experiment adds one idea to the one before, so "consecutive"
# comparisons follow this order whatever order the config lists them in.
ORDER = ("scratch", "augmented", "features", "frozen", "finetuned")

DESCRIPTIONS = {
    "scratch": "small convnet trained from scratch",
    "augmented": "the same convnet with data augmentation and dropout",
    "features": "dense classifier on {base} features extracted once",
    "frozen": "frozen {base} base with a new head, trained on augmented images",
    "finetuned": "the frozen model fine-tuned with the base's last block unfrozen",
}

# Reference points, not results of this run: Chollet, Deep Learning with Python (1st ed.), ch. 5,
# 2,000 training images of Dogs vs. Cats at 150x150, VGG16 with ImageNet weights. Validation
# accuracy as the book reads it off its curves, except finetuned, which the book reports on test.
BOOK_ACCURACY = {
    "scratch": 0.71,
    "augmented": 0.82,
    "features": 0.90,
    "frozen": 0.96,
    "finetuned": 0.968,
}

# Experiments built on the pretrained conv base.
PRETRAINED = ("features", "frozen", "finetuned")
BASE_NAMES = {
    "vgg16": "VGG16",
    "mobilenetv2": "MobileNetV2",
    "resnet50": "ResNet50",
    "efficientnetb0": "EfficientNetB0",
}

SIGNIFICANCE = 0.05
THUMBNAIL_PIXELS = 112
AUGMENTATION_COLUMNS = 5

METRICS_KEYS = (
    "test_accuracy",
    "test_loss",
    "roc_auc",
    "confusion_matrix",
    "class_names",
    "n_test",
    "accuracy_ci95",
    "epochs_run",
    "best_epoch",
    "stopped_early",
    "train_seconds",
    "params_trainable",
    "params_total",
)
HISTORY_COLUMNS = ("epoch", "accuracy", "loss")
PREDICTION_COLUMNS = ("file", "label", "predicted", "probability", "correct")
SPLITS_COLUMNS = ("file", "label", "split", "path")
MANIFEST_COLUMNS = ("file", "label", "status", "detail")
SPLITS = ("train", "validation", "test")


@dataclass
class ReportInputs:
    """Paths the report reads. The per-experiment lists are matched to experiments by file stem
    (results/metrics/scratch.json belongs to scratch)."""

    metrics: list
    predictions: list
    histories: list
    summaries: list
    manifest: Path
    rejections: Path
    splits: Path
    train: Path
    test: Path
    benchmarks: list


@dataclass
class ReportSettings:
    """Everything the report needs to know besides its inputs.

    `augmentation` is the config's augmentation block, or None when no reported experiment
    trains with augmentation (then the report shows no augmentation grid and needs no TensorFlow).
    `repo` is the workflow's checkout, whose git state the report records.
    """

    experiments: list
    config: dict
    repo: str | None
    misclassified: int
    augmentation: dict | None
    augmentation_examples: int
    image_size: tuple
    seed: int


@dataclass
class Experiment:
    name: str
    metrics: dict
    summary: dict
    history: pd.DataFrame
    predictions: pd.DataFrame


def build_report(inputs, params, out, figures_dir=None):
    """Snakemake entry point: `inputs` and `params` are the rule's named lists."""
    lists = ("metrics", "predictions", "histories", "summaries", "benchmarks")
    paths = {field.name: getattr(inputs, field.name) for field in fields(ReportInputs)}
    # A named input given one file arrives as a string, not as a list of one.
    paths.update(
        {
            name: [paths[name]] if isinstance(paths[name], str) else list(paths[name])
            for name in lists
        }
    )
    write_report(
        ReportInputs(**paths),
        ReportSettings(
            **{field.name: plain(getattr(params, field.name)) for field in fields(ReportSettings)}
        ),
        out=out,
        figures_dir=figures_dir,
    )


def write_report(inputs, settings, out, figures_dir=None):
    """Render the report to `out`; figures also go to `figures_dir` (for `snakemake --report`)."""
    context = report_context(inputs, settings, figures.FigureWriter(figures_dir))
    html = render(context)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    log.info("wrote %s (%.2f MB)", out, out.stat().st_size / 1e6)
    return out


def render(context):
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        percent=format_percent,
        pvalue=format_pvalue,
        duration=format_duration,
        thousands=format_thousands,
        number=format_number,
    )
    return environment.get_template("report.html.j2").render(**context)


def report_context(inputs, settings, writer):
    experiments = load_experiments(inputs, settings.experiments)
    order = ranked(experiments)
    best = order[0]
    base_name = settings.config.get("conv_base", {}).get("name", "conv base")
    base = BASE_NAMES.get(base_name, base_name)
    rows = summary_rows(experiments, best, base)
    pairs = comparisons(experiments)
    splits = read_csv(inputs.splits, SPLITS_COLUMNS)
    return {
        "title": "smallcnn: comparison report",
        "generated": provenance.now(),
        "experiments": rows,
        "best": next(row for row in rows if row["is_best"]),
        "accuracy_figure": writer.save(
            figures.accuracy_chart(rows),
            "summary",
            "accuracy",
            alt=accuracy_alt(rows),
        ),
        "comparisons": pairs,
        "verdict": verdict(order, pairs),
        "base": base,
        "random_base": [
            e.name
            for e in experiments
            if e.name in PRETRAINED and pretrained_weights(e.summary) is None
        ],
        "significance": SIGNIFICANCE,
        "curves": learning_curve_sections(experiments, writer),
        "augmentation": augmentation_section(inputs, settings, splits, writer),
        "confusions": confusion_sections(experiments, writer),
        "misclassified": misclassified_section(best, inputs.test, settings.misclassified, writer),
        "data": data_section(splits, inputs.manifest, inputs.rejections),
        "provenance": provenance_section(inputs, settings, experiments),
    }


# ----------------------------------------------------------------------------- loading


def plain(value):
    """Snakemake's config and named lists as plain dicts and lists (for YAML and templates)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def read_json(path, keys):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}; rerun the job that writes it") from None
    missing = [key for key in keys if key not in data]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)}: it was written by another version of the "
            "workflow; delete it and rerun"
        )
    return data


def read_csv(path, columns):
    try:
        table = pd.read_csv(path, dtype={"file": str, "label": str, "predicted": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"cannot read {path}: {error}; rerun the job that writes it") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise UserError(
            f"{path} lacks the column(s) {', '.join(missing)}: it was written by another "
            "version of the workflow; delete it and rerun"
        )
    return table


def by_experiment(paths, experiments, kind):
    found = {Path(path).stem: Path(path) for path in paths}
    missing = [name for name in experiments if name not in found]
    if missing:
        raise UserError(
            f"no {kind} file for {', '.join(missing)} among the report's inputs "
            f"({', '.join(str(path) for path in paths) or 'none'})"
        )
    return found


def parse_correct(column, path):
    values = column.astype(str).str.strip().str.lower()
    mapping = {"true": True, "false": False, "1": True, "0": False}
    unknown = sorted(set(values) - set(mapping))
    if unknown:
        raise UserError(f"{path}: column correct holds {unknown[:3]}, expected true or false")
    return values.map(mapping).astype(bool)


def load_experiments(inputs, names):
    unknown = [name for name in names if name not in ORDER]
    if unknown:
        raise UserError(f"unknown experiment(s) {unknown}; known: {', '.join(ORDER)}")
    if not names:
        raise UserError("the report needs at least one experiment (config key experiments)")
    names = sorted(set(names), key=ORDER.index)
    metrics = by_experiment(inputs.metrics, names, "metrics")
    summaries = by_experiment(inputs.summaries, names, "training summary")
    histories = by_experiment(inputs.histories, names, "history")
    predictions = by_experiment(inputs.predictions, names, "predictions")
    experiments = []
    for name in names:
        table = read_csv(predictions[name], PREDICTION_COLUMNS)
        table["correct"] = parse_correct(table["correct"], predictions[name])
        experiments.append(
            Experiment(
                name=name,
                metrics=read_json(metrics[name], METRICS_KEYS),
                summary=read_json(summaries[name], ("experiment",)),
                history=read_csv(histories[name], HISTORY_COLUMNS),
                predictions=table,
            )
        )
    return experiments


# ----------------------------------------------------------------------------- sections


def summary_rows(experiments, best, base):
    rows = []
    for experiment in experiments:
        metrics = experiment.metrics
        low, high = metrics["accuracy_ci95"]
        rows.append(
            {
                "name": experiment.name,
                "description": DESCRIPTIONS[experiment.name].format(base=base),
                "accuracy": metrics["test_accuracy"],
                "ci_low": low,
                "ci_high": high,
                "loss": metrics["test_loss"],
                "auc": metrics["roc_auc"],
                "n_test": metrics["n_test"],
                "best_epoch": metrics["best_epoch"],
                "epochs_run": metrics["epochs_run"],
                "stopped_early": metrics["stopped_early"],
                "monitor": experiment.summary.get("monitor"),
                "train_seconds": metrics["train_seconds"],
                "params_trainable": metrics["params_trainable"],
                "params_total": metrics["params_total"],
                "book": BOOK_ACCURACY.get(experiment.name),
                "is_best": experiment is best,
            }
        )
    return rows


def accuracy_alt(rows):
    parts = [
        f"{row['name']} {format_percent(row['accuracy'])} "
        f"(95% interval {format_percent(row['ci_low'])} to {format_percent(row['ci_high'])}"
        + (f"; book {format_percent(row['book'])})" if row["book"] else ")")
        for row in rows
    ]
    return "Test accuracy per experiment with 95% intervals: " + "; ".join(parts) + "."


def ranked(experiments):
    """Best first: highest test accuracy, then lowest test loss."""
    return sorted(experiments, key=lambda e: (-e.metrics["test_accuracy"], e.metrics["test_loss"]))


def comparisons(experiments):
    """McNemar's exact test between consecutive experiments, scratch against the best, and the
    best against the runner-up (the comparison that says whether the winner really wins)."""
    pairs = list(zip(experiments, experiments[1:], strict=False))
    order = ranked(experiments)
    scratch = next((e for e in experiments if e.name == "scratch"), None)
    extra = [(scratch, order[0])] if scratch is not None else []
    extra += [tuple(sorted(order[:2], key=experiments.index))] if len(order) > 1 else []
    for a, b in extra:
        if a is not b and (a, b) not in pairs:
            pairs.append((a, b))
    rows = []
    for a, b in pairs:
        joined = a.predictions[["file", "correct"]].merge(
            b.predictions[["file", "correct"]], on="file", suffixes=("_a", "_b")
        )
        if joined.empty:
            raise UserError(
                f"the predictions of {a.name} and {b.name} share no test image (joined on file): "
                "they were evaluated on different test sets; rerun both evaluations"
            )
        only_a, only_b = discordant_pairs(joined["correct_a"], joined["correct_b"])
        p_value = mcnemar_exact(only_a, only_b)
        rows.append(
            {
                "a": a.name,
                "b": b.name,
                "accuracy_a": float(joined["correct_a"].mean()),
                "accuracy_b": float(joined["correct_b"].mean()),
                "only_a": only_a,
                "only_b": only_b,
                "shared": len(joined),
                "unshared": max(len(a.predictions), len(b.predictions)) - len(joined),
                "p_value": p_value,
                "significant": p_value < SIGNIFICANCE,
                "better": a.name if only_a > only_b else b.name if only_b > only_a else None,
            }
        )
    return rows


def verdict(order, pairs):
    """How the best experiment compares with the runner-up, or None with a single experiment."""
    if len(order) < 2:
        return None
    best, runner_up = order[0], order[1]
    pair = next(row for row in pairs if {row["a"], row["b"]} == {best.name, runner_up.name})
    return {
        "runner_up": runner_up.name,
        "margin": best.metrics["test_accuracy"] - runner_up.metrics["test_accuracy"],
        "p_value": pair["p_value"],
        "significant": pair["significant"],
    }


def learning_rate_changes(summary):
    """(epoch, rate) of each change after the first epoch, in epoch order."""
    changes = []
    for change in summary.get("lr_changes") or []:
        if change["epoch"] > 1:
            changes.append((int(change["epoch"]), float(change["learning_rate"])))
    return sorted(changes)


def learning_curve_sections(experiments, writer):
    sections = []
    for experiment in experiments:
        metrics = experiment.metrics
        history = experiment.history
        changes = learning_rate_changes(experiment.summary)
        title = f"{experiment.name}: best epoch {metrics['best_epoch']} of {metrics['epochs_run']}"
        first_rate = (
            float(history["learning_rate"].iloc[0])
            if "learning_rate" in history and len(history)
            else None
        )
        alt = (
            f"Learning curves of {experiment.name}: training and validation accuracy and loss "
            f"over {len(history)} epochs; the kept model is from epoch {metrics['best_epoch']}"
            + (
                "; learning rate lowered at epoch(s) "
                + ", ".join(f"{epoch} (to {rate:.1e})" for epoch, rate in changes)
                if changes
                else "; learning rate constant"
            )
            + "."
        )
        sections.append(
            {
                "name": experiment.name,
                "figure": writer.save(
                    figures.learning_curves(history, metrics["best_epoch"], changes, title),
                    "learning-curves",
                    experiment.name,
                    alt=alt,
                ),
                "best_epoch": metrics["best_epoch"],
                "epochs_run": metrics["epochs_run"],
                "stopped_early": metrics["stopped_early"],
                "monitor": experiment.summary.get("monitor"),
                "first_rate": first_rate,
                "lr_changes": changes,
                "final": final_epoch(history),
            }
        )
    return sections


def final_epoch(history):
    if history.empty:
        return None
    last = history.iloc[-1]
    return {
        key: float(last[key])
        for key in ("accuracy", "val_accuracy", "loss", "val_loss")
        if key in history
    }


def augmentation_section(inputs, settings, splits, writer):
    augmenting = [
        name
        for name in settings.experiments
        if settings.config.get("training", {}).get(name, {}).get("augment")
    ]
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


def confusion_sections(experiments, writer):
    sections = []
    for experiment in experiments:
        matrix = np.asarray(experiment.metrics["confusion_matrix"], dtype=int)
        names = list(experiment.metrics["class_names"])
        if matrix.shape != (len(names), len(names)):
            raise UserError(
                f"the confusion matrix of {experiment.name} is {matrix.shape[0]}x"
                f"{matrix.shape[1] if matrix.ndim > 1 else 0} but it has {len(names)} classes; "
                "rerun its evaluation"
            )
        totals = matrix.sum(axis=1)
        rows = []
        for i, label in enumerate(names):
            cells = [
                {"count": int(count), "share": count / totals[i] if totals[i] else 0.0}
                for count in matrix[i]
            ]
            rows.append({"label": label, "cells": cells, "total": int(totals[i]), "index": i})
        alt = (
            f"Confusion matrix of {experiment.name} (rows true class, columns predicted): "
            + "; ".join(
                f"true {label}: "
                + ", ".join(f"{int(c)} as {n}" for c, n in zip(matrix[i], names, strict=True))
                for i, label in enumerate(names)
            )
            + "."
        )
        sections.append(
            {
                "name": experiment.name,
                "class_names": names,
                "rows": rows,
                "figure": writer.save(
                    figures.confusion_matrix(matrix, names, experiment.name),
                    "confusion",
                    experiment.name,
                    alt=alt,
                ),
            }
        )
    return sections


def misclassified_section(best, test_dir, count, writer):
    wrong = best.predictions[~best.predictions["correct"]]
    shown = wrong.sort_values(["probability", "file"], ascending=[False, True]).head(count)
    images = []
    pictures = []
    for row in shown.itertuples():
        path = Path(test_dir) / row.file
        if not path.is_file():
            raise UserError(
                f"{path} is in the predictions of {best.name} but missing; rerun the split job"
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
            f"most-confidently-wrong-{best.name}",
            alt=f"The {len(images)} test images {best.name} got most confidently wrong.",
        )
    return {
        "model": best.name,
        "n_wrong": len(wrong),
        "n_test": len(best.predictions),
        "images": images,
        "gallery": gallery,
    }


def data_section(splits, manifest_path, rejections_path):
    counts = splits.groupby(["label", "split"]).size().unstack(fill_value=0)
    columns = [split for split in SPLITS if split in counts.columns] + [
        split for split in counts.columns if split not in SPLITS
    ]
    counts = counts.reindex(columns=columns, fill_value=0)
    rows = [
        {
            "label": label,
            "counts": [int(v) for v in counts.loc[label]],
            "total": int(counts.loc[label].sum()),
        }
        for label in counts.index
    ]
    totals = [int(v) for v in counts.sum(axis=0)]

    manifest = read_csv(manifest_path, MANIFEST_COLUMNS)
    rejections = read_json(rejections_path, ("n_files", "n_ok"))
    rejected = manifest[manifest["status"] != "ok"].fillna({"detail": ""})
    reasons = []
    for status, group in rejected.groupby("status", sort=False):
        examples = group.sort_values("file").head(5)
        reasons.append(
            {
                "reason": status,
                "count": len(group),
                "examples": [
                    {"file": row.file, "detail": row.detail} for row in examples.itertuples()
                ],
            }
        )
    reasons.sort(key=lambda reason: (-reason["count"], reason["reason"]))
    return {
        "splits": columns,
        "rows": rows,
        "totals": totals,
        "total": sum(totals),
        "n_files": rejections["n_files"],
        "n_ok": rejections["n_ok"],
        "n_rejected": len(rejected),
        "reasons": reasons,
    }


def pretrained_weights(summary):
    """{"source", "sha256"} of the conv base's weights, or None for a randomly initialised base
    (or none at all)."""
    weights = summary.get("weights") or {}
    if weights.get("source") in (None, "none"):
        return None
    sha256 = weights.get("sha256")
    return {"source": weights["source"], "sha256": None if sha256 in (None, "none") else sha256}


def provenance_section(inputs, settings, experiments):
    training = []
    for experiment in experiments:
        summary = experiment.summary
        versions = summary.get("versions") or {}
        training.append(
            {
                "name": experiment.name,
                "device": summary.get("device"),
                "precision": summary.get("precision"),
                "seed": summary.get("seed"),
                "tensorflow": versions.get("tensorflow"),
                "keras": versions.get("keras"),
                "uses_base": experiment.name in PRETRAINED,
                "weights": pretrained_weights(summary),
            }
        )
    jobs = provenance.benchmarks(inputs.benchmarks)
    return {
        "config": yaml.safe_dump(settings.config, sort_keys=False, default_flow_style=False),
        "versions": provenance.package_versions(),
        "git": provenance.git_state(settings.repo),
        "machine": provenance.machine(),
        "training": training,
        "benchmarks": jobs,
        "benchmark_total": {
            key: sum(job[key] for job in jobs if job[key] is not None)
            for key in ("seconds", "cpu_seconds")
        },
    }


# ----------------------------------------------------------------------------- formatting


def format_percent(value, digits=1):
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def format_pvalue(value):
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def format_duration(seconds):
    if seconds is None:
        return "n/a"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_thousands(value):
    return "n/a" if value is None else f"{int(value):,}"


def format_number(value, digits=3):
    return "n/a" if value is None else f"{value:.{digits}f}"
