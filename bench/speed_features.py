"""Feature extraction with the VGG16 base, three ways, and the pipeline's peak memory (speed.py).

(a) the book's ImageDataGenerator with conv_base.predict per batch, (b) the pipeline's own
smallcnn.features.extract_features, (c) the compute bound: the same base on batches already in
memory; and the peak RSS of (b) at N and 4N images. (d), the pipeline's input side alone
(decoding and resizing, no model), says how much of (b) the convolutions leave to the rest.
"""

import common
import tables
from common import BOOK_BATCH

LABELS = {
    "book": "(a) book: ImageDataGenerator",
    "pipeline": "(b) pipeline",
    "compute_bound": "(c) compute bound, in memory",
}
INPUT_LABEL = "(d) input alone: decode and resize"
TARGETS = {
    "feature_extraction_speedup": (">=", 2.0),
    "feature_extraction_vs_compute_bound": ("<=", 1.25),
    # The fastest repeat of each: the one the machine's other load disturbed least.
    "feature_extraction_vs_compute_bound_fastest": ("<=", 1.2),
}


def book_feature_extraction(directory, image_size):
    """DLwP listing 5.17: rescale-only generator, conv_base.predict batch by batch (float32)."""
    import keras
    import numpy as np
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    keras.mixed_precision.set_dtype_policy("float32")
    conv_base = keras.applications.VGG16(
        weights=None, include_top=False, input_shape=(*image_size, 3)
    )
    datagen = ImageDataGenerator(rescale=1.0 / 255)
    generator = datagen.flow_from_directory(
        str(directory), target_size=image_size, batch_size=BOOK_BATCH, class_mode="binary"
    )
    sample_count = generator.samples
    features = np.zeros((sample_count, *conv_base.output_shape[1:]))
    labels = np.zeros(sample_count)
    i = 0
    for inputs_batch, labels_batch in generator:
        features_batch = conv_base.predict(inputs_batch, verbose=0)
        features[i * BOOK_BATCH : (i + 1) * BOOK_BATCH] = features_batch
        labels[i * BOOK_BATCH : (i + 1) * BOOK_BATCH] = labels_batch
        i += 1  # noqa: SIM113  (the book's code, kept as printed)
        if i * BOOK_BATCH >= sample_count:
            break
    return features, labels


def pipeline_feature_extraction(directory, out, image_size, batch_size, precision):
    from smallcnn.features import extract_features

    extract_features(
        images=str(directory),
        out=str(out),
        conv_base={"name": "vgg16", "weights": "none"},
        weights=None,
        image_size=image_size,
        batch_size=batch_size,
        precision=precision,
        seed=0,
    )


def in_memory_batches(directory, image_size, batch_size):
    """The decoded images of `directory` as a list of float32 batches held in memory."""
    from smallcnn import datasets

    image_set = datasets.load_images(directory, image_size, batch_size)
    return [images for images, _ in image_set.dataset]


# The compute-bound run's base and batches, kept in the worker between its timed repeats.
_compute_bound = {}


def prepare_compute_bound(directory, image_size, batch_size, policy):
    """Build the pipeline's conv base and load the images into memory, then warm up."""
    import keras
    import tensorflow as tf

    from smallcnn import models

    batches = in_memory_batches(directory, image_size, batch_size)
    keras.mixed_precision.set_dtype_policy(policy)
    base = models.build_conv_base("vgg16", None, (*image_size, 3))

    @tf.function(reduce_retracing=True)
    def compute(batch):
        return tf.cast(base(batch, training=False), tf.float32)

    for shape in {tuple(b.shape) for b in batches}:
        compute(next(b for b in batches if tuple(b.shape) == shape)).numpy()
    _compute_bound.update(compute=compute, batches=batches)


def input_only(directory, image_size, batch_size):
    """The pipeline's input side without the model: every image decoded and resized in batches,
    as extract_features reads them."""
    from smallcnn import datasets

    for _ in datasets.load_images(directory, image_size, batch_size).dataset:
        pass


def release_compute_bound():
    _compute_bound.clear()


def run_compute_bound():
    for batch in _compute_bound["batches"]:
        _compute_bound["compute"](batch).numpy()


