"""Model builders: the book's architectures and parameter counts, augmentation, saving."""

import keras
import numpy as np
import pytest

from smallcnn import models
from smallcnn.errors import UserError

BOOK_AUGMENTATION = {
    "rotation": 40,
    "width_shift": 0.2,
    "height_shift": 0.2,
    "shear": 0.2,
    "zoom": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


def trainable_layer_names(model):
    return [layer.name for layer in model.layers if layer.trainable and layer.weights]


def test_scratch_has_the_books_parameter_count():
    model = models.build_scratch((150, 150, 3), 2, dropout=0.0, dense_units=512)
    assert model.count_params() == 3_453_121
    assert [layer.name for layer in model.layers if "conv" in layer.name] == [
        "conv1",
        "conv2",
        "conv3",
        "conv4",
    ]
    assert model.get_layer("output").activation.__name__ == "sigmoid"
    assert model.output_shape == (None, 1)


def test_augmented_adds_augmentation_and_dropout_but_no_parameters():
    model = models.build_scratch(
        (150, 150, 3), 2, dropout=0.5, dense_units=512, augmentation=BOOK_AUGMENTATION, seed=3
    )
    assert model.count_params() == 3_453_121
    assert model.get_layer("dropout").rate == 0.5
    augmentation = model.get_layer("augmentation")
    assert isinstance(augmentation, models.RandomAffine)
    assert (augmentation.rotation, augmentation.shear, augmentation.zoom) == (40, 0.2, 0.2)


def test_more_than_two_classes_get_softmax():
    model = models.build_scratch(
        (48, 48, 3), 3, dropout=0.0, dense_units=8, class_names=["a", "b", "c"]
    )
    assert model.output_shape == (None, 3)
    assert model.get_layer("output").activation.__name__ == "softmax"


def test_one_class_is_refused():
    with pytest.raises(UserError, match="two classes"):
        models.build_scratch((48, 48, 3), 1, dropout=0.0, dense_units=8)


def test_augmentation_is_active_only_in_training():
    augmentation = models.build_augmentation(BOOK_AUGMENTATION, seed=1)
    images = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 3)).astype("float32")
    assert np.array_equal(np.asarray(augmentation(images, training=False)), images)
    augmented = np.asarray(augmentation(images, training=True))
    assert augmented.shape == images.shape
    assert not np.allclose(augmented, images)
    # nearest fill: no black borders appear, values stay in the input's range
    assert augmented.min() >= images.min() - 1e-3 and augmented.max() <= images.max() + 1e-3


def test_zero_settings_leave_images_unchanged_in_training():
    augmentation = models.build_augmentation(
        {"rotation": 0, "width_shift": 0, "height_shift": 0, "shear": 0, "zoom": 0}, seed=1
    )
    images = np.random.default_rng(0).uniform(0, 255, (3, 20, 30, 3)).astype("float32")
    np.testing.assert_allclose(augmentation(images, training=True), images, atol=1e-3)


# scipy warns about the namespace the legacy module imports affine_transform from.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("flip", [1.0, -1.0])
def test_the_single_resample_is_image_data_generators_transform(flip):
    """Same picture as the book's ImageDataGenerator (legacy apply_affine_transform, bilinear,
    nearest fill, then flip) for one set of parameters with every transform at work.
    Square: ImageDataGenerator mixes up height and width in its centre and shifts."""
    from keras.src.legacy.preprocessing.image import apply_affine_transform

    height = width = 48
    image = np.random.default_rng(2).uniform(0, 255, (height, width, 3)).astype("float32")
    theta, shift_x, shift_y, shear, zoom_x, zoom_y = 0.5, 4.0, -6.0, 0.2, 0.85, 1.15
    expected = apply_affine_transform(
        image, np.degrees(theta), shift_x, shift_y, np.degrees(shear), zoom_x, zoom_y,
        row_axis=0, col_axis=1, channel_axis=2, fill_mode="nearest", order=1,
    )  # fmt: skip
    if flip < 0:
        expected = expected[:, ::-1]
    transform = models.affine_transforms(
        *(np.array([v], "float32") for v in (theta, shift_x, shift_y, shear, zoom_x, zoom_y, flip)),
        height,
        width,
    )
    ours = keras.ops.image.affine_transform(image[None], transform, fill_mode="nearest")[0]
    np.testing.assert_allclose(np.asarray(ours), expected, atol=0.05)


def test_random_transforms_differ_per_image_and_repeat_with_the_seed():
    images = np.repeat(
        np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32"), 4, axis=0
    )
    first = np.asarray(models.build_augmentation(BOOK_AUGMENTATION, seed=5)(images, training=True))
    again = np.asarray(models.build_augmentation(BOOK_AUGMENTATION, seed=5)(images, training=True))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0], first[1])


