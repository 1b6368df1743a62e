"""Resumable training state: the callback's decisions, the backup's atomicity, real SIGKILLs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import yaml
from conftest import REPO, make_class_images
from test_training import history, outputs, settings_for

from smallcnn import experiments, resume, training

DEFAULT_CALLBACKS = yaml.safe_load((REPO / "config.yaml").read_text())["callbacks"]


def callbacks(**changes):
    """Callback settings as a training job gets them: config.yaml's, `changes` merged over."""
    return experiments.merge_callbacks(DEFAULT_CALLBACKS, changes)


AUGMENTATION = {
    "rotation": 20,
    "width_shift": 0.1,
    "height_shift": 0.1,
    "shear": 0.1,
    "zoom": 0.1,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


def test_improvement_follows_keras_and_never_counts_a_non_finite_value():
    assert resume.is_improvement(0.5, None, "val_loss")
    assert resume.is_improvement(0.4, 0.5, "val_loss")
    assert not resume.is_improvement(0.5, 0.5, "val_loss")
    assert resume.is_improvement(0.6, 0.5, "val_accuracy")
    assert not resume.is_improvement(0.49995, 0.5, "val_loss", min_delta=1e-4)
    assert not resume.is_improvement(float("nan"), None, "val_loss")
    assert not resume.is_improvement(float("inf"), 0.5, "val_accuracy")


def tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-2), loss="binary_crossentropy")
    # As after a training step: the saved optimizer then has its slots.
    model.optimizer.build(model.trainable_variables)
    return model


# A noisy validation loss: it improves, plateaus within min_delta, worsens, then improves late.
VAL_LOSSES = [0.9, 0.8, 0.79995, 0.85, 0.81, 0.7, 0.75, 0.76, 0.77, 0.78]


def keras_decisions(config):
    """What Keras' own ModelCheckpoint, EarlyStopping and ReduceLROnPlateau decide on
    VAL_LOSSES: the learning rate after each epoch, the epoch it stops at, the best epoch."""
    model = tiny_model()
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config["early_stopping"]["patience"]
    )
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss",
        factor=config["reduce_lr"]["factor"],
        patience=config["reduce_lr"]["patience"],
        min_lr=config["reduce_lr"]["min_lr"],
    )
    callbacks = keras.callbacks.CallbackList([stopping, plateau], model=model)
    callbacks.on_train_begin()
    rates, best, best_epoch = [], None, None
    for epoch, loss in enumerate(VAL_LOSSES):
        callbacks.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
        rates.append(float(model.optimizer.learning_rate.numpy()))
        if best is None or loss < best:
            best, best_epoch = loss, epoch + 1
        if model.stop_training:
            break
    return rates, len(rates), best_epoch


def our_decisions(config, directory, resume_every_epoch):
    """The same from ResumableTraining; with `resume_every_epoch`, each epoch runs in a fresh
    callback and model loaded from the backup, as if the job were killed after every epoch."""
    backup = resume.Backup(directory, "fp")
    backup.reset("test")
    model, keeper, rates = tiny_model(), None, []
    for epoch, loss in enumerate(VAL_LOSSES):
        if keeper is None or resume_every_epoch:
            model = tiny_model()
            keeper = resume.ResumableTraining(config, backup, backup.load() if keeper else None)
            keeper.set_model(model)
            keeper.on_train_begin()
        keeper.on_epoch_begin(epoch)
        keeper.on_epoch_end(epoch, {"loss": loss, "val_loss": loss})
        rates.append(float(model.optimizer.learning_rate.numpy()))
        if model.stop_training:
            break
    return rates, keeper.state["epoch"], keeper.state["checkpoint"]["best_epoch"], keeper


@pytest.mark.parametrize("resume_every_epoch", [False, True], ids=["one-run", "resumed"])
def test_decisions_match_keras_callbacks_also_when_resumed_after_every_epoch(
    tmp_path, resume_every_epoch
):
    # Not config.yaml's patience, factor and min_lr: the callback must take them from here.
    config = callbacks(
        early_stopping={"patience": 3},
        reduce_lr={"factor": 0.4, "patience": 1, "min_lr": 3e-3},
    )
    expected_rates, expected_epochs, expected_best = keras_decisions(config)
    rates, epochs, best_epoch, keeper = our_decisions(config, tmp_path, resume_every_epoch)
    assert rates == pytest.approx(expected_rates, rel=1e-6)
    assert (epochs, best_epoch) == (expected_epochs, expected_best) == (9, 6)
    # The plateau within min_delta lowered the rate, min_lr bounded it, early stopping ended it.
    assert rates[2] < rates[1] and min(rates) == pytest.approx(3e-3)
    assert keeper.state["stopped_early"] and epochs < len(VAL_LOSSES)
    assert keeper.finished(len(VAL_LOSSES))
    assert [row["epoch"] for row in keeper.state["history"]] == list(range(epochs))
    # Only what the last state names is left: its weights, its best model, the state.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"best-{best_epoch:04d}.keras",
        f"epoch-{epochs:04d}.weights.h5",
        "state.json",
    ]


