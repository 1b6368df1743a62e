"""Cross-validated figures from fold predictions, without TensorFlow."""

import csv

import numpy as np
import pytest

from smallcnn import crossval
from smallcnn.errors import UserError

CLASSES = ["cat", "dog"]


def fold(k, files, labels, p_dog, n_train):
    return {
        "fold": k,
        "rows": [
            {"file": f, "path": f"train/{f}", "label": CLASSES[y]}
            for f, y in zip(files, labels, strict=True)
        ],
        "labels": labels,
        "probabilities": np.stack([1 - np.asarray(p_dog), np.asarray(p_dog)], axis=1),
        "n_train": n_train,
        "summary": {"epochs_run": 3, "best_epoch": 2, "train_seconds": 1.5},
    }


def test_the_cv_block_pools_every_fold_and_keeps_each_folds_figures(tmp_path):
    folds = [
        # fold 0: 3 of 4 right (the last cat is called a dog).
        fold(0, ["a", "b", "c", "d"], [0, 0, 1, 1], [0.1, 0.7, 0.8, 0.9], n_train=4),
        # fold 1: 4 of 4 right.
        fold(1, ["e", "f", "g", "h"], [0, 0, 1, 1], [0.2, 0.3, 0.6, 0.9], n_train=4),
    ]
    cv, rows = crossval.cross_validated(folds, CLASSES)
    assert cv["k"] == 2 and cv["n_images"] == 8
    assert cv["accuracy"] == pytest.approx(7 / 8)
    assert [f["accuracy"] for f in cv["folds"]] == [pytest.approx(0.75), pytest.approx(1.0)]
    assert cv["folds"][0]["n_validation"] == 4 and cv["folds"][0]["n_train"] == 4
    assert cv["folds"][1]["epochs_run"] == 3
    # Pooled ROC AUC: the 0.7 cat outranks the 0.6 dog, one discordant pair of 16.
    assert cv["roc_auc"] == pytest.approx(15 / 16)
    expected_loss = -np.mean(np.log([0.9, 0.3, 0.8, 0.9, 0.8, 0.7, 0.6, 0.9]))
    assert cv["loss"] == pytest.approx(expected_loss)

    crossval.write_oof(tmp_path / "oof.csv", rows, CLASSES)
    with open(tmp_path / "oof.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [row["file"] for row in written] == list("abcdefgh")
    assert written[1]["predicted"] == "dog" and written[1]["label"] == "cat"
    assert written[1]["fold"] == "0" and float(written[1]["p_dog"]) == 0.7
    assert list(written[0]) == [
        "file",
        "path",
        "label",
        "fold",
        "predicted",
        "p_cat",
        "p_dog",
    ]


def test_an_image_in_two_folds_is_refused():
    folds = [fold(0, ["a", "b"], [0, 1], [0.1, 0.9], 2), fold(1, ["b", "c"], [1, 0], [0.8, 0.2], 2)]
    with pytest.raises(UserError, match="b is in folds 0 and 1"):
        crossval.cross_validated(folds, CLASSES)


def test_the_test_prediction_is_the_mean_probability_over_folds():
    fold_outputs = [np.array([[0.9, 0.1], [0.4, 0.6]]), np.array([[0.5, 0.5], [0.2, 0.8]])]
    assert crossval.mean_probabilities(fold_outputs) == pytest.approx(
        np.array([[0.7, 0.3], [0.3, 0.7]])
    )


def test_experiments_rank_by_the_cross_validated_primary_metric():
    good = [{"cv": {"accuracy": 0.80, "balanced_accuracy": 0.70, "loss": 0.5}}]
    better_accuracy = [{"cv": {"accuracy": 0.85, "balanced_accuracy": 0.65, "loss": 0.4}}]
    by_accuracy = sorted(
        {"good": good, "other": better_accuracy}.items(),
        key=lambda item: crossval.rank_key(item[1], "test_accuracy"),
    )
    assert [name for name, _ in by_accuracy] == ["other", "good"]
    by_balanced = sorted(
        {"good": good, "other": better_accuracy}.items(),
        key=lambda item: crossval.rank_key(item[1], "balanced_accuracy"),
    )
    assert [name for name, _ in by_balanced] == ["good", "other"]
    # Mean over seeds.
    assert crossval.mean_cv(
        [{"cv": {"accuracy": 0.8}}, {"cv": {"accuracy": 0.6}}], "accuracy"
    ) == pytest.approx(0.7)


def _metrics(tmp_path, name, seed, accuracy, cv=None):
    import json

    path = tmp_path / "metrics" / name / f"{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "seed": seed,
        "test_accuracy": accuracy,
        "test_loss": 0.5,
        "roc_auc": 0.8,
        "balanced_accuracy": accuracy,
        "macro_f1": accuracy,
        "train_seconds": 10.0,
    }
    if cv:
        record["cv"] = cv
    path.write_text(json.dumps(record))
    return path


def test_summary_gains_the_cv_columns_only_with_folds(tmp_path):
    from smallcnn.summary_csv import CV_COLUMNS, SUMMARY_COLUMNS, write_summary

    experiments = [{"name": "scratch", "kind": "scratch"}]
    plain = [_metrics(tmp_path / "a", "scratch", s, 0.7) for s in (1, 2)]
    write_summary(plain, experiments, tmp_path / "plain.csv")
    header = (tmp_path / "plain.csv").read_text().splitlines()[0]
    assert header == ",".join(SUMMARY_COLUMNS)

    cv = [
        _metrics(
            tmp_path / "b",
            "scratch",
            seed,
            0.7,
            {"accuracy": a, "balanced_accuracy": a - 0.1, "macro_f1": a, "roc_auc": 0.9},
        )
        for seed, a in ((1, 0.8), (2, 0.6))
    ]
    write_summary(cv, experiments, tmp_path / "cv.csv")
    with open(tmp_path / "cv.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(SUMMARY_COLUMNS) + list(CV_COLUMNS)
    assert float(rows[0]["cv_accuracy_mean"]) == pytest.approx(0.7)
    assert float(rows[0]["cv_accuracy_sd"]) == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert float(rows[0]["cv_balanced_accuracy_mean"]) == pytest.approx(0.6)


def test_fold_differences_pair_the_same_fold_of_the_same_seed():
    def cv(accuracies, n_validation=10):
        return {
            "cv": {
                "folds": [
                    {"fold": k, "accuracy": a, "n_train": 20, "n_validation": n_validation}
                    for k, a in enumerate(accuracies)
                ]
            }
        }

    a = {1: cv([0.5, 0.6, 0.7]), 2: cv([0.6, 0.6, 0.6])}
    b = {1: cv([0.6, 0.6, 0.9]), 2: cv([0.7, 0.5, 0.6]), 3: cv([1.0, 1.0, 1.0])}
    differences, n_train, n_test = crossval.fold_differences(a, b)
    assert differences == pytest.approx([0.1, 0.0, 0.2, 0.1, -0.1, 0.0])
    assert (n_train, n_test) == (20, 10)
    with pytest.raises(UserError, match="fold 0 of seed 1 holds 10 images in one"):
        crossval.fold_differences(a, {1: cv([0.6, 0.6, 0.9], n_validation=11)})
