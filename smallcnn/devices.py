"""Device, numeric precision and distribution strategy of a training or feature job."""

import dataclasses
import logging
import platform
from pathlib import Path

log = logging.getLogger(__name__)

# CPU features with native bfloat16 matrix arithmetic: without them mixed_bfloat16 is emulated
# and slower than float32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclasses.dataclass(frozen=True)
class Runtime:
    strategy: object
    policy: str
    device: str
    # As TensorFlow reports them; 0 is its default, one thread per core it sees.
    intra_op_threads: int
    inter_op_threads: int


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """Feature flags of the first CPU in /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows of it."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels, as it decided when it was imported.

    Asked of TensorFlow rather than read from TF_ENABLE_ONEDNN_OPTS: smallcnn sets that variable
    on import, which is too late when TensorFlow was imported first.
    """
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def resolve_policy(precision, has_gpu, flags):
    """The Keras dtype policy name for `precision` (auto, float32 or mixed) on this hardware."""
    if precision == "float32":
        return "float32"
    if precision not in ("auto", "mixed"):
        raise ValueError(f"precision must be auto, float32 or mixed, not {precision!r}")
    if has_gpu:
        return "mixed_float16"
    if precision == "mixed" or any(flag in flags for flag in BF16_CPU_FLAGS):
        return "mixed_bfloat16"
    return "float32"


def set_threads(threads):
    """Give TensorFlow's intra-op and inter-op pools `threads` threads each.

    TensorFlow otherwise sizes both pools by the cores it sees, all of a shared node or of a
    SLURM allocation's host, not the job's threads. The pools are fixed once TensorFlow runs its
    first operation: call this before.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # Only in a process that ran TensorFlow before (tests); configure reports the counts.
        log.warning("TensorFlow was already running: its thread counts stay as they were")


def enable_memory_growth(gpus):
    """Let each GPU's memory grow as needed instead of TensorFlow taking nearly all of it at
    start, so that a job can share a GPU with another (an evaluation beside a training)."""
    import tensorflow as tf

    try:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        # As in set_threads: TensorFlow initialised the GPUs before, with its default.
        log.warning("TensorFlow was already running: GPU memory growth stays as it was")


def configure(precision="auto", multi_gpu=True, threads=None):
    """Set the job's CPU threads, GPU memory growth and dtype policy, choose the distribution
    strategy, and log them. Call it before TensorFlow runs anything.

    `threads`: the job's threads (Snakemake's `snakemake.threads`), or None to leave TensorFlow's
    default. Models built afterwards compute in the policy's dtype; their output layers are
    float32 (the builders in smallcnn.models say so), which keeps the losses and probabilities
    exact.
    """
    import keras
    import tensorflow as tf

    if threads is not None:
        set_threads(threads)
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    gpus = tf.config.list_physical_devices("GPU")
    enable_memory_growth(gpus)
    policy = resolve_policy(precision, bool(gpus), cpu_flags())
    keras.mixed_precision.set_dtype_policy(policy)
    if multi_gpu and len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        device = f"{len(gpus)} GPUs (MirroredStrategy)"
    else:
        strategy = tf.distribute.get_strategy()
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            device = f"GPU ({details.get('device_name', gpus[0].name)})"
        else:
            device = f"CPU ({cpu_model()}, oneDNN {'on' if onednn_enabled() else 'off'})"
    log.info(
        "device: %s; precision: %s (asked: %s); threads: %d intra-op, %d inter-op",
        device,
        policy,
        precision,
        intra,
        inter,
    )
    return Runtime(
        strategy=strategy,
        policy=policy,
        device=device,
        intra_op_threads=intra,
        inter_op_threads=inter,
    )
