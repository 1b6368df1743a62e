"""The report's test-time augmentation section: what averaging over fixed views did to test
accuracy, measured against the same models without it, and what it cost in inference time.

The deciding test is the comparisons' (smallcnn.report.comparisons.deciding_test): the
seed-paired t-interval with three or more seeds whose differences vary, else McNemar's exact test
with one prediction per image, with and without TTA, each averaged over the seeds."""

import pandas as pd

from smallcnn import registry, tta
from smallcnn.errors import UserError
from smallcnn.report.comparisons import SIGNIFICANCE, averaged_correct, deciding_test
from smallcnn.report.loading import parse_probabilities
from smallcnn.stats import discordant_pairs, mcnemar_exact, paired_difference


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
    difference, low, high = paired_difference(differences)
    joined = pd.concat(
        [averaged_correct(name, runs), averaged_correct(name, runs, tta.probability_columns)],
        axis=1,
        join="inner",
        keys=["plain", "tta"],
    )
    only_plain, only_tta = discordant_pairs(joined["plain"], joined["tta"])
    p_value = mcnemar_exact(only_tta, only_plain)
    test, why = deciding_test(differences)
    if test == "paired-t":
        significant = low > 0 or high < 0
        helps = difference > 0
    else:
        significant = p_value < SIGNIFICANCE
        helps = only_tta > only_plain
    ratios = [run.metrics["tta_time_ratio"] for run in runs if run.metrics["tta_time_ratio"]]
    return {
        "name": name,
        "n_seeds": len(runs),
        "accuracy": sum(plain) / len(plain),
        "tta_accuracy": sum(augmented) / len(augmented),
        "difference": difference,
        "low": low,
        "high": high,
        "only_tta": only_tta,
        "only_plain": only_plain,
        "p_value": p_value,
        "test": test,
        "why": why,
        "significant": significant,
        "helps": helps,
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
