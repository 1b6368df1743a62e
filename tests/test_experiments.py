"""Declared experiments: resolution, start-time errors, replicates and exact reruns."""

import csv
import hashlib
import json
import os
import re
import time
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO, make_class_images, run_snakemake
from test_workflow import planned_features, planned_jobs

from smallcnn import experiments, registry
from smallcnn.errors import UserError

DEFAULTS = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())


def config_with(declared, **changes):
    config = json.loads(json.dumps(DEFAULTS))
    config["experiments"] = declared
    config.update(changes)
    return config


def test_the_schemas_kinds_and_bases_are_the_registrys():
    assert SCHEMA["$defs"]["kind"]["enum"] == list(registry.KINDS)
    assert SCHEMA["$defs"]["base_name"]["enum"] == list(registry.BASES)
    assert list(SCHEMA["properties"]["training"]["properties"]) == list(registry.KINDS)
    assert set(SCHEMA["$defs"]["training_keys"]["properties"]) == set(registry.TRAINING_KEYS)
    assert list(DEFAULTS["training"]) == list(registry.KINDS)


def test_the_list_form_is_the_book_experiments_and_finetuned_brings_frozen():
    resolved = experiments.resolve(config_with(["scratch", "finetuned"]))
    assert list(resolved) == ["scratch", "frozen", "finetuned"]
    assert resolved["finetuned"].start == "frozen"
    assert resolved["scratch"].settings["dense_units"] == 512
    assert resolved["finetuned"].conv_base == {
        "name": "vgg16",
        "weights": "imagenet",
        "unfreeze_from": "block5_conv1",
    }
    # finetuned keeps the head of the model it starts from.
    assert "dense_units" not in resolved["finetuned"].settings


def test_overrides_merge_over_the_kinds_defaults_key_by_key():
    resolved = experiments.resolve(
        config_with(
            {
                "fast": {
                    "kind": "scratch",
                    "learning_rate": 3e-3,
                    "callbacks": {"early_stopping": {"patience": 2}},
                },
                "mobile": {"kind": "frozen", "conv_base": {"name": "mobilenetv2"}},
                "ft4": {"kind": "finetuned", "from": "mobile", "conv_base": {"unfreeze_from": "x"}},
            }
        )
    )
    fast = resolved["fast"]
    assert fast.settings["learning_rate"] == 3e-3 and fast.settings["epochs"] == 30
    assert fast.settings["callbacks"]["early_stopping"] == {
        **DEFAULTS["callbacks"]["early_stopping"],
        "patience": 2,
    }
    assert fast.overrides == ("learning_rate", "callbacks")
    assert resolved["mobile"].conv_base == {"name": "mobilenetv2", "weights": "imagenet"}
    assert resolved["ft4"].conv_base == {
        "name": "mobilenetv2",
        "weights": "imagenet",
        "unfreeze_from": "x",
    }


# A finetuned experiment whose frozen start has weights other than the global ones: a finetuned
# experiment that took the global weights instead of its start's would look right with the
# defaults, where the two coincide.
OWN_WEIGHTS = {
    "fr": {"kind": "frozen", "conv_base": {"weights": "none"}},
    "ft": {"kind": "finetuned", "from": "fr", "conv_base": {"unfreeze_from": "block4_conv1"}},
}


def test_a_finetuned_experiment_takes_the_base_and_weights_of_its_start():
    resolved = experiments.resolve(
        config_with(
            {
                **OWN_WEIGHTS,
                "fr": {"kind": "frozen", "conv_base": {"name": "resnet50", "weights": "none"}},
            },
            conv_base={"name": "vgg16", "weights": "imagenet", "unfreeze_from": "block5_conv1"},
        )
    )
    assert resolved["fr"].conv_base == {"name": "resnet50", "weights": "none"}
    assert resolved["ft"].conv_base == {
        "name": "resnet50",
        "weights": "none",
        "unfreeze_from": "block4_conv1",
    }


