"""The report's test-time augmentation section: what averaging over fixed views did to test
accuracy, measured against the same models without it, and what it cost in inference time."""

from smallcnn import registry
from smallcnn.errors import UserError
from smallcnn.report.comparisons import SIGNIFICANCE
from smallcnn.stats import mcnemar_exact, paired_difference


def tta_section(runs_by_experiment, experiments, n_views):
    """None when evaluation.tta is 0; else one row per experiment that takes images, and the
    names of those evaluated without TTA because they take features."""
    if not n_views:
        return None
    rows, without = [], []
    views = None
    for name, runs in runs_by_experiment.items():
        if registry.KINDS[experiments[name]["kind"]].inputs != "images":
            without.append(name)
            continue
        measured = [run for run in runs if "tta_test_accuracy" in run.metrics]
        if len(measured) != len(runs):
            raise UserError(f"the metrics of {name} lack the tta_* figures: rerun its evaluation")
        views = measured[0].metrics["tta_views"]
        plain = [run.metrics["test_accuracy"] for run in runs]
        augmented = [run.metrics["tta_test_accuracy"] for run in runs]
        difference, low, high = paired_difference(
            [a - p for a, p in zip(augmented, plain, strict=True)]
        )
        only_tta = sum(run.metrics["tta_only_right"] for run in runs)
        only_plain = sum(run.metrics["plain_only_right"] for run in runs)
        p_value = mcnemar_exact(only_tta, only_plain)
        ratios = [run.metrics["tta_time_ratio"] for run in runs if run.metrics["tta_time_ratio"]]
        if len(runs) > 1:
            significant = low is not None and (low > 0 or high < 0)
        else:
            significant = p_value < SIGNIFICANCE
        rows.append(
            {
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
                "significant": significant,
                "time_ratio": sum(ratios) / len(ratios) if ratios else None,
            }
        )
    return {"n_views": n_views, "views": views or [], "rows": rows, "without": without}
