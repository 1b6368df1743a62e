"""The heatmaps the report shows for one trained model: its most confidently wrong test images
and, per class, its most confidently right ones, each as a JPEG thumbnail of the image and of its
Grad-CAM overlay, listed in `index.json`.

A job of its own (rule heatmaps), so that the report job needs no TensorFlow and the maps of
several experiments are computed in parallel.
"""

import csv
import json
import logging
from pathlib import Path

import numpy as np

from smallcnn.errors import UserError

log = logging.getLogger(__name__)

INDEX = "index.json"
# The rebuilt random conv base of a features model must reproduce the stored features to this
# relative error (its norm): bfloat16 extraction differs from float32 by about 1%.
FEATURE_TOLERANCE = 0.05


def select(errors, wrong, right_per_class):
    """The rows of an errors file (evaluation.write_errors) to show: the `wrong` most confidently
    wrong, then for each class (by name) its `right_per_class` most confidently right; the
    confidence is the predicted class's probability, ties go by file."""
    rows = [
        {**row, "probability": float(row["probability"])}
        for row in errors
        if row["true"] and row["predicted"]
    ]
    by_confidence = sorted(rows, key=lambda row: (-row["probability"], row["file"]))
    chosen = [
        {**row, "group": "wrong"} for row in by_confidence if row["true"] != row["predicted"]
    ][:wrong]
    for label in sorted({row["true"] for row in rows}):
        right = [row for row in by_confidence if row["true"] == label == row["predicted"]]
        chosen += [{**row, "group": "right"} for row in right[:right_per_class]]
    return chosen


def read_errors(path):
    try:
        with open(path, newline="") as stream:
            return list(csv.DictReader(stream))
    except OSError as error:
        raise UserError(f"cannot read {path} ({error}); rerun its evaluation") from None


def jpeg(pixels, size):
    """uint8 pixels as JPEG bytes, shrunk to fit size x size (never enlarged)."""
    from PIL import Image

    from smallcnn.figures import jpeg_bytes

    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    return jpeg_bytes(image)


def _features_base(conv_base, weights, seed, test_features, files, images):
    """The conv base a features model's features came from, rebuilt; None and why not when it
    does not reproduce the stored features of `files`."""
    import keras

    from smallcnn import feature_file, models

    if conv_base is None:
        return None, "the model does not say which conv base made its features"
    keras.utils.set_random_seed(seed)
    base = models.build_conv_base(conv_base["name"], weights or None, (*images.shape[1:3], 3))
    stored = feature_file.read(test_features)
    rows = {file: index for index, file in enumerate(stored.files)}
    missing = [file for file in files if file not in rows]
    if missing:
        return None, f"{missing[0]} is not in {test_features}"
    expected = stored.features[[rows[file] for file in files]]
    computed = keras.ops.convert_to_numpy(base([images], training=False)).astype("float32")
    error = float(np.linalg.norm(computed - expected) / max(np.linalg.norm(expected), 1e-12))
    if error > FEATURE_TOLERANCE:
        return None, (
            f"the conv base rebuilt from {conv_base['weights']} does not reproduce the stored "
            f"features (relative error {error:.3f})"
        )
    return base, None


def write_examples(
    model_path,
    errors_path,
    test_dir,
    out_dir,
    *,
    layer=None,
    wrong=6,
    right_per_class=3,
    thumbnail=160,
    test_features=None,
    weights=None,
    seed=0,
    precision="float32",
    threads=None,
):
    """Write `out_dir`/index.json and its JPEGs for the model at `model_path`.

    A features model is explained through its conv base, rebuilt from `weights` (None: random,
    drawn with the features stage's `seed` and `precision`) and checked against the stored
    `test_features`; when it cannot be rebuilt, the index says why and holds no examples.
    """
    import keras

    from smallcnn import datasets, devices, heatmaps, models

    devices.configure(precision, multi_gpu=False, threads=threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = keras.saving.load_model(model_path, compile=False)
    class_names, conv_base = models.model_info(model)
    chosen = select(read_errors(errors_path), wrong, right_per_class)
    takes_images = len(model.input_shape) == 4 and model.input_shape[-1] == 3
    size = tuple(model.input_shape[1:3]) if takes_images else tuple(conv_base["input_size"])
    index = {
        "model": str(model_path),
        "layer": None,
        "input_size": list(size),
        "reason": None,
        "examples": [],
    }
    images = np.zeros((len(chosen), *size, 3), "float32")
    for image, row in zip(images, chosen, strict=True):
        path = Path(test_dir, row["file"])
        if not path.is_file():
            raise UserError(f"{path} is in {errors_path} but missing; rerun the split job")
        image[...] = datasets.decode_and_resize(path.read_bytes(), size).numpy()
    base = None
    if not chosen:
        index["reason"] = "the errors file lists no test image"
    elif not takes_images:
        base, index["reason"] = _features_base(
            conv_base, weights, seed, test_features, [row["file"] for row in chosen], images
        )
    if index["reason"] is None:
        cam = heatmaps.GradCam(model, layer, base)
        index["layer"] = cam.layer_name
        classes = [class_names.index(row["predicted"]) for row in chosen]
        found = cam(images, classes=classes)
        for number, (row, image, heatmap, scaled) in enumerate(
            zip(chosen, images, found.maps, found.scaled, strict=True), start=1
        ):
            pixels = np.clip(np.rint(image), 0, 255).astype("uint8")
            names = {"image": f"{number:03d}-image.jpg", "overlay": f"{number:03d}-overlay.jpg"}
            (out / names["image"]).write_bytes(jpeg(pixels, thumbnail))
            (out / names["overlay"]).write_bytes(jpeg(heatmaps.overlay(pixels, heatmap), thumbnail))
            index["examples"].append(
                {
                    "group": row["group"],
                    "file": row["file"],
                    "true": row["true"],
                    "predicted": row["predicted"],
                    "probability": row["probability"],
                    "scaled": bool(scaled),
                    **names,
                }
            )
    else:
        log.warning("%s: no heatmaps (%s)", model_path, index["reason"])
    (out / INDEX).write_text(json.dumps(index, indent=1) + "\n")
    log.info(
        "%s: %d heatmaps from layer %s in %s",
        model_path,
        len(index["examples"]),
        index["layer"],
        out,
    )
    return index
