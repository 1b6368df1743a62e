"""Which trained models the export rule exports, and what each export job reads. Pure Python
(no TensorFlow): the Snakefile calls it at DAG build time, so a wrong export.experiments stops
the run before any job starts."""

from smallcnn import registry
from smallcnn.errors import UserError

RANDOM_BASE = "features of a conv base with random weights: the base cannot be rebuilt"


def random_base(experiment):
    """Whether a features experiment's conv base had random weights: its artifact needs the base
    in front of the classifier, and a random base cannot be rebuilt."""
    trains_on_features = registry.KINDS[experiment.kind].trains_on_features
    return trains_on_features and experiment.conv_base["weights"] == "none"


def exported(setting, experiments):
    """The names export.experiments (`setting`: "all" or a list) selects among `experiments`
    ({name: Experiment}), in declaration order for all."""
    if setting == "all":
        return [name for name, e in experiments.items() if not random_base(e)]
    unknown = [name for name in setting if name not in experiments]
    if unknown:
        raise UserError(
            f"export.experiments names {', '.join(unknown)}, not a declared experiment; "
            f"declared: {', '.join(experiments)}"
        )
    random = [name for name in setting if random_base(experiments[name])]
    if random:
        raise UserError(
            f"export.experiments names {', '.join(random)}, {RANDOM_BASE} in front of its "
            "classifier (conv_base.weights: none): leave it out"
        )
    return list(setting)


def left_out(setting, experiments):
    """{name: why} of the experiments that export.experiments: all leaves out."""
    if setting != "all":
        return {}
    return {name: RANDOM_BASE for name, e in experiments.items() if random_base(e)}


def inputs(experiment, model_stem, formats, features_dir, weights_file):
    """The export job's inputs: the model (`model_stem`.keras and .json), the test split for
    parity, the training split for int8 calibration, and for a features experiment its conv
    base's weights and the test features it was evaluated on. `features_dir(experiment)` and
    `weights_file(base, weights)` are the rules' path functions."""
    files = {
        "model": f"{model_stem}.keras",
        "summary": f"{model_stem}.json",
        "test": "results/data/test",
    }
    if registry.calibrates(formats):
        files["train"] = "results/data/train"
    if registry.KINDS[experiment.kind].trains_on_features:
        base = experiment.conv_base
        files["weights"] = weights_file(base["name"], base["weights"])
        files["test_features"] = f"{features_dir(experiment)}/test.h5"
    return files
