"""The training loop: outputs, summary, history, and resuming a killed job."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, make_class_images

from smallcnn import devices, features, resume, training
from smallcnn.fingerprint import run_fingerprint

CALLBACKS = {
    "checkpoint": {"monitor": "val_loss"},
    "early_stopping": {
        "enabled": True,
        "monitor": "val_loss",
        "patience": 10,
        "restore_best_weights": True,
    },
    "reduce_lr": {
        "enabled": True,
        "monitor": "val_loss",
        "factor": 0.5,
        "patience": 1,
        "min_lr": 1e-7,
    },
    "tensorboard": True,
    "backup": True,
}


def settings_for(experiment, **changes):
    settings = {
        "experiment": experiment,
        "kind": experiment,
        "epochs": 2,
        "batch_size": 8,
        "steps_per_epoch": None,
        "optimizer": "rmsprop",
        "learning_rate": 1e-3,
        "dropout": 0.0,
        "dense_units": 16,
        "augment": False,
        "class_weight": "none",
        "image_size": [48, 48],
        "seed": 7,
        "precision": "auto",
        "multi_gpu": True,
        "augmentation": None,
        "callbacks": json.loads(json.dumps(CALLBACKS)),
        "conv_base": None,
    }
    settings.update(changes)
    return settings


def outputs(root, name):
    return {
        "model_path": str(root / "results" / "models" / f"{name}.keras"),
        "history_path": str(root / "results" / "history" / f"{name}.csv"),
        "summary_path": str(root / "results" / "models" / f"{name}.json"),
        "tensorboard_dir": str(root / "results" / "tensorboard" / name),
        "backup_dir": str(root / "results" / "backup" / name),
    }


def history(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def epoch_losses_in_tensorboard(log_dir):
    """The per-epoch training losses as TensorBoard would read them from the event files."""
    import tensorflow as tf

    losses = {}
    for events in (log_dir / "train").glob("events.out.tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag == "epoch_loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return [losses[step] for step in sorted(losses)]


def test_precision_follows_the_hardware(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: fpu avx2 avx512_bf16\n")
    flags = devices.cpu_flags(cpuinfo)
    assert "avx512_bf16" in flags and devices.cpu_model(cpuinfo) == "Test CPU"
    assert devices.resolve_policy("auto", False, flags) == "mixed_bfloat16"
    assert devices.resolve_policy("auto", False, {"avx2"}) == "float32"
    assert devices.resolve_policy("auto", True, set()) == "mixed_float16"
    assert devices.resolve_policy("mixed", False, set()) == "mixed_bfloat16"
    assert devices.resolve_policy("float32", True, flags) == "float32"
    assert devices.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, "True"), ("0", "False")], ids=["default", "turned-off"]
)
def test_onednn_is_on_unless_turned_off_and_reported_as_tensorflow_decided(setting, expected):
    """A fresh interpreter, as a pipeline job: smallcnn imported before TensorFlow."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    code = "import smallcnn.devices as d, tensorflow; print(d.onednn_enabled())"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == expected


@pytest.fixture
def splits(tmp_path):
    for split, seed in (("train", 1), ("validation", 2)):
        make_class_images(tmp_path / "data" / split, per_class=8, size=(48, 48), seed=seed)
    return {
        "train": str(tmp_path / "data" / "train"),
        "validation": str(tmp_path / "data" / "validation"),
    }


def test_lr_changes_are_read_from_the_history():
    rows = [{"epoch": str(e), "learning_rate": lr} for e, lr in enumerate([1e-3, 1e-3, 5e-4, 5e-4])]
    assert training._lr_changes(rows) == [{"epoch": 3, "learning_rate": 5e-4}]


def test_fingerprint_changes_with_settings_and_inputs(tmp_path):
    make_class_images(tmp_path / "train", per_class=2)
    inputs = {"train": str(tmp_path / "train")}
    first = run_fingerprint(settings_for("scratch"), inputs)
    assert first == run_fingerprint(settings_for("scratch"), inputs)
    assert first != run_fingerprint(settings_for("scratch", learning_rate=0.1), inputs)
    make_class_images(tmp_path / "train", per_class=3)
    assert first != run_fingerprint(settings_for("scratch"), inputs)


@pytest.mark.slow
def test_scratch_training_writes_every_output(tmp_path, splits):
    paths = outputs(tmp_path, "scratch")
    summary = training.train(settings_for("scratch", epochs=3), splits, **paths)
    rows = history(paths["history_path"])
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"accuracy", "loss", "val_accuracy", "val_loss", "learning_rate"} <= set(rows[0])
    written = json.loads(Path(paths["summary_path"]).read_text())
    assert written == json.loads(json.dumps(summary))
    assert written["epochs_run"] == 3
    val_losses = [float(r["val_loss"]) for r in rows]
    assert written["best_epoch"] == val_losses.index(min(val_losses)) + 1
    assert written["class_names"] == ["cat", "dog"]
    assert written["monitor"] == "val_loss"
    assert written["weights"] is None
    assert set(written) >= {
        "experiment",
        "stopped_early",
        "train_seconds",
        "lr_changes",
        "precision",
        "device",
        "seed",
        "versions",
    }
    assert epoch_losses_in_tensorboard(tmp_path / "results" / "tensorboard" / "scratch") == [
        pytest.approx(float(r["loss"]), rel=1e-5) for r in rows
    ]
    assert not os.path.exists(paths["backup_dir"])


