"""The chapter's monitoring of a training run: TensorBoard (the model's graph, weight and
activation histograms, gradient norms, the embedding projector) and a learning-rate schedule.

Everything is written under the run's TensorBoard log dir, which lives in the backup while the
model trains and is published with it (smallcnn.training):

- `train/`, `validation/`: Keras' TensorBoard callback (scalars, weight histograms every
  `histogram_freq` epochs, the model's config as its conceptual graph) and, from Diagnostics,
  the op graph of the model's forward pass (Keras 3's callback writes none: its hook reads
  attributes of TF 2's Keras that its train function does not have);
- `diagnostics/`: histograms of each conv block's output and the gradient norm of each layer's
  weights, on one fixed validation batch, every `histogram_freq` epochs;
- `projector/`: the test images' penultimate-layer outputs of the kept model, with
  metadata.tsv (file, label, predicted) and a sprite image, for TensorBoard's projector.
"""

import csv
import logging
import math
import re
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from smallcnn import datasets, evaluation, feature_file, models, monitor_config, registry
from smallcnn.errors import UserError

log = logging.getLogger(__name__)

PROJECTOR_DIR = "projector"
DIAGNOSTICS_DIR = "diagnostics"
# The projector's sprite: at most this many pixels a side per image, and 8192 in all (its limit).
SPRITE_IMAGE = 64
SPRITE_SIDE = 8192


# -- The learning-rate schedule ------------------------------------------------------------------


def schedule_callback(settings):
    """keras.callbacks.LearningRateScheduler following the experiment's schedule, or None.

    It sets the rate at the start of every epoch from the epoch number alone, so a resumed run
    (fit's initial_epoch) continues the schedule where it stopped."""
    schedule = monitor_config.check_schedule(settings.get("callbacks") or {}, settings["epochs"])
    if schedule["kind"] == "none":
        return None
    base, epochs = settings["learning_rate"], settings["epochs"]
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, rate: monitor_config.learning_rate(epoch, base, schedule, epochs)
    )


# -- TensorBoard ---------------------------------------------------------------------------------


def block_of(name):
    """The conv block a layer belongs to, by the architectures' own naming, or None: VGG16's
    block1_conv1, MobileNetV2's block_1_expand, ResNet50's conv2_block1_out, EfficientNet's
    block1a_project_bn; the scratch convnet's conv1 and pool1 are its block1."""
    found = re.match(r"^(.*?block_?\d+[a-z]?)_", name)
    if found:
        return found.group(1)
    found = re.fullmatch(r"(?:conv|pool)(\d+)", name)
    return f"block{found.group(1)}" if found else None


def block_outputs(model):
    """(the model computing them, [(block name, layer)]): each conv block's last layer, in the
    model itself or in its nested conv base."""
    try:
        owner = models.conv_base_of(model)
    except UserError:
        owner = model
    blocks = {}
    for layer in owner.layers:
        block = block_of(layer.name)
        if block is not None and len(layer.output.shape) == 4:
            blocks[block] = layer
    return owner, list(blocks.items())


class Diagnostics(keras.callbacks.Callback):
    """Writes the forward pass's graph once, and every `every` epochs the histograms of each conv
    block's output and the norm of each layer's weight gradients on one fixed validation batch.

    `batch`: (inputs, labels) of a model with `n_classes` outputs.
    """

    def __init__(self, log_dir, batch, n_classes, every):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.inputs, self.labels = batch
        # The loss the model is trained with (smallcnn.training.compile_model).
        self.loss = (
            keras.losses.BinaryCrossentropy()
            if n_classes == 2
            else keras.losses.SparseCategoricalCrossentropy()
        )
        self.every = every
        self._writer = None

    def writer(self):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.log_dir / DIAGNOSTICS_DIR))
        return self._writer

    def on_train_begin(self, logs=None):
        model = self.model
        forward = tf.function(lambda x: model(x, training=False))
        spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
        graph = forward.get_concrete_function(spec).graph
        with tf.summary.create_file_writer(str(self.log_dir / "train")).as_default():
            tf.summary.graph(graph)
        owner, blocks = block_outputs(model)
        self.blocks = [name for name, _ in blocks]
        self.activations = None
        if blocks:
            self.activations = keras.Model(
                owner.inputs, [layer.output for _, layer in blocks], name="block_outputs"
            )

    def on_epoch_end(self, epoch, logs=None):
        if self.every and epoch % self.every == 0:
            self.write(epoch)

    def write(self, epoch):
        model = self.model
        with tf.GradientTape() as tape:
            predictions = model(self.inputs, training=False)
            loss = self.loss(self.labels, predictions)
        gradients = tape.gradient(loss, model.trainable_weights)
        norms = {}
        for weight, gradient in zip(model.trainable_weights, gradients, strict=True):
            if gradient is not None:
                layer = weight.path.rsplit("/", 1)[0]
                squared = tf.reduce_sum(tf.square(tf.cast(gradient, tf.float32)))
                norms[layer] = norms.get(layer, 0.0) + float(squared)
        with self.writer().as_default(step=epoch):
            for layer, squared in norms.items():
                tf.summary.scalar(f"gradient_norm/{layer}", math.sqrt(squared))
            if self.activations is not None:
                outputs = self.activations([self.inputs], training=False)
                for name, output in zip(self.blocks, keras.tree.flatten(outputs), strict=True):
                    tf.summary.histogram(f"activations/{name}", tf.cast(output, tf.float32))
            else:
                # A features classifier: its input is the conv base's last block's output.
                tf.summary.histogram("activations/features", tf.cast(self.inputs, tf.float32))
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


