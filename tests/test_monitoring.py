"""The chapter's monitoring: TensorBoard's graph, histograms, gradient norms and projector read
back as TensorBoard reads them, and the learning-rate schedule, also across a killed job."""

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_class_images
from test_resume import run_job
from test_training import history, outputs, settings_for

from smallcnn import datasets, experiments, monitor_config
from smallcnn.errors import UserError

DEFAULTS = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
EPOCHS = 5
BASE_RATE = 1e-3
COSINE = {"kind": "cosine", "warmup_epochs": 1, "min_learning_rate": 1e-5}


def test_each_schedule_follows_its_formula_by_hand():
    rate = monitor_config.learning_rate
    step = {"kind": "step", "warmup_epochs": 2, "drop_every": 2, "drop_factor": 0.1}
    # Warm-up 1/3 and 2/3 of the rate, then 2 epochs at the rate, 2 at a tenth, ...
    assert [rate(e, 0.3, step, 8) for e in range(8)] == pytest.approx(
        [0.1, 0.2, 0.3, 0.3, 0.03, 0.03, 0.003, 0.003]
    )
    exponential = {"kind": "exponential", "warmup_epochs": 0, "decay": 0.5}
    assert [rate(e, 1.0, exponential, 4) for e in range(4)] == [1.0, 0.5, 0.25, 0.125]
    # Cosine over the 4 epochs after one of warm-up: 1, (1 + cos(pi/4)) / 2, 1/2, ...
    cosine = {"kind": "cosine", "warmup_epochs": 1, "min_learning_rate": 0.0}
    assert [rate(e, 1.0, cosine, 5) for e in range(5)] == pytest.approx(
        [0.5, 1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2]
    )
    assert rate(3, 0.01, {"kind": "none", "warmup_epochs": 5}, 10) == 0.01


def test_a_schedule_is_refused_with_reduce_lr_or_without_its_keys():
    off = {"enabled": False}
    assert monitor_config.check_schedule({"reduce_lr": off}, 3)["kind"] == "none"
    with pytest.raises(UserError, match="cosine while callbacks.reduce_lr is enabled"):
        monitor_config.check_schedule({"lr_schedule": COSINE, "reduce_lr": {"enabled": True}}, 9)
    with pytest.raises(UserError, match="of kind step needs drop_every, drop_factor"):
        monitor_config.check_schedule({"lr_schedule": {"kind": "step"}, "reduce_lr": off}, 9)
    with pytest.raises(UserError, match="warmup_epochs is 3, not fewer than the 3 epochs"):
        monitor_config.check_schedule(
            {"lr_schedule": {**COSINE, "warmup_epochs": 3}, "reduce_lr": off}, 3
        )


def test_the_config_refuses_a_schedule_with_reduce_lr_at_start():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(REPO / "schemas" / "config.schema.yaml")
    config = json.loads(json.dumps(DEFAULTS))
    config["callbacks"]["lr_schedule"]["kind"] = "cosine"
    with pytest.raises(WorkflowError, match="False was expected"):
        validate(config, schema)
    config["callbacks"]["reduce_lr"]["enabled"] = False
    validate(config, schema)
    # An experiment that turns reduce_lr back on is named when the experiments are resolved.
    config["experiments"] = {"sched": {"kind": "scratch", "callbacks": {"reduce_lr": {}}}}
    config["experiments"]["sched"]["callbacks"]["reduce_lr"]["enabled"] = True
    validate(config, schema)
    with pytest.raises(UserError, match="experiment 'sched': callbacks.lr_schedule is cosine"):
        experiments.resolve(config)
    assert SCHEMA["$defs"]["callbacks"]["properties"]["lr_schedule"]["properties"]["kind"][
        "enum"
    ] == list(monitor_config.SCHEDULES)


def test_tensorboard_true_and_false_are_shorthand_and_merge_key_by_key():
    defaults = DEFAULTS["callbacks"]["tensorboard"]
    assert defaults == {"enabled": True, "histogram_freq": 1, "embeddings": True}
    merged = experiments.merge_callbacks({"tensorboard": defaults}, {"tensorboard": False})
    assert monitor_config.tensorboard({"callbacks": merged}) == {
        "enabled": False,
        "histogram_freq": 0,
        "embeddings": False,
    }
    merged = experiments.merge_callbacks(
        {"tensorboard": True}, {"tensorboard": {"histogram_freq": 2}}
    )
    assert merged["tensorboard"] == {"enabled": True, "histogram_freq": 2}
    assert monitor_config.tensorboard({"callbacks": {"tensorboard": True}})["embeddings"] is False


def monitored_settings(**changes):
    settings = settings_for(
        "scratch", epochs=EPOCHS, learning_rate=BASE_RATE, precision="float32", **changes
    )
    callbacks = settings["callbacks"]
    callbacks["reduce_lr"]["enabled"] = False
    callbacks["early_stopping"]["enabled"] = False
    callbacks["tensorboard"] = {"enabled": True, "histogram_freq": 1, "embeddings": True}
    callbacks["lr_schedule"] = dict(COSINE)
    return settings


