"""Which test decides whether two experiments differ, and who wins (issue 21, item 3).

The seed-paired t-interval may decide only with at least three seeds whose differences vary;
otherwise exact McNemar decides, on one prediction per test image: each experiment's class
probabilities averaged over its seeds.
"""

import pandas as pd
import pytest

from smallcnn.errors import UserError
from smallcnn.report.comparisons import (
    averaged_correct,
    compare,
    comparisons,
    mean_accuracy,
    mean_loss,
    mean_metric,
    pairs_to_compare,
    ranked,
    verdict,
)
from smallcnn.report.loading import Run

CLASSES = ["cat", "dog"]
FILES = [f"{'cat' if i < 10 else 'dog'}/{i:02d}.png" for i in range(20)]
RIGHT, WRONG = 0.8, 0.2


def run(name, seed, p_true):
    """A Run of 20 test images with P(true class) `p_true[i]` for image i, as the evaluation
    writes it: dog is predicted above P(dog) = 0.5."""
    rows = []
    for file, p in zip(FILES, p_true, strict=True):
        label = file.split("/")[0]
        p_dog = p if label == "dog" else 1 - p
        predicted = "dog" if p_dog > 0.5 else "cat"
        rows.append(
            {
                "file": file,
                "label": label,
                "predicted": predicted,
                "probability": max(p_dog, 1 - p_dog),
                "correct": predicted == label,
                "p_cat": 1 - p_dog,
                "p_dog": p_dog,
            }
        )
    predictions = pd.DataFrame(rows)
    accuracy = predictions["correct"].mean()
    metrics = {"test_accuracy": accuracy, "test_loss": 1 - accuracy, "class_names": CLASSES}
    return Run(name, seed, metrics, {}, pd.DataFrame(), predictions)


def right_on(indices, p_right=RIGHT, p_wrong=WRONG):
    return [p_right if i in indices else p_wrong for i in range(len(FILES))]


def test_two_seeds_with_one_more_image_right_each_time_are_not_a_real_difference():
    """The issue's case: B gets one more of 20 images right on each of two seeds. The seed-paired
    interval is [5, 5] points, zero wide; McNemar on the seed-averaged predictions (B right on
    both extra images, A on neither) gives p = 0.5, and decides."""
    a = [run("A", seed, right_on(range(10))) for seed in (1, 2)]
    b = [
        run("B", 1, [*right_on(range(10))[:10], 0.9, 0.4, *right_on(range(10))[12:]]),
        run("B", 2, [*right_on(range(10))[:10], 0.4, 0.9, *right_on(range(10))[12:]]),
    ]
    row = compare("A", a, "B", b)
    assert not row["significant"] and row["better"] is None
    assert row["test"] == "mcnemar"
    assert row["why"] == "2 seeds are too few for a seed-paired interval (it needs 3)"
    assert row["p_value"] == 0.5
    assert (row["only_a"], row["only_b"], row["shared"]) == (0, 2, 20)
    assert row["difference"] == pytest.approx(0.05)
    assert row["difference_low"] == pytest.approx(row["difference_high"])


def test_the_same_difference_on_three_seeds_does_not_let_the_t_interval_decide():
    """B one image ahead on each of three seeds, at accuracies whose differences (0.55 - 0.50,
    0.60 - 0.55, 0.65 - 0.60) differ only in the float's last bits."""
    a = [run("A", seed, right_on(range(10 + k))) for k, seed in enumerate((1, 2, 3))]
    b = [run("B", seed, right_on(range(11 + k))) for k, seed in enumerate((1, 2, 3))]
    row = compare("A", a, "B", b)
    assert row["n_seeds"] == 3
    assert row["test"] == "mcnemar"
    assert row["why"] == (
        "the difference is the same on all 3 seeds, so the seed-paired interval has zero width "
        "and measures nothing"
    )
    # Averaged over the seeds A is right on images 0-10 (image 10 on two seeds of three), B on
    # images 0-11.
    assert (row["only_a"], row["only_b"]) == (0, 1)
    assert row["p_value"] == 1.0 and not row["significant"]


