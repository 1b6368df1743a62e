"""Declared experiments resolved into their effective settings: the kind's defaults from
`training.<kind>` merged with the experiment's own overrides. Pure Python (no TensorFlow): the
Snakefile resolves the config with it at DAG build time, so a wrong declaration stops the run
before any job starts.
"""

import copy
import dataclasses
import re
import time
from pathlib import Path

from smallcnn import monitor_config
from smallcnn.errors import UserError
from smallcnn.fingerprint import file_sha256
from smallcnn.registry import KIND_ORDER, KINDS, TRAINING_KEYS

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]*"
ENTRY_KEYS = ("kind", "from", "conv_base", *TRAINING_KEYS)
# A file changed this recently may change again within its filesystem's timestamp granularity
# and keep its size and mtime (git's "racy" files): its hash is not cached.
RACY_SECONDS = 2


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    kind: str
    # Training keys with the kind's defaults filled in; callbacks merged key by key.
    settings: dict
    # {"name", "weights"} of the base (plus "unfreeze_from" for finetuned), or None.
    conv_base: dict | None
    # The experiment whose trained model this one starts from, seed for seed.
    start: str | None
    # The keys the declaration overrides, for the report.
    overrides: tuple


def declared(config):
    """The `experiments` entries as {name: entry}; the list form is shorthand for the defaults.

    The list form is in the book's order, and its finetuned starts from frozen, which is added
    when the list lacks it.
    """
    entries = config["experiments"]
    if isinstance(entries, dict):
        return {name: dict(entry or {}) for name, entry in entries.items()}
    result = {}
    for kind in sorted(entries, key=KIND_ORDER.index):
        result[kind] = {"kind": kind}
        start = KINDS[kind].starts_from
        if start:
            result[kind]["from"] = start
            result.setdefault(start, {"kind": start})
    return dict(sorted(result.items(), key=lambda item: KIND_ORDER.index(item[0])))


def merge_callbacks(*layers):
    """Callback settings merged over each other, key by key inside each callback; a callback
    given as true or false (tensorboard) stands for {enabled: true} or {enabled: false}."""
    merged = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, bool) and isinstance(merged.get(key), dict):
                value = {"enabled": value}
            if isinstance(value, dict):
                if not isinstance(merged.get(key), dict):
                    merged[key] = {} if merged.get(key) is None else {"enabled": merged[key]}
                merged[key].update(value)
            else:
                merged[key] = value
    return merged


def resolve(config):
    """{name: Experiment} in declaration order; a UserError names any wrong declaration."""
    entries = declared(config)
    experiments = {}
    for name, entry in entries.items():
        _check_entry(name, entry, entries)
    for name, entry in entries.items():
        kind = KINDS[entry["kind"]]
        defaults = config["training"].get(kind.name)
        if defaults is None:
            raise UserError(f"training.{kind.name} is missing: it holds the defaults of {name}")
        fixed = [key for key in kind.fixed_keys if key in defaults]
        if fixed:
            raise UserError(
                f"training.{kind.name} cannot set {', '.join(fixed)}: that kind keeps them fixed"
            )
        settings = {key: value for key, value in defaults.items() if key != "callbacks"}
        settings.update({k: v for k, v in entry.items() if k in TRAINING_KEYS and k != "callbacks"})
        settings["callbacks"] = merge_callbacks(
            config.get("callbacks"), defaults.get("callbacks"), entry.get("callbacks")
        )
        try:
            monitor_config.check_schedule(settings["callbacks"], settings["epochs"])
        except UserError as error:
            raise UserError(f"experiment {name!r}: {error}") from None
        experiments[name] = Experiment(
            name=name,
            kind=kind.name,
            settings=settings,
            conv_base=None,
            start=entry.get("from"),
            overrides=tuple(key for key in entry if key not in ("kind", "from")),
        )
    for name in _start_order(experiments):
        experiments[name] = dataclasses.replace(
            experiments[name],
            conv_base=_conv_base(experiments[name], entries[name], config, experiments),
        )
    return experiments


