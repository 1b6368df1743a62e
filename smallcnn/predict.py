"""Classify new images with any trained model or exported artifact.

    python -m smallcnn.predict --model results/models/finetuned/1337.keras [--out preds.csv] \
        [--tta N] IMAGE_OR_DIR...

--model also takes what the export rule writes (results/export/<experiment>/<seed>/): the
saved_model folder, model.onnx, model.tflite or model_int8.tflite, each run by its own runtime.

One row per file: file, predicted, probability, error. A file that cannot be read gets a row with
the error and the others go on; the exit status is non-zero only when nothing was classified.
Every file passes the same checks as in the data stage (smallcnn.images), bounds on size and pixel
count included, before anything decodes it: a decompression bomb gets a row, not the memory.
"""

import argparse
import contextlib
import csv
import logging
import re
import sys
from pathlib import Path

import numpy as np

from smallcnn import artifacts, datasets, images, tta
from smallcnn.errors import UserError
from smallcnn.logs import native_output_held, print_redacted
from smallcnn.redact import redact

log = logging.getLogger(__name__)

BATCH_SIZE = 32
# config.yaml's data.min_side and data.max_image_pixels: a model file does not record the bounds
# its data stage used, so the defaults apply unless the command line says otherwise.
MIN_SIDE = 32
MAX_IMAGE_PIXELS = 40_000_000


def expand(paths):
    """Files named, and every file under the folders named, in order; missing paths kept (they
    get an error row)."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            files.append(path)
    return files


def check_file(path, min_side, max_image_pixels):
    """(bytes ready for the decoder training uses, None) for a usable image, or (None, why not)."""
    # At most one byte past the bound is read, so that neither a huge file nor an endless
    # device (whose size says nothing) is read into memory.
    with open(path, "rb") as stream:
        data = stream.read(images.max_file_bytes(max_image_pixels) + 1)
    found = images.too_large(len(data), max_image_pixels) or images.inspect_image(
        data, Path(path).suffix.lower(), min_side, max_image_pixels
    )
    if found.status != "ok":
        return None, f"{found.status}: {found.detail}"
    # The data stage stores such files as RGB PNG, which is what the model was trained on.
    return (images.to_rgb_png(data) if found.convert else data), None


def _short(message):
    """TensorFlow's error message without its op decorations, on one line."""
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[Op:\w+\].*$", "", message, flags=re.S)
    return " ".join(message.split())[:200]


def _feature_base(conv_base, weights):
    """The conv base a features classifier was trained on, rebuilt with the same weights."""
    from smallcnn import features, models

    if conv_base is None:
        raise UserError("the model takes features but does not say which conv base made them")
    if conv_base["weights"] == "none":
        raise UserError(
            "this features model was trained on features of a randomly initialised conv base, "
            "which cannot be rebuilt: classify with another model"
        )
    if weights is None:
        weights = conv_base["weights"]
        if weights == "imagenet":
            weights = f"resources/weights/{conv_base['name']}_imagenet_notop.weights.h5"
    if not Path(weights).is_file():
        raise UserError(
            f"the conv base weights {weights} are not here: pass --weights with the "
            f"{conv_base['name']} weights file the features were extracted with"
        )
    if features.file_sha256(weights) != conv_base["weights_sha256"]:
        raise UserError(f"{weights} is not the weights file the features were extracted with")
    size = tuple(conv_base["input_size"])
    return models.build_conv_base(conv_base["name"], weights, (*size, 3)), size


def _keras_model(model_path, weights):
    """(model, its conv base for a model that takes features or None, class names, image
    size)."""
    import keras

    from smallcnn import models

    model = keras.saving.load_model(model_path, compile=False)
    class_names, conv_base = models.model_info(model)
    if model.input_shape[-1] == 3 and len(model.input_shape) == 4:
        return model, None, class_names, tuple(model.input_shape[1:3])
    base, image_size = _feature_base(conv_base, weights)
    return model, base, class_names, image_size


