"""An imbalanced three-class dataset through fractional splits, class weights and the report."""

import csv
import json
from collections import Counter

import pytest
from conftest import make_class_images, run_snakemake

SIZES = {"common": 150, "middling": 60, "rare": 25}
FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}


@pytest.mark.slow
def test_an_imbalanced_dataset_is_split_by_fraction_weighted_and_ranked_fairly(tmp_path):
    for seed, (label, n) in enumerate(SIZES.items()):
        make_class_images(
            tmp_path / "photos", classes=(label,), per_class=n, size=(48, 48), seed=seed
        )
    # One class per call puts every square at the same place: the classes differ only by folder,
    # which is all this test needs (it checks bookkeeping, not accuracy).
    config = {
        "data": {
            "source": "local",
            "path": str(tmp_path / "photos"),
            # Generated noise images: no near-duplicates to look for, and counts stay exact.
            "near_duplicates": {"enabled": False},
        },
        "split": FRACTIONS,
        "image_size": [48, 48],
        "experiments": ["scratch"],
        "training": {"scratch": {"epochs": 1, "batch_size": 16}},
        "export": {"experiments": []},
    }
    work = tmp_path / "work"
    run_snakemake(work, ["results/report.html"], config=config)
    results = work / "results"

    with open(results / "data" / "splits.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    counts = Counter((row["label"], row["split"]) for row in rows)
    for label, n in SIZES.items():
        assert sum(counts[(label, split)] for split in FRACTIONS) == n
        for split, fraction in FRACTIONS.items():
            assert abs(counts[(label, split)] - n * fraction) < 1, (label, split)

    summary = json.loads((results / "models" / "scratch" / "1337.json").read_text())
    # 150 against 25 is past auto's 1.5x: balanced, n / (n_classes * n_class) on train.
    train = {label: counts[(label, "train")] for label in SIZES}
    total = sum(train.values())
    assert summary["class_weight"] == "auto"
    assert summary["class_weights"] == {
        label: pytest.approx(total / (3 * n), rel=1e-5) for label, n in train.items()
    }

    metrics = json.loads((results / "metrics" / "scratch" / "1337.json").read_text())
    assert {"balanced_accuracy", "macro_f1", "per_class", "pr_auc"} <= set(metrics)
    assert metrics["pr_auc"] is None
    assert [row["support"] for row in metrics["per_class"]] == [
        counts[(label, "test")] for label in sorted(SIZES)
    ]
    with open(results / "summary.csv", newline="") as stream:
        (row,) = list(csv.DictReader(stream))
    assert float(row["balanced_accuracy_mean"]) == pytest.approx(metrics["balanced_accuracy"])

    html = " ".join((results / "report.html").read_text().split())
    assert "Ranked by balanced accuracy" in html and "the test split is imbalanced" in html
    assert "rare&nbsp;" in html  # the class weights in the settings table