def callbacks(settings, log_dir, batch, n_classes):
    """The TensorBoard callbacks of `settings['callbacks']['tensorboard']`; `batch`: the fixed
    validation batch of the diagnostics."""
    config = monitor_config.tensorboard(settings)
    if not config["enabled"]:
        return []
    return [
        keras.callbacks.TensorBoard(
            str(log_dir),
            histogram_freq=config["histogram_freq"],
            write_graph=True,
            profile_batch=0,
        ),
        Diagnostics(log_dir, batch, n_classes, config["histogram_freq"]),
    ]


def sprite(images, size):
    """The images (n, h, w, 3, uint8) as one square grid of size x size cells, row by row."""
    from PIL import Image

    columns = max(1, math.ceil(math.sqrt(len(images))))
    sheet = Image.new("RGB", (columns * size, columns * size))
    for index, pixels in enumerate(images):
        cell = Image.fromarray(pixels).resize((size, size), Image.BILINEAR)
        sheet.paste(cell, ((index % columns) * size, (index // columns) * size))
    return sheet


def write_projector(model_path, test, log_dir, image_size, batch_size, test_images=None):
    """Write `log_dir`/projector/: the test set's penultimate-layer outputs of the model at
    `model_path` (embeddings.tsv), metadata.tsv (file, label, predicted), sprite.png and the
    projector_config.pbtxt that names them, plus an event file that makes the folder a run
    TensorBoard lists. `test`: the test split folder, or the test features (.h5) of a features
    model, whose images are then read from `test_images` for the sprite."""
    from tensorboard.plugins import projector

    model = keras.saving.load_model(model_path, compile=False)
    class_names, _ = models.model_info(model)
    if str(test).endswith(".h5"):
        stored = feature_file.read(test)
        inputs, files, labels = stored.features, stored.files, stored.labels
        images_dir = Path(test_images) if test_images else None
    else:
        image_set = datasets.load_images(test, image_size, batch_size, class_names=class_names)
        inputs, files, labels = image_set.dataset, image_set.files, image_set.labels
        images_dir = Path(test)
    embedding, outputs = keras.Model(
        model.inputs, [model.get_layer("output").input, model.output]
    ).predict(inputs, batch_size=batch_size, verbose=0)
    predicted = evaluation.predicted_classes(evaluation.class_probabilities(outputs))
    out = Path(log_dir) / PROJECTOR_DIR
    out.mkdir(parents=True, exist_ok=True)
    embedding = np.asarray(embedding, dtype=np.float32).reshape(len(files), -1)
    np.savetxt(out / "embeddings.tsv", embedding, delimiter="\t", fmt="%.6g")
    with open(out / "metadata.tsv", "w", newline="") as stream:
        writer = csv.writer(stream, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "label", "predicted"])
        for file, label, guess in zip(files, labels, predicted, strict=True):
            writer.writerow([file, class_names[label], class_names[guess]])
    config = projector.ProjectorConfig()
    entry = config.embeddings.add()
    entry.tensor_name = "penultimate"
    entry.tensor_path = "embeddings.tsv"
    entry.metadata_path = "metadata.tsv"
    if images_dir is not None and images_dir.is_dir():
        size = min(SPRITE_IMAGE, SPRITE_SIDE // max(1, math.ceil(math.sqrt(len(files)))))
        pixels = [
            datasets.decode_and_resize((images_dir / file).read_bytes(), (size, size)).numpy()
            for file in files
        ]
        sprite(pixels, size).save(out / "sprite.png")
        entry.sprite.image_path = "sprite.png"
        entry.sprite.single_image_dim.extend([size, size])
    projector.visualize_embeddings(str(out), config)
    with tf.summary.create_file_writer(str(out)).as_default():
        tf.summary.text(
            "projector",
            f"{len(files)} test images: the {embedding.shape[1]} outputs of the layer before the "
            "output of the kept model; open the Projector tab.",
            step=0,
        )
    log.info("projector: %d test images, %d dimensions, in %s", *embedding.shape, out)
    return out


def fixed_batch(settings, inputs, data):
    """The diagnostics' validation batch: the first batch of the validation split, or with a
    cross-validation fold of the fold's own validation images. Images are read apart from the
    training pipeline, whose cache a partial read would leave unfinished."""
    if registry.KINDS[settings["kind"]].trains_on_features:
        return next(iter(data.validation))
    if settings.get("fold") is not None:
        image_set = datasets.fold_validation_images(settings, inputs, data.class_names)
    else:
        image_set = datasets.load_images(
            datasets.single_path(inputs["validation"]),
            settings["image_size"],
            settings["batch_size"],
            class_names=data.class_names,
        )
    return next(iter(image_set.dataset))


def run_callbacks(settings, inputs, data, log_dir):
    """The schedule and TensorBoard callbacks of one training run, in fit's order."""
    schedule = schedule_callback(settings)
    found = [schedule] if schedule is not None else []
    if monitor_config.tensorboard(settings)["enabled"]:
        batch = fixed_batch(settings, inputs, data)
        found += callbacks(settings, log_dir, batch, len(data.class_names))
    return found


def end_of_training(settings, inputs, model_path, log_dir):
    """What is written once the kept model is known: the projector, when asked for."""
    if not monitor_config.tensorboard(settings)["embeddings"]:
        return
    if "test" not in inputs:
        raise UserError(
            "callbacks.tensorboard.embeddings needs the test split among the training job's "
            "inputs (rules/common.smk train_inputs gives it)"
        )
    write_projector(
        model_path,
        datasets.single_path(inputs["test"]),
        log_dir,
        tuple(settings["image_size"]),
        settings["batch_size"],
        test_images=datasets.single_path(inputs.get("test_images")),
    )
