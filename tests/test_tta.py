"""Test-time augmentation: fixed views, evaluation and predict agreeing on every file, and the
report's measurement of what it changes."""

import csv
import json

import numpy as np
import pytest
from conftest import make_class_images
from test_report import ALL, SEED, fabricate_results, report_inputs, report_settings

from smallcnn import evaluation, models, predict, tta
from smallcnn.errors import UserError
from smallcnn.report import write_report


def test_view_names_follow_the_fixed_order_and_the_flip_setting():
    assert tta.view_names(0) == []
    assert tta.view_names(3) == ["identity", "horizontal_flip", "zoom_in"]
    assert tta.view_names(3, horizontal_flip=False) == ["identity", "zoom_in", "shift_left"]
    assert len(tta.view_names(7)) == 7
    with pytest.raises(UserError, match="0 to 6 views"):
        tta.view_names(7, horizontal_flip=False)


def test_views_are_the_image_its_mirror_a_zoom_and_ten_percent_shifts():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 20, 30, 3)).astype("float32")
    names = ["identity", "horizontal_flip", "zoom_in", "shift_left", "shift_up"]
    identity, flipped, zoomed, left, up = tta.views(image, names)
    assert np.array_equal(identity, image)
    assert np.array_equal(flipped, image[:, :, ::-1])
    # 10% of 30 columns and of 20 rows: whole pixels, so the shifts copy pixels exactly, and the
    # border repeats the nearest one.
    np.testing.assert_allclose(left[:, :, :27], image[:, :, 3:], atol=1e-3)
    np.testing.assert_allclose(left[:, :, 27:], np.repeat(image[:, :, 29:], 3, axis=2), atol=1e-3)
    np.testing.assert_allclose(up[:, :18], image[:, 2:], atol=1e-3)
    # A zoom in about the centre: the centre stays, a point away from it moves outwards.
    ramp = np.tile(np.arange(30, dtype="float32"), (1, 20, 1))[..., None].repeat(3, axis=3)
    (zoomed,) = tta.views(ramp, ["zoom_in"])
    assert zoomed[0, 10, 0, 0] == pytest.approx(14.5 - 0.9 * 14.5, abs=1e-3)
    assert zoomed[0, 10, 29, 0] == pytest.approx(14.5 + 0.9 * 14.5, abs=1e-3)
    again = tta.views(image, names)
    assert all(np.array_equal(a, b) for a, b in zip(again, tta.views(image, names), strict=True))


@pytest.fixture(scope="module")
def float32_model(tmp_path_factory):
    """A small float32 convnet (untrained: its probabilities are all this test needs) and a
    test split of two classes."""
    import keras

    keras.mixed_precision.set_dtype_policy("float32")
    keras.utils.set_random_seed(3)
    root = tmp_path_factory.mktemp("tta")
    make_class_images(root / "test", per_class=6, size=(52, 44))
    model = models.build_scratch(
        (48, 48, 3), 2, dropout=0.0, dense_units=8, class_names=["cat", "dog"]
    )
    model.save(root / "model.keras")
    summary = {
        "experiment": "scratch",
        "kind": "scratch",
        "seed": SEED,
        "epochs_run": 1,
        "best_epoch": 1,
        "stopped_early": False,
        "train_seconds": 1.0,
    }
    (root / "summary.json").write_text(json.dumps(summary))
    return root


def evaluated(root, name, views):
    metrics = evaluation.evaluate(
        root / "model.keras",
        root / "summary.json",
        root / "test",
        root / f"{name}.json",
        root / f"{name}.csv",
        image_size=(48, 48),
        batch_size=32,
        tta_views=views,
    )
    with open(root / f"{name}.csv", newline="") as stream:
        return metrics, {row["file"]: row for row in csv.DictReader(stream)}


def predicted(root, views):
    rows = predict.predict(root / "model.keras", [root / "test"], tta_views=views)
    return {str(row["file"]).split("test/", 1)[1]: row for row in rows}


def test_evaluate_and_predict_give_the_same_tta_probabilities(float32_model):
    views = tta.view_names(5)
    metrics, rows = evaluated(float32_model, "tta5", views)
    by_file = predicted(float32_model, views)
    assert set(by_file) == set(rows)
    for file, row in rows.items():
        assert by_file[file]["predicted"] == row["tta_predicted"]
        assert abs(float(by_file[file]["probability"]) - float(row["tta_probability"])) <= 1e-5
        # Every class's TTA probability, for the report to average over seeds.
        p = [float(row[column]) for column in tta.probability_columns(["cat", "dog"])]
        assert p[1] == pytest.approx(1 - p[0], abs=1e-6)
        assert p[["cat", "dog"].index(row["tta_predicted"])] == pytest.approx(
            float(row["tta_probability"]), abs=1e-6
        )
    # Different from the plain figures somewhere, or the views would not have been used.
    assert any(row["tta_probability"] != row["probability"] for row in rows.values())
    assert metrics["tta_views"] == views
    correct = [row["tta_predicted"] == row["label"] for row in rows.values()]
    assert metrics["tta_test_accuracy"] == pytest.approx(np.mean(correct))
    plain = [row["correct"] == "true" for row in rows.values()]
    pairs = list(zip(correct, plain, strict=True))
    assert metrics["tta_only_right"] == sum(c and not p for c, p in pairs)
    assert metrics["plain_only_right"] == sum(p and not c for c, p in pairs)
    assert metrics["tta_time_ratio"] > 1
    # Two runs give the same probabilities, to the last digit.
    assert predicted(float32_model, views) == by_file
    assert evaluated(float32_model, "again", views)[1] == rows


