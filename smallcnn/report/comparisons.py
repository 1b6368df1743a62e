"""Which experiment wins, and whether the difference is real.

With one seed per experiment the only randomness left to judge is the test set's, and McNemar's
exact test on the shared test images answers it. With several seeds, training randomness (the
initialisation, data order and augmentation) is the larger part, so the verdict rests on the
seed-paired differences: the same seed drives the same data order in both experiments, and a
t-interval of their mean says whether the gap outlasts a change of seed. McNemar on the pooled
predictions is still shown, but it treats each seed's prediction of an image as a new image, so
it overstates certainty.
"""

from smallcnn.errors import UserError
from smallcnn.stats import discordant_pairs, mcnemar_exact, paired_difference

SIGNIFICANCE = 0.05


def mean_accuracy(runs):
    return sum(run.metrics["test_accuracy"] for run in runs) / len(runs)


def mean_loss(runs):
    return sum(run.metrics["test_loss"] for run in runs) / len(runs)


def mean_metric(runs, key):
    """Mean of a metrics key over the seeds; None where it is undefined for every seed (e.g.
    ROC AUC on a test split of one class)."""
    values = [run.metrics[key] for run in runs if run.metrics.get(key) is not None]
    return sum(values) / len(values) if values else None


def ranked(runs_by_experiment, key="test_accuracy"):
    """Experiment names, best first: highest mean of the primary metric `key`, then highest
    mean accuracy, then lowest mean test loss. An undefined metric ranks last."""

    def order(name):
        runs = runs_by_experiment[name]
        value = mean_metric(runs, key)
        return (value is None, -(value or 0.0), -mean_accuracy(runs), mean_loss(runs))

    return sorted(runs_by_experiment, key=order)


def pairs_to_compare(names, order):
    """Consecutive declared experiments, the first against the best, and the best against the
    runner-up (the comparison that says whether the winner really wins)."""
    pairs = list(zip(names, names[1:], strict=False))
    extra = []
    if len(order) > 1:
        extra.append((names[0], order[0]))
        extra.append(tuple(sorted(order[:2], key=names.index)))
    for a, b in extra:
        if a != b and (a, b) not in pairs and (b, a) not in pairs:
            pairs.append((a, b))
    return pairs


def compare(a_name, a_runs, b_name, b_runs):
    """One row of the comparison table between two experiments, paired seed by seed."""
    b_by_seed = {run.seed: run for run in b_runs}
    paired = [(run, b_by_seed[run.seed]) for run in a_runs if run.seed in b_by_seed]
    if not paired:
        raise UserError(f"{a_name} and {b_name} share no seed: they cannot be compared paired")
    only_a = only_b = shared = unshared = 0
    differences = []
    for a, b in paired:
        joined = a.predictions[["file", "correct"]].merge(
            b.predictions[["file", "correct"]], on="file", suffixes=("_a", "_b")
        )
        if joined.empty:
            raise UserError(
                f"the predictions of {a_name} and {b_name} (seed {a.seed}) share no test image "
                "(joined on file): they were evaluated on different test sets; rerun both"
            )
        right_a, right_b = discordant_pairs(joined["correct_a"], joined["correct_b"])
        only_a, only_b = only_a + right_a, only_b + right_b
        shared += len(joined)
        unshared += max(len(a.predictions), len(b.predictions)) - len(joined)
        differences.append(b.metrics["test_accuracy"] - a.metrics["test_accuracy"])
    p_value = mcnemar_exact(only_a, only_b)
    mean, low, high = paired_difference(differences)
    if low is None:
        significant = p_value < SIGNIFICANCE
        test = "mcnemar"
    else:
        significant = low > 0 or high < 0
        test = "paired-t"
    better = None
    if significant:
        better = b_name if mean > 0 else a_name
    return {
        "a": a_name,
        "b": b_name,
        "n_seeds": len(paired),
        "accuracy_a": mean_accuracy([a for a, _ in paired]),
        "accuracy_b": mean_accuracy([b for _, b in paired]),
        "difference": mean,
        "difference_low": low,
        "difference_high": high,
        "only_a": only_a,
        "only_b": only_b,
        "shared": shared,
        "unshared": unshared,
        "p_value": p_value,
        "test": test,
        "significant": significant,
        "better": better,
    }


def comparisons(runs_by_experiment, order):
    names = list(runs_by_experiment)
    return [
        compare(a, runs_by_experiment[a], b, runs_by_experiment[b])
        for a, b in pairs_to_compare(names, order)
    ]


def verdict(order, rows):
    """How the best experiment compares with the runner-up, or None with one experiment."""
    if len(order) < 2:
        return None
    best, runner_up = order[0], order[1]
    row = next(r for r in rows if {r["a"], r["b"]} == {best, runner_up})
    sign = 1 if row["b"] == best else -1
    low, high = row["difference_low"], row["difference_high"]
    return {
        "runner_up": runner_up,
        "margin": sign * row["difference"],
        "low": None if low is None else (sign * low if sign > 0 else -high),
        "high": None if high is None else (sign * high if sign > 0 else -low),
        "p_value": row["p_value"],
        "test": row["test"],
        "significant": row["significant"],
    }
