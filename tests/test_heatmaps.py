"""Grad-CAM: it finds the layer by itself in every kind of model, and its maps pass the sanity
checks of Adebayo et al. (2018): they localise what the model learnt, and they fall apart when the
model's weights are randomised from the top down."""

import keras
import numpy as np
import pytest
from scipy.stats import spearmanr

from smallcnn import heatmaps, models
from smallcnn.errors import UserError

SIZE = 128
RADIUS = 16
GROW = 8
CLASSES = ["plain", "shape"]


@pytest.fixture(autouse=True)
def float32():
    """Numeric tests pin float32 (precision: auto picks bfloat16 on CPUs with AVX512_BF16)."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy(previous)


def shape_set(per_class, rng):
    """Noise images, half of them ("shape") with one bright disc of radius RADIUS at a random
    place: images in 0..255, labels (0 plain, 1 shape), and each disc's box grown by GROW px."""
    images = rng.integers(0, 120, (2 * per_class, SIZE, SIZE, 3)).astype("float32")
    labels = np.repeat([0, 1], per_class)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    boxes = []
    for image in images[per_class:]:
        row, col = rng.integers(RADIUS, SIZE - RADIUS, 2)
        image[(rows - row) ** 2 + (cols - col) ** 2 <= RADIUS**2] = 255
        low, high = RADIUS + GROW, RADIUS + GROW + 1
        boxes.append((row - low, col - low, row + high, col + high))
    return images, labels, boxes


@pytest.fixture(scope="module")
def trained_scratch():
    """The scratch convnet at 128 px (its last conv map is 12x12) trained on the shape set until
    it tells the classes apart, with the test images and their boxes."""
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_dtype_policy("float32")
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    train, validation, test = (shape_set(n, rng) for n in (50, 20, 30))
    model = models.build_scratch(
        (SIZE, SIZE, 3), 2, dropout=0.0, dense_units=32, class_names=CLASSES, seed=1
    )
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    for _ in range(15):
        model.fit(*train[:2], batch_size=4, epochs=1, verbose=0)
        if model.evaluate(*validation[:2], verbose=0)[1] == 1.0:
            break
    keras.mixed_precision.set_dtype_policy(previous)
    return model, test


def test_maps_localise_the_disc_the_model_learnt(trained_scratch):
    model, (images, labels, boxes) = trained_scratch
    accuracy = model.evaluate(images, labels, verbose=0)[1]
    assert accuracy >= 0.95
    cam = heatmaps.GradCam(model)
    assert cam.layer_name == "conv4" and cam.layer.output.shape[1:3] == (12, 12)
    shapes = images[labels == 1]
    found = cam(shapes, classes=np.ones(len(shapes), int))
    shares = np.array(
        [heatmaps.mass_inside(m, box) for m, box in zip(found.maps, boxes, strict=True)]
    )
    located = float(np.mean(shares >= 0.4))
    print(
        f"\nlocalisation: test accuracy {accuracy:.3f}; mass inside the grown box: mean "
        f"{shares.mean():.3f}, median {np.median(shares):.3f}; >= 40% on {located:.0%} of "
        f"{len(shares)} shape images (the box is {48 * 48 / SIZE**2:.0%} of the image)"
    )
    assert located >= 0.7


def randomise(layer, seed):
    """Draw the layer's weights again from its own initialisers, with `seed` (a Keras
    initialiser keeps the seed it was made with, so it would draw the same values again)."""
    for weight, initializer in (
        (layer.kernel, layer.kernel_initializer),
        (layer.bias, layer.bias_initializer),
    ):
        config = initializer.get_config()
        if "seed" in config:
            initializer = type(initializer).from_config({**config, "seed": seed})
        weight.assign(initializer(weight.shape, dtype=weight.dtype))


def mean_spearman(maps, others):
    """Mean over images of the rank correlation of two maps; an all-zero map (no positive
    evidence: no ranking) counts as 0."""
    return float(
        np.mean(
            [
                spearmanr(a.ravel(), b.ravel()).statistic if a.std() > 0 and b.std() > 0 else 0.0
                for a, b in zip(maps, others, strict=True)
            ]
        )
    )