def test_vgg16_base_frozen_and_finetuned_as_in_the_book(tmp_path):
    base = models.build_conv_base("vgg16", None, (150, 150, 3))
    assert base.count_params() == 14_714_688
    assert base.output_shape == (None, 4, 4, 512)
    frozen = models.build_frozen(base, 2, dense_units=256, dropout=0.0, class_names=["cat", "dog"])
    assert len(frozen.trainable_weights) == 4

    path = tmp_path / "frozen.keras"
    frozen.save(path)
    loaded = keras.saving.load_model(path)
    assert models.model_info(loaded)[0] == ["cat", "dog"]
    assert len(loaded.trainable_weights) == 4
    finetuned = models.make_finetunable(loaded, "block5_conv1")
    assert trainable_layer_names(models.conv_base_of(finetuned)) == [
        "block5_conv1",
        "block5_conv2",
        "block5_conv3",
    ]
    # block5's three conv layers (kernel and bias each) plus the head's two dense layers
    assert len(finetuned.trainable_weights) == 3 * 2 + 4


def test_unknown_unfreeze_layer_names_the_choices():
    base = models.build_conv_base("vgg16", None, (32, 32, 3))
    model = models.build_frozen(base, 2, dense_units=8, dropout=0.0)
    with pytest.raises(UserError, match="block5_conv3"):
        models.make_finetunable(model, "block9_conv1")


def test_a_saved_model_carries_its_class_names_and_augmentation(tmp_path):
    model = models.build_scratch(
        (48, 48, 3),
        3,
        dropout=0.0,
        dense_units=8,
        augmentation=BOOK_AUGMENTATION,
        seed=1,
        class_names=["x", "y", "z"],
    )
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert models.model_info(loaded) == (["x", "y", "z"], None)
    images = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


def test_a_plain_keras_weights_file_loads_into_the_base(tmp_path):
    """The offline weights tool saves keras.applications.VGG16(include_top=False) weights."""
    plain = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    plain.save_weights(tmp_path / "vgg16.weights.h5")
    base = models.build_conv_base("vgg16", tmp_path / "vgg16.weights.h5", (48, 48, 3))
    for name in ("block1_conv1", "block5_conv3"):
        for ours, theirs in zip(
            base.get_layer(name).get_weights(), plain.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(ours, theirs)


def test_a_weights_file_of_another_base_is_a_user_error(tmp_path):
    models.build_conv_base("mobilenetv2", None, (32, 32, 3)).save_weights(tmp_path / "m.weights.h5")
    with pytest.raises(UserError, match="vgg16"):
        models.build_conv_base("vgg16", tmp_path / "m.weights.h5", (32, 32, 3))


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "mobilenetv2", "efficientnetb0"])
def test_each_base_applies_its_own_preprocessing(name):
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = models.preprocess_input(name)(images.copy())
    layer = models.ImagePreprocessing(name)
    np.testing.assert_allclose(np.asarray(layer(images)), expected, rtol=1e-5, atol=1e-4)
    base = models.build_conv_base(name, None, (32, 32, 3))
    assert base.get_layer("preprocess").base == name


def test_batchnorm_stays_in_inference_mode_after_reload_and_unfreezing(tmp_path):
    base = models.build_conv_base("mobilenetv2", None, (32, 32, 3))
    model = models.build_frozen(base, 2, dense_units=8, dropout=0.0)
    model.save(tmp_path / "frozen.keras")
    finetuned = models.make_finetunable(
        keras.saving.load_model(tmp_path / "frozen.keras"), "block_16_expand"
    )
    assert any(w.trainable for w in models.conv_base_of(finetuned).get_layer("Conv_1_bn").weights)
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    # With BatchNormalization in training mode the batch statistics would change the output.
    np.testing.assert_allclose(
        np.asarray(finetuned(images, training=True)),
        np.asarray(finetuned(images, training=False)),
        rtol=1e-5,
    )


def test_with_augmentation_keeps_layers_and_weights():
    base = models.build_conv_base("vgg16", None, (32, 32, 3))
    frozen = models.build_frozen(
        base, 2, dense_units=8, dropout=0.0, augmentation=BOOK_AUGMENTATION
    )
    plain = models.with_augmentation(frozen, None, seed=0, name="finetuned")
    assert "augmentation" not in [layer.name for layer in plain.layers]
    assert plain.count_params() == frozen.count_params()
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(plain(images)), np.asarray(frozen(images, training=False)), rtol=1e-5
    )


def test_fetching_weights_without_network_says_what_to_do(tmp_path):
    from smallcnn.weights import fetch_imagenet_weights

    out = tmp_path / "resources" / "weights" / "vgg16_imagenet_notop.weights.h5"
    # Port 9 (discard) on the loopback: refused at once, no traffic leaves the machine.
    with pytest.raises(UserError) as error:
        fetch_imagenet_weights("vgg16", out, url="http://127.0.0.1:9/vgg16_notop.h5")
    message = str(error.value)
    assert "127.0.0.1" in message and "conv_base.weights" in message and ".weights.h5" in message
    assert "\n" not in message
    assert not out.exists()
    assert list(out.parent.iterdir()) == []


def test_every_base_in_the_registry_builds_and_has_a_weights_address():
    from smallcnn.registry import BASES

    for name, base in BASES.items():
        assert models.application(name).__name__ == base.application
        assert base.imagenet_notop_url.startswith("https://")
