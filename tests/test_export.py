"""Exports: the demo's scratch model and a features model (VGG16 at the demo's 64x64) in all four
formats, run by their own runtimes, with their parity, model.json, predict and the report."""

import json
import shutil

import numpy as np
import pytest
import yaml
from conftest import REPO, run_snakemake
from test_report import Page, fabricate_results, report_inputs, report_settings
from test_workflow import planned_jobs

from smallcnn import (
    artifacts,
    experiments,
    export,
    export_plan,
    models,
    parity,
    predict,
    registry,
)
from smallcnn.errors import UserError
from smallcnn.fingerprint import file_sha256
from smallcnn.report import write_report

DEMO = REPO / "config" / "demo.yaml"
SEED = 1337
FORMATS = list(registry.EXPORT_FORMATS)
FLOAT_FORMATS = [name for name in FORMATS if not registry.EXPORT_FORMATS[name].quantized]


@pytest.fixture(scope="module")
def exported(demo_run, tmp_path_factory):
    """A copy of the demo run with its scratch model exported (as the demo does) and a features
    experiment on VGG16 weights from a file, exported too: `snakemake exports` in the copy."""
    root = tmp_path_factory.mktemp("exported")
    work = root / "work"
    shutil.copytree(demo_run, work, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    weights = root / "vgg16_random.weights.h5"
    models.build_conv_base("vgg16", None, (32, 32, 3)).save_weights(weights)
    config = {
        "experiments": {
            "scratch": {"kind": "scratch"},
            "features": {"kind": "features", "conv_base": {"weights": str(weights)}},
        },
        "export": {"experiments": ["scratch", "features"]},
    }
    plan = run_snakemake(work, ["exports"], config=config, configfiles=[DEMO], args=["-n"])
    run_snakemake(work, ["exports"], config=config, configfiles=[DEMO])
    return {"work": work, "weights": weights, "plan": planned_jobs(plan.stdout + plan.stderr)}


def folder(exported, name):
    return exported["work"] / "results" / "export" / name / str(SEED)


def read(exported, name, what):
    return json.loads((folder(exported, name) / what).read_text())


@pytest.mark.slow
def test_exports_train_nothing_already_trained(exported):
    rules = {(rule, name) for rule, name, _ in exported["plan"]}
    # The demo exported scratch already; only the new features experiment is trained.
    assert ("train", "scratch") not in rules and ("export", "scratch") not in rules
    assert {("train", "features"), ("export", "features")} <= rules


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scratch", "features"])
def test_every_format_is_produced_and_the_float_ones_meet_their_target(exported, name):
    results = read(exported, name, "parity.json")
    assert results["n_test"] == 40
    rows = results["formats"]
    assert list(rows) == ["keras_float32", *FORMATS]
    for fmt in FORMATS:
        assert rows[fmt]["status"] == "ok", rows[fmt]
        assert (folder(exported, name) / registry.EXPORT_FORMATS[fmt].path).exists()
        assert rows[fmt]["size_bytes"] > 0 and rows[fmt]["latency_ms"] > 0
    for fmt in FLOAT_FORMATS:
        assert rows[fmt]["max_abs_diff"] <= 1e-4 and rows[fmt]["agreement"] == 1.0
        assert rows[fmt]["target_met"] and rows[fmt]["enforced"]
        assert rows[fmt]["accuracy"] == rows["keras_float32"]["accuracy"]
    # 40 test images: the int8 target is reported, not enforced.
    assert not rows["tflite_int8"]["enforced"]
    assert rows["tflite_int8"]["size_bytes"] < rows["tflite"]["size_bytes"] / 3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scratch", "features"])
def test_model_json_says_how_to_feed_the_artifacts_and_what_they_came_from(exported, name):
    info = read(exported, name, "model.json")
    source = exported["work"] / "results" / "models" / name / f"{SEED}.keras"
    assert info["source"]["sha256"] == file_sha256(source)
    assert info["source"]["training_precision"]
    summary = json.loads(source.with_suffix(".json").read_text())
    assert info["class_names"] == summary["class_names"] == ["horizontal", "vertical"]
    assert info["input"] | {"resize": None, "preprocessing": None, "layout": None} == {
        "name": "image",
        "dtype": "uint8",
        "shape": [None, 64, 64, 3],
        "channel_order": "RGB",
        "value_range": [0, 255],
        "resize": None,
        "preprocessing": None,
        "layout": None,
    }
    assert info["output"]["activation"] == "sigmoid" and info["output"]["shape"] == [None, 1]
    assert "'vertical' when it is above 0.5" in info["output"]["meaning"]
    assert list(info["formats"]) == FORMATS
    assert all(version for version in info["exported_with"].values())
    if name == "features":
        assert info["conv_base"]["weights_sha256"] == file_sha256(exported["weights"])
        assert "vgg16.preprocess_input" in info["input"]["preprocessing"]
    else:
        assert info["conv_base"] is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scratch", "features"])
def test_predict_runs_every_artifact_and_agrees_with_the_keras_model(exported, name):
    work = exported["work"]
    test = work / "results" / "data" / "test"
    weights = exported["weights"] if name == "features" else None

    def labels(model):
        rows = predict.predict(model, [test], weights=weights)
        assert all(row["predicted"] for row in rows)
        return [row["predicted"] for row in rows]

    keras_labels = labels(work / "results" / "models" / name / f"{SEED}.keras")
    rows = read(exported, name, "parity.json")["formats"]
    for fmt in FORMATS:
        got = labels(folder(exported, name) / registry.EXPORT_FORMATS[fmt].path)
        same = np.mean([a == b for a, b in zip(got, keras_labels, strict=True)])
        # Float formats agree everywhere; int8 as often as its parity says.
        assert same == (1.0 if fmt in FLOAT_FORMATS else rows[fmt]["agreement"]), fmt


def demo_scratch(demo_run):
    results = demo_run / "results"
    return {
        "model_path": results / "models" / "scratch" / f"{SEED}.keras",
        "summary_path": results / "models" / "scratch" / f"{SEED}.json",
        "test_dir": results / "data" / "test",
        "train_dir": results / "data" / "train",
        "latency_runs": 2,
    }


@pytest.fixture
def broken_preprocessing(monkeypatch):
    """The inference graph with its Rescaling layer left out: the model sees 0..255, not 0..1."""
    head_layers = export._head_layers

    def without_rescaling(model):
        return [layer for layer in head_layers(model) if not layer.name.startswith("rescaling")]

    monkeypatch.setattr(export, "_head_layers", without_rescaling)


@pytest.mark.slow
def test_an_export_without_its_preprocessing_fails_with_its_figures(
    demo_run, tmp_path, broken_preprocessing
):
    with pytest.raises(parity.ParityError) as caught:
        export.export(**demo_scratch(demo_run), out_dir=tmp_path / "out", formats=["onnx"])
    message = str(caught.value)
    assert "scratch/1337 misses its parity target in onnx (40 test images)" in message
    assert "onnx: max |dp|" in message and "export.allow_mismatch" in message
    # Named in allow_mismatch, the same miss is reported and the job goes on.
    results = export.export(
        **demo_scratch(demo_run),
        out_dir=tmp_path / "allowed",
        formats=["onnx"],
        allow_mismatch=["onnx"],
    )
    onnx = results["formats"]["onnx"]
    assert onnx["max_abs_diff"] > 1e-2 and not onnx["target_met"] and onnx["allowed_mismatch"]
    fabricate_results(tmp_path / "report", ["scratch"])
    inputs = report_inputs(tmp_path / "report", ["scratch"])
    inputs.exports = [tmp_path / "allowed"]
    write_report(inputs, report_settings(["scratch"]), tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<tr data-format="onnx" class="miss">' in html
    assert "<strong>missed</strong> (allowed by export.allow_mismatch)" in html


@pytest.mark.slow
def test_a_refusing_converter_is_reported_and_the_other_formats_still_export(
    demo_run, tmp_path, monkeypatch
):
    real = export.convert

    def refuses_tflite(serving, name, path, representative=None):
        if name == "tflite":
            raise ValueError("op FancyOp is neither a custom op nor a flex op")
        return real(serving, name, path, representative)

    monkeypatch.setattr(export, "convert", refuses_tflite)
    out = tmp_path / "out"
    results = export.export(**demo_scratch(demo_run), out_dir=out, formats=["onnx", "tflite"])
    assert results["formats"]["tflite"] == {
        "path": "model.tflite",
        "status": "cannot_be_produced",
        "error": "ValueError: op FancyOp is neither a custom op nor a flex op",
    }
    assert results["formats"]["onnx"]["target_met"]
    assert not (out / "model.tflite").exists() and (out / "model.onnx").is_file()
    info = json.loads((out / "model.json").read_text())
    assert info["formats"]["tflite"]["status"] == "cannot_be_produced"


def test_the_report_shows_one_table_per_exported_model(exported, tmp_path):
    fabricate_results(tmp_path, ["scratch", "features"])
    inputs = report_inputs(tmp_path, ["scratch", "features"])
    inputs.exports = [folder(exported, "scratch"), folder(exported, "features")]
    write_report(inputs, report_settings(["scratch", "features"]), tmp_path / "report.html")
    page = Page((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert page.sections[5:] == ["heatmaps", "exports", "data", "provenance"]
    for name in ("scratch", "features"):
        table = page.tables[f"export-{name}"]
        assert [row[0].split()[0] for row in table] == ["keras_float32", *FORMATS]
        assert all(row[-1] in ("the reference", "met") for row in table[:-1])


def test_all_leaves_out_features_of_a_random_base_and_naming_one_is_an_error():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config.update(experiments=["scratch", "features", "frozen"], conv_base={"weights": "none"})
    config["conv_base"].update(name="vgg16", unfreeze_from="block5_conv1")
    demo = experiments.resolve(config)
    assert export_plan.exported("all", demo) == ["scratch", "frozen"]
    assert "features" in export_plan.left_out("all", demo)
    assert export_plan.left_out(["scratch"], demo) == {}
    with pytest.raises(UserError, match="names features, features of a conv base with random"):
        export_plan.exported(["features"], demo)
    with pytest.raises(UserError, match="names nope, not a declared experiment"):
        export_plan.exported(["scratch", "nope"], demo)


def test_the_schema_lists_the_registrys_formats():
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    export_schema = schema["properties"]["export"]["properties"]
    assert export_schema["formats"]["items"]["enum"] == FORMATS
    assert export_schema["allow_mismatch"]["items"]["enum"] == FORMATS
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert config["export"]["formats"] == FORMATS


def test_an_onnx_file_that_needs_more_than_the_image_is_refused_by_name(tmp_path):
    """What tf2onnx made of EfficientNetB0: its Normalization constants left as graph inputs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT)],
        "two_inputs",
        [
            helper.make_tensor_value_info("image", TensorProto.UINT8, [None, 4, 4, 3]),
            helper.make_tensor_value_info("normalization/mean", TensorProto.FLOAT, [1, 1, 1, 3]),
        ],
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [None, 4, 4, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "model.onnx")
    info = {"class_names": ["a", "b"], "input": {"shape": [None, 4, 4, 3]}, "output": {}}
    (tmp_path / "model.json").write_text(json.dumps(info))
    with pytest.raises(UserError, match=r"takes 2 inputs \(image, normalization/mean\)"):
        artifacts.load(tmp_path / "model.onnx")
