"""Classifying new files with a saved model: good images, broken ones, and not images at all."""

import csv
import io
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, make_class_images

from smallcnn import models, predict


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "scratch.keras"
    models.build_scratch(
        (48, 48, 3), 2, dropout=0.0, dense_units=8, class_names=["cat", "dog"]
    ).save(path)
    return path


@pytest.fixture
def mixed_folder(tmp_path):
    good = make_class_images(tmp_path / "images", per_class=2, size=(60, 40))
    folder = tmp_path / "new"
    folder.mkdir()
    for path in good:
        shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
    (folder / "broken.jpg").write_bytes(good[0].read_bytes()[:200])
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def read_rows(text):
    return {os.path.basename(row["file"]): row for row in csv.DictReader(io.StringIO(text))}


def test_every_file_gets_a_row_and_bad_ones_an_error(model_path, mixed_folder, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    assert predict.main(["--model", str(model_path), "--out", str(out), str(mixed_folder)]) == 0
    rows = read_rows(out.read_text())
    assert set(rows) == {
        "cat-0.jpg",
        "cat-1.jpg",
        "dog-0.jpg",
        "dog-1.jpg",
        "broken.jpg",
        "notes.txt",
    }
    for name in ("cat-0.jpg", "dog-1.jpg"):
        assert rows[name]["predicted"] in ("cat", "dog")
        assert 0.5 <= float(rows[name]["probability"]) <= 1
        assert rows[name]["error"] == ""
    for name in ("broken.jpg", "notes.txt"):
        assert rows[name]["predicted"] == "" and rows[name]["error"]
    assert "Invalid JPEG" in rows["broken.jpg"]["error"]
    assert "classified 4 of 6 files" in capsys.readouterr().err


def test_nothing_classified_is_a_failure(model_path, mixed_folder, capsys):
    status = predict.main(
        [
            "--model",
            str(model_path),
            str(mixed_folder / "notes.txt"),
            str(mixed_folder / "gone.png"),
        ]
    )
    assert status == 1
    rows = read_rows(capsys.readouterr().out)
    assert rows["gone.png"]["error"] and rows["notes.txt"]["error"]


@pytest.mark.slow
def test_the_command_line(model_path, mixed_folder):
    result = subprocess.run(
        [sys.executable, "-m", "smallcnn.predict", "--model", str(model_path), str(mixed_folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert len(read_rows(result.stdout)) == 6


def test_a_features_model_of_random_features_cannot_classify_images(tmp_path, mixed_folder):
    model = models.build_feature_classifier(
        (1, 1, 512),
        2,
        dense_units=8,
        dropout=0.5,
        class_names=["cat", "dog"],
        conv_base={
            "name": "vgg16",
            "weights": "none",
            "weights_sha256": "none",
            "input_size": [32, 32],
        },
    )
    model.save(tmp_path / "features.keras")
    assert predict.main(["--model", str(tmp_path / "features.keras"), str(mixed_folder)]) == 2


def test_a_features_model_classifies_through_its_conv_base(tmp_path, mixed_folder):
    from smallcnn.features import file_sha256

    weights = tmp_path / "vgg16.weights.h5"
    models.build_conv_base("vgg16", None, (32, 32, 3)).save_weights(weights)
    info = {
        "name": "vgg16",
        "weights": str(weights),
        "weights_sha256": file_sha256(weights),
        "input_size": [32, 32],
    }
    model = models.build_feature_classifier(
        (1, 1, 512), 2, dense_units=8, dropout=0.5, class_names=["cat", "dog"], conv_base=info
    )
    rows = predict.predict(model_path_of(model, tmp_path), [mixed_folder])
    assert sum(1 for row in rows if row["predicted"]) == 4


def model_path_of(model, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return path
