"""The report's test-time augmentation section: what averaging over fixed views did to test
accuracy, measured against the same models without it, and what it cost in inference time.

The deciding test is the comparisons' (smallcnn.report.comparisons.deciding_test): the
seed-paired t-interval with three or more seeds whose differences vary, else McNemar's exact test
with one prediction per image, with and without TTA, each averaged over the seeds."""

import pandas as pd

from smallcnn import registry, tta
from smallcnn.errors import UserError
from smallcnn.report.comparisons import averaged_correct, paired_verdict
from smallcnn.report.loading import parse_probabilities


def _with_tta_probabilities(name, runs):
    """Each run's TTA probability columns checked and parsed, in place."""
    for run in runs:
        if "tta_test_accuracy" not in run.metrics:
            raise UserError(f"the metrics of {name} lack the tta_* figures: rerun its evaluation")
        columns = tta.probability_columns(run.metrics["class_names"])
        missing = [column for column in columns if column not in run.predictions.columns]
        if missing:
            raise UserError(
                f"the predictions of {name}/{run.seed} lack {', '.join(missing)}: they were "
                "written by another version of the workflow; rerun its evaluation"
            )
        parse_probabilities(run.predictions, columns, f"the predictions of {name}/{run.seed}")


def tta_row(name, runs):
    _with_tta_probabilities(name, runs)
    plain = [run.metrics["test_accuracy"] for run in runs]
    augmented = [run.metrics["tta_test_accuracy"] for run in runs]
    differences = [a - p for a, p in zip(augmented, plain, strict=True)]
    # a: without TTA, b: with it.
    joined = pd.concat(
        [averaged_correct(name, runs), averaged_correct(name, runs, tta.probability_columns)],
        axis=1,
        join="inner",
        keys=["a", "b"],
    )
    found = paired_verdict(differences, joined)
    ratios = [run.metrics["tta_time_ratio"] for run in runs if run.metrics["tta_time_ratio"]]
    return {
        "name": name,
        "n_seeds": len(runs),
        "accuracy": sum(plain) / len(plain),
        "tta_accuracy": sum(augmented) / len(augmented),
        "difference": found["mean"],
        "low": found["low"],
        "high": found["high"],
        "only_tta": found["only_b"],
        "only_plain": found["only_a"],
        "p_value": found["p_value"],
        "test": found["test"],
        "why": found["why"],
        "significant": found["significant"],
        "helps": found["b_better"],
        "time_ratio": sum(ratios) / len(ratios) if ratios else None,
    }


def tta_section(runs_by_experiment, experiments, n_views):
    """None when evaluation.tta is 0; else one row per experiment that takes images, and the
    names of those evaluated without TTA because they take features."""
    if not n_views:
        return None
    rows, without = [], []
    for name, runs in runs_by_experiment.items():
        if registry.KINDS[experiments[name]["kind"]].trains_on_features:
            without.append(name)
        else:
            rows.append(tta_row(name, runs))
    views = next(
        (
            runs[0].metrics["tta_views"]
            for name, runs in runs_by_experiment.items()
            if name not in without
        ),
        [],
    )
    return {"n_views": n_views, "views": views, "rows": rows, "without": without}
