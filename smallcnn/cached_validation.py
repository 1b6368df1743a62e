"""Validation on cached activations of a model's frozen layers (issue 13).

Validation images are never augmented and frozen layers never change, so what the frozen layers
make of the validation images is the same every epoch. Each epoch then needs only the rest of the
model: the trainable layers of the conv base and the head. The model is split where its frozen
layers end: `frozen` runs the frozen layers (images -> activations), `head` the rest (activations
-> the model's output) with the very layers, and so the weights, of the model being trained.

- A fully frozen base (kind `frozen`) validates on the features file that the features stage
  already wrote for the same base, weights, image size and precision.
- A cross-validation fold validates on its fold's rows of the train and validation splits'
  features files (a frozen base), or its fold's images (a partly frozen base).
- A partly frozen base (kind `finetuned`) runs its frozen layers over the validation images once
  per job and validates on those activations every epoch.

The activations are read back batch by batch, and loaded whole only below a memory bound. A
callback puts `val_*` into each epoch's logs, as fit's own validation would.
"""

import dataclasses
import logging
import math
import time
from pathlib import Path

import keras
import tensorflow as tf

from smallcnn import datasets, feature_file, folds, models, registry

log = logging.getLogger(__name__)

# Cached activations up to this size are held in memory; larger ones are read from HDF5 batch by
# batch every epoch (1,000 VGG16 block4_pool activations at 150x150 are 166 MB).
MEMORY_BOUND_BYTES = 512 * 1024**2
# What is allowed before the conv base in the model: the input and augmentation, which does
# nothing to validation images.
_BEFORE_BASE = (keras.layers.InputLayer, models.RandomAffine)


@dataclasses.dataclass
class Split:
    frozen: keras.Model  # images -> the cached activations (one output per cached tensor)
    head: keras.Model  # cached activations -> the model's output, sharing the model's layers
    layers: list  # names of the layers whose outputs are cached, in `head`'s input order
    whole_base: bool  # whether every layer of the conv base is frozen


def _boundary(base, start):
    """Tensors of base.layers[:start] that the later layers or the base's output read."""
    frozen = {id(layer) for layer in base.layers[:start]}
    consumed = [t for layer in base.layers[start:] for t in keras.tree.flatten(layer.input)]
    tensors = []
    for tensor in consumed + list(base.outputs):
        producer = tensor._keras_history.operation
        if id(producer) in frozen and all(tensor is not t for t in tensors):
            tensors.append(tensor)
    return tensors


def split_at_frozen(model):
    """(Split, None) for a model with a frozen conv base (or frozen first layers of it), else
    (None, why no cache can apply)."""
    try:
        base = models.conv_base_of(model)
    except Exception:  # noqa: BLE001  (models.conv_base_of raises UserError; any model may come)
        return None, "the model has no conv base"
    position = model.layers.index(base)
    before = model.layers[:position]
    if not all(isinstance(layer, _BEFORE_BASE) for layer in before):
        names = ", ".join(layer.name for layer in before)
        return None, f"layers before the conv base ({names}) may change validation images"
    start = next((k for k, layer in enumerate(base.layers) if layer.trainable), len(base.layers))
    if not base.trainable:
        start = len(base.layers)
    tensors = _boundary(base, start)
    if all(isinstance(t._keras_history.operation, keras.layers.InputLayer) for t in tensors):
        return None, f"{base.name} is unfrozen from its first layer: no frozen layer to cache"
    whole = start == len(base.layers)
    frozen = base if whole else keras.Model(base.inputs, tensors, name="frozen_layers")
    inputs = [
        keras.Input(shape=t.shape[1:], dtype="float32", name=f"cached_{k}")
        for k, t in enumerate(tensors)
    ]
    x = inputs[0] if len(inputs) == 1 else inputs
    if not whole:
        cut = tensors[0] if len(tensors) == 1 else tensors
        tail = keras.Model(cut, base.output, name="trainable_layers")
        x = tail(x, training=False)
    for layer in model.layers[position + 1 :]:
        x = layer(x)
    head = keras.Model(inputs, x, name="cached_head")
    head.compile_from_config(model.get_compile_config())
    names = [t._keras_history.operation.name for t in tensors]
    return Split(frozen=frozen, head=head, layers=names, whole_base=whole), None


class Activations:
    """(activations, labels) batches of a cache file, in file order, and as a tf.data pipeline.

    Loaded whole when the activations fit `memory_bound` bytes, else read slice by slice from the
    open file every epoch, so that memory stays at one batch whatever the split's size (the file
    stays open as long as the object lives: fit may be called again, as the benchmark does).
    """

    def __init__(self, path, batch_size, count, memory_bound=MEMORY_BOUND_BYTES):
        self.batch_size = batch_size
        self._file, sets, self.labels = feature_file.open_outputs(path, count)
        size = sum(s.size * s.dtype.itemsize for s in sets)
        self.in_memory = size <= memory_bound
        self.arrays = [s[...] for s in sets] if self.in_memory else sets
        if self.in_memory:
            self.close()
        self.dataset = self._dataset()

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        x = [a[rows] for a in self.arrays]
        return (x[0] if len(x) == 1 else tuple(x)), self.labels[rows]

    def _dataset(self):
        x = [tf.TensorSpec((None, *a.shape[1:]), tf.float32) for a in self.arrays]
        spec = (x[0] if len(x) == 1 else tuple(x), tf.TensorSpec((None,), tf.int32))
        if self.in_memory:
            arrays = self.arrays[0] if len(self.arrays) == 1 else tuple(self.arrays)
            slices = tf.data.Dataset.from_tensor_slices((arrays, self.labels))
            return slices.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        batches = tf.data.Dataset.from_generator(
            lambda: (self[k] for k in range(len(self))), output_signature=spec
        )
        # One batch read ahead while the previous one runs.
        return batches.prefetch(1)

    def close(self):
        self._file.close()


