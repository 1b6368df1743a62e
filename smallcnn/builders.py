"""The model of each kind of experiment, made from what a training job has.

Every builder takes the same arguments, (settings, inputs, data): the run's settings, its input
files and the training data (smallcnn.datasets.TrainingData), and returns the model, uncompiled,
with the record of the weights it started from ({"source", "sha256"}, or None). Each kind in
smallcnn.registry names its builder here.
"""

import keras

from smallcnn import datasets, features, models
from smallcnn.errors import UserError


def _head(settings, data):
    """What every builder of smallcnn.models takes from the run for the model's head."""
    return {
        "dense_units": settings["dense_units"],
        "dropout": settings["dropout"],
        "seed": settings["seed"],
        "class_names": data.class_names,
    }


def small_convnet(settings, inputs, data):
    """The book's small convnet, augmented when the settings give an augmentation."""
    model = models.build_scratch(
        data.input_shape,
        len(data.class_names),
        augmentation=settings.get("augmentation"),
        name=settings["experiment"],
        **_head(settings, data),
    )
    return model, None


def feature_classifier(settings, inputs, data):
    """The dense classifier on the features file's conv-base features."""
    model = models.build_feature_classifier(
        data.input_shape, len(data.class_names), conv_base=data.conv_base, **_head(settings, data)
    )
    return model, data.weights


def frozen_base(settings, inputs, data):
    """A frozen conv base, built from its weights file, with a new dense head."""
    conv_base = settings["conv_base"]
    weights_path = datasets.single_path(inputs.get("weights"))
    record = features.weights_record(conv_base["weights"], weights_path)
    base = models.build_conv_base(conv_base["name"], weights_path, data.input_shape)
    model = models.build_frozen(
        base,
        len(data.class_names),
        augmentation=settings.get("augmentation"),
        conv_base={
            "name": base.name,
            "weights": record["source"],
            "weights_sha256": record["sha256"],
        },
        **_head(settings, data),
    )
    return model, record


def finetuned_start(settings, inputs, data):
    """The trained model it starts from, with its own augmentation and its base unfrozen from
    `conv_base.unfreeze_from`."""
    start = datasets.single_path(inputs["start"])
    model = keras.saving.load_model(start, compile=False)
    class_names, base_info = models.model_info(model)
    if class_names != data.class_names:
        raise UserError(
            f"{start} was trained on classes {class_names}, the training split has "
            f"{data.class_names}: rerun the experiment it starts from"
        )
    if tuple(model.input_shape[1:]) != tuple(data.input_shape):
        raise UserError(
            f"{start} takes images of {model.input_shape[1:3]}, image_size is "
            f"{data.input_shape[:2]}: rerun the experiment it starts from"
        )
    model = models.with_augmentation(
        model, settings.get("augmentation"), settings["seed"], name=settings["experiment"]
    )
    models.make_finetunable(model, settings["conv_base"]["unfreeze_from"])
    record = None
    if base_info:
        record = {"source": base_info["weights"], "sha256": base_info["weights_sha256"]}
    return model, record
