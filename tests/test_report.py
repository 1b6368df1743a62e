"""The comparison report rendered from a fabricated results/ tree in the formats of common.md."""

import base64
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, make_class_images, needs, run_snakemake
from PIL import Image

from smallcnn import evaluation, heatmap_examples, heatmaps, provenance, registry
from smallcnn import experiments as declared_experiments
from smallcnn.errors import UserError
from smallcnn.report import ReportInputs, ReportSettings, build_report, write_report
from smallcnn.stats import mcnemar_exact

ALL = ["scratch", "augmented", "features", "frozen", "finetuned"]
SEED = 1337
CLASSES = ("cat", "dog")
PER_CLASS = {"train": 4, "validation": 2, "test": 10}
# Fraction of test images each fabricated model gets right: the book's ordering.
ACCURACY = {"scratch": 0.55, "augmented": 0.65, "features": 0.75, "frozen": 0.8, "finetuned": 0.85}
SECTIONS = [
    "summary",
    "significance",
    "learning-curves",
    "augmentation",
    "errors",
    "heatmaps",
    "data",
    "provenance",
]
# A file name that would inject markup if the template did not escape.
HOSTILE = "cat/<img src=x onerror=alert(1)>.jpg"
REJECTED = {
    "corrupt": ["train/cat.13.jpg", "train/dog.2.jpg", HOSTILE],
    "too_small": ["train/dog.77.jpg"],
    "duplicate": ["train/cat.4.jpg", "train/cat.5.jpg"],
}
PREDICTION_COLUMNS = ["file", "label", "predicted", "probability", "correct", "p_cat", "p_dog"]
BENCHMARK_HEADER = (
    "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
)


def write_csv(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def png_of_size(side):
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 120, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def write_benchmark(path, seconds, rss_mb):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        BENCHMARK_HEADER
        + f"{seconds:.4f}\t0:00:{int(seconds):02d}\t{rss_mb:.2f}\t2000.1\t{rss_mb - 5:.2f}\t"
        f"{rss_mb - 3:.2f}\t1.20\t0.40\t85.3\t{seconds * 1.6:.2f}\n"
    )


