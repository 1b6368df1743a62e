"""How many images of each class go to each split: fixed counts, or fractions of the class.

The config's `split` block gives either counts (`train: 1000`, images per class) or fractions
(`train: 0.7`, of each class's usable images); the schema refuses a mix. `max_per_class`, when
set, caps each class before either is applied.
"""

import math

from smallcnn.errors import UserError

CAP = "max_per_class"
# Images per class the demo generates when the split is given as fractions (and not capped):
# enough for 0.7 / 0.15 / 0.15 to leave every split a dozen or more.
DEMO_PER_CLASS = 100
TOLERANCE = 1e-6


def names(settings):
    """The split names in config order; the last takes the top of the ranking."""
    return [name for name in settings if name != CAP]


def is_fractions(settings):
    # Counts are at least 1 and fractions below 1 (the schema says so), so one value decides.
    return all(settings[name] < 1 for name in names(settings))


def check(settings):
    """Refuse what the schema cannot express: fractions that add up to more than 1."""
    if is_fractions(settings):
        total = sum(settings[name] for name in names(settings))
        if total > 1 + TOLERANCE:
            given = " + ".join(f"{name} {settings[name]}" for name in names(settings))
            raise UserError(
                f"split: the fractions add up to {total:g} ({given}), more than 1; lower one of "
                "split.train, split.validation, split.test"
            )


def per_class(settings, available):
    """{split: images} for one class with `available` usable images (after the cap)."""
    if not is_fractions(settings):
        return {name: settings[name] for name in names(settings)}
    fractions = {name: settings[name] for name in names(settings)}
    total_fraction = sum(fractions.values())
    # Fractions adding up to 1 use every image; rounding must not leave one out. The tolerance
    # keeps float error (0.5 + 0.2 + 0.1 < 0.8) from losing an image.
    total = min(available, math.floor(available * total_fraction + TOLERANCE))
    quotas = {name: available * fraction for name, fraction in fractions.items()}
    sizes = {name: math.floor(quota + TOLERANCE) for name, quota in quotas.items()}
    # Largest remainder: the images rounding left over go to the splits that lost the most.
    by_remainder = sorted(quotas, key=lambda name: sizes[name] - quotas[name])
    for name in by_remainder[: max(0, total - sum(sizes.values()))]:
        sizes[name] += 1
    return sizes


def images_needed(settings):
    """Images per class a generated dataset (the demo) needs for this split."""
    if is_fractions(settings):
        return settings.get(CAP) or DEMO_PER_CLASS
    return sum(settings[name] for name in names(settings))


def describe(settings):
    """The split as the config gives it, for messages: "train 0.7 + validation 0.15 + ..."."""
    text = " + ".join(f"{name} {settings[name]}" for name in names(settings))
    if settings.get(CAP):
        text += f", at most {settings[CAP]} per class"
    return text
