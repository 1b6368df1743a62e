"""The data stage and one training job submitted to a real (private, single-node) SLURM cluster
through profiles/slurm, adapted only where a one-node test cluster differs from a site."""

import json
import os
import re

import pytest
import yaml
from conftest import BIN, REPO, needs
from slurm_cluster import GPU_TYPE, NODE_CPUS, run_in_cluster, why_not_runnable

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
GPU_RULES = {"extract_features", "train", "evaluate"}
# Everything the scratch model needs: generate the demo images, check them, split them, train.
EXPECTED_RULES = {"make_demo", "prepare", "split", "train"}
TINY = {
    "data": {"source": "demo"},
    "split": {"train": 8, "validation": 4, "test": 4},
    "image_size": [48, 48],
    "experiments": ["scratch"],
    "conv_base": {"name": "vgg16", "weights": "none"},
    "training": {"scratch": {"epochs": 1, "batch_size": 8}},
}
# Seconds for Snakemake; the cluster driver adds its own margin for starting and stopping daemons.
SNAKEMAKE_TIMEOUT = 900

pytestmark = needs((reason := why_not_runnable()) and f"no private SLURM cluster: {reason}")


def cluster_profile(site_profile):
    """profiles/slurm with only what differs on the test cluster changed."""
    profile = json.loads(json.dumps(site_profile))
    for rule in GPU_RULES:
        settings = profile["set-resources"][rule]
        # The test node's one GPU is of type "fake" and the node has NODE_CPUS cores in all.
        settings["gpu_model"] = GPU_TYPE
        settings["cpus_per_gpu"] = min(settings["cpus_per_gpu"], NODE_CPUS)
    profile["set-threads"] = {
        rule: min(threads, NODE_CPUS) for rule, threads in profile["set-threads"].items()
    }
    # No slurmdbd, so no sacct: squeue, which sees ended jobs for MinJobAge (600 s) >= 3 x 1 s.
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 1
    # Evidence: SLURM's own log of each job, kept even when it succeeds.
    profile["slurm-keep-successful-logs"] = True
    # One local filesystem: outputs are visible at once.
    profile["latency-wait"] = 5
    return profile


def partitions(profile):
    """The partitions a profile submits to, its CPU (default) partition first."""
    names = [profile["default-resources"]["slurm_partition"]]
    names += [settings["slurm_partition"] for settings in profile["set-resources"].values()]
    return list(dict.fromkeys(names))


def submissions(snakemake_output):
    """{rule: [sbatch command line, ...]} from Snakemake's --verbose output."""
    calls = {}
    for line in snakemake_output.splitlines():
        if "sbatch call: " not in line:
            continue
        call = line.split("sbatch call: ", 1)[1]
        comment = re.search(r"--comment (\S+)", call).group(1)
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        calls.setdefault(rule, []).append(call.split(" --wrap=")[0])
    return calls


def submitted_job_ids(snakemake_output):
    """{SLURM job id: rule} from the plugin's "submitted with SLURM jobid" lines."""
    found = re.findall(
        r"submitted with SLURM jobid (\d+) \(log: \S*/rule_([^/]+)/", snakemake_output
    )
    return {job_id: rule for job_id, rule in found}


@pytest.fixture(scope="module")
def site_profile():
    return yaml.safe_load(PROFILE.read_text())


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, site_profile):
    root = tmp_path_factory.mktemp("slurm")
    profile = cluster_profile(site_profile)
    (root / "profile").mkdir()
    (root / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    workdir = root / "work"
    workdir.mkdir()
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    command = [
        BIN / "snakemake",
        "--snakefile",
        REPO / "Snakefile",
        "--directory",
        workdir,
        "results/models/scratch/1337.keras",
        # The documented way: a workflow profile replaces profiles/default and its local limits.
        "--workflow-profile",
        root / "profile",
        "--configfile",
        workdir / "tiny.yaml",
        # Prints each sbatch command line.
        "--verbose",
    ]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = run_in_cluster(
        root / "cluster",
        command,
        cwd=workdir,
        partitions=partitions(profile),
        env=env,
        timeout=SNAKEMAKE_TIMEOUT,
    )
    return run, workdir, profile


@pytest.mark.slow
def test_workflow_runs_under_slurm(slurm_run):
    run, workdir, profile = slurm_run
    assert run.returncode == 0 and not run.timed_out and run.error is None, run.explain()
    model = workdir / "results" / "models" / "scratch" / "1337.keras"
    summary = json.loads((workdir / "results" / "models" / "scratch" / "1337.json").read_text())
    assert model.stat().st_size > 0
    assert summary["experiment"] == "scratch" and summary["epochs_run"] == 1
    assert (workdir / "results" / "data" / "splits.csv").exists()


@pytest.mark.slow
def test_only_the_gpu_rules_ask_for_a_gpu(slurm_run):
    run, _, profile = slurm_run
    calls = submissions(run.stderr + run.stdout)
    assert set(calls) == EXPECTED_RULES, run.explain()
    gpu_partition = profile["set-resources"]["train"]["slurm_partition"]
    cpu_partition = profile["default-resources"]["slurm_partition"]
    for rule, rule_calls in calls.items():
        for call in rule_calls:
            if rule in GPU_RULES:
                assert f"--gpus={GPU_TYPE}:1" in call, call
                assert f"-p {gpu_partition}" in call, call
            else:
                assert "--gpus" not in call and "--gres" not in call, call
                assert f"-p {cpu_partition}" in call, call


@pytest.mark.slow
def test_slurm_ran_every_job(slurm_run):
    """The job ids Snakemake got back from sbatch are jobs SLURM ran to completion, each in the
    partition and with the GPU (or none) it was submitted with."""
    run, workdir, profile = slurm_run
    submitted = submitted_job_ids(run.stderr + run.stdout)
    assert set(submitted.values()) == EXPECTED_RULES, run.explain()
    seen = {job["JobId"]: job for job in run.jobs}
    for job_id, rule in submitted.items():
        job = seen[job_id]
        assert job["JobState"] == "COMPLETED", job
        assert job["Comment"].startswith(f"rule_{rule}"), job
        asked_gpu = "gpu" in job.get("TresPerJob", "")
        assert asked_gpu == (rule in GPU_RULES), job
        if asked_gpu:
            # --cpus-per-gpu from the profile: one GPU, so that many cores.
            assert int(job["NumCPUs"]) == profile["set-resources"][rule]["cpus_per_gpu"], job
        # SLURM's own log of the job, named by its id, in the plugin's log folder.
        slurm_logs = list((workdir / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob("*.log"))
        assert f"{job_id}.log" in {path.name for path in slurm_logs}, slurm_logs
