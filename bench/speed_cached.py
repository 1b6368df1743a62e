"""One epoch of frozen and finetuned with and without validation on cached frozen-layer outputs,
and the largest difference of their validation figures on the same weights (speed.py, issue 13).
"""

import time

import common
import speed_epoch
import tables
from common import BOOK_BATCH

# Validation of frozen-base experiments on cached activations against the same experiment
# without.
TARGETS = {
    "frozen_epoch_vs_uncached": ("<=", 0.72),
    "finetuned_epoch_vs_uncached": ("<=", 0.80),
    "validation_max_abs_diff": ("<=", 1e-4),
}

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
            augmentation=common.pipeline_augmentation(),
            class_names=train.class_names,
            conv_base={"name": base.name, "weights": weights, "weights_sha256": record["sha256"]},
        )

    frozen = frozen_model()
    training.compile_model(frozen, FROZEN_SETTINGS, len(train.class_names), ["val_loss"])
    # Its own base: unfreezing block5 of a shared one would unfreeze the frozen model's too.
    finetuned = models.with_augmentation(
        frozen_model(), common.pipeline_augmentation(), 0, name="finetuned"
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
            speed_epoch.EPOCH_RUNS[f"{kind}_{variant}"] = (
                lambda callbacks, model=model, data=data, first=first: model.fit(
                    train.dataset,
                    validation_data=data,
                    epochs=1,
                    callbacks=[*first, *callbacks],
                    shuffle=False,
                    verbose=0,
                )
            )
    speed_epoch.EPOCH_RUNS["setups"] = setups
    speed_epoch.EPOCH_RUNS["validation"] = validation
    return {kind: round(entry["setup"], 3) for kind, entry in setups.items()}


def validation_difference():
    """Largest |cached - whole model| of the validation loss and accuracy, on the same weights."""
    differences = {}
    for kind, entry in speed_epoch.EPOCH_RUNS["setups"].items():
        whole = entry["model"].evaluate(
            speed_epoch.EPOCH_RUNS["validation"], verbose=0, return_dict=True
        )
        callback = entry["cached"].callbacks[0]
        cached = callback.head.evaluate(callback.batches.dataset, verbose=0, return_dict=True)
        differences[kind] = {key: abs(cached[key] - whole[key]) for key in whole}
    return differences


def measure(args, pipeline, train_dir, validation_dir, work):
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
            seconds[name].append(pipeline(speed_epoch.run_epoch, name))
    differences = pipeline(validation_difference)
    pipeline(speed_epoch.release_epochs)
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


def ratios(cached, key="median_seconds"):
    epochs = cached["epochs"]
    return {
        f"{kind}_epoch_vs_uncached": round(
            epochs[f"{kind}_cached"][key] / epochs[f"{kind}_uncached"][key], 3
        )
        for kind in ("frozen", "finetuned")
    }


def table(result):
    """The cached validation's epoch table and its ratios, as markdown."""
    block, settings = result["cached_validation"], result["settings"]
    rows = []
    for name, row in block["epochs"].items():
        kind, variant = name.split("_")
        rows.append(
            [
                kind,
                variant,
                f"{row['median_seconds']:.1f}",
                f"{row['min_seconds']:.1f}-{row['max_seconds']:.1f}",
                f"{row['median_cpu_seconds']:.1f}",
            ]
        )
    header = ["experiment", "validation", "epoch s (median)", "range", "CPU seconds"]
    return "\n".join(
        [
            f"One epoch of frozen and finetuned (VGG16 from {UNFREEZE_FROM}), "
            f"{settings['train_images']} training images in steps of {BOOK_BATCH} + "
            f"{settings['validation_images']} validation images, median of "
            f"{settings['epochs']} epochs after a warm-up epoch:",
            "",
            tables.markdown(header, rows, align="llrrr"),
            "",
            f"Once per job: {block['setup_seconds']} s (finetuned runs its frozen layers over "
            "the validation images once).",
            "",
            tables.ratios(result, TARGETS, digits=".3g"),
        ]
    )
