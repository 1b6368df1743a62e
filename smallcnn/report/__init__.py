"""The comparison report: one self-contained HTML file that says which experiment wins on this
data, by how much, whether the difference is real, and what happened during training."""

import logging
from dataclasses import dataclass, fields
from pathlib import Path

from smallcnn import figures, metrics
from smallcnn.report import charts, duplicates, facts, sections
from smallcnn.report import comparisons as comparing
from smallcnn.report.loading import load_runs, plain, read_csv
from smallcnn.report.render import render

log = logging.getLogger(__name__)

SPLITS_COLUMNS = ("file", "label", "split", "path")
PRIMARY_LABELS = {key: label for key, label in metrics.PRIMARY_METRICS.values()}
LISTS = ("metrics", "predictions", "histories", "summaries", "benchmarks")


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
    order = comparing.ranked(runs, primary)
    best = order[0]
    rows = sections.summary_rows(runs, experiments, best, primary)
    pairs = comparing.comparisons(runs, order)
    several_seeds = len(settings.seeds) > 1
    return {
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
        "curves": sections.learning_curve_sections(runs, writer),
        "augmentation": sections.augmentation_section(
            inputs, settings, settings.experiments, splits, writer
        ),
        "confusions": sections.confusion_sections(runs, writer),
        "misclassified": sections.misclassified_section(
            runs[best][0], inputs.test, settings.misclassified, writer
        ),
        "data": facts.data_section(splits, inputs.manifest, inputs.rejections),
        "near_duplicates": duplicates.near_duplicate_section(
            inputs.near_duplicates, inputs.near_duplicates_split
        ),
        "provenance": facts.provenance_section(
            inputs, settings, runs, {name: e["kind"] for name, e in experiments.items()}
        ),
    }


def verdict(order, pairs, rows):
    """comparisons.verdict on accuracy, with the margin in the primary metric beside it."""
    result = comparing.verdict(order, pairs)
    if result is not None:
        primary = {row["name"]: row["primary"] for row in rows}
        best, runner_up = primary[order[0]], primary[result["runner_up"]]
        result["primary_margin"] = None if best is None or runner_up is None else best - runner_up
    return result
