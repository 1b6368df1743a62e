"""The training half of the DAG through Snakemake: every experiment to its metrics."""

import csv
import json
import re

import pytest
import yaml
from conftest import REPO, make_class_images, run_snakemake

from smallcnn.datasets import list_images

EXPERIMENTS = ["scratch", "augmented", "features", "frozen", "finetuned"]
METRICS = [f"results/metrics/{name}.json" for name in EXPERIMENTS]
DEMO = REPO / "config" / "demo.yaml"


def planned_jobs(output):
    """(rule, name wildcard) of every job a dry run lists."""
    jobs = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        name = re.search(r"wildcards: .*?\bname=(\w+)", block)
        if rule:
            jobs.add((rule.group(1), name.group(1) if name else None))
    return jobs


def check_experiment_outputs(workdir, name, class_names):
    metrics = json.loads((workdir / "results" / "metrics" / f"{name}.json").read_text())
    with open(workdir / "results" / "predictions" / f"{name}.csv", newline="") as stream:
        predictions = list(csv.DictReader(stream))
    n_test = len(list_images(workdir / "results" / "data" / "test")[0])
    assert metrics["experiment"] == name
    assert metrics["class_names"] == class_names
    assert metrics["n_test"] == len(predictions) == n_test
    assert len(metrics["confusion_matrix"]) == len(class_names)
    assert {row["label"] for row in predictions} == set(class_names)
    summary = json.loads((workdir / "results" / "models" / f"{name}.json").read_text())
    assert summary["class_names"] == class_names
    with open(workdir / "results" / "history" / f"{name}.csv", newline="") as stream:
        history = list(csv.DictReader(stream))
    assert len(history) == summary["epochs_run"] == metrics["epochs_run"]
    assert list((workdir / "results" / "tensorboard" / name).rglob("events.out.tfevents*"))
    assert not (workdir / "results" / "backup" / name).exists()
    return metrics, summary


@pytest.mark.slow
def test_the_demo_reaches_every_experiments_metrics(demo_run):
    class_names = json.loads((demo_run / "results" / "models" / "scratch.json").read_text())[
        "class_names"
    ]
    for name in EXPERIMENTS:
        metrics, summary = check_experiment_outputs(demo_run, name, class_names)
        if name in ("features", "frozen", "finetuned"):
            assert summary["weights"] == {"source": "none", "sha256": "none"}
    frozen = json.loads((demo_run / "results" / "metrics" / "frozen.json").read_text())
    finetuned = json.loads((demo_run / "results" / "metrics" / "finetuned.json").read_text())
    assert finetuned["params_total"] == frozen["params_total"]
    assert finetuned["params_trainable"] > frozen["params_trainable"]


@pytest.mark.slow
def test_forcerun_frozen_reruns_exactly_frozen_finetuned_and_their_evaluation(demo_run):
    result = run_snakemake(
        demo_run,
        METRICS,
        configfiles=[DEMO],
        args=["--dry-run", "--forcerun", "results/models/frozen.keras"],
    )
    assert planned_jobs(result.stdout + result.stderr) == {
        ("train", "frozen"),
        ("train", "finetuned"),
        ("evaluate", "frozen"),
        ("evaluate", "finetuned"),
    }


@pytest.mark.slow
def test_a_changed_hyperparameter_reruns_only_its_experiment(demo_run, tmp_path):
    change = tmp_path / "change.yaml"
    change.write_text(yaml.safe_dump({"training": {"augmented": {"learning_rate": 0.002}}}))
    result = run_snakemake(demo_run, METRICS, configfiles=[DEMO, change], args=["--dry-run"])
    assert planned_jobs(result.stdout + result.stderr) == {
        ("train", "augmented"),
        ("evaluate", "augmented"),
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
        metrics, _ = check_experiment_outputs(workdir, name, classes)
        assert metrics["n_test"] == 9
        assert metrics["roc_auc"] is None or 0 <= metrics["roc_auc"] <= 1
