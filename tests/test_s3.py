"""The workflow where jobs share no filesystem: S3 object storage as Snakemake's default storage.

A moto S3 server runs on 127.0.0.1 (a free port, stopped at the end). The demo DAG (scratch and
features) runs with it as `--default-storage-provider s3`. Every job except the local rules runs
as a Kubernetes pod would run it (tests/plugins/snakemake_executor_plugin_pods): a fresh empty
directory, in a mount namespace where the test's folders are hidden, the workflow's files and
data only through the bucket, credentials only through the environment. The data source is a
local folder and the features base a local weights file: the two things the Snakefile reads
from this machine's disk. Then the Kubernetes profile's dry-run plan, with the real executor
plugin.

The tests of this module share one run and build on each other in file order (the last one
looks for every credential any of them used).
"""

import csv
import io
import logging
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO, files_holding, needs, run_snakemake, tree_digest
from test_profiles import planned_jobs

from smallcnn import experiments as declared_experiments
from smallcnn.demo import make_demo

try:
    import boto3
    import snakemake_executor_plugin_kubernetes  # noqa: F401
    import snakemake_storage_plugin_s3  # noqa: F401
    from moto.server import ThreadedMotoServer

    MISSING = None
except ImportError as error:
    MISSING = f"{error.name} is not installed (requirements-dev.txt installs it)"

if MISSING is None and os.geteuid() != 0:
    MISSING = "the pods' mount namespaces need root"
pytestmark = [pytest.mark.slow, needs(MISSING)]

BUCKET = "smallcnn-test"
SEED = 1337
PODS_PLUGIN = Path(__file__).parent / "plugins"
GPU_RULES = {"extract_features", "train", "evaluate"}
# Jobs this machine runs itself: they read the local source or weights file, or need the
# checkout's git history (the report). All others run as pods.
LOCAL_RULES = {"prepare", "split", "stage_weights", "report"}
CONFIG = {
    "experiments": ["scratch", "features"],
    # The smallest images the scratch convnet takes; one epoch each.
    "image_size": [48, 48],
    "split": {"train": 16, "validation": 6, "test": 6},
    "training": {"scratch": {"epochs": 1}, "features": {"epochs": 1}},
    "report": {"misclassified": 2, "augmentation_examples": 2},
}
# Every credential a test gave Snakemake: none may be recorded anywhere.
USED_CREDENTIALS = []


def new_credentials():
    """A fresh access key and secret (moto accepts any)."""
    pair = (f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30))
    USED_CREDENTIALS.extend(pair)
    return pair


@pytest.fixture(scope="module")
def s3():
    # The server logs every request; pytest would show them all with a failure.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="inspector",
            aws_secret_access_key="inspector",
        )
        client.create_bucket(Bucket=BUCKET)
        yield SimpleNamespace(endpoint=endpoint, client=client)
    finally:
        server.stop()


def objects(s3, prefix):
    """{key below prefix/: (LastModified, ETag)} of every object of a run."""
    found = {}
    for page in s3.client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{prefix}/"
    ):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(f"{prefix}/")] = (item["LastModified"], item["ETag"])
    return found


def read_object(s3, prefix, key):
    return s3.client.get_object(Bucket=BUCKET, Key=f"{prefix}/{key}")["Body"].read()


def read_csv(s3, prefix, key):
    return list(csv.DictReader(io.StringIO(read_object(s3, prefix, key).decode())))


def make_checkout(path):
    """A clone of this working tree as a user would have it (tracked and new files, tests/ left
    out), committed: Snakemake ships a checkout's git-tracked files to the pods, and the report
    names its commit."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in listed:
        if name and not name.startswith("tests/") and (REPO / name).is_file():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, path / name)
    git = ["git", "-C", str(path), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "checkout"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return path


def written_beside(checkout):
    """Files in `checkout` that are neither the checkout's, git's nor Snakemake's own state."""
    tracked = subprocess.run(
        ["git", "-C", str(checkout), "ls-files", "-z"], capture_output=True, text=True, check=True
    ).stdout.split("\0")
    return sorted(
        path.relative_to(checkout).as_posix()
        for path in checkout.rglob("*")
        if path.is_file()
        and path.relative_to(checkout).parts[0] not in (".git", ".snakemake")
        and path.relative_to(checkout).as_posix() not in {*tracked, "test-config.yaml"}
    )


