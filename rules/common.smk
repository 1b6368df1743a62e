"""The declared experiments, resolved once, and the input and parameter functions of the rules."""

import sys

import yaml

# The Snakefile puts this checkout's smallcnn package on the path.
from smallcnn import experiments as declared_experiments, monitor_config, registry, tta
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
    fold=r"\d+",


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
    if OBJECT_STORAGE:
        # Jobs elsewhere cannot read a file of this machine: they get its copy in storage.
        return object_storage.STAGED_WEIGHTS.format(weights=weights_id(weights))
    return weights


def weights_id(weights):
    try:
        if OBJECT_STORAGE:
            # A job on another machine has no file to hash: it gets the id from this process.
            return object_storage.weights_id(weights, declared_experiments.weights_id)
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
    """Images (or extracted features), the base's weights, and the model to start from; the
    test split only for TensorBoard's projector (callbacks.tensorboard.embeddings)."""
    experiment = EXPERIMENTS[wildcards.experiment]
    projector = monitor_config.tensorboard(experiment.settings)["embeddings"]
    if registry.KINDS[experiment.kind].trains_on_features:
        inputs = {
            split: f"{features_dir(experiment)}/{split}.h5"
            for split in ("train", "validation")
        }
        if projector:
            inputs["test"] = f"{features_dir(experiment)}/test.h5"
            inputs["test_images"] = "results/data/test"
        return inputs
    inputs = {"train": "results/data/train", "validation": "results/data/validation"}
    if projector:
        inputs["test"] = "results/data/test"
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


# k-fold cross-validation over train + validation (cross_validation.folds; None: one split).
FOLDS = config["cross_validation"]["folds"]
FOLD_IDS = list(range(FOLDS or 0))


def per_training(pattern, names=None):
    """`pattern` (<what>/{experiment}/{seed}.<ext>) for every training job: one per (experiment,
    seed), or with folds one per (experiment, seed, fold) as <what>/{experiment}/{seed}/fold<i>.
    """
    if not FOLDS:
        return per_run(pattern, names)
    stem, ext = pattern.rsplit(".", 1)
    return expand(
        f"{stem}/fold{{fold}}.{ext}",
        experiment=names or NAMES,
        seed=SEEDS,
        fold=FOLD_IDS,
    )


def fold_params(wildcards):
    """An (experiment, seed)'s settings and its fold: the fold is part of the run's identity."""
    return {**train_params(wildcards), "fold": int(wildcards.fold), "folds": FOLDS}


def fold_inputs(wildcards):
    """A fold's training inputs: the experiment's, the seed's partition, and fold i of the
    experiment it starts from. A frozen base validating on features needs the train split's
    features too: its fold takes validation images from both splits."""
    experiment = EXPERIMENTS[wildcards.experiment]
    inputs = train_inputs(wildcards)
    inputs["folds"] = f"results/data/folds/{wildcards.seed}.csv"
    if experiment.start:
        inputs["start"] = (
            f"results/models/{experiment.start}/{wildcards.seed}/fold{wildcards.fold}.keras"
        )
    if experiment.name in CACHED_FROZEN:
        inputs["train_features"] = f"{features_dir(experiment)}/train.h5"
    return inputs


def fold_evaluation_inputs(wildcards):
    """Every fold model of an (experiment, seed), its partition, what its folds hold (the split
    folders, or their features) and the test split."""
    experiment = EXPERIMENTS[wildcards.experiment]
    run = f"{wildcards.experiment}/{wildcards.seed}"
    pooled = (
        {
            split: f"{features_dir(experiment)}/{split}.h5"
            for split in ("train", "validation")
        }
        if registry.KINDS[experiment.kind].trains_on_features
        else {"train": "results/data/train", "validation": "results/data/validation"}
    )
    return {
        "models": [f"results/models/{run}/fold{fold}.keras" for fold in FOLD_IDS],
        "summaries": [f"results/models/{run}/fold{fold}.json" for fold in FOLD_IDS],
        "folds": f"results/data/folds/{wildcards.seed}.csv",
        "test": test_input(wildcards),
        **pooled,
    }


def model_stem(experiment, seed):
    """Where the one model of an (experiment, seed) that heatmaps and export take is, without
    its .keras / .json: with folds, fold 0's (each fold model saw most of the images; the
    ensemble is a mean of k models, not one model to explain or ship)."""
    run = f"results/models/{experiment}/{seed}"
    return f"{run}/fold0" if FOLDS else run


def heatmap_inputs(wildcards):
    """The model, its errors file and the test images; a features model also needs the test
    features and the weights of the conv base they came from, to be explained through it.
    With folds, the model is fold 0's, and the errors file ranks the fold ensemble's predictions.
    """
    experiment = EXPERIMENTS[wildcards.experiment]
    inputs = {
        "model": f"{model_stem(experiment.name, wildcards.seed)}.keras",
        "errors": f"results/errors/{experiment.name}/{wildcards.seed}.csv",
        "test": "results/data/test",
    }
    if registry.KINDS[experiment.kind].trains_on_features:
        base = experiment.conv_base
        inputs["test_features"] = f"{features_dir(experiment)}/test.h5"
        inputs["weights"] = weights_file(base["name"], base["weights"])
    return inputs


# A layer per experiment must name declared experiments: a misspelt one would be ignored.
if isinstance(config["report"].get("heatmap_layer"), dict):
    unknown = sorted(set(config["report"]["heatmap_layer"]) - set(NAMES))
    if unknown:
        sys.exit(
            f"error in config: report.heatmap_layer names {', '.join(unknown)}, which "
            f"{'is' if len(unknown) == 1 else 'are'} not a declared experiment "
            f"({', '.join(NAMES)})"
        )


def heatmap_layer(wildcards):
    """report.heatmap_layer: one layer name for every model, or one per experiment."""
    setting = config["report"].get("heatmap_layer")
    if isinstance(setting, dict):
        return setting.get(wildcards.experiment)
    return setting


# evaluation.tta's views, for the images experiments' evaluation.
try:
    TTA_VIEWS = tta.view_names(
        config["evaluation"]["tta"], config["augmentation"]["horizontal_flip"]
    )
except UserError as error:
    sys.exit(f"error in config: evaluation.tta: {error}")


def tta_views(wildcards):
    """No views for experiments that take features, not images: evaluation.tta never reruns
    them."""
    kind = registry.KINDS[EXPERIMENTS[wildcards.experiment].kind]
    return [] if kind.trains_on_features else TTA_VIEWS
