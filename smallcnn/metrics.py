"""Classification metrics in numpy, from labels, predictions and scores or a confusion matrix.

Undefined is None, never a made-up 0: a per-class precision of a class the model never predicted
is 0/0, a recall of a class absent from the test set is 0/0. Averages over classes skip the
classes where the quantity is undefined, as scikit-learn's defaults do (balanced accuracy over
the classes present in the test set; macro-F1 over the classes present or predicted).
"""

import numpy as np

from smallcnn.errors import UserError

# report.primary_metric -> the metrics JSON key it ranks by, and how the report names it.
PRIMARY_METRICS = {
    "accuracy": ("test_accuracy", "accuracy"),
    "balanced_accuracy": ("balanced_accuracy", "balanced accuracy"),
    "macro_f1": ("macro_f1", "macro-F1"),
    "roc_auc": ("roc_auc", "ROC AUC"),
}
# Probabilities are clipped like Keras' cross-entropy losses, so that the loss is finite.
EPSILON = 1e-7
# A test split counts as balanced when its largest class is at most this many times its smallest:
# a few images lost to rejections must not flip the ranking metric of an otherwise even split.
BALANCED_RATIO = 1.1


def class_probabilities(outputs):
    """Model outputs -> (n, n_classes) probabilities (a sigmoid output is P(class 1))."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        p = outputs.reshape(-1)
        return np.stack([1 - p, p], axis=1)
    return outputs


def predicted_classes(probabilities):
    """Class index per row of (n, n_classes) probabilities; for two classes class 1 needs
    p > 0.5, as Keras' binary accuracy."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 2:
        return (probabilities[:, 1] > 0.5).astype(int)
    return probabilities.argmax(axis=1)


def cross_entropy(labels, probabilities):
    chosen = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(chosen, EPSILON, 1 - EPSILON))))


# The prefix of each class's probability column in the predictions and OOF CSVs.
PROBABILITY_PREFIX = "p_"
# The errors file (evaluation.write_errors): here, not in evaluation, so that the report reads
# it without importing Keras.
ERROR_COLUMNS = ("rank", "loss", "file", "path", "true", "predicted", "probability", "p_true")
# What a metrics JSON repeats of the training (with folds, per fold model averaged or summed),
# which the report reads.
TRAINING_FACTS = (
    "epochs_run",
    "best_epoch",
    "stopped_early",
    "train_seconds",
    "params_trainable",
    "params_total",
)


def probability_columns(class_names):
    """The predictions CSV's column of each class's probability, in class order."""
    return [f"{PROBABILITY_PREFIX}{name}" for name in class_names]


def confusion_matrix(labels, predicted, n_classes):
    """Counts with rows the true class and columns the predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def ratio(numerator, denominator):
    return float(numerator / denominator) if denominator else None


def per_class(matrix, class_names):
    """[{class, precision, recall, f1, support}] from a confusion matrix (rows true class).

    precision is None for a class never predicted; recall None for a class absent from the test
    set; F1 = 2TP / (2TP + FP + FN), so it is 0 for a class present but never predicted (or
    predicted but absent) and None only when the class is neither present nor predicted.
    """
    matrix = np.asarray(matrix)
    if matrix.shape != (len(class_names), len(class_names)):
        raise UserError(
            f"a confusion matrix of shape {matrix.shape} does not fit {len(class_names)} classes; "
            "rerun the evaluation"
        )
    true_positive = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    return [
        {
            "class": name,
            "precision": ratio(true_positive[k], predicted[k]),
            "recall": ratio(true_positive[k], support[k]),
            "f1": ratio(2 * true_positive[k], support[k] + predicted[k]),
            "support": int(support[k]),
        }
        for k, name in enumerate(class_names)
    ]


def mean_defined(values):
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def balanced_accuracy(classes):
    """Mean recall over the classes present in the test set (`classes`: from per_class)."""
    return mean_defined(row["recall"] for row in classes)


def macro_f1(classes):
    """Mean F1 over the classes present in the test set or predicted (`classes`: from per_class)."""
    return mean_defined(row["f1"] for row in classes)


def rank_auc(positive, scores):
    """Area under the ROC curve from ranks (Mann-Whitney U; ties get their average rank).

    None when `positive` has only one class, where the area is undefined.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    average_rank = last_rank - (counts - 1) / 2
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(labels, probabilities):
    """Binary: AUC of the sigmoid probability of class 1. More classes: macro one-vs-rest AUC
    over the classes present in `labels` (None if it is undefined for all of them)."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 1 or probabilities.shape[1] == 1:
        return rank_auc(labels == 1, probabilities.reshape(-1))
    areas = [rank_auc(labels == k, probabilities[:, k]) for k in range(probabilities.shape[1])]
    areas = [a for a in areas if a is not None]
    return float(np.mean(areas)) if areas else None


def average_precision(positive, scores):
    """Area under the precision-recall curve as average precision, scikit-learn's definition:
    AP = sum over thresholds of (R_n - R_(n-1)) * P_n, a step function without interpolation.

    Each distinct score is one threshold, so tied images enter together. None when there is no
    positive, where recall is undefined.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(positive.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, positive = scores[order], positive[order]
    # The last index of each run of equal scores: the threshold there admits the whole run.
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(positive)[last]
    precision = true_positives / (last + 1)
    recall = true_positives / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def class_metrics(labels, predicted, probabilities, class_names):
    """What the metrics JSON adds beside accuracy: balanced_accuracy, macro_f1, per_class and
    pr_auc (average precision of class 1 scored by its probability; None unless two classes)."""
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = per_class(confusion_matrix(labels, predicted, len(class_names)), class_names)
    return {
        "balanced_accuracy": balanced_accuracy(classes),
        "macro_f1": macro_f1(classes),
        "per_class": classes,
        "pr_auc": (
            average_precision(labels == 1, probabilities[:, 1]) if len(class_names) == 2 else None
        ),
    }


def primary_metric(setting, test_class_counts):
    """(metrics JSON key, one sentence saying why) for `report.primary_metric`.

    `test_class_counts`: test images per class. `auto` ranks by accuracy on a balanced test split
    and by balanced accuracy otherwise, where a model answering the majority class scores high.
    """
    counts = [int(count) for count in test_class_counts]
    if not counts:
        raise UserError("the primary metric needs the test split's class counts; found none")
    if setting != "auto":
        if setting not in PRIMARY_METRICS:
            raise UserError(
                f"report.primary_metric is {setting!r}; use auto or one of "
                f"{', '.join(PRIMARY_METRICS)}"
            )
        key, label = PRIMARY_METRICS[setting]
        return key, f"Ranked by {label}, as set in report.primary_metric."
    largest, smallest = max(counts), min(counts)
    if smallest > 0 and largest <= BALANCED_RATIO * smallest:
        sizes = f"{largest:,}" if largest == smallest else f"{smallest:,} to {largest:,}"
        return "test_accuracy", (
            "Ranked by accuracy (report.primary_metric: auto): the test split is balanced, "
            f"{sizes} images per class."
        )
    shape = (
        f"its largest class {largest / smallest:.1f}× its smallest ({largest:,} against "
        f"{smallest:,} images)"
        if smallest
        else f"a class has no test image, the largest {largest:,}"
    )
    return "balanced_accuracy", (
        "Ranked by balanced accuracy, the mean of the per-class recalls "
        f"(report.primary_metric: auto): the test split is imbalanced, {shape}, so accuracy "
        "would reward answering the majority class."
    )