@pytest.mark.parametrize(
    ("monitor", "restored_epoch"), [("val_loss", 2), ("val_accuracy", 1)], ids=["same", "other"]
)
def test_early_stopping_restores_its_best_weights_across_a_resume(
    tmp_path, monitor, restored_epoch
):
    """By the checkpoint's monitor the best epoch is 2 (0-based), by val_accuracy it is 1: with
    another monitor than the checkpoint's, early stopping keeps its own best weights."""
    config = callbacks(
        early_stopping={"monitor": monitor, "patience": 5}, reduce_lr={"enabled": False}
    )
    logs = [(0.9, 0.5), (0.95, 0.7), (0.8, 0.6), (0.85, 0.65)]
    backup = resume.Backup(tmp_path, "fp")
    backup.reset("test")
    keeper = None
    for epoch, (loss, accuracy) in enumerate(logs):
        if epoch in (0, 2):  # the job is killed after epoch 1 and resumed
            model = tiny_model()
            keeper = resume.ResumableTraining(config, backup, backup.load() if epoch else None)
            keeper.set_model(model)
            keeper.on_train_begin()
        # Weights that say which epoch they are from.
        model.layers[0].bias.assign([float(epoch)])
        keeper.on_epoch_begin(epoch)
        keeper.on_epoch_end(epoch, {"loss": loss, "val_loss": loss, "val_accuracy": accuracy})
    keeper.on_train_end()
    assert float(model.layers[0].bias.numpy()[0]) == restored_epoch
    assert keeper.state["checkpoint"]["best_epoch"] == 3


def test_a_damaged_or_missing_backup_file_is_not_resumed(tmp_path, caplog):
    backup = resume.Backup(tmp_path / "backup", "fp")
    backup.reset("test")
    model = tiny_model()
    keeper = resume.ResumableTraining(callbacks(), backup)
    keeper.set_model(model)
    keeper.on_train_begin()
    keeper.on_epoch_begin(0)
    keeper.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.5})
    assert backup.load()["epoch"] == 1
    weights = backup.path(keeper.state["files"]["weights"]["file"])

    # Left by a job killed mid-write: temporaries and a later epoch's file no state names.
    (backup.path(resume.TMP_PREFIX + "epoch-0002.weights.h5")).write_bytes(b"half")
    (backup.path("epoch-0002.weights.h5")).write_bytes(weights.read_bytes())
    assert backup.load()["epoch"] == 1
    assert sorted(p.name for p in backup.directory.iterdir()) == [
        "best-0001.keras",
        "epoch-0001.weights.h5",
        "state.json",
    ]

    # Half a weights file (the HDF5 header intact, the data cut off).
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    caplog.set_level("INFO", logger="smallcnn.resume")
    assert backup.load() is None
    assert "backup file epoch-0001.weights.h5 is missing or damaged" in caplog.text
    assert list(backup.directory.iterdir()) == []

    backup.path(resume.STATE_FILE).write_text('{"version": 1, "finger')
    assert backup.load() is None
    assert "unreadable backup state" in caplog.text
    keeper.backup.commit(keeper.state)
    assert resume.Backup(backup.directory, "other").load() is None
    assert "backup made with other settings or inputs" in caplog.text


def test_the_cache_folder_is_emptied_before_and_after_use(tmp_path):
    backup = resume.Backup(tmp_path, "fp")
    stale = tmp_path / resume.CACHE_DIR / "train.lockfile"
    stale.parent.mkdir()
    stale.write_text("left by a killed job")
    with backup.cache() as cache:
        # Emptied, and there: the cached validation writes into it without creating it.
        assert Path(cache) == stale.parent and not stale.exists() and Path(cache).is_dir()
        (Path(cache) / "train.data").write_text("cache")
    assert not (tmp_path / resume.CACHE_DIR).exists()


