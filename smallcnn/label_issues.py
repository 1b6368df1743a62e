"""Labels worth a second look: confident learning over the out-of-fold probabilities.

Only cross-validation gives every training image a probability from a model that never saw it,
and only such a probability can say that an image's label looks wrong. cleanlab's
find_label_issues (Northcutt et al., confident learning) does the finding; this module feeds it
the pipeline's OOF predictions, averaged over training seeds, and writes
results/label_issues.csv keyed by the source file as the manifest names it. Its `label` column
is the suggested label, so that the file, edited, is a `data.corrections` file as it is: keep the
rows to relabel, write `exclude` for an image that belongs to no class, delete the others.
"""

import csv
import logging
from pathlib import Path

import numpy as np

from smallcnn.errors import UserError
from smallcnn.metrics import PROBABILITY_PREFIX
from smallcnn.records import write_csv

log = logging.getLogger(__name__)

LABEL_ISSUES_COLUMNS = [
    "file",
    "label",
    "given_label",
    "self_confidence",
    "suggested_confidence",
    "rank",
    "path",
    "reason",
]


def read_oof(path):
    """(rows, class names) of one OOF file; rows carry the probabilities as a numpy vector."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        classes = [
            c.removeprefix(PROBABILITY_PREFIX) for c in columns if c.startswith(PROBABILITY_PREFIX)
        ]
        missing = [c for c in ("file", "label") if c not in columns]
        if missing or len(classes) < 2:
            raise UserError(
                f"{path} is not an out-of-fold prediction file (it lacks "
                f"{', '.join(missing) or 'a probability per class'}): delete it and rerun"
            )
        rows = []
        for row in reader:
            row["probabilities"] = np.array(
                [float(row[PROBABILITY_PREFIX + c]) for c in classes], dtype=np.float64
            )
            rows.append(row)
    return rows, classes


def averaged_oof(paths):
    """(files, paths, given label indices, mean probabilities, class names) over the OOF files of
    one experiment's seeds, which must list the same images with the same labels and classes."""
    merged = {}
    classes = None
    for path in paths:
        rows, found = read_oof(path)
        if classes is None:
            classes = found
        elif found != classes:
            raise UserError(f"{path} has classes {found}, {paths[0]} has {classes}")
        if merged and set(merged) != {row["file"] for row in rows}:
            raise UserError(f"{path} lists other images than {paths[0]}: rerun both")
        for row in rows:
            entry = merged.setdefault(
                row["file"], {"label": row["label"], "path": row.get("path", ""), "sum": 0}
            )
            if entry["label"] != row["label"]:
                raise UserError(
                    f"{row['file']} is labelled {row['label']} in {path}, {entry['label']} in "
                    f"{paths[0]}: rerun both"
                )
            entry["sum"] = entry["sum"] + row["probabilities"]
    if not merged:
        raise UserError(f"no out-of-fold predictions in {', '.join(map(str, paths))}")
    files = sorted(merged)
    unknown = sorted({merged[f]["label"] for f in files} - set(classes))
    if unknown:
        raise UserError(f"labels {unknown} of the OOF files are not among their classes {classes}")
    labels = np.array([classes.index(merged[f]["label"]) for f in files])
    probabilities = np.stack([merged[f]["sum"] / len(paths) for f in files])
    split_paths = [merged[f]["path"] for f in files]
    return files, split_paths, labels, probabilities, classes


def find_label_issues(oof_paths, out, experiment=None):
    """Write `out` (label_issues.csv): the candidates cleanlab finds among the OOF predictions of
    `oof_paths` (one experiment, one file per seed), most suspicious first. Returns the rows."""
    from cleanlab.filter import find_label_issues as cleanlab_find

    files, split_paths, labels, probabilities, classes = averaged_oof([str(p) for p in oof_paths])
    present = np.bincount(labels, minlength=len(classes))
    if present.min() == 0:
        raise UserError(
            f"class '{classes[int(present.argmin())]}' has no image in the OOF predictions"
        )
    # Rows of float noise (an OOF sum of per-class outputs) are renormalised: cleanlab checks it.
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    ranked = cleanlab_find(
        labels=labels, pred_probs=probabilities, return_indices_ranked_by="self_confidence"
    )
    source = f"out-of-fold predictions of {experiment}" if experiment else "OOF predictions"
    rows = []
    for rank, index in enumerate(ranked, start=1):
        given = int(labels[index])
        # The most probable class other than the given one: what a second look would check.
        others = probabilities[index].copy()
        others[given] = -1
        suggested = int(others.argmax())
        rows.append(
            {
                "file": files[index],
                "label": classes[suggested],
                "given_label": classes[given],
                "self_confidence": f"{probabilities[index, given]:.6f}",
                "suggested_confidence": f"{probabilities[index, suggested]:.6f}",
                "rank": rank,
                "path": split_paths[index],
                "reason": (
                    f"cleanlab: {classes[given]} has probability "
                    f"{probabilities[index, given]:.3f} in the {source}, "
                    f"{classes[suggested]} {probabilities[index, suggested]:.3f}"
                ),
            }
        )
    write_csv(out, LABEL_ISSUES_COLUMNS, rows)
    log.info("label issues: %d candidates among %d images (%s)", len(rows), len(files), source)
    return rows


def read_label_issues(path):
    """The rows of label_issues.csv, most suspicious first."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def find_for_best(oof, metrics, splits, experiments, primary_setting, out):
    """label_issues.csv from the OOF files of the experiment the report ranks first: by the
    cross-validated primary metric (report.primary_metric, auto from the test split's classes
    as the report decides it), over its seeds. `oof` and `metrics`: per-run paths
    results/<what>/<experiment>/<seed>.<ext>."""
    import pandas as pd

    from smallcnn import crossval
    from smallcnn import metrics as metric_names
    from smallcnn.records import read_json

    # Class names as written: "NA" or "None" is a class, not a missing value.
    table = pd.read_csv(splits, dtype=str, keep_default_na=False)
    test_counts = table[table["split"] == "test"].groupby("label").size().tolist()
    primary, _ = metric_names.primary_metric(primary_setting, test_counts)
    by_experiment = {name: [] for name in experiments}
    for path in metrics:
        name = Path(path).parent.name
        by_experiment[name].append(read_json(path, ("cv",), "rerun its evaluation"))
    best = min(experiments, key=lambda name: crossval.rank_key(by_experiment[name], primary))
    paths = sorted(str(path) for path in oof if Path(path).parent.name == best)
    log.info("label issues: from %s, ranked first by cross-validated %s", best, primary)
    return find_label_issues(paths, out, experiment=best)
