"""The report's "Where the model looks": class-activation heatmaps (Grad-CAM) of the first-ranked
experiment and of every other experiment that trains on images, each on its first seed.

The heatmaps job (smallcnn.heatmap_examples) wrote the thumbnails and results/heatmaps/
<experiment>/<seed>/index.json; this module only embeds them, so the report needs no TensorFlow.
"""

import re
from pathlib import Path

from smallcnn import figures, registry
from smallcnn.errors import UserError
from smallcnn.heatmap_examples import INDEX
from smallcnn.records import read_json
from smallcnn.report.loading import run_key

INDEX_KEYS = ("layer", "input_size", "reason", "examples")


def shown_experiments(order, experiments):
    """The first-ranked experiment, then every other one that trains on images, in rank order."""
    return [
        name
        for name in order
        if name == order[0] or not registry.KINDS[experiments[name]["kind"]].trains_on_features
    ]


def _embedded(directory, name):
    path = Path(directory) / name
    try:
        return figures.jpeg_data_uri(path.read_bytes())
    except OSError as error:
        raise UserError(f"cannot read {path} ({error}); rerun its heatmaps job") from None


def experiment_heatmaps(name, seed, directory):
    """One experiment's examples: the wrong ones, and the right ones grouped by class."""
    index = read_json(Path(directory) / INDEX, INDEX_KEYS, remedy="rerun its heatmaps job")
    examples = []
    for example in index["examples"]:
        caption = (
            f"a {example['true']} taken for a {example['predicted']}"
            if example["group"] == "wrong"
            else f"a {example['true']}, rightly"
        )
        examples.append(
            {
                **example,
                "image_uri": _embedded(directory, example["image"]),
                "overlay_uri": _embedded(directory, example["overlay"]),
                "image_alt": f"Input of {name}, {example['file']}: {caption}, "
                f"p = {example['probability']:.2f}.",
                "overlay_alt": f"Heatmap of {name} over {example['file']}: where the evidence "
                f"for {example['predicted']} is"
                + ("" if example["scaled"] else " (none: the map is empty)")
                + ".",
            }
        )
    right = {}
    for example in examples:
        if example["group"] == "right":
            right.setdefault(example["true"], []).append(example)
    # With cross_validation.folds the heatmaps job explains fold 0's model (rules: model_stem).
    fold = re.search(r"/fold(\d+)\.keras$", str(index.get("model") or ""))
    return {
        "name": name,
        "seed": seed,
        "fold": int(fold.group(1)) if fold else None,
        "layer": index["layer"],
        "input_size": index["input_size"],
        "reason": index["reason"],
        "wrong": [example for example in examples if example["group"] == "wrong"],
        "right": [{"label": label, "examples": items} for label, items in right.items()],
        "empty": sum(not example["scaled"] for example in examples),
    }


def heatmap_section(paths, runs, order, experiments):
    """{"experiments": [...]} for the template; an experiment whose heatmaps were not given to
    the report is listed with `missing` set."""
    found = {run_key(path): Path(path) for path in paths}
    shown = []
    for name in shown_experiments(order, experiments):
        seed = runs[name][0].seed
        directory = found.get((name, seed))
        if directory is None:
            shown.append({"name": name, "seed": seed, "fold": None, "missing": True})
        else:
            shown.append({**experiment_heatmaps(name, seed, directory), "missing": False})
    return {"experiments": shown, "given": bool(paths)}