def test_three_seeds_whose_differences_vary_let_the_t_interval_decide():
    a = [run("A", seed, right_on(range(10))) for seed in (1, 2, 3)]
    b = [run("B", seed, right_on(range(n))) for seed, n in ((1, 17), (2, 18), (3, 19))]
    row = compare("A", a, "B", b)
    assert row["test"] == "paired-t"
    assert row["why"] == "3 seeds give differences that vary"
    assert row["difference"] == pytest.approx(0.4)
    assert row["difference_low"] > 0 and row["significant"] and row["better"] == "B"
    reversed_row = compare("B", b, "A", a)
    assert reversed_row["better"] == "B" and reversed_row["difference"] == pytest.approx(-0.4)


def test_mcnemar_on_the_averaged_predictions_names_its_own_winner():
    """A is right on 12 images on both seeds (mean 60%). B's first seed is right on 18 with
    confidence, its second on 4 only, hesitating (P(true) 0.45) on the others: mean 55%, yet the
    averaged B is right on all 18, six of which A gets wrong. McNemar decides (two seeds) and
    names B, although A ranks first by mean accuracy."""
    a = [run("A", seed, right_on(range(12))) for seed in (1, 2)]
    b = [
        run("B", 1, right_on(range(18), p_right=0.95, p_wrong=0.3)),
        run("B", 2, right_on(range(4), p_right=0.95, p_wrong=0.45)),
    ]
    row = compare("A", a, "B", b)
    assert row["difference"] == pytest.approx(-0.05)
    assert (row["only_a"], row["only_b"]) == (0, 6)
    assert row["p_value"] == pytest.approx(2 / 2**6)
    assert row["test"] == "mcnemar" and row["significant"]
    assert row["better"] == "B"
    result = verdict(["A", "B"], [row])
    assert result["runner_up"] == "B" and result["margin"] == pytest.approx(0.05)
    assert result["better"] == "B" and result["significant"]


def test_one_seed_is_decided_by_mcnemar_on_that_seeds_predictions():
    a = [run("A", 7, right_on(range(8)))]
    b = [run("B", 7, right_on(range(19)))]
    row = compare("A", a, "B", b)
    assert row["test"] == "mcnemar" and row["why"] == "there is one seed"
    assert (row["only_a"], row["only_b"]) == (0, 11)
    assert row["significant"] and row["better"] == "B"
    assert row["difference_low"] is None


def with_folds(run_, accuracies, n_validation=100, n_train=400):
    """`run_` cross-validated: its fold accuracies (k = len(accuracies)) in its metrics."""
    folds = [
        {"fold": k, "accuracy": a, "n_train": n_train, "n_validation": n_validation}
        for k, a in enumerate(accuracies)
    ]
    mean = sum(accuracies) / len(accuracies)
    run_.metrics["cv"] = {"k": len(accuracies), "accuracy": mean, "loss": 0.5, "folds": folds}
    return run_


def test_fold_paired_differences_are_judged_by_the_corrected_repeated_kfold_test():
    """Five folds, one seed; B - A per fold 1, 9, 5, 3, 7 points: mean 5, sample variance
    0.001. A plain paired t-test would call that real (t = 3.54, p = 0.024 with 4 df); the
    corrected test multiplies the variance by 1/5 + 100/400 instead of 1/5 (t = 2.357,
    p = 0.078) and does not."""
    from smallcnn.stats import corrected_repeated_kfold_t

    base = [0.70, 0.70, 0.70, 0.70, 0.70]
    a = [with_folds(run("A", 1, right_on(range(12))), base)]
    b_folds = [0.71, 0.79, 0.75, 0.73, 0.77]
    b = [with_folds(run("B", 1, right_on(range(13))), b_folds)]
    row = compare("A", a, "B", b)
    assert row["test"] == "corrected-t" and row["cross_validated"]
    assert "Nadeau & Bengio" in row["why"] and "5 folds \u00d7 1 seed" in row["why"]
    expected = corrected_repeated_kfold_t(
        [x - y for x, y in zip(b_folds, base, strict=True)], n_train=400, n_test=100
    )
    assert row["cv_p_value"] == pytest.approx(expected["p"])
    assert row["cv_p_value"] == pytest.approx(0.078, abs=0.001)
    assert row["difference"] == pytest.approx(0.05)
    assert row["difference_low"] == pytest.approx(expected["low"])
    assert not row["significant"] and row["better"] is None
    assert row["n_pairs"] == 5
    # The held-out test's difference and McNemar are still given.
    assert row["test_difference"] == pytest.approx(0.05)
    assert (row["only_a"], row["only_b"]) == (0, 1)

    clear = [with_folds(run("B", 1, right_on(range(13))), [0.80, 0.82, 0.81, 0.83, 0.79])]
    row = compare("A", a, "B", clear)
    assert row["significant"] and row["better"] == "B" and row["difference_low"] > 0


