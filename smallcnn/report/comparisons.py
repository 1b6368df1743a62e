"""Which experiment wins, and whether the difference is real.

Two tests, and a rule for which one decides (`deciding_test`):
- the seed-paired t-interval: the same seed drives the same data order in both experiments, and
  a t-interval of the mean of the seed-paired differences says whether the gap outlasts a change
  of seed (training randomness: initialisation, data order, augmentation). It estimates the
  seed's spread from the pairs themselves, so it decides only with at least three seeds whose
  differences vary: with two it has one degree of freedom, and equal differences give an
  interval of zero width that would call any gap, one image out of twenty included, real.
- McNemar's exact test on the shared test images, with one prediction per image and experiment:
  its class probabilities averaged over its seeds. Pooling every seed's predictions instead
  would count each image once per seed, as if there were that many more images.
McNemar is computed for every comparison; it decides whenever the t-interval may not.

With cross_validation.folds the pairs are folds: the same seed draws the same partition for
every experiment, so fold i of seed s holds the same held-out images in both, and the k*r
fold-paired differences of out-of-fold accuracy are compared by the corrected repeated k-fold cv
test (Nadeau & Bengio 2003; Bouckaert & Frank 2004): the folds share most of their training
images, so a plain t-test over them would be over-confident. With fewer than three pairs, or the
same difference on all of them, McNemar on the held-out test split decides, as without folds.
"""

import pandas as pd

from smallcnn import crossval
from smallcnn.errors import UserError
from smallcnn.metrics import predicted_classes, probability_columns
from smallcnn.stats import (
    corrected_repeated_kfold_t,
    discordant_pairs,
    mcnemar_exact,
    paired_difference,
)

SIGNIFICANCE = 0.05
# Seed pairs the t-interval needs before it may decide: with two it has one degree of freedom.
MIN_PAIRS = 3
# Differences of accuracies closer than this are the same difference (one image in a billion):
# 0.55 - 0.50 and 0.60 - 0.55 differ in the last bits of a float.
SAME_DIFFERENCE = 1e-9


def mean_accuracy(runs):
    return sum(run.metrics["test_accuracy"] for run in runs) / len(runs)


def mean_loss(runs):
    return sum(run.metrics["test_loss"] for run in runs) / len(runs)


def mean_metric(runs, key):
    """Mean of a metrics key over the seeds; None where it is undefined for every seed (e.g.
    ROC AUC on a test split of one class)."""
    values = [run.metrics[key] for run in runs if run.metrics.get(key) is not None]
    return sum(values) / len(values) if values else None


def cross_validated(runs):
    """Whether the runs were cross-validated (their metrics carry a `cv` block)."""
    return all(run.metrics.get("cv") for run in runs)


def ranked(runs_by_experiment, key="test_accuracy"):
    """Experiment names, best first: highest mean of the primary metric `key`, then highest
    mean accuracy, then lowest mean test loss. An undefined metric ranks last. Cross-validated
    experiments rank by their cross-validated figures (crossval.rank_key), every train +
    validation image counted, not by the one test split."""

    def order(name):
        runs = runs_by_experiment[name]
        if cross_validated(runs):
            return crossval.rank_key([run.metrics for run in runs], key)
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


def deciding_test(differences, folds=None):
    """("paired-t", "corrected-t" or "mcnemar", why) for a comparison with these paired
    differences: seed-paired, or fold-paired over k = `folds` folds and r seeds.

    The one place the rule lives. `why` completes the report's "<test> decides because ...".
    """
    n = len(differences)
    if folds:
        pairs = f"{folds} folds \u00d7 {n // folds} seed{'s' if n // folds > 1 else ''}"
        if n < MIN_PAIRS:
            return "mcnemar", (
                f"{pairs} give {n} fold-paired differences, too few for the corrected t-test "
                f"(it needs {MIN_PAIRS})"
            )
        if max(differences) - min(differences) < SAME_DIFFERENCE:
            return "mcnemar", (
                f"the difference is the same on all {n} folds, so the corrected t-test has "
                "zero width and measures nothing"
            )
        return "corrected-t", (
            f"{pairs} give {n} fold-paired differences; the folds share most of their training "
            "images, so a plain t-test over them would be over-confident, and the corrected "
            f"repeated k-fold test widens its variance to (1/{n} + n_test/n_train) times theirs "
            f"with {n - 1} degrees of freedom (Nadeau & Bengio 2003; Bouckaert & Frank 2004)"
        )
    if n == 1:
        return "mcnemar", "there is one seed"
    if n < MIN_PAIRS:
        return "mcnemar", f"{n} seeds are too few for a seed-paired interval (it needs {MIN_PAIRS})"
    if max(differences) - min(differences) < SAME_DIFFERENCE:
        return (
            "mcnemar",
            f"the difference is the same on all {n} seeds, so the seed-paired interval has "
            "zero width and measures nothing",
        )
    return "paired-t", f"{n} seeds give differences that vary"


