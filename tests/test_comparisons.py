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
