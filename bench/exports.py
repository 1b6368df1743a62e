"""Exports and test-time augmentation on real photos, through the pipeline itself.

Runs the Snakefile with config/bench.yaml (the 4,000 photos, the offline VGG16 weights, 150x150)
for scratch and features, evaluates with `evaluation.tta: 5`, exports both models to every
format, then prints per format the size, single-image latency, max |dp|, agreement and accuracy,
and TTA's effect on test accuracy and inference time. Writes results/bench/exports.json.

Every format is named in export.allow_mismatch here: a miss is a figure to report, not a reason
to lose the other figures (parity.json says whether each target was met).

    .venv/bin/python bench/exports.py                      # 1,000 photos per class, ~1 h
    .venv/bin/python bench/exports.py --per-class 2000     # all 4,000 photos
"""

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import accuracy
import common

from smallcnn.registry import EXPORT_FORMATS

EXPERIMENTS = ["scratch", "features"]


def bench_config(per_class, tta, epochs):
    config = accuracy.bench_config("cpu")
    config["experiments"] = EXPERIMENTS
    # The split's fractions of at most `per_class` photos per class: 1,000 gives 250 test
    # photos per class, enough for the int8 targets (enforced from 200 test images).
    config["split"]["max_per_class"] = per_class
    config["evaluation"] = {"tta": tta}
    config["export"] = {"experiments": EXPERIMENTS, "allow_mismatch": list(EXPORT_FORMATS)}
    if epochs:
        config["training"] = {name: {"epochs": epochs} for name in EXPERIMENTS}
    return config


def collect(workdir, seed):
    results = workdir / "results"
    rows = {}
    for name in EXPERIMENTS:
        metrics = json.loads((results / "metrics" / name / f"{seed}.json").read_text())
        folder = results / "export" / name / str(seed)
        rows[name] = {
            "metrics": {key: value for key, value in metrics.items() if key != "per_class"},
            "parity": json.loads((folder / "parity.json").read_text()),
            "model": json.loads((folder / "model.json").read_text()),
        }
    return rows


def export_table(rows):
    lines = [
        "| model | format | size MB | latency ms | max abs dp | agreement | accuracy | target |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, row in rows.items():
        for fmt, figures in row["parity"]["formats"].items():
            if figures["status"] != "ok":
                lines.append(f"| {name} | {fmt} | cannot be produced: {figures['error']} |")
                continue
            size = figures.get("size_bytes")
            diff = figures.get("max_abs_diff")
            agreement = figures.get("agreement")
            target = (
                "reference"
                if "target_met" not in figures
                else ("met" if figures["target_met"] else "MISSED")
                + ("" if figures["enforced"] else " (not enforced)")
            )
            lines.append(
                f"| {name} | {fmt} | {'' if size is None else f'{size / 1e6:.2f}'} "
                f"| {figures['latency_ms']:.2f} | {'' if diff is None else f'{diff:.1e}'} "
                f"| {'' if agreement is None else f'{agreement:.2%}'} "
                f"| {figures['accuracy']:.2%} | {target} |"
            )
        gap = row["parity"]["float32_vs_trained"]
        lines.append(
            f"| {name} | trained ({row['parity']['training_precision']}) vs float32 | | "
            f"| {gap['max_abs_diff']:.1e} | {gap['agreement']:.2%} | {gap['accuracy']:.2%} | |"
        )
    return "\n".join(lines)


def tta_table(rows):
    lines = [
        "| model | views | accuracy | with TTA | only TTA right / only plain right | time x |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        metrics = row["metrics"]
        if "tta_views" not in metrics:
            lines.append(f"| {name} | not applied (takes features) | | | | |")
            continue
        lines.append(
            f"| {name} | {len(metrics['tta_views'])} | {metrics['test_accuracy']:.2%} "
            f"| {metrics['tta_test_accuracy']:.2%} "
            f"| {metrics['tta_only_right']} / {metrics['plain_only_right']} "
            f"| {metrics['tta_time_ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=1000, help="photos per class used")
    parser.add_argument("--tta", type=int, default=5)
    parser.add_argument("--epochs", type=int, help="epochs of both experiments (bench.yaml's)")
    parser.add_argument("--workdir", type=Path, help="default results/bench/exports")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=common.REPO / "results/bench/exports.json")
    parser.add_argument("snakemake_args", nargs="*", help="passed to snakemake after `--`")
    args = parser.parse_args(argv)
    workdir = (args.workdir or common.REPO / "results" / "bench" / "exports").resolve()
    config = bench_config(args.per_class, args.tta, args.epochs)
    if not Path(config["data"]["path"]).exists():
        raise SystemExit(f"{config['data']['path']} is absent: this benchmark needs it")
    accuracy.ensure_weights(config["conv_base"]["weights"])
    seed = config.get("seeds", [1337])[0]
    targets = ["exports", *(f"results/metrics/{name}/{seed}.json" for name in EXPERIMENTS)]
    started = time.perf_counter()
    load_before = common.load_average()
    accuracy.run_pipeline(workdir, config, args.cores, [*targets, *args.snakemake_args])
    if "--dry-run" in args.snakemake_args or "-n" in args.snakemake_args:
        return None
    rows = collect(workdir, seed)
    record = {
        "machine": common.machine(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "workdir": str(workdir),
        "config": config,
        "load_average": {"before": load_before, "after": common.load_average()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "models": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    machine = record["machine"]
    print(
        f"\n{machine['cpu_model']}, {machine['cores']} cores, flags "
        f"{', '.join(flag for flag, on in machine['cpu_flags'].items() if on)}, "
        f"{record['date']}, load "
        f"{load_before} -> {record['load_average']['after']}, "
        f"{record['wall_seconds'] / 60:.0f} min\n",
        file=sys.stderr,
    )
    print(export_table(rows))
    print()
    print(tta_table(rows))
    print(f"\nwrote {args.out}")
    return record


if __name__ == "__main__":
    main()
