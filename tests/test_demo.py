"""The offline demo generator: deterministic, learnable classes, and bad files to reject."""

import json

import pytest
from conftest import tree_digest

from smallcnn import data
from smallcnn.demo import make_demo
from smallcnn.errors import UserError


def test_demo_is_deterministic(tmp_path):
    make_demo(tmp_path / "a", per_class=5, seed=1)
    make_demo(tmp_path / "b", per_class=5, seed=1)
    make_demo(tmp_path / "c", per_class=5, seed=2)
    first = tree_digest(tmp_path / "a")
    assert first == tree_digest(tmp_path / "b")
    assert first != tree_digest(tmp_path / "c")
    assert sorted({name.split("/")[0] for name in first if "/" in name}) == [
        "horizontal",
        "vertical",
    ]


def test_default_demo_split_has_enough_images_after_rejections(tmp_path):
    """config/demo.yaml asks 60/20/20 per class; the rule asks for their sum."""
    counts = {"train": 60, "validation": 20, "test": 20}
    make_demo(tmp_path / "demo", per_class=sum(counts.values()), seed=1337)
    out = tmp_path / "out"
    data.prepare(tmp_path / "demo", out / "manifest.csv", out / "rejections.json", 32, 10**7, 10**9)
    summary = json.loads((out / "rejections.json").read_text())
    assert min(summary["by_class"].values()) >= 100
    assert set(summary["by_reason"]) == {
        "empty",
        "truncated",
        "corrupt",
        "not_image",
        "too_small",
        "junk",
        "duplicate",
        "label_conflict",
    }
    assert summary["converted"]["count"] == 1
    splits = data.split(
        tmp_path / "demo",
        out / "manifest.csv",
        out / "splits.csv",
        {name: out / name for name in counts},
        counts,
        1337,
    )
    assert len(splits) == 200


def test_more_classes_and_unknown_ones(tmp_path):
    make_demo(
        tmp_path / "three", per_class=3, seed=0, classes=("horizontal", "vertical", "diagonal")
    )
    assert len(list((tmp_path / "three" / "diagonal").glob("diagonal-*.jpg"))) == 3
    with pytest.raises(UserError, match="not empty"):
        make_demo(tmp_path / "three", per_class=3, seed=0)
    with pytest.raises(UserError, match="circles"):
        make_demo(tmp_path / "bad", per_class=3, seed=0, classes=("horizontal", "circles"))
    with pytest.raises(UserError, match="two or more"):
        make_demo(tmp_path / "one", per_class=3, seed=0, classes=("vertical",))


@pytest.mark.slow
def test_the_demo_teaches_that_the_convnets_from_scratch_learn(demo_run):
    """A newcomer's first report (make demo: the demo's seed, the precision this machine picks)
    shows the convnets trained from scratch working: at least 85% of the 40 test images right,
    with and without augmentation. The demo run is shared with the other tests.

    Before issue 21 the demo's two epochs left their decision threshold wherever the last steps
    had thrown it: the models ranked the test images perfectly (ROC AUC 1.0) but scored 60% and
    50% at seed 1337 with mixed bfloat16."""
    accuracy = {}
    for name in ("scratch", "augmented"):
        metrics = json.loads((demo_run / "results" / "metrics" / name / "1337.json").read_text())
        assert metrics["n_test"] == 40
        accuracy[name] = metrics["test_accuracy"]
    assert min(accuracy.values()) >= 0.85, accuracy
