"""The models of every kind of experiment, as Keras functional models with named layers.

Every model takes images as floats in 0..255 (or, for the features classifier, conv-base
features), does its own preprocessing, and ends with a `model_info` layer that carries the class
names, so that a saved .keras file alone is enough to label new images.
"""

import math

import keras

from smallcnn import registry
from smallcnn.errors import UserError


def application(base):
    """The keras.applications constructor of a conv base named in smallcnn.registry."""
    return getattr(keras.applications, _base(base).application)


def preprocess_input(base):
    """The conv base's own preprocess_input function."""
    return getattr(keras.applications, _base(base).preprocess_module).preprocess_input


def _base(name):
    if name not in registry.BASES:
        raise UserError(f"unknown conv base {name!r}: choose one of {', '.join(registry.BASES)}")
    return registry.BASES[name]


@keras.saving.register_keras_serializable(package="smallcnn")
class ImagePreprocessing(keras.layers.Layer):
    """The conv base's own preprocess_input, as a layer so that it is saved with the model."""

    def __init__(self, base, **kwargs):
        # float32: the ImageNet mean subtraction would lose precision in bfloat16.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.base = _base(base).name

    def call(self, inputs):
        return preprocess_input(self.base)(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "base": self.base}


@keras.saving.register_keras_serializable(package="smallcnn")
class ModelInfo(keras.layers.Layer):
    """Identity output layer that stores the class names (and the conv base the model depends
    on) in the model's config, and keeps the output float32 under mixed precision."""

    def __init__(self, class_names, conv_base=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("name", "model_info")
        super().__init__(**kwargs)
        self.class_names = list(class_names)
        self.conv_base = dict(conv_base) if conv_base else None

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "class_names": self.class_names,
            "conv_base": self.conv_base,
        }


def model_info(model):
    """(class_names, conv_base) stored in a model built by this module."""
    try:
        layer = model.get_layer("model_info")
    except ValueError:
        raise UserError(
            f"model {model.name!r} has no model_info layer: it was not made by smallcnn, "
            "so its class names are unknown"
        ) from None
    return layer.class_names, layer.conv_base