def _check_entry(name, entry, entries):
    if not re.fullmatch(NAME_PATTERN, name):
        raise UserError(
            f"experiment name {name!r} is used in paths: use letters, digits, '_' and '-' only"
        )
    kind = KINDS.get(entry.get("kind"))
    if kind is None:
        raise UserError(
            f"experiment {name!r} needs a kind: one of {', '.join(KINDS)} (e.g. {{kind: scratch}})"
        )
    unknown = [key for key in entry if key not in ENTRY_KEYS]
    if unknown:
        raise UserError(
            f"experiment {name!r} has unknown key(s) {', '.join(unknown)}: an experiment takes "
            f"kind, from, conv_base and the training keys {', '.join(TRAINING_KEYS)}"
        )
    refused = [key for key in kind.fixed_keys if key in entry]
    refused += [key for key in (entry.get("conv_base") or {}) if key not in kind.conv_base_keys]
    if "conv_base" in entry and not kind.conv_base_keys:
        refused = ["conv_base"]
    if refused:
        takes = ", ".join(f"conv_base.{key}" for key in kind.conv_base_keys) or "no conv_base"
        raise UserError(
            f"experiment {name!r} (kind {kind.name}) cannot set {', '.join(refused)}: "
            f"that kind takes {takes}"
            + (f" and keeps {', '.join(kind.fixed_keys)} fixed" if kind.fixed_keys else "")
        )
    start = entry.get("from")
    if kind.starts_from is None:
        if start is not None:
            raise UserError(
                f"experiment {name!r} (kind {kind.name}) cannot set from: only a "
                "finetuned experiment starts from another experiment's model"
            )
        return
    candidates = [n for n, e in entries.items() if e.get("kind") == kind.starts_from]
    hint = (
        f"write from: {candidates[0]}"
        if candidates
        else f"declare a {kind.starts_from} experiment, e.g. "
        f"frozen: {{kind: {kind.starts_from}}}, and write from: frozen"
    )
    if start is None:
        raise UserError(
            f"experiment {name!r} (kind {kind.name}) must name the {kind.starts_from} experiment "
            f"it starts from: {hint}"
        )
    if entries.get(start, {}).get("kind") != kind.starts_from:
        what = "is not declared" if start not in entries else f"is a {entries[start]['kind']}"
        raise UserError(
            f"experiment {name!r} starts from {start!r}, which {what}: it must start from a "
            f"{kind.starts_from} experiment; {hint}"
        )


def _start_order(experiments):
    """Names with every start experiment before the experiments that start from it."""
    return sorted(experiments, key=lambda name: experiments[name].start is not None)


def _conv_base(experiment, entry, config, experiments):
    kind = KINDS[experiment.kind]
    if not kind.uses_base:
        return None
    own = entry.get("conv_base") or {}
    if experiment.start:
        start = experiments[experiment.start].conv_base
        return {
            "name": start["name"],
            "weights": start["weights"],
            "unfreeze_from": own.get("unfreeze_from", config["conv_base"]["unfreeze_from"]),
        }
    return {
        "name": own.get("name", config["conv_base"]["name"]),
        "weights": own.get("weights", config["conv_base"]["weights"]),
    }


def overridden(experiment):
    """The experiment's own training settings, as the report names them beside its description:
    "learning_rate 0.003, epochs 10". Its conv base is in the description already, and callbacks
    are left to the settings table (nested keys would not read on one line)."""
    return ", ".join(
        f"{key} {experiment.settings[key]}"
        for key in experiment.overrides
        if key not in ("conv_base", "callbacks")
    )


def weights_id(weights, root="."):
    """The `{weights}` part of a features path: imagenet, none, or the file's name and content.

    Two experiments with the same weights file share one extraction; a changed file gets a new
    path (so its features are computed again) even under the same name.
    """
    if weights in ("imagenet", "none"):
        return weights
    path = Path(root, weights)
    if not path.is_file():
        raise UserError(
            f"conv_base.weights={weights!r}: no such file (give the path of a .weights.h5 file, "
            "imagenet or none)"
        )
    digest = _content_sha256(path)
    stem = re.sub(r"[^a-z0-9]+", "_", path.name.lower().removesuffix(".h5")).strip("_")
    return f"{stem[:40]}-{digest[:10]}"


# {(path, size, mtime): sha256} of the weights files hashed in this process: Snakemake asks for
# the id of a weights file in several rules and input functions (a VGG16 file is 58 MB). In
# memory only: a job on another machine parses the Snakefile again and sees its own file, or
# with object storage, where it has none, gets the id from Snakemake's process
# (object_storage.weights_id).
_SHA256 = {}


def _content_sha256(path):
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = file_sha256(path)
        if time.time_ns() - stat.st_mtime_ns < RACY_SECONDS * 10**9:
            return digest
        _SHA256[key] = digest
    return _SHA256[key]


def is_book(experiment, book_config, image_size):
    """Whether `experiment` runs with the book's settings for its kind: config.yaml's defaults
    (the book's), its conv base VGG16 with ImageNet weights, at the book's 150x150."""
    book = resolve({**copy.deepcopy(book_config), "experiments": [experiment.kind]})[
        experiment.kind
    ]
    return (
        list(image_size) == list(book_config["image_size"])
        and _comparable(experiment.settings) == _comparable(book.settings)
        and experiment.conv_base == book.conv_base
    )


def _comparable(settings):
    return {key: value for key, value in settings.items() if key != "callbacks"}