def averaged_correct(name, runs, columns_of=probability_columns):
    """Whether the experiment's prediction of each test image is right, one prediction per image:
    its class probabilities averaged over the seeds, then the class as the evaluation predicts it
    (the most probable; of two classes the second above 0.5). With one seed that is the seed's
    own prediction. A boolean Series by file, of the images every seed predicted.

    `columns_of`: class names -> the predictions' probability columns (smallcnn.tta's for the
    probabilities with test-time augmentation)."""
    class_names = list(runs[0].metrics["class_names"])
    for run in runs[1:]:
        if list(run.metrics["class_names"]) != class_names:
            raise UserError(
                f"{name}: seed {run.seed} has classes {run.metrics['class_names']}, seed "
                f"{runs[0].seed} {class_names}; rerun its training and evaluation"
            )
    columns = columns_of(class_names)
    tables = [run.predictions.set_index("file") for run in runs]
    files = tables[0].index
    for table in tables[1:]:
        files = files[files.isin(table.index)]
    probabilities = sum(table.loc[files, columns].to_numpy() for table in tables) / len(tables)
    index = {label: k for k, label in enumerate(class_names)}
    labels = tables[0].loc[files, "label"].map(index).to_numpy()
    return pd.Series(predicted_classes(probabilities) == labels, index=files, dtype=bool)


def compare(a_name, a_runs, b_name, b_runs):
    """One row of the comparison table between two experiments, paired seed by seed (and fold by
    fold when cross-validated: then `difference` and its interval are of out-of-fold accuracy,
    `test_difference` of the held-out test accuracy)."""
    b_by_seed = {run.seed: run for run in b_runs}
    paired = [(run, b_by_seed[run.seed]) for run in a_runs if run.seed in b_by_seed]
    if not paired:
        raise UserError(f"{a_name} and {b_name} share no seed: they cannot be compared paired")
    differences = [b.metrics["test_accuracy"] - a.metrics["test_accuracy"] for a, b in paired]
    a_correct = averaged_correct(a_name, [a for a, _ in paired])
    b_correct = averaged_correct(b_name, [b for _, b in paired])
    joined = pd.concat([a_correct, b_correct], axis=1, join="inner", keys=["a", "b"])
    if joined.empty:
        raise UserError(
            f"the predictions of {a_name} and {b_name} share no test image (joined on file): "
            "they were evaluated on different test sets; rerun both"
        )
    folded = cross_validated([a for a, _ in paired]) and cross_validated([b for _, b in paired])
    cv, fold_pairs = {}, None
    if folded:
        fold_differences, n_train, n_test = crossval.fold_differences(
            {a.seed: a.metrics for a, _ in paired}, {b.seed: b.metrics for _, b in paired}
        )
        fold_pairs = (fold_differences, n_train, n_test, paired[0][0].metrics["cv"]["k"])
        cv = {
            "n_pairs": len(fold_differences),
            "cv_accuracy_a": crossval.mean_cv([a.metrics for a, _ in paired], "accuracy"),
            "cv_accuracy_b": crossval.mean_cv([b.metrics for _, b in paired], "accuracy"),
        }
    found = paired_verdict(differences, joined, fold_pairs)
    return {
        **cv,
        "cv_p_value": found["cv_p_value"],
        "cross_validated": folded,
        "test_difference": sum(differences) / len(differences),
        "a": a_name,
        "b": b_name,
        "n_seeds": len(paired),
        "accuracy_a": mean_accuracy([a for a, _ in paired]),
        "accuracy_b": mean_accuracy([b for _, b in paired]),
        "difference": found["mean"],
        "difference_low": found["low"],
        "difference_high": found["high"],
        "only_a": found["only_a"],
        "only_b": found["only_b"],
        "shared": len(joined),
        "unshared": max(len(a_correct), len(b_correct)) - len(joined),
        "p_value": found["p_value"],
        "test": found["test"],
        "why": found["why"],
        "significant": found["significant"],
        "better": (b_name if found["b_better"] else a_name) if found["significant"] else None,
    }


def paired_verdict(differences, joined, fold_pairs=None):
    """b against a, under the one rule (deciding_test): the seed-paired interval of
    `differences` (b - a, one per seed) and McNemar's exact test on `joined`, whose columns a and
    b say whether each side's seed-averaged prediction of an image is right. Both are computed;
    the deciding one says whether the difference is real and whether b is the better.

    `fold_pairs`: (fold-paired differences in cross-validated accuracy, n_train, n_test, k) when
    both sides were cross-validated; the corrected repeated k-fold t-test then takes the
    seed-paired interval's place, and the difference is the cross-validated one."""
    only_a, only_b = discordant_pairs(joined["a"], joined["b"])
    p_value = mcnemar_exact(only_a, only_b)
    cv_p_value = None
    if fold_pairs:
        fold_differences, n_train, n_test, k = fold_pairs
        test, why = deciding_test(fold_differences, folds=k)
        mean, low, high = sum(fold_differences) / len(fold_differences), None, None
        if test == "corrected-t":
            result = corrected_repeated_kfold_t(fold_differences, n_train, n_test)
            low, high, cv_p_value = result["low"], result["high"], result["p"]
    else:
        mean, low, high = paired_difference(differences)
        test, why = deciding_test(differences)
    if test == "paired-t":
        significant, b_better = low > 0 or high < 0, mean > 0
    elif test == "corrected-t":
        significant, b_better = cv_p_value < SIGNIFICANCE, mean > 0
    else:
        significant, b_better = p_value < SIGNIFICANCE, only_b > only_a
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "only_a": only_a,
        "only_b": only_b,
        "p_value": p_value,
        "cv_p_value": cv_p_value,
        "test": test,
        "why": why,
        "significant": significant,
        "b_better": b_better,
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
        "cv_p_value": row.get("cv_p_value"),
        "cross_validated": row["cross_validated"],
        "n_pairs": row.get("n_pairs"),
        "n_seeds": row["n_seeds"],
        "test": row["test"],
        "why": row["why"],
        "significant": row["significant"],
        "better": row["better"],
    }
