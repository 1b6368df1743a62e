"""Classifying new files with a saved model: good images, broken ones, and not images at all."""

import csv
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml
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
    assert rows["broken.jpg"]["error"].startswith("corrupt: starts like a JPEG")
    assert rows["notes.txt"]["error"].startswith("not_image: ")
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
    # Its own words only: TensorFlow's start-up lines (cudart_stub.cc, oneDNN, cuInit) are held.
    assert result.stderr == "classified 4 of 6 files\n"


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
    # Its heatmaps come from the base + head composition: the base's last conv layer.
    rows = predict.predict(
        model_path_of(model, tmp_path), [mixed_folder], heatmaps_dir=tmp_path / "maps"
    )
    assert sum(1 for row in rows if row["heatmap"]) == 4
    assert len(list((tmp_path / "maps").glob("*.npy"))) == 4


def model_path_of(model, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return path


def grey_png(path, width, height):
    """A black 8-bit greyscale PNG written row by row: a huge pixel count in a small file (a
    15000 x 15000 one is 219 KB), without holding its pixels in memory."""

    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    packer = zlib.compressobj(9)
    row = bytes(1 + width)  # filter byte, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
    return path


def test_the_defaults_are_the_data_stages(tmp_path):
    data = yaml.safe_load((REPO / "config.yaml").read_text())["data"]
    assert (
        data["min_side"],
        data["max_image_pixels"],
    ) == (predict.MIN_SIDE, predict.MAX_IMAGE_PIXELS)


def test_images_outside_the_data_stages_bounds_get_a_row_with_the_reason(model_path, tmp_path):
    many = grey_png(tmp_path / "many.png", 1200, 1000)
    small = grey_png(tmp_path / "small.png", 64, 20)
    fine = grey_png(tmp_path / "fine.png", 64, 48)
    rows = predict.predict(model_path, [many, small, fine], max_image_pixels=1_000_000)
    errors = {os.path.basename(row["file"]): row["error"] for row in rows}
    assert errors["many.png"] == (
        "too_many_pixels: 1200x1000 is more than data.max_image_pixels=1000000"
    )
    assert errors["small.png"].startswith("too_small: 64x20")
    # Greyscale is converted as in the data stage, then classified.
    assert errors["fine.png"] == "" and rows[2]["predicted"] in ("cat", "dog")


def test_an_endless_file_is_not_read_past_the_bound(model_path):
    rows = predict.predict(model_path, ["/dev/zero"], max_image_pixels=1024)
    assert rows[0]["error"].startswith("too_large: ")


@pytest.mark.slow
def test_a_decompression_bomb_leaves_memory_flat(model_path, tmp_path):
    """Peak memory of the command on a 15000 x 15000 PNG of 219 KB is that of a small image.
    Before the bound, decoding it added about 690 MB (1,348 vs 656 MB peak RSS)."""
    bomb = grey_png(tmp_path / "bomb.png", 15000, 15000)
    fine = grey_png(tmp_path / "fine.png", 64, 48)

    def peak_rss_mb(image):
        script = (
            "import resource, sys\n"
            "from smallcnn import predict\n"
            "predict.main(sys.argv[1:])\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, "--model", str(model_path), str(image)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=300,
        )
        return result.stdout, int(result.stderr.split()[-1])

    rows, bomb_mb = peak_rss_mb(bomb)
    assert "too_many_pixels" in rows
    _, fine_mb = peak_rss_mb(fine)
    assert bomb_mb - fine_mb < 100, f"{bomb_mb} MB on the bomb, {fine_mb} MB on a small image"


def test_heatmaps_are_written_for_every_classified_image_and_none_for_rejected_files(
    model_path, mixed_folder, tmp_path
):
    import numpy as np
    from PIL import Image

    # The same name in two folders: both keep their maps.
    twin = mixed_folder / "twin"
    twin.mkdir()
    shutil.copy(mixed_folder / "cat-0.jpg", twin / "cat-0.jpg")
    out, maps = tmp_path / "preds.csv", tmp_path / "maps"
    status = predict.main(
        ["--model", str(model_path), "--out", str(out), "--heatmaps", str(maps), str(mixed_folder)]
    )
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    classified = [row for row in rows if not row["error"]]
    assert len(classified) == 5 and len(rows) == 7
    assert all(row["heatmap"] == "" for row in rows if row["error"])
    written = sorted(p.name for p in maps.iterdir())
    assert written == sorted(
        f"{stem}.{ext}"
        for stem in ("cat-0", "cat-0-2", "cat-1", "dog-0", "dog-1")
        for ext in ("png", "npy")
    )
    for row in classified:
        png = Path(row["heatmap"])
        assert png.parent == maps and png.is_file()
        heatmap = np.load(png.with_suffix(".npy"))
        assert heatmap.dtype == np.float32 and heatmap.shape == (48, 48)
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
        with Image.open(png) as image:
            assert image.size == (48, 48) and image.mode == "RGB"
    # Without the option, no column and no files.
    assert (
        "heatmap"
        not in read_rows(subprocess_free_run(model_path, mixed_folder, tmp_path / "plain.csv"))[
            "cat-1.jpg"
        ]
    )


def subprocess_free_run(model_path, folder, out):
    assert predict.main(["--model", str(model_path), "--out", str(out), str(folder)]) == 0
    return out.read_text()


def test_heatmaps_need_a_keras_model(tmp_path, mixed_folder, capsys):
    exported = tmp_path / "model.onnx"
    exported.write_bytes(b"onnx")
    status = predict.main(
        ["--model", str(exported), "--heatmaps", str(tmp_path / "maps"), str(mixed_folder)]
    )
    assert status == 2
    assert "--heatmaps needs a .keras model" in capsys.readouterr().err
    assert not (tmp_path / "maps").exists()


@pytest.mark.slow
def test_heatmaps_of_saved_frozen_and_finetuned_models(demo_run, tmp_path):
    """The demo's own .keras files: nested VGG16 bases, loaded from disk."""
    import numpy as np

    test = demo_run / "results" / "data" / "test"
    # Two images of each class: one batch.
    folders = sorted(path for path in test.iterdir() if path.is_dir())
    images = [path for folder in folders for path in sorted(folder.iterdir())[:2]]
    for experiment in ("frozen", "finetuned"):
        model = demo_run / "results" / "models" / experiment / "1337.keras"
        rows = predict.predict(model, images, heatmaps_dir=tmp_path / experiment)
        assert len(rows) == 4 and all(row["heatmap"] for row in rows)
        maps = [np.load(Path(row["heatmap"]).with_suffix(".npy")) for row in rows]
        assert all(m.shape == (64, 64) and np.isfinite(m).all() for m in maps)
