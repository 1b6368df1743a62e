"""Dry runs (-n) of the demo workflow through each profile: which jobs ask for a GPU, where they
would be submitted, and which profile Snakemake actually read. The Kubernetes profile needs an S3
server for its dry run: tests/test_s3.py."""

import os
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import BIN, REPO

PROFILES = REPO / "profiles"
GPU_RULES = {"extract_features", "train", "evaluate"}
# The SLURM client commands: a PATH without them is a machine without SLURM.
SLURM_COMMANDS = {
    "sacct",
    "sacctmgr",
    "salloc",
    "sattach",
    "sbatch",
    "sbcast",
    "scancel",
    "scontrol",
    "scrontab",
    "sdiag",
    "sinfo",
    "sprio",
    "squeue",
    "sreport",
    "srun",
    "sshare",
    "sstat",
    "strigger",
}


def dry_run(workdir, *profile_args, path=None, configfiles=()):
    """Snakemake's dry-run output for the demo's report, run from a scratch directory;
    `configfiles` go on top of the demo's config."""
    command = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "-n",
        "results/report.html",
        *profile_args,
        "--configfile",
        str(REPO / "config" / "demo.yaml"),
        *map(str, configfiles),
    ]
    env = {**os.environ, "PATH": path or f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout + result.stderr


def planned_jobs(output):
    """[(rule, threads, {resource: value})] for every job of a dry run."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", output):
        header = re.search(r"^(?:local)?rule (\w+):$", block, re.MULTILINE)
        if not header:
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.MULTILINE)
        resources = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        pairs = resources.group(1).split(", ") if resources else []
        jobs.append(
            (
                header.group(1),
                int(threads.group(1)) if threads else 1,
                dict(pair.split("=", 1) for pair in pairs),
            )
        )
    return jobs


def path_without_slurm(directory):
    """A PATH holding every command of the current PATH except SLURM's (links in `directory`)."""
    directory.mkdir()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target = os.path.join(folder, name)
            link = directory / name
            if name in SLURM_COMMANDS or link.exists() or not os.access(target, os.X_OK):
                continue
            link.symlink_to(target)
    return f"{BIN}{os.pathsep}{directory}"


def load(name):
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


@pytest.fixture(scope="module")
def no_slurm_path(tmp_path_factory):
    path = path_without_slurm(tmp_path_factory.mktemp("no-slurm") / "bin")
    assert shutil.which("sbatch", path=path) is None
    return path


@pytest.mark.slow
def test_default_profile_is_read_by_itself_and_counts_gpus_without_needing_one(tmp_path):
    output = dry_run(tmp_path)
    assert f"workflow specific profile {PROFILES / 'default'}" in output
    jobs = planned_jobs(output)
    assert {rule for rule, _, _ in jobs} >= GPU_RULES | {"prepare", "split", "report"}
    for rule, _, resources in jobs:
        # gpu is a counter limited to 1 at a time by the profile, never forced to 0: on a machine
        # without GPU these jobs still run (on the CPU), one after the other.
        assert resources.get("gpu") == ("1" if rule in GPU_RULES else None), (rule, resources)
    assert load("default")["resources"]["gpu"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("option", ["--profile", "--workflow-profile"])
@pytest.mark.parametrize("slurm_installed", [False, True], ids=["no-slurm", "slurm"])
def test_slurm_profile_asks_for_a_gpu_only_for_extraction_training_and_evaluation(
    tmp_path, no_slurm_path, option, slurm_installed
):
    """`snakemake -n --profile profiles/slurm ... results/report.html` on the demo config, also
    on a machine without the SLURM commands (a laptop preparing a submission)."""
    profile = load("slurm")
    output = dry_run(
        tmp_path, option, str(PROFILES / "slurm"), path=None if slurm_installed else no_slurm_path
    )
    # --profile also reads profiles/default, whose local limits then apply on the cluster too;
    # --workflow-profile replaces it (what the README recommends).
    reads_default = f"workflow specific profile {PROFILES / 'default'}" in output
    assert reads_default == (option == "--profile")
    jobs = planned_jobs(output)
    assert {rule for rule, _, resources in jobs if "gpu" in resources} == GPU_RULES
    for rule, _, resources in jobs:
        if rule in GPU_RULES:
            expected = profile["set-resources"][rule]
            assert resources["gpu"] == "1", (rule, resources)
            assert resources["slurm_partition"] == expected["slurm_partition"], (rule, resources)
            assert resources["gpu_model"] == expected["gpu_model"], (rule, resources)
            assert resources["cpus_per_gpu"] == str(expected["cpus_per_gpu"]), (rule, resources)
        else:
            assert "gpu" not in resources and "gpu_model" not in resources, (rule, resources)
            partition = profile["default-resources"]["slurm_partition"]
            assert resources["slurm_partition"] == partition, (rule, resources)


@pytest.mark.slow
def test_slurm_profile_sends_the_fold_jobs_to_the_gpu_partition_too(tmp_path):
    """With cross_validation.folds the training and evaluation jobs are train_fold and
    evaluate_folds: rules of their own, which set-resources must name, or they would run on the
    CPU partition without a GPU."""
    folds = tmp_path / "folds.yaml"
    folds.write_text("cross_validation: {folds: 2}\n")
    profile = load("slurm")
    jobs = planned_jobs(
        dry_run(tmp_path, "--workflow-profile", str(PROFILES / "slurm"), configfiles=[folds])
    )
    gpu_jobs = {rule for rule, _, resources in jobs if "gpu" in resources}
    assert {"train_fold", "evaluate_folds"} <= gpu_jobs
    assert not gpu_jobs & {"train", "evaluate"}
    for rule, _, resources in jobs:
        if rule in gpu_jobs:
            expected = profile["set-resources"][rule]
            assert resources["slurm_partition"] == expected["slurm_partition"], (rule, resources)
            assert resources["cpus_per_gpu"] == str(expected["cpus_per_gpu"]), (rule, resources)
    # Each twin gets its original's CPU threads (the dry run caps threads at the local cores).
    threads = profile["set-threads"]
    assert (threads["train_fold"], threads["evaluate_folds"]) == (
        threads["train"],
        threads["evaluate"],
    )
    # The Kubernetes profile asks for a GPU for the same rules, with the same threads.
    kubernetes = load("kubernetes")
    assert set(kubernetes["set-resources"]) == set(profile["set-resources"])
    assert kubernetes["set-threads"] == threads
