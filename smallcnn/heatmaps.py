"""Class-activation heatmaps (Grad-CAM, Selvaraju et al. 2017; DLwP section 5.4) for every kind of
model the pipeline saves.

The map of class c is ReLU(sum_k a_k A_k), where A_k are the channels of a conv layer's output
and a_k the spatial mean of the gradient of c's score with respect to A_k. The score is the
output layer's pre-activation (the logit): with one sigmoid output, class 1 scores the logit z and
class 0 scores -z, so the negative class gets its own evidence, never an inverted map.

The layer is found by itself: the last layer whose output is still a spatial map (4-D), pooling
excluded, searched through nested conv bases (frozen and finetuned models keep VGG16 or
MobileNetV2 as one nested layer, which is where `keras.Model(model.inputs, inner.output)`
fails with "Graph disconnected"). Instead of one such model, the saved model's layers are run
one after the other (every model here is a chain), and the nested base is split into a model
that returns both the chosen layer's output and its own. A features classifier gets the conv
base its features came from in front of it: Grad-CAM of the base + head composition.
"""

import dataclasses
import logging
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from smallcnn import models
from smallcnn.errors import UserError
from smallcnn.evaluation import predicted_classes

log = logging.getLogger(__name__)

# Layers that shrink a map without computing new evidence from it: the map before them is the
# same evidence at a finer resolution.
_NOT_EVIDENCE = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.Rescaling,
    keras.layers.InputLayer,
    models.ImagePreprocessing,
    models.RandomAffine,
)
# The overlay: the map's colour over the image at this opacity.
OVERLAY_ALPHA = 0.4
OVERLAY_COLOURMAP = "jet"


@dataclasses.dataclass
class Heatmaps:
    """Maps of a batch: `maps` (n, height, width) float32 in 0..1 at the model's input size;
    `scaled` False where a map had no positive evidence (then it is all zeros, left unscaled);
    `classes` the class each map is for; `probabilities` (n, n_classes) of the model."""

    maps: np.ndarray
    scaled: np.ndarray
    classes: np.ndarray
    probabilities: np.ndarray
    layer: str


def _is_spatial(layer):
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    return len(shape) == 4 and not isinstance(layer, _NOT_EVIDENCE + (keras.Model,))


def _chain(model, base):
    """The layers that compute `model`'s output from an image, in order: a features classifier
    gets `base` in front of its own layers; augmentation (inactive at inference) is left out."""
    layers = [base] if base is not None else []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer | models.RandomAffine):
            continue
        layers.append(layer)
    return layers


def spatial_layers(model, base=None):
    """[(owner, layer)] of every layer with a spatial output, in the order they run: `owner` is
    the nested model holding `layer`, or None for a layer of the chain itself."""
    found = []
    for layer in _chain(model, base):
        if isinstance(layer, keras.Model):
            found += [(layer, inner) for inner in layer.layers if _is_spatial(inner)]
        elif _is_spatial(layer):
            found.append((None, layer))
    return found


def find_layer(model, name=None, base=None):
    """(owner, layer) Grad-CAM uses: the layer named `name`, or the last spatial layer."""
    candidates = spatial_layers(model, base)
    if not candidates:
        raise UserError(
            f"model {model.name!r} has no convolutional layer to compute a heatmap from"
            + ("" if base is not None else " (a features classifier needs its conv base)")
        )
    if name is None:
        return candidates[-1]
    for owner, layer in candidates:
        if layer.name == name:
            return owner, layer
    names = ", ".join(layer.name for _, layer in candidates[-8:])
    raise UserError(
        f"the heatmap layer {name!r} is not a convolutional layer of model "
        f"{model.name!r}; its last ones are {names}"
    )


def _output_layer(chain):
    """The last Dense layer: Grad-CAM differentiates its pre-activation (the logits)."""
    for layer in reversed(chain):
        if isinstance(layer, keras.layers.Dense):
            return layer
    raise UserError("the model has no Dense output layer to compute class scores from")


