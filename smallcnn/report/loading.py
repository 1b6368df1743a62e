"""Reading the report's inputs: one Run per (experiment, seed), found by path.

With cross_validation.folds, each (experiment, seed) has one training per fold: its histories and
training summaries are results/<what>/<experiment>/<seed>/fold<i>.<ext>, while its metrics and
predictions (the fold models combined) stay per seed."""

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smallcnn.errors import UserError
from smallcnn.metrics import TRAINING_FACTS, probability_columns
from smallcnn.records import read_json

METRICS_KEYS = (
    "test_accuracy",
    "test_loss",
    "roc_auc",
    "balanced_accuracy",
    "macro_f1",
    "confusion_matrix",
    "class_names",
    "n_test",
    "accuracy_ci95",
    *TRAINING_FACTS,
)
HISTORY_COLUMNS = ("epoch", "accuracy", "loss")
PREDICTION_COLUMNS = ("file", "label", "predicted", "probability", "correct")


@dataclass
class Fold:
    """One fold model's training: it trained on the other folds and validated on this one."""

    fold: int
    summary: dict
    history: pd.DataFrame


@dataclass
class Run:
    """One training run: an experiment trained with one seed, and its evaluation.

    With folds, `folds` holds each fold's training and `summary` and `history` are fold 0's (its
    settings, such as class weights and base weights, are every fold's)."""

    experiment: str
    seed: int
    metrics: dict
    summary: dict
    history: pd.DataFrame
    predictions: pd.DataFrame
    folds: list = dataclasses.field(default_factory=list)


def plain(value):
    """Snakemake's config and named lists as plain dicts and lists (for YAML and templates)."""
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


# Columns of file and class names, read as written: a class may be named "01", or "NA", "None"
# or "null", which pandas would otherwise read as missing.
TEXT_COLUMNS = ("file", "path", "label", "true", "predicted", "tta_predicted", "split")


def read_csv(path, columns, remedy="rerun the job that writes it"):
    """The CSV at `path`, which must have `columns`; a missing or unreadable file or a missing
    column is a user error ending in `remedy`."""
    try:
        table = pd.read_csv(path, dtype=dict.fromkeys(TEXT_COLUMNS, str))
        text = [column for column in TEXT_COLUMNS if column in table.columns]
        if text:
            # Numbers keep pandas' missing values (an empty cell, "nan"); names are never missing.
            table[text] = pd.read_csv(path, usecols=text, dtype=str, keep_default_na=False)[text]
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"cannot read {path}: {error}; {remedy}") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise UserError(
            f"{path} lacks the column(s) {', '.join(missing)}: it was written by another "
            "version of the workflow; delete it and rerun"
        )
    return table


def run_key(path):
    """(experiment, seed) of a per-run file: results/<kind of file>/<experiment>/<seed>.<ext>,
    or (experiment, seed, fold) of a per-fold one: .../<experiment>/<seed>/fold<fold>.<ext>."""
    path = Path(path)
    fold = re.fullmatch(r"fold(\d+)", path.stem)
    try:
        if fold:
            return path.parent.parent.name, int(path.parent.name), int(fold.group(1))
        return path.parent.name, int(path.stem)
    except ValueError:
        raise UserError(
            f"{path} is not a per-run file (<experiment>/<seed>.<ext> or "
            "<experiment>/<seed>/fold<i>.<ext>): the report's inputs come from the workflow's rules"
        ) from None


def by_run(paths, names, seeds, what):
    """{(experiment, seed): path}, or {(experiment, seed): {fold: path}} for per-fold files."""
    found = {}
    for path in paths:
        key = run_key(path)
        if len(key) == 3:
            found.setdefault(key[:2], {})[key[2]] = Path(path)
        else:
            found[key] = Path(path)
    missing = [f"{name}/{seed}" for name in names for seed in seeds if (name, seed) not in found]
    if missing:
        raise UserError(
            f"no {what} file for {', '.join(missing)} among the report's inputs "
            f"({', '.join(str(path) for path in paths) or 'none'})"
        )
    return found


def parse_correct(column, path):
    values = column.astype(str).str.strip().str.lower()
    mapping = {"true": True, "false": False, "1": True, "0": False}
    unknown = sorted(set(values) - set(mapping))
    if unknown:
        raise UserError(f"{path}: column correct holds {unknown[:3]}, expected true or false")
    return values.map(mapping).astype(bool)


def parse_probabilities(table, columns, path):
    """The probability `columns` as floats, in place; a value that is not a number in 0..1 is a
    user error."""
    for column in columns:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table[column][values.isna() | (values < 0) | (values > 1)]
        if len(bad):
            raise UserError(
                f"{path}: column {column} holds {bad.astype(str).tolist()[:3]}, expected "
                "probabilities between 0 and 1; rerun the evaluation that wrote it"
            )
        table[column] = values.astype(float)


def load_runs(inputs, names, seeds):
    """{experiment: [Run per seed]} in the order of `names` and `seeds`."""
    if not names:
        raise UserError("the report needs at least one experiment (config key experiments)")
    if not seeds:
        raise UserError("the report needs at least one seed (config key seeds)")
    metrics = by_run(inputs.metrics, names, seeds, "metrics")
    summaries = by_run(inputs.summaries, names, seeds, "training summary")
    histories = by_run(inputs.histories, names, seeds, "history")
    predictions = by_run(inputs.predictions, names, seeds, "predictions")
    runs = {}
    for name in names:
        runs[name] = []
        for seed in seeds:
            key = (name, seed)
            run_metrics = read_json(metrics[key], METRICS_KEYS)
            table = read_csv(
                predictions[key],
                PREDICTION_COLUMNS + tuple(probability_columns(run_metrics["class_names"])),
            )
            table["correct"] = parse_correct(table["correct"], predictions[key])
            parse_probabilities(
                table, probability_columns(run_metrics["class_names"]), predictions[key]
            )
            folds = []
            if isinstance(summaries[key], dict):
                if set(summaries[key]) != set(histories.get(key) or {}):
                    raise UserError(
                        f"{name}/{seed}: the folds of its summaries and histories differ"
                    )
                folds = [
                    Fold(
                        fold=fold,
                        summary=read_json(summaries[key][fold], ("experiment",)),
                        history=read_csv(histories[key][fold], HISTORY_COLUMNS),
                    )
                    for fold in sorted(summaries[key])
                ]
            runs[name].append(
                Run(
                    experiment=name,
                    seed=seed,
                    metrics=run_metrics,
                    summary=folds[0].summary
                    if folds
                    else read_json(summaries[key], ("experiment",)),
                    history=folds[0].history
                    if folds
                    else read_csv(histories[key], HISTORY_COLUMNS),
                    predictions=table,
                    folds=folds,
                )
            )
    return runs
