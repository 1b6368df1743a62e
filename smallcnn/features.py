"""Conv-base features of one split, computed once and kept in a features file (HDF5)."""

import logging
import time

import keras

from smallcnn import datasets, devices, feature_file, models
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
    keras.utils.set_random_seed(seed)
    runtime = devices.configure(precision, multi_gpu=False, threads=threads)
    image_size = tuple(int(side) for side in image_size)
    base = models.build_conv_base(conv_base["name"], weights, (*image_size, 3))
    record = weights_record(conv_base.get("weights", "none"), weights)
    attrs = feature_file.run_attrs(
        conv_base["name"], record, image_size, base.layers[-1].name, runtime
    )
    image_set = datasets.load_images(images, image_size, batch_size)
    started = time.perf_counter()
    n = feature_file.write(base, image_set, batch_size, out, attrs)
    seconds = time.perf_counter() - started
    log.info(
        "%s: %d images -> %s %s in %.1f s (%.1f images/s)",
        images,
        n,
        out,
        tuple(base.output_shape[1:]),
        seconds,
        n / seconds,
    )
