"""Metrics in numpy against hand-computed confusion matrices and the textbook definitions."""

import itertools

import numpy as np
import pytest
import yaml
from conftest import REPO

from smallcnn import metrics
from smallcnn.errors import UserError


def pairwise_auc(positive, scores):
    """The definition: P(score of a positive > score of a negative), ties counting half."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_rank_auc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        positive = rng.integers(0, 2, 30).astype(bool)
        positive[:2] = [True, False]
        scores = rng.integers(0, 6, 30) / 5  # many ties
        assert metrics.rank_auc(positive, scores) == pytest.approx(pairwise_auc(positive, scores))


def test_auc_extremes_and_undefined():
    assert metrics.rank_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.rank_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert metrics.rank_auc([1, 1], [0.1, 0.2]) is None
    assert metrics.rank_auc([0, 0], [0.1, 0.2]) is None
    # One positive is enough: it outranks one of the two negatives.
    assert metrics.rank_auc([0, 1, 0], [0.1, 0.5, 0.9]) == 0.5


def test_binary_auc_from_the_sigmoid_output():
    """Two classes: the model's output is one sigmoid column, the probability of class 1, as
    evaluation passes it (shape (n, 1)), or the same flattened."""
    labels = np.array([0, 0, 1, 1, 0, 1])
    sigmoid = np.array([[0.2], [0.6], [0.7], [0.4], [0.1], [0.9]])
    expected = pairwise_auc(labels == 1, sigmoid[:, 0])
    assert expected == pytest.approx(8 / 9)
    assert metrics.roc_auc(labels, sigmoid) == pytest.approx(expected)
    assert metrics.roc_auc(labels.tolist(), sigmoid[:, 0].tolist()) == pytest.approx(expected)
    assert metrics.roc_auc([1, 1, 1], [[0.2], [0.6], [0.7]]) is None


def test_macro_auc_skips_classes_absent_from_the_test_set():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.6, 0.3, 0.1], [0.3, 0.3, 0.4], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]])
    expected = np.mean([pairwise_auc(labels == k, probabilities[:, k]) for k in (0, 1)])
    assert metrics.roc_auc(labels, probabilities) == pytest.approx(expected)
    # One class only: undefined for every class.
    assert metrics.roc_auc(np.array([2, 2]), probabilities[:2]) is None


def test_macro_one_vs_rest_auc():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.4, 0.5, 0.1],
            [0.2, 0.7, 0.1],
            [0.5, 0.3, 0.2],
            [0.1, 0.1, 0.8],
            [0.3, 0.3, 0.4],
        ]
    )
    expected = np.mean([pairwise_auc(labels == k, probabilities[:, k]) for k in range(3)])
    assert metrics.roc_auc(labels, probabilities) == pytest.approx(expected)


# Rows true class, columns predicted. c is in the test set but never predicted; d is absent from
# the test set but predicted once; e is neither present nor predicted.
NAMES = ["a", "b", "c", "d", "e"]
MATRIX = [
    [4, 1, 0, 1, 0],
    [2, 2, 0, 0, 0],
    [1, 1, 0, 0, 0],
    [0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0],
]


def test_per_class_scores_by_hand_with_a_class_never_predicted_and_one_absent():
    rows = {row["class"]: row for row in metrics.per_class(MATRIX, NAMES)}
    assert [row["support"] for row in rows.values()] == [6, 4, 2, 0, 0]
    # a: 4 right of 6 true and of 7 predicted.
    assert rows["a"]["precision"] == pytest.approx(4 / 7)
    assert rows["a"]["recall"] == pytest.approx(4 / 6)
    assert rows["a"]["f1"] == pytest.approx(8 / 13)
    assert rows["b"] == {"class": "b", "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 4}
    # Never predicted: its precision is 0/0, but it missed both of its images, so F1 is 0.
    assert rows["c"] == {"class": "c", "precision": None, "recall": 0.0, "f1": 0.0, "support": 2}
    # Absent yet predicted once: that prediction was wrong; recall is 0/0.
    assert rows["d"] == {"class": "d", "precision": 0.0, "recall": None, "f1": 0.0, "support": 0}
    assert rows["e"] == {"class": "e", "precision": None, "recall": None, "f1": None, "support": 0}


def test_balanced_accuracy_and_macro_f1_by_hand_skip_undefined_classes():
    classes = metrics.per_class(MATRIX, NAMES)
    # Recall of the classes in the test set: a 4/6, b 1/2, c 0.
    assert metrics.balanced_accuracy(classes) == pytest.approx(7 / 18)
    # F1 of the classes present or predicted: a 8/13, b 1/2, c 0, d 0.
    assert metrics.macro_f1(classes) == pytest.approx(29 / 104)


def test_a_majority_classifier_looks_good_on_accuracy_only():
    labels = np.array([0] * 90 + [1] * 10)
    predicted = np.zeros(100, dtype=int)
    probabilities = np.tile([0.8, 0.2], (100, 1))
    result = metrics.class_metrics(labels, predicted, probabilities, ["many", "few"])
    assert result["balanced_accuracy"] == pytest.approx(0.5)
    assert result["macro_f1"] == pytest.approx((180 / 190 + 0) / 2)
    assert [row["support"] for row in result["per_class"]] == [90, 10]
    assert [row["recall"] for row in result["per_class"]] == [1.0, 0.0]
    # Every image tied: precision at the only threshold is the prevalence of the positive class.
    assert result["pr_auc"] == pytest.approx(0.1)


def test_class_metrics_count_labels_and_predictions_like_the_matrix():
    labels, predicted = np.nonzero(np.asarray(MATRIX))
    counts = np.asarray(MATRIX)[labels, predicted]
    labels, predicted = np.repeat(labels, counts), np.repeat(predicted, counts)
    probabilities = np.full((len(labels), len(NAMES)), 1 / len(NAMES))
    result = metrics.class_metrics(labels, predicted, probabilities, NAMES)
    assert result["per_class"] == metrics.per_class(MATRIX, NAMES)
    assert result["balanced_accuracy"] == pytest.approx(7 / 18)
    assert result["pr_auc"] is None  # more than two classes


def test_a_matrix_that_does_not_fit_the_classes_is_a_user_error():
    message = r"^a confusion matrix of shape \(5, 5\) does not fit 2 classes; rerun the evaluation$"
    with pytest.raises(UserError, match=message):
        metrics.per_class(MATRIX, ["a", "b"])


def test_the_confusion_matrix_holds_integer_counts():
    matrix = metrics.confusion_matrix([0, 1, 1, 2], [0, 1, 0, 2], 3)
    assert matrix.dtype.kind == "i"
    assert matrix.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_averages_over_no_defined_class_are_undefined():
    nothing = [{"recall": None, "f1": None}]
    assert metrics.balanced_accuracy(nothing) is None
    assert metrics.macro_f1(nothing) is None
    assert metrics.mean_defined([None, 0.5, None, 1.0]) == 0.75


def test_average_precision_by_hand():
    # Ranked: + - + + -. Recall steps of 1/3 at precisions 1, 2/3 and 3/4.
    labels = [1, 0, 1, 1, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.2]
    assert metrics.average_precision(labels, scores) == pytest.approx(1 / 3 + 2 / 9 + 1 / 4)
    assert metrics.average_precision([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.average_precision([0, 0], [0.1, 0.2]) is None


def test_average_precision_takes_tied_scores_together_whatever_their_order():
    # 0.9 (+) gives recall 1/2 at precision 1; the tie at 0.5 (+ and -) recall 1 at 2/3.
    scores = [0.5, 0.5, 0.9, 0.1]
    for labels in ([1, 0, 1, 0], [0, 1, 1, 0]):
        assert metrics.average_precision(labels, scores) == pytest.approx(1 / 2 + 1 / 3)


@pytest.mark.parametrize(
    ("setting", "counts", "key", "words"),
    [
        ("auto", [500, 500], "test_accuracy", "balanced, 500 images per class"),
        ("auto", [480, 500], "test_accuracy", "balanced, 480 to 500 images"),
        ("auto", [300, 61, 120], "balanced_accuracy", "4.9× its smallest (300 against 61"),
        ("auto", [40, 0], "balanced_accuracy", "a class has no test image"),
        ("auto", [0, 0], "balanced_accuracy", "a class has no test image, the largest 0"),
        ("auto", [1, 1], "test_accuracy", "balanced, 1 images per class"),
        # At the bound: 22 is 1.1 times 20.
        ("auto", [22, 20], "test_accuracy", "balanced, 20 to 22 images per class"),
        ("auto", [23, 20], "balanced_accuracy", "1.1× its smallest (23 against 20 images)"),
        ("accuracy", [300, 61], "test_accuracy", "as set in report.primary_metric"),
        ("balanced_accuracy", [50, 50], "balanced_accuracy", "balanced accuracy, as set"),
        ("macro_f1", [50, 50], "macro_f1", "macro-F1"),
        ("roc_auc", [50, 50], "roc_auc", "ROC AUC"),
    ],
)
def test_primary_metric(setting, counts, key, words):
    chosen, reason = metrics.primary_metric(setting, counts)
    assert chosen == key
    assert words in reason


def test_the_reasons_for_the_primary_metric_in_full():
    assert metrics.primary_metric("auto", [500, 500])[1] == (
        "Ranked by accuracy (report.primary_metric: auto): the test split is balanced, 500 images "
        "per class."
    )
    assert metrics.primary_metric("auto", [300, 61])[1] == (
        "Ranked by balanced accuracy, the mean of the per-class recalls (report.primary_metric: "
        "auto): the test split is imbalanced, its largest class 4.9× its smallest (300 against 61 "
        "images), so accuracy would reward answering the majority class."
    )


@pytest.mark.parametrize(
    ("setting", "counts", "message"),
    [
        (
            "f1",
            [5, 5],
            r"^report.primary_metric is 'f1'; use auto or one of accuracy, balanced_accuracy, "
            r"macro_f1, roc_auc$",
        ),
        ("auto", [], r"^the primary metric needs the test split's class counts; found none$"),
    ],
)
def test_primary_metric_user_errors(setting, counts, message):
    with pytest.raises(UserError, match=message):
        metrics.primary_metric(setting, counts)


def test_the_schema_accepts_each_primary_metric_and_names_a_wrong_one():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["report"]["primary_metric"] == "auto"
    for setting in ["auto", *metrics.PRIMARY_METRICS]:
        config["report"]["primary_metric"] = setting
        validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    config["report"]["primary_metric"] = "f1"
    with pytest.raises(WorkflowError, match="primary_metric"):
        validate(config, str(REPO / "schemas" / "config.schema.yaml"))


def test_predicted_classes_name_classes_as_keras_predicts_them():
    names = ["cat", "dog", "fox"]
    # Two classes: the second only above 0.5, as Keras' binary accuracy counts it.
    two = metrics.predicted_classes([[0.5, 0.5], [0.49, 0.51], [0.9, 0.1]])
    assert [names[k] for k in two] == ["cat", "dog", "cat"]
    # More: the most probable, wherever the second class's probability stands.
    three = metrics.predicted_classes([[0.2, 0.1, 0.7], [0.05, 0.6, 0.35], [0.4, 0.35, 0.25]])
    assert [names[k] for k in three] == ["fox", "dog", "cat"]
