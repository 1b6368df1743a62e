"""The training half of the DAG through Snakemake: every experiment and seed to its metrics."""

import csv
import json
import re
import shutil

import pytest
import yaml
from conftest import REPO, make_class_images, run_snakemake

from smallcnn.datasets import list_images

EXPERIMENTS = ["scratch", "augmented", "features", "frozen", "finetuned"]
SEED = 1337
METRICS = [f"results/metrics/{name}/{SEED}.json" for name in EXPERIMENTS]
DEMO = REPO / "config" / "demo.yaml"


def planned_jobs(output):
    """(rule, experiment, seed) of every job a dry run lists (None where a rule has neither)."""
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if not rule:
            continue
        experiment = re.search(r"wildcards: .*?\bexperiment=([\w-]+)", block)
        seed = re.search(r"wildcards: .*?\bseed=(\d+)", block)
        jobs.add(
            (
                rule.group(1),
                experiment.group(1) if experiment else None,
                int(seed.group(1)) if seed else None,
            )
        )
    return jobs


def planned_features(output):
    """{base}/{weights}/{split} of every extract_features job a dry run lists."""
    return set(re.findall(r"output: results/features/([\w-]+/[\w-]+/\w+)\.h5", output))


def check_run_outputs(workdir, name, seed, class_names):
    run = f"{name}/{seed}"
    metrics = json.loads((workdir / "results" / "metrics" / f"{run}.json").read_text())
    with open(workdir / "results" / "predictions" / f"{run}.csv", newline="") as stream:
        predictions = list(csv.DictReader(stream))
    n_test = len(list_images(workdir / "results" / "data" / "test")[0])
    assert metrics["experiment"] == name and metrics["seed"] == seed
    assert metrics["class_names"] == class_names
    assert metrics["n_test"] == len(predictions) == n_test
    assert len(metrics["confusion_matrix"]) == len(class_names)
    assert {row["label"] for row in predictions} == set(class_names)
    summary = json.loads((workdir / "results" / "models" / f"{run}.json").read_text())
    assert summary["class_names"] == class_names and summary["seed"] == seed
    assert (workdir / "results" / "models" / f"{run}.keras").is_file()
    with open(workdir / "results" / "history" / f"{run}.csv", newline="") as stream:
        history = list(csv.DictReader(stream))
    assert len(history) == summary["epochs_run"] == metrics["epochs_run"]
    assert list((workdir / "results" / "tensorboard" / run).rglob("events.out.tfevents*"))
    assert not (workdir / "results" / "backup" / run).exists()
    return metrics, summary


@pytest.mark.slow
def test_the_demo_reaches_every_experiments_metrics(demo_run):
    class_names = json.loads(
        (demo_run / "results" / "models" / "scratch" / f"{SEED}.json").read_text()
    )["class_names"]
    for name in EXPERIMENTS:
        metrics, summary = check_run_outputs(demo_run, name, SEED, class_names)
        if name in ("features", "frozen", "finetuned"):
            assert summary["weights"] == {"source": "none", "sha256": "none"}
    frozen = json.loads((demo_run / "results" / "metrics" / "frozen" / f"{SEED}.json").read_text())
    finetuned = json.loads(
        (demo_run / "results" / "metrics" / "finetuned" / f"{SEED}.json").read_text()
    )
    assert finetuned["params_total"] == frozen["params_total"]
    assert finetuned["params_trainable"] > frozen["params_trainable"]
    assert (demo_run / "results" / "features" / "vgg16" / "none" / "train.h5").is_file()


@pytest.mark.slow
def test_forcerun_frozen_reruns_exactly_frozen_finetuned_and_their_evaluation(demo_run):
    result = run_snakemake(
        demo_run,
        METRICS,
        configfiles=[DEMO],
        args=["--dry-run", "--forcerun", f"results/models/frozen/{SEED}.keras"],
    )
    assert planned_jobs(result.stdout + result.stderr) == {
        ("train", "frozen", SEED),
        ("train", "finetuned", SEED),
        ("evaluate", "frozen", SEED),
        ("evaluate", "finetuned", SEED),
    }


@pytest.mark.slow
def test_a_changed_kind_default_reruns_only_the_experiments_of_that_kind(demo_run, tmp_path):
    change = tmp_path / "change.yaml"
    change.write_text(yaml.safe_dump({"training": {"augmented": {"learning_rate": 0.002}}}))
    result = run_snakemake(demo_run, METRICS, configfiles=[DEMO, change], args=["--dry-run"])
    assert planned_jobs(result.stdout + result.stderr) == {
        ("train", "augmented", SEED),
        ("evaluate", "augmented", SEED),
    }


@pytest.mark.slow
def test_three_classes_run_through_every_experiment(tmp_path):
    classes = ["bird", "cat", "dog"]
    make_class_images(tmp_path / "source", classes=classes, per_class=14, size=(48, 48))
    quick = {"epochs": 1, "batch_size": 8}
    config = {
        "data": {"source": "local", "path": str(tmp_path / "source")},
        "split": {"train": 8, "validation": 3, "test": 3},
        "image_size": [48, 48],
        "conv_base": {"name": "vgg16", "weights": "none", "unfreeze_from": "block5_conv1"},
        "training": {name: quick for name in EXPERIMENTS},
    }
    workdir = tmp_path / "work"
    run_snakemake(workdir, METRICS, config=config)
    for name in EXPERIMENTS:
        metrics, _ = check_run_outputs(workdir, name, SEED, classes)
        assert metrics["n_test"] == 9
        assert metrics["roc_auc"] is None or 0 <= metrics["roc_auc"] <= 1


@pytest.mark.slow
def test_a_code_change_reruns_the_jobs_that_import_it_and_no_others(demo_run, tmp_path):
    """The workflow run from a copy of this checkout, with a comment appended to models.py."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, copy / name)
    for folder in ("rules", "scripts", "smallcnn", "schemas", "config", "profiles"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))

    def planned(snakefile):
        result = run_snakemake(
            demo_run,
            ["results/report.html"],
            configfiles=[DEMO],
            args=["--dry-run", "--snakefile", str(snakefile)],
        )
        return {rule for rule, _, _ in planned_jobs(result.stdout + result.stderr)}

    # The same code elsewhere is the same code: only the report, which records the checkout.
    assert planned(copy / "Snakefile") <= {"report"}
    with open(copy / "smallcnn" / "models.py", "a") as stream:
        stream.write("# a comment is a change of code\n")
    rules = planned(copy / "Snakefile")
    assert {"train", "evaluate"} <= rules
    assert not rules & {"make_demo", "prepare", "split"}
