"""Validation on cached activations of frozen layers gives the whole model's figures."""

import csv
import json
import logging
import re
import subprocess
import sys
import tracemalloc

import h5py
import keras
import numpy as np
import pytest
import yaml
from conftest import REPO, make_class_images, run_snakemake

from smallcnn import cached_validation, datasets, devices, features, models, training
from smallcnn.experiments import merge_callbacks

SIZE = (32, 32)
BATCH = 5  # 12 validation images: the last batch is short, as real splits' often are
AUGMENTATION = {
    "rotation": 40,
    "width_shift": 0.2,
    "height_shift": 0.2,
    "shear": 0.2,
    "zoom": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("splits")
    make_class_images(root / "train", per_class=6, size=(40, 40), seed=1)
    make_class_images(root / "validation", per_class=6, size=(40, 40), seed=2)
    return root


@pytest.fixture(scope="module")
def runtime():
    return devices.configure("float32", multi_gpu=False)


def base_weights(base_name, path, seed):
    """A weights file of the base: the features stage and the model load the same weights."""
    keras.utils.set_random_seed(seed)
    models.build_conv_base(base_name, None, (*SIZE, 3)).save_weights(path)
    return str(path)


def frozen_model(base_name, weights):
    base = models.build_conv_base(base_name, weights, (*SIZE, 3))
    record = features.weights_record(weights, weights)
    model = models.build_frozen(
        base,
        2,
        dense_units=8,
        dropout=0.5,
        augmentation=AUGMENTATION,
        seed=3,
        class_names=["cat", "dog"],
        conv_base={"name": base.name, "weights": weights, "weights_sha256": record["sha256"]},
    )
    return model


def compile_(model):
    training.compile_model(
        model, {"optimizer": "rmsprop", "learning_rate": 1e-3}, 2, ["val_loss", "val_auc"]
    )


def settings(kind, base_name, unfreeze_from=None, **changes):
    return {
        "experiment": kind,
        "kind": kind,
        "seed": 3,
        "image_size": list(SIZE),
        "batch_size": BATCH,
        "cache_frozen": True,
        "conv_base": {"name": base_name, "weights": "w", "unfreeze_from": unfreeze_from},
        **changes,
    }


def images(directory, class_names=None):
    return datasets.load_images(directory, SIZE, BATCH, class_names=class_names).dataset


def fit_comparing(model, validation, splits, epochs=2):
    """Train with the cached validation and, after it each epoch, evaluate the whole model on
    the validation images with the same weights; (cached, whole) figures per epoch."""
    whole_images = images(splits / "validation", ["cat", "dog"])
    seen = []

    class Compare(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            whole = model.evaluate(whole_images, verbose=0, return_dict=True)
            seen.append(({k: logs[f"val_{k}"] for k in whole}, whole))

    model.fit(
        images(splits / "train"),
        validation_data=validation.data,
        epochs=epochs,
        callbacks=[*validation.callbacks, Compare()],
        verbose=0,
    )
    return seen


def assert_equal_figures(seen, epochs=2):
    assert len(seen) == epochs
    for cached, whole in seen:
        assert set(cached) == {"loss", "accuracy", "auc"}
        for key in cached:
            assert cached[key] == pytest.approx(whole[key], abs=1e-4), key


@pytest.mark.parametrize("base_name", ["vgg16", "mobilenetv2"])
def test_frozen_validates_on_the_features_file_with_the_whole_models_figures(
    base_name, splits, runtime, tmp_path, caplog
):
    weights = base_weights(base_name, tmp_path / "base.weights.h5", seed=5)
    out = tmp_path / "validation.h5"
    features.extract_features(
        str(splits / "validation"),
        out,
        {"name": base_name, "weights": weights},
        weights,
        SIZE,
        32,
        "float32",
        seed=0,
    )
    model = frozen_model(base_name, weights)
    compile_(model)
    inputs = {"validation": str(splits / "validation"), "validation_features": str(out)}
    with caplog.at_level(logging.INFO, logger="smallcnn.cached_validation"):
        validation = cached_validation.setup(
            model, settings("frozen", base_name), inputs, "unused", tmp_path, runtime
        )
    assert validation.data is None and len(validation.callbacks) == 1
    assert "features stage" in caplog.text
    assert not (tmp_path / "validation-activations.h5").exists()
    assert_equal_figures(fit_comparing(model, validation, splits))


def test_a_frozen_fold_validates_on_its_rows_of_the_train_and_validation_features(
    splits, runtime, tmp_path, caplog
):
    """Cross-validation: fold 1 of 3 validates on rows taken from both features files, with the
    figures of the whole model on exactly that fold's images; no image is run through the base."""
    weights = base_weights("vgg16", tmp_path / "base.weights.h5", seed=5)
    inputs = {"folds": str(tmp_path / "folds.csv")}
    rows = []
    for split in ("train", "validation"):
        out = tmp_path / f"{split}.h5"
        features.extract_features(
            str(splits / split),
            out,
            {"name": "vgg16", "weights": weights},
            weights,
            SIZE,
            32,
            "float32",
            seed=0,
        )
        inputs[split], inputs[f"{split}_features"] = str(splits / split), str(out)
        files, labels, _ = datasets.list_images(splits / split)
        rows += [{"path": f"{split}/{file}", "label": file.split("/")[0]} for file in files]
    with open(inputs["folds"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["file", "path", "label", "seed", "fold"])
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({**row, "file": row["path"], "seed": 3, "fold": i % 3})
    fold_rows = [row for i, row in enumerate(rows) if i % 3 == 1]
    model = frozen_model("vgg16", weights)
    compile_(model)
    with caplog.at_level(logging.INFO, logger="smallcnn.cached_validation"):
        validation = cached_validation.setup(
            model,
            settings("frozen", "vgg16", fold=1, folds=3),
            inputs,
            "unused",
            tmp_path,
            runtime,
        )
    assert "frozen/3/fold1: validating on cached outputs" in caplog.text
    assert "features stage" in caplog.text
    assert not (tmp_path / "validation-activations.h5").exists()
    with h5py.File(tmp_path / "fold-validation-features.h5") as h5:
        assert [f.decode() for f in h5["files"][...]] == [row["path"] for row in fold_rows]
    logs = {}
    validation.callbacks[0].on_epoch_end(0, logs)
    class_names = ["cat", "dog"]
    whole = model.evaluate(
        datasets.load_listed(
            [splits / row["path"] for row in fold_rows],
            [class_names.index(row["label"]) for row in fold_rows],
            class_names,
            SIZE,
            BATCH,
        ).dataset,
        verbose=0,
        return_dict=True,
    )
    for key, value in whole.items():
        assert logs[f"val_{key}"] == pytest.approx(value, abs=1e-4), key

    # A train features file of other weights is not used: the fold's images run through the base.
    other = base_weights("vgg16", tmp_path / "other.weights.h5", seed=6)
    features.extract_features(
        str(splits / "train"),
        tmp_path / "train-other.h5",
        {"name": "vgg16", "weights": other},
        other,
        SIZE,
        32,
        "float32",
        seed=0,
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="smallcnn.cached_validation"):
        cached_validation.setup(
            model,
            settings("frozen", "vgg16", fold=1, folds=3),
            {**inputs, "train_features": str(tmp_path / "train-other.h5")},
            "unused",
            tmp_path / "other",
            runtime,
        )
    assert "train-other.h5 does not fit: its weights_sha256" in caplog.text
    with h5py.File(tmp_path / "other" / "validation-activations.h5") as h5:
        assert [f.decode() for f in h5["files"][...]] == [row["path"] for row in fold_rows]


@pytest.mark.parametrize(
    ("base_name", "unfreeze_from"),
    [
        ("vgg16", "block5_conv1"),
        # Mid-block: the frozen layers feed the rest through two tensors (the residual too).
        ("mobilenetv2", "block_15_project"),
        ("mobilenetv2", "block_16_expand"),
    ],
)
def test_finetuned_validates_on_its_frozen_layers_outputs_with_the_whole_models_figures(
    base_name, unfreeze_from, splits, runtime, tmp_path, caplog
):
    weights = base_weights(base_name, tmp_path / "base.weights.h5", seed=5)
    start = frozen_model(base_name, weights)
    model = models.with_augmentation(start, AUGMENTATION, 3, name="finetuned")
    models.make_finetunable(model, unfreeze_from)
    compile_(model)
    inputs = {"validation": str(splits / "validation")}
    with caplog.at_level(logging.INFO, logger="smallcnn.cached_validation"):
        validation = cached_validation.setup(
            model,
            settings("finetuned", base_name, unfreeze_from),
            inputs,
            "unused",
            tmp_path,
            runtime,
        )
    assert validation.data is None
    assert "computed once" in caplog.text
    split, _ = cached_validation.split_at_frozen(model)
    with h5py.File(tmp_path / "validation-activations.h5", "r") as h5:
        assert len(split.layers) == (2 if unfreeze_from == "block_15_project" else 1)
        assert ("features_1" in h5) == (len(split.layers) == 2)
        assert h5.attrs["base_model"] == base_name
        assert h5.attrs["weights_sha256"] == features.file_sha256(weights)
        assert h5.attrs["unfreeze_from"] == unfreeze_from
        assert len(h5["labels"]) == 12
    assert_equal_figures(fit_comparing(model, validation, splits))


def test_features_of_other_weights_are_not_used_and_the_cache_is_computed_instead(
    splits, runtime, tmp_path, caplog
):
    weights = base_weights("vgg16", tmp_path / "base.weights.h5", seed=5)
    other = base_weights("vgg16", tmp_path / "other.weights.h5", seed=6)
    out = tmp_path / "validation.h5"
    features.extract_features(
        str(splits / "validation"),
        out,
        {"name": "vgg16", "weights": other},
        other,
        SIZE,
        32,
        "float32",
        seed=0,
    )
    model = frozen_model("vgg16", weights)
    compile_(model)
    inputs = {"validation": str(splits / "validation"), "validation_features": str(out)}
    with caplog.at_level(logging.INFO, logger="smallcnn.cached_validation"):
        validation = cached_validation.setup(
            model, settings("frozen", "vgg16"), inputs, "unused", tmp_path, runtime
        )
    assert "does not fit: its weights_sha256" in caplog.text
    assert (tmp_path / "validation-activations.h5").exists()
    assert_equal_figures(fit_comparing(model, validation, splits, epochs=1), epochs=1)


def test_a_base_unfrozen_from_its_first_layer_or_the_switch_off_validates_end_to_end(
    runtime, tmp_path, caplog
):
    model = frozen_model("vgg16", None)
    images_ = "the end-to-end validation data"
    with caplog.at_level(logging.INFO, logger="smallcnn.cached_validation"):
        off = cached_validation.setup(
            model, settings("frozen", "vgg16", cache_frozen=False), {}, images_, tmp_path, runtime
        )
        models.make_finetunable(model, "preprocess")
        first = cached_validation.setup(
            model, settings("finetuned", "vgg16", "preprocess"), {}, images_, tmp_path, runtime
        )
    assert (off.data, off.callbacks) == (images_, [])
    assert (first.data, first.callbacks) == (images_, [])
    assert "cache_frozen is off" in caplog.text
    assert "unfrozen from its first layer" in caplog.text


def test_activations_above_the_memory_bound_are_streamed_batch_by_batch(tmp_path):
    rows, shape = 1000, (9, 9, 64)
    values = np.random.default_rng(0).random((rows, *shape), dtype=np.float32)
    path = tmp_path / "cache.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("features", data=values, chunks=(10, *shape))
        h5.create_dataset("labels", data=np.arange(rows, dtype="int32") % 2)
    whole = values.nbytes
    streamed = cached_validation.Activations(path, 10, 1, memory_bound=whole - 1)
    loaded = cached_validation.Activations(path, 10, 1, memory_bound=whole)
    assert not streamed.in_memory and loaded.in_memory
    assert len(streamed) == 100
    tracemalloc.start()
    for k in range(len(streamed)):
        x, y = streamed[k]
        assert x.shape == (10, *shape)
        np.testing.assert_array_equal(x, loaded[k][0])
        np.testing.assert_array_equal(y, loaded[k][1])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # One batch at a time (two with the in-memory copy's slice): far below the whole file.
    assert peak < whole / 10
    streamed.close()


@pytest.mark.parametrize("cache", [True, False])
def test_frozen_training_takes_the_validation_features_as_input_when_caching(tmp_path, cache):
    config = {
        "experiments": ["frozen"],
        "conv_base": {"weights": "imagenet"},
        "cache_frozen": cache,
        # demo.yaml exports scratch, which this run does not declare.
        "export": {"experiments": []},
    }
    result = run_snakemake(
        tmp_path,
        ["results/models/frozen/1337.keras"],
        config=config,
        configfiles=[REPO / "config" / "demo.yaml"],
        args=["--dry-run"],
    )
    planned = set(re.findall(r"output: results/features/([\w-]+/[\w-]+/\w+)\.h5", result.stdout))
    assert planned == ({"vgg16/imagenet/validation"} if cache else set())


def train_frozen(splits, tmp_path, weights, cache, features_file):
    root = tmp_path / ("cached" if cache else "uncached")
    settings_ = {
        "experiment": "frozen",
        "kind": "frozen",
        "epochs": 3,
        "batch_size": BATCH,
        "steps_per_epoch": None,
        "optimizer": "rmsprop",
        "learning_rate": 1e-3,
        "dropout": 0.0,
        "dense_units": 8,
        "augment": True,
        "class_weight": "none",
        "image_size": list(SIZE),
        "seed": 3,
        "precision": "float32",
        "multi_gpu": False,
        "augmentation": AUGMENTATION,
        # As the rules pass them: config.yaml's callbacks with this test's changes merged in.
        "callbacks": merge_callbacks(
            yaml.safe_load((REPO / "config.yaml").read_text())["callbacks"],
            {"tensorboard": False, "backup": False, "reduce_lr": {"patience": 1}},
        ),
        "conv_base": {"name": "vgg16", "weights": weights},
        "cache_frozen": cache,
    }
    inputs = {
        "train": str(splits / "train"),
        "validation": str(splits / "validation"),
        "weights": weights,
        "validation_features": str(features_file),
    }
    training.train(
        settings_,
        inputs,
        model_path=root / "model.keras",
        history_path=root / "history.csv",
        summary_path=root / "summary.json",
        tensorboard_dir=root / "tensorboard",
        backup_dir=root / "backup",
    )
    with open(root / "history.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
def test_training_with_and_without_the_cache_writes_the_same_history(splits, tmp_path, caplog):
    weights = base_weights("vgg16", tmp_path / "base.weights.h5", seed=5)
    out = tmp_path / "validation.h5"
    features.extract_features(
        str(splits / "validation"),
        out,
        {"name": "vgg16", "weights": weights},
        weights,
        SIZE,
        32,
        "float32",
        seed=0,
    )
    with caplog.at_level(logging.INFO, logger="smallcnn.cached_validation"):
        cached = train_frozen(splits, tmp_path, weights, True, out)
    assert "validating on cached outputs of block5_pool (the features stage" in caplog.text
    uncached = train_frozen(splits, tmp_path, weights, False, out)
    assert list(cached[0]) == list(uncached[0])
    assert {"val_loss", "val_accuracy", "learning_rate"} <= set(cached[0])
    assert len(cached) == len(uncached) == 3
    for with_cache, without in zip(cached, uncached, strict=True):
        for key in ("loss", "val_loss", "val_accuracy", "learning_rate"):
            assert float(with_cache[key]) == pytest.approx(float(without[key]), abs=1e-4), key


@pytest.mark.slow
def test_the_speed_benchmark_reports_the_cached_validation_keys(tmp_path):
    out = tmp_path / "speed.json"
    command = [sys.executable, str(REPO / "bench" / "speed.py"), "--quick", "--only-cached"]
    command += ["--images", "8", "--size", "48", "--epochs", "1", "--out", str(out)]
    # A path that does not exist: the benchmark generates its images instead.
    command += ["--data", str(tmp_path / "absent.zip")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in ("frozen_epoch_vs_uncached", "finetuned_epoch_vs_uncached"):
        assert report[key] > 0 and key in report["targets_met"] and key in result.stdout
    assert report["validation_max_abs_diff"] <= 1e-4
    assert set(report["cached_validation"]["epochs"]) == {
        "frozen_uncached",
        "frozen_cached",
        "finetuned_uncached",
        "finetuned_cached",
    }
