"""The declared experiments, resolved once, and the input and parameter functions of the rules."""

import sys

import yaml

# The Snakefile puts this checkout's smallcnn package on the path.
from smallcnn import experiments as declared_experiments, registry
from smallcnn.codehash import code_hash
from smallcnn.errors import UserError
from smallcnn.redact import redact

try:
    EXPERIMENTS = declared_experiments.resolve(config)
except UserError as error:
    # One line naming the experiment and what to write, not a traceback.
    sys.exit(f"error in config: {error}")

NAMES = list(EXPERIMENTS)
SEEDS = list(config["seeds"])
SPLITS = ["train", "validation", "test"]
BASES = "|".join(registry.BASES)

# config.yaml's defaults are the book's settings; the report shows the book's figure only for
# experiments that still run with them.
with open(os.path.join(workflow.basedir, "config.yaml")) as stream:
    BOOK_CONFIG = yaml.safe_load(stream)


wildcard_constraints:
    experiment="|".join(NAMES),
    seed=r"\d+",
    split="|".join(SPLITS),
    base=BASES,
    weights="[A-Za-z0-9_-]+",


def code(script):
    """Identity of the code a rule's script runs (the script and the smallcnn modules it
    imports): a params entry, so that a code change reruns exactly the rules it reaches.
    """
    return code_hash(f"scripts/{script}.py", workflow.basedir)


def weights_file(base, weights):
    """The weights file a conv base is built from, as an explicit input ([] for random)."""
    if weights == "none":
        return []
    if weights == "imagenet":
        return f"resources/weights/{base}_imagenet_notop.weights.h5"
    return weights


def weights_id(weights):
    try:
        return declared_experiments.weights_id(weights)
    except UserError as error:
        sys.exit(f"error in config: {error}")


# Frozen experiments validate on their base's features of the validation split (cache_frozen),
# except with random weights: another draw than the features stage's.
CACHED_FROZEN = [
    e.name
    for e in EXPERIMENTS.values()
    if registry.KINDS[e.kind].builds_frozen_base
    and config["cache_frozen"]
    and e.conv_base["weights"] != "none"
]
# Features are keyed by what determines them: the base and its weights. Experiments with the
# same pair share one extraction.
FEATURE_WEIGHTS = {
    (base["name"], weights_id(base["weights"])): base["weights"]
    for base in (
        e.conv_base
        for e in EXPERIMENTS.values()
        if registry.KINDS[e.kind].trains_on_features or e.name in CACHED_FROZEN
    )
}


def features_dir(experiment):
    base = experiment.conv_base
    return f"results/features/{base['name']}/{weights_id(base['weights'])}"


def declared_weights(wildcards):
    """The weights named by a features path: imagenet and none for any base, a file's id only
    for the bases that a declared experiment uses it with."""
    if wildcards.weights in ("imagenet", "none"):
        return wildcards.weights
    key = (wildcards.base, wildcards.weights)
    if key not in FEATURE_WEIGHTS:
        raise ValueError(
            f"no declared features experiment uses {wildcards.base} with weights "
            f"{wildcards.weights}"
        )
    return FEATURE_WEIGHTS[key]


def extraction_weights(wildcards):
    return weights_file(wildcards.base, declared_weights(wildcards))


def per_run(pattern, names=None):
    """`pattern` for every (experiment, seed) of `names` (default: all declared)."""
    return expand(pattern, experiment=names or NAMES, seed=SEEDS)


def train_params(wildcards):
    """Every setting of one (experiment, seed): a change reruns exactly that experiment's jobs."""
    experiment = EXPERIMENTS[wildcards.experiment]
    settings = experiment.settings
    return {
        "experiment": experiment.name,
        "kind": experiment.kind,
        **settings,
        "seed": int(wildcards.seed),
        "image_size": list(config["image_size"]),
        "precision": config["precision"],
        "multi_gpu": config["multi_gpu"],
        "augmentation": (
            dict(config["augmentation"]) if settings.get("augment") else None
        ),
        "conv_base": experiment.conv_base,
        # Only where it applies: toggling it reruns exactly the frozen-base experiments.
        **(
            {"cache_frozen": config["cache_frozen"]}
            if registry.KINDS[experiment.kind].runs_base_on_images
            else {}
        ),
        # Here, not as a separate params entry: the backup's fingerprint is made of these
        # settings, so a backup written by other code is not resumed.
        "code": code("train"),
    }


def train_inputs(wildcards):
    """Images (or extracted features), the base's weights, and the model to start from."""
    experiment = EXPERIMENTS[wildcards.experiment]
    if registry.KINDS[experiment.kind].trains_on_features:
        return {
            split: f"{features_dir(experiment)}/{split}.h5"
            for split in ("train", "validation")
        }
    inputs = {"train": "results/data/train", "validation": "results/data/validation"}
    if experiment.start:
        inputs["start"] = f"results/models/{experiment.start}/{wildcards.seed}.keras"
    elif experiment.conv_base:
        base = experiment.conv_base
        inputs["weights"] = weights_file(base["name"], base["weights"])
    if experiment.name in CACHED_FROZEN:
        inputs["validation_features"] = f"{features_dir(experiment)}/validation.h5"
    return inputs


def test_input(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    if registry.KINDS[experiment.kind].trains_on_features:
        return f"{features_dir(experiment)}/test.h5"
    return "results/data/test"


def extractions():
    """{base}/{weights}/{split} of every feature file the declared experiments need."""
    return [
        f"{features_dir(e).removeprefix('results/features/')}/{split}"
        for e in EXPERIMENTS.values()
        if registry.KINDS[e.kind].trains_on_features
        for split in SPLITS
    ]


def report_experiments():
    """What the report says of each experiment: kind, effective settings, and whether they are
    the book's (then the book's figure is shown beside it)."""
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "start": e.start,
            "conv_base": e.conv_base,
            "settings": e.settings,
            "overrides": list(e.overrides),
            "description": "; ".join(
                filter(
                    None,
                    [
                        registry.describe(
                            e.kind,
                            (e.conv_base or {}).get("name"),
                            e.start,
                            (e.conv_base or {}).get("unfreeze_from"),
                        ),
                        declared_experiments.overridden(e),
                    ],
                )
            ),
            "book_settings": declared_experiments.is_book(
                e, BOOK_CONFIG, config["image_size"]
            ),
        }
        for e in EXPERIMENTS.values()
    ]
