"""Test-time augmentation: a model's probabilities averaged over fixed views of each image.

The views are fixed, not random, so that a result can be reproduced image by image: the image
itself, its horizontal flip (only where training flipped images), a 10% zoom in and 10% shifts
left, right, up and down. No rotation. Evaluation and `predict --tta` both call `predict`
here, so the same file gets the same probabilities from both.
"""

import logging
import time

import numpy as np

from smallcnn import metrics
from smallcnn.errors import UserError

log = logging.getLogger(__name__)

VIEWS = (
    "identity",
    "horizontal_flip",
    "zoom_in",
    "shift_left",
    "shift_right",
    "shift_up",
    "shift_down",
)
# Fractions of the image size.
ZOOM = 0.1
SHIFT = 0.1


def view_names(n, horizontal_flip=True):
    """The first `n` views, without the flip when training did not flip (`horizontal_flip`)."""
    available = [name for name in VIEWS if horizontal_flip or name != "horizontal_flip"]
    if not 0 <= n <= len(available):
        raise UserError(
            f"test-time augmentation takes 0 to {len(available)} views "
            f"({', '.join(available)}), not {n}"
        )
    return available[:n]


def probability_columns(class_names):
    """The predictions CSV's column of each class's probability with TTA, in class order."""
    return [f"tta_{column}" for column in metrics.probability_columns(class_names)]


def _affine(name, width, height):
    """(shift_x, shift_y, zoom) of a zoom or shift view, in the terms of models.affine_transforms:
    an output pixel reads the input pixel `shift` away, so a positive shift_x moves the picture
    left, and a zoom below 1 magnifies it."""
    return {
        "zoom_in": (0.0, 0.0, 1.0 - ZOOM),
        "shift_left": (SHIFT * width, 0.0, 1.0),
        "shift_right": (-SHIFT * width, 0.0, 1.0),
        "shift_up": (0.0, SHIFT * height, 1.0),
        "shift_down": (0.0, -SHIFT * height, 1.0),
    }[name]


def views(images, names):
    """Float images (batch, height, width, 3) in 0..255 as one array per view, in `names` order.

    Zoom and shifts resample bilinearly about the image centre and fill the border with its
    nearest pixel, as the training augmentation does (smallcnn.models.RandomAffine).
    """
    import keras

    from smallcnn.models import affine_transforms

    images = np.asarray(images, dtype="float32")
    batch, height, width = images.shape[:3]
    result = []
    for name in names:
        if name == "identity":
            result.append(images)
        elif name == "horizontal_flip":
            result.append(images[:, :, ::-1])
        else:
            shift_x, shift_y, zoom = _affine(name, width, height)
            ones = np.ones(batch, dtype="float32")
            transforms = affine_transforms(
                theta=0 * ones,
                shift_x=shift_x * ones,
                shift_y=shift_y * ones,
                shear=0 * ones,
                zoom_x=zoom * ones,
                zoom_y=zoom * ones,
                flip=ones,
                height=float(height),
                width=float(width),
            )
            resampled = keras.ops.image.affine_transform(
                images, transforms, interpolation="bilinear", fill_mode="nearest"
            )
            result.append(keras.ops.convert_to_numpy(resampled))
    return result


def predict(run, images, names):
    """The mean over the views `names` of `run` (float images -> model outputs, which are
    probabilities: a sigmoid's or a softmax's) on `images`, in one call of `run`."""
    images = np.asarray(images, dtype="float32")
    if not names:
        raise ValueError("test-time augmentation needs at least one view")
    outputs = np.asarray(run(np.concatenate(views(images, names))), dtype="float64")
    return outputs.reshape(len(names), len(images), *outputs.shape[1:]).mean(axis=0)


def timed_outputs(run, batches, names):
    """(plain outputs, TTA outputs, plain seconds, TTA seconds) of `run` over `batches` of float
    images. Both are timed on the same batches, after one untimed pass over the first batch that
    lets TensorFlow build its graphs for both batch shapes."""
    plain, averaged = [], []
    plain_seconds = tta_seconds = 0.0
    for index, images in enumerate(batches):
        images = np.asarray(images, dtype="float32")
        if index == 0:
            run(images)
            predict(run, images, names)
        started = time.perf_counter()
        plain.append(np.asarray(run(images)))
        middle = time.perf_counter()
        averaged.append(predict(run, images, names))
        tta_seconds += time.perf_counter() - middle
        plain_seconds += middle - started
    return np.concatenate(plain), np.concatenate(averaged), plain_seconds, tta_seconds


def figures(labels, plain_probabilities, tta_probabilities, class_names, names, seconds):
    """The tta_* entries of a metrics file: the same figures as without TTA, the images only
    one of the two got right (McNemar's discordant pairs), and the inference-time multiplier.

    `seconds`: (plain, TTA) inference seconds over the test split.
    """
    from smallcnn.evaluation import cross_entropy

    labels = np.asarray(labels, dtype=int)
    plain_correct = metrics.predicted_classes(plain_probabilities) == labels
    predicted = metrics.predicted_classes(tta_probabilities)
    correct = predicted == labels
    scores = tta_probabilities[:, 1] if len(class_names) == 2 else tta_probabilities
    per_class = metrics.class_metrics(labels, predicted, tta_probabilities, class_names)
    plain_seconds, tta_seconds = seconds
    return {
        "tta_views": list(names),
        "tta_test_accuracy": float(correct.mean()),
        "tta_test_loss": cross_entropy(labels, tta_probabilities),
        "tta_roc_auc": metrics.roc_auc(labels, scores),
        "tta_balanced_accuracy": per_class["balanced_accuracy"],
        "tta_macro_f1": per_class["macro_f1"],
        "tta_only_right": int(np.sum(correct & ~plain_correct)),
        "plain_only_right": int(np.sum(plain_correct & ~correct)),
        "plain_inference_seconds": plain_seconds,
        "tta_inference_seconds": tta_seconds,
        "tta_time_ratio": tta_seconds / plain_seconds if plain_seconds > 0 else None,
    }