def fabricate_results(
    root,
    experiments=ALL,
    base="vgg16",
    seed=0,
    seeds=(SEED,),
    classes=CLASSES,
    per_class=PER_CLASS,
    image_size=(40, 32),
):
    """Write a complete results/ tree (and benchmarks/) under `root` in the workflow's formats.
    A wrong prediction takes an image of class k for class k + 1.

    Returns {"correct": {name: {file: bool}}, "probability": {name: {file: p}}} of the first seed,
    and "runs": {(name, seed): {file: bool}} and "p_dog": {(name, seed): {file: P(dog)}} of every
    run, for checks.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    data = root / "results" / "data"
    split_rows, manifest_rows = [], []
    for offset, (split, count) in enumerate(per_class.items()):
        paths = make_class_images(
            data / split, classes, per_class=count, size=image_size, seed=offset, ext="png"
        )
        for path in paths:
            label, name = path.parent.name, path.name
            source = f"train/{label}.{split}{name}"
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            split_rows.append(
                {
                    "file": source,
                    "label": label,
                    "split": split,
                    "sha256": digest,
                    "path": f"{label}/{name}",
                }
            )
            manifest_rows.append(
                {
                    "file": source,
                    "label": label,
                    "sha256": digest,
                    "width": image_size[0],
                    "height": image_size[1],
                    "status": "ok",
                    "detail": "",
                }
            )
    for reason, files in REJECTED.items():
        for file in files:
            manifest_rows.append(
                {
                    "file": file,
                    "label": "cat" if "cat" in file else "dog",
                    "sha256": "",
                    "width": "",
                    "height": "",
                    "status": reason,
                    "detail": f"{reason.replace('_', ' ')} <b>detail</b>",
                }
            )
    write_csv(data / "splits.csv", split_rows, ["file", "label", "split", "sha256", "path"])
    write_csv(
        data / "manifest.csv",
        manifest_rows,
        ["file", "label", "sha256", "width", "height", "status", "detail"],
    )
    n_ok = len(split_rows)
    write_json(
        data / "rejections.json",
        {
            "n_files": len(manifest_rows),
            "n_ok": n_ok,
            "by_class": {label: n_ok // len(classes) for label in classes},
            "by_reason": {
                reason: {"count": len(files), "examples": files[:5]}
                for reason, files in REJECTED.items()
            },
        },
    )

    # One photo saved twice: the kept copy and the rejected one, 3 bits apart.
    pixel = "data:image/png;base64," + base64.b64encode(png_of_size(8)).decode()
    write_json(
        data / "near_duplicates.json",
        {
            "enabled": True,
            "hash": "pHash (64-bit DCT)",
            "max_distance": 6,
            "n_groups": 1,
            "n_images": 2,
            "n_near_duplicate": 1,
            "n_label_conflict_groups": 0,
            "examples": [
                {
                    "distance": 3,
                    "images": [
                        {
                            "file": f"train/{name}",
                            "label": "cat",
                            "status": status,
                            "size": "40x32",
                            "thumbnail": pixel,
                        }
                        for name, status in (
                            ("cat.big.jpg", "ok"),
                            ("cat.small.jpg", "near_duplicate"),
                        )
                    ],
                }
            ],
        },
    )
    write_json(
        data / "near_duplicates_split.json", {"n_straddling": 1, "examples": ["train/cat.big.jpg"]}
    )

    test_files = sorted(row["path"] for row in split_rows if row["split"] == "test")
    truth = {file: file.split("/")[0] for file in test_files}
    results = root / "results"
    record = {"correct": {}, "probability": {}, "runs": {}, "p_dog": {}}
    for name, run_seed in ((name, s) for name in experiments for s in seeds):
        first = run_seed == seeds[0]
        run = f"{name}/{run_seed}"
        right = set(
            rng.choice(test_files, size=round(ACCURACY[name] * len(test_files)), replace=False)
        )
        rows, matrix = [], np.zeros((len(classes), len(classes)), dtype=int)
        for file in test_files:
            label = truth[file]
            k = classes.index(label)
            predicted = label if file in right else classes[(k + 1) % len(classes)]
            probability = float(rng.uniform(0.5, 1.0))
            matrix[k, classes.index(predicted)] += 1
            rows.append(
                {
                    "file": file,
                    "label": label,
                    "predicted": predicted,
                    "probability": f"{probability:.6f}",
                    "correct": "true" if file in right else "false",
                    # The rest of the probability shared by the other classes.
                    **{
                        f"p_{c}": repr(
                            probability
                            if c == predicted
                            else (1 - probability) / (len(classes) - 1)
                        )
                        for c in classes
                    },
                }
            )
            record["runs"].setdefault((name, run_seed), {})[file] = file in right
            if "p_dog" in rows[-1]:
                record["p_dog"].setdefault((name, run_seed), {})[file] = float(rows[-1]["p_dog"])
            if first:
                record["correct"].setdefault(name, {})[file] = file in right
                record["probability"].setdefault(name, {})[file] = round(probability, 6)
        write_csv(
            results / "predictions" / f"{run}.csv",
            rows,
            [*PREDICTION_COLUMNS[:5], *(f"p_{c}" for c in classes)],
        )
        write_errors(results / "errors" / f"{run}.csv", rows, data / "test")
        if first:
            write_heatmaps(results / "heatmaps" / run, rows, data / "test", rng)
        epochs = 6
        lr = [1e-3] * 4 + [5e-4] * 2
        write_csv(
            results / "history" / f"{run}.csv",
            [
                {
                    "epoch": e,
                    "accuracy": 0.5 + 0.07 * e,
                    "loss": 0.7 - 0.08 * e,
                    "val_accuracy": 0.5 + 0.05 * e - 0.01 * max(0, e - 3),
                    "val_loss": 0.72 - 0.05 * e + 0.03 * max(0, e - 3),
                    "learning_rate": lr[e],
                }
                for e in range(epochs)
            ],
            ["epoch", "accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"],
        )
        accuracy = len(right) / len(test_files)
        uses_base = name in ("features", "frozen", "finetuned")
        weights = {"source": "imagenet", "sha256": "ab" * 32} if uses_base else None
        write_json(
            results / "models" / f"{run}.json",
            {
                "experiment": name,
                "kind": name,
                "epochs_run": epochs,
                "best_epoch": 4,
                "stopped_early": name != "scratch",
                "train_seconds": 93.5,
                "monitor": "val_loss",
                "class_names": list(classes),
                "lr_changes": [
                    {"epoch": 1, "learning_rate": 1e-3},
                    {"epoch": 5, "learning_rate": 5e-4},
                ],
                "precision": "float32",
                "device": "CPU",
                "seed": run_seed,
                "versions": {"tensorflow": "2.21.0", "keras": "3.15.1"},
                "weights": weights,
            },
        )
        write_json(
            results / "metrics" / f"{run}.json",
            {
                "experiment": name,
                "kind": name,
                "seed": run_seed,
                "test_accuracy": accuracy,
                "test_loss": 1.0 - accuracy,
                "roc_auc": min(1.0, accuracy + 0.05),
                "balanced_accuracy": 0.8,
                "macro_f1": 0.7,
                "confusion_matrix": matrix.tolist(),
                "class_names": list(classes),
                "n_test": len(test_files),
                "accuracy_ci95": [accuracy - 0.2, min(1.0, accuracy + 0.1)],
                "epochs_run": epochs,
                "best_epoch": 4,
                "stopped_early": name != "scratch",
                "train_seconds": 93.5,
                "params_trainable": 3_453_121,
                "params_total": 3_453_121 + (14_714_688 if uses_base else 0),
            },
        )

    benchmarks = root / "benchmarks"
    write_benchmark(benchmarks / "prepare.tsv", 3.2, 180.0)
    write_benchmark(benchmarks / "split.tsv", 1.5, 150.0)
    if "features" in experiments:
        for split in per_class:
            write_benchmark(benchmarks / "features" / base / "none" / f"{split}.tsv", 20.0, 1500.0)
    for name in experiments:
        for run_seed in seeds:
            write_benchmark(benchmarks / "train" / name / f"{run_seed}.tsv", 125.0, 2500.0)
            write_benchmark(benchmarks / "evaluate" / name / f"{run_seed}.tsv", 12.0, 900.0)
        write_benchmark(benchmarks / "heatmaps" / name / f"{seeds[0]}.tsv", 9.0, 700.0)
    return record


def write_errors(path, rows, test_dir):
    """The errors file evaluation.write_errors writes, from the fabricated predictions (two
    classes: the true class's probability is the other one's complement when wrong)."""
    ranked = []
    for row in rows:
        probability = float(row["probability"])
        p_true = probability if row["correct"] == "true" else 1 - probability
        ranked.append((-np.log(max(p_true, 1e-7)), row, p_true))
    ranked.sort(key=lambda item: (-item[0], item[1]["file"]))
    write_csv(
        path,
        [
            {
                "rank": rank,
                "loss": f"{loss:.6f}",
                "file": row["file"],
                "path": f"{test_dir}/{row['file']}",
                "true": row["label"],
                "predicted": row["predicted"],
                "probability": row["probability"],
                "p_true": f"{p_true:.6f}",
            }
            for rank, (loss, row, p_true) in enumerate(ranked, start=1)
        ],
        list(evaluation.ERROR_COLUMNS),
    )


def write_heatmaps(directory, rows, test_dir, rng):
    """What the heatmaps job writes: index.json and JPEG thumbnails, from the predictions and
    the test images, with random maps (the report only embeds them)."""
    directory.mkdir(parents=True, exist_ok=True)
    chosen = heatmap_examples.select(
        [{**row, "true": row["label"]} for row in rows], wrong=6, right_per_class=3
    )
    examples = []
    for number, row in enumerate(chosen, start=1):
        with Image.open(test_dir / row["file"]) as image:
            pixels = np.asarray(image.convert("RGB"))
        names = {"image": f"{number:03d}-image.jpg", "overlay": f"{number:03d}-overlay.jpg"}
        heatmap = rng.uniform(0, 1, pixels.shape[:2])
        (directory / names["image"]).write_bytes(heatmap_examples.jpeg(pixels, 112))
        (directory / names["overlay"]).write_bytes(
            heatmap_examples.jpeg(heatmaps.overlay(pixels, heatmap), 112)
        )
        examples.append(
            {
                "group": row["group"],
                "file": row["file"],
                "true": row["true"],
                "predicted": row["predicted"],
                "probability": row["probability"],
                # The first wrong one had no positive evidence.
                "scaled": number != 1,
                **names,
            }
        )
    write_json(
        directory / "index.json",
        {
            "model": "model.keras",
            "layer": "conv4",
            "input_size": [32, 40],
            "reason": None,
            "examples": examples,
        },
    )


def report_inputs(root, experiments, seeds=(SEED,)):
    root = Path(root)
    results = root / "results"
    runs = [f"{n}/{s}" for n in experiments for s in seeds]
    return ReportInputs(
        metrics=[results / "metrics" / f"{run}.json" for run in runs],
        predictions=[results / "predictions" / f"{run}.csv" for run in runs],
        histories=[results / "history" / f"{run}.csv" for run in runs],
        summaries=[results / "models" / f"{run}.json" for run in runs],
        manifest=results / "data" / "manifest.csv",
        rejections=results / "data" / "rejections.json",
        near_duplicates=results / "data" / "near_duplicates.json",
        near_duplicates_split=results / "data" / "near_duplicates_split.json",
        splits=results / "data" / "splits.csv",
        train=results / "data" / "train",
        test=results / "data" / "test",
        benchmarks=sorted((root / "benchmarks").rglob("*.tsv")),
        errors=[results / "errors" / f"{run}.csv" for run in runs],
        heatmaps=[results / "heatmaps" / f"{n}/{seeds[0]}" for n in experiments],
    )


def report_settings(experiments, augmentation=None, misclassified=6, repo=REPO, seeds=(SEED,)):
    """What the report rule passes: each experiment resolved from config.yaml, as the book's."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["experiments"] = list(experiments)
    resolved = declared_experiments.resolve(config)
    declared = [
        {
            "name": e.name,
            "kind": e.kind,
            "start": e.start,
            "conv_base": e.conv_base,
            "settings": e.settings,
            "overrides": list(e.overrides),
            "description": registry.describe(e.kind, "vgg16", e.start, "block5_conv1"),
            "book_settings": True,
        }
        for e in resolved.values()
        if e.name in experiments
    ]
    return ReportSettings(
        experiments=declared,
        seeds=list(seeds),
        primary_metric="auto",
        run={"data": {"source": "demo"}, "seed": 1337, "seeds": list(seeds)},
        repo=str(repo),
        misclassified=misclassified,
        augmentation=augmentation,
        augmentation_examples=8,
        image_size=[48, 48],
        seed=1337,
    )


