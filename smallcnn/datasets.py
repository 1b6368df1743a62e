"""Split folders (<split>/<label>/<image>) as tf.data pipelines.

Every image is decoded and resized once, the same way for training, evaluation, feature
extraction and prediction (bilinear, as image_dataset_from_directory does), and kept as uint8.
Training sets are cached decoded, so that after the first epoch the input pipeline costs a
memory copy per image and keeps up with the model; augmentation runs inside the model. A training
run's data (`training_data`) is either two split folders or two features files.
"""

import dataclasses
import logging
import math
import os
from pathlib import Path

from smallcnn import feature_file, folds, registry
from smallcnn.errors import UserError

log = logging.getLogger(__name__)

# The formats image_dataset_from_directory reads (tf.io.decode_image).
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# Decoded training sets up to this size are cached in memory, larger ones on disk.
MEMORY_CACHE_BYTES = 2 * 1024**3
# The shuffle buffer holds decoded images too: bounded so that huge sets do not fill memory.
SHUFFLE_BUFFER_BYTES = 512 * 1024**2


@dataclasses.dataclass
class ImageSet:
    dataset: object  # tf.data.Dataset of (float32 images in 0..255, int labels)
    files: list  # "<label>/<name>", relative to the split folder, in label then name order
    labels: list
    class_names: list


def single_path(value):
    """The path of a job input given as a path or a list of at most one (None when empty: the
    weights input of a base with random weights)."""
    if isinstance(value, str | os.PathLike):
        return str(value)
    return str(value[0]) if value else None