class GradCam:
    """Grad-CAM of a saved model; `base` is the conv base in front of a features classifier."""

    def __init__(self, model, layer=None, base=None):
        self.model = model
        self.chain = _chain(model, base)
        self.owner, self.layer = find_layer(model, layer, base)
        self.output = _output_layer(self.chain)
        self.n_classes = int(self.output.units)
        first = base if base is not None else model
        self.input_size = tuple(int(side) for side in first.input_shape[1:3])
        self.split = None
        if self.owner is not None:
            # The nested base, returning the chosen layer's output beside its own.
            self.split = keras.Model(
                self.owner.inputs, [self.layer.output, self.owner.output], name="gradcam_split"
            )
        # Traced once a call has several batches; one batch runs eagerly, which takes a third
        # of the time that tracing would (MobileNetV2: 3 s against 10 s).
        self._traced = (
            tf.function(self._maps, reduce_retracing=True),
            tf.function(self._probabilities, reduce_retracing=True),
        )

    @property
    def layer_name(self):
        return f"{self.owner.name}/{self.layer.name}" if self.owner is not None else self.layer.name

    def _forward(self, images):
        """(the chosen layer's output, the logits) of a batch of images in 0..255."""
        x, spatial = images, None
        for layer in self.chain:
            if layer is self.owner:
                spatial, x = self.split([x], training=False)
            elif layer is self.output:
                # float32, as the output layer computes under mixed precision.
                x = keras.ops.matmul(keras.ops.cast(x, "float32"), layer.kernel) + layer.bias
                return spatial, x
            else:
                x = layer(x, training=False)
                if layer is self.layer:
                    spatial = x
        raise AssertionError("the output layer is part of the chain")

    def _as_probabilities(self, logits):
        if self.n_classes == 1:
            probabilities = tf.sigmoid(logits)
            return tf.concat([1.0 - probabilities, probabilities], axis=1)
        return tf.nn.softmax(logits, axis=1)

    def _probabilities(self, images):
        return self._as_probabilities(self._forward(images)[1])

    def _maps(self, images, classes):
        with tf.GradientTape() as tape:
            spatial, logits = self._forward(images)
            if self.n_classes == 1:
                # Class 1 is evidence for the logit, class 0 for its negative.
                sign = tf.where(classes == 1, 1.0, -1.0)
                scores = sign * logits[:, 0]
            else:
                scores = tf.gather(logits, classes, axis=1, batch_dims=1)
        gradients = tf.cast(tape.gradient(scores, spatial), tf.float32)
        spatial = tf.cast(spatial, tf.float32)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(weights * spatial, axis=-1))
        cams = tf.where(tf.math.is_finite(cams), cams, 0.0)
        cams = tf.image.resize(cams[..., None], self.input_size, method="bilinear")[..., 0]
        return cams, self._as_probabilities(logits)

    def __call__(self, images, classes=None, batch_size=32):
        """Heatmaps of `images` (n, height, width, 3) in 0..255 for `classes` (default: the
        predicted class of each image), computed `batch_size` images at a time."""
        images = np.asarray(images, dtype="float32")
        if images.ndim != 4 or tuple(images.shape[1:3]) != self.input_size:
            raise UserError(
                f"heatmaps need images of {self.input_size[0]}x{self.input_size[1]}x3, "
                f"got an array of shape {images.shape}"
            )
        compute, predict = (
            self._traced if len(images) > batch_size else (self._maps, self._probabilities)
        )
        maps, probabilities, chosen = [], [], []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            if classes is None:
                wanted = predicted_classes(np.asarray(predict(batch), dtype=np.float64))
            else:
                wanted = np.asarray(classes[start : start + batch_size], dtype="int32")
            cams, batch_probabilities = compute(batch, wanted.astype("int32"))
            maps.append(np.asarray(cams, dtype=np.float32))
            probabilities.append(np.asarray(batch_probabilities, dtype=np.float64))
            chosen.append(np.asarray(wanted, dtype=int))
        if not maps:
            height, width = self.input_size
            return Heatmaps(
                np.zeros((0, height, width), "float32"),
                np.zeros(0, bool),
                np.zeros(0, int),
                np.zeros((0, max(2, self.n_classes))),
                self.layer_name,
            )
        maps = np.concatenate(maps)
        peaks = maps.reshape(len(maps), -1).max(axis=1)
        scaled = peaks > 0
        maps[scaled] /= peaks[scaled, None, None]
        maps[~scaled] = 0.0
        return Heatmaps(
            np.clip(maps, 0.0, 1.0).astype("float32"),
            scaled,
            np.concatenate(chosen),
            np.concatenate(probabilities),
            self.layer_name,
        )


def overlay(image, heatmap, alpha=OVERLAY_ALPHA):
    """The image (uint8, height x width x 3) with the map (0..1, same size) coloured over it."""
    import matplotlib

    colours = matplotlib.colormaps[OVERLAY_COLOURMAP](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255
    blended = (1 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype("uint8")


def mass_inside(heatmap, box):
    """Share of the map's total in `box` (top, left, bottom, right; bottom and right exclusive),
    clipped to the map; 0 for an all-zero map."""
    top, left, bottom, right = box
    height, width = heatmap.shape
    inside = heatmap[max(0, top) : min(height, bottom), max(0, left) : min(width, right)].sum()
    total = heatmap.sum()
    return float(inside / total) if total > 0 else 0.0


class HeatmapFiles:
    """Writes `<stem>.png` (the image with its map overlaid) and `<stem>.npy` (the map) per
    image into one folder; a stem already written gets a number (`cat.png`, `cat-2.png`), so
    that photos of the same name in two folders keep both maps."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.used = set()

    def stem(self, source):
        base = Path(source).stem or "image"
        stem, number = base, 1
        while stem in self.used:
            number += 1
            stem = f"{base}-{number}"
        self.used.add(stem)
        return stem

    def write(self, source, image, heatmap):
        """The PNG's path; the image (uint8 or 0..255 floats) and its map at the same size."""
        from PIL import Image

        stem = self.stem(source)
        pixels = np.clip(np.rint(image), 0, 255).astype("uint8")
        png = self.directory / f"{stem}.png"
        Image.fromarray(overlay(pixels, heatmap)).save(png)
        np.save(self.directory / f"{stem}.npy", np.asarray(heatmap, dtype=np.float32))
        return png
