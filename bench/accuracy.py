"""Test accuracy of the declared experiments on real photos, through the pipeline itself.

Runs the Snakefile with config/bench.yaml (merged over config.yaml) in a working directory of its
own, on ../shared/data/dogs-vs-cats-4000.zip (1,000 / 500 / 500 photos per class) with the
offline VGG16 weights, then prints each experiment's mean test accuracy over its seeds beside
the book's figure, and writes results/bench/accuracy.json.

    .venv/bin/python bench/accuracy.py           # the 2-core CPU schedule, about two hours
    .venv/bin/python bench/accuracy.py --full    # the book's schedule (for a GPU)
    .venv/bin/python bench/accuracy.py --smoke   # 64 px, 1 epoch, 50 photos per class: minutes
    .venv/bin/python bench/accuracy.py --experiments scratch features --seeds 1 2 3
    .venv/bin/python bench/accuracy.py --experiments features --flip 0.05 --folds 5
    .venv/bin/python bench/accuracy.py --experiments features --folds 5 --image-size 64

--flip F relabels a seeded random share F of each class's train + validation photos to another
class (through data.corrections, the photos untouched), only photos that stay out of the test
split and belong to no duplicate group, so that the test set is the unflipped run's. With
--folds, the record then gives the label-issue candidates' precision and recall against the
flips.
"""

import argparse
import csv
import datetime
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import common
import yaml

from smallcnn.data import _rank as split_rank
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