class Page(HTMLParser):
    """The parts of the report the tests look at: sections, images, tables' body rows."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.sections, self.images, self.scripts, self.links = [], [], 0, []
        self.tables = {}
        self._table = None
        self._in_body = False
        self._row = None
        self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "script":
            self.scripts += 1
        elif tag in ("link", "a"):
            self.links.append(attrs.get("href"))
        elif tag == "table":
            self._table = attrs.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join(" ".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    record = fabricate_results(root)
    out = root / "results" / "report.html"
    figures_dir = root / "results" / "report_figures"
    write_report(report_inputs(root, ALL), report_settings(ALL), out, figures_dir)
    html = out.read_text(encoding="utf-8")
    return {"root": root, "record": record, "out": out, "html": html, "page": Page(html)}


def test_every_section_is_present_in_order(full_report):
    assert full_report["page"].sections == SECTIONS


def heatmap_pairs(record, name, classes=CLASSES):
    """Image pairs of `name` in "Where the model looks": up to 6 wrong, 3 right per class."""
    correct = record["correct"][name]
    wrong = sum(not right for right in correct.values())
    right = [sum(ok for file, ok in correct.items() if file.startswith(f"{c}/")) for c in classes]
    return min(6, wrong) + sum(min(3, n) for n in right)


def test_every_image_has_alt_text_and_is_embedded(full_report):
    images = full_report["page"].images
    record = full_report["record"]
    # Accuracy chart, five learning curves, the three test images finetuned got wrong (in the
    # gallery and in its confusion cells), image and heatmap pairs of the four experiments that
    # train on images (features is not the first-ranked), and the two images of a
    # near-duplicate pair.
    pairs = sum(heatmap_pairs(record, name) for name in ALL if name != "features")
    assert len(images) == 1 + 5 + 3 + 3 + 2 * pairs + 2
    for image in images:
        assert image.get("alt", "").strip(), image
        assert image["src"].startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))


def test_the_report_is_self_contained_and_needs_no_javascript(full_report):
    page, html = full_report["page"], full_report["html"]
    assert page.scripts == 0
    # Only links to its own sections.
    assert all(link.startswith("#") for link in page.links), page.links
    for outside in ("http://", "https://", "@import", "url("):
        assert outside not in html
    assert len(full_report["out"].read_bytes()) < 20_000_000


def test_markup_in_data_is_escaped(full_report):
    html = full_report["html"]
    assert "<img src=x onerror" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>detail</b>" not in html


def test_summary_table_has_one_row_per_experiment_with_the_books_figures(full_report):
    rows = full_report["page"].tables["summary-table"]
    assert [row[0].split()[0] for row in rows] == ALL
    finetuned = rows[-1]
    assert finetuned[1] == "85.0%"
    # Balanced accuracy / macro-F1, loss / AUC, best epoch / epochs run with what ended training,
    # time, trainable / total parameters, the book's figure.
    assert finetuned[3:5] == ["80.0% / 0.700", "0.150 / 0.900"]
    assert finetuned[5] == "4 / 6, early stop"
    assert rows[0][5] == "4 / 6, epoch limit"
    assert finetuned[6] == "1 min 34 s"
    assert [row[7] for row in rows] == ["71.0%", "82.0%", "90.0%", "96.0%", "96.8%"]
    training = {row[0]: row for row in full_report["page"].tables["training-table"]}
    assert training["finetuned"][2] == "3,453,121 / 18,167,809"
    assert "Ranked by accuracy (report.primary_metric: auto)" in full_report["html"]
    assert "Best on this test set: <strong>finetuned</strong>" in " ".join(
        full_report["html"].split()
    )


def test_mcnemar_table_compares_consecutive_experiments_and_scratch_with_the_best(full_report):
    rows = full_report["page"].tables["mcnemar-table"]
    assert [row[0] for row in rows] == [
        "scratch vs augmented",
        "augmented vs features",
        "features vs frozen",
        "frozen vs finetuned",
        "scratch vs finetuned",
    ]
    correct = full_report["record"]["correct"]
    for row in rows:
        a, b = row[0].split(" vs ")
        only_a = sum(correct[a][f] and not correct[b][f] for f in correct[a])
        only_b = sum(correct[b][f] and not correct[a][f] for f in correct[a])
        assert row[1] == "20"
        assert (row[3], row[4]) == (str(only_a), str(only_b))
        p_value = mcnemar_exact(only_a, only_b)
        assert row[5] == ("< 0.0001" if p_value < 1e-4 else f"{p_value:.4f}")
        # One seed: McNemar decides, for the model right on more of the discordant images.
        winner = b if only_b > only_a else a
        assert row[6] == (f"{winner} is better" if p_value < 0.05 else "no significant difference")


def test_confusion_matrices_and_most_confidently_wrong_images(full_report):
    page, record = full_report["page"], full_report["record"]
    for name in ALL:
        rows = page.tables[f"confusion-{name}"]
        assert [row[0] for row in rows] == list(CLASSES)
        assert sum(int(cell) for row in rows for cell in row[1:3]) == 20
    wrong = {
        file: p
        for file, p in record["probability"]["finetuned"].items()
        if not record["correct"]["finetuned"][file]
    }
    expected = sorted(wrong, key=lambda f: (-wrong[f], f))[:6]
    thumbnails = [image for image in page.images if image["alt"].startswith("Test image")]
    assert [re.match(r"Test image (\S+):", i["alt"]).group(1) for i in thumbnails] == expected


def test_confusion_cells_open_to_their_images_and_confused_pairs_are_listed(full_report):
    page, record, html = full_report["page"], full_report["record"], full_report["html"]
    correct, probability = record["correct"]["finetuned"], record["probability"]["finetuned"]
    # Two classes: every wrong cat is taken for a dog and every wrong dog for a cat.
    wrong = {c: [f for f, ok in correct.items() if not ok and f.startswith(c)] for c in CLASSES}
    assert page.tables["confused-pairs"] == [
        ["cat", "dog", str(len(wrong["cat"])), str(len(wrong["dog"])),
         str(sum(map(len, wrong.values()))), f"{100 * sum(map(len, wrong.values())) / 20:.1f}%"]
    ]  # fmt: skip
    cells = re.findall(r'<details class="cell">\s*<summary>(\w+) taken for (\w+): (\d+)', html)
    expected = sorted(
        ((c, other, len(files)) for c, other in (CLASSES, CLASSES[::-1]) for files in [wrong[c]]),
        key=lambda cell: -cell[2],
    )
    assert [(a, b, int(n)) for a, b, n in cells] == [cell for cell in expected if cell[2]]
    for true, predicted, files in ((c, o, wrong[c]) for c, o in (CLASSES, CLASSES[::-1])):
        shown = [
            re.match(r".*: test image (\S+),", image["alt"]).group(1)
            for image in page.images
            if image["alt"].startswith(f"{true} taken for {predicted}:")
        ]
        # The worst loss first: the most confident of the wrong ones.
        assert shown == sorted(files, key=lambda f: (-probability[f], f))
    assert "results/errors/finetuned/1337.csv" in html


def test_where_the_model_looks_shows_the_first_ranked_and_every_image_experiment(full_report):
    page, record, html = full_report["page"], full_report["record"], full_report["html"]
    # Rank order; features (trained on features, not first-ranked) is left out.
    shown = re.findall(r'<div class="heatmaps" id="heatmaps-([^"]+)">', html)
    assert shown == ["finetuned", "frozen", "augmented", "scratch"]
    for name in shown:
        inputs = [i for i in page.images if i["alt"].startswith(f"Input of {name}, ")]
        overlays = [i for i in page.images if i["alt"].startswith(f"Heatmap of {name} over ")]
        assert len(inputs) == len(overlays) == heatmap_pairs(record, name)
        assert all(i["src"].startswith("data:image/jpeg;base64,") for i in inputs + overlays)
        # The wrong ones first, most confident first.
        correct, probability = record["correct"][name], record["probability"][name]
        wrong = sorted((f for f, ok in correct.items() if not ok), key=lambda f: -probability[f])
        files = [re.match(rf"Input of {name}, (\S+):", i["alt"]).group(1) for i in inputs]
        assert files[: min(6, len(wrong))] == wrong[:6]
    # The fabricated first wrong map of each experiment had no positive evidence.
    assert html.count("<em>no positive evidence</em>") == 4
    assert html.count("Layer <code>conv4</code>") == 4


def test_a_first_ranked_features_experiment_is_shown_and_missing_heatmaps_are_said(tmp_path):
    subset = ["scratch", "features"]
    fabricate_results(tmp_path, subset)
    inputs = report_inputs(tmp_path, subset)
    out = tmp_path / "report.html"
    write_report(inputs, report_settings(subset), out)
    html = out.read_text()
    # features (75%) ranks before scratch (55%).
    assert re.findall(r'id="heatmaps-([^"]+)"', html) == ["features", "scratch"]
    inputs.heatmaps = inputs.heatmaps[:1]
    inputs.errors = []
    write_report(inputs, report_settings(subset), out)
    html = out.read_text()
    assert "No heatmaps of this experiment were given to the report." in html
    assert "No errors file was given to the report." in html


def test_data_tables_count_images_per_split_and_rejections_per_reason(full_report):
    page = full_report["page"]
    assert page.tables["split-table"] == [
        ["cat", "4", "2", "10", "16"],
        ["dog", "4", "2", "10", "16"],
    ]
    rejected = {row[0]: row for row in page.tables["rejection-table"]}
    assert {reason: int(row[1]) for reason, row in rejected.items()} == {
        reason: len(files) for reason, files in REJECTED.items()
    }
    assert "train/cat.4.jpg" in rejected["duplicate"][2]
    html = " ".join(full_report["html"].split())
    assert "1 group of near-duplicates (2 images within 6 bits by pHash" in html
    assert "1 of the 1 group would have been in two splits at once" in html
    assert page.tables["near-duplicate-pairs"][0][0] == "3"
    assert "largest class has 1.00&times;" in html


def test_provenance_lists_jobs_weights_versions_and_git_commit(full_report):
    page, html = full_report["page"], full_report["html"]
    jobs = [row[0] for row in page.tables["benchmark-table"]]
    assert set(jobs) == {
        "prepare",
        "split",
        *(f"features/vgg16/none/{s}" for s in PER_CLASS),
        *(f"train/{n}/{SEED}" for n in ALL),
        *(f"evaluate/{n}/{SEED}" for n in ALL),
        *(f"heatmaps/{n}/{SEED}" for n in ALL),
    }
    train = next(row for row in page.tables["benchmark-table"] if row[0] == f"train/frozen/{SEED}")
    assert train[1:] == ["2 min 05 s", "3 min 20 s", "2500 MB"]
    training = {row[0]: row for row in page.tables["training-table"]}
    assert training["frozen"][6:] == ["imagenet", "ab" * 32]
    assert training["scratch"][6] == "not used"
    versions = dict(page.tables["version-table"])
    assert versions["tensorflow"] and versions["snakemake"]
    # This checkout may be a git clone or a tree from `git archive`: both are named (see
    # test_provenance_names_the_code_by_commit_in_a_checkout_and_by_sha256_without_git).
    if provenance.git_state(REPO):
        assert re.search(r"git commit <code>[0-9a-f]{40}</code>", html)
    else:
        assert "not a git checkout" in html
    assert re.search(r"source sha256 <code>[0-9a-f]{64}</code>", html)
    assert "seeds:\n- 1337" in html
    settings = {row[0]: row for row in page.tables["settings-table"]}
    assert settings["scratch"][1:4] == ["scratch", "30", "20"]
    assert settings["finetuned"][1] == "finetuned from frozen"


def test_figures_are_written_as_files_for_snakemake_report(full_report):
    figures_dir = full_report["root"] / "results" / "report_figures"
    written = sorted(p.relative_to(figures_dir).as_posix() for p in figures_dir.rglob("*.png"))
    assert written == sorted(
        ["summary/accuracy.png", "errors/most-confidently-wrong-finetuned.png"]
        + [f"learning-curves/{n}.png" for n in ALL]
        + [f"confusion/{n}.png" for n in ALL]
    )


def test_a_subset_of_experiments_reports_only_those_in_the_books_order(tmp_path):
    subset = ["features", "scratch"]
    fabricate_results(tmp_path, subset)
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, subset), report_settings(subset), out)
    html = out.read_text(encoding="utf-8")
    page = Page(html)
    assert page.sections == SECTIONS
    assert [row[0].split()[0] for row in page.tables["summary-table"]] == ["scratch", "features"]
    assert [row[0] for row in page.tables["mcnemar-table"]] == ["scratch vs features"]
    assert {row[0] for row in page.tables["benchmark-table"]} >= {f"train/scratch/{SEED}"}
    assert not [n for n in ("augmented", "frozen", "finetuned") if f"curves-{n}" in html]
    assert "frozen" not in " ".join(row[0] for row in page.tables["training-table"])


def test_several_seeds_give_mean_sd_dots_and_seed_paired_comparisons(tmp_path):
    subset, seeds = ["scratch", "features"], (1, 2, 3)
    record = fabricate_results(tmp_path, subset, seeds=seeds)
    for i, seed in enumerate(seeds):
        path = tmp_path / "results" / "metrics" / "features" / f"{seed}.json"
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps({**metrics, "test_accuracy": 0.7 + 0.05 * i}))
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, subset, seeds), report_settings(subset, seeds=seeds), out)
    html = out.read_text(encoding="utf-8")
    page = Page(html)
    rows = {row[0]: row for row in page.tables["summary-table"]}
    # Experiment, seeds, mean +- sd, interval, min / max.
    assert rows["features"][1] == "3"
    assert rows["features"][2] == "75.0% ± 5.0%"
    assert rows["features"][4] == "70.0% / 80.0%"
    comparison = page.tables["mcnemar-table"][0]
    assert comparison[0] == "scratch vs features"
    # McNemar counts each test image once: right or wrong by the mean of P(dog) over the seeds.
    assert comparison[1] == "20"

    def averaged_right(name, file):
        p_dog = np.mean([record["p_dog"][(name, s)][file] for s in seeds])
        return (p_dog > 0.5) == file.startswith("dog/")

    files = record["runs"][("scratch", seeds[0])]
    only_a = sum(averaged_right("scratch", f) and not averaged_right("features", f) for f in files)
    only_b = sum(averaged_right("features", f) and not averaged_right("scratch", f) for f in files)
    assert comparison[4:6] == [str(only_a), str(only_b)]
    assert comparison[6] == f"{mcnemar_exact(only_a, only_b):.4f}"
    # Three seeds whose differences vary (15, 20 and 25 points): the t-interval decides.
    assert comparison[8] == "t-interval: 3 seeds give differences that vary"
    assert "seed-paired" in html and "t-interval" in html
    curves = [image for image in page.images if image["alt"].startswith("Learning curves")]
    assert len(curves) == 2 and "seeds 1, 2, 3" in curves[0]["alt"]
    assert len(page.tables["training-table"]) == 6


def copy_source(destination):
    """The workflow's source as `git archive` or a release tarball gives it: no .git."""
    for name in provenance.SOURCE:
        name = name.rstrip("/")
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    return destination


