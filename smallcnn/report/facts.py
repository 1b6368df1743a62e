"""The report's Data and Provenance sections: what went in, and what produced the results."""

import yaml

from smallcnn import provenance, registry
from smallcnn.records import read_json
from smallcnn.report.loading import read_csv
from smallcnn.report.sections import pretrained_weights

MANIFEST_COLUMNS = ("file", "label", "status", "detail")
SPLITS = ("train", "validation", "test")


def data_section(splits, manifest_path, rejections_path):
    counts = splits.groupby(["label", "split"]).size().unstack(fill_value=0)
    columns = [split for split in SPLITS if split in counts.columns] + [
        split for split in counts.columns if split not in SPLITS
    ]
    counts = counts.reindex(columns=columns, fill_value=0)
    rows = [
        {
            "label": label,
            "counts": [int(v) for v in counts.loc[label]],
            "total": int(counts.loc[label].sum()),
        }
        for label in counts.index
    ]
    totals = [int(v) for v in counts.sum(axis=0)]
    # The largest class over the smallest: what class_weight auto and the primary metric react to.
    train = counts.get("train", counts.sum(axis=1))
    imbalance = float(train.max() / train.min()) if train.min() else None

    manifest = read_csv(manifest_path, MANIFEST_COLUMNS)
    rejections = read_json(rejections_path, ("n_files", "n_ok"))
    rejected = manifest[manifest["status"] != "ok"].fillna({"detail": ""})
    reasons = []
    for status, group in rejected.groupby("status", sort=False):
        examples = group.sort_values("file").head(5)
        reasons.append(
            {
                "reason": status,
                "count": len(group),
                "examples": [
                    {"file": row.file, "detail": row.detail} for row in examples.itertuples()
                ],
            }
        )
    reasons.sort(key=lambda reason: (-reason["count"], reason["reason"]))
    return {
        "splits": columns,
        "rows": rows,
        "totals": totals,
        "total": sum(totals),
        "imbalance": imbalance,
        "n_files": rejections["n_files"],
        "n_ok": rejections["n_ok"],
        "n_rejected": len(rejected),
        "reasons": reasons,
        # data.corrections applied by prepare (absent from the rejections of older runs).
        "corrections": rejections.get("corrections")
        or {"relabelled": 0, "excluded": 0, "unchanged": 0},
    }


def provenance_section(inputs, settings, runs_by_experiment, kinds):
    training = []
    for name, runs in runs_by_experiment.items():
        for run in runs:
            summary = run.summary
            versions = summary.get("versions") or {}
            training.append(
                {
                    "name": name,
                    "seed": summary.get("seed", run.seed),
                    "params_trainable": run.metrics["params_trainable"],
                    "params_total": run.metrics["params_total"],
                    "device": summary.get("device"),
                    "precision": summary.get("precision"),
                    "tensorflow": versions.get("tensorflow"),
                    "keras": versions.get("keras"),
                    "uses_base": registry.KINDS[kinds[name]].uses_base,
                    "weights": pretrained_weights(summary),
                }
            )
    jobs = provenance.benchmarks(inputs.benchmarks)
    return {
        "config": yaml.safe_dump(settings.run, sort_keys=False, default_flow_style=False),
        "versions": provenance.package_versions(),
        "git": provenance.git_state(settings.repo),
        "source": provenance.source_state(settings.repo),
        "machine": provenance.machine(),
        "training": training,
        "benchmarks": jobs,
        "benchmark_total": {
            key: sum(job[key] for job in jobs if job[key] is not None)
            for key in ("seconds", "cpu_seconds")
        },
    }