def test_one_view_is_no_tta(float32_model):
    metrics, rows = evaluated(float32_model, "tta1", ["identity"])
    assert metrics["tta_test_accuracy"] == metrics["test_accuracy"]
    assert metrics["tta_test_loss"] == pytest.approx(metrics["test_loss"], abs=1e-7)
    assert metrics["tta_only_right"] == metrics["plain_only_right"] == 0
    for row in rows.values():
        assert row["tta_predicted"] == row["predicted"]
        assert row["tta_probability"] == row["probability"]
    assert predicted(float32_model, ["identity"]) == predicted(float32_model, [])


def test_the_command_line_takes_tta_and_refuses_too_many_views(float32_model, capsys):
    model, images = str(float32_model / "model.keras"), str(float32_model / "test")
    assert predict.main(["--model", model, "--tta", "8", images]) == 2
    assert "0 to 7 views" in capsys.readouterr().err
    assert predict.main(["--model", model, "--tta", "2", "--no-flip", images]) == 0


def with_tta(root, name, only_tta, only_plain, ratio, seed=SEED):
    """Give a fabricated run TTA figures: TTA gets right the first `only_tta` images the run got
    wrong and gets wrong the first `only_plain` it got right; the predictions gain the TTA
    probability columns, the metrics the tta_* figures."""
    predictions = root / "results" / "predictions" / name / f"{seed}.csv"
    with open(predictions, newline="") as stream:
        rows = list(csv.DictReader(stream))
    wrong = [row for row in rows if row["correct"] == "false"][:only_tta]
    right = [row for row in rows if row["correct"] == "true"][:only_plain]
    assert (len(wrong), len(right)) == (only_tta, only_plain)
    flipped = {row["file"] for row in wrong + right}
    for row in rows:
        k = ["cat", "dog"].index(row["label"])
        tta_right = (row["correct"] == "true") != (row["file"] in flipped)
        row["tta_predicted"] = ["cat", "dog"][k if tta_right else 1 - k]
        row["tta_probability"] = "0.900000"
        p_label = 0.9 if tta_right else 0.1
        row["tta_p_" + row["label"]] = repr(p_label)
        row["tta_p_" + ["cat", "dog"][1 - k]] = repr(1 - p_label)
    with open(predictions, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    path = root / "results" / "metrics" / name / f"{seed}.json"
    metrics = json.loads(path.read_text())
    metrics.update(
        tta_views=tta.view_names(3),
        tta_test_accuracy=metrics["test_accuracy"] + (only_tta - only_plain) / len(rows),
        tta_test_loss=metrics["test_loss"],
        tta_roc_auc=metrics["roc_auc"],
        tta_balanced_accuracy=0.8,
        tta_macro_f1=0.7,
        tta_only_right=only_tta,
        plain_only_right=only_plain,
        plain_inference_seconds=1.0,
        tta_inference_seconds=ratio,
        tta_time_ratio=ratio,
    )
    path.write_text(json.dumps(metrics))


def test_the_report_measures_tta_and_says_which_experiments_go_without(tmp_path):
    from test_report import Page

    fabricate_results(tmp_path)
    for name in ALL:
        if name != "features":
            with_tta(tmp_path, name, 2, 1, 3.1)
    # scratch gets 11 of 20 test images right: TTA the 9 others too.
    with_tta(tmp_path, "scratch", 9, 0, 2.9)
    settings = report_settings(ALL)
    settings.tta = 3
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, ALL), settings, out)
    html = out.read_text(encoding="utf-8")
    page = Page(html)
    assert page.sections[5:] == ["heatmaps", "tta", "data", "provenance"]
    table = {row[0]: row for row in page.tables["tta-table"]}
    assert list(table) == ["scratch", "augmented", "frozen", "finetuned"]
    # 9 images only TTA got right, none the other way: McNemar p = 2 / 2**9.
    assert table["scratch"][3:] == ["+45.0", "9 / 0", "0.0039", "2.9", "TTA helps"]
    unsure = ["+5.0", "2 / 1", "1.0000", "3.1", "no significant difference"]
    assert table["augmented"][3:] == unsure
    assert "features takes conv-base features, not images" in " ".join(html.split())


def test_with_two_seeds_mcnemar_decides_on_predictions_averaged_over_the_seeds(tmp_path):
    """Two seeds are too few for the t-interval (as between experiments): McNemar decides, on one
    prediction per image with and one without TTA, not on both seeds' images pooled."""
    from test_report import Page

    seeds = (1, 2)
    fabricate_results(tmp_path, ["scratch"], seeds=seeds)
    with_tta(tmp_path, "scratch", 5, 0, 2.0, seed=1)
    with_tta(tmp_path, "scratch", 0, 3, 2.0, seed=2)
    tables = []
    for seed in seeds:
        with open(tmp_path / "results" / "predictions" / "scratch" / f"{seed}.csv") as stream:
            tables.append({row["file"]: row for row in csv.DictReader(stream)})
    only_tta = only_plain = 0
    for file, row in tables[0].items():
        dog = row["label"] == "dog"
        plain = (sum(float(t[file]["p_dog"]) for t in tables) / 2 > 0.5) == dog
        with_views = (sum(float(t[file]["tta_p_dog"]) for t in tables) / 2 > 0.5) == dog
        only_tta += with_views and not plain
        only_plain += plain and not with_views
    settings = report_settings(["scratch"], seeds=list(seeds))
    settings.tta = 3
    out = tmp_path / "report.html"
    write_report(report_inputs(tmp_path, ["scratch"], seeds=seeds), settings, out)
    row = Page(out.read_text(encoding="utf-8")).tables["tta-table"][0]
    assert row[0] == "scratch"
    # Pooled, the two seeds would count 5 / 3.
    assert row[4] == f"{only_tta} / {only_plain}" != "5 / 3"
    assert row[-1].startswith("McNemar: 2 seeds are too few")
