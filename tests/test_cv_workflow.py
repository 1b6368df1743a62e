"""Cross-validation through Snakemake: folds, one job per fold, OOF predictions, the cross-validated
estimate, the fold-ensemble test prediction and the labels worth a second look."""

import csv
import json
import re
from collections import Counter

import numpy as np
import pytest
from conftest import REPO, run_snakemake
from PIL import Image

COLOURS = ("blue", "green", "red")
CHANNEL = {"red": 0, "green": 1, "blue": 2}
PER_CLASS = 125
FLIPS_PER_CLASS = 13  # 10% of 125, flipped at the source
SPLIT = {"train": 75, "validation": 25, "test": 25}
FOLDS = 4
SEED = 7


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def make_colour_images(root, seed=0):
    """<root>/<class>/<i>.png: noise whose class channel is bright, so that a small convnet
    learns the class in two epochs. 10% of each class is saved under the next class's folder,
    the flip a user would have made; returns {source file: true class} of the flipped ones."""
    rng = np.random.default_rng(seed)
    flipped = {}
    for k, colour in enumerate(COLOURS):
        wrong = set(rng.choice(PER_CLASS, FLIPS_PER_CLASS, replace=False).tolist())
        for i in range(PER_CLASS):
            pixels = rng.integers(0, 90, (40, 40, 3), dtype=np.uint8)
            pixels[..., CHANNEL[colour]] = rng.integers(120, 256, (40, 40), dtype=np.uint8)
            given = COLOURS[(k + 1) % 3] if i in wrong else colour
            name = f"{given}/{colour}-{i:03d}.png"
            (root / given).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name)
            if i in wrong:
                flipped[name] = colour
    return flipped


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """One experiment, 4 folds, one seed, on 375 colour images with 10% of labels flipped, run to
    the report."""
    root = tmp_path_factory.mktemp("cv")
    flipped = make_colour_images(root / "photos")
    config = {
        "data": {
            "source": "local",
            "path": str(root / "photos"),
            # Noise images: keep every one (their perceptual hashes carry no meaning here).
            "near_duplicates": {"enabled": False},
        },
        "split": SPLIT,
        "seed": SEED,
        "seeds": [1],
        "cross_validation": {"folds": FOLDS},
        "experiments": {"scratch": {"kind": "scratch"}},
        "image_size": [48, 48],
        "precision": "float32",
        "training": {
            "scratch": {"epochs": 2, "batch_size": 16, "learning_rate": 1.0e-3},
        },
        "callbacks": {"tensorboard": False},
        "report": {"misclassified": 2},
        # What the fold ensemble meets downstream: TTA, heatmaps and an export (ONNX alone,
        # the cheapest format).
        "evaluation": {"tta": 2},
        "export": {"formats": ["onnx"], "latency_runs": 2, "representative_images": 16},
    }
    run_snakemake(root / "work", ["results/report.html"], config=config)
    return root / "work", flipped, config


@pytest.mark.slow
def test_every_image_is_in_one_fold_and_in_oof_once_and_paths_gain_the_fold(cv_run):
    work, _, _ = cv_run
    results = work / "results"
    splits = read_csv(results / "data" / "splits.csv")
    pooled = {row["file"]: row for row in splits if row["split"] != "test"}
    assert len(pooled) == 300
    folds = read_csv(results / "data" / "folds.csv")
    assert Counter(row["file"] for row in folds) == Counter(list(pooled))
    for label in COLOURS:
        counts = Counter(row["fold"] for row in folds if row["label"] == label)
        assert max(counts.values()) - min(counts.values()) <= 1, (label, counts)

    oof = read_csv(results / "oof" / "scratch" / "1.csv")
    assert Counter(row["file"] for row in oof) == Counter(list(pooled))
    fold_of = {row["file"]: row["fold"] for row in folds}
    assert all(row["fold"] == fold_of[row["file"]] for row in oof)
    assert all(row["label"] == pooled[row["file"]]["label"] for row in oof)
    for row in oof:
        assert sum(float(row[f"p_{c}"]) for c in COLOURS) == pytest.approx(1, abs=1e-4)

    for fold in range(FOLDS):
        for path in (
            f"models/scratch/1/fold{fold}.keras",
            f"models/scratch/1/fold{fold}.json",
            f"history/scratch/1/fold{fold}.csv",
        ):
            assert (results / path).is_file(), path
    assert not (results / "models" / "scratch" / "1.keras").exists()
    assert (work / "logs" / "train" / "scratch" / "1" / "fold0.log").is_file()

    metrics = json.loads((results / "metrics" / "scratch" / "1.json").read_text())
    cv = metrics["cv"]
    assert cv["k"] == FOLDS and cv["n_images"] == 300 and len(cv["folds"]) == FOLDS
    assert cv["accuracy"] == pytest.approx(
        np.mean([row["predicted"] == row["label"] for row in oof])
    )
    predictions = read_csv(results / "predictions" / "scratch" / "1.csv")
    assert len(predictions) == metrics["n_test"] == 75

    summary = {row["experiment"]: row for row in read_csv(results / "summary.csv")}
    assert float(summary["scratch"]["cv_accuracy_mean"]) == pytest.approx(cv["accuracy"])


