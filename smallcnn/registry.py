"""The one list of experiment kinds and conv bases that the rules, training, evaluation, the report
and the benchmarks read. Pure Python (no TensorFlow): the Snakefile imports it at DAG build time.

A test checks that the config schema's enums agree with these tables.
"""

import dataclasses

# Training keys an experiment may override, all of them defaulted per kind under
# `training.<kind>` in config.yaml.
TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "steps_per_epoch",
    "optimizer",
    "learning_rate",
    "dropout",
    "dense_units",
    "augment",
    "class_weight",
    "callbacks",
)


@dataclasses.dataclass(frozen=True)
class Kind:
    """One of the book's five ways to train a classifier."""

    name: str
    # "images": trains on the split folders; "features": on conv-base features in HDF5.
    inputs: str
    # Whether the kind runs a conv base (and so takes `conv_base` settings).
    uses_base: bool
    # Whether it starts from the trained model of another experiment (named by `from`).
    starts_from: str | None
    # smallcnn.builders function that makes the model from the job's settings, inputs and data.
    builder: str
    # Which conv_base keys an experiment of this kind may set.
    conv_base_keys: tuple
    # Training keys it does not take (finetuned keeps the head of the model it starts from).
    fixed_keys: tuple
    description: str
    # Reference, not a result of any run: Chollet, Deep Learning with Python (1st ed.), ch. 5,
    # 2,000 training images of Dogs vs. Cats at 150x150, VGG16 with ImageNet weights.
    # Validation accuracy as the book reads it off its curves, except finetuned (test).
    book_accuracy: float

    @property
    def trains_on_features(self):
        """Trains on conv-base features extracted once into HDF5, not on images."""
        return self.inputs == "features"

    @property
    def runs_base_on_images(self):
        """Runs a conv base over the images while it trains: the frozen layers of that base may
        validate on their cached outputs (`cache_frozen`)."""
        return self.uses_base and self.inputs == "images"

    @property
    def builds_frozen_base(self):
        """Builds its base from the weights and keeps it frozen whole: the features file of that
        base and weights is what its frozen layers make of the validation images."""
        return self.runs_base_on_images and self.starts_from is None

    @property
    def inherited_keys(self):
        """Training keys it takes from the model it starts from, rather than from its settings."""
        return self.fixed_keys if self.starts_from else ()


KINDS = {
    kind.name: kind
    for kind in (
        Kind(
            name="scratch",
            inputs="images",
            uses_base=False,
            starts_from=None,
            builder="small_convnet",
            conv_base_keys=(),
            fixed_keys=(),
            description="small convnet trained from scratch",
            book_accuracy=0.71,
        ),
        Kind(
            name="augmented",
            inputs="images",
            uses_base=False,
            starts_from=None,
            builder="small_convnet",
            conv_base_keys=(),
            fixed_keys=(),
            description="the small convnet with data augmentation and dropout",
            book_accuracy=0.82,
        ),
        Kind(
            name="features",
            inputs="features",
            uses_base=True,
            starts_from=None,
            builder="feature_classifier",
            conv_base_keys=("name", "weights"),
            # The features are computed once, from unaugmented images.
            fixed_keys=("augment",),
            description="dense classifier on {base} features extracted once",
            book_accuracy=0.90,
        ),
        Kind(
            name="frozen",
            inputs="images",
            uses_base=True,
            starts_from=None,
            builder="frozen_base",
            conv_base_keys=("name", "weights"),
            fixed_keys=(),
            description="frozen {base} base with a new head, trained end to end",
            book_accuracy=0.96,
        ),
        Kind(
            name="finetuned",
            inputs="images",
            uses_base=True,
            starts_from="frozen",
            builder="finetuned_start",
            conv_base_keys=("unfreeze_from",),
            fixed_keys=("dense_units", "dropout"),
            description="the {start} model fine-tuned, {base} unfrozen from {unfreeze_from}",
            book_accuracy=0.968,
        ),
    )
}

# The book's order: each kind adds one idea to the one before.
KIND_ORDER = tuple(KINDS)


