"""The first-ranked experiment's errors, file by file: its most confused pairs of classes, and its
largest confusion-matrix cells opened (an HTML <details>, no script) to their test images.

evaluation.write_errors ranks every test image by its loss in
results/errors/<experiment>/<seed>.csv; a cell shows its worst images and names that file for the
rest.
"""

from pathlib import Path

import numpy as np

from smallcnn import figures
from smallcnn.metrics import ERROR_COLUMNS
from smallcnn.report.classes import top_confusions
from smallcnn.report.loading import read_csv, run_key

CELLS = 10
PER_CELL = 12
PAIRS = 10
THUMBNAIL_PIXELS = 112


def confused_pairs(matrix, class_names, count=PAIRS):
    """The `count` pairs of classes most often taken for each other, either way, most first:
    [{a, b, a_as_b, b_as_a, count, share}], share being the fraction of the two classes' test
    images; ties go in class order."""
    matrix = np.asarray(matrix, dtype=int)
    totals = matrix.sum(axis=1)
    pairs = []
    for a in range(len(class_names)):
        for b in range(a + 1, len(class_names)):
            both = int(matrix[a, b] + matrix[b, a])
            if both:
                images = int(totals[a] + totals[b])
                pairs.append(
                    {
                        "a": class_names[a],
                        "b": class_names[b],
                        "a_as_b": int(matrix[a, b]),
                        "b_as_a": int(matrix[b, a]),
                        "count": both,
                        "share": both / images if images else 0.0,
                    }
                )
    # sorted() is stable: equal counts stay in class order.
    return sorted(pairs, key=lambda pair: -pair["count"])[:count]


def read_errors(path):
    return read_csv(path, ERROR_COLUMNS, remedy="rerun its evaluation")


def errors_file(paths, experiment, seed):
    """The errors file of (experiment, seed) among the report's inputs, or None."""
    for path in paths:
        if run_key(path) == (experiment, seed):
            return Path(path)
    return None


def confusion_cells(errors, matrix, class_names, test_dir, errors_path):
    """The CELLS largest off-diagonal cells, each with up to PER_CELL of its images, worst loss
    first, as JPEG data URIs, and how many more the errors file names."""
    cells = []
    for cell in top_confusions(matrix, class_names, count=CELLS):
        rows = errors[(errors["true"] == cell["true"]) & (errors["predicted"] == cell["predicted"])]
        rows = rows.sort_values("rank")
        images = []
        for row in rows.head(PER_CELL).itertuples():
            path = Path(test_dir) / row.file
            if not path.is_file():
                continue
            images.append(
                {
                    "file": row.file,
                    "probability": float(row.probability),
                    "uri": figures.jpeg_data_uri(
                        figures.jpeg_bytes(figures.thumbnail(path, THUMBNAIL_PIXELS))
                    ),
                    "alt": f"{cell['true']} taken for {cell['predicted']}: test image "
                    f"{row.file}, probability {float(row.probability):.2f}.",
                }
            )
        cells.append(
            {**cell, "images": images, "more": len(rows) - len(images), "file": str(errors_path)}
        )
    return cells


def errors_section(run, errors_paths, test_dir):
    """Most confused pairs and the images of the largest cells of `run` (the first-ranked
    experiment's first seed)."""
    names = list(run.metrics["class_names"])
    matrix = np.asarray(run.metrics["confusion_matrix"], dtype=int)
    path = errors_file(errors_paths, run.experiment, run.seed)
    section = {
        "model": run.experiment,
        "seed": run.seed,
        "pairs": confused_pairs(matrix, names),
        "cells": [],
        "file": None if path is None else str(path),
    }
    if path is not None:
        errors = read_errors(path)
        section["cells"] = confusion_cells(errors, matrix, names, test_dir, path)
    return section
