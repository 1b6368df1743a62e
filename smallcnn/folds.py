"""Stratified k-fold partitions of the train + validation images, one partition per training seed.

The test split is never in a fold: it stays the one held-out estimate. Each training seed draws
its own partition (the corrected repeated k-fold test assumes r seeds give r partitions), and the
draw is a hash of the split seed, the training seed and each image's content, as the split's is:
it depends on nothing but the seeds and the images, not on file order, the machine or library
versions. prepare keeps one image per near-duplicate group, so no photo can straddle two folds.

results/data/folds.csv has one row per (training seed, image): the source file as the manifest
names it, the split copy's path relative to results/data, the label, the seed and the fold.
"""

import csv
import hashlib
import logging
from collections import defaultdict
from pathlib import Path

from smallcnn.errors import UserError
from smallcnn.records import write_csv

log = logging.getLogger(__name__)

FOLDS_COLUMNS = ["file", "path", "label", "seed", "fold"]
# The splits that cross-validation divides; the last one (test) stays held out.
POOLED = ("train", "validation")


def _rank(split_seed, training_seed, sha256):
    return hashlib.sha256(f"{split_seed}:{training_seed}:{sha256}".encode()).hexdigest()


def assign(rows, k, split_seed, training_seed):
    """{file: fold} for `rows` ({"file", "label", "sha256"}): each class ranked by content hash
    and dealt round robin, continuing from class to class, so that every fold holds each class's
    images to within one and all folds are within one image of each other."""
    if not isinstance(k, int) or k < 2:
        raise UserError(f"cross_validation.folds is {k}: k-fold needs at least 2 folds")
    by_label = defaultdict(list)
    for row in rows:
        by_label[row["label"]].append(row)
    short = {label: len(found) for label, found in by_label.items() if len(found) < k}
    if short:
        raise UserError(
            f"cross_validation.folds is {k}, but "
            + ", ".join(f"class '{label}' has {n}" for label, n in sorted(short.items()))
            + " train + validation image(s): every fold needs an image of every class. Lower "
            "folds or add images"
        )
    folds = {}
    position = 0
    for label in sorted(by_label):
        ranked = sorted(
            by_label[label], key=lambda row: _rank(split_seed, training_seed, row["sha256"])
        )
        for row in ranked:
            folds[row["file"]] = position % k
            position += 1
    return folds


def write_folds(splits, out, k, split_seed, seeds):
    """results/data/folds.csv from results/data/splits.csv: every train and validation image once
    per training seed in `seeds`, in exactly one of `k` folds. Returns the rows written."""
    with open(splits, newline="", encoding="utf-8") as handle:
        pooled = [row for row in csv.DictReader(handle) if row["split"] in POOLED]
    if not pooled:
        raise UserError(f"{splits} lists no train or validation image: run the split again")
    table = []
    for seed in seeds:
        folds = assign(pooled, k, split_seed, seed)
        for row in sorted(pooled, key=lambda row: (row["label"], row["file"])):
            table.append(
                {
                    "file": row["file"],
                    "path": f"{row['split']}/{row['path']}",
                    "label": row["label"],
                    "seed": int(seed),
                    "fold": folds[row["file"]],
                }
            )
    write_csv(out, FOLDS_COLUMNS, table)
    log.info(
        "folds: %d train + validation images in %d folds for seed(s) %s",
        len(pooled),
        k,
        ", ".join(str(seed) for seed in seeds),
    )
    return table


def concatenate(paths, out):
    """results/data/folds.csv: the per-seed fold files one after the other."""
    table = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as handle:
            table.extend(csv.DictReader(handle))
    write_csv(out, FOLDS_COLUMNS, table)
    return table


def read_folds(path, seed, k=None):
    """The rows of `path` (folds.csv) for training seed `seed`, with seed and fold as ints.

    `k`, when given, must be the number of folds the file was written with."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [
            {**row, "seed": int(row["seed"]), "fold": int(row["fold"])}
            for row in csv.DictReader(handle)
            if int(row["seed"]) == int(seed)
        ]
    if not rows:
        raise UserError(f"{path} has no fold of training seed {seed}: run the folds rule again")
    found = max(row["fold"] for row in rows) + 1
    if k is not None and found != k:
        raise UserError(f"{path} has {found} folds, cross_validation.folds is {k}: rerun it")
    return rows


def fold_paths(rows, fold):
    """(training paths, validation paths) of fold `fold`: the split copies, relative to
    results/data, that train on the other folds and validate on this one."""
    train = [row["path"] for row in rows if row["fold"] != fold]
    validation = [row["path"] for row in rows if row["fold"] == fold]
    if not validation:
        raise UserError(f"fold {fold} is empty")
    return train, validation


def locate(path, split_dirs):
    """The split copy `path` (relative to results/data: <split>/<label>/<name>) inside the split
    folders the job was given as inputs ({"train": folder, "validation": folder})."""
    split, _, rest = path.partition("/")
    if split not in split_dirs or not rest:
        raise UserError(
            f"{path} in the folds file is not in a split the job was given "
            f"({', '.join(sorted(split_dirs))}): rerun the folds rule"
        )
    return Path(split_dirs[split]) / rest


def select_rows(feature_sets, paths):
    """(features, labels) of `paths` (<split>/<label>/<name>, in that order) from the features
    files of their splits ({split: an object with .features, .labels, .files}): a fold takes its
    rows from the train and validation files extracted once, nothing is extracted again."""
    import numpy as np

    where = {}
    for split, features in feature_sets.items():
        for index, file in enumerate(features.files):
            where[f"{split}/{file}"] = (split, index)
    missing = [path for path in paths if path not in where]
    if missing:
        raise UserError(
            f"{len(missing)} image(s) of the folds file are not in the features files, e.g. "
            f"{missing[0]}: the features were extracted from another split; rerun them"
        )
    order = [where[path] for path in paths]
    features = np.stack([feature_sets[split].features[i] for split, i in order])
    labels = np.asarray([feature_sets[split].labels[i] for split, i in order], dtype="int32")
    return features, labels