@pytest.mark.slow
def test_errors_and_tta_are_the_fold_ensembles_and_heatmaps_and_export_take_fold_0(cv_run):
    work, _, _ = cv_run
    results = work / "results"
    predictions = {row["file"]: row for row in read_csv(results / "predictions/scratch/1.csv")}
    errors = read_csv(results / "errors" / "scratch" / "1.csv")
    assert sorted(row["file"] for row in errors) == sorted(predictions)
    # Ranked by the loss of the ensemble's mean probability, which the predictions hold.
    for row in errors:
        p_true = float(predictions[row["file"]][f"p_{row['true']}"])
        assert float(row["p_true"]) == pytest.approx(p_true, abs=1e-6), row
    losses = [float(row["loss"]) for row in errors]
    assert losses == sorted(losses, reverse=True)

    metrics = json.loads((results / "metrics" / "scratch" / "1.json").read_text())
    assert metrics["tta_views"] == ["identity", "horizontal_flip"]
    tta_right = np.mean([row["tta_predicted"] == row["label"] for row in predictions.values()])
    assert metrics["tta_test_accuracy"] == pytest.approx(tta_right)

    fold0 = results / "models" / "scratch" / "1" / "fold0.keras"
    index = json.loads((results / "heatmaps" / "scratch" / "1" / "index.json").read_text())
    assert index["model"] == str(fold0.relative_to(work))
    shown = {example["file"] for example in index["examples"]}
    assert shown and shown <= set(predictions)
    html = (results / "report.html").read_text()
    assert (
        "scratch (seed 1, fold 0&#39;s model)" in html or "scratch (seed 1, fold 0's model)" in html
    )
    model_json = json.loads((results / "export" / "scratch" / "1" / "model.json").read_text())
    assert model_json["source"]["keras_file"] == str(fold0.relative_to(work))
    assert (results / "export" / "scratch" / "1" / "model.onnx").is_file()


@pytest.mark.slow
def test_the_pipelines_own_oof_output_finds_the_flipped_labels(cv_run):
    work, flipped, _ = cv_run
    splits = read_csv(work / "results" / "data" / "splits.csv")
    pooled = {row["file"] for row in splits if row["split"] != "test"}
    flipped_pooled = {file: colour for file, colour in flipped.items() if file in pooled}
    # About 10% of the 300 train + validation labels are wrong.
    assert 24 <= len(flipped_pooled) <= 36
    candidates = read_csv(work / "results" / "label_issues.csv")
    found = {row["file"] for row in candidates}
    hits = found & set(flipped_pooled)
    recall = len(hits) / len(flipped_pooled)
    precision = len(hits) / len(found)
    assert recall >= 0.8, f"recall {recall:.2f} ({len(hits)} of {len(flipped_pooled)})"
    assert precision >= 0.5, f"precision {precision:.2f} ({len(hits)} of {len(found)})"
    for row in candidates:
        if row["file"] in flipped_pooled:
            assert row["label"] == flipped_pooled[row["file"]], row

    html = (work / "results" / "report.html").read_text()
    assert "Labels worth a second look" in html
    assert f"{len(candidates)} candidate" in html
    thumbnails = re.findall(r'class="label-issue"', html)
    assert len(thumbnails) == min(24, len(candidates))
    assert "cross-validated" in html.lower()


def planned_jobs(stdout):
    """[(rule, {"input": [...], "wildcards": {...}})] of a dry run's plan."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        job = {"rule": head.group(1), "input": [], "wildcards": {}}
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("input: "):
                job["input"] = line.removeprefix("input: ").split(", ")
            if line.startswith("wildcards: "):
                pairs = line.removeprefix("wildcards: ").split(", ")
                job["wildcards"] = dict(pair.split("=", 1) for pair in pairs)
        jobs.append(job)
    return jobs


def test_folds_train_once_per_fold_on_features_extracted_once_and_finetuned_starts_from_its_fold(
    tmp_path,
):
    weights = tmp_path / "base.weights.h5"
    weights.write_bytes(b"a stand-in: a dry run only hashes it")
    config = {
        "cross_validation": {"folds": 3},
        "seeds": [1, 2],
        "conv_base": {"weights": str(weights)},
    }
    result = run_snakemake(
        tmp_path / "work",
        ["results/report.html"],
        configfiles=[REPO / "config" / "demo.yaml"],
        config=config,
        args=["--dry-run"],
    )
    jobs = planned_jobs(result.stdout)
    counts = Counter(job["rule"] for job in jobs)
    # Three splits extracted once each, whatever the folds; 5 experiments x 2 seeds x 3 folds.
    assert counts["extract_features"] == 3
    assert counts["train_fold"] == 30 and counts["train"] == 0
    assert counts["evaluate_folds"] == 10 and counts["evaluate"] == 0
    assert counts["folds"] == 2 and counts["label_issues"] == 1
    for job in jobs:
        if job["rule"] != "train_fold":
            continue
        w = job["wildcards"]
        assert f"results/data/folds/{w['seed']}.csv" in job["input"]
        if w["experiment"] == "finetuned":
            starts = [path for path in job["input"] if path.startswith("results/models/")]
            assert starts == [f"results/models/frozen/{w['seed']}/fold{w['fold']}.keras"]
        if w["experiment"] == "frozen":
            # Its fold validates on rows of both feature files.
            assert any(path.endswith("/train.h5") for path in job["input"])
            assert any(path.endswith("/validation.h5") for path in job["input"])
        if w["experiment"] == "features":
            assert any(path.endswith("/train.h5") for path in job["input"])


def test_without_folds_the_plan_is_todays(tmp_path):
    result = run_snakemake(
        tmp_path / "work",
        ["results/report.html"],
        configfiles=[REPO / "config" / "demo.yaml"],
        args=["--dry-run"],
    )
    jobs = planned_jobs(result.stdout)
    counts = Counter(job["rule"] for job in jobs)
    assert counts["train"] == 5 and counts["evaluate"] == 5
    assert not {"train_fold", "evaluate_folds", "folds", "folds_table", "label_issues"} & set(
        counts
    )
    report = next(job for job in jobs if job["rule"] == "report")
    assert "results/history/scratch/1337.csv" in report["input"]
    assert not any("fold" in path or "label_issues" in path for path in report["input"])