def git(repo, *args):
    identity = ["-c", "user.name=smallcnn tests", "-c", "user.email=tests@smallcnn.invalid"]
    return subprocess.run(
        ["git", *identity, "-c", "commit.gpgsign=false", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def code_provenance(root, repo):
    """The report's "Code" line for the workflow at `repo`."""
    out = root / "report.html"
    write_report(report_inputs(root, ["scratch"]), report_settings(["scratch"], repo=repo), out)
    html = out.read_text(encoding="utf-8")
    line = re.search(r"<dt>Code \(at report time\)</dt><dd>(.*?)</dd>", html, re.S).group(1)
    return " ".join(line.split())


def source_sha256(line):
    return re.search(r"source sha256 <code>([0-9a-f]{64})</code> over its (\d+) files", line)


@needs(None if shutil.which("git") else "git is not installed")
def test_provenance_names_the_code_by_commit_in_a_checkout_and_by_sha256_without_git(tmp_path):
    fabricate_results(tmp_path, ["scratch"])
    source = copy_source(tmp_path / "archive" / "smallcnn-0.1.0")

    without_git = code_provenance(tmp_path, source)
    assert without_git.startswith("not a git checkout")
    assert "git commit" not in without_git
    found = source_sha256(without_git)
    assert found, without_git
    digest, files = found.group(1), int(found.group(2))
    expected_files = sum(
        1
        for name in provenance.SOURCE
        for path in ([REPO / name] if not name.endswith("/") else (REPO / name).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    )
    assert files == expected_files > 40
    for part in ("Snakefile", "config.yaml", "rules/", "schemas/", "scripts/", "smallcnn/"):
        assert f"<code>{part}</code>" in without_git

    # The same files elsewhere give the same sum; Python's caches and results do not count.
    elsewhere = copy_source(tmp_path / "elsewhere")
    (elsewhere / "smallcnn" / "__pycache__").mkdir(exist_ok=True)
    (elsewhere / "smallcnn" / "__pycache__" / "stats.cpython-311.pyc").write_bytes(b"cache")
    (elsewhere / "results").mkdir()
    (elsewhere / "results" / "report.html").write_text("a result")
    assert provenance.source_state(elsewhere)["sha256"] == digest
    # Any change to the code changes it: an edit, a rename.
    stats = elsewhere / "smallcnn" / "stats.py"
    stats.write_text(stats.read_text() + "\n")
    edited = provenance.source_state(elsewhere)["sha256"]
    stats.rename(elsewhere / "smallcnn" / "statistics.py")
    renamed = provenance.source_state(elsewhere)["sha256"]
    assert len({digest, edited, renamed}) == 3

    # Unpacked inside another repository that does not track it: still not a git checkout (that
    # repository's commit would name other code).
    git(tmp_path / "archive", "init", "-q")
    (tmp_path / "archive" / "notes.txt").write_text("notes")
    git(tmp_path / "archive", "add", "notes.txt")
    git(tmp_path / "archive", "commit", "-q", "-m", "notes")
    assert provenance.git_state(source) is None

    # A git checkout of the same files: its commit, and the same source sum.
    git(source, "init", "-q")
    git(source, "add", ".")
    git(source, "commit", "-q", "-m", "the workflow")
    commit = git(source, "rev-parse", "HEAD")
    checkout = code_provenance(tmp_path, source)
    assert checkout.startswith(f"git commit <code>{commit}</code> (clean tree)")
    assert source_sha256(checkout).group(1) == digest


def test_two_seeds_with_equal_differences_are_decided_by_mcnemar_and_the_report_says_why(tmp_path):
    """Issue 21's case: on each of two seeds features gets one more of the 20 test images right
    than scratch (55% vs 50%). The seed-paired interval is [+5, +5], zero wide; McNemar on the
    seed-averaged predictions gives p = 0.5, and the report says it decided, and why."""
    subset, seeds = ["scratch", "features"], (1, 2)
    fabricate_results(tmp_path, subset, seeds=seeds)
    results = tmp_path / "results"
    for name, seed, extra in (
        ("scratch", 1, None),
        ("scratch", 2, None),
        ("features", 1, 15),
        ("features", 2, 16),
    ):
        path = results / "predictions" / name / f"{seed}.csv"
        predictions = pd.read_csv(path)
        # Right on the first five images of each class (and on image `extra`, confidently; the
        # other seed's extra image with P(true) 0.4), wrong on the rest.
        p_true = np.where(np.arange(20) % 10 < 5, 0.8, 0.2)
        if extra is not None:
            p_true[31 - extra] = 0.4
            p_true[extra] = 0.9
        is_dog = predictions["label"] == "dog"
        predictions["p_dog"] = np.where(is_dog, p_true, 1 - p_true)
        predictions["p_cat"] = 1 - predictions["p_dog"]
        predictions["predicted"] = np.where(predictions["p_dog"] > 0.5, "dog", "cat")
        predictions["correct"] = predictions["predicted"] == predictions["label"]
        predictions["probability"] = predictions[["p_cat", "p_dog"]].max(axis=1)
        predictions.to_csv(path, index=False)
        path = results / "metrics" / name / f"{seed}.json"
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps({**metrics, "test_accuracy": predictions["correct"].mean()}))
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, subset, seeds), report_settings(subset, seeds=seeds), out)
    html = " ".join(out.read_text(encoding="utf-8").split())
    assert "That is 5.0 percentage points above the runner-up, scratch:" in html
    assert (
        "<strong>not a significant difference</strong> on this test set (McNemar p = 0.5000 on "
        "each experiment's predictions averaged over its 2 seeds). McNemar's exact test decides "
        "because 2 seeds are too few for a seed-paired interval (it needs 3)."
    ) in html
    [comparison] = Page(html).tables["mcnemar-table"]
    assert comparison[0] == "scratch vs features"
    assert comparison[3] == "+5.0 (+5.0 to +5.0)"
    assert comparison[4:] == [
        "0",
        "2",
        "0.5000",
        "no significant difference",
        "McNemar: 2 seeds are too few for a seed-paired interval (it needs 3)",
    ]