def run_pipeline(workdir, config, cores, extra_args, targets=("results/summary.csv",)):
    """Run the Snakefile to `targets`; by default the machine-readable summary, which needs
    every declared (experiment, seed) and nothing more."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "bench-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
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


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def choose_flips(manifest, splits, fraction, seed, split_seed):
    """{file: (given label, flipped label)} for a share `fraction` of each class's train +
    validation photos, drawn with `seed`.

    Only photos that the split, rerun with the flipped labels, still keeps out of the test
    split: the split gives each class's test split the photos of lowest rank (a hash of the
    split seed and the content), so a photo ranked after the last test photo of its new class
    stays in train + validation and leaves that test split as it was. Photos whose bytes occur
    twice, or that belong to a near-duplicate group, are left alone: relabelling one copy would
    turn the group into a label conflict and reject it.
    """
    shared = {row["sha256"] for row in manifest if row["group"]}
    counts = {}
    for row in manifest:
        if row["sha256"]:
            counts[row["sha256"]] = counts.get(row["sha256"], 0) + 1
    shared |= {sha for sha, n in counts.items() if n > 1}
    labels = sorted({row["label"] for row in splits})
    last_test = {
        label: max(
            split_rank(split_seed, row["sha256"])
            for row in splits
            if row["label"] == label and row["split"] == "test"
        )
        for label in labels
    }
    rng = random.Random(seed)
    flips = {}
    for label in labels:
        pooled = [row for row in splits if row["label"] == label and row["split"] != "test"]
        eligible = []
        for row in sorted(pooled, key=lambda row: row["file"]):
            others = [other for other in labels if other != label]
            target = others[rng.randrange(len(others))]
            if (
                row["sha256"] not in shared
                and split_rank(split_seed, row["sha256"]) > last_test[target]
            ):
                eligible.append((row["file"], target))
        wanted = round(fraction * len(pooled))
        if wanted > len(eligible):
            raise SystemExit(
                f"--flip {fraction}: class {label} has only {len(eligible)} photos that can be "
                f"flipped without moving into the test split, {wanted} wanted"
            )
        for file, target in rng.sample(eligible, wanted):
            flips[file] = (label, target)
    return flips


def flip_labels(workdir, config, fraction, seed, cores):
    """Run the data stage unflipped, choose the flips and write them as data.corrections:
    returns the flips and the config that applies them."""
    unflipped = {**config, "data": {**config["data"], "corrections": None}}
    run_pipeline(workdir, unflipped, cores, [], targets=["results/data/splits.csv"])
    manifest = read_csv(workdir / "results" / "data" / "manifest.csv")
    splits = read_csv(workdir / "results" / "data" / "splits.csv")
    flips = choose_flips(manifest, splits, fraction, seed, config.get("seed", 1337))
    path = workdir / "flips.csv"
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["file", "label", "reason"])
        for file, (given, flipped) in sorted(flips.items()):
            writer.writerow([file, flipped, f"bench: seeded flip (seed {seed}) of a {given}"])
    pooled = sum(row["split"] != "test" for row in splits)
    print(
        f"flipped {len(flips)} of {pooled} train + validation labels ({len(flips) / pooled:.2%})",
        file=sys.stderr,
    )
    return flips, {**config, "data": {**config["data"], "corrections": str(path)}}


def label_issue_scores(workdir, flips):
    """Precision and recall of results/label_issues.csv against the flipped files (None
    without cross-validation, which writes no candidates)."""
    path = workdir / "results" / "label_issues.csv"
    if not path.exists():
        return None
    candidates = {row["file"] for row in read_csv(path)}
    found = candidates & set(flips)
    return {
        "candidates": len(candidates),
        "flipped": len(flips),
        "flipped_found": len(found),
        "precision": len(found) / len(candidates) if candidates else None,
        "recall": len(found) / len(flips) if flips else None,
    }


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
            if row.get("cv_accuracy_mean"):
                rows[name]["cv_accuracy_mean"] = float(row["cv_accuracy_mean"])
                rows[name]["cv_accuracy_sd"] = float(row["cv_accuracy_sd"] or "nan")
    return rows


def job_seconds(workdir):
    """Wall seconds of the jobs by rule, from the benchmark files Snakemake writes."""
    totals = {}
    for path in sorted((workdir / "benchmarks").rglob("*.tsv")):
        rule = path.relative_to(workdir / "benchmarks").parts[0].removesuffix(".tsv")
        rows = read_csv_tab(path)
        totals[rule] = totals.get(rule, 0.0) + sum(float(row["s"]) for row in rows[-1:])
    return {rule: round(seconds, 1) for rule, seconds in sorted(totals.items())}


def read_csv_tab(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


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
    cross_validated = {name: row for name, row in rows.items() if "cv_accuracy_mean" in row}
    if cross_validated:
        lines += [
            "",
            "| experiment | cross-validated accuracy mean +- sd over seeds |",
            "| --- | ---: |",
        ]
        lines += [
            f"| {name} | {row['cv_accuracy_mean']:.1%} +- {row['cv_accuracy_sd']:.1%} |"
            for name, row in cross_validated.items()
        ]
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
        "--folds", type=int, help="cross_validation.folds (default: none, the single split)"
    )
    parser.add_argument(
        "--flip",
        type=float,
        default=0.0,
        help="share of each class's train + validation labels to flip (seeded), e.g. 0.05",
    )
    parser.add_argument("--flip-seed", type=int, default=0, help="seed of the flips")
    parser.add_argument(
        "--image-size",
        type=int,
        help="square image size in pixels instead of the mode's (e.g. 64: every photo, a "
        "quarter of the convolutions' cost per photo at 150)",
    )
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
    if args.image_size:
        config["image_size"] = [args.image_size, args.image_size]
    targets = ["results/summary.csv"]
    if args.folds:
        config["cross_validation"] = {"folds": args.folds}
        # Only the report needs them, and the benchmark scores them against the flips.
        targets.append("results/label_issues.csv")
    if not Path(config["data"]["path"]).exists():
        raise SystemExit(f"{config['data']['path']} is absent: the accuracy benchmark needs it")
    ensure_weights(config["conv_base"]["weights"])
    started = time.perf_counter()
    load_before = common.load_average()
    flips = {}
    if args.flip:
        flips, config = flip_labels(workdir, config, args.flip, args.flip_seed, args.cores)
    run_pipeline(workdir, config, args.cores, args.snakemake_args, targets)
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
        "job_seconds": job_seconds(workdir),
        "experiments": rows,
        "flip": {"fraction": args.flip, "seed": args.flip_seed, "n_flipped": len(flips)},
        "label_issues": label_issue_scores(workdir, flips),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"\n{record['machine']['cpu_model']}, {record['machine']['cores']} cores, "
        f"{record['date']}, mode {mode_name}, {record['wall_seconds'] / 60:.0f} min\n"
    )
    print(table(rows))
    if record["label_issues"]:
        print(f"\nlabel issues: {record['label_issues']}")
    print(f"\nwrote {out}")
    return record


if __name__ == "__main__":
    main()
