"""Cross-validated figures: out-of-fold predictions joined per (experiment, seed), the estimate
they give, and the fold models' test predictions averaged into one.

Each fold model predicts the images of its own fold, which it never trained on, so every train +
validation image gets exactly one out-of-fold (OOF) probability per seed: the figures on them
use all of those images instead of one validation split. The test split stays held out: every
fold model predicts it, and the seed's test prediction is their mean probability. Pure numpy (no
TensorFlow): the summary, the report and the label-issue rule read these figures too.
"""

import math

import numpy as np

from smallcnn import metrics
from smallcnn.errors import UserError
from smallcnn.records import write_csv

# The figures computed on the OOF predictions, named as in the `cv` block of a metrics JSON.
CV_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "loss")
OOF_COLUMNS = ["file", "path", "label", "fold", "predicted"]


def cv_key(primary):
    """The `cv` key of the report's primary metric (a metrics JSON key: test_accuracy, ...)."""
    return "accuracy" if primary == "test_accuracy" else primary


def scores(labels, probabilities, class_names):
    """accuracy, balanced_accuracy, macro_f1, roc_auc and loss of (n, classes) probabilities."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = metrics.predicted_classes(probabilities)
    extra = metrics.class_metrics(labels, predicted, probabilities, class_names)
    scores_ = probabilities[:, 1] if len(class_names) == 2 else probabilities
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": extra["balanced_accuracy"],
        "macro_f1": extra["macro_f1"],
        "roc_auc": metrics.roc_auc(labels, scores_),
        "loss": metrics.cross_entropy(labels, probabilities),
    }


def cross_validated(folds, class_names):
    """The `cv` block of a seed's metrics JSON, and the OOF rows.

    `folds`: one dict per fold model, {"fold", "rows" (the folds.csv rows of its fold: file,
    path, label), "labels" (class indices), "probabilities" (n, classes), "n_train",
    "summary" (its training summary)}. Every image must be in exactly one fold.
    """
    seen = {}
    rows, labels, probabilities = [], [], []
    per_fold = []
    for fold in sorted(folds, key=lambda f: f["fold"]):
        for row in fold["rows"]:
            if row["file"] in seen:
                raise UserError(
                    f"{row['file']} is in folds {seen[row['file']]} and {fold['fold']}: the "
                    "folds file is not a partition; rerun the folds rule"
                )
            seen[row["file"]] = fold["fold"]
        fold_probabilities = np.asarray(fold["probabilities"], dtype=np.float64)
        fold_labels = np.asarray(fold["labels"], dtype=int)
        predicted = metrics.predicted_classes(fold_probabilities)
        for row, label, p, k in zip(
            fold["rows"], fold_labels, fold_probabilities, predicted, strict=True
        ):
            rows.append(
                {
                    "file": row["file"],
                    "path": row["path"],
                    "label": class_names[label],
                    "fold": fold["fold"],
                    "predicted": class_names[k],
                    # Exactly (repr round-trips), as the predictions CSV has them.
                    **{
                        column: repr(float(p[j]))
                        for j, column in enumerate(metrics.probability_columns(class_names))
                    },
                }
            )
        labels.append(fold_labels)
        probabilities.append(fold_probabilities)
        summary = fold.get("summary") or {}
        per_fold.append(
            {
                "fold": fold["fold"],
                "n_train": int(fold["n_train"]),
                "n_validation": len(fold_labels),
                **scores(fold_labels, fold_probabilities, class_names),
                "epochs_run": summary.get("epochs_run"),
                "best_epoch": summary.get("best_epoch"),
                "train_seconds": summary.get("train_seconds"),
            }
        )
    labels = np.concatenate(labels)
    probabilities = np.concatenate(probabilities)
    return {
        "k": len(per_fold),
        "n_images": len(labels),
        **scores(labels, probabilities, class_names),
        "folds": per_fold,
    }, rows


def mean_probabilities(fold_probabilities):
    """The fold models' test probabilities averaged: the seed's one test prediction."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in fold_probabilities])
    return stacked.mean(axis=0)


def write_oof(path, rows, class_names):
    columns = OOF_COLUMNS + metrics.probability_columns(class_names)
    write_csv(path, columns, sorted(rows, key=lambda row: row["file"]))


def mean_cv(metrics_of_seeds, key):
    """Mean over seeds of a `cv` figure; None where no seed has it."""
    values = [
        m["cv"][key]
        for m in metrics_of_seeds
        if m.get("cv") and m["cv"].get(key) is not None and math.isfinite(m["cv"][key])
    ]
    return sum(values) / len(values) if values else None


def rank_key(metrics_of_seeds, primary):
    """Sort key of an experiment when folds are on: highest mean cross-validated primary metric,
    then cross-validated accuracy, then lowest cross-validated loss; undefined ranks last."""
    value = mean_cv(metrics_of_seeds, cv_key(primary))
    accuracy = mean_cv(metrics_of_seeds, "accuracy") or 0.0
    loss = mean_cv(metrics_of_seeds, "loss")
    return (value is None, -(value or 0.0), -accuracy, math.inf if loss is None else loss)


def fold_differences(a_by_seed, b_by_seed):
    """(differences, n_train, n_test) of two experiments' fold accuracies, paired by (seed,
    fold): B minus A on the same held-out fold, since a seed's partition is the same for every
    experiment. `a_by_seed`, `b_by_seed`: {seed: metrics JSON with a `cv` block}. n_train and
    n_test are the mean images a fold trains and validates on, for the corrected t-test."""
    differences, n_train, n_test = [], [], []
    for seed in sorted(set(a_by_seed) & set(b_by_seed)):
        a_folds = {f["fold"]: f for f in a_by_seed[seed]["cv"]["folds"]}
        b_folds = {f["fold"]: f for f in b_by_seed[seed]["cv"]["folds"]}
        if set(a_folds) != set(b_folds):
            raise UserError(
                f"seed {seed} has folds {sorted(a_folds)} in one experiment and {sorted(b_folds)} "
                "in the other: rerun both with the same cross_validation.folds"
            )
        for fold in sorted(a_folds):
            a, b = a_folds[fold], b_folds[fold]
            if a["n_validation"] != b["n_validation"]:
                raise UserError(
                    f"fold {fold} of seed {seed} holds {a['n_validation']} images in one "
                    f"experiment and {b['n_validation']} in the other: rerun both"
                )
            differences.append(b["accuracy"] - a["accuracy"])
            n_train.append(a["n_train"])
            n_test.append(a["n_validation"])
    if not differences:
        raise UserError("the two experiments share no cross-validated seed")
    return differences, sum(n_train) / len(n_train), sum(n_test) / len(n_test)
