"""The comparison report: one self-contained HTML file that says which experiment wins on this
data, by how much, whether the difference is real, and what happened during training."""

import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

from smallcnn import crossval, figures, metrics
from smallcnn.report import charts, confused, duplicates, exports, facts, looks, sections, tta
from smallcnn.report import comparisons as comparing
from smallcnn.report.label_issues import label_issue_section
from smallcnn.report.loading import load_runs, plain, read_csv
from smallcnn.report.render import render
from smallcnn.summary_csv import spread

log = logging.getLogger(__name__)

SPLITS_COLUMNS = ("file", "label", "split", "path")
PRIMARY_LABELS = {key: label for key, label in metrics.PRIMARY_METRICS.values()}
LISTS = (
    "metrics",
    "predictions",
    "histories",
    "summaries",
    "benchmarks",
    "exports",
    "errors",
    "heatmaps",
)


@dataclass
class ReportInputs:
    """Paths the report reads. The per-run lists hold results/<what>/<experiment>/<seed>.<ext>."""

    metrics: list
    predictions: list
    histories: list
    summaries: list
    manifest: Path
    rejections: Path
    near_duplicates: Path
    near_duplicates_split: Path
    splits: Path
    train: Path
    test: Path
    benchmarks: list
    # results/export/<experiment>/<seed> folders, each with model.json and parity.json.
    exports: list = field(default_factory=list)
    # results/errors/<experiment>/<seed>.csv and results/heatmaps/<experiment>/<seed>/: without
    # them the report says that it was given none.
    errors: list = field(default_factory=list)
    heatmaps: list = field(default_factory=list)
    # results/label_issues.csv and the validation folder (for its thumbnails), with
    # cross_validation.folds only.
    label_issues: Path | None = None
    validation: Path | None = None


@dataclass
class ReportSettings:
    """Everything the report needs to know besides its inputs.

    `experiments`: what the rules resolved for each declared experiment (name, kind, start,
    conv_base, settings, overrides, description, book_settings). `run`: the run-wide settings
    shown in the provenance section. `augmentation` is None when no experiment augments (then
    the report shows no augmentation grid and needs no TensorFlow). `repo` is the workflow's
    checkout, whose git state the report records.
    """

    experiments: list
    seeds: list
    primary_metric: str
    run: dict
    repo: str | None
    misclassified: int
    augmentation: dict | None
    augmentation_examples: int
    image_size: tuple
    seed: int
    # evaluation.tta, and the experiments export.experiments: all left out, with why.
    tta: int = 0
    not_exported: dict = field(default_factory=dict)
    # cross_validation.folds: None for the single train / validation split.
    folds: int | None = None


def build_report(inputs, params, out, figures_dir=None):
    """Snakemake entry point: `inputs` and `params` are the rule's named lists."""
    paths = {field.name: getattr(inputs, field.name) for field in fields(ReportInputs)}
    # A named input given one file arrives as a string, not as a list of one.
    paths.update(
        {
            name: [paths[name]] if isinstance(paths[name], str) else list(paths[name])
            for name in LISTS
        }
    )
    # Without folds the rule gives no label-issue file: an empty named input.
    paths["label_issues"] = paths["label_issues"] or None
    paths["validation"] = paths["validation"] or None
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