def test_outside_a_git_checkout_the_report_says_the_code_version_is_unknown(tmp_path):
    fabricate_results(tmp_path, ["scratch"])
    out = tmp_path / "report.html"
    settings = report_settings(["scratch"], repo=tmp_path)
    write_report(report_inputs(tmp_path, ["scratch"]), settings, out)
    html = out.read_text(encoding="utf-8")
    assert "not a git checkout" in html
    assert "there is nothing to compare" in html


def test_a_missing_experiment_file_is_a_user_error(tmp_path):
    fabricate_results(tmp_path, ["scratch", "features"])
    inputs = report_inputs(tmp_path, ["scratch", "features"])
    inputs.predictions = inputs.predictions[:1]
    with pytest.raises(UserError, match="no predictions file for features/1337"):
        write_report(inputs, report_settings(["scratch", "features"]), tmp_path / "r.html")


def test_predictions_on_different_test_sets_are_a_user_error(tmp_path):
    fabricate_results(tmp_path, ["scratch", "features"])
    path = tmp_path / "results" / "predictions" / "features" / f"{SEED}.csv"
    path.write_text(path.read_text().replace("cat/", "other/").replace("dog/", "other-dog/"))
    with pytest.raises(UserError, match="share no test image"):
        write_report(
            report_inputs(tmp_path, ["scratch", "features"]),
            report_settings(["scratch", "features"]),
            tmp_path / "r.html",
        )


