"""Conv-base features in HDF5: contents, attributes, and memory flat in the number of images."""

import json
import os
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest
from conftest import REPO, make_class_images

from smallcnn import datasets, feature_file, features, models


def test_features_file_holds_the_base_output_and_its_provenance(tmp_path):
    make_class_images(tmp_path / "train", per_class=5, size=(70, 50))
    weights = tmp_path / "vgg16.weights.h5"
    models.build_conv_base("vgg16", None, (64, 64, 3)).save_weights(weights)
    out = tmp_path / "features" / "train.h5"
    features.extract_features(
        images=tmp_path / "train",
        out=out,
        conv_base={"name": "vgg16", "weights": str(weights)},
        weights=str(weights),
        image_size=(64, 64),
        batch_size=4,
        precision="float32",
        seed=1,
    )
    with h5py.File(out) as h5:
        assert h5["features"].shape == (10, 2, 2, 512)
        assert h5["features"].dtype == np.float32
        assert h5["labels"][...].tolist() == [0] * 5 + [1] * 5
        files = [f.decode() for f in h5["files"][...]]
        attrs = dict(h5.attrs)
    assert files[0] == "cat/0.jpg"
    assert attrs["base_model"] == "vgg16"
    assert attrs["weights_source"] == str(weights)
    assert attrs["weights_sha256"] == features.file_sha256(weights)
    assert json.loads(attrs["input_size"]) == [64, 64]
    assert json.loads(attrs["class_names"]) == ["cat", "dog"]
    assert attrs["layer"] == "block5_pool"
    assert "preprocess_input" in attrs["preprocessing"]
    assert attrs["keras_version"] == keras.__version__
    assert attrs["tensorflow_version"]

    # The same numbers as the base on the same decoded images, every row in its place (batches
    # of 4, the last one of 2, written by the writer thread while the next batch runs).
    loaded = feature_file.read(out)
    base = models.build_conv_base("vgg16", str(weights), (64, 64, 3))
    images = next(iter(datasets.load_images(tmp_path / "train", (64, 64), 10).dataset))[0]
    np.testing.assert_allclose(loaded.features, np.asarray(base(images)), rtol=1e-4, atol=1e-3)
    assert not list(out.parent.glob("*.partial"))


def test_random_weights_are_recorded_as_none(tmp_path):
    make_class_images(tmp_path / "test", per_class=2, size=(32, 32))
    out = tmp_path / "test.h5"
    features.extract_features(
        tmp_path / "test", out, {"name": "vgg16", "weights": "none"}, None, (32, 32), 8, "auto", 1
    )
    loaded = feature_file.read(out)
    assert loaded.attrs["weights_source"] == "none"
    assert loaded.attrs["weights_sha256"] == "none"
    assert loaded.features.shape == (4, 1, 1, 512)


# A stand-in base with a large output (128x128x32 floats = 2 MB per image): if the features were
# held in memory, 4N images would need 3N x 2 MB more than N images, far above the noise.
MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    import keras
    from smallcnn import datasets, feature_file
    images, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.UpSampling2D(4)(keras.layers.Conv2D(32, 1)(inputs))
    base = keras.Model(inputs, x)
    feature_file.write(base, datasets.load_images(images, (32, 32), 8), 8, out, {})
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """
)
FEATURE_BYTES = 128 * 128 * 32 * 4


@pytest.mark.slow
def test_feature_memory_does_not_grow_with_the_number_of_images(tmp_path):
    n = 40
    peaks = {}
    for count in (n, 4 * n):
        folder = tmp_path / f"images{count}"
        make_class_images(folder, per_class=count // 2, size=(32, 32))
        result = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, folder, tmp_path / f"{count}.h5", str(count)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=600,
            check=True,
        )
        peaks[count] = int(result.stdout.split()[-1])
        with h5py.File(tmp_path / f"{count}.h5") as h5:
            assert h5["features"].shape == (count, 128, 128, 32)
    growth = peaks[4 * n] - peaks[n]
    assert growth < 0.15 * peaks[n], peaks
    # Holding the features would add 3N x 2 MB = 240 MB; streaming them measured ~30 MB.
    assert growth < 0.3 * (3 * n * FEATURE_BYTES), peaks
