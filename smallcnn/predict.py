"""Classify new images with any trained model.

    python -m smallcnn.predict --model results/models/finetuned/1337.keras [--out preds.csv] \
        IMAGE_OR_DIR...

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

from smallcnn import datasets, images
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


def predict(model_path, paths, weights=None, min_side=MIN_SIDE, max_image_pixels=MAX_IMAGE_PIXELS):
    """Rows {file, predicted, probability, error} for every file of `paths`; a file outside
    the bounds of the data stage (`min_side`, `max_image_pixels`) gets an error row."""
    # Imported here, not at the top: main holds what TensorFlow's import writes to the terminal.
    import keras
    import tensorflow as tf

    from smallcnn import evaluation, models

    model = keras.saving.load_model(model_path, compile=False)
    class_names, conv_base = models.model_info(model)
    base = None
    if model.input_shape[-1] == 3 and len(model.input_shape) == 4:
        image_size = tuple(model.input_shape[1:3])
    else:
        base, image_size = _feature_base(conv_base, weights)

    rows, batch, batch_rows = [], [], []

    def flush():
        if not batch:
            return
        images = np.stack(batch).astype("float32")
        inputs = base.predict(images, verbose=0) if base is not None else images
        probabilities = evaluation.class_probabilities(model.predict(inputs, verbose=0))
        for row, p, k in zip(
            batch_rows, probabilities, evaluation.predicted_classes(probabilities), strict=True
        ):
            row.update(predicted=class_names[k], probability=f"{p[k]:.6f}")
        batch.clear()
        batch_rows.clear()

    for path in expand(paths):
        row = {"file": str(path), "predicted": "", "probability": "", "error": ""}
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
        "--model", required=True, help="a results/models/<experiment>/<seed>.keras file"
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
    parser.add_argument("paths", nargs="+", metavar="IMAGE_OR_DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # TensorFlow's C++ start-up lines (CUDA, oneDNN, CPU features) are not this command's to
    # show: they are held, and shown only if it fails or dies.
    failure = None
    with native_output_held():
        try:
            rows = predict(
                args.model, args.paths, args.weights, args.min_side, args.max_image_pixels
            )
        except (UserError, OSError, ValueError) as error:
            failure = error
    if failure:
        print(f"error: {redact(str(failure))}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(open(args.out, "w", newline="")) if args.out else sys.stdout
        writer = csv.DictWriter(stream, fieldnames=["file", "predicted", "probability", "error"])
        writer.writeheader()
        writer.writerows(rows)
    failed = sum(1 for row in rows if row["error"])
    print(f"classified {len(rows) - failed} of {len(rows)} files", file=sys.stderr)
    return 0 if len(rows) > failed else 1


if __name__ == "__main__":
    # An unexpected error's traceback may quote an address with its credentials.
    sys.excepthook = print_redacted
    sys.exit(main())