@pytest.mark.slow
def test_features_experiment_trains_on_hdf5(tmp_path, splits):
    inputs = {}
    for split in ("train", "validation"):
        inputs[split] = str(tmp_path / f"{split}.h5")
        features.extract_features(
            splits[split], inputs[split], {"name": "vgg16", "weights": "none"}, None, (32, 32),
            8, "auto", 1,
        )  # fmt: skip
    paths = outputs(tmp_path, "features")
    summary = training.train(
        settings_for("features", dropout=0.5, batch_size=4, image_size=[32, 32]), inputs, **paths
    )
    assert summary["weights"] == {"source": "none", "sha256": "none"}
    assert summary["epochs_run"] == 2
    assert os.path.exists(paths["model_path"])


TRAIN_JOB = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
from smallcnn.training import train
train(**json.load(open(sys.argv[1])))
"""


def start_job(tmp_path, settings, inputs, name):
    job = tmp_path / f"{name}.json"
    job.write_text(
        json.dumps({"settings": settings, "inputs": inputs, **outputs(tmp_path, "scratch")})
    )
    with open(tmp_path / f"{name}.log", "w") as log:
        # The child keeps its own copy of the file descriptor.
        process = subprocess.Popen(
            [sys.executable, "-c", TRAIN_JOB, str(job)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    return process, tmp_path / f"{name}.log"


def kill_after_first_epoch(process, backup_dir):
    """SIGKILL the job, from outside and at no chosen instant, once the backup says an epoch
    finished; the epochs backed up by then."""
    state = backup_dir / resume.STATE_FILE
    started = time.time()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            # Written by this job, not left by an earlier one; renamed into place, never partial.
            if state.stat().st_mtime > started and json.loads(state.read_text())["epoch"] >= 1:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return json.loads(state.read_text())["epoch"]
        except FileNotFoundError:
            pass  # not written yet, or cleared by the job starting afresh
        if process.poll() is not None:
            raise AssertionError("the training job ended before it could be killed")
        time.sleep(0.02)
    raise AssertionError("no epoch finished in time")


@pytest.mark.slow
def test_a_killed_job_resumes_after_its_last_finished_epoch(tmp_path, splits):
    epochs = 12
    settings = settings_for("scratch", epochs=epochs, learning_rate=3e-3)
    settings["callbacks"]["early_stopping"]["enabled"] = False
    backup_dir = tmp_path / "results" / "backup" / "scratch"
    paths = outputs(tmp_path, "scratch")

    # A backup made with other settings is discarded, not resumed.
    process, _ = start_job(tmp_path, {**settings, "learning_rate": 1e-3}, splits, "other")
    kill_after_first_epoch(process, backup_dir)
    process, log = start_job(tmp_path, settings, splits, "first")
    done = kill_after_first_epoch(process, backup_dir)
    assert "starting afresh (backup made with other settings or inputs)" in log.read_text()
    assert 1 <= done < epochs
    assert not os.path.exists(paths["model_path"])

    process, log = start_job(tmp_path, settings, splits, "second")
    assert process.wait(timeout=600) == 0, log.read_text()
    text = log.read_text()
    assert f"resuming after epoch {done} of {epochs}" in text
    assert f"Epoch {done + 1}/{epochs}" in text and "Epoch 1/" not in text

    rows = history(paths["history_path"])
    assert [int(r["epoch"]) for r in rows] == list(range(epochs))
    summary = json.loads(Path(paths["summary_path"]).read_text())
    assert summary["epochs_run"] == epochs
    val_losses = [float(r["val_loss"]) for r in rows]
    # The best-so-far threshold survived the restart: the checkpoint is the best of all epochs.
    assert summary["best_epoch"] == val_losses.index(min(val_losses)) + 1
    rates = [float(r["learning_rate"]) for r in rows]
    assert summary["lr_changes"] == [
        {"epoch": e + 1, "learning_rate": rates[e]}
        for e in range(1, epochs)
        if abs(rates[e] - rates[e - 1]) > 1e-12
    ]
    assert not backup_dir.exists()


def test_class_weights_are_inverse_frequency_when_asked_or_imbalanced():
    from smallcnn.errors import UserError

    labels = [0] * 30 + [1] * 10
    assert training.class_weights("balanced", labels, 2) == {0: 40 / 60, 1: 40 / 20}
    assert training.class_weights("none", labels, 2) is None
    # auto: 3x imbalance is past 1.5x, 1.4x is not.
    assert training.class_weights("auto", labels, 2) == {0: 40 / 60, 1: 2.0}
    assert training.class_weights("auto", [0] * 14 + [1] * 10, 2) is None
    with pytest.raises(UserError, match="no image of class 2"):
        training.class_weights("balanced", labels, 3)