class CachedValidation(keras.callbacks.Callback):
    """Puts val_loss, val_accuracy (and any other compiled metric) of `head` on the cached
    activations into each epoch's logs. Must come before every callback that reads them."""

    def __init__(self, head, batches):
        super().__init__()
        self.head = head
        self.batches = batches

    def on_epoch_end(self, epoch, logs=None):
        started = time.perf_counter()
        results = self.head.evaluate(self.batches.dataset, verbose=0, return_dict=True)
        for key, value in results.items():
            logs[f"val_{key}"] = float(value)
        figures = " - ".join(f"val_{key}: {value:.4f}" for key, value in results.items())
        log.info(
            "epoch %d: %s (cached validation, %.1f s)",
            epoch + 1,
            figures,
            time.perf_counter() - started,
        )


@dataclasses.dataclass
class Validation:
    """What model.fit takes: `data` as validation_data (None when cached), `callbacks` first."""

    data: object
    callbacks: list


def _fold_features(settings, inputs, expected, class_names, cache_dir):
    """(a features file of the fold's validation images, None), else (None, why not): their rows
    of the train and validation splits' features files (the DAG gives both; each must hold what
    the model's frozen base makes of its split), written once per job into `cache_dir`. Its
    `files` are the split copy paths of the folds file."""
    if not inputs.get("train_features"):
        return None, "no features file of the train split is an input"
    sources = {"train": inputs["train_features"], "validation": inputs["validation_features"]}
    for split, path in sources.items():
        files = datasets.list_images(inputs[split], class_names)[0]
        why = feature_file.mismatch(path, expected, files)
        if why:
            return None, why
    _, _, paths = datasets.fold_partition(settings, inputs)
    sets = {split: feature_file.read(path) for split, path in sources.items()}
    selected, labels = folds.select_rows(sets, paths)
    out = Path(cache_dir) / "fold-validation-features.h5"
    feature_file.write_rows(out, selected, labels, paths, sets["validation"].attrs)
    return out, None


def _features_file(settings, inputs, expected, class_names, cache_dir):
    """(the features file of the validation split, None) when it holds exactly what the model's
    frozen base makes of those images (`expected`: its run attributes), else (None, why not).
    A cross-validation fold's validation rows come from the train and validation files."""
    path = inputs.get("validation_features")
    if not path:
        return None, "no features file of the validation split is an input"
    if expected["weights_sha256"] in (None, "none"):
        # Random weights are drawn per seed: another draw than the features stage's.
        return None, "the conv base has random weights"
    if "fold" in settings:
        return _fold_features(settings, inputs, expected, class_names, cache_dir)
    files = datasets.list_images(inputs["validation"], class_names)[0]
    why = feature_file.mismatch(path, expected, files)
    return (None, why) if why else (path, None)


def setup(model, settings, inputs, validation, cache_dir, runtime):
    """The validation of one training job: cached when the model's frozen layers allow it.

    `inputs`: the job's inputs (`validation`: the split folder; `validation_features`: the
    features file of a frozen base, when the DAG provides it); `validation`: fit's end-to-end
    validation data, used when no cache applies; `cache_dir`: a folder that lives as long as the
    job. Every case where the cache does not apply is logged with its reason.
    """
    name = f"{settings['experiment']}/{settings['seed']}"
    if "fold" in settings:
        name += f"/fold{settings['fold']}"
    if not registry.KINDS[settings["kind"]].runs_base_on_images:
        return Validation(validation, [])
    if not settings["cache_frozen"]:
        log.info("%s: cache_frozen is off: validating end to end", name)
        return Validation(validation, [])
    split, why = split_at_frozen(model)
    if split is None:
        log.info("%s: no cached validation (%s): validating end to end", name, why)
        return Validation(validation, [])
    image_size = tuple(settings["image_size"])
    batch_size = settings["batch_size"]
    class_names, info = models.model_info(model)
    info = info or {}
    base_name = settings["conv_base"]["name"]
    weights = {"source": info.get("weights"), "sha256": info.get("weights_sha256")}
    path = None
    if split.whole_base:
        expected = feature_file.run_attrs(base_name, weights, image_size, split.layers[0], runtime)
        expected["class_names"] = list(class_names)
        path, why = _features_file(settings, inputs, expected, class_names, cache_dir)
        if why:
            log.info("%s: %s: computing the frozen base's outputs once instead", name, why)
        source = "the features stage"
    if path is None:
        started = time.perf_counter()
        path = Path(cache_dir) / "validation-activations.h5"
        if "fold" in settings:
            images = datasets.fold_validation_images(settings, inputs, class_names)
        else:
            images = datasets.load_images(
                inputs["validation"], image_size, batch_size, class_names=class_names
            )
        attrs = feature_file.run_attrs(
            base_name,
            {key: "unknown" if value is None else value for key, value in weights.items()},
            image_size,
            split.layers,
            runtime,
            unfreeze_from=settings["conv_base"].get("unfreeze_from") or "",
        )
        feature_file.write(split.frozen, images, batch_size, path, attrs)
        source = f"computed once in {time.perf_counter() - started:.1f} s"
    batches = Activations(path, batch_size, len(split.layers))
    log.info(
        "%s: validating on cached outputs of %s (%s; %s)",
        name,
        ", ".join(split.layers),
        source,
        "in memory" if batches.in_memory else "streamed from HDF5",
    )
    return Validation(None, [CachedValidation(split.head, batches)])
