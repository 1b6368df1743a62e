"""Test-split metrics and predictions."""

import csv
import json

import numpy as np
import pytest
from conftest import make_class_images

from smallcnn import evaluation, features, models
from smallcnn.stats import accuracy_ci95


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
    # Every class's probability, exactly as predicted from: the report averages them over seeds.
    for row in rows:
        p = np.array([[float(row[f"p_{name}"]) for name in class_names]])
        assert p.sum() == pytest.approx(1, abs=1e-6)
        assert class_names[evaluation.predicted_classes(p)[0]] == row["predicted"]
        assert float(row["probability"]) == pytest.approx(p.max(), abs=1e-6)
    for row in rows:
        label, name = row["file"].split("/")
        assert label == row["label"] and name
    # The imbalance-aware metrics agree with the confusion matrix written beside them.
    per_class = metrics["per_class"]
    assert [row["class"] for row in per_class] == class_names
    assert [row["support"] for row in per_class] == matrix.sum(axis=1).tolist()
    recalls = np.diag(matrix) / matrix.sum(axis=1)
    assert [row["recall"] for row in per_class] == pytest.approx(recalls.tolist())
    assert metrics["balanced_accuracy"] == pytest.approx(recalls.mean())
    defined_f1 = [row["f1"] for row in per_class if row["f1"] is not None]
    assert metrics["macro_f1"] == pytest.approx(np.mean(defined_f1))
    if len(class_names) == 2:
        assert 0 <= metrics["pr_auc"] <= 1
    else:
        assert metrics["pr_auc"] is None
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
        errors_path=tmp_path / "errors" / "m.csv",
    )
    with open(tmp_path / "errors" / "m.csv", newline="") as stream:
        errors = list(csv.DictReader(stream))
    # Every test image, named by its path in the test folder.
    assert sorted(row["path"] for row in errors) == sorted(
        str(p) for p in (tmp_path / "test").rglob("*.jpg")
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
        errors_path=tmp_path / "f-errors.csv",
        test_images=tmp_path / "test",
    )
    with open(tmp_path / "f-errors.csv", newline="") as stream:
        paths = [row["path"] for row in csv.DictReader(stream)]
    assert sorted(paths) == sorted(str(p) for p in (tmp_path / "test").rglob("*.jpg"))
    metrics = check_outputs(tmp_path / "f-metrics.json", tmp_path / "f.csv", 6, ["cat", "dog"])
    assert metrics["experiment"] == "features"


def test_errors_by_file_rank_every_test_image_by_its_loss(tmp_path):
    probabilities = evaluation.class_probabilities(np.array([[0.3], [0.95], [0.6], [0.3]]))
    files = ["cat/1.png", "cat/2.png", "dog/3.png", "dog/4.png"]
    evaluation.write_errors(
        tmp_path / "errors.csv", files, [0, 0, 1, 1], probabilities, ["cat", "dog"], "data/test"
    )
    with open(tmp_path / "errors.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == list(evaluation.ERROR_COLUMNS)
    # cat/2 is a cat taken for a dog at 0.95: the worst; dog/4 (p_true 0.3) and then the rest.
    assert [row["file"] for row in rows] == ["cat/2.png", "dog/4.png", "dog/3.png", "cat/1.png"]
    assert [int(row["rank"]) for row in rows] == [1, 2, 3, 4]
    first = rows[0]
    assert (first["path"], first["true"], first["predicted"]) == (
        "data/test/cat/2.png",
        "cat",
        "dog",
    )
    assert float(first["probability"]) == pytest.approx(0.95)
    assert float(first["p_true"]) == pytest.approx(0.05)
    assert float(first["loss"]) == pytest.approx(-np.log(0.05), rel=1e-5)
    assert [float(row["loss"]) for row in rows] == sorted(
        (float(row["loss"]) for row in rows), reverse=True
    )