def affine_transforms(theta, shift_x, shift_y, shear, zoom_x, zoom_y, flip, height, width):
    """ImageDataGenerator's apply_affine_transform followed by its horizontal flip, as the rows
    of 8 numbers that keras.ops.image.affine_transform takes (one per image).

    x is the column and y the row; theta and shear are in radians, the shifts in pixels; flip
    is -1 to mirror the image and 1 to keep it. (ImageDataGenerator itself centres on
    (height, width) swapped and shifts columns by height_shift_range; the two agree on square
    images, and here each shift and the centre go with their own axis.)
    """
    ops = keras.ops
    cos, sin = ops.cos(theta), ops.sin(theta)
    # rotation @ shift @ shear @ zoom multiplied out, mapping an output pixel to the input one:
    # x' = a*x + b*y + e, y' = c*x + d*y + f.
    a = cos * zoom_x
    b = (-cos * ops.sin(shear) - sin * ops.cos(shear)) * zoom_y
    c = sin * zoom_x
    d = (-sin * ops.sin(shear) + cos * ops.cos(shear)) * zoom_y
    e = cos * shift_x - sin * shift_y
    f = sin * shift_x + cos * shift_y
    # About the centre, as transform_matrix_offset_center does.
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    e = e + centre_x - a * centre_x - b * centre_y
    f = f + centre_y - c * centre_x - d * centre_y
    # The flip comes after the resample: output column j reads column width-1-j of it.
    mirror = (1.0 - flip) / 2 * (width - 1)
    e, f = e + a * mirror, f + c * mirror
    a, c = a * flip, c * flip
    zeros = ops.zeros_like(a)
    return ops.stack([a, b, e, c, d, f, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="smallcnn")
class RandomAffine(keras.layers.Layer):
    """The book's ImageDataGenerator transforms (rotation, shift, shear, zoom, horizontal flip)
    as one random affine resample per image, active only when training=True.

    One resample instead of one per transform: each extra bilinear pass blurs the image again and
    costs as much as the first (a chain of Keras' RandomRotation, RandomTranslation, RandomShear
    and RandomZoom layers took 3-4 times as long per batch). The matrix is ImageDataGenerator's
    (apply_affine_transform: rotation, shift, shear, zoom about the image centre, then the flip),
    so the transforms have the same distribution as the book's. Works on float images in 0..255.
    """

    def __init__(
        self,
        rotation=0.0,
        width_shift=0.0,
        height_shift=0.0,
        shear=0.0,
        zoom=0.0,
        horizontal_flip=False,
        fill_mode="nearest",
        seed=None,
        **kwargs,
    ):
        # float32 whatever the global policy: the resampling kernels are float32 on CPU, and
        # bfloat16 would round pixel values.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.rotation = float(rotation)
        self.width_shift = float(width_shift)
        self.height_shift = float(height_shift)
        self.shear = float(shear)
        self.zoom = float(zoom)
        self.horizontal_flip = bool(horizontal_flip)
        self.fill_mode = fill_mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _uniform(self, n, limit, centre=0.0):
        return keras.random.uniform((n,), centre - limit, centre + limit, seed=self.seed_generator)

    def transforms(self, batch, height, width):
        """Random transforms for a batch, as affine_transform's rows of 8 numbers."""
        uniform = self._uniform
        flip = 1.0
        if self.horizontal_flip:
            flip = keras.ops.where(uniform(batch, 0.5, centre=0.5) < 0.5, -1.0, 1.0)
        return affine_transforms(
            theta=uniform(batch, math.radians(self.rotation)),
            shift_x=uniform(batch, self.width_shift) * width,
            shift_y=uniform(batch, self.height_shift) * height,
            shear=uniform(batch, self.shear),
            zoom_x=uniform(batch, self.zoom, centre=1.0),
            zoom_y=uniform(batch, self.zoom, centre=1.0),
            flip=flip,
            height=height,
            width=width,
        )

    def call(self, images, training=False):
        if not training:
            return images
        shape = keras.ops.shape(images)
        height = keras.ops.cast(shape[1], "float32")
        width = keras.ops.cast(shape[2], "float32")
        return keras.ops.image.affine_transform(
            images,
            self.transforms(shape[0], height, width),
            interpolation="bilinear",
            fill_mode=self.fill_mode,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "width_shift": self.width_shift,
            "height_shift": self.height_shift,
            "shear": self.shear,
            "zoom": self.zoom,
            "horizontal_flip": self.horizontal_flip,
            "fill_mode": self.fill_mode,
            "seed": self.seed,
        }


def build_augmentation(augmentation, seed):
    """The `augmentation` config section as one RandomAffine layer named "augmentation".

    `rotation` is in degrees and `shear` an angle in radians, as in the Keras of the book; the
    shifts and zoom are fractions of the image size.
    """
    return RandomAffine(**augmentation, seed=seed, name="augmentation")


def _output(x, n_classes, class_names, conv_base=None):
    if n_classes < 2:
        raise UserError(f"need at least two classes to train a classifier, found {n_classes}")
    if n_classes == 2:
        x = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="output")(x)
    else:
        x = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="output")(x)
    return ModelInfo(class_names, conv_base)(x)


def _class_names(class_names, n_classes):
    return list(class_names) if class_names else [str(k) for k in range(n_classes)]


