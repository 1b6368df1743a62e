"""Test accuracy of the declared experiments on real photos, through the pipeline itself.

Runs the Snakefile with config/bench.yaml (merged over config.yaml) in a working directory of its
own, on ../shared/data/dogs-vs-cats-4000.zip (1,000 / 500 / 500 photos per class) with the
offline VGG16 weights, then prints each experiment's mean test accuracy over its seeds beside
the book's figure, and writes results/bench/accuracy.json.

    .venv/bin/python bench/accuracy.py           # the 2-core CPU schedule, about two hours
    .venv/bin/python bench/accuracy.py --full    # the book's schedule (for a GPU)
    .venv/bin/python bench/accuracy.py --smoke   # 64 px, 1 epoch, 50 photos per class: minutes
    .venv/bin/python bench/accuracy.py --experiments scratch features --seeds 1 2 3
"""

import argparse
import csv
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import common
import yaml

from smallcnn.registry import KINDS

BENCH_CONFIG = common.REPO / "config" / "bench.yaml"
# A few minutes end to end: proves the benchmark runs, says nothing about accuracy.
SMOKE = {
    "split": {"train": 30, "validation": 10, "test": 10},
    "image_size": [64, 64],
    "training": {kind: {"epochs": 1} for kind in KINDS},
}


def bench_config(mode):
    """config/bench.yaml for `mode` (cpu, full or smoke), with paths made absolute."""
    config = yaml.safe_load(BENCH_CONFIG.read_text())
    for section, key in (("data", "path"), ("conv_base", "weights")):
        path = Path(config[section][key])
        config[section][key] = str(path if path.is_absolute() else (common.REPO / path).resolve())
    if mode == "full":
        del config["training"]
    if mode == "smoke":
        config.update(SMOKE)
    return config


def ensure_weights(path):
    path = Path(path)
    if path.exists():
        return
    if not common.OFFLINE_WEIGHTS_TOOL.exists():
        raise SystemExit(f"{path} is missing and {common.OFFLINE_WEIGHTS_TOOL} is absent")
    print(f"writing the offline VGG16 weights to {path}", file=sys.stderr)
    subprocess.run([sys.executable, str(common.OFFLINE_WEIGHTS_TOOL), str(path)], check=True)


def run_pipeline(workdir, config, cores, extra_args):
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "bench-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    # The machine-readable summary needs every declared (experiment, seed), nothing more.
    targets = ["results/summary.csv"]
    command = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile",
        str(common.REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(cores),
        *targets,
        *extra_args,
        "--configfile",
        str(config_path),
    ]
    print(" ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)


def collect(workdir):
    """Per experiment: summary.csv's row, each seed's accuracy and the book's figure."""
    rows = {}
    with open(workdir / "results" / "summary.csv", newline="") as stream:
        for row in csv.DictReader(stream):
            name = row["experiment"]
            seeds = {}
            for path in sorted((workdir / "results" / "metrics" / name).glob("*.json")):
                seeds[int(path.stem)] = json.loads(path.read_text())["test_accuracy"]
            rows[name] = {
                "kind": row["kind"],
                "n_seeds": int(row["n_seeds"]),
                "test_accuracy_mean": float(row["test_accuracy_mean"]),
                "test_accuracy_sd": float(row["test_accuracy_sd"] or "nan"),
                "seed_accuracy": seeds,
                "train_seconds_mean": float(row["train_seconds_mean"]),
                "book": KINDS[row["kind"]].book_accuracy,
            }
    return rows


def table(rows):
    lines = [
        "| experiment | seeds | test accuracy mean +- sd | per seed | training min (mean) | book |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for name, row in rows.items():
        per_seed = ", ".join(f"{seed}: {value:.1%}" for seed, value in row["seed_accuracy"].items())
        lines.append(
            f"| {name} | {row['n_seeds']} | {row['test_accuracy_mean']:.1%} +- "
            f"{row['test_accuracy_sd']:.1%} | {per_seed} | {row['train_seconds_mean'] / 60:.1f} "
            f"| {row['book']:.1%} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="the book's schedule (needs a GPU)")
    mode.add_argument("--smoke", action="store_true", help="64 px, 1 epoch, 50 photos per class")
    parser.add_argument("--workdir", type=Path, help="default results/bench/accuracy[-full|-smoke]")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--experiments", nargs="+", help="kinds to run (default: all five)")
    parser.add_argument("--seeds", nargs="+", type=int, help="training seeds (default: one)")
    parser.add_argument("--out", type=Path, help="default <results/bench>/accuracy[-mode].json")
    parser.add_argument(
        "snakemake_args", nargs="*", help="passed to snakemake after `--` (e.g. -- --dry-run)"
    )
    args = parser.parse_args(argv)
    mode_name = "full" if args.full else "smoke" if args.smoke else "cpu"
    suffix = "" if mode_name == "cpu" else f"-{mode_name}"
    workdir = (args.workdir or common.REPO / "results" / "bench" / f"accuracy{suffix}").resolve()
    out = args.out or common.REPO / "results" / "bench" / f"accuracy{suffix}.json"

    config = bench_config(mode_name)
    if args.experiments:
        config["experiments"] = args.experiments
    if args.seeds:
        config["seeds"] = args.seeds
    if not Path(config["data"]["path"]).exists():
        raise SystemExit(f"{config['data']['path']} is absent: the accuracy benchmark needs it")
    ensure_weights(config["conv_base"]["weights"])
    started = time.perf_counter()
    load_before = common.load_average()
    run_pipeline(workdir, config, args.cores, args.snakemake_args)
    if "--dry-run" in args.snakemake_args or "-n" in args.snakemake_args:
        return None
    rows = collect(workdir)
    record = {
        "machine": common.machine(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": mode_name,
        "workdir": str(workdir),
        "config": config,
        "load_average": {"before": load_before, "after": common.load_average()},
        "wall_seconds": round(time.perf_counter() - started, 1),
        "experiments": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"\n{record['machine']['cpu_model']}, {record['machine']['cores']} cores, "
        f"{record['date']}, mode {mode_name}, {record['wall_seconds'] / 60:.0f} min\n"
    )
    print(table(rows))
    print(f"\nwrote {out}")
    return record


if __name__ == "__main__":
    main()