def test_publish_leaves_no_temporary_file_when_it_fails(tmp_path):
    source = tmp_path / "model.keras"
    source.write_text("model")
    target = tmp_path / "out" / "model.keras"
    (target / "in-the-way").mkdir(parents=True)  # a directory where the file should go
    with pytest.raises(OSError):
        training._publish(source, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.keras"]


def test_history_is_written_as_csvlogger_writes_it(tmp_path):
    rows = [{"epoch": 0, "val_loss": 0.5, "loss": 0.25, "learning_rate": 0.001}]
    resume.write_history(rows, tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().splitlines() == [
        "epoch,learning_rate,loss,val_loss",
        "0,0.001,0.25,0.5",
    ]


TRAIN_JOB = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
from smallcnn.training import train
train(**json.load(open(sys.argv[1])))
"""

EPOCHS = 4


# Every training set cached on disk, as a large one is.
DISK_CACHE = "import smallcnn.datasets; smallcnn.datasets.MEMORY_CACHE_BYTES = 0\n"


def run_job(root, settings, inputs, kill_at=None, prelude="", env=()):
    """Train in a fresh process, which SIGKILLs itself at `kill_at` (tests/kill_points.py); its
    exit status and log."""
    root.mkdir(parents=True, exist_ok=True)
    job = root / "job.json"
    job.write_text(json.dumps({"settings": settings, "inputs": inputs, **outputs(root, "run")}))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
        **dict(env),
    }
    if kill_at:
        prelude += f"import kill_points; kill_points.arm({kill_at!r})\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + TRAIN_JOB, str(job)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def augmented_job(tmp_path_factory):
    """Settings and inputs of a small augmented run with dropout (so that its random draws must
    resume too) and a learning rate that plateaus, and its history uninterrupted."""
    root = tmp_path_factory.mktemp("resume")
    for split, seed in (("train", 1), ("validation", 2)):
        make_class_images(root / "data" / split, per_class=8, size=(48, 48), seed=seed)
    inputs = {split: str(root / "data" / split) for split in ("train", "validation")}
    settings = settings_for(
        "augmented",
        epochs=EPOCHS,
        image_size=[48, 48],
        dropout=0.5,
        augmentation=AUGMENTATION,
        # High enough that the validation loss rises once and reduce_lr (patience 1) acts.
        learning_rate=1e-2,
    )
    status, text = run_job(root / "reference", settings, inputs)
    assert status == 0, text
    paths = outputs(root / "reference", "run")
    return (
        settings,
        inputs,
        history(paths["history_path"]),
        json.loads(Path(paths["summary_path"]).read_text()),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "resumed_after"),
    [("batch:3", 2), ("write:2", 1), ("state:2", 1), ("publish:0", None)],
    ids=["mid-epoch", "mid-backup-write", "between-weights-and-state", "mid-publish"],
)
def test_a_job_killed_at_any_point_resumes_as_the_uninterrupted_run(
    tmp_path, augmented_job, kill_at, resumed_after
):
    settings, inputs, reference, reference_summary = augmented_job
    status, text = run_job(tmp_path, settings, inputs, kill_at=kill_at)
    assert status == -9, text  # killed by SIGKILL, not ended by an exception
    status, text = run_job(tmp_path, settings, inputs)
    assert status == 0, text
    if resumed_after is None:
        assert "training had finished before the job stopped; publishing" in text
        assert "Epoch 1/" not in text
    else:
        assert f"resuming after epoch {resumed_after} of {EPOCHS}" in text
        assert f"Epoch {resumed_after + 1}/{EPOCHS}" in text and "Epoch 1/" not in text

    paths = outputs(tmp_path, "run")
    rows = history(paths["history_path"])
    # Contiguous, no epoch twice, and the very numbers of the run that was never killed: the
    # weights, optimizer state, learning rate, random draws and batch order all resumed together.
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    for row, expected in zip(rows, reference, strict=True):
        assert {k: float(v) for k, v in row.items()} == pytest.approx(
            {k: float(v) for k, v in expected.items()}, rel=1e-4, abs=1e-6
        )
    summary = json.loads(Path(paths["summary_path"]).read_text())
    for key in ("epochs_run", "best_epoch", "stopped_early", "lr_changes"):
        assert summary[key] == reference_summary[key], key
    assert reference_summary["lr_changes"], "the reference run should lower its learning rate"
    assert not Path(paths["backup_dir"]).exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or "tmp-" in p.name]
    assert leftovers == []


@pytest.mark.slow
def test_the_disk_cache_of_a_killed_job_stays_in_its_backup_and_is_rebuilt(tmp_path, augmented_job):
    settings, inputs, reference, _ = augmented_job
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    env = {"TMPDIR": str(system_tmp)}
    job = tmp_path / "job"
    # Killed in the first epoch: the cache it wrote remains, in the job's backup.
    status, text = run_job(job, settings, inputs, "batch:1", DISK_CACHE, env)
    assert status == -9, text
    cache = Path(outputs(job, "run")["backup_dir"]) / resume.CACHE_DIR
    assert any(p.name.startswith("train.") for p in cache.iterdir()), list(cache.iterdir())
    status, text = run_job(job, settings, inputs, prelude=DISK_CACHE, env=env)
    assert status == 0, text
    assert "caching 16 decoded images" in text
    rows = history(outputs(job, "run")["history_path"])
    assert [float(r["loss"]) for r in rows] == pytest.approx([float(r["loss"]) for r in reference])
    assert not Path(outputs(job, "run")["backup_dir"]).exists()
    assert [p.name for p in system_tmp.iterdir() if "cache" in p.name] == []
