"""Speed of the pipeline against the book's way on the same machine, data and run.

Feature extraction (VGG16 base) and one epoch of the augmented model, each measured three ways:
(a) the book's: ImageDataGenerator.flow_from_directory, conv_base.predict per batch / model.fit
    on the generator (float32, as the book);
(b) the pipeline's own public functions (smallcnn.features.extract_features; smallcnn.datasets +
    smallcnn.models + one model.fit epoch), at the precision `precision` resolves to here;
(c) the compute bound: the same base / model on tensors already in memory, at (b)'s precision.
Also the peak RSS of the pipeline's feature extraction at N and 4N images, and (issue 13) one
epoch of frozen and finetuned with validation on cached frozen-layer outputs against the same
epoch without, plus the largest difference of their validation figures on the same weights.

    .venv/bin/python bench/speed.py --quick      # < 10 min on 2 cores
    .venv/bin/python bench/speed.py              # 2,000 / 1,000 images as in the book
    .venv/bin/python bench/speed.py --quick --only-cached    # the cached validation alone

Prints markdown tables and writes results/bench/speed.json.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: E402  (after the environment that silences TensorFlow)
import yaml  # noqa: E402

TARGETS = {
    "feature_extraction_speedup": (">=", 2.0),
    "feature_extraction_vs_compute_bound": ("<=", 1.25),
    "augmented_epoch_time_ratio": ("<=", 0.5),
    "augmented_epoch_vs_compute_bound": ("<=", 1.25),
}
# Validation of frozen-base experiments on cached activations against the same experiment
# without (issue 13).
CACHED_TARGETS = {
    "frozen_epoch_vs_uncached": ("<=", 0.72),
    "finetuned_epoch_vs_uncached": ("<=", 0.80),
    "validation_max_abs_diff": ("<=", 1e-4),
}
# The book's augmented-model data generator (DLwP listing 5.14) and batch size.
BOOK_AUGMENTATION = {
    "rotation_range": 40,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}
BOOK_BATCH = 20
# full: the book's 2,000 training images; quick: fewer, enough for stable medians.
PRESETS = {
    "full": {"images": 2000, "repeats": 3, "epochs": 3},
    "quick": {"images": 160, "repeats": 3, "epochs": 3},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images (under 10 minutes)")
    parser.add_argument("--images", type=int, help="training images (feature extraction set)")
    parser.add_argument("--size", type=int, help="image side in pixels (default 150)")
    parser.add_argument("--repeats", type=int, help="timed repeats of feature extraction")
    parser.add_argument("--epochs", type=int, help="timed epochs after the warm-up epoch")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "float32", "mixed"],
        help="the pipeline's precision setting, as config.yaml's `precision`",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="the pipeline's feature batch (features.smk)"
    )
    parser.add_argument("--data", type=Path, default=common.PHOTOS_ZIP, help="Kaggle-layout zip")
    parser.add_argument("--out", type=Path, default=common.REPO / "results/bench/speed.json")
    parser.add_argument(
        "--only-cached",
        action="store_true",
        help="measure only the cached validation of frozen and finetuned (issue 13)",
    )
    args = parser.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full"]
    args.images = args.images or preset["images"]
    args.repeats = args.repeats or preset["repeats"]
    args.epochs = args.epochs or preset["epochs"]
    args.size = args.size or 150
    if args.images < 4 or args.images % 2:
        parser.error("--images must be an even number of at least 4")
    return args


def pipeline_augmentation():
    """The pipeline's augmentation settings: config.yaml's defaults, the book's values."""
    return yaml.safe_load((common.REPO / "config.yaml").read_text())["augmentation"]


def pipeline_policy(precision):
    """The Keras dtype policy the pipeline picks for `precision` on this machine."""
    import tensorflow as tf

    from smallcnn import devices

    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    return devices.resolve_policy(precision, has_gpu, devices.cpu_flags())


# ---------------------------------------------------------------- feature extraction


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


def release_compute_bound():
    _compute_bound.clear()


def run_compute_bound():
    for batch in _compute_bound["batches"]:
        _compute_bound["compute"](batch).numpy()