@dataclasses.dataclass(frozen=True)
class Base:
    """A keras.applications conv base."""

    name: str
    display: str
    # keras.applications class and the module holding its preprocess_input.
    application: str
    preprocess_module: str
    preprocessing: str
    # Keras' own address of the ImageNet weights without the classifier on top, and the hash
    # Keras publishes for that file (md5, in keras/src/applications/<module>.py, where
    # keras.utils.get_file checks it); None where Keras publishes none (MobileNetV2).
    imagenet_notop_url: str
    imagenet_notop_hash: str | None


_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications"
_CAFFE = "caffe: RGB to BGR, ImageNet mean subtracted"

BASES = {
    base.name: base
    for base in (
        Base(
            name="vgg16",
            display="VGG16",
            application="VGG16",
            preprocess_module="vgg16",
            preprocessing=f"keras.applications.vgg16.preprocess_input ({_CAFFE})",
            imagenet_notop_url=f"{_KERAS}/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            imagenet_notop_hash="6d6bbae143d832006294945121d1f1fc",
        ),
        Base(
            name="mobilenetv2",
            display="MobileNetV2",
            application="MobileNetV2",
            preprocess_module="mobilenet_v2",
            preprocessing="keras.applications.mobilenet_v2.preprocess_input (tf: scaled to -1..1)",
            imagenet_notop_url=(
                f"{_KERAS}/mobilenet_v2/"
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
            ),
            imagenet_notop_hash=None,
        ),
        Base(
            name="resnet50",
            display="ResNet50",
            application="ResNet50",
            preprocess_module="resnet50",
            preprocessing=f"keras.applications.resnet50.preprocess_input ({_CAFFE})",
            imagenet_notop_url=(
                f"{_KERAS}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
            ),
            imagenet_notop_hash="4d473c1dd8becc155b73f8504c6f6626",
        ),
        Base(
            name="efficientnetb0",
            display="EfficientNetB0",
            application="EfficientNetB0",
            preprocess_module="efficientnet",
            preprocessing=(
                "keras.applications.efficientnet.preprocess_input (none: the model rescales inside)"
            ),
            imagenet_notop_url=(
                "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5"
            ),
            imagenet_notop_hash="50bc09e76180e00e4465e1a485ddc09d",
        ),
    )
}


def describe(kind, base=None, start=None, unfreeze_from=None):
    """The report's one-line description of an experiment of `kind`."""
    display = BASES[base].display if base in BASES else base or "conv base"
    return KINDS[kind].description.format(
        base=display, start=start or "the frozen model", unfreeze_from=unfreeze_from
    )


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One kind of artifact the export rule writes, and the runtime that runs it."""

    name: str
    # Its path inside results/export/<experiment>/<seed>/ (a folder for SavedModel).
    path: str
    runtime: str
    description: str
    # Full-integer quantised: judged by agreement and accuracy, not by |delta p|.
    quantized: bool


EXPORT_FORMATS = {
    export_format.name: export_format
    for export_format in (
        ExportFormat(
            name="saved_model",
            path="saved_model",
            runtime="tensorflow",
            description="TensorFlow SavedModel (float32), signature serving_default",
            quantized=False,
        ),
        ExportFormat(
            name="onnx",
            path="model.onnx",
            runtime="onnxruntime",
            description="ONNX (float32), converted by tf2onnx",
            quantized=False,
        ),
        ExportFormat(
            name="tflite",
            path="model.tflite",
            runtime="ai-edge-litert",
            description="LiteRT/TFLite (float32), built-in ops only",
            quantized=False,
        ),
        ExportFormat(
            name="tflite_int8",
            path="model_int8.tflite",
            runtime="ai-edge-litert",
            description="LiteRT/TFLite, full-integer int8 weights and activations, calibrated on "
            "training images; uint8 image in, float32 probabilities out",
            quantized=True,
        ),
    )
}


def calibrates(formats):
    """Whether any of the export `formats` is quantised, so calibrated on training images."""
    return any(EXPORT_FORMATS[name].quantized for name in formats)


# parity.json's status of a format without figures, as the log and the report say it.
EXPORT_STATUS = {
    "cannot_be_produced": "cannot be produced",
    "does_not_run": "converted, but does not run (target MISSED)",
}