def class_names_in(directory):
    """Sorted names of the class sub-folders of a split folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a folder of class sub-folders")
    names = sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UserError(f"{directory} has no class sub-folders (expected <label>/<image> inside)")
    return names


def list_images(directory, class_names=None):
    """(files relative to `directory`, integer labels, class_names) of a split folder.

    `class_names` fixes the label order (the training split's); a split missing one of those
    classes is fine, one with a class the model does not know is an error.
    """
    directory = Path(directory)
    found = class_names_in(directory)
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise UserError(
            f"{directory} has classes the model was not trained on: {', '.join(unknown)}"
        )
    files, labels = [], []
    for label, name in enumerate(class_names):
        folder = directory / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path.relative_to(directory).as_posix())
                labels.append(label)
    if not files:
        raise UserError(f"{directory} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files, labels, list(class_names)


def decode_and_resize(data, image_size):
    """Encoded image bytes -> uint8 tensor (height, width, 3)."""
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(image, image_size, method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def load_images(
    directory,
    image_size,
    batch_size,
    *,
    class_names=None,
    shuffle=False,
    seed=0,
    cache=False,
    cache_dir=None,
    repeat=False,
):
    """A split folder as batches of (float32 images in 0..255, int32 labels).

    `cache`: keep the decoded images (in memory when they fit MEMORY_CACHE_BYTES, else in files
    under `cache_dir`, which the caller creates and removes). `shuffle` reshuffles every epoch,
    seeded. `repeat` for training with a fixed steps_per_epoch.
    """
    directory = Path(directory)
    files, labels, class_names = list_images(directory, class_names)
    return load_listed(
        [directory / f for f in files],
        labels,
        class_names,
        image_size,
        batch_size,
        files=files,
        shuffle=shuffle,
        seed=seed,
        cache=cache,
        cache_dir=cache_dir,
        cache_name=directory.name,
        repeat=repeat,
    )


def load_listed(
    paths,
    labels,
    class_names,
    image_size,
    batch_size,
    *,
    files=None,
    shuffle=False,
    seed=0,
    cache=False,
    cache_dir=None,
    cache_name="images",
    repeat=False,
):
    """Images given as a list of paths with their labels (indices into `class_names`), as
    load_images gives a split folder: a cross-validation fold takes its images from two split
    folders. `files` names them in the ImageSet (default: the paths)."""
    import tensorflow as tf

    paths = [str(path) for path in paths]
    files = list(files) if files is not None else paths
    labels = [int(label) for label in labels]
    if not paths:
        raise UserError("no images to load")
    image_size = tuple(int(side) for side in image_size)
    image_bytes = image_size[0] * image_size[1] * 3

    def load(path, label):
        return decode_and_resize(tf.io.read_file(path), image_size), label

    dataset = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int32)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        if len(files) * image_bytes <= MEMORY_CACHE_BYTES:
            dataset = dataset.cache()
        else:
            if cache_dir is None:
                raise ValueError("a disk cache needs cache_dir")
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            dataset = dataset.cache(str(Path(cache_dir) / cache_name))
            log.info(
                "caching %d decoded images of %s on disk in %s", len(files), cache_name, cache_dir
            )
    if repeat:
        dataset = dataset.repeat()
    if shuffle:
        buffer = max(1, min(len(files), SHUFFLE_BUFFER_BYTES // image_bytes))
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    # Batched cast: cheaper than one per image, and the cache stays uint8 (4x smaller).
    dataset = dataset.map(
        lambda images, batch_labels: (tf.cast(images, tf.float32), batch_labels),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return ImageSet(dataset=dataset, files=files, labels=labels, class_names=class_names)


@dataclasses.dataclass(kw_only=True)
class TrainingData:
    """What a training run trains and validates on, and what its model needs to know of it."""

    train: object  # tf.data.Dataset of (inputs, labels) batches, reshuffled every epoch
    validation: object  # the same of the validation split, in file order
    labels: list  # of the training split, for the class weights
    class_names: list
    input_shape: tuple
    steps: int  # per epoch
    # The conv base that made a features file's features, and its weights record ({"source",
    # "sha256"}); None when training on images.
    conv_base: dict | None = None
    weights: dict | None = None


def training_data(settings, inputs, cache_dir):
    """The data of a training run from its inputs: the split folders ("train", "validation"), or
    the features files of those splits for a kind that trains on features; with a cross-validation
    fold (`settings["fold"]`), that fold of both. `cache_dir` holds the disk cache of decoded
    images when they do not fit in memory."""
    if settings.get("fold") is not None:
        return _fold_data(settings, inputs, cache_dir)
    if registry.KINDS[settings["kind"]].trains_on_features:
        return _feature_data(settings, inputs)
    return _image_data(settings, inputs, cache_dir)


def _steps(settings, n):
    if settings.get("steps_per_epoch"):
        return settings["steps_per_epoch"]
    return math.ceil(n / settings["batch_size"])


def _feature_pipelines(settings, x_train, y_train, x_validation, y_validation):
    """tf.data pipelines of training features (shuffled, seeded) and validation features."""
    import tensorflow as tf

    batch_size = settings["batch_size"]
    dataset = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    if settings.get("steps_per_epoch"):
        dataset = dataset.repeat()
    dataset = dataset.shuffle(len(y_train), seed=settings["seed"])
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    validation = tf.data.Dataset.from_tensor_slices((x_validation, y_validation))
    validation = validation.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return dataset, validation


def _feature_sets(inputs):
    """The train and validation features files, checked to name the same classes."""
    sets = {
        split: feature_file.read(single_path(inputs[split])) for split in ("train", "validation")
    }
    if sets["validation"].class_names != sets["train"].class_names:
        raise UserError(
            f"validation classes {sets['validation'].class_names} differ from training classes "
            f"{sets['train'].class_names}"
        )
    return sets


def _feature_training_data(settings, sets, x_train, y_train, x_validation, y_validation):
    train, validation = _feature_pipelines(settings, x_train, y_train, x_validation, y_validation)
    attrs = sets["train"].attrs
    return TrainingData(
        train=train,
        validation=validation,
        labels=y_train,
        class_names=sets["train"].class_names,
        input_shape=x_train.shape[1:],
        steps=_steps(settings, len(y_train)),
        conv_base={
            "name": attrs["base_model"],
            "weights": attrs["weights_source"],
            "weights_sha256": attrs["weights_sha256"],
            "input_size": list(attrs["input_size"]),
        },
        weights={"source": attrs["weights_source"], "sha256": attrs["weights_sha256"]},
    )


def _feature_data(settings, inputs):
    sets = _feature_sets(inputs)
    train, validation = sets["train"], sets["validation"]
    return _feature_training_data(
        settings, sets, train.features, train.labels, validation.features, validation.labels
    )


def _image_data(settings, inputs, cache_dir):
    size = tuple(settings["image_size"])
    train = load_images(
        single_path(inputs["train"]),
        size,
        settings["batch_size"],
        shuffle=True,
        seed=settings["seed"],
        cache=True,
        cache_dir=cache_dir,
        repeat=bool(settings.get("steps_per_epoch")),
    )
    validation = load_images(
        single_path(inputs["validation"]),
        size,
        settings["batch_size"],
        class_names=train.class_names,
        cache=True,
        cache_dir=cache_dir,
    )
    return TrainingData(
        train=train.dataset,
        validation=validation.dataset,
        labels=train.labels,
        class_names=train.class_names,
        input_shape=(*size, 3),
        steps=_steps(settings, len(train.files)),
    )


def fold_partition(settings, inputs):
    """(the folds file's rows of the job's training seed, training paths, validation paths) of
    fold `settings["fold"]`."""
    rows = folds.read_folds(single_path(inputs["folds"]), settings["seed"], settings["folds"])
    return (rows, *folds.fold_paths(rows, settings["fold"]))


def fold_images(rows, paths, inputs, class_names, settings, **options):
    """The split copies `paths` (relative to results/data, as the folds file `rows` names them)
    from the job's split folders `inputs["train"]` and `inputs["validation"]`, as an ImageSet
    (load_listed's `options`)."""
    label_of = {row["path"]: row["label"] for row in rows}
    unknown = sorted({label_of[path] for path in paths} - set(class_names))
    if unknown:
        raise UserError(f"the folds file has classes {unknown} that the train split lacks")
    split_dirs = {split: single_path(inputs[split]) for split in ("train", "validation")}
    return load_listed(
        [folds.locate(path, split_dirs) for path in paths],
        [class_names.index(label_of[path]) for path in paths],
        class_names,
        tuple(settings["image_size"]),
        settings["batch_size"],
        files=paths,
        **options,
    )


def _fold_data(settings, inputs, cache_dir):
    """Fold `settings["fold"]` of the seed's partition (`inputs["folds"]`) validates, the other
    folds train. Images come from the split folders `inputs["train"]` and
    `inputs["validation"]`, or, for a kind that trains on features, rows of those splits'
    features files: nothing is extracted again per fold."""
    rows, train_paths, validation_paths = fold_partition(settings, inputs)
    log.info(
        "fold %d of %d: training on %d images, validating on %d",
        settings["fold"],
        settings["folds"],
        len(train_paths),
        len(validation_paths),
    )
    if registry.KINDS[settings["kind"]].trains_on_features:
        sets = _feature_sets(inputs)
        x_train, y_train = folds.select_rows(sets, train_paths)
        x_validation, y_validation = folds.select_rows(sets, validation_paths)
        return _feature_training_data(settings, sets, x_train, y_train, x_validation, y_validation)
    class_names = class_names_in(single_path(inputs["train"]))

    def listed(paths, **options):
        return fold_images(
            rows, paths, inputs, class_names, settings, cache=True, cache_dir=cache_dir, **options
        )

    train = listed(
        train_paths,
        shuffle=True,
        seed=settings["seed"],
        cache_name="train",
        repeat=bool(settings.get("steps_per_epoch")),
    )
    validation = listed(validation_paths, cache_name="validation")
    return TrainingData(
        train=train.dataset,
        validation=validation.dataset,
        labels=train.labels,
        class_names=class_names,
        input_shape=(*settings["image_size"], 3),
        steps=_steps(settings, len(train.files)),
    )


def fold_validation_images(settings, inputs, class_names, **options):
    """The fold's own validation images, from both split folders, as an ImageSet (load_listed's
    `options`): what cached validation and the TensorBoard diagnostics of a fold run on."""
    rows, _, validation = fold_partition(settings, inputs)
    return fold_images(rows, validation, inputs, class_names, settings, **options)