def predict(
    model_path,
    paths,
    weights=None,
    min_side=MIN_SIDE,
    max_image_pixels=MAX_IMAGE_PIXELS,
    tta_views=(),
    heatmaps_dir=None,
    heatmap_layer=None,
):
    """Rows {file, predicted, probability, error} for every file of `paths`; a file outside
    the bounds of the data stage (`min_side`, `max_image_pixels`) gets an error row.

    `model_path`: a .keras file or an exported artifact (smallcnn.artifacts); `tta_views`:
    smallcnn.tta's view names whose probabilities are averaged, as evaluation does. With
    `heatmaps_dir`, each classified image's Grad-CAM map of its predicted class is written there
    (smallcnn.heatmaps.HeatmapFiles) and its row gets the overlay's path as `heatmap`.
    """
    if heatmaps_dir is not None and Path(model_path).suffix.lower() != ".keras":
        raise UserError(
            f"--heatmaps needs a .keras model: {model_path} is an exported artifact, which keeps "
            "no gradients of its layers; give the results/models/<experiment>/<seed>.keras file"
        )
    # Imported here, not at the top: main holds what TensorFlow's import writes to the terminal.
    import tensorflow as tf

    from smallcnn import evaluation

    cam = files = None
    if artifacts.runtime_format(model_path):
        artifact = artifacts.load(model_path)
        class_names, image_size = artifact.class_names, artifact.image_size

        def run(images):
            # The views of TTA are resampled in float: the artifact takes them rounded.
            return artifact.run(artifacts.as_uint8(images))

    else:
        model, base, class_names, image_size = _keras_model(model_path, weights)
        if tta_views and base is not None:
            raise UserError(
                "--tta applies to models that take images: a features model is evaluated "
                "without test-time augmentation too (its exported artifact takes images)"
            )

        def run(images):
            if base is None:
                return model.predict_on_batch(images)
            return model.predict(base.predict(images, verbose=0), verbose=0)

        if heatmaps_dir is not None:
            from smallcnn import heatmaps

            cam = heatmaps.GradCam(model, heatmap_layer, base)
            files = heatmaps.HeatmapFiles(heatmaps_dir)

    rows, batch, batch_rows = [], [], []

    def flush():
        if not batch:
            return
        images = np.stack(batch).astype("float32")
        outputs = tta.predict(run, images, tta_views) if tta_views else run(images)
        probabilities = evaluation.class_probabilities(outputs)
        predicted = evaluation.predicted_classes(probabilities)
        for row, p, k in zip(batch_rows, probabilities, predicted, strict=True):
            row.update(predicted=class_names[k], probability=f"{p[k]:.6f}")
        if cam is not None:
            found = cam(images, classes=predicted)
            for row, image, heatmap in zip(batch_rows, images, found.maps, strict=True):
                row["heatmap"] = str(files.write(row["file"], image, heatmap))
        batch.clear()
        batch_rows.clear()

    for path in expand(paths):
        row = {"file": str(path), "predicted": "", "probability": "", "error": ""}
        if cam is not None:
            row["heatmap"] = ""
        rows.append(row)
        try:
            data, problem = check_file(path, min_side, max_image_pixels)
            if problem:
                row["error"] = _short(problem)
                continue
            image = datasets.decode_and_resize(data, image_size)
        except (tf.errors.OpError, OSError) as error:
            row["error"] = _short(getattr(error, "message", None) or str(error))
            continue
        batch.append(image.numpy())
        batch_rows.append(row)
        if len(batch) == BATCH_SIZE:
            flush()
    flush()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m smallcnn.predict", description="Classify images with a trained model."
    )
    parser.add_argument(
        "--model",
        required=True,
        help="a results/models/<experiment>/<seed>.keras file, or an export of one in "
        "results/export/<experiment>/<seed>/: the saved_model folder, model.onnx, model.tflite "
        "or model_int8.tflite (with the model.json beside it)",
    )
    parser.add_argument("--out", help="CSV file to write (default: standard output)")
    parser.add_argument(
        "--weights",
        help="for features.keras: the conv base weights file the features were extracted with",
    )
    parser.add_argument(
        "--min-side",
        type=int,
        default=MIN_SIDE,
        help=f"reject images with a shorter side, as data.min_side (default {MIN_SIDE})",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        help="reject images with more pixels, as data.max_image_pixels "
        f"(default {MAX_IMAGE_PIXELS:,})",
    )
    parser.add_argument(
        "--tta",
        type=int,
        default=0,
        metavar="N",
        help="average the probabilities over the first N fixed views (the image, its "
        "horizontal flip, 10%% zoom in, 10%% shifts left, right, up, down), as evaluation.tta "
        "does; 0 (the default) for none",
    )
    parser.add_argument(
        "--no-flip",
        action="store_true",
        help="leave the horizontal flip out of the views, as evaluation does when "
        "augmentation.horizontal_flip is false",
    )
    parser.add_argument(
        "--heatmaps",
        metavar="DIR",
        help="also write each classified image's class-activation map (Grad-CAM) of its "
        "predicted class to DIR: <stem>.png overlaid on the image, <stem>.npy the map (float32, "
        "0..1, the model's input size); the CSV gains a heatmap column",
    )
    parser.add_argument(
        "--heatmap-layer",
        help="the conv layer the maps are computed from (default: the model's last one)",
    )
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # TensorFlow's C++ start-up lines (CUDA, oneDNN, CPU features) are not this command's to
    # show: they are held, and shown only if it fails or dies.
    failure = None
    with native_output_held():
        try:
            views = tta.view_names(args.tta, horizontal_flip=not args.no_flip)
            rows = predict(
                args.model,
                args.paths,
                args.weights,
                args.min_side,
                args.max_image_pixels,
                tta_views=views,
                heatmaps_dir=args.heatmaps,
                heatmap_layer=args.heatmap_layer,
            )
        except (UserError, OSError, ValueError) as error:
            failure = error
    if failure:
        print(f"error: {redact(str(failure))}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w", newline="")) if args.out else sys.stdout
        columns = ["file", "predicted", "probability", "error"]
        writer = csv.DictWriter(stream, fieldnames=columns + (["heatmap"] if args.heatmaps else []))
        writer.writeheader()
        writer.writerows(rows)
    failed = sum(1 for row in rows if row["error"])
    print(f"classified {len(rows) - failed} of {len(rows)} files", file=sys.stderr)
    return 0 if len(rows) > failed else 1


if __name__ == "__main__":
    # An unexpected error's traceback may quote an address with its credentials.
    sys.excepthook = print_redacted
    sys.exit(main())