def test_augmentation_grid_is_made_by_the_pipelines_layers(tmp_path):
    if importlib.util.find_spec("smallcnn.models") is None:
        pytest.skip("smallcnn.models (build_augmentation) is not written yet")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    fabricate_results(tmp_path, ["augmented"])
    out = tmp_path / "report.html"
    figures_dir = tmp_path / "figures"
    settings = report_settings(["augmented"], augmentation=config["augmentation"])
    write_report(report_inputs(tmp_path, ["augmented"]), settings, out, figures_dir)
    page = Page(out.read_text(encoding="utf-8"))
    grid = [image for image in page.images if "augmentation layers" in image["alt"]]
    assert len(grid) == 1 and grid[0]["src"].startswith("data:image/png;base64,")
    assert (figures_dir / "augmentation" / "grid.png").stat().st_size > 0


@pytest.mark.slow
def test_dry_run_of_a_subset_builds_only_what_the_report_needs(tmp_path):
    result = run_snakemake(
        tmp_path,
        ["results/report.html"],
        configfiles=[REPO / "config" / "demo.yaml"],
        config={"experiments": ["scratch", "features"]},
        args=["--dry-run"],
    )
    jobs = result.stdout
    for wanted in (
        f"results/models/scratch/{SEED}.keras",
        f"results/models/features/{SEED}.keras",
        "rule report",
    ):
        assert wanted in jobs
    for unwanted in ("frozen", "augmented", "finetuned"):
        assert unwanted not in jobs, unwanted


@pytest.mark.slow
def test_the_rule_renders_the_report_and_snakemake_report_collects_its_figures(tmp_path):
    subset = ["scratch", "features"]
    fabricate_results(tmp_path, subset)
    # A signed address with credentials: the report shows the run's data settings, never these.
    url = "https://user:hunter2@example.org/photos.zip?token=s3cr3t"
    # No exports: the fabricated tree has none, and only the report may run.
    config = {"experiments": subset, "data": {"url": url}, "export": {"experiments": []}}
    demo = [REPO / "config" / "demo.yaml"]
    # Only the report rule may run: everything upstream is the fabricated tree.
    only_report = ["--allowed-rules", "summarize", "report"]
    run_snakemake(
        tmp_path, ["results/report.html"], configfiles=demo, config=config, args=only_report
    )
    html = (tmp_path / "results" / "report.html").read_text(encoding="utf-8")
    assert "hunter2" not in html and "s3cr3t" not in html and "example.org/photos.zip" in html
    for record in (tmp_path / ".snakemake" / "metadata").iterdir():
        assert "hunter2" not in record.read_text() and "s3cr3t" not in record.read_text()
    page = Page(html)
    assert [row[0].split()[0] for row in page.tables["summary-table"]] == subset
    assert "report" not in [row[0] for row in page.tables["benchmark-table"]]
    run_snakemake(
        tmp_path,
        ["results/report.html"],
        configfiles=demo,
        config=config,
        args=[*only_report, "--report", "snakemake-report.zip"],
    )
    with zipfile.ZipFile(tmp_path / "snakemake-report.zip") as archive:
        names = archive.namelist()
    for figure in ("accuracy.png", "scratch.png", "features.png"):
        assert any(name.endswith(figure) for name in names), (figure, names)
    assert any(name.endswith("report.html") for name in names)


