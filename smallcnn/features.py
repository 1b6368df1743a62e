"""Conv-base features of one split, computed once and kept in HDF5."""

import dataclasses
import json
import logging
import time

import h5py
import numpy as np

from smallcnn import datasets, devices, models, registry
from smallcnn.atomic import atomic_write
from smallcnn.errors import UserError
from smallcnn.fingerprint import file_sha256

log = logging.getLogger(__name__)


def weights_record(source, weights_path):
    """{"source", "sha256"} of the weights a conv base was built with."""
    if not weights_path:
        return {"source": "none", "sha256": "none"}
    return {"source": source, "sha256": file_sha256(weights_path)}


def extract_features(
    images, out, conv_base, weights, image_size, batch_size, precision, seed, threads=None
):
    """Run the conv base over the split folder `images` and write `out` (HDF5).

    `conv_base`: {"name", "weights"} as in config.yaml; `weights`: the weights file, or None for
    random weights (seeded); `threads`: the job's CPU threads (None: TensorFlow's default).
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    runtime = devices.configure(precision, multi_gpu=False, threads=threads)
    image_size = tuple(int(side) for side in image_size)
    base = models.build_conv_base(conv_base["name"], weights, (*image_size, 3))
    record = weights_record(conv_base.get("weights", "none"), weights)
    attrs = {
        "base_model": conv_base["name"],
        "weights_source": record["source"],
        "weights_sha256": record["sha256"],
        "input_size": list(image_size),
        "preprocessing": registry.BASES[conv_base["name"]].preprocessing,
        "layer": base.layers[-1].name,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "precision": runtime.policy,
        "device": runtime.device,
        "intra_op_threads": runtime.intra_op_threads,
        "inter_op_threads": runtime.inter_op_threads,
    }
    write_features(base, images, out, image_size, batch_size, attrs)


def write_features(base, images, out, image_size, batch_size, attrs):
    """Write the base's output for every image of `images` to `out`, batch by batch.

    Memory stays flat in the number of images: each batch is written to its slice of a chunked
    dataset as it arrives; the file appears under its final name only when complete.
    """
    import tensorflow as tf

    image_set = datasets.load_images(images, image_size, batch_size)
    n = len(image_set.files)
    feature_shape = tuple(base.output_shape[1:])

    @tf.function(reduce_retracing=True)
    def compute(batch):
        return tf.cast(base(batch, training=False), tf.float32)

    started = time.perf_counter()
    with atomic_write(out, suffix=".partial") as partial, h5py.File(partial, "w") as h5:
        features = h5.create_dataset(
            "features",
            shape=(n, *feature_shape),
            dtype="float32",
            chunks=(min(batch_size, n), *feature_shape),
        )
        h5.create_dataset("labels", data=np.asarray(image_set.labels, dtype="int32"))
        h5.create_dataset("files", data=image_set.files, dtype=h5py.string_dtype())
        for key, value in attrs.items():
            h5.attrs[key] = json.dumps(value) if isinstance(value, list | dict) else value
        h5.attrs["class_names"] = json.dumps(image_set.class_names)
        written = 0
        for batch, _ in image_set.dataset:
            values = compute(batch).numpy()
            features[written : written + len(values)] = values
            written += len(values)
        if written != n:
            raise RuntimeError(f"wrote {written} feature rows for {n} images")
    seconds = time.perf_counter() - started
    log.info(
        "%s: %d images -> %s %s in %.1f s (%.1f images/s)",
        images,
        n,
        out,
        feature_shape,
        seconds,
        n / seconds,
    )


@dataclasses.dataclass
class FeatureSet:
    features: np.ndarray
    labels: np.ndarray
    files: list
    class_names: list
    attrs: dict


def read_features(path):
    """An HDF5 feature file, loaded whole (2,000 images of VGG16 at 150x150 are 65 MB)."""
    try:
        with h5py.File(path, "r") as h5:
            attrs = {}
            for key, value in h5.attrs.items():
                if isinstance(value, str) and value[:1] in "[{":
                    value = json.loads(value)
                attrs[key] = value
            return FeatureSet(
                features=h5["features"][...],
                labels=h5["labels"][...].astype("int32"),
                files=[f.decode() if isinstance(f, bytes) else f for f in h5["files"][...]],
                class_names=list(attrs["class_names"]),
                attrs=attrs,
            )
    except (OSError, KeyError) as error:
        raise UserError(
            f"{path} is not a feature file written by extract_features ({error})"
        ) from None
