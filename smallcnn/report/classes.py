"""The report's per-class view of one experiment: its confusion matrix as a table while that
reads well, and beyond MANY_CLASSES a heatmap with the most frequent confusions and the per-class
recall worst first, which say what a 50x50 grid of numbers cannot.

templates/classes.html.j2 renders what class_section returns.
"""

import numpy as np

from smallcnn import figures
from smallcnn.errors import UserError
from smallcnn.metrics import per_class

# Above this many classes a table of counts no longer reads (dog breeds come in 120).
MANY_CLASSES = 10
TOP_CONFUSIONS = 10


def top_confusions(matrix, class_names, count=TOP_CONFUSIONS):
    """The `count` most frequent errors, most first: [{true, predicted, count, share}], share
    being the fraction of the true class's test images. Ties go in class order."""
    matrix = np.asarray(matrix, dtype=int)
    errors = matrix.copy()
    np.fill_diagonal(errors, 0)
    true, predicted = np.nonzero(errors)
    # Stable on (true, predicted), the order np.nonzero yields: equal counts stay in class order.
    order = np.argsort(-errors[true, predicted], kind="stable")[:count]
    totals = matrix.sum(axis=1)
    return [
        {
            "true": class_names[true[i]],
            "predicted": class_names[predicted[i]],
            "count": int(errors[true[i], predicted[i]]),
            "share": float(errors[true[i], predicted[i]] / totals[true[i]]),
        }
        for i in order
    ]


def recall_worst_first(matrix, class_names):
    """metrics.per_class rows sorted by recall, worst first, ties in class order; classes absent
    from the test set (recall None) come last."""
    rows = per_class(matrix, class_names)
    return sorted(rows, key=lambda row: (row["recall"] is None, row["recall"] or 0.0))


def class_section(name, metrics, writer):
    """What templates/classes.html.j2 shows for experiment `name`, from its metrics JSON.

    `writer`: a figures.FigureWriter; the figure goes to confusion/<name>.png either way.
    """
    matrix = np.asarray(metrics["confusion_matrix"], dtype=int)
    names = list(metrics["class_names"])
    if matrix.shape != (len(names), len(names)):
        raise UserError(
            f"the confusion matrix of {name} is {matrix.shape[0]}x"
            f"{matrix.shape[1] if matrix.ndim > 1 else 0} but it has {len(names)} classes; "
            "rerun its evaluation"
        )
    many = len(names) > MANY_CLASSES
    confusions = top_confusions(matrix, names)
    recall = recall_worst_first(matrix, names)
    if many:
        figure = figures.confusion_heatmap(matrix, names, name)
        alt = heatmap_alt(name, names, confusions, recall)
    else:
        figure = figures.confusion_matrix(matrix, names, name)
        alt = table_alt(name, names, matrix)
    return {
        "name": name,
        "class_names": names,
        "many": many,
        "rows": [] if many else table_rows(matrix, names),
        "confusions": confusions,
        "recall": recall,
        "figure": writer.save(figure, "confusion", name, alt=alt),
    }


def table_rows(matrix, names):
    totals = matrix.sum(axis=1)
    return [
        {
            "label": label,
            "cells": [
                {"count": int(count), "share": count / totals[i] if totals[i] else 0.0}
                for count in matrix[i]
            ],
            "total": int(totals[i]),
            "index": i,
        }
        for i, label in enumerate(names)
    ]


def table_alt(name, names, matrix):
    return (
        f"Confusion matrix of {name} (rows true class, columns predicted): "
        + "; ".join(
            f"true {label}: "
            + ", ".join(f"{int(c)} as {n}" for c, n in zip(matrix[i], names, strict=True))
            for i, label in enumerate(names)
        )
        + "."
    )


def heatmap_alt(name, names, confusions, recall):
    present = [row for row in recall if row["recall"] is not None]
    parts = [
        f"Confusion matrix of {name} over {len(names)} classes as a heatmap "
        "(rows true class, columns predicted, colour the share of the true class)"
    ]
    if present:
        worst, best = present[0], present[-1]
        parts.append(
            f"recall ranges from {worst['recall']:.0%} ({worst['class']}) "
            f"to {best['recall']:.0%} ({best['class']})"
        )
    if confusions:
        top = confusions[0]
        parts.append(
            f"the most frequent confusion is {top['true']} taken for {top['predicted']} "
            f"({top['count']} images)"
        )
    return "; ".join(parts) + "."