def test_two_folds_of_one_seed_are_too_few_and_mcnemar_decides():
    a = [with_folds(run("A", 1, right_on(range(8))), [0.6, 0.6])]
    b = [with_folds(run("B", 1, right_on(range(19))), [0.7, 0.9])]
    row = compare("A", a, "B", b)
    assert row["test"] == "mcnemar"
    assert row["why"].startswith("2 folds \u00d7 1 seed give 2 fold-paired differences, too few")
    assert row["significant"] and row["better"] == "B"
    assert row["difference_low"] is None and row["cv_p_value"] is None


def test_cross_validated_experiments_rank_by_their_cv_figures_not_the_test_split():
    from smallcnn.report.comparisons import ranked

    # A wins the test split, B the cross-validation.
    a = [with_folds(run("A", 1, right_on(range(18))), [0.6, 0.6, 0.6])]
    b = [with_folds(run("B", 1, right_on(range(12))), [0.8, 0.8, 0.8])]
    assert ranked({"A": a, "B": b}) == ["B", "A"]
    plain_a = [run("A", 1, right_on(range(18)))]
    plain_b = [run("B", 1, right_on(range(12)))]
    for run_ in (*plain_a, *plain_b):
        run_.metrics["test_loss"] = 0.5
    assert ranked({"A": plain_a, "B": plain_b}) == ["A", "B"]


def scored(name, seed=1, **metrics):
    """A Run that has only metrics: what ranking reads."""
    return Run(name, seed, metrics, {}, pd.DataFrame(), pd.DataFrame())


def test_ranking_by_the_primary_metric_then_accuracy_then_loss():
    runs = {
        # Ranked by balanced accuracy: a and b tie on it (means 0.8), a has the better accuracy.
        "a": [
            scored("a", balanced_accuracy=0.7, test_accuracy=0.9, test_loss=0.5),
            scored("a", 2, balanced_accuracy=0.9, test_accuracy=0.9, test_loss=0.5),
        ],
        "b": [scored("b", balanced_accuracy=0.8, test_accuracy=0.85, test_loss=0.1)],
        # c ties with b on both, and has the lower loss.
        "c": [scored("c", balanced_accuracy=0.8, test_accuracy=0.85, test_loss=0.05)],
        # Undefined for every seed: last, whatever its accuracy.
        "d": [scored("d", balanced_accuracy=None, test_accuracy=0.99, test_loss=0.01)],
        "e": [scored("e", balanced_accuracy=0.6, test_accuracy=0.99, test_loss=0.01)],
        # Zero is a value: below every other, above undefined.
        "f": [scored("f", balanced_accuracy=0.0, test_accuracy=0.999, test_loss=0.0)],
    }
    assert ranked(runs, "balanced_accuracy") == ["a", "c", "b", "e", "f", "d"]
    assert ranked(runs) == ["f", "d", "e", "a", "c", "b"]


def test_the_mean_of_a_metric_skips_seeds_where_it_is_undefined():
    runs = [scored("a", roc_auc=0.6), scored("a", 2, roc_auc=None), scored("a", 3, roc_auc=0.8)]
    assert mean_metric(runs, "roc_auc") == pytest.approx(0.7)
    assert mean_metric(runs[1:2], "roc_auc") is None
    assert mean_metric(runs, "macro_f1") is None
    losses = [
        scored("a", test_loss=0.2, test_accuracy=0.5),
        scored("a", 2, test_loss=0.4, test_accuracy=0.7),
    ]
    assert (mean_loss(losses), mean_accuracy(losses)) == pytest.approx((0.3, 0.6))


