"""Which test decides whether two experiments differ, and who wins (issue 21, item 3).

The seed-paired t-interval may decide only with at least three seeds whose differences vary;
otherwise exact McNemar decides, on one prediction per test image: each experiment's class
probabilities averaged over its seeds.
"""

import pandas as pd
import pytest

from smallcnn.report.comparisons import compare, verdict
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
    metrics = {"test_accuracy": predictions["correct"].mean(), "class_names": CLASSES}
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
    assert row["why"].startswith("the difference is the same on all 3 seeds")
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