def build_scratch(
    input_shape,
    n_classes,
    *,
    dropout,
    dense_units,
    augmentation=None,
    seed=0,
    class_names=None,
    name=None,
):
    """The book's small convnet; with `augmentation` it is the augmented experiment's model.

    dropout and dense_units have no defaults here: config.yaml's training.<kind> holds them.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if augmentation:
        x = build_augmentation(augmentation, seed)(x)
    x = keras.layers.Rescaling(1 / 255, name="rescaling")(x)
    for block, filters in enumerate((32, 64, 128, 128), start=1):
        x = keras.layers.Conv2D(filters, 3, activation="relu", name=f"conv{block}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, name="dropout")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    outputs = _output(x, n_classes, _class_names(class_names, n_classes))
    return keras.Model(inputs, outputs, name=name or ("augmented" if augmentation else "scratch"))


def build_conv_base(name, weights_path, input_shape):
    """A keras.applications conv base without its top, with its own preprocessing inside.

    `weights_path`: a .weights.h5 file of the base (imagenet, fetched by smallcnn.weights, or
    any other), or None for random weights. The returned model takes images in 0..255.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    preprocessed = ImagePreprocessing(name, name="preprocess")(inputs)
    base = application(name)(include_top=False, weights=None, input_tensor=preprocessed)
    if weights_path:
        try:
            base.load_weights(weights_path)
        except (ValueError, OSError) as error:
            raise UserError(
                f"cannot load {weights_path} into {name} without its top ({error}); "
                "conv_base.weights must be a .weights.h5 file of that base"
            ) from None
    return base


def _dense_head(x, n_classes, dense_units, dropout, seed, class_names, conv_base):
    """Flatten, Dense(relu), optional Dropout, then the output: the head on conv-base features."""
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed, name="dropout")(x)
    return _output(x, n_classes, _class_names(class_names, n_classes), conv_base)


def build_feature_classifier(
    feature_shape, n_classes, *, dense_units, dropout, seed=0, class_names=None, conv_base=None
):
    """The dense classifier trained on extracted conv-base features."""
    inputs = keras.Input(shape=tuple(feature_shape), name="features")
    outputs = _dense_head(inputs, n_classes, dense_units, dropout, seed, class_names, conv_base)
    return keras.Model(inputs, outputs, name="features")


def build_frozen(
    base,
    n_classes,
    *,
    dense_units,
    dropout,
    augmentation=None,
    seed=0,
    class_names=None,
    conv_base=None,
):
    """A frozen conv base with a new dense head, trained end to end on (augmented) images.

    The base is called with training=False so that BatchNormalization layers, in bases that have
    them, stay in inference mode even after make_finetunable unfreezes them.
    """
    base.trainable = False
    inputs = keras.Input(shape=base.input_shape[1:], name="image")
    x = inputs
    if augmentation:
        x = build_augmentation(augmentation, seed)(x)
    x = base(x, training=False)
    outputs = _dense_head(x, n_classes, dense_units, dropout, seed, class_names, conv_base)
    return keras.Model(inputs, outputs, name="frozen")


def conv_base_of(model):
    """The nested conv base model of a frozen or finetuned model."""
    for layer in model.layers:
        if isinstance(layer, keras.Model) and layer.name != "augmentation":
            return layer
    raise UserError(f"model {model.name!r} has no nested conv base to fine-tune")


def make_finetunable(model, unfreeze_from):
    """Unfreeze the conv base from layer `unfreeze_from` on; the caller recompiles."""
    base = conv_base_of(model)
    names = [layer.name for layer in base.layers]
    if unfreeze_from not in names:
        conv_names = [n for n in names if "conv" in n][-6:]
        raise UserError(
            f"conv_base.unfreeze_from={unfreeze_from!r} is not a layer of {base.name}; "
            f"its last conv layers are {', '.join(conv_names)}"
        )
    base.trainable = True
    start = names.index(unfreeze_from)
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= start
    return model


def with_augmentation(model, augmentation, seed, name=None):
    """The same layers and weights as the linear `model`, with its augmentation replaced.

    finetuned starts from the saved frozen model but augments with its own settings.
    """
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    x = inputs
    if augmentation:
        x = build_augmentation(augmentation, seed)(x)
    for layer in model.layers[1:]:
        if layer.name == "augmentation":
            continue
        x = layer(x, training=False) if isinstance(layer, keras.Model) else layer(x)
    return keras.Model(inputs, x, name=name or model.name)