def measure_feature_extraction(args, workers, train_dir, warmup_dir, work, policy):
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
    # Interleaved: a change in the machine's load spreads over every variant.
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run(train_dir))
    pipeline(release_compute_bound)
    return {name: common.summarize(seconds, n) for name, seconds in times.items()}


# ---------------------------------------------------------------- one augmented epoch


def book_model(input_shape):
    """DLwP listing 5.13: the small convnet with dropout, RMSprop 1e-4 (float32)."""
    import keras
    from keras import layers

    keras.mixed_precision.set_dtype_policy("float32")
    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(128, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(128, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        loss="binary_crossentropy",
        optimizer=keras.optimizers.RMSprop(learning_rate=1e-4),
        metrics=["accuracy"],
    )
    return model


# Each worker's prepared epoch runs (model and data), kept between the interleaved rounds.
_epoch_runs = {}


def prepare_book_epochs(train_dir, validation_dir, image_size):
    """DLwP listing 5.14: augmenting generator, fit with steps_per_epoch and validation_steps."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    train_datagen = ImageDataGenerator(rescale=1.0 / 255, **BOOK_AUGMENTATION)
    test_datagen = ImageDataGenerator(rescale=1.0 / 255)
    train_generator = train_datagen.flow_from_directory(
        str(train_dir), target_size=image_size, batch_size=BOOK_BATCH, class_mode="binary"
    )
    validation_generator = test_datagen.flow_from_directory(
        str(validation_dir), target_size=image_size, batch_size=BOOK_BATCH, class_mode="binary"
    )
    model = book_model((*image_size, 3))
    _epoch_runs["book"] = lambda callbacks: model.fit(
        train_generator,
        steps_per_epoch=len(train_generator),
        epochs=1,
        validation_data=validation_generator,
        validation_steps=len(validation_generator),
        callbacks=callbacks,
        verbose=0,
    )


def pipeline_model(image_size, class_names, seed=0):
    from smallcnn import models, training

    model = models.build_scratch(
        (*image_size, 3),
        len(class_names),
        dropout=0.5,
        dense_units=512,
        augmentation=pipeline_augmentation(),
        seed=seed,
        class_names=class_names,
    )
    training.compile_model(
        model, {"optimizer": "rmsprop", "learning_rate": 1e-4}, len(class_names), ["val_loss"]
    )
    return model


def prepare_pipeline_epochs(train_dir, validation_dir, image_size, precision, cache_dir):
    """The augmented experiment's input pipeline and model as smallcnn.training sets them up."""
    from smallcnn import datasets, devices

    devices.configure(precision, multi_gpu=False)
    train = datasets.load_images(
        train_dir, image_size, BOOK_BATCH, shuffle=True, seed=0, cache=True, cache_dir=cache_dir
    )
    validation = datasets.load_images(
        validation_dir,
        image_size,
        BOOK_BATCH,
        class_names=train.class_names,
        cache=True,
        cache_dir=cache_dir,
    )
    model = pipeline_model(image_size, train.class_names)
    # The datasets shuffle themselves; fit's own shuffle does not apply to datasets.
    _epoch_runs["pipeline"] = lambda callbacks: model.fit(
        train.dataset,
        validation_data=validation.dataset,
        epochs=1,
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    )


def prepare_compute_bound_epochs(train_dir, validation_dir, image_size, policy):
    """The pipeline's model (augmentation layers included) fed from tensors in memory."""
    import keras
    import tensorflow as tf

    from smallcnn import datasets

    def in_memory(directory, class_names=None):
        image_set = datasets.load_images(directory, image_size, BOOK_BATCH, class_names=class_names)
        batches = list(image_set.dataset)
        images = tf.concat([images for images, _ in batches], axis=0)
        labels = tf.concat([labels for _, labels in batches], axis=0)
        dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(BOOK_BATCH)
        return dataset.prefetch(tf.data.AUTOTUNE), image_set.class_names

    train, class_names = in_memory(train_dir)
    validation, _ = in_memory(validation_dir, class_names)
    keras.mixed_precision.set_dtype_policy(policy)
    model = pipeline_model(image_size, class_names)
    _epoch_runs["compute_bound"] = lambda callbacks: model.fit(
        train, validation_data=validation, epochs=1, callbacks=callbacks, shuffle=False, verbose=0
    )


def run_epoch(name):
    """Wall and CPU seconds of one epoch (training and validation) as Keras times it.

    Timed by a callback, not around fit(): here fit() returned up to 5 s after its last
    callback (while tearing down), a cost of calling fit() once per epoch only.
    """
    timer = common.epoch_timer()
    _epoch_runs[name]([timer])
    return {"wall": timer.seconds[-1], "cpu": timer.cpu_seconds[-1]}


def release_epochs():
    _epoch_runs.clear()


def measure_augmented_epoch(args, workers, train_dir, validation_dir, work, policy):
    """One fit epoch per variant per round, rounds interleaved; the first round is a warm-up
    (tracing, the pipeline's cache filling) and reported apart."""
    book, pipeline = workers
    image_size = (args.size, args.size)
    book(prepare_book_epochs, train_dir, validation_dir, image_size)
    pipeline(
        prepare_pipeline_epochs,
        train_dir,
        validation_dir,
        image_size,
        args.precision,
        work / "cache",
    )
    pipeline(prepare_compute_bound_epochs, train_dir, validation_dir, image_size, policy)
    workers_of = {"book": book, "pipeline": pipeline, "compute_bound": pipeline}
    seconds = {name: [] for name in workers_of}
    for _ in range(1 + args.epochs):
        for name, worker in workers_of.items():
            seconds[name].append(worker(run_epoch, name))
    book(release_epochs)
    pipeline(release_epochs)
    return {
        name: {"first_epoch_seconds": round(times[0]["wall"], 3), **common.summarize(times[1:])}
        for name, times in seconds.items()
    }


# ---------------------------------------------------------------- cached validation

# config.yaml's frozen and finetuned settings, and the book's layer to unfreeze from.
FROZEN_SETTINGS = {"batch_size": 20, "optimizer": "rmsprop", "learning_rate": 2e-5}
FINETUNED_SETTINGS = {"batch_size": 20, "optimizer": "rmsprop", "learning_rate": 1e-5}
UNFREEZE_FROM = "block5_conv1"


def prepare_cached_epochs(train_dir, validation_dir, image_size, precision, work):
    """frozen and finetuned VGG16 models as smallcnn.training sets them up, each with its
    end-to-end validation and its cached one (smallcnn.cached_validation.setup).

    The base's weights are a file (random, seeded) as with imagenet or offline weights, so that
    frozen validates on the features stage's file of the validation split, which is written here
    first (untimed: the pipeline has it already for the features experiment).
    """
    import keras

    from smallcnn import cached_validation, datasets, devices, features, models, training

    runtime = devices.configure(precision, multi_gpu=False)
    keras.utils.set_random_seed(0)
    weights = str(work / "vgg16.weights.h5")
    models.build_conv_base("vgg16", None, (*image_size, 3)).save_weights(weights)
    validation_features = work / "validation.h5"
    features.extract_features(
        str(validation_dir),
        validation_features,
        {"name": "vgg16", "weights": weights},
        weights,
        image_size,
        32,
        precision,
        seed=0,
    )
    train = datasets.load_images(
        train_dir, image_size, BOOK_BATCH, shuffle=True, seed=0, cache=True, cache_dir=work
    )
    validation = datasets.load_images(
        validation_dir, image_size, BOOK_BATCH, class_names=train.class_names, cache=True
    ).dataset
    record = features.weights_record(weights, weights)

    def frozen_model():
        base = models.build_conv_base("vgg16", weights, (*image_size, 3))
        return models.build_frozen(
            base,
            len(train.class_names),
            dense_units=256,
            dropout=0.0,
            augmentation=pipeline_augmentation(),
            class_names=train.class_names,
            conv_base={"name": base.name, "weights": weights, "weights_sha256": record["sha256"]},
        )

    frozen = frozen_model()
    training.compile_model(frozen, FROZEN_SETTINGS, len(train.class_names), ["val_loss"])
    # Its own base: unfreezing block5 of a shared one would unfreeze the frozen model's too.
    finetuned = models.with_augmentation(
        frozen_model(), pipeline_augmentation(), 0, name="finetuned"
    )
    models.make_finetunable(finetuned, UNFREEZE_FROM)
    training.compile_model(finetuned, FINETUNED_SETTINGS, len(train.class_names), ["val_loss"])
    inputs = {"validation": str(validation_dir), "validation_features": str(validation_features)}
    setups = {}
    for kind, model, settings in (
        ("frozen", frozen, FROZEN_SETTINGS),
        ("finetuned", finetuned, FINETUNED_SETTINGS),
    ):
        settings = {
            **settings,
            "experiment": kind,
            "kind": kind,
            "seed": 0,
            "image_size": list(image_size),
            "cache_frozen": True,
            "conv_base": {"name": "vgg16", "weights": weights, "unfreeze_from": UNFREEZE_FROM},
        }
        started = time.perf_counter()
        cache_dir = work / kind
        cache_dir.mkdir()
        cached = cached_validation.setup(model, settings, inputs, None, cache_dir, runtime)
        if not cached.callbacks:
            raise RuntimeError(f"{kind}: the cached validation did not apply")
        if kind == "frozen" and any(cache_dir.iterdir()):
            raise RuntimeError("frozen: the features file was not used")
        setups[kind] = {"model": model, "cached": cached, "setup": time.perf_counter() - started}
        for variant, data, first in (
            ("uncached", validation, []),
            ("cached", None, cached.callbacks),
        ):
            _epoch_runs[f"{kind}_{variant}"] = (
                lambda callbacks, model=model, data=data, first=first: model.fit(
                    train.dataset,
                    validation_data=data,
                    epochs=1,
                    callbacks=[*first, *callbacks],
                    shuffle=False,
                    verbose=0,
                )
            )
    _epoch_runs["setups"] = setups
    _epoch_runs["validation"] = validation
    return {kind: round(entry["setup"], 3) for kind, entry in setups.items()}


def validation_difference():
    """Largest |cached - whole model| of the validation loss and accuracy, on the same weights."""
    differences = {}
    for kind, entry in _epoch_runs["setups"].items():
        whole = entry["model"].evaluate(_epoch_runs["validation"], verbose=0, return_dict=True)
        callback = entry["cached"].callbacks[0]
        cached = callback.head.evaluate(callback.batches.dataset, verbose=0, return_dict=True)
        differences[kind] = {key: abs(cached[key] - whole[key]) for key in whole}
    return differences


def measure_cached_validation(args, pipeline, train_dir, validation_dir, work):
    """One epoch of frozen and finetuned with and without the cached validation, interleaved
    rounds, the first a warm-up; then both validations of each model on its final weights."""
    image_size = (args.size, args.size)
    setup_seconds = pipeline(
        prepare_cached_epochs, train_dir, validation_dir, image_size, args.precision, work
    )
    names = [f"{k}_{v}" for k in ("frozen", "finetuned") for v in ("uncached", "cached")]
    seconds = {name: [] for name in names}
    for _ in range(1 + args.epochs):
        for name in names:
            seconds[name].append(pipeline(run_epoch, name))
    differences = pipeline(validation_difference)
    pipeline(release_epochs)
    epochs = {
        name: {"first_epoch_seconds": round(times[0]["wall"], 3), **common.summarize(times[1:])}
        for name, times in seconds.items()
    }
    return {
        "epochs": epochs,
        # Once per job: frozen checks the features file, finetuned runs its frozen layers.
        "setup_seconds": setup_seconds,
        "validation_differences": differences,
        "validation_max_abs_diff": max(d for kind in differences.values() for d in kind.values()),
    }


def cached_ratios(cached, key="median_seconds"):
    epochs = cached["epochs"]
    return {
        f"{kind}_epoch_vs_uncached": round(
            epochs[f"{kind}_cached"][key] / epochs[f"{kind}_uncached"][key], 3
        )
        for kind in ("frozen", "finetuned")
    }


def cached_table(result):
    block = result["cached_validation"]
    lines = [
        f"One epoch of frozen and finetuned (VGG16 from {UNFREEZE_FROM}), "
        f"{result['settings']['train_images']} training images in steps of {BOOK_BATCH} + "
        f"{result['settings']['validation_images']} validation images, median of "
        f"{result['settings']['epochs']} epochs after a warm-up epoch:",
        "",
        "| experiment | validation | epoch s (median) | range | CPU seconds |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, row in block["epochs"].items():
        kind, variant = name.split("_")
        lines.append(
            f"| {kind} | {variant} | {row['median_seconds']:.1f} | {row['min_seconds']:.1f}-"
            f"{row['max_seconds']:.1f} | {row['median_cpu_seconds']:.1f} |"
        )
    lines += [
        "",
        f"Once per job: {block['setup_seconds']} s (finetuned runs its frozen layers over the "
        "validation images once).",
        "",
        "| ratio | measured | target | met | in CPU time |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for key in CACHED_TARGETS:
        op, bound = CACHED_TARGETS[key]
        value = result[key]
        cpu = result["cpu_time_ratios"].get(key)
        lines.append(
            f"| {key} | {value:.3g} | {op} {bound} | {'yes' if _met(op, bound, value) else 'NO'}"
            f" | {'' if cpu is None else f'{cpu:.2f}'} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- memory


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


# ---------------------------------------------------------------- report


def ratios(features, epoch, key="median_seconds"):
    """The four target ratios, from wall time (`median_seconds`) or CPU time."""

    def median(block, name):
        return block[name][key]

    return {
        # Same images for both, so the ratio of images/s is the inverse ratio of times.
        "feature_extraction_speedup": round(
            median(features, "book") / median(features, "pipeline"), 3
        ),
        "feature_extraction_vs_compute_bound": round(
            median(features, "pipeline") / median(features, "compute_bound"), 3
        ),
        "augmented_epoch_time_ratio": round(median(epoch, "pipeline") / median(epoch, "book"), 3),
        "augmented_epoch_vs_compute_bound": round(
            median(epoch, "pipeline") / median(epoch, "compute_bound"), 3
        ),
    }


def met(key, value):
    return _met(*{**TARGETS, **CACHED_TARGETS}[key], value)


def _met(op, bound, value):
    return value >= bound if op == ">=" else value <= bound


LABELS = {
    "book": "(a) book: ImageDataGenerator",
    "pipeline": "(b) pipeline",
    "compute_bound": "(c) compute bound, in memory",
}


def tables(result):
    f, e, m = result["feature_extraction"], result["augmented_epoch"], result["memory"]
    settings = result["settings"]
    size = settings["image_size"]
    lines = [
        f"Feature extraction, VGG16 base at {size}x{size}, {f['book']['images']} images, "
        f"median of {settings['repeats']}:",
        "",
        "| variant | seconds (median) | range | images/s | CPU seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, label in LABELS.items():
        row = f[name]
        lines.append(
            f"| {label} | {row['median_seconds']:.1f} | {row['min_seconds']:.1f}-"
            f"{row['max_seconds']:.1f} | {row['images_per_second']:.2f} | "
            f"{row['median_cpu_seconds']:.1f} |"
        )
    lines += [
        "",
        f"One epoch of the augmented model, {settings['train_images']} training images in steps "
        f"of {BOOK_BATCH} + {settings['validation_images']} validation images, median of "
        f"{settings['epochs']} epochs after a warm-up epoch:",
        "",
        "| variant | first epoch s | epoch s (median) | range | CPU seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, label in LABELS.items():
        row = e[name]
        lines.append(
            f"| {label} | {row['first_epoch_seconds']:.1f} | {row['median_seconds']:.1f} | "
            f"{row['min_seconds']:.1f}-{row['max_seconds']:.1f} | {row['median_cpu_seconds']:.1f} |"
        )
    lines += [
        "",
        f"Peak RSS of the pipeline's feature extraction: {m['peak_rss_mb_n']:.0f} MB at "
        f"{m['images_n']} images, {m['peak_rss_mb_4n']:.0f} MB at {m['images_4n']} "
        f"({m['growth']:+.1%}; target < +10%)",
        "",
        "| ratio | measured | target | met | in CPU time |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for key, (op, bound) in TARGETS.items():
        value = result[key]
        lines.append(
            f"| {key} | {value:.2f} | {op} {bound} | {'yes' if met(key, value) else 'NO'} | "
            f"{result['cpu_time_ratios'][key]:.2f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = common.load_average()
    n_train = args.images
    n_validation = max(2, args.images // 2)
    with tempfile.TemporaryDirectory(prefix="smallcnn-speed-") as tmp:
        work = Path(tmp)
        data = common.make_data(
            work / "data",
            {"train": n_train // 2, "validation": n_validation // 2, "warmup": 2},
            args.data,
        )
        train_dir, validation_dir = work / "data/train", work / "data/validation"
        common.read_all_files(work / "data")
        print(f"data: {data}", file=sys.stderr)
        with (
            common.Worker(common.tensorflow_defaults_env()) as book,
            common.Worker(os.environ, preload=["smallcnn"]) as pipeline,
        ):
            setup = {
                "book": book(common.tensorflow_setup),
                "pipeline": pipeline(common.tensorflow_setup),
            }
            policy = pipeline(pipeline_policy, args.precision)
            machine = pipeline(common.machine)
            workers = (book, pipeline)
            if not args.only_cached:
                features = measure_feature_extraction(
                    args, workers, train_dir, work / "data/warmup", work, policy
                )
                epoch = measure_augmented_epoch(
                    args, workers, train_dir, validation_dir, work, policy
                )
            cached = measure_cached_validation(args, pipeline, train_dir, validation_dir, work)
        if not args.only_cached:
            memory = measure_memory(args, train_dir, work)
    result = {
        "machine": machine,
        "load_average": {"before": load_before, "after": common.load_average()},
        "data": data,
        "precision": {
            "setting": args.precision,
            "pipeline_and_compute_bound": policy,
            "book": "float32",
        },
        # (a) runs with TensorFlow's defaults, (b) and (c) with whatever smallcnn sets up.
        "tensorflow_setup": setup,
        "settings": {
            "mode": "quick" if args.quick else "full",
            "image_size": args.size,
            "train_images": n_train,
            "validation_images": n_validation,
            "repeats": args.repeats,
            "epochs": args.epochs,
            "feature_batch_size": {"book": BOOK_BATCH, "pipeline": args.batch_size},
            "epoch_batch_size": BOOK_BATCH,
        },
        "cached_validation": cached,
    }
    targets = dict(CACHED_TARGETS)
    result.update(cached_ratios(cached))
    result["validation_max_abs_diff"] = cached["validation_max_abs_diff"]
    # Supplementary: the same ratios in CPU time, less disturbed by other jobs on the machine.
    result["cpu_time_ratios"] = cached_ratios(cached, "median_cpu_seconds")
    if not args.only_cached:
        result.update(feature_extraction=features, augmented_epoch=epoch, memory=memory)
        result.update(ratios(features, epoch))
        result["cpu_time_ratios"].update(ratios(features, epoch, "median_cpu_seconds"))
        targets.update(TARGETS)
    result["targets"] = {key: f"{op} {bound}" for key, (op, bound) in targets.items()}
    result["targets_met"] = {key: met(key, result[key]) for key in targets}
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['date']}; "
        f"load average before {load_before}, after {result['load_average']['after']}; "
        f"{data}; (b)/(c) precision {policy}; oneDNN (a) {setup['book']['onednn']}, "
        f"(b)/(c) {setup['pipeline']['onednn']}\n"
    )
    if not args.only_cached:
        print(tables(result) + "\n")
    print(cached_table(result))
    print(f"\nwrote {args.out} in {result['wall_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