def test_the_best_is_compared_with_the_runner_up_even_when_not_consecutive(tmp_path):
    subset = ["scratch", "augmented", "features", "frozen"]
    fabricate_results(tmp_path, subset)
    path = tmp_path / "results" / "metrics" / "augmented" / f"{SEED}.json"
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps({**metrics, "test_accuracy": 0.9, "accuracy_ci95": [0.7, 0.97]}))
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, subset), report_settings(subset), out)
    html = out.read_text(encoding="utf-8")
    assert [row[0] for row in Page(html).tables["mcnemar-table"]] == [
        "scratch vs augmented",
        "augmented vs features",
        "features vs frozen",
        "augmented vs frozen",
    ]
    assert "above the runner-up,\n    frozen" in html


def test_a_randomly_initialised_base_is_flagged(tmp_path):
    subset = ["scratch", "features"]
    fabricate_results(tmp_path, subset)
    path = tmp_path / "results" / "models" / "features" / f"{SEED}.json"
    summary = json.loads(path.read_text())
    path.write_text(json.dumps({**summary, "weights": {"source": "none", "sha256": "none"}}))
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, subset), report_settings(subset), out)
    html = out.read_text(encoding="utf-8")
    assert "features started from a randomly initialised\n    conv base" in html
    training = {row[0]: row for row in Page(html).tables["training-table"]}
    assert training["features"][6:] == ["none: random initialisation", ""]
    assert [row[-1] for row in Page(html).tables["summary-table"]] == ["71.0%", "90.0%"]


def test_build_report_takes_snakemakes_named_lists_with_single_files_as_strings(tmp_path):
    fabricate_results(tmp_path, ["scratch"])
    inputs = vars(report_inputs(tmp_path, ["scratch"]))
    # One experiment: Snakemake hands a named input of one file over as a plain string.
    for name in ("metrics", "predictions", "histories", "summaries"):
        inputs[name] = str(inputs[name][0])
    params = vars(report_settings(["scratch"]))
    out = tmp_path / "report.html"
    build_report(SimpleNamespace(**inputs), SimpleNamespace(**params), out, tmp_path / "figures")
    assert [row[0] for row in Page(out.read_text()).tables["summary-table"]] == ["scratch"]
    assert (tmp_path / "figures" / "learning-curves" / "scratch.png").is_file()


def test_the_books_figures_appear_only_for_cats_and_dogs_with_the_books_settings(tmp_path):
    subset = ["scratch", "features"]
    fabricate_results(tmp_path, subset)
    settings = report_settings(subset)
    settings.experiments[1]["book_settings"] = False
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, subset), settings, out)
    html = " ".join(out.read_text().split())
    assert [row[-1] for row in Page(html).tables["summary-table"]] == ["71.0%", "–"]
    assert "Book's accuracy" in html and "* The book's figures are not results" in html
    assert "hollow diamonds are the book's figures" in html
    # Other classes (the demo's horizontal and vertical): no book figure at all, so no column,
    # footnote or chart marker for one.
    renamed = {"cat": "horizontal", "dog": "vertical"}
    for name in subset:
        path = tmp_path / "results" / "metrics" / name / f"{SEED}.json"
        metrics = json.loads(path.read_text())
        path.write_text(json.dumps({**metrics, "class_names": list(renamed.values())}))
        path = tmp_path / "results" / "predictions" / name / f"{SEED}.csv"
        predictions = pd.read_csv(path)
        predictions[["label", "predicted"]] = predictions[["label", "predicted"]].replace(renamed)
        predictions.rename(columns={f"p_{a}": f"p_{b}" for a, b in renamed.items()}).to_csv(
            path, index=False
        )
    write_report(report_inputs(tmp_path, subset), report_settings(subset), out)
    html = " ".join(out.read_text().split())
    rows = Page(html).tables["summary-table"]
    # The last cell is the training time, as the header's last column.
    assert [row[-1] for row in rows] == ["1 min 34 s", "1 min 34 s"]
    assert "Book" not in html and "book's figures" not in html and "diamond" not in html


def test_learning_curves_draw_each_epochs_learning_rate_and_name_the_schedule(tmp_path):
    from smallcnn.report import charts
    from smallcnn.report.loading import load_runs

    fabricate_results(tmp_path, ["scratch"])
    inputs = report_inputs(tmp_path, ["scratch"])
    [run] = load_runs(inputs, ["scratch"], [SEED])["scratch"]
    figure = charts.learning_curves([run], "scratch")
    accuracy, loss, rates = figure.axes
    assert rates.get_yscale() == "log" and rates.get_ylabel() == "learning rate"
    [line] = rates.get_lines()
    assert list(line.get_ydata()) == run.history["learning_rate"].tolist()
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5, 6]

    settings = report_settings(["scratch"])
    callbacks = settings.experiments[0]["settings"]["callbacks"]
    callbacks["lr_schedule"] = {"kind": "cosine", "warmup_epochs": 2, "min_learning_rate": 0.0}
    out = tmp_path / "report.html"
    write_report(inputs, settings, out)
    text = " ".join(out.read_text().split())
    assert "then its cosine schedule after a warm-up of 2 epochs (the dotted line)." in text


@pytest.mark.slow
def test_a_forty_class_report_keeps_its_size_reasonable(tmp_path):
    """Five experiments on 40 classes of 64 px images, 10 test images per class: the confusion
    cells and the heatmaps of 3 right images per class are the bulk of it."""
    classes = tuple(f"breed{k:02d}" for k in range(40))
    record = fabricate_results(
        tmp_path,
        classes=classes,
        per_class={"train": 2, "validation": 1, "test": 10},
        image_size=(64, 64),
    )
    out = tmp_path / "results" / "report.html"
    write_report(report_inputs(tmp_path, ALL), report_settings(ALL), out)
    html = out.read_text()
    size = out.stat().st_size
    print(f"\n40-class fabricated report: {size / 1e6:.2f} MB")
    page = Page(html)
    # Ten cells of finetuned, each of its images (at most 12), and ten confused pairs.
    assert html.count('<details class="cell">') == 10
    assert len(page.tables["confused-pairs"]) == 10
    # Each experiment trained on images shows 3 right images of each of the 40 classes.
    overlays = [i for i in page.images if i["alt"].startswith("Heatmap of finetuned over ")]
    assert len(overlays) == heatmap_pairs(record, "finetuned", classes) > 100
    assert size < 8_000_000


# The end-to-end verdict test: five experiments, three seeds, 20 test images (10 per class, in
# sorted order). Each run is right on its first n images (P(true class) 0.8) and wrong on the
# rest (0.2), so each experiment's seed-averaged prediction is right where at least two of its
# three seeds are.
RIGHT_ON = {
    "scratch": (4, 4, 4),  # 20% on every seed
    "augmented": (8, 9, 10),  # 40, 45, 50%
    "features": (9, 8, 11),  # 45, 40, 55%
    "frozen": (16, 15, 18),  # 80, 75, 90%: features + 35 points on every seed
    "finetuned": (17, 16, 19),  # 85, 80, 95%: frozen + 5 points on every seed
}
VERDICT_SEEDS = (1, 2, 3)


