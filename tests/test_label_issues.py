"""Labels worth a second look: cleanlab over out-of-fold probabilities averaged over seeds."""

import csv
import json

import numpy as np
import pytest

from smallcnn import label_issues
from smallcnn.errors import UserError

CLASSES = ["blue", "green", "red"]


def write_oof(path, rows):
    columns = ["file", "path", "label", "fold", "predicted"] + [f"p_{name}" for name in CLASSES]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for row in rows:
            probabilities = row.pop("probabilities")
            row.update({f"p_{n}": f"{p:.6f}" for n, p in zip(CLASSES, probabilities, strict=True)})
            row["predicted"] = CLASSES[int(np.argmax(probabilities))]
            writer.writerow(row)
    return path


def noisy_oof(tmp_path, seeds=2, n=300, flip=0.1, rng_seed=0):
    """OOF files of `seeds` seeds for n images, a share `flip` of them labelled wrongly: a model
    that learned gives the true class most probability, the given (wrong) label little."""
    rng = np.random.default_rng(rng_seed)
    truth = rng.integers(0, 3, n)
    flipped = set(rng.choice(n, int(flip * n), replace=False).tolist())
    given = [
        (t + rng.integers(1, 3)) % 3 if i in flipped else t for i, t in enumerate(truth.tolist())
    ]
    paths = []
    for seed in range(seeds):
        rows = []
        for i in range(n):
            logits = rng.normal(0, 0.6, 3)
            logits[truth[i]] += 3.0
            probabilities = np.exp(logits) / np.exp(logits).sum()
            rows.append(
                {
                    "file": f"photos/{i:04d}.png",
                    "path": f"train/{CLASSES[given[i]]}/{i:04d}.png",
                    "label": CLASSES[given[i]],
                    "fold": i % 5,
                    "probabilities": probabilities,
                }
            )
        paths.append(write_oof(tmp_path / f"{seed}.csv", rows))
    return paths, {f"photos/{i:04d}.png": CLASSES[truth[i]] for i in flipped}


def test_the_flipped_labels_are_found_with_their_true_class_suggested(tmp_path):
    paths, flipped = noisy_oof(tmp_path)
    rows = label_issues.find_label_issues(paths, tmp_path / "label_issues.csv", "features")
    written = label_issues.read_label_issues(tmp_path / "label_issues.csv")
    assert [(r["file"], r["label"]) for r in written] == [(r["file"], r["label"]) for r in rows]
    found = {row["file"] for row in rows}
    recall = len(found & set(flipped)) / len(flipped)
    precision = len(found & set(flipped)) / len(found)
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)
    for row in rows:
        if row["file"] in flipped:
            assert row["label"] == flipped[row["file"]]
        assert row["given_label"] != row["label"]
    # Ranked by self-confidence, lowest first.
    confidences = [float(row["self_confidence"]) for row in rows]
    assert confidences == sorted(confidences)
    assert [row["rank"] for row in rows] == list(range(1, len(rows) + 1))
    assert "out-of-fold predictions of features" in rows[0]["reason"]


def test_probabilities_are_averaged_over_the_seeds(tmp_path):
    base = {"path": "train/blue/a.png", "label": "blue", "fold": 0}
    others = [
        {
            "file": f"x{i}",
            "path": "p",
            "label": CLASSES[i % 3],
            "fold": 1,
            "probabilities": np.eye(3)[i % 3] * 0.9 + 0.1 / 3,
        }
        for i in range(30)
    ]
    first = write_oof(
        tmp_path / "1.csv",
        [{**base, "file": "a", "probabilities": np.array([0.9, 0.05, 0.05])}]
        + [dict(row) for row in others],
    )
    second = write_oof(
        tmp_path / "2.csv",
        [{**base, "file": "a", "probabilities": np.array([0.1, 0.2, 0.7])}]
        + [dict(row) for row in others],
    )
    files, split_paths, labels, probabilities, classes = label_issues.averaged_oof([first, second])
    assert classes == CLASSES
    index = files.index("a")
    assert probabilities[index] == pytest.approx([0.5, 0.125, 0.375])
    assert split_paths[index] == "train/blue/a.png" and labels[index] == 0


def test_oof_files_of_other_images_are_refused(tmp_path):
    row = {"path": "p", "label": "blue", "fold": 0, "probabilities": np.array([0.8, 0.1, 0.1])}
    first = write_oof(tmp_path / "1.csv", [{**row, "file": "a"}])
    second = write_oof(tmp_path / "2.csv", [{**row, "file": "b"}])
    with pytest.raises(UserError, match="other images"):
        label_issues.averaged_oof([first, second])
    (tmp_path / "bad.csv").write_text("file,label\na,blue\n")
    with pytest.raises(UserError, match="not an out-of-fold prediction file"):
        label_issues.read_oof(tmp_path / "bad.csv")


def test_the_first_ranked_experiment_is_chosen_with_classes_named_like_missing_values(tmp_path):
    """Classes "NA" and "None" (pandas' default missing values) through find_for_best: the
    splits' test counts decide the primary metric, and b, ranked first by its cross-validated
    accuracy, is the one whose OOF predictions give the candidates."""
    classes = ["NA", "None"]
    splits = tmp_path / "splits.csv"
    with open(splits, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "split", "path"])
        for c in classes:
            for i in range(25):
                split = "test" if i >= 20 else "train"
                writer.writerow([f"{c}/{i}.png", c, split, f"{split}/{c}/{i}.png"])
    wrong = {"NA/3.png", "None/7.png"}
    paths = {}
    for name, learned in (("a", False), ("b", True)):
        metrics = tmp_path / "metrics" / name / "1.json"
        metrics.parent.mkdir(parents=True)
        metrics.write_text(json.dumps({"cv": {"accuracy": 0.9 if learned else 0.6}}))
        oof = tmp_path / "oof" / name / "1.csv"
        oof.parent.mkdir(parents=True)
        with open(oof, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "path", "label", "fold", "predicted", "p_NA", "p_None"])
            for c in classes:
                for i in range(20):
                    file = f"{c}/{i}.png"
                    # b learned that the wrong ones belong to the other class; a agrees with
                    # every given label.
                    given = classes.index(c)
                    likely = 1 - given if learned and file in wrong else given
                    p = [0.03, 0.03]
                    p[likely] = 0.97
                    writer.writerow(
                        [file, f"train/{file}", c, i % 2, classes[likely], *map(str, p)]
                    )
        paths[name] = (metrics, oof)
    out = tmp_path / "label_issues.csv"
    label_issues.find_for_best(
        oof=[paths[n][1] for n in "ab"],
        metrics=[paths[n][0] for n in "ab"],
        splits=splits,
        experiments=["a", "b"],
        primary_setting="auto",
        out=out,
    )
    found = {row["file"]: row for row in label_issues.read_label_issues(out)}
    assert set(found) == wrong
    assert (found["NA/3.png"]["given_label"], found["NA/3.png"]["label"]) == ("NA", "None")