# Independent re-initialisations: one draw's correlation varies a lot (measured over 20 draws:
# sd 0.29 around a mean of 0.30), so the test averages over several, with fixed seeds.
DRAWS = 10


def test_maps_fall_apart_when_the_weights_are_randomised_from_the_top_down(trained_scratch):
    model, (images, labels, _) = trained_scratch
    shapes = images[labels == 1]
    classes = np.ones(len(shapes), int)
    trained = heatmaps.GradCam(model)(shapes, classes=classes).maps
    copy = keras.models.clone_model(model)
    # One GradCam, traced (two batches a call): its function reads the weights, which are
    # reassigned in place, and runs 30 times.
    cam = heatmaps.GradCam(copy)
    # The head, then the conv layers down to and including the Grad-CAM layer (conv4).
    steps = ("output", "dense", "conv4")
    correlations = {name: [] for name in steps}
    for draw in range(DRAWS):
        copy.set_weights(model.get_weights())
        for index, name in enumerate(steps):
            randomise(copy.get_layer(name), seed=100 * draw + index)
            maps = cam(shapes, classes=classes, batch_size=16).maps
            correlations[name].append(mean_spearman(trained, maps))
    means = {name: float(np.mean(values)) for name, values in correlations.items()}
    print(
        f"\ncascading randomisation, mean Spearman with the trained model's map over {DRAWS} "
        "draws after re-initialising "
        + ", ".join(f"{name} {rho:.3f}" for name, rho in means.items())
        + "; after conv4 per draw "
        + " ".join(f"{rho:.2f}" for rho in correlations["conv4"])
    )
    assert means["conv4"] < 0.5
    # Sanity of the check itself: the trained model's maps agree with themselves.
    assert mean_spearman(trained, heatmaps.GradCam(model)(shapes, classes=classes).maps) > 0.99


@pytest.mark.parametrize(("base", "side"), [("vgg16", 32), ("mobilenetv2", 64)])
def test_frozen_and_finetuned_bases_give_finite_maps_of_the_inputs_shape(base, side):
    """Random weights at small sizes: the last conv map is 2x2 (MobileNetV2 needs 64 px)."""
    keras.utils.set_random_seed(3)
    conv_base = models.build_conv_base(base, None, (side, side, 3))
    frozen = models.build_frozen(
        conv_base, 3, dense_units=8, dropout=0.5, augmentation={"rotation": 10}, class_names="abc"
    )
    # As the pipeline makes it: the frozen model's layers behind new augmentation, unfrozen.
    finetuned = models.make_finetunable(
        models.with_augmentation(frozen, {"zoom": 0.1}, seed=3, name="finetuned"),
        {"vgg16": "block5_conv1", "mobilenetv2": "block_16_expand"}[base],
    )
    images = np.random.default_rng(3).uniform(0, 255, (4, side, side, 3)).astype("float32")
    for model in (frozen, finetuned):
        cam = heatmaps.GradCam(model)
        assert cam.owner is conv_base
        assert cam.layer.name == {"vgg16": "block5_conv3", "mobilenetv2": "out_relu"}[base]
        found = cam(images)
        assert found.maps.shape == (4, side, side) and found.maps.dtype == np.float32
        assert np.isfinite(found.maps).all() and found.scaled.any()
        assert all(m.std() > 0 for m in found.maps[found.scaled])
        # Its forward pass is the saved model's.
        expected = keras.ops.convert_to_numpy(model(images, training=False))
        assert found.probabilities == pytest.approx(expected, abs=1e-5)


def test_a_features_classifier_is_explained_through_its_conv_base():
    keras.utils.set_random_seed(4)
    base = models.build_conv_base("vgg16", None, (32, 32, 3))
    head = models.build_feature_classifier(
        base.output_shape[1:], 2, dense_units=8, dropout=0.0, class_names=["cat", "dog"]
    )
    with pytest.raises(UserError, match="needs its conv base"):
        heatmaps.GradCam(head)
    cam = heatmaps.GradCam(head, base=base)
    assert cam.layer_name.endswith("/block5_conv3") and cam.input_size == (32, 32)
    images = np.random.default_rng(4).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    found = cam(images)
    expected = keras.ops.convert_to_numpy(head(base([images], training=False)))
    assert found.probabilities[:, 1] == pytest.approx(expected[:, 0], abs=1e-5)
    assert np.isfinite(found.maps).all()


