"""Models learn: on the demo data they beat chance clearly, and on the same images with shuffled
labels they do not.

Every other test would pass on a pipeline that fed constant images or scrambled the labels; these
would not. The shuffled run guards against labels leaking into the test score other than through
the images (say, test labels taken from the predictions or from file order): its labels say
nothing about the images, so only such a leak could lift its score. It does not catch a test
image duplicated in training: on shuffled labels these short schedules fit only about half of the
training labels, so no model memorises the duplicate's label.
"""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, run_snakemake

from smallcnn.demo import make_demo

DEMO = REPO / "config" / "demo.yaml"
EXPERIMENTS = ["scratch", "features"]
# The runs use config.yaml's seed, for the split and training and for generating the demo images.
SEED = yaml.safe_load((REPO / "config.yaml").read_text())["seed"]
# The demo's own schedule (2 epochs; features at learning rate 1e-4) was too short to judge by
# accuracy: its models ranked the test images almost perfectly (ROC AUC 0.98-1.0), but their
# decision threshold had not settled, so accuracy swung between 0.50 and 1.00 from seed to seed
# (scratch 0.60 at the demo's seed 1337, features 0.50 at seed 1 with 3 epochs; since issue 21
# the demo trains scratch and augmented for 4 epochs, which settle them). Measured
# on this schedule instead: scratch settles by its 3rd epoch; the features classifier, slow on
# features of a random VGG16, needs about 30 epochs at 1e-3 (10 gave 0.72-0.75), which cost
# about 3 s, since its inputs are extracted once.
SCHEDULE = {
    "experiments": EXPERIMENTS,
    "training": {"scratch": {"epochs": 3}, "features": {"epochs": 30, "learning_rate": 1.0e-3}},
}
# The test split holds 20 images per class, 40 in all: chance is 50%, one image 2.5 points.
# Test accuracy on this schedule, {seed: (real labels, shuffled labels)}, measured on the
# development machine (2 CPU cores, TensorFlow 2.21, float32):
MEASURED = {
    "scratch": {1337: (1.0, 0.5), 1: (1.0, 0.525), 2: (1.0, 0.5)},
    "features": {1337: (1.0, 0.5), 1: (1.0, 0.5), 2: (1.0, 0.5)},
}
# Thresholds, with margin from MEASURED. 40 coin flips reach 75% with probability 0.001, and
# a model that learnt reached it on every seed.
ABOVE_CHANCE = 0.75
# Below what a learning model reached, above what shuffled labels gave on every seed.
SHUFFLED_AT_MOST = 0.7
# The drop from real to shuffled labels, at least.
MARGIN = 0.25


def metrics_path(workdir, experiment):
    """Where an experiment's test metrics are (the one place that knows the output layout)."""
    return workdir / "results" / "metrics" / experiment / f"{SEED}.json"


def accuracy_of(workdir, experiment):
    return json.loads(metrics_path(workdir, experiment).read_text())["test_accuracy"]


def write_shuffled_demo(out_dir, seed):
    """The demo's images with their class folders permuted: the same files and class sizes,
    labels unrelated to what the images show. Returns the folder."""
    generated = out_dir.with_name(out_dir.name + "-generated")
    per_class = sum(yaml.safe_load(DEMO.read_text())["split"].values())
    make_demo(generated, per_class=per_class, seed=seed)
    classes = sorted(path.name for path in generated.iterdir() if path.is_dir())
    # Only the stripe images (<class>-<i>.jpg): the demo's bad files would be rejected again.
    files = sorted(
        path
        for label in classes
        for path in (generated / label).iterdir()
        if re.fullmatch(rf"{label}-\d+\.jpg", path.name)
    )
    labels = np.random.default_rng(seed).permutation(np.repeat(classes, per_class))
    for index, (path, label) in enumerate(zip(files, labels, strict=True)):
        (out_dir / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out_dir / label / f"{index:05d}.jpg")
    shutil.rmtree(generated)
    return out_dir


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """The demo data with the learning schedule; the working directory."""
    workdir = tmp_path_factory.mktemp("real")
    run_snakemake(workdir, metrics_targets(), config=SCHEDULE, configfiles=[DEMO])
    return workdir


@pytest.fixture(scope="module")
def shuffled_run(tmp_path_factory):
    """The same run on the same images with their labels shuffled; the working directory."""
    source = write_shuffled_demo(tmp_path_factory.mktemp("data") / "shuffled", seed=SEED)
    config = {**SCHEDULE, "data": {"source": "local", "path": str(source)}}
    workdir = tmp_path_factory.mktemp("shuffled")
    run_snakemake(workdir, metrics_targets(), config=config, configfiles=[DEMO])
    return workdir


def metrics_targets():
    return [str(metrics_path(Path("."), name)) for name in EXPERIMENTS]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_models_beat_chance_clearly(real_run, experiment):
    accuracy = accuracy_of(real_run, experiment)
    assert accuracy >= ABOVE_CHANCE, f"{experiment}: {accuracy:.3f} on the demo's test split"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_shuffled_labels_score_near_chance(real_run, shuffled_run, experiment):
    real, shuffled = accuracy_of(real_run, experiment), accuracy_of(shuffled_run, experiment)
    assert shuffled <= SHUFFLED_AT_MOST, f"{experiment}: {shuffled:.3f} on shuffled labels"
    assert real - shuffled >= MARGIN, f"{experiment}: {real:.3f} real, {shuffled:.3f} shuffled"