def report_context(inputs, settings, writer):
    experiments = {e["name"]: e for e in settings.experiments}
    runs = load_runs(inputs, list(experiments), [int(seed) for seed in settings.seeds])
    splits = read_csv(inputs.splits, SPLITS_COLUMNS)
    test_counts = splits[splits["split"] == "test"].groupby("label").size()
    primary, primary_reason = metrics.primary_metric(settings.primary_metric, test_counts.tolist())
    cross_validation = None
    if settings.folds:
        n_images = int(splits["split"].isin(["train", "validation"]).sum())
        cross_validation = {"folds": settings.folds, "n_images": n_images}
        primary_reason += (
            f" With cross_validation.folds: {settings.folds}, the experiments are ranked by their "
            f"cross-validated {PRIMARY_LABELS[primary]}: each of the {n_images:,} train + "
            f"validation images is predicted by the fold model that did not train on it "
            f"({settings.folds} folds per seed, each seed its own partition), a steadier "
            "estimate than one validation split; the held-out test split, in no fold, gives the "
            "second estimate beside it."
        )
    order = comparing.ranked(runs, primary)
    best = order[0]
    rows = sections.summary_rows(runs, experiments, best, primary)
    for row in rows:
        cv = [run.metrics for run in runs[row["name"]] if run.metrics.get("cv")]
        if cv:
            row["cv_accuracy"] = crossval.mean_cv(cv, "accuracy")
            row["cv_sd"] = spread(m["cv"]["accuracy"] for m in cv)["sd"]
            row["cv_primary"] = crossval.mean_cv(cv, crossval.cv_key(primary))
    pairs = comparing.comparisons(runs, order)
    several_seeds = len(settings.seeds) > 1
    tta_effect = tta.tta_section(runs, experiments, settings.tta)
    exported = exports.exports_section(inputs.exports, settings.not_exported)
    return {
        "numbers": section_numbers(tta_effect, exported),
        "title": "smallcnn: comparison report",
        "generated": facts.provenance.now(),
        "experiments": rows,
        "seeds": settings.seeds,
        "several_seeds": several_seeds,
        "best": next(row for row in rows if row["is_best"]),
        # No book figure anywhere (other classes, other settings): no column, note or marker.
        "has_book": any(row["book"] for row in rows),
        "accuracy_figure": writer.save(
            charts.accuracy_chart(rows), "summary", "accuracy", alt=sections.accuracy_alt(rows)
        ),
        "primary": {
            "key": primary,
            "label": PRIMARY_LABELS[primary],
            "reason": primary_reason,
        },
        "comparisons": pairs,
        "verdict": verdict(order, pairs, rows),
        "random_base": [
            name
            for name, experiment_runs in runs.items()
            if experiments[name]["conv_base"]
            and sections.pretrained_weights(experiment_runs[0].summary) is None
        ],
        "significance": comparing.SIGNIFICANCE,
        "min_pairs": comparing.MIN_PAIRS,
        "settings": sections.settings_rows(settings.experiments, runs),
        "curves": sections.learning_curve_sections(sections.training_runs(runs), writer),
        "schedules": {
            name: (e["settings"].get("callbacks") or {}).get("lr_schedule") or {"kind": "none"}
            for name, e in experiments.items()
        },
        "augmentation": sections.augmentation_section(
            inputs, settings, settings.experiments, splits, writer
        ),
        "confusions": sections.confusion_sections(runs, writer),
        "misclassified": sections.misclassified_section(
            runs[best][0], inputs.test, settings.misclassified, writer
        ),
        "tta": tta_effect,
        "exports": exported,
        "confused": confused.errors_section(runs[best][0], inputs.errors, inputs.test),
        "looks": looks.heatmap_section(inputs.heatmaps, runs, order, experiments),
        "data": facts.data_section(splits, inputs.manifest, inputs.rejections),
        "cross_validation": cross_validation,
        "label_issues": label_issue_section(
            inputs.label_issues, Path(inputs.train).parent, settings.folds
        ),
        "near_duplicates": duplicates.near_duplicate_section(
            inputs.near_duplicates, inputs.near_duplicates_split
        ),
        "provenance": facts.provenance_section(
            inputs, settings, runs, {name: e["kind"] for name, e in experiments.items()}
        ),
    }


def section_numbers(tta_effect, exported):
    """The numbers of the sections after Where the model looks (6): TTA and Exports only when
    there is something to show."""
    shown = ["tta"] if tta_effect else []
    shown += ["exports"] if exported["models"] or exported["not_exported"] else []
    return {name: number for number, name in enumerate([*shown, "data", "provenance"], start=7)}


def verdict(order, pairs, rows):
    """comparisons.verdict on accuracy, with the margin in the primary metric beside it."""
    result = comparing.verdict(order, pairs)
    if result is not None:
        # Cross-validated experiments were ranked by their cross-validated figure.
        key = "cv_primary" if all("cv_primary" in row for row in rows) else "primary"
        primary = {row["name"]: row[key] for row in rows}
        best, runner_up = primary[order[0]], primary[result["runner_up"]]
        result["primary_margin"] = None if best is None or runner_up is None else best - runner_up
    return result
