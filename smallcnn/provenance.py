"""What produced a result: package versions, the code's git state, the machine, job benchmarks."""

import datetime
import importlib.metadata
import math
import os
import platform
import subprocess
from pathlib import Path

import pandas as pd
import psutil

from smallcnn import devices
from smallcnn.errors import UserError

PACKAGES = (
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "h5py",
    "matplotlib",
    "pillow",
    "jinja2",
    "pyyaml",
    "snakemake",
    "snakemake-executor-plugin-slurm",
)

# Snakemake's benchmark format; the memory columns are MB.
BENCHMARK_COLUMNS = ("s", "max_rss", "cpu_time")


def package_versions(packages=PACKAGES):
    """[(name, version)] of the packages in this environment ("not installed" when absent)."""
    versions = [("python", platform.python_version())]
    for name in packages:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return versions


def git_state(repo):
    """{"commit", "dirty", "changed"} of the checkout at `repo`, or None outside a git checkout.

    Dirty means uncommitted changes to tracked files: untracked files (results, scratch notes) do
    not change the code that ran.
    """
    if repo is None:
        return None

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=60
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = [
            line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        ]
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed), "changed": changed}


def machine():
    """The machine this report was rendered on."""
    return {
        "host": platform.node(),
        "system": platform.platform(),
        "cpu": devices.cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 1e9,
    }


def read_benchmark(path):
    """Mean wall time and CPU time, peak RSS (MB) and repeats of one Snakemake benchmark file."""
    try:
        table = pd.read_csv(path, sep="\t", na_values=["-", "NA"])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"cannot read the benchmark file {path}: {error}") from None
    missing = [column for column in BENCHMARK_COLUMNS if column not in table.columns]
    if missing or table.empty:
        raise UserError(
            f"{path} is not a Snakemake benchmark file (missing {', '.join(missing) or 'rows'}); "
            "delete it and rerun the job that writes it"
        )

    def finite(value):
        return None if value is None or math.isnan(value) else float(value)

    return {
        "seconds": finite(table["s"].mean()),
        "cpu_seconds": finite(table["cpu_time"].mean()),
        "max_rss_mb": finite(table["max_rss"].max()),
        "repeats": len(table),
    }


def benchmarks(paths):
    """One row per benchmark file, named by its path under the files' common folder without .tsv
    ("train/scratch" for benchmarks/train/scratch.tsv beside benchmarks/prepare.tsv)."""
    paths = [Path(path) for path in paths]
    if not paths:
        return []
    root = Path(os.path.commonpath(paths))
    if root in paths:
        root = root.parent
    return [
        {"job": path.relative_to(root).with_suffix("").as_posix(), **read_benchmark(path)}
        for path in paths
    ]


def now():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
