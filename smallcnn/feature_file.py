"""The features file: what a conv base (or its frozen layers) makes of one split, in HDF5.

The one owner of the format. The features stage writes it for the features experiments; a
frozen experiment validates on the validation split's file when its attributes say that the file
holds exactly what the model's frozen base makes of those images (`mismatch`); a finetuned
experiment writes one of its frozen layers' outputs per job.

Layout: `features` (float32, one row per image), one `features_<k>` more per further output
when the frozen layers feed the rest of the model through several tensors, `labels` (int32),
`files` (paths relative to the split folder), and attributes saying how it was made
(`run_attrs`); lists and dicts among them are stored as JSON.
"""

import collections
import concurrent.futures
import dataclasses
import json

import h5py
import numpy as np

from smallcnn import registry
from smallcnn.atomic import atomic_write
from smallcnn.errors import UserError

# Batches of outputs computed but not yet written, at most: the writer keeps up unless the disk
# is slow, and then the model waits instead of memory growing.
WRITES_PENDING = 2
# The attributes that decide whether a file holds what a model's frozen base makes of the
# images: its base, weights, input size, precision and layer, and the classes' order.
IDENTITY_KEYS = (
    "base_model",
    "weights_sha256",
    "input_size",
    "precision",
    "layer",
    "class_names",
)


def dataset_names(count):
    """HDF5 dataset of each output: "features" for the first, "features_<k>" for the others."""
    return ["features"] + [f"features_{k}" for k in range(1, count)]


def run_attrs(base_name, weights, image_size, layer, runtime, **extra):
    """The attributes of a file written by the conv base `base_name` with `weights`
    ({"source", "sha256"}), up to `layer`, at `runtime` (smallcnn.devices.Runtime)."""
    # Here and in `write`, not at the top: reading a file needs no TensorFlow.
    import keras
    import tensorflow as tf

    return {
        "base_model": base_name,
        "weights_source": weights["source"],
        "weights_sha256": weights["sha256"],
        "input_size": list(image_size),
        "preprocessing": registry.BASES[base_name].preprocessing,
        "layer": layer,
        **extra,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "precision": runtime.policy,
        "device": runtime.device,
        "intra_op_threads": runtime.intra_op_threads,
        "inter_op_threads": runtime.inter_op_threads,
    }


def write(model, image_set, batch_size, out, attrs):
    """Run `model` over `image_set` (smallcnn.datasets.ImageSet) and write every output of it to
    `out`, batch by batch; returns the number of rows.

    Three things overlap: tf.data decodes and resizes the next batches in its own threads
    (parallel map, prefetch), the model runs on the current batch in this thread, and a writer
    thread copies the previous batch's outputs into the file. At most WRITES_PENDING batches of
    outputs wait for the writer, so memory stays flat in the number of images; the file
    appears under its final name only when complete.
    """
    import keras
    import tensorflow as tf

    n = len(image_set.files)
    outputs = model.outputs

    # One trace for every batch size (the last batch is smaller): a conv base takes as long to
    # trace as to run a few batches.
    @tf.function(input_signature=[image_set.dataset.element_spec[0]])
    def compute(batch):
        return [tf.cast(v, tf.float32) for v in keras.tree.flatten(model(batch, training=False))]

    with (
        atomic_write(out, suffix=".partial") as partial,
        h5py.File(partial, "w") as h5,
        concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="feature-writer") as writer,
    ):
        sets = [
            h5.create_dataset(
                name,
                shape=(n, *t.shape[1:]),
                dtype="float32",
                chunks=(min(batch_size, n), *t.shape[1:]),
            )
            for name, t in zip(dataset_names(len(outputs)), outputs, strict=True)
        ]
        h5.create_dataset("labels", data=np.asarray(image_set.labels, dtype="int32"))
        h5.create_dataset("files", data=image_set.files, dtype=h5py.string_dtype())
        for key, value in {**attrs, "class_names": image_set.class_names}.items():
            h5.attrs[key] = json.dumps(value) if isinstance(value, list | dict) else value
        written, pending = 0, collections.deque()
        for batch, _ in image_set.dataset:
            values = [v.numpy() for v in compute(batch)]
            pending.append(writer.submit(_write_rows, sets, written, values))
            written += len(values[0])
            if len(pending) > WRITES_PENDING:
                pending.popleft().result()
        for job in pending:
            job.result()
        if written != n:
            raise RuntimeError(f"wrote {written} feature rows for {n} images")
    return written


def _write_rows(sets, start, values):
    for dataset, value in zip(sets, values, strict=True):
        dataset[start : start + len(value)] = value


@dataclasses.dataclass
class FeatureSet:
    features: np.ndarray
    labels: np.ndarray
    files: list
    class_names: list
    attrs: dict


def _attrs(h5):
    attrs = {}
    for key, value in h5.attrs.items():
        if isinstance(value, str) and value[:1] in "[{":
            value = json.loads(value)
        attrs[key] = value
    return attrs


def _files(h5):
    return [f.decode() if isinstance(f, bytes) else f for f in h5["files"][...]]


def read(path):
    """A features file loaded whole (2,000 images of VGG16 at 150x150 are 65 MB)."""
    try:
        with h5py.File(path, "r") as h5:
            attrs = _attrs(h5)
            return FeatureSet(
                features=h5["features"][...],
                labels=h5["labels"][...].astype("int32"),
                files=_files(h5),
                class_names=list(attrs["class_names"]),
                attrs=attrs,
            )
    except (OSError, KeyError) as error:
        raise UserError(
            f"{path} is not a feature file written by extract_features ({error})"
        ) from None


def mismatch(path, expected, files):
    """None when the file at `path` holds what `expected` (run_attrs plus class_names) describes,
    for exactly `files`; else why not."""
    with h5py.File(path, "r") as h5:
        attrs = _attrs(h5)
        found_files = _files(h5)
    for key in IDENTITY_KEYS:
        value, found = expected[key], attrs.get(key)
        found = list(found) if isinstance(value, list) and found is not None else found
        if found != value:
            return f"{path} does not fit: its {key} is {found!r}, the model's {value!r}"
    if found_files != files:
        return f"{path} does not fit: it was written for other validation images"
    return None


def open_outputs(path, count):
    """The open file, its first `count` output datasets (unread) and its labels."""
    h5 = h5py.File(path, "r")
    return h5, [h5[name] for name in dataset_names(count)], h5["labels"][...]
