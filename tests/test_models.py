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
    model = models.build_scratch((150, 150, 3), 2)
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
        (150, 150, 3), 2, dropout=0.5, augmentation=BOOK_AUGMENTATION, seed=3
    )
    assert model.count_params() == 3_453_121
    assert model.get_layer("dropout").rate == 0.5
    augmentation = model.get_layer("augmentation")
    assert [layer.name for layer in augmentation.layers] == [
        "rotation",
        "translation",
        "shear",
        "zoom",
        "flip",
    ]


def test_more_than_two_classes_get_softmax():
    model = models.build_scratch((48, 48, 3), 3, class_names=["a", "b", "c"])
    assert model.output_shape == (None, 3)
    assert model.get_layer("output").activation.__name__ == "softmax"


def test_one_class_is_refused():
    with pytest.raises(UserError, match="two classes"):
        models.build_scratch((48, 48, 3), 1)


def test_augmentation_is_active_only_in_training():
    augmentation = models.build_augmentation(BOOK_AUGMENTATION, seed=1)
    images = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 3)).astype("float32")
    assert np.array_equal(np.asarray(augmentation(images, training=False)), images)
    augmented = np.asarray(augmentation(images, training=True))
    assert augmented.shape == images.shape
    assert not np.allclose(augmented, images)
    # nearest fill: no black borders appear, values stay in the input's range
    assert augmented.min() >= images.min() - 1e-3 and augmented.max() <= images.max() + 1e-3


def test_zero_settings_turn_transforms_off():
    augmentation = models.build_augmentation(
        {"rotation": 0, "width_shift": 0, "height_shift": 0, "shear": 0, "zoom": 0.1}, seed=1
    )
    assert [layer.name for layer in augmentation.layers] == ["zoom"]


def test_vgg16_base_frozen_and_finetuned_as_in_the_book(tmp_path):
    base = models.build_conv_base("vgg16", None, (150, 150, 3))
    assert base.count_params() == 14_714_688
    assert base.output_shape == (None, 4, 4, 512)
    frozen = models.build_frozen(base, 2, dense_units=256, class_names=["cat", "dog"])
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
    model = models.build_frozen(base, 2)
    with pytest.raises(UserError, match="block5_conv3"):
        models.make_finetunable(model, "block9_conv1")


def test_a_saved_model_carries_its_class_names_and_augmentation(tmp_path):
    model = models.build_scratch(
        (48, 48, 3), 3, augmentation=BOOK_AUGMENTATION, seed=1, class_names=["x", "y", "z"]
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
    expected = models.CONV_BASES[name][1](images.copy())
    layer = models.ImagePreprocessing(name)
    np.testing.assert_allclose(np.asarray(layer(images)), expected, rtol=1e-5, atol=1e-4)
    base = models.build_conv_base(name, None, (32, 32, 3))
    assert base.get_layer("preprocess").base == name


def test_batchnorm_stays_in_inference_mode_after_reload_and_unfreezing(tmp_path):
    base = models.build_conv_base("mobilenetv2", None, (32, 32, 3))
    model = models.build_frozen(base, 2, dense_units=8)
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
    frozen = models.build_frozen(base, 2, dense_units=8, augmentation=BOOK_AUGMENTATION)
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


def test_every_base_has_a_known_weights_address():
    from smallcnn.weights import IMAGENET_NOTOP

    assert set(IMAGENET_NOTOP) == set(models.CONV_BASES)