@pytest.fixture(scope="module")
def monitored_job(tmp_path_factory):
    """A small scratch run with a cosine schedule and every TensorBoard output, uninterrupted."""
    root = tmp_path_factory.mktemp("monitored")
    for split, seed in (("train", 1), ("validation", 2), ("test", 3)):
        make_class_images(root / "data" / split, per_class=8, size=(48, 48), seed=seed)
    inputs = {split: str(root / "data" / split) for split in ("train", "validation", "test")}
    settings = monitored_settings()
    status, text = run_job(root / "reference", settings, inputs)
    assert status == 0, text
    return settings, inputs, outputs(root / "reference", "run")


def formula_rates():
    return [monitor_config.learning_rate(e, BASE_RATE, COSINE, EPOCHS) for e in range(EPOCHS)]


@pytest.mark.slow
def test_the_learning_rate_of_every_epoch_is_the_schedules(monitored_job):
    _, _, paths = monitored_job
    rates = [float(row["learning_rate"]) for row in history(paths["history_path"])]
    assert rates == pytest.approx(formula_rates(), rel=1e-6)
    # Warm-up from half the rate, then down the cosine.
    assert rates[0] == pytest.approx(BASE_RATE / 2) and rates[1] == pytest.approx(BASE_RATE)


def accumulate(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0, "histograms": 0})
    events.Reload()
    return events


def steps(events, tag):
    return sorted(event.step for event in events.Tensors(tag))


@pytest.mark.slow
def test_tensorboard_has_the_graph_histograms_gradients_and_a_projector(monitored_job):
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    _, inputs, paths = monitored_job
    logs = Path(paths["tensorboard_dir"])
    every_epoch = list(range(EPOCHS))
    train = accumulate(logs / "train")
    assert train.Tags()["graph"] and train.Graph().node
    # Keras' weight histograms, every epoch.
    for layer in ("conv1", "conv4", "dense", "output"):
        assert steps(train, f"{layer}/kernel/histogram") == every_epoch
    diagnostics = accumulate(logs / "diagnostics")
    tags = diagnostics.Tags()["tensors"]
    for block in ("block1", "block2", "block3", "block4"):
        assert steps(diagnostics, f"activations/{block}") == every_epoch
    for layer in ("conv1", "conv2", "conv3", "conv4", "dense", "output"):
        assert steps(diagnostics, f"gradient_norm/{layer}") == every_epoch
    assert len([tag for tag in tags if tag.startswith("gradient_norm/")]) == 6

    folder = logs / "projector"
    config = text_format.Parse(
        (folder / "projector_config.pbtxt").read_text(), projector.ProjectorConfig()
    )
    [embedding] = config.embeddings
    tensor = folder / embedding.tensor_path
    metadata = folder / embedding.metadata_path
    assert (
        tensor.is_file() and metadata.is_file() and (folder / embedding.sprite.image_path).is_file()
    )
    test_images = sorted(
        p.relative_to(inputs["test"]).as_posix() for p in Path(inputs["test"]).rglob("*.jpg")
    )
    rows = [line.split("\t") for line in tensor.read_text().splitlines()]
    assert len(rows) == len(test_images) == 16 and {len(row) for row in rows} == {16}
    with open(metadata, newline="") as stream:
        table = list(csv.DictReader(stream, delimiter="\t"))
    assert sorted(row["file"] for row in table) == test_images
    assert all(row["file"].split("/")[0] == row["label"] for row in table)
    assert {row["predicted"] for row in table} <= {"cat", "dog"}
    # The folder is a run TensorBoard lists: it has an event file.
    assert list(folder.glob("events.out.tfevents*"))


@pytest.mark.slow
def test_a_job_killed_in_epoch_3_resumes_the_schedule_where_it_stopped(monitored_job, tmp_path):
    settings, inputs, reference = monitored_job
    status, text = run_job(tmp_path, settings, inputs, kill_at="batch:3")
    assert status == -9, text
    status, text = run_job(tmp_path, settings, inputs)
    assert status == 0, text
    assert f"resuming after epoch 2 of {EPOCHS}" in text
    rates = [
        float(row["learning_rate"]) for row in history(outputs(tmp_path, "run")["history_path"])
    ]
    expected = [float(row["learning_rate"]) for row in history(reference["history_path"])]
    assert rates == pytest.approx(expected, rel=1e-6) == formula_rates()


@pytest.mark.slow
def test_every_demo_experiment_has_its_projector(demo_run):
    """Features included: its embeddings come from the test features, its sprite from the
    images."""
    n_test = len(datasets.list_images(demo_run / "results" / "data" / "test")[0])
    for name in ("scratch", "augmented", "features", "frozen", "finetuned"):
        folder = demo_run / "results" / "tensorboard" / name / "1337" / "projector"
        assert len((folder / "embeddings.tsv").read_text().splitlines()) == n_test, name
        assert len((folder / "metadata.tsv").read_text().splitlines()) == n_test + 1, name
        assert (folder / "sprite.png").is_file() and (folder / "projector_config.pbtxt").is_file()