def rules_functions(workdir, config):
    """The workflow's own rule functions, as Snakemake loads them for `config` merged over
    config.yaml: what the train job's params and inputs are made of."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings()) as api:
            workflow = api.workflow(
                resource_settings=ResourceSettings(cores=1),
                config_settings=ConfigSettings(configfiles=[configfile]),
                snakefile=REPO / "Snakefile",
                workdir=workdir,
            )
            return workflow._workflow.globals
    finally:
        os.chdir(cwd)


def test_the_finetuned_train_job_gets_its_starts_weights_from_the_rules(tmp_path):
    config = {
        "conv_base": {"name": "vgg16", "weights": "imagenet", "unfreeze_from": "block5_conv1"},
        "experiments": OWN_WEIGHTS,
        "seeds": [3],
    }
    rules = rules_functions(tmp_path, config)
    ft = SimpleNamespace(experiment="ft", seed="3")
    assert rules["train_params"](ft)["conv_base"] == {
        "name": "vgg16",
        "weights": "none",
        "unfreeze_from": "block4_conv1",
    }
    assert rules["train_inputs"](ft) == {
        "train": "results/data/train",
        "validation": "results/data/validation",
        "start": "results/models/fr/3.keras",
        # For TensorBoard's projector (callbacks.tensorboard.embeddings, on by default).
        "test": "results/data/test",
    }
    fr = SimpleNamespace(experiment="fr", seed="3")
    assert rules["train_params"](fr)["conv_base"] == {"name": "vgg16", "weights": "none"}
    # Random weights: no weights file to fetch, for the start or for the finetuned experiment.
    assert rules["train_inputs"](fr)["weights"] == []


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"ft": {"kind": "finetuned"}}, r"'ft' .*must name the frozen experiment.*frozen: \{kind"),
        (
            {"fr": {"kind": "frozen"}, "ft": {"kind": "finetuned", "from": "nope"}},
            r"starts from 'nope', which is not declared.*write from: fr",
        ),
        (
            {"s": {"kind": "scratch"}, "ft": {"kind": "finetuned", "from": "s"}},
            r"starts from 's', which is a scratch",
        ),
        ({"s": {"kind": "scratch", "conv_base": {"name": "vgg16"}}}, r"'s' .*cannot set conv_base"),
        ({"f": {"kind": "features", "augment": True}}, r"'f' .*cannot set augment"),
        (
            {"fr": {"kind": "frozen"}, "ft": {"kind": "finetuned", "from": "fr", "dropout": 0.1}},
            r"cannot set dropout",
        ),
        (
            {
                "fr": {"kind": "frozen"},
                "ft": {"kind": "finetuned", "from": "fr", "conv_base": {"name": "resnet50"}},
            },
            r"cannot set name: that kind takes conv_base.unfreeze_from",
        ),
        ({"s": {"kind": "scratch", "from": "x"}}, r"cannot set from"),
        ({"s": {"kind": "scratch", "epoch": 3}}, r"unknown key\(s\) epoch"),
        ({"a b": {"kind": "scratch"}}, r"used in paths"),
    ],
)
def test_wrong_declarations_are_named(declared, message):
    with pytest.raises(UserError, match=message):
        experiments.resolve(config_with(declared))


def test_weights_are_keyed_by_file_content(tmp_path):
    first = tmp_path / "My VGG.weights.h5"
    first.write_bytes(b"one")
    second = tmp_path / "other.weights.h5"
    second.write_bytes(b"one")
    assert experiments.weights_id("imagenet") == "imagenet"
    name = experiments.weights_id(str(first))
    assert re.fullmatch(r"my_vgg_weights-[0-9a-f]{10}", name)
    assert name.split("-")[1] == experiments.weights_id(str(second)).split("-")[1]
    first.write_bytes(b"two")
    assert experiments.weights_id(str(first)) != name
    with pytest.raises(UserError, match="no such file"):
        experiments.weights_id(str(tmp_path / "missing.h5"))


def test_a_weights_files_hash_is_kept_until_its_size_or_mtime_changes(tmp_path, monkeypatch):
    hashed = []
    monkeypatch.setattr(
        experiments, "file_sha256", lambda path: hashed.append(path) or f"{len(hashed)}" * 64
    )
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"one")
    os.utime(weights, ns=(10**18, 10**18))
    first = experiments.weights_id(str(weights))
    assert experiments.weights_id(str(weights)) == first and len(hashed) == 1
    # The same size, another mtime: hashed again.
    weights.write_bytes(b"two")
    os.utime(weights, ns=(10**18 + 1, 10**18 + 1))
    second = experiments.weights_id(str(weights))
    assert len(hashed) == 2 and second != first
    # Changed just now: a rewrite within the clock's granularity could keep size and mtime.
    weights.write_bytes(b"six")
    experiments.weights_id(str(weights))
    experiments.weights_id(str(weights))
    assert len(hashed) == 4


def test_weights_files_settled_for_seconds_are_hashed_once_each_by_their_own_path(
    tmp_path, monkeypatch
):
    hashed = []
    real = experiments.file_sha256
    monkeypatch.setattr(experiments, "file_sha256", lambda path: hashed.append(path) or real(path))
    # Two files of one size and one mtime, three seconds old: past the racy window (2 s).
    settled = time.time_ns() - 3 * 10**9
    for name, data in (("a", b"one"), ("b", b"two")):
        (tmp_path / f"{name}.weights.h5").write_bytes(data)
        os.utime(tmp_path / f"{name}.weights.h5", ns=(settled, settled))
    ids = [experiments.weights_id(str(tmp_path / f"{name}.weights.h5")) for name in "ab"]
    assert ids == [
        f"a_weights-{hashlib.sha256(b'one').hexdigest()[:10]}",
        f"b_weights-{hashlib.sha256(b'two').hexdigest()[:10]}",
    ]
    assert experiments.weights_id(str(tmp_path / "a.weights.h5")) == ids[0]
    assert len(hashed) == 2


def test_only_the_books_settings_get_the_books_figure():
    book = experiments.resolve(config_with(["scratch", "features"]))
    assert experiments.is_book(book["scratch"], DEFAULTS, [150, 150])
    assert not experiments.is_book(book["scratch"], DEFAULTS, [64, 64])
    changed = experiments.resolve(config_with({"s": {"kind": "scratch", "epochs": 3}}))["s"]
    assert not experiments.is_book(changed, DEFAULTS, [150, 150])


def dry_run_error(tmp_path, declared):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"experiments": declared}))
    result = run_snakemake(
        tmp_path / "work",
        ["results/report.html"],
        configfiles=[REPO / "config" / "demo.yaml", config],
        args=["--dry-run"],
        check=False,
    )
    assert result.returncode != 0
    return result.stdout + result.stderr


def test_a_wrong_from_stops_the_run_at_start_with_one_line(tmp_path):
    output = dry_run_error(
        tmp_path, {"fr": {"kind": "frozen"}, "ft": {"kind": "finetuned", "from": "frozen"}}
    )
    line = "error in config: experiment 'ft' starts from 'frozen', which is not declared"
    assert line in output and "write from: fr" in output
    assert "Traceback" not in output


def test_an_unknown_kind_and_a_misspelt_key_are_named_by_the_schema(tmp_path):
    assert "'convnet' is not one of" in dry_run_error(tmp_path, {"x": {"kind": "convnet"}})
    output = dry_run_error(tmp_path, {"x": {"kind": "scratch", "learning_rte": 0.1}})
    assert "learning_rte" in output


def test_the_slurm_profile_submits_one_train_job_per_experiment_and_seed(tmp_path):
    config = tmp_path / "runs.yaml"
    config.write_text(yaml.safe_dump({"experiments": ["scratch", "features"], "seeds": [1, 2, 3]}))
    result = run_snakemake(
        tmp_path / "work",
        ["results/report.html"],
        configfiles=[REPO / "config" / "demo.yaml", config],
        args=["--dry-run", "--workflow-profile", str(REPO / "profiles" / "slurm")],
    )
    jobs = planned_jobs(result.stdout + result.stderr)
    trains = {(e, s) for rule, e, s in jobs if rule == "train"}
    assert trains == {(e, s) for e in ("scratch", "features") for s in (1, 2, 3)}


# Four experiments and two seeds: two of the same kind with different settings, and a second base.
DECLARED = {
    "scratch": {"kind": "scratch"},
    "fast_scratch": {"kind": "scratch", "learning_rate": 3.0e-3, "dense_units": 8},
    "features": {"kind": "features"},
    "feat_mobilenet": {"kind": "features", "conv_base": {"name": "mobilenetv2"}},
}
SEEDS = [1, 2]


@pytest.fixture(scope="module")
def declared_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("declared")
    make_class_images(root / "source", per_class=14, size=(48, 48))
    quick = {"epochs": 1, "batch_size": 8}
    config = {
        "data": {"source": "local", "path": str(root / "source")},
        "split": {"train": 8, "validation": 3, "test": 3},
        "image_size": [48, 48],
        "conv_base": {"name": "vgg16", "weights": "none", "unfreeze_from": "block5_conv1"},
        "training": {kind: quick for kind in registry.KINDS},
        "experiments": DECLARED,
        "seeds": SEEDS,
        # Bookkeeping of experiments and seeds: exports are tested in test_export.
        "export": {"experiments": []},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # One thread per training job: the summaries must say TensorFlow ran with what was declared.
    run_snakemake(
        root / "work",
        ["results/report.html"],
        configfiles=[root / "config.yaml"],
        args=["--set-threads", "train=1"],
    )
    return root


def dry_run(root, tmp_path, change):
    extra = tmp_path / "change.yaml"
    extra.write_text(yaml.safe_dump(change, sort_keys=False))
    result = run_snakemake(
        root / "work",
        ["results/report.html"],
        configfiles=[root / "config.yaml", extra],
        args=["--dry-run"],
    )
    return result.stdout + result.stderr


@pytest.mark.slow
def test_declared_experiments_with_seeds_run_to_the_report(declared_run):
    results = declared_run / "work" / "results"
    for name in DECLARED:
        for seed in SEEDS:
            for path in (
                f"models/{name}/{seed}.keras",
                f"models/{name}/{seed}.json",
                f"history/{name}/{seed}.csv",
                f"metrics/{name}/{seed}.json",
                f"predictions/{name}/{seed}.csv",
            ):
                assert (results / path).is_file(), path
            assert (results / "tensorboard" / name / str(seed)).is_dir()
    for base in ("vgg16", "mobilenetv2"):
        for split in ("train", "validation", "test"):
            assert (results / "features" / base / "none" / f"{split}.h5").is_file()
    with open(results / "summary.csv", newline="") as stream:
        rows = {row["experiment"]: row for row in csv.DictReader(stream)}
    assert list(rows) == list(DECLARED)
    for name, row in rows.items():
        accuracies = [
            json.loads((results / "metrics" / name / f"{seed}.json").read_text())["test_accuracy"]
            for seed in SEEDS
        ]
        assert row["kind"] == DECLARED[name]["kind"] and row["n_seeds"] == "2"
        assert float(row["test_accuracy_mean"]) == pytest.approx(sum(accuracies) / 2)
        assert float(row["test_accuracy_min"]) == min(accuracies)
        for column in ("test_accuracy_sd", "roc_auc_mean", "train_seconds_mean"):
            assert row[column] != ""
        for seed in SEEDS:
            summary = json.loads((results / "models" / name / f"{seed}.json").read_text())
            assert (summary["intra_op_threads"], summary["inter_op_threads"]) == (1, 1)
    html = (results / "report.html").read_text()
    for name in DECLARED:
        assert f'data-experiment="{name}"' in html
    assert "mean &plusmn; sd" in html and "seed-paired" in html


@pytest.mark.slow
def test_one_experiments_override_reruns_exactly_its_jobs(declared_run, tmp_path):
    changed = {**DECLARED, "fast_scratch": {**DECLARED["fast_scratch"], "learning_rate": 0.01}}
    jobs = planned_jobs(dry_run(declared_run, tmp_path, {"experiments": changed}))
    assert jobs == {
        *{(rule, "fast_scratch", seed) for rule in ("train", "evaluate") for seed in SEEDS},
        # The report's heatmaps are of the first seed.
        ("heatmaps", "fast_scratch", SEEDS[0]),
        ("summarize", None, None),
        ("report", None, None),
    }


@pytest.mark.slow
def test_a_new_seed_trains_only_the_new_runs(declared_run, tmp_path):
    output = dry_run(declared_run, tmp_path, {"seeds": [*SEEDS, 3]})
    assert planned_jobs(output) == {
        *{(rule, name, 3) for rule in ("train", "evaluate") for name in DECLARED},
        ("summarize", None, None),
        ("report", None, None),
    }


@pytest.mark.slow
def test_a_new_base_extracts_only_its_own_features(declared_run, tmp_path):
    added = {**DECLARED, "feat_resnet": {"kind": "features", "conv_base": {"name": "resnet50"}}}
    output = dry_run(declared_run, tmp_path, {"experiments": added})
    assert planned_features(output) == {
        f"resnet50/none/{s}" for s in ("train", "validation", "test")
    }
    assert {(r, e) for r, e, _ in planned_jobs(output) if r in ("train", "evaluate")} == {
        ("train", "feat_resnet"),
        ("evaluate", "feat_resnet"),
    }


def test_the_features_job_loads_the_base_in_its_path(tmp_path):
    """results/features/resnet50/none/... under a vgg16 config runs resnet50 (it used to load the
    config's base whatever the path said)."""
    result = run_snakemake(
        tmp_path,
        ["results/features/resnet50/none/test.h5"],
        configfiles=[REPO / "config" / "demo.yaml"],
        args=["--dry-run", "--printshellcmds"],
    )
    output = result.stdout + result.stderr
    assert "wildcards: base=resnet50, weights=none, split=test" in output


def test_the_report_names_an_experiments_own_settings():
    resolved = experiments.resolve(
        config_with(
            {
                "fast": {"kind": "scratch", "learning_rate": 0.003, "epochs": 10},
                "mobile": {"kind": "features", "conv_base": {"name": "mobilenetv2"}},
            }
        )
    )
    assert experiments.overridden(resolved["fast"]) == "learning_rate 0.003, epochs 10"
    assert experiments.overridden(resolved["mobile"]) == ""


def test_the_list_form_comes_out_in_the_books_order_whatever_the_order_written():
    resolved = experiments.resolve(config_with(["features", "augmented", "scratch"]))
    assert list(resolved) == ["scratch", "augmented", "features"]
    assert [e.name for e in resolved.values()] == list(resolved)


def test_callbacks_merge_key_by_key_from_run_to_kind_to_experiment():
    assert experiments.merge_callbacks(
        {"tensorboard": True, "early_stopping": {"patience": 10, "monitor": "val_loss"}},
        None,
        {"tensorboard": False, "early_stopping": {"patience": 3}},
    ) == {"tensorboard": False, "early_stopping": {"patience": 3, "monitor": "val_loss"}}
    config = config_with(
        {"quick": {"kind": "scratch", "callbacks": {"reduce_lr": {"factor": 0.2}}}}
    )
    config["training"]["scratch"]["callbacks"] = {"early_stopping": {"patience": 2}}
    callbacks = experiments.resolve(config)["quick"].settings["callbacks"]
    assert callbacks["early_stopping"] == {**DEFAULTS["callbacks"]["early_stopping"], "patience": 2}
    assert callbacks["reduce_lr"] == {**DEFAULTS["callbacks"]["reduce_lr"], "factor": 0.2}
    assert callbacks["tensorboard"] == DEFAULTS["callbacks"]["tensorboard"]


def test_settings_hold_training_keys_only():
    resolved = experiments.resolve(
        config_with(
            {
                "fr": {"kind": "frozen", "conv_base": {"weights": "none"}, "epochs": 2},
                "ft": {"kind": "finetuned", "from": "fr", "conv_base": {"unfreeze_from": "x"}},
            }
        )
    )
    for experiment in resolved.values():
        assert set(experiment.settings) <= set(registry.TRAINING_KEYS), experiment.name
    assert resolved["fr"].settings["epochs"] == 2
    assert resolved["ft"].overrides == ("conv_base",)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        (
            {"scratch": None},
            r"^training\.scratch is missing: it holds the defaults of s$",
        ),
        (
            {"features": {"augment": True}},
            r"^training\.features cannot set augment: that kind keeps them fixed$",
        ),
        (
            {"finetuned": {"dropout": 0.2, "dense_units": 64}},
            r"^training\.finetuned cannot set dense_units, dropout: that kind keeps them fixed$",
        ),
    ],
)
def test_wrong_kind_defaults_are_named(training, message):
    config = config_with(
        {
            "s": {"kind": "scratch"},
            "f": {"kind": "features"},
            "fr": {"kind": "frozen"},
            "ft": {"kind": "finetuned", "from": "fr"},
        }
    )
    for kind, defaults in training.items():
        if defaults is None:
            del config["training"][kind]
        else:
            config["training"][kind].update(defaults)
    with pytest.raises(UserError, match=message):
        experiments.resolve(config)


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            {"x": {"epochs": 3}},
            "experiment 'x' needs a kind: one of scratch, augmented, features, frozen, finetuned "
            "(e.g. {kind: scratch})",
        ),
        (
            {"x": {"kind": "scratch", "epoch": 3, "lr": 1}},
            "experiment 'x' has unknown key(s) epoch, lr: an experiment takes kind, from, "
            f"conv_base and the training keys {', '.join(registry.TRAINING_KEYS)}",
        ),
        (
            {"x": {"kind": "scratch", "conv_base": {"name": "vgg16"}}},
            "experiment 'x' (kind scratch) cannot set conv_base: that kind takes no conv_base",
        ),
        (
            {"x": {"kind": "features", "augment": True, "conv_base": {"unfreeze_from": "b"}}},
            "experiment 'x' (kind features) cannot set augment, unfreeze_from: that kind takes "
            "conv_base.name, conv_base.weights and keeps augment fixed",
        ),
        (
            {
                "fr": {"kind": "frozen"},
                "x": {"kind": "finetuned", "from": "fr", "dropout": 0.2, "dense_units": 64},
            },
            "experiment 'x' (kind finetuned) cannot set dense_units, dropout: that kind takes "
            "conv_base.unfreeze_from and keeps dense_units, dropout fixed",
        ),
        (
            {"x": {"kind": "frozen", "from": "y"}},
            "experiment 'x' (kind frozen) cannot set from: only a finetuned experiment starts "
            "from another experiment's model",
        ),
        (
            {"x": {"kind": "finetuned"}},
            "experiment 'x' (kind finetuned) must name the frozen experiment it starts from: "
            "declare a frozen experiment, e.g. frozen: {kind: frozen}, and write from: frozen",
        ),
        (
            {
                "fr": {"kind": "frozen"},
                "x": {"kind": "finetuned", "from": "s"},
                "s": {"kind": "scratch"},
            },
            "experiment 'x' starts from 's', which is a scratch: it must start from a frozen "
            "experiment; write from: fr",
        ),
        (
            {"x y": {"kind": "scratch"}},
            "experiment name 'x y' is used in paths: use letters, digits, '_' and '-' only",
        ),
    ],
)
def test_wrong_declarations_are_named_in_full(declared, message):
    with pytest.raises(UserError) as error:
        experiments.resolve(config_with(declared))
    assert str(error.value) == message