def run_s3(checkout, s3, prefix, credentials, targets, config, args=()):
    """Snakemake in `checkout` with the run's bucket prefix as default storage; credentials
    only in the environment, as SNAKEMAKE_STORAGE_S3_ACCESS_KEY / _SECRET_KEY."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "SNAKEMAKE_STORAGE_S3_"))
    }
    env.update(
        SNAKEMAKE_STORAGE_S3_ACCESS_KEY=credentials[0],
        SNAKEMAKE_STORAGE_S3_SECRET_KEY=credentials[1],
        # Where Snakemake finds the `pods` executor.
        PYTHONPATH=str(PODS_PLUGIN),
    )
    return run_snakemake(
        checkout,
        targets,
        config=config,
        configfiles=[checkout / "config" / "demo.yaml"],
        args=[
            # The checkout's own Snakefile, relative: the pods get the checkout's files.
            "--snakefile",
            "Snakefile",
            "--default-storage-provider",
            "s3",
            "--default-storage-prefix",
            f"s3://{BUCKET}/{prefix}",
            "--storage-s3-endpoint-url",
            s3.endpoint,
            *args,
        ],
        env=env,
    )


def on_pods(checkout, s3, prefix, config, hide):
    """Run to the report, every job but the local rules in a pod that cannot see `hide` (the
    folder holding the checkout, the local source and the weights file)."""
    return run_s3(
        checkout,
        s3,
        prefix,
        new_credentials(),
        ["results/report.html"],
        config,
        args=["--executor", "pods", "--jobs", "2", "--pods-hide", str(hide)],
    )


def planned(checkout, s3, prefix, config):
    """(rule, experiment) of every job a dry run plans for the report."""
    result = run_s3(
        checkout, s3, prefix, new_credentials(), ["results/report.html"], config, ["--dry-run"]
    )
    output = result.stdout + result.stderr
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            experiment = re.search(r"wildcards: .*?\bexperiment=([\w-]+)", block)
            jobs.add((rule.group(1), experiment.group(1) if experiment else None))
    return jobs


@pytest.fixture(scope="module")
def pods_run(s3, tmp_path_factory):
    """The demo DAG run on pods against the bucket, from a local source and weights file."""
    import keras

    root = tmp_path_factory.mktemp("s3")
    photos = root / "photos"
    # One photo more per class than the split takes: the corrections below exclude one.
    make_demo(photos, per_class=sum(CONFIG["split"].values()) + 1, seed=1)
    # A corrections file that only this machine has (the pods cannot see `root`): the pods read
    # the Snakefile too and must not look for it.
    excluded = "horizontal/horizontal-0005.jpg"
    corrections = root / "corrections.csv"
    corrections.write_text(f"file,label\n{excluded},exclude\n")
    weights = root / "vgg16_random.weights.h5"
    keras.applications.VGG16(weights=None, include_top=False, input_shape=(48, 48, 3)).save_weights(
        weights
    )
    config = {
        **CONFIG,
        "data": {"source": "local", "path": str(photos), "corrections": str(corrections)},
        "conv_base": {"name": "vgg16", "weights": str(weights)},
    }
    checkout = make_checkout(root / "checkout")
    source = tree_digest(photos)
    result = on_pods(checkout, s3, "run", config, hide=root)
    return SimpleNamespace(
        root=root,
        prefix="run",
        checkout=checkout,
        config=config,
        photos=photos,
        excluded=excluded,
        source=source,
        output=result.stdout + result.stderr,
        weights_id=declared_experiments.weights_id(str(weights)),
    )


def test_every_output_is_an_object_in_the_bucket(pods_run, s3):
    stored = objects(s3, pods_run.prefix)
    features = f"results/features/vgg16/{pods_run.weights_id}"
    assert {
        "results/report.html",
        "results/summary.csv",
        f"results/models/scratch/{SEED}.keras",
        f"results/models/features/{SEED}.keras",
        f"{features}/train.h5",
        f"{features}/test.h5",
        # The local weights file, copied into storage for the pods.
        f"resources/weights/declared/{pods_run.weights_id}.weights.h5",
        f"logs/train/scratch/{SEED}.log",
        # The demo's export, a directory output, and the parity that proves it.
        f"results/export/scratch/{SEED}/parity.json",
        # The heatmaps job's directory output.
        f"results/heatmaps/scratch/{SEED}/index.json",
    } <= set(stored)
    splits = read_csv(s3, pods_run.prefix, "results/data/splits.csv")
    assert {row["split"] for row in splits} == {"train", "validation", "test"}
    assert {f"results/data/{row['split']}/{row['path']}" for row in splits} <= set(stored)
    summary = read_csv(s3, pods_run.prefix, "results/summary.csv")
    assert [row["experiment"] for row in summary] == ["scratch", "features"]

    # Nothing of the run was written next to the checkout (only Snakemake's own .snakemake/);
    # the local source was read in place and left as it was.
    assert written_beside(pods_run.checkout) == []
    assert tree_digest(pods_run.photos) == pods_run.source

    # The local rules ran here, every other job in a pod of its own.
    ran_here = set(re.findall(r"^localrule (\w+):", pods_run.output, re.MULTILINE))
    in_pods = re.findall(r"^rule (\w+):", pods_run.output, re.MULTILINE)
    assert ran_here == LOCAL_RULES
    assert sorted(in_pods) == sorted(
        ["extract_features"] * 3 + ["train", "evaluate", "heatmaps"] * 2 + ["export", "summarize"]
    )
    assert len(list((pods_run.checkout / ".snakemake" / "auxiliary" / "pod-logs").iterdir())) == 11

    # The report ran where the checkout's history is: it names the commit.
    commit = subprocess.run(
        ["git", "-C", str(pods_run.checkout), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert commit[:12] in read_object(s3, pods_run.prefix, "results/report.html").decode()


def test_a_second_empty_checkout_plans_nothing(pods_run, s3, tmp_path):
    """Nothing the run needs lives only in its working directory: a new checkout elsewhere,
    pointed at the same bucket prefix, finds every output there."""
    second = make_checkout(tmp_path / "second")
    assert planned(second, s3, pods_run.prefix, pods_run.config) == set()
    # Except Snakemake's record of each job's params and code (.snakemake/metadata), which stays
    # in the directory Snakemake ran in: from here a changed setting goes unseen. Documented in
    # profiles/README.md: run Snakemake from the same directory each time.
    changed = yaml.safe_load(yaml.safe_dump(pods_run.config))
    changed["training"]["features"]["learning_rate"] = 3.0e-4
    assert planned(second, s3, pods_run.prefix, changed) == set()


def test_changing_one_experiments_setting_reruns_only_its_jobs(pods_run, s3):
    """As the local tests do, from Snakemake's plan (the jobs a run executes): running the
    changed config for real would prove only that Snakemake runs what it plans, at the cost of a
    training, an evaluation and a report."""
    # S3 dates objects to the second, so the run's consecutive jobs left inputs and outputs
    # with equal times: that triggers nothing.
    assert planned(pods_run.checkout, s3, pods_run.prefix, pods_run.config) == set()
    changed = yaml.safe_load(yaml.safe_dump(pods_run.config))
    changed["training"]["features"]["learning_rate"] = 3.0e-4
    assert planned(pods_run.checkout, s3, pods_run.prefix, changed) == {
        ("train", "features"),
        ("evaluate", "features"),
        # Its first seed's heatmaps are drawn from the retrained model.
        ("heatmaps", "features"),
        ("summarize", None),
        ("report", None),
    }


def test_a_corrections_file_only_this_machine_has_is_applied(pods_run, s3):
    manifest = {
        row["file"]: row for row in read_csv(s3, pods_run.prefix, "results/data/manifest.csv")
    }
    assert manifest[pods_run.excluded]["status"] == "excluded"
    splits = read_csv(s3, pods_run.prefix, "results/data/splits.csv")
    assert pods_run.excluded not in {row["file"] for row in splits}


def test_with_corrections_prepare_runs_here_whatever_the_source(s3, tmp_path):
    """The demo's generated source lives in the bucket, so prepare could run in a pod; with
    data.corrections it reads a file that only this machine has (the pods cannot see it), so it
    runs here and applies it."""
    private = tmp_path / "private"
    private.mkdir()
    corrections = private / "corrections.csv"
    excluded = "horizontal/horizontal-0005.jpg"
    corrections.write_text(f"file,label\n{excluded},exclude\n")
    checkout = make_checkout(tmp_path / "checkout")
    result = run_s3(
        checkout,
        s3,
        "corrections",
        new_credentials(),
        ["results/data/manifest.csv"],
        {**CONFIG, "data": {"corrections": str(corrections)}},
        ["--executor", "pods", "--jobs", "1", "--pods-hide", str(private)],
    )
    output = result.stdout + result.stderr
    assert set(re.findall(r"^localrule (\w+):", output, re.MULTILINE)) == {"prepare"}
    assert re.findall(r"^rule (\w+):", output, re.MULTILINE) == ["make_demo"]
    manifest = {
        row["file"]: row for row in read_csv(s3, "corrections", "results/data/manifest.csv")
    }
    assert manifest[excluded]["status"] == "excluded"


def test_kubernetes_profile_plan_with_the_executor_plugin(s3, tmp_path):
    """`snakemake -n --workflow-profile profiles/kubernetes` with the real plugin loaded: the
    profile's image, namespace and storage settings parse, every job reads and writes the
    bucket, and the GPU jobs carry the GPU, its manufacturer and the profile's threads."""
    profile = yaml.safe_load((REPO / "profiles" / "kubernetes" / "config.yaml").read_text())
    assert profile["executor"] == "kubernetes" and profile["container-image"]
    assert profile["default-storage-provider"] == "s3"
    assert profile["default-storage-prefix"].startswith("s3://")
    assert profile["storage-s3-endpoint-url"]
    credentials_keys = [key for key in profile if re.search("key|secret|token|password", key)]
    assert credentials_keys == [], "credentials belong in the environment, not the profile"

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SNAKEMAKE_STORAGE"))}
    access, secret = new_credentials()
    env.update(SNAKEMAKE_STORAGE_S3_ACCESS_KEY=access, SNAKEMAKE_STORAGE_S3_SECRET_KEY=secret)
    result = run_snakemake(
        work,
        ["results/report.html"],
        configfiles=[REPO / "config" / "demo.yaml"],
        args=[
            "--dry-run",
            "--workflow-profile",
            str(REPO / "profiles" / "kubernetes"),
            # The site's endpoint and bucket, here the test's.
            "--storage-s3-endpoint-url",
            s3.endpoint,
            "--default-storage-prefix",
            f"s3://{BUCKET}/plan",
            # A dry run schedules like a local run, scaling threads down to the cores it is
            # given; pods get what the profile asks for.
            "--cores",
            "64",
        ],
        env=env,
    )
    output = result.stdout + result.stderr
    assert f"workflow specific profile {REPO / 'profiles' / 'kubernetes'}" in output
    jobs = planned_jobs(output)
    assert {rule for rule, _, _ in jobs} >= GPU_RULES | {"make_demo", "prepare", "split", "report"}
    for rule, threads, resources in jobs:
        if rule in GPU_RULES:
            assert resources["gpu"] == "1", (rule, resources)
            assert resources["gpu_manufacturer"] == "nvidia", (rule, resources)
            assert threads == profile["set-threads"][rule], (rule, threads)
        else:
            assert "gpu" not in resources and "gpu_manufacturer" not in resources, rule
    paths = re.findall(r"^\s+(?:input|output|log): (.*)$", output, re.MULTILINE)
    for path in (p for line in paths for p in line.split(", ")):
        assert path.startswith(f"s3://{BUCKET}/plan/"), path


def test_credentials_are_never_recorded(pods_run, s3, tmp_path):
    """Neither the logs (Snakemake's, each pod's, each job's), the report, nor Snakemake's
    metadata hold any access key or secret given in the environment."""
    assert len(USED_CREDENTIALS) >= 2
    bucket_copy = tmp_path / "bucket"
    for key in objects(s3, pods_run.prefix):
        (bucket_copy / key).parent.mkdir(parents=True, exist_ok=True)
        (bucket_copy / key).write_bytes(read_object(s3, pods_run.prefix, key))
    recorded = [pods_run.checkout / ".snakemake", bucket_copy]
    for folder in ("log", "metadata", "auxiliary/pod-logs"):
        assert any((pods_run.checkout / ".snakemake" / folder).iterdir()), folder
    assert (bucket_copy / "results" / "report.html").is_file()
    assert (bucket_copy / "logs" / "train" / "scratch" / f"{SEED}.log").is_file()
    assert files_holding(USED_CREDENTIALS, recorded) == []
