"""Test-split metrics and predictions."""

import csv
import itertools
import json

import numpy as np
import pytest
from conftest import make_class_images

from smallcnn import evaluation, features, models
from smallcnn.stats import accuracy_ci95


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
        assert evaluation.rank_auc(positive, scores) == pytest.approx(
            pairwise_auc(positive, scores)
        )


def test_auc_extremes_and_undefined():
    assert evaluation.rank_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert evaluation.rank_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert evaluation.rank_auc([1, 1], [0.1, 0.2]) is None


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
    assert evaluation.roc_auc(labels, probabilities) == pytest.approx(expected)


def test_binary_prediction_threshold_and_loss():
    probabilities = evaluation.class_probabilities(np.array([[0.2], [0.5], [0.9]]))
    assert evaluation.predicted_classes(probabilities).tolist() == [0, 0, 1]
    loss = evaluation.cross_entropy(np.array([0, 1, 1]), probabilities)
    assert loss == pytest.approx(-np.mean(np.log([0.8, 0.5, 0.9])))


def check_outputs(metrics_path, predictions_path, n_test, class_names):
    metrics = json.loads(metrics_path.read_text())
    with open(predictions_path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == metrics["n_test"] == n_test
    assert metrics["class_names"] == class_names
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (len(class_names), len(class_names))
    assert matrix.sum() == n_test
    correct = sum(row["correct"] == "true" for row in rows)
    assert all((row["label"] == row["predicted"]) == (row["correct"] == "true") for row in rows)
    assert np.trace(matrix) == correct
    assert metrics["test_accuracy"] == pytest.approx(correct / n_test)
    assert metrics["accuracy_ci95"] == pytest.approx(list(accuracy_ci95(correct, n_test)))
    assert all(0.5 <= float(row["probability"]) <= 1 for row in rows if len(class_names) == 2)
    for row in rows:
        label, name = row["file"].split("/")
        assert label == row["label"] and name
    return metrics


SUMMARY = {
    "experiment": "scratch",
    "epochs_run": 3,
    "best_epoch": 2,
    "stopped_early": False,
    "train_seconds": 1.5,
}


def test_evaluate_an_image_model(tmp_path):
    make_class_images(tmp_path / "test", classes=("a", "b", "c"), per_class=4)
    model = models.build_scratch(
        (48, 48, 3), 3, dropout=0.0, dense_units=8, class_names=["a", "b", "c"]
    )
    model.save(tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(json.dumps(SUMMARY))
    metrics = evaluation.evaluate(
        tmp_path / "m.keras",
        tmp_path / "m.json",
        str(tmp_path / "test"),
        tmp_path / "metrics" / "m.json",
        tmp_path / "predictions" / "m.csv",
        (48, 48),
        5,
    )
    written = check_outputs(
        tmp_path / "metrics" / "m.json", tmp_path / "predictions" / "m.csv", 12, ["a", "b", "c"]
    )
    assert written == json.loads(json.dumps(metrics))
    assert written["params_total"] == model.count_params()
    assert written["params_trainable"] == model.count_params()
    assert written["epochs_run"] == 3 and written["best_epoch"] == 2
    assert 0 <= written["roc_auc"] <= 1


def test_evaluate_a_features_model(tmp_path):
    make_class_images(tmp_path / "test", per_class=3, size=(32, 32))
    features.extract_features(
        tmp_path / "test",
        tmp_path / "test.h5",
        {"name": "vgg16", "weights": "none"},
        None,
        (32, 32),
        4,
        "auto",
        0,
    )
    model = models.build_feature_classifier(
        (1, 1, 512), 2, dense_units=8, dropout=0.5, class_names=["cat", "dog"]
    )
    model.save(tmp_path / "f.keras")
    (tmp_path / "f.json").write_text(json.dumps({**SUMMARY, "experiment": "features"}))
    evaluation.evaluate(
        tmp_path / "f.keras",
        tmp_path / "f.json",
        str(tmp_path / "test.h5"),
        tmp_path / "f-metrics.json",
        tmp_path / "f.csv",
        (32, 32),
        4,
    )
    metrics = check_outputs(tmp_path / "f-metrics.json", tmp_path / "f.csv", 6, ["cat", "dog"])
    assert metrics["experiment"] == "features"