def test_the_report_leaves_callbacks_to_the_settings_table():
    resolved = experiments.resolve(
        config_with(
            {"quick": {"kind": "scratch", "epochs": 5, "callbacks": {"tensorboard": False}}}
        )
    )
    assert experiments.overridden(resolved["quick"]) == "epochs 5"


def test_weights_files_are_named_from_where_the_rules_run(tmp_path, monkeypatch):
    name = "_My VGG16 (fine-tuned on edges, second trial, 2026).weights.h5"
    (tmp_path / name).write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    found = experiments.weights_id(name)
    # Lower case, runs of other characters as one "_", none at either end, at most 40.
    assert found.split("-")[0] == "my_vgg16_fine_tuned_on_edges_second_tria"
    monkeypatch.chdir(tmp_path.parent)
    assert experiments.weights_id(name, root=tmp_path) == found
    message = (
        r"^conv_base.weights='missing.h5': no such file \(give the path of a .weights.h5 file, "
        r"imagenet or none\)$"
    )
    with pytest.raises(UserError, match=message):
        experiments.weights_id("missing.h5", root=tmp_path)
    assert experiments.weights_id("none") == "none"


def test_the_books_settings_whatever_the_config_declares():
    """The book's settings come from config.yaml's defaults of the kind, even when the config
    declares its own experiments; callbacks do not count."""
    book_config = {**DEFAULTS, "experiments": {"mine": {"kind": "scratch"}}}
    resolved = experiments.resolve(
        config_with(
            {
                "quiet": {"kind": "scratch", "callbacks": {"tensorboard": False}},
                "f": {"kind": "features"},
            }
        )
    )
    assert experiments.is_book(resolved["quiet"], book_config, [150, 150])
    assert experiments.is_book(resolved["f"], book_config, [150, 150])
    assert book_config["experiments"] == {"mine": {"kind": "scratch"}}