def measure(args, workers, train_dir, warmup_dir, work, policy):
    """Seconds of each variant over the same images, repeated round after round."""
    book, pipeline = workers
    image_size = (args.size, args.size)
    n = common.count_images(train_dir)
    out = work / "features.h5"
    runs = {
        "book": lambda d: book(common.timed, book_feature_extraction, d, image_size),
        "pipeline": lambda d: pipeline(
            common.timed,
            pipeline_feature_extraction,
            d,
            out,
            image_size,
            args.batch_size,
            args.precision,
        ),
    }
    # Warm-up: library loading, thread pools and kernel selection, on a few images.
    for run in runs.values():
        run(warmup_dir)
    pipeline(prepare_compute_bound, train_dir, image_size, args.batch_size, policy)
    runs["compute_bound"] = lambda d: pipeline(common.timed, run_compute_bound)
    runs["input_only"] = lambda d: pipeline(
        common.timed, input_only, d, image_size, args.batch_size
    )
    # Interleaved: a change in the machine's load spreads over every variant.
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run(train_dir))
    pipeline(release_compute_bound)
    return {name: common.summarize(seconds, n) for name, seconds in times.items()}


def measure_memory(args, train_dir, work):
    four = common.repeat_folder(train_dir, work / "train-x4", 4)
    image_size = (args.size, args.size)
    n = common.count_images(train_dir)
    rss = {}
    for label, folder in (("n", train_dir), ("4n", four)):
        rss[label] = common.peak_rss_of_feature_extraction(
            folder, image_size, args.batch_size, args.precision, work / f"rss-{label}.h5"
        )
    return {
        "images_n": n,
        "images_4n": 4 * n,
        "peak_rss_mb_n": round(rss["n"], 1),
        "peak_rss_mb_4n": round(rss["4n"], 1),
        "growth": round(rss["4n"] / rss["n"] - 1, 4),
    }


def ratios(features, key="median_seconds"):
    """The target ratios, from wall time (`median_seconds`) or CPU time; `_fastest` from each
    variant's fastest repeat."""
    fastest = "min_seconds" if key == "median_seconds" else "min_cpu_seconds"
    pipeline, bound = features["pipeline"], features["compute_bound"]
    return {
        # Same images for both, so the ratio of images/s is the inverse ratio of times.
        "feature_extraction_speedup": round(features["book"][key] / pipeline[key], 3),
        "feature_extraction_vs_compute_bound": round(pipeline[key] / bound[key], 3),
        "feature_extraction_vs_compute_bound_fastest": round(pipeline[fastest] / bound[fastest], 3),
    }


def table(result):
    """The feature extraction table, the memory line and the ratios, as markdown."""
    f, m, settings = result["feature_extraction"], result["memory"], result["settings"]
    size = settings["image_size"]
    labels = {**LABELS, "input_only": INPUT_LABEL}
    rows = [
        [
            label,
            f"{row['median_seconds']:.1f}",
            f"{row['min_seconds']:.1f}-{row['max_seconds']:.1f}",
            f"{row['images_per_second']:.2f}",
            f"{row['median_cpu_seconds']:.1f}",
            f"{row['median_calling_thread_cpu_seconds']:.2f}",
            f"{row['median_cores_busy']:.2f}",
        ]
        for name, label in labels.items()
        if name in f
        for row in [f[name]]
    ]
    return "\n".join(
        [
            f"Feature extraction, VGG16 base at {size}x{size}, {f['book']['images']} images, "
            f"median of {settings['repeats']}:",
            "",
            tables.markdown(
                [
                    "variant",
                    "seconds (median)",
                    "range",
                    "images/s",
                    "CPU seconds",
                    "of them in the calling thread",
                    "cores busy",
                ],
                rows,
            ),
            "",
            f"Peak RSS of the pipeline's feature extraction: {m['peak_rss_mb_n']:.0f} MB at "
            f"{m['images_n']} images, {m['peak_rss_mb_4n']:.0f} MB at {m['images_4n']} "
            f"({m['growth']:+.1%}; target < +10%)",
            "",
            tables.ratios(result, TARGETS),
        ]
    )
