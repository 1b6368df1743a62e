"""Small standalone measurements of the levers that could make the pipeline faster on this CPU.

Each configuration runs in its own interpreter (some levers, like oneDNN, are fixed when
TensorFlow is imported), configurations are interleaved round after round so that a change of
the machine's load spreads over all of them, and the median is reported.

    .venv/bin/python bench/levers.py inference   # VGG16 base: precision, batch size, XLA, oneDNN
    .venv/bin/python bench/levers.py training    # augmented model steps: precision, XLA, oneDNN
    .venv/bin/python bench/levers.py input       # decoding: every epoch vs once, parallel map
    .venv/bin/python bench/levers.py bf16-accuracy   # features classifier, bfloat16 vs float32

Writes results/bench/levers-<study>.json and prints a markdown table.
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: E402

OUT_DIR = common.REPO / "results" / "bench"


# ---------------------------------------------------------------- single points (child side)


def inference_point(size, policy, batch, jit, images, repeats):
    """images/s of the VGG16 base on a batch already in memory."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.mixed_precision.set_dtype_policy(policy)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    x = tf.constant(np.random.default_rng(0).uniform(0, 1, (batch, size, size, 3)), tf.float32)
    compute = tf.function(lambda t: tf.cast(base(t, training=False), tf.float32), jit_compile=jit)
    compute(x).numpy()
    compute(x).numpy()
    calls = max(1, round(images / batch))
    samples = [
        common.timed(lambda: [compute(x).numpy() for _ in range(calls)]) for _ in range(repeats)
    ]
    return rates(calls * batch, samples)


def training_point(size, policy, jit, augment, steps, epochs):
    """Seconds per training step of the augmented experiment's model on in-memory batches."""
    import keras
    import numpy as np
    import tensorflow as tf
    import yaml

    from smallcnn import models, training

    keras.mixed_precision.set_dtype_policy(policy)
    augmentation = None
    if augment:
        augmentation = yaml.safe_load((common.REPO / "config.yaml").read_text())["augmentation"]
    model = models.build_scratch(
        (size, size, 3), 2, dropout=0.5, dense_units=512, augmentation=augmentation, seed=0
    )
    training.compile_model(model, {"optimizer": "rmsprop", "learning_rate": 1e-4}, 2, ["loss"])
    model.jit_compile = jit
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (steps * 20, size, size, 3)).astype("float32")
    y = rng.integers(0, 2, steps * 20).astype("int32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(20).prefetch(2)
    timer = common.epoch_timer()
    model.fit(data, epochs=1 + epochs, callbacks=[timer], verbose=0, shuffle=False)
    samples = [{"wall": w, "cpu": c} for w, c in zip(timer.seconds, timer.cpu_seconds, strict=True)]
    return rates(steps * 20, samples[1:])


def input_point(directory, size, mode, epochs):
    """images/s of the input side alone (no model): decoding, caching, the book's generator."""
    import tensorflow as tf

    from smallcnn import datasets

    n = common.count_images(directory)
    if mode == "book_generator":
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
        from speed import BOOK_AUGMENTATION

        generator = ImageDataGenerator(rescale=1 / 255, **BOOK_AUGMENTATION).flow_from_directory(
            str(directory), target_size=(size, size), batch_size=20, class_mode="binary"
        )

        def one_epoch():
            for i in range(len(generator)):
                generator[i]

    elif mode == "book_generator_no_augmentation":
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

        generator = ImageDataGenerator(rescale=1 / 255).flow_from_directory(
            str(directory), target_size=(size, size), batch_size=20, class_mode="binary"
        )

        def one_epoch():
            for i in range(len(generator)):
                generator[i]

    elif mode == "augmentation_layers":
        import yaml

        from smallcnn import models

        augmentation = yaml.safe_load((common.REPO / "config.yaml").read_text())["augmentation"]
        layers = models.build_augmentation(augmentation, seed=0)
        image_set = datasets.load_images(directory, (size, size), 20)
        batches = list(image_set.dataset)
        apply = tf.function(lambda b: layers(b, training=True))

        def one_epoch():
            for images, _ in batches:
                apply(images).numpy()

    else:
        files, _, _ = datasets.list_images(directory)
        paths = [str(Path(directory) / f) for f in files]
        parallel = tf.data.AUTOTUNE if mode.endswith("parallel") else None
        dataset = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda p: datasets.decode_and_resize(tf.io.read_file(p), (size, size)),
            num_parallel_calls=parallel,
        )
        if mode.startswith("cached"):
            dataset = dataset.cache()
        dataset = dataset.batch(20).prefetch(tf.data.AUTOTUNE)

        def one_epoch():
            for _ in dataset:
                pass

    samples = [common.timed(one_epoch) for _ in range(epochs)]
    # The first epoch fills caches; the steady state is what every later epoch costs.
    return rates(n, samples[1:] if len(samples) > 1 else samples)


