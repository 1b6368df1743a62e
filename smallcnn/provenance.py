"""What produced a result: package versions, the code's git state or source hash, the machine,
job benchmarks."""

import datetime
import hashlib
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
from smallcnn.fingerprint import file_sha256

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
    "cleanlab",
    "scikit-learn",
)

# The workflow's own source, relative to its folder: what a git commit names. A tree without .git
# (from `git archive`, a release tarball, an sdist) is identified by one sha256 over these.
SOURCE = ("Snakefile", "config.yaml", "rules/", "schemas/", "scripts/", "smallcnn/")
# Written by Python beside the source, not part of it.
NOT_SOURCE_DIRS = ("__pycache__",)
NOT_SOURCE_SUFFIXES = (".pyc",)

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
    """{"commit", "dirty", "changed"} of the checkout at `repo`, or None when `repo` is not a git
    checkout of the workflow: no git, or a source tree unpacked inside some other repository,
    which tracks none of its SOURCE (that repository's commit would name the wrong code).

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
        if not git("ls-files", "--", *SOURCE).strip():
            return None
        commit = git("rev-parse", "HEAD").strip()
        changed = [
            line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        ]
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed), "changed": changed}


def source_files(repo):
    """The workflow's source files under `repo` (SOURCE), as sorted relative POSIX paths."""
    repo = Path(repo)
    found = []
    for name in SOURCE:
        path = repo / name
        if path.is_file() and not name.endswith("/"):
            found.append(name)
        for folder, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if d not in NOT_SOURCE_DIRS]
            found.extend(
                Path(folder, file).relative_to(repo).as_posix()
                for file in files
                if not file.endswith(NOT_SOURCE_SUFFIXES)
            )
    return sorted(found)


def source_state(repo):
    """{"sha256", "files", "parts"} of the workflow's source under `repo`, or None when there is
    none (or no `repo`).

    One sha256 over every file's path and content, so that it names the code that ran without
    git: the same files give the same sum wherever they are, and any edit, addition, removal or
    rename changes it.
    """
    if repo is None:
        return None
    files = source_files(repo)
    if not files:
        return None
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(bytes.fromhex(file_sha256(Path(repo, name))))
    return {"sha256": digest.hexdigest(), "files": len(files), "parts": list(SOURCE)}


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
