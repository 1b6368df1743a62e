"""results/summary.csv: one row per experiment, its figures over the seeds.

Outside the report package on purpose: the summarize rule's code identity then covers this
module alone, and a change to the report reruns only the report.
"""

import csv
import math
from pathlib import Path

from smallcnn.errors import UserError
from smallcnn.records import read_json

METRICS_KEYS = ("test_accuracy", "test_loss", "roc_auc", "balanced_accuracy", "macro_f1")

SUMMARY_COLUMNS = (
    "experiment",
    "kind",
    "n_seeds",
    "seeds",
    "test_accuracy_mean",
    "test_accuracy_sd",
    "test_accuracy_min",
    "test_accuracy_max",
    "balanced_accuracy_mean",
    "balanced_accuracy_sd",
    "macro_f1_mean",
    "test_loss_mean",
    "roc_auc_mean",
    "train_seconds_mean",
)


def spread(values):
    """{"mean", "sd", "min", "max"} of the finite values (sd None below two of them)."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    sd = None
    if len(values) > 1:
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return {"mean": mean, "sd": sd, "min": min(values), "max": max(values)}


def experiment_summary(name, kind, metrics):
    """One row of summary.csv from the metrics of every seed of one experiment."""
    accuracy = spread(m["test_accuracy"] for m in metrics)
    balanced = spread(m["balanced_accuracy"] for m in metrics)
    return {
        "experiment": name,
        "kind": kind,
        "n_seeds": len(metrics),
        "seeds": " ".join(str(m["seed"]) for m in metrics if "seed" in m),
        "test_accuracy_mean": accuracy["mean"],
        "test_accuracy_sd": accuracy["sd"],
        "test_accuracy_min": accuracy["min"],
        "test_accuracy_max": accuracy["max"],
        "balanced_accuracy_mean": balanced["mean"],
        "balanced_accuracy_sd": balanced["sd"],
        "macro_f1_mean": spread(m["macro_f1"] for m in metrics)["mean"],
        "test_loss_mean": spread(m["test_loss"] for m in metrics)["mean"],
        "roc_auc_mean": spread(m["roc_auc"] for m in metrics)["mean"],
        "train_seconds_mean": spread(m["train_seconds"] for m in metrics)["mean"],
    }


def write_summary(metrics, experiments, out):
    """results/summary.csv: one row per declared experiment, in declaration order.

    `metrics`: paths results/metrics/<experiment>/<seed>.json; `experiments`: [{"name", "kind"}].
    """
    by_experiment = {}
    for path in metrics:
        path = Path(path)
        data = read_json(path, METRICS_KEYS)
        # results/metrics/<experiment>/<seed>.json
        by_experiment.setdefault(path.parent.name, []).append({**data, "seed": int(path.stem)})
    rows = []
    for experiment in experiments:
        runs = sorted(by_experiment.get(experiment["name"], []), key=lambda m: m["seed"])
        if not runs:
            raise UserError(f"no metrics for experiment {experiment['name']!r} among the inputs")
        rows.append(experiment_summary(experiment["name"], experiment["kind"], runs))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return rows
