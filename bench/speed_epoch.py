"""One epoch of the augmented model, three ways (speed.py).

(a) the book's augmenting ImageDataGenerator and model.fit on it, (b) the pipeline's datasets,
models and one model.fit epoch as smallcnn.training sets them up, (c) the compute bound: the same
model fed from tensors in memory.
"""

import common
import tables
from common import BOOK_BATCH
from speed_features import LABELS

TARGETS = {
    "augmented_epoch_time_ratio": ("<=", 0.5),
    "augmented_epoch_vs_compute_bound": ("<=", 1.25),
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
EPOCH_RUNS = {}


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
    EPOCH_RUNS["book"] = lambda callbacks: model.fit(
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
        augmentation=common.pipeline_augmentation(),
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
    EPOCH_RUNS["pipeline"] = lambda callbacks: model.fit(
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
    EPOCH_RUNS["compute_bound"] = lambda callbacks: model.fit(
        train, validation_data=validation, epochs=1, callbacks=callbacks, shuffle=False, verbose=0
    )


def run_epoch(name):
    """Wall and CPU seconds of one epoch (training and validation) as Keras times it.

    Timed by a callback, not around fit(): here fit() returned up to 5 s after its last
    callback (while tearing down), a cost of calling fit() once per epoch only.
    """
    timer = common.epoch_timer()
    EPOCH_RUNS[name]([timer])
    return {"wall": timer.seconds[-1], "cpu": timer.cpu_seconds[-1]}


def release_epochs():
    EPOCH_RUNS.clear()


def measure(args, workers, train_dir, validation_dir, work, policy):
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


def ratios(epoch, key="median_seconds"):
    """The target ratios, from wall time (`median_seconds`) or CPU time."""
    pipeline = epoch["pipeline"][key]
    return {
        "augmented_epoch_time_ratio": round(pipeline / epoch["book"][key], 3),
        "augmented_epoch_vs_compute_bound": round(pipeline / epoch["compute_bound"][key], 3),
    }


def table(result):
    """The epoch table and its ratios, as markdown."""
    e, settings = result["augmented_epoch"], result["settings"]
    rows = [
        [
            label,
            f"{row['first_epoch_seconds']:.1f}",
            f"{row['median_seconds']:.1f}",
            f"{row['min_seconds']:.1f}-{row['max_seconds']:.1f}",
            f"{row['median_cpu_seconds']:.1f}",
        ]
        for name, label in LABELS.items()
        for row in [e[name]]
    ]
    header = ["variant", "first epoch s", "epoch s (median)", "range", "CPU seconds"]
    return "\n".join(
        [
            f"One epoch of the augmented model, {settings['train_images']} training images in "
            f"steps of {BOOK_BATCH} + {settings['validation_images']} validation images, "
            f"median of {settings['epochs']} epochs after a warm-up epoch:",
            "",
            tables.markdown(header, rows),
            "",
            tables.ratios(result, TARGETS),
        ]
    )
