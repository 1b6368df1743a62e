"""The monitoring settings of an experiment, read and checked without TensorFlow (the Snakefile
checks them at DAG build time): callbacks.tensorboard and callbacks.lr_schedule.
"""

import math

from smallcnn.errors import UserError

SCHEDULES = ("none", "step", "exponential", "cosine")
# The keys each schedule reads besides kind and warmup_epochs (config.yaml says what they mean).
SCHEDULE_KEYS = {
    "none": (),
    "step": ("drop_every", "drop_factor"),
    "exponential": ("decay",),
    "cosine": ("min_learning_rate",),
}


def tensorboard(settings):
    """callbacks.tensorboard of an experiment's settings as {enabled, histogram_freq,
    embeddings}: true and false are shorthand for {enabled: ...}; a key left out is off
    (config.yaml's defaults turn them on)."""
    value = (settings.get("callbacks") or {}).get("tensorboard")
    if value is None or isinstance(value, bool):
        value = {"enabled": True if value is None else value}
    enabled = bool(value.get("enabled", True))
    return {
        "enabled": enabled,
        "histogram_freq": int(value.get("histogram_freq") or 0) if enabled else 0,
        "embeddings": enabled and bool(value.get("embeddings", False)),
    }


def check_schedule(callbacks, epochs):
    """callbacks.lr_schedule with warmup_epochs filled in; a UserError names a missing key, a
    warm-up as long as the training, or the schedule together with reduce_lr.

    A schedule and reduce_lr are not combined: the schedule sets every epoch's rate from the
    epoch number, which would undo reduce_lr's reduction at the next epoch (or, multiplied with
    it, give a rate that neither the schedule's formula nor the plateau history explains).
    """
    schedule = dict(callbacks.get("lr_schedule") or {"kind": "none"})
    kind = schedule.get("kind", "none")
    if kind not in SCHEDULES:
        raise UserError(f"callbacks.lr_schedule.kind is {kind!r}: one of {', '.join(SCHEDULES)}")
    schedule["kind"] = kind
    missing = [key for key in SCHEDULE_KEYS[kind] if schedule.get(key) is None]
    if missing:
        raise UserError(
            f"callbacks.lr_schedule of kind {kind} needs {', '.join(missing)} "
            "(config.yaml's callbacks.lr_schedule says what each means)"
        )
    plateau = callbacks.get("reduce_lr") or {}
    if kind != "none" and plateau.get("enabled", True):
        raise UserError(
            f"callbacks.lr_schedule is {kind} while callbacks.reduce_lr is enabled: the schedule "
            "sets every epoch's rate, which would undo reduce_lr's reductions; set "
            "reduce_lr: {enabled: false} to use the schedule, or lr_schedule: {kind: none}"
        )
    warmup = int(schedule.get("warmup_epochs") or 0)
    if kind != "none" and warmup >= epochs:
        raise UserError(
            f"callbacks.lr_schedule.warmup_epochs is {warmup}, not fewer than the {epochs} epochs "
            "to train: no epoch would follow the schedule"
        )
    schedule["warmup_epochs"] = warmup
    return schedule


def learning_rate(epoch, base_rate, schedule, epochs):
    """The rate of epoch `epoch` (0-based) of a run of `epochs` epochs. A warm-up of W epochs
    rises linearly, base_rate * (epoch + 1) / (W + 1); then, with t = epoch - W and T = epochs - W:

    - step: base_rate * drop_factor ** floor(t / drop_every)
    - exponential: base_rate * decay ** t
    - cosine: min_learning_rate + (base_rate - min_learning_rate) * (1 + cos(pi * t / T)) / 2
    """
    kind = schedule.get("kind", "none")
    warmup = int(schedule.get("warmup_epochs") or 0)
    if kind == "none":
        return float(base_rate)
    if epoch < warmup:
        return base_rate * (epoch + 1) / (warmup + 1)
    t = epoch - warmup
    if kind == "step":
        return base_rate * schedule["drop_factor"] ** (t // schedule["drop_every"])
    if kind == "exponential":
        return base_rate * schedule["decay"] ** t
    low = schedule["min_learning_rate"]
    return low + (base_rate - low) * (1 + math.cos(math.pi * t / max(1, epochs - warmup))) / 2