@pytest.mark.parametrize(
    ("names", "order", "pairs"),
    [
        (["a"], ["a"], []),
        (["a", "b"], ["b", "a"], [("a", "b")]),
        # Consecutive pairs, then the first against the best (c, not consecutive to a).
        (["a", "b", "c"], ["c", "b", "a"], [("a", "b"), ("b", "c"), ("a", "c")]),
        # The best (d) against the runner-up (b), in declared order, when not consecutive.
        (
            ["a", "b", "c", "d"],
            ["d", "b", "a", "c"],
            [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d"), ("b", "d")],
        ),
        # The first is the best: no pair of it with itself; best and runner-up consecutive.
        (["a", "b", "c"], ["a", "b", "c"], [("a", "b"), ("b", "c")]),
        # Declared order, not the alphabet's: the runner-up b was declared before the best a.
        (
            ["x", "b", "y", "a"],
            ["a", "b", "x", "y"],
            [("x", "b"), ("b", "y"), ("y", "a"), ("x", "a"), ("b", "a")],
        ),
        (
            ["a", "b", "c", "d"],
            ["a", "c", "b", "d"],
            [("a", "b"), ("b", "c"), ("c", "d"), ("a", "c")],
        ),
    ],
)
def test_the_pairs_compared(names, order, pairs):
    assert pairs_to_compare(names, order) == pairs


def test_every_pair_is_compared_in_declared_order():
    runs = {
        name: [run(name, seed, right_on(range(n + seed))) for seed in (1, 2, 3)]
        for name, n in (("a", 2), ("b", 9), ("c", 16))
    }
    rows = comparisons(runs, ranked(runs))
    assert [(row["a"], row["b"]) for row in rows] == [("a", "b"), ("b", "c"), ("a", "c")]
    assert [row["better"] for row in rows] == ["b", "c", "c"]


def test_three_seeds_whose_differences_vary_around_zero_are_no_real_difference():
    a = [run("A", seed, right_on(range(10))) for seed in (1, 2, 3)]
    b = [run("B", seed, right_on(range(n))) for seed, n in ((1, 11), (2, 9), (3, 12))]
    row = compare("A", a, "B", b)
    assert row["test"] == "paired-t"
    assert row["difference_low"] < 0 < row["difference_high"]
    assert not row["significant"] and row["better"] is None
    assert (row["accuracy_a"], row["accuracy_b"]) == pytest.approx((0.5, 32 / 60))


def test_the_verdict_when_the_best_is_the_first_of_its_pair():
    """The table says B minus A; the verdict says best minus runner-up, interval and all."""
    a = [run("A", seed, right_on(range(n))) for seed, n in ((1, 17), (2, 18), (3, 20))]
    b = [run("B", seed, right_on(range(10))) for seed in (1, 2, 3)]
    row = compare("A", a, "B", b)
    low, high = row["difference_low"], row["difference_high"]
    assert row["better"] == "A" and high < 0
    result = verdict(["A", "B"], [row])
    assert result == {
        "runner_up": "B",
        "margin": pytest.approx(0.4167, abs=1e-4),
        "low": pytest.approx(-high),
        "high": pytest.approx(-low),
        "p_value": row["p_value"],
        "n_seeds": 3,
        "test": "paired-t",
        "why": "3 seeds give differences that vary",
        "significant": True,
        "better": "A",
        # Without folds: no corrected test, no fold pairs.
        "cross_validated": False,
        "cv_p_value": None,
        "n_pairs": None,
    }
    # Seen from B's side the same comparison gives the same verdict.
    assert verdict(["A", "B"], [compare("B", b, "A", a)]) == result
    assert verdict(["A"], []) is None


def test_the_verdict_of_one_seed_has_no_interval():
    row = compare("A", [run("A", 1, right_on(range(8)))], "B", [run("B", 1, right_on(range(9)))])
    result = verdict(["B", "A"], [row])
    assert (result["low"], result["high"], result["margin"]) == (None, None, pytest.approx(0.05))
    assert (result["n_seeds"], result["test"], result["significant"]) == (1, "mcnemar", False)


def test_images_only_one_experiment_predicted_are_counted_apart():
    """B's predictions lack image 0 and come in another order: McNemar joins on the file."""
    a = [run("A", 1, right_on(range(5)))]
    b_run = run("B", 1, right_on(range(15)))
    predictions = b_run.predictions.iloc[1:].sample(frac=1, random_state=0)
    b = [Run("B", 1, b_run.metrics, {}, pd.DataFrame(), predictions)]
    row = compare("A", a, "B", b)
    assert (row["shared"], row["unshared"]) == (19, 1)
    # Image 0 (both right) is not shared; A is right on 1-4, B on 1-14.
    assert (row["only_a"], row["only_b"]) == (0, 10)


def test_a_seed_missing_an_image_leaves_it_out_of_the_averaged_prediction():
    first = run("A", 1, right_on(range(20)))
    second = run("A", 2, right_on(range(20)))
    second = Run("A", 2, second.metrics, {}, pd.DataFrame(), second.predictions.iloc[:-1])
    correct = averaged_correct("A", [first, second])
    assert list(correct.index) == FILES[:-1] and correct.all()


def test_seeds_with_other_classes_are_a_user_error_naming_the_experiment():
    def seeds(name):
        first, second = run(name, 1, right_on(range(5))), run(name, 2, right_on(range(5)))
        second.metrics["class_names"] = ["dog", "cat"]
        return [first, second]

    good = [run("A", seed, right_on(range(5))) for seed in (1, 2)]
    for a, b, name in ((seeds("A"), good, "A"), (good, seeds("B"), "B")):
        message = (
            rf"^{name}: seed 2 has classes \['dog', 'cat'\], seed 1 \['cat', 'dog'\]; rerun its "
            r"training and evaluation$"
        )
        with pytest.raises(UserError, match=message):
            compare("A", a, "B", b)


def test_the_t_interval_decides_even_where_mcnemar_would_not_agree():
    """Three seeds whose differences vary: the interval's verdict stands, whatever McNemar on
    the averaged predictions says."""
    a = [run("A", seed, right_on(range(10))) for seed in (1, 2, 3)]
    # B 10, 15 and 10 points ahead: a real difference across seeds, though averaged B is right
    # on only two images A misses (p = 0.5).
    b = [run("B", seed, right_on(range(n))) for seed, n in ((1, 12), (2, 13), (3, 12))]
    row = compare("A", a, "B", b)
    assert (row["only_a"], row["only_b"], row["p_value"]) == (0, 2, 0.5)
    assert row["test"] == "paired-t" and row["difference_low"] > 0
    assert row["significant"] and row["better"] == "B"
    # B 40 points ahead, 40 behind, 40 ahead: no real difference across seeds, though averaged
    # B is right on eight images A misses (p = 2 / 2^8).
    b = [run("B", seed, right_on(range(n))) for seed, n in ((1, 18), (2, 2), (3, 18))]
    row = compare("A", a, "B", b)
    assert (row["only_a"], row["only_b"]) == (0, 8)
    assert row["p_value"] == pytest.approx(2 / 2**8)
    assert row["test"] == "paired-t" and row["difference_low"] < 0
    assert not row["significant"] and row["better"] is None


def test_experiments_without_a_shared_seed_or_test_image_cannot_be_compared():
    a, b = [run("A", 1, right_on(range(5)))], [run("B", 2, right_on(range(5)))]
    with pytest.raises(UserError, match="^A and B share no seed: they cannot be compared paired$"):
        compare("A", a, "B", b)
    other = run("B", 1, right_on(range(5)))
    other.predictions["file"] = "elsewhere/" + other.predictions["file"]
    with pytest.raises(
        UserError,
        match=r"^the predictions of A and B share no test image \(joined on file\): they were "
        r"evaluated on different test sets; rerun both$",
    ):
        compare("A", a, "B", [other])
