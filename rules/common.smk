"""Named input and parameter functions shared by the rules."""

import copy

EXPERIMENTS = list(config["experiments"])
SPLITS = ["train", "validation", "test"]
# finetuned starts from the trained frozen model, so asking for it builds frozen too.
TRAINED = sorted(
    set(EXPERIMENTS) | ({"frozen"} if "finetuned" in EXPERIMENTS else set())
)
BASE = config["conv_base"]["name"]


wildcard_constraints:
    name="|".join(["scratch", "augmented", "features", "frozen", "finetuned"]),
    split="|".join(SPLITS),
    base="[a-z0-9]+",


def conv_base_weights():
    """The weights file of the conv base as an explicit input ([] for random weights)."""
    weights = config["conv_base"]["weights"]
    if weights == "none":
        return []
    if weights == "imagenet":
        return f"resources/weights/{BASE}_imagenet_notop.weights.h5"
    return weights


def merged_callbacks(name):
    """Global callback settings overridden by the experiment's own, key by key."""
    merged = copy.deepcopy(config.get("callbacks", {}))
    for key, value in config["training"][name].get("callbacks", {}).items():
        if isinstance(value, dict):
            merged.setdefault(key, {}).update(value)
        else:
            merged[key] = value
    return merged


def train_params(wildcards):
    """Every hyperparameter of one experiment, so that a change reruns exactly that experiment."""
    name = wildcards.name
    settings = {k: v for k, v in config["training"][name].items() if k != "callbacks"}
    return {
        "experiment": name,
        **settings,
        "image_size": list(config["image_size"]),
        "seed": config["seed"],
        "precision": config["precision"],
        "multi_gpu": config["multi_gpu"],
        "augmentation": (
            dict(config["augmentation"]) if settings.get("augment") else None
        ),
        "callbacks": merged_callbacks(name),
        "conv_base": conv_base_params(name),
    }


def conv_base_params(name):
    """The conv base settings an experiment depends on (features: through its input files)."""
    base = config["conv_base"]
    if name == "frozen":
        return {"name": base["name"], "weights": base["weights"]}
    if name == "finetuned":
        return {k: base[k] for k in ("name", "weights", "unfreeze_from")}
    return None


def train_inputs(wildcards):
    """Training inputs: images (or extracted features), weights, and the model to start from."""
    name = wildcards.name
    if name == "features":
        return {
            "train": f"results/features/{BASE}/train.h5",
            "validation": f"results/features/{BASE}/validation.h5",
        }
    inputs = {"train": "results/data/train", "validation": "results/data/validation"}
    if name == "frozen":
        inputs["weights"] = conv_base_weights()
    if name == "finetuned":
        inputs["start"] = "results/models/frozen.keras"
    return inputs


def test_input(wildcards):
    if wildcards.name == "features":
        return f"results/features/{BASE}/test.h5"
    return "results/data/test"
