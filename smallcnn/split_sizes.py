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
    """Refuse what no dataset can satisfy, before any image is read: fractions that add up to
    more than 1, and a max_per_class smaller than the split it caps."""
    cap = settings.get(CAP)
    given = " + ".join(f"{name} {settings[name]}" for name in names(settings))
    if is_fractions(settings):
        total = sum(settings[name] for name in names(settings))
        if total > 1 + TOLERANCE:
            raise UserError(
                f"split: the fractions add up to {total:g} ({given}), more than 1; lower one of "
                "split.train, split.validation, split.test"
            )
        # Every class has at most `cap` images; refused only if no class size up to the cap
        # would give every split one.
        if cap and not any(min(per_class(settings, n).values()) >= 1 for n in range(1, cap + 1)):
            raise UserError(
                f"split: {given} of at most split.max_per_class={cap} images per class leaves "
                f"a split empty ({format_sizes(per_class(settings, cap))}); raise "
                f"split.max_per_class to at least {smallest_class(settings)}"
            )
    elif cap:
        total = sum(settings[name] for name in names(settings))
        if total > cap:
            raise UserError(
                f"split: {given} is {total} images per class, more than "
                f"split.max_per_class={cap} lets a class have; raise split.max_per_class to at "
                f"least {total} (or null for no cap), or lower the counts"
            )


def available(settings, usable):
    """Images of a class with `usable` images that the split draws from: at most the cap."""
    cap = settings.get(CAP)
    return min(usable, cap) if cap else usable


def shortfall(settings, label, usable):
    """Why a class with `usable` images cannot be split as `settings` ask (what it has, what
    is asked, what to write), or None when it can: every split gets its full size, at least 1.
    """
    drawn = available(settings, usable)
    sizes = per_class(settings, drawn)
    has = f"class '{label}' has {usable} usable images"
    if drawn < usable:
        has += f", {drawn} after split.max_per_class"
    if sum(sizes.values()) > drawn:
        problem = f"{has} but the split asks for {sum(sizes.values())} ({describe(settings)})"
        needed = sum(sizes.values())
    elif min(sizes.values()) < 1:
        problem = (
            f"{has}, too few for {describe(settings)} to give every split one "
            f"({format_sizes(sizes)})"
        )
        needed = smallest_class(settings)
    else:
        return None
    if drawn < usable and usable >= needed:
        # The class has enough; the cap is what falls short.
        problem += f"; raise split.max_per_class to at least {needed}"
    return problem


def smallest_class(settings):
    """The fewest images per class for which every split gets at least one."""
    if not is_fractions(settings):
        return sum(settings[name] for name in names(settings))
    # Exists: from 1 / (the smallest fraction) on, every quota is at least 1.
    n = 1
    while min(per_class(settings, n).values()) < 1:
        n += 1
    return n


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


def format_sizes(sizes):
    """{split: n} for messages: "train 3 / validation 1 / test 1"."""
    return " / ".join(f"{name} {n}" for name, n in sizes.items())


def describe(settings):
    """The split as the config gives it, for messages: "train 0.7 + validation 0.15 + ..."."""
    text = " + ".join(f"{name} {settings[name]}" for name in names(settings))
    if settings.get(CAP):
        text += f", at most {settings[CAP]} per class"
    return text