def rates(images, samples):
    """images per wall second and per CPU second (all threads) at the medians of `samples`."""
    return {
        "images_per_second": images / statistics.median(s["wall"] for s in samples),
        "images_per_cpu_second": images / statistics.median(s["cpu"] for s in samples),
        "samples": samples,
    }


POINTS = {"inference": inference_point, "training": training_point, "input": input_point}


def run_point(kind, params, onednn):
    """One configuration in a fresh interpreter; returns its result dict."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn else "0"
    code = (
        f"import json, sys; sys.path[:0] = [{str(common.BENCH)!r}, {str(common.REPO)!r}]\n"
        "import levers\n"
        f"params = json.loads({json.dumps(params)!r})\n"
        f"print('RESULT', json.dumps(levers.POINTS[{kind!r}](**params)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{kind} {params} failed:\n{result.stderr[-3000:]}")


def sweep(kind, configs, rounds):
    """Every configuration `rounds` times, interleaved; the median images/s of each."""
    runs = {name: [] for name in configs}
    for _ in range(rounds):
        for name, (params, onednn) in configs.items():
            point = run_point(kind, params, onednn)
            runs[name].append(point)
            print(
                f"  {name}: {point['images_per_second']:.2f} images/s, "
                f"{point['images_per_cpu_second']:.2f} per CPU second",
                file=sys.stderr,
            )
    return {
        name: {
            "images_per_second": round(statistics.median(p["images_per_second"] for p in r), 2),
            "images_per_cpu_second": round(
                statistics.median(p["images_per_cpu_second"] for p in r), 2
            ),
            "runs": [round(p["images_per_second"], 2) for p in r],
        }
        for name, r in runs.items()
    }


# ---------------------------------------------------------------- studies


def study_inference(args):
    configs = {}
    for onednn, policy in itertools.product((False, True), ("float32", "mixed_bfloat16")):
        configs[f"onednn={int(onednn)} {policy} batch=32"] = (
            {
                "size": args.size,
                "policy": policy,
                "batch": 32,
                "jit": False,
                "images": args.images,
                "repeats": 3,
            },
            onednn,
        )
    for onednn, batch in itertools.product((False, True), (8, 16, 64)):
        configs[f"onednn={int(onednn)} float32 batch={batch}"] = (
            {
                "size": args.size,
                "policy": "float32",
                "batch": batch,
                "jit": False,
                "images": args.images,
                "repeats": 3,
            },
            onednn,
        )
    for onednn in (False, True):
        configs[f"onednn={int(onednn)} float32 batch=32 XLA"] = (
            {
                "size": args.size,
                "policy": "float32",
                "batch": 32,
                "jit": True,
                "images": args.images,
                "repeats": 3,
            },
            onednn,
        )
    return sweep("inference", configs, args.rounds)


def study_training(args):
    configs = {}
    # bfloat16 without XLA only, on fewer steps: where it is emulated (no AVX512_BF16 or AMX)
    # it is several times slower than float32.
    points = [(False, "float32", False), (False, "float32", True), (True, "float32", False)]
    points += [(True, "float32", True), (False, "mixed_bfloat16", False)]
    points += [(True, "mixed_bfloat16", False)]
    for onednn, policy, jit in points:
        configs[f"onednn={int(onednn)} {policy}{' XLA' if jit else ''}"] = (
            {
                "size": args.size,
                "policy": policy,
                "jit": jit,
                "augment": True,
                "steps": args.steps if policy == "float32" else max(2, args.steps // 3),
                "epochs": 2,
            },
            onednn,
        )
    for onednn in (False, True):
        configs[f"onednn={int(onednn)} float32 without augmentation layers"] = (
            {
                "size": args.size,
                "policy": "float32",
                "jit": False,
                "augment": False,
                "steps": args.steps,
                "epochs": 2,
            },
            onednn,
        )
    return sweep("training", configs, args.rounds)


def study_input(args):
    with tempfile.TemporaryDirectory(prefix="smallcnn-levers-") as tmp:
        data = common.make_data(Path(tmp), {"train": args.images // 2})
        directory = Path(tmp) / "train"
        common.read_all_files(directory)
        configs = {
            f"{mode}": (
                {"directory": str(directory), "size": args.size, "mode": mode, "epochs": 3},
                None,
            )
            for mode in (
                "decode_each_epoch_sequential",
                "decode_each_epoch_parallel",
                "cached_parallel",
                "augmentation_layers",
                "book_generator_no_augmentation",
                "book_generator",
            )
        }
        results = sweep("input", configs, args.rounds)
    results["data"] = data
    return results


def study_bf16_accuracy(args):
    """Test accuracy of the features classifier on float32 and on bfloat16 features.

    The pipeline's own extract_features at precision float32 and mixed (bfloat16 on CPU), the
    offline VGG16 weights, then the book's dense classifier trained on each with the same seed;
    also the float32-trained classifier on bfloat16 test features (inference precision alone).
    """
    import keras
    import numpy as np

    from smallcnn import feature_file, features, models, stats, training

    weights = common.REPO / "resources" / "weights" / "vgg16_offline_hed.weights.h5"
    if not weights.exists():
        raise SystemExit(f"{weights} is missing: write it with {common.OFFLINE_WEIGHTS_TOOL}")
    counts = {"train": args.images // 2, "validation": args.images // 4, "test": args.images // 4}
    out = {"counts_per_class": counts}
    with tempfile.TemporaryDirectory(prefix="smallcnn-bf16-") as tmp:
        tmp = Path(tmp)
        out["data"] = common.make_data(tmp / "data", counts)
        sets = {}
        for precision in ("float32", "mixed"):
            sets[precision] = {}
            for split in counts:
                path = tmp / precision / f"{split}.h5"
                started = time.perf_counter()
                features.extract_features(
                    images=str(tmp / "data" / split),
                    out=str(path),
                    conv_base={"name": "vgg16", "weights": str(weights)},
                    weights=str(weights),
                    image_size=(args.size, args.size),
                    batch_size=32,
                    precision=precision,
                    seed=0,
                )
                out[f"extract_seconds_{precision}_{split}"] = round(
                    time.perf_counter() - started, 1
                )
                sets[precision][split] = feature_file.read(path)
        f32, b16 = sets["float32"]["test"].features, sets["mixed"]["test"].features
        out["feature_relative_error"] = float(np.linalg.norm(f32 - b16) / np.linalg.norm(f32))

        def fit(train, validation):
            keras.mixed_precision.set_dtype_policy("float32")
            keras.utils.set_random_seed(0)
            model = models.build_feature_classifier(
                train.features.shape[1:], 2, dense_units=256, dropout=0.5, seed=0
            )
            training.compile_model(
                model, {"optimizer": "rmsprop", "learning_rate": 2e-5}, 2, ["val_loss"]
            )
            model.fit(
                train.features,
                train.labels,
                batch_size=20,
                epochs=args.epochs,
                validation_data=(validation.features, validation.labels),
                verbose=0,
            )
            return model

        def accuracy(model, test):
            predicted = (model.predict(test.features, verbose=0)[:, 0] > 0.5).astype(int)
            correct = int((predicted == test.labels).sum())
            low, high = stats.accuracy_ci95(correct, len(test.labels))
            return {
                "accuracy": correct / len(test.labels),
                "ci95": [low, high],
                "predicted": predicted,
            }

        f32_model = fit(sets["float32"]["train"], sets["float32"]["validation"])
        b16_model = fit(sets["mixed"]["train"], sets["mixed"]["validation"])
        results = {
            "float32 features, float32 classifier": accuracy(f32_model, sets["float32"]["test"]),
            "bfloat16 features, classifier trained on them": accuracy(
                b16_model, sets["mixed"]["test"]
            ),
            "bfloat16 test features, float32-trained classifier": accuracy(
                f32_model, sets["mixed"]["test"]
            ),
        }
        reference = results["float32 features, float32 classifier"]["predicted"]
        for name, result in results.items():
            result["agreement_with_float32"] = float((result.pop("predicted") == reference).mean())
            out[name] = result
        out["difference_points"] = round(
            100
            * (
                results["bfloat16 features, classifier trained on them"]["accuracy"]
                - results["float32 features, float32 classifier"]["accuracy"]
            ),
            2,
        )
    return out


STUDIES = {
    "inference": study_inference,
    "training": study_training,
    "input": study_input,
    "bf16-accuracy": study_bf16_accuracy,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=STUDIES)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--images", type=int, default=64, help="images per measurement")
    parser.add_argument("--steps", type=int, default=10, help="training steps of 20 per epoch")
    parser.add_argument("--epochs", type=int, default=30, help="classifier epochs (bf16-accuracy)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    load_before = common.load_average()
    started = time.perf_counter()
    results = STUDIES[args.study](args)
    record = {
        "study": args.study,
        "machine": common.machine(),
        "load_average": {"before": load_before, "after": common.load_average()},
        "settings": vars(args) | {"out": None},
        "results": results,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    out = args.out or OUT_DIR / f"levers-{args.study}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(
        f"{args.study}: load average before {load_before}, after {record['load_average']['after']}"
    )
    print("| configuration | images/s (median) | images per CPU second | runs (images/s) |")
    print("| --- | ---: | ---: | --- |")
    for name, value in results.items():
        if isinstance(value, dict) and "images_per_second" in value:
            print(
                f"| {name} | {value['images_per_second']:.2f} | "
                f"{value['images_per_cpu_second']:.2f} | {value['runs']} |"
            )
        else:
            print(f"| {name} | {json.dumps(value)} | | |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