def fabricate_known_runs(root):
    """The results tree of RIGHT_ON: predictions, and metrics whose accuracy matches them."""
    fabricate_results(root, ALL, seeds=VERDICT_SEEDS)
    results = root / "results"
    for name, counts in RIGHT_ON.items():
        for seed, right in zip(VERDICT_SEEDS, counts, strict=True):
            path = results / "predictions" / name / f"{seed}.csv"
            predictions = pd.read_csv(path).sort_values("file", ignore_index=True)
            p_true = np.where(np.arange(len(predictions)) < right, 0.8, 0.2)
            is_dog = predictions["label"] == "dog"
            predictions["p_dog"] = np.where(is_dog, p_true, 1 - p_true)
            predictions["p_cat"] = 1 - predictions["p_dog"]
            predictions["predicted"] = np.where(predictions["p_dog"] > 0.5, "dog", "cat")
            predictions["correct"] = predictions["predicted"] == predictions["label"]
            predictions["probability"] = predictions[["p_cat", "p_dog"]].max(axis=1)
            predictions.to_csv(path, index=False)
            assert predictions["correct"].sum() == right
            path = results / "metrics" / name / f"{seed}.json"
            metrics = json.loads(path.read_text())
            accuracy = right / len(predictions)
            path.write_text(json.dumps({**metrics, "test_accuracy": accuracy}))


def test_the_report_says_who_wins_by_how_much_and_which_test_decided_each_verdict(tmp_path):
    """What the report concludes, checked in the rendered HTML against answers worked out by hand:
    the winner and its margin, and for each comparison the deciding test, its figures, whether
    the difference is real and whom it favours. Every rule is exercised: the seed-paired
    interval (three seeds whose differences vary) finding a real difference and finding none,
    and McNemar (the same difference on every seed) finding one and finding none."""
    fabricate_known_runs(tmp_path)
    out = tmp_path / "report.html"
    settings = report_settings(ALL, seeds=VERDICT_SEEDS)
    write_report(report_inputs(tmp_path, ALL, VERDICT_SEEDS), settings, out)
    html = " ".join(out.read_text(encoding="utf-8").split())
    page = Page(html)

    # finetuned wins: 86.7% mean, 5 points above frozen's 81.7% on every seed. McNemar decides
    # (the same difference on all three seeds): averaged over the seeds, finetuned is right on
    # images 0-16 and frozen on 0-15, one discordant image, p = 1.
    assert "Best on this test set: <strong>finetuned</strong>" in html
    assert "86.7% &plusmn; 7.6% mean test accuracy over 3 seeds" in html
    assert (
        "That is 5.0 percentage points above the runner-up, frozen: <strong>not a significant "
        "difference</strong> on this test set (McNemar p = 1.0000 on each experiment's predictions "
        "averaged over its 3 seeds). McNemar's exact test decides because the difference is the "
        "same on all 3 seeds"
    ) in html
    summary = {row[0].split()[0]: row for row in page.tables["summary-table"]}
    assert [summary[name][2] for name in ALL] == [
        "20.0% ± 0.0%",
        "45.0% ± 5.0%",
        "46.7% ± 7.6%",
        "81.7% ± 7.6%",
        "86.7% ± 7.6%",
    ]

    # B - A over the seeds and its 95% t-interval, t(0.975, 2) = 4.3027: mean +- 4.3027 sd / sqrt 3.
    def interval(differences):
        mean = np.mean(differences)
        half = 4.302653 * np.std(differences, ddof=1) / np.sqrt(3)
        return f"{mean:+.1f} ({mean - half:+.1f} to {mean + half:+.1f})"

    vary = "t-interval: 3 seeds give differences that vary"
    same = "McNemar: the difference is the same on all 3 seeds"
    rows = {row[0]: row for row in page.tables["mcnemar-table"]}
    expected = {
        # Paired-t, real: augmented 20, 25 and 30 points ahead.
        "scratch vs augmented": (interval([20, 25, 30]), "augmented is better", vary),
        # Paired-t, not real: features 5 ahead, 5 behind, 5 ahead.
        "augmented vs features": (interval([5, -5, 5]), "no significant difference", vary),
        # McNemar, real: 35 points on every seed; averaged, frozen is right on 7 images features
        # gets wrong (9-15) and features on none that frozen misses: p = 2 / 2^7.
        "features vs frozen": ("+35.0 (+35.0 to +35.0)", "frozen is better", same),
        # McNemar, not real: one discordant image.
        "frozen vs finetuned": ("+5.0 (+5.0 to +5.0)", "no significant difference", same),
        # The first against the best: paired-t, 65, 60 and 75 points.
        "scratch vs finetuned": (interval([65, 60, 75]), "finetuned is better", vary),
    }
    assert list(rows) == list(expected)
    for pair, (difference, verdict, decided) in expected.items():
        assert rows[pair][3] == difference, pair
        assert rows[pair][7] == verdict, pair
        assert rows[pair][8].startswith(decided), pair
    assert rows["features vs frozen"][4:7] == ["0", "7", "0.0156"]
    assert rows["frozen vs finetuned"][4:7] == ["0", "1", "1.0000"]
    assert rows["scratch vs augmented"][2] == "20.0% / 45.0%"


def test_classes_named_like_missing_values_are_classes_in_every_table(tmp_path):
    """pandas reads "NA" and "None" as missing by default: as class names they must still reach
    the split counts, the accuracy and the confusion cells."""
    classes = ("NA", "None")
    names = ["scratch", "finetuned"]
    record = fabricate_results(tmp_path, experiments=names, classes=classes)
    out = tmp_path / "results" / "report.html"
    write_report(report_inputs(tmp_path, names), report_settings(names), out)
    html = out.read_text()
    page = Page(html)
    assert page.tables["split-table"] == [
        ["NA", "4", "2", "10", "16"],
        ["None", "4", "2", "10", "16"],
    ]
    accuracy = {row[0].split()[0]: row[1] for row in page.tables["summary-table"]}
    assert accuracy == {"scratch": "55.0%", "finetuned": "85.0%"}
    correct = record["correct"]["finetuned"]
    wrong = {c: sum(not ok for f, ok in correct.items() if f.startswith(f"{c}/")) for c in classes}
    assert page.tables["confused-pairs"][0][:4] == [
        "NA",
        "None",
        str(wrong["NA"]),
        str(wrong["None"]),
    ]


def test_the_report_loads_no_tensorflow():
    """The report job needs TensorFlow only to draw augmentation examples (then it imports it
    itself): reading the results must not load it, which takes seconds and hundreds of MB."""
    code = "import sys, smallcnn.report; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"