def test_the_layer_can_be_named_and_a_wrong_name_says_which_exist():
    model = models.build_scratch((64, 64, 3), 2, dropout=0.0, dense_units=4)
    assert heatmaps.GradCam(model).layer_name == "conv4"
    cam = heatmaps.GradCam(model, layer="conv2")
    assert cam.layer_name == "conv2"
    found = cam(np.full((1, 64, 64, 3), 100, "float32"))
    assert found.layer == "conv2" and found.maps.shape == (1, 64, 64)
    with pytest.raises(UserError, match=r"block5_conv3.* last ones are conv1, conv2, conv3, conv4"):
        heatmaps.GradCam(model, layer="block5_conv3")


def full_resolution_model(mixed):
    """A binary model whose conv map has the input's size, so that maps are not resampled.
    `mixed`: conv weights of both signs and two channels that are evidence against class 1;
    else every weight is positive, so that nothing is evidence for class 0."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = models.ModelInfo(["no", "yes"])(
        keras.layers.Dense(1, activation="sigmoid", name="output")(x)
    )
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(5)
    conv, output = model.get_layer("conv"), model.get_layer("output")
    conv.kernel.assign(rng.uniform(-1 if mixed else 0.1, 1, conv.kernel.shape))
    weights = rng.uniform(0.1, 1, (8, 8, 4))
    if mixed:
        weights[..., 2:] *= -1
    output.kernel.assign(weights.reshape(output.kernel.shape))
    return model


def test_the_negative_class_of_a_binary_model_has_its_own_evidence_not_an_inverted_map():
    model = full_resolution_model(mixed=True)
    images = np.random.default_rng(6).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    cam = heatmaps.GradCam(model)
    positive = cam(images, classes=[1, 1])
    negative = cam(images, classes=[0, 0])
    assert positive.scaled.all() and negative.scaled.all()
    for yes, no in zip(positive.maps, negative.maps, strict=True):
        # Evidence for -logit is where the evidence for the logit is negative: disjoint places.
        assert ((yes > 0) & (no > 0)).sum() == 0 and (yes > 0).any() and (no > 0).any()
        assert not np.allclose(no, 1 - yes, atol=0.05)


def test_a_map_without_positive_evidence_stays_zero_and_is_marked_unscaled():
    # Positive weights throughout: everything is evidence for "yes", nothing for "no".
    model = full_resolution_model(mixed=False)
    images = np.random.default_rng(7).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    cam = heatmaps.GradCam(model)
    assert cam(images, classes=[1, 1]).scaled.all()
    found = cam(images, classes=[0, 0])
    assert not found.scaled.any() and (found.maps == 0).all()
    # Its prediction is "yes", so the default map is the scaled one, peaking at 1.
    default = cam(images)
    assert (default.classes == 1).all() and default.maps.max(axis=(1, 2)) == pytest.approx(1.0)


def test_mixed_precision_maps_match_float32_on_batches():
    keras.utils.set_random_seed(8)
    reference = models.build_scratch((64, 64, 3), 3, dropout=0.0, dense_units=8)
    images = np.random.default_rng(8).uniform(0, 255, (5, 64, 64, 3)).astype("float32")
    expected = heatmaps.GradCam(reference)(images, classes=[0, 1, 2, 0, 1])
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    mixed = models.build_scratch((64, 64, 3), 3, dropout=0.0, dense_units=8)
    keras.mixed_precision.set_dtype_policy("float32")
    mixed.set_weights(reference.get_weights())
    assert mixed.get_layer("conv4").compute_dtype == "bfloat16"
    # Two images a batch: three batches, traced.
    found = heatmaps.GradCam(mixed)(images, classes=[0, 1, 2, 0, 1], batch_size=2)
    assert found.maps.dtype == np.float32 and found.maps.shape == (5, 64, 64)
    assert np.isfinite(found.maps).all() and (found.scaled == expected.scaled).all()
    # bfloat16 keeps 8 bits of mantissa: the maps agree to a few hundredths.
    assert np.abs(found.maps - expected.maps).max() < 0.1
