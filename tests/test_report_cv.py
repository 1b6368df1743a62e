"""The report with cross_validation.folds: ranked by the cross-validated figure, both estimates side
by side, the fold-paired test named, and the labels worth a second look (and, without folds, why
there are none), from fabricated results."""

import csv
import json
import shutil

from test_report import (
    SEED,
    Page,
    fabricate_results,
    report_inputs,
    report_settings,
    write_csv,
)

from smallcnn.label_issues import LABEL_ISSUES_COLUMNS
from smallcnn.report import write_report

K = 3
# The test split's order (the fabricated accuracies) against the cross-validated one.
CV_ACCURACY = {"scratch": 0.90, "features": 0.60}


def cross_validate(root, names, k=K, candidates=30):
    """Turn fabricated single-split results into cross-validated ones: a `cv` block in each
    metrics file, histories and summaries per fold, and a label_issues.csv of `candidates`
    rows over the train + validation images."""
    results = root / "results"
    for name in names:
        metrics_path = results / "metrics" / name / f"{SEED}.json"
        metrics = json.loads(metrics_path.read_text())
        accuracy = CV_ACCURACY[name]
        folds = [
            {
                "fold": fold,
                "n_train": 8,
                "n_validation": 4,
                "accuracy": accuracy + 0.05 * (fold - 1) * (1 if name == "scratch" else -1),
                "balanced_accuracy": accuracy,
                "macro_f1": accuracy,
                "roc_auc": accuracy,
                "loss": 0.4,
                "epochs_run": 5,
                "best_epoch": 4,
                "train_seconds": 10.0,
            }
            for fold in range(k)
        ]
        metrics["cv"] = {
            "k": k,
            "n_images": 12,
            "accuracy": accuracy,
            "balanced_accuracy": accuracy,
            "macro_f1": accuracy,
            "roc_auc": accuracy,
            "loss": 0.4,
            "folds": folds,
        }
        metrics_path.write_text(json.dumps(metrics))
        for what, ext in (("history", "csv"), ("models", "json")):
            single = results / what / name / f"{SEED}.{ext}"
            for fold in range(k):
                target = results / what / name / str(SEED) / f"fold{fold}.{ext}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(single, target)
            single.unlink()
    with open(results / "data" / "splits.csv", newline="") as handle:
        pooled = [row for row in csv.DictReader(handle) if row["split"] != "test"]
    rows = []
    for rank in range(1, candidates + 1):
        row = pooled[(rank - 1) % len(pooled)]
        other = "dog" if row["label"] == "cat" else "cat"
        rows.append(
            {
                "file": row["file"],
                "label": other,
                "given_label": row["label"],
                "self_confidence": f"{0.01 * rank:.6f}",
                "suggested_confidence": f"{1 - 0.01 * rank:.6f}",
                "rank": rank,
                "path": f"{row['split']}/{row['path']}",
                "reason": "fabricated",
            }
        )
    write_csv(results / "label_issues.csv", rows, LABEL_ISSUES_COLUMNS)


def cv_inputs(root, names):
    inputs = report_inputs(root, names)
    results = root / "results"
    inputs.histories = [
        results / "history" / n / str(SEED) / f"fold{f}.csv" for n in names for f in range(K)
    ]
    inputs.summaries = [
        results / "models" / n / str(SEED) / f"fold{f}.json" for n in names for f in range(K)
    ]
    inputs.label_issues = results / "label_issues.csv"
    return inputs


def test_with_folds_the_report_ranks_by_cross_validation_and_shows_both_estimates(tmp_path):
    names = ["scratch", "features"]
    fabricate_results(tmp_path, names)
    cross_validate(tmp_path, names)
    settings = report_settings(names)
    settings.folds = K
    out = tmp_path / "report.html"
    write_report(cv_inputs(tmp_path, names), settings, out)
    html = " ".join(out.read_text().split())
    page = Page(html)

    # The fabricated test split ranks features first; cross-validation ranks scratch first.
    assert "Best by cross-validation: <strong>scratch</strong>" in html
    assert "cross-validated accuracy 90.0%" in html
    assert "ranked by their cross-validated accuracy" in html
    summary = {row[0]: row for row in page.tables["summary-table"]}
    assert summary["scratch"][1] == "90.0%" and summary["features"][1] == "60.0%"
    assert "Held-out test accuracy" in html and "Cross-validated accuracy" in html

    # Three folds of one seed: the fold-paired test has 3 pairs and decides, named with why.
    comparison = page.tables["mcnemar-table"][0]
    # Both estimates of each side: cross-validated A / B, then held-out test A / B, and the
    # difference is the cross-validated one.
    assert comparison[2:5] == ["90.0% / 60.0%", "55.0% / 75.0%", "-30.0 (-69.3 to +9.3)"]
    assert "Cross-validated accuracy A / B" in html and "Held-out test accuracy A / B" in html
    assert comparison[-1].startswith("corrected repeated k-fold t-test:")
    assert "Nadeau & Bengio" in comparison[-1]
    assert "3 folds × 1 seed" in html

    # 30 candidates, 24 thumbnails, each given -> suggested with its confidence.
    assert "30 candidates among the 12 train + validation images" in html
    assert html.count('class="label-issue"') == 24
    assert "The first 24 shown." in html
    assert "<strong>cat</strong> &rarr; dog, p(cat)&nbsp;=&nbsp;0.01" in html
    assert (
        sum("which the out-of-fold prediction gives" in i.get("alt", "") for i in page.images) == 24
    )
    # Learning curves draw every fold.
    assert "seed 1337 fold 2: kept epoch 4" in html


def test_without_folds_the_section_says_only_cross_validation_finds_wrong_labels(tmp_path):
    fabricate_results(tmp_path, ["scratch"])
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, ["scratch"]), report_settings(["scratch"]), out)
    html = " ".join(out.read_text().split())
    assert "Labels worth a second look" in html
    assert "Only cross-validation can find wrong labels among the training images" in html
    assert "<code>cross_validation: {folds: 5}</code>" in html
    assert 'class="label-issue"' not in html
    assert "cross-validated" not in html.replace("Only cross-validation", "")


def test_a_first_rank_whose_fold_paired_margin_is_negative_is_said_as_it_is(tmp_path):
    """Ranked on the pooled out-of-fold figures, the margin the mean of the fold-paired
    differences: with folds of unequal size they can disagree, and the report must not call that
    a tie on test accuracy."""
    names = ["scratch", "features"]
    fabricate_results(tmp_path, names)
    cross_validate(tmp_path, names)
    path = tmp_path / "results" / "metrics" / "features" / f"{SEED}.json"
    metrics = json.loads(path.read_text())
    metrics["cv"]["accuracy"] = 0.95
    path.write_text(json.dumps(metrics))
    settings = report_settings(names)
    settings.folds = K
    out = tmp_path / "report.html"
    write_report(cv_inputs(tmp_path, names), settings, out)
    html = " ".join(out.read_text().split())
    assert "Best by cross-validation: <strong>features</strong>" in html
    assert "Its pooled out-of-fold figures rank it first" in html
    assert "runner-up, scratch, is -30.0 points" in html
    assert "ties with" not in html
