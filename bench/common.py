"""Helpers shared by the benchmarks: the machine, the data, timing and peak memory."""

import concurrent.futures
import datetime
import importlib
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SHARED = REPO.parent / "shared"
PHOTOS_ZIP = SHARED / "data" / "dogs-vs-cats-4000.zip"
OFFLINE_WEIGHTS_TOOL = SHARED / "tools" / "offline_vgg16_weights.py"
CLASSES = ("cat", "dog")
SPLITS = ("train", "validation", "test")
# The book's batch size (DLwP listings 5.14 and 5.17).
BOOK_BATCH = 20
# CPU flags that decide which precision levers exist on this machine.
INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def pipeline_augmentation():
    """The pipeline's augmentation settings: config.yaml's defaults, the book's values."""
    return yaml.safe_load((REPO / "config.yaml").read_text())["augmentation"]


def load_average():
    return [round(value, 2) for value in os.getloadavg()]


def machine():
    """What the figures were measured on."""
    import keras
    import tensorflow as tf

    from smallcnn import devices

    flags = devices.cpu_flags()
    memory_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {
        "cpu_model": devices.cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024**2, 1),
        "cpu_flags": {flag: flag in flags for flag in INTERESTING_FLAGS},
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def _photo_number(name):
    return int(name.split(".")[1])


def extract_photos(zip_path, dest, counts):
    """Class folders <dest>/<split>/<label>/ from the Kaggle-layout zip (train/cat.N.jpg).

    `counts` maps split -> images per class; like the book, the lowest-numbered photos of each
    class go to train, the next ones to validation, then test.
    """
    dest = Path(dest)
    with zipfile.ZipFile(zip_path) as archive:
        members = [m for m in archive.namelist() if m.lower().endswith(".jpg")]
        for label in CLASSES:
            own = sorted(
                (m for m in members if Path(m).name.startswith(f"{label}.")),
                key=lambda m: _photo_number(Path(m).name),
            )
            start = 0
            for split, count in counts.items():
                if start + count > len(own):
                    raise SystemExit(
                        f"{zip_path} has {len(own)} {label} photos, not {start + count}"
                    )
                folder = dest / split / label
                folder.mkdir(parents=True, exist_ok=True)
                for member in own[start : start + count]:
                    (folder / Path(member).name).write_bytes(archive.read(member))
                start += count
    return dest


def generate_photos(dest, counts, size=(200, 150), seed=0):
    """Photo-sized JPEGs (noise, a bright patch placed by class), for when ../shared is absent."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    dest = Path(dest)
    width, height = size
    for split, count in counts.items():
        for k, label in enumerate(CLASSES):
            folder = dest / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
                side = min(width, height) // 3
                x0 = k * (width - side)
                y0 = int(rng.integers(0, height - side))
                pixels[y0 : y0 + side, x0 : x0 + side] = 230
                Image.fromarray(pixels).save(folder / f"{label}.{i}.jpg", quality=90)
    return dest


def make_data(dest, counts, zip_path=PHOTOS_ZIP):
    """The real photos when the shared zip is there, else generated ones; returns a description."""
    if Path(zip_path).exists():
        extract_photos(zip_path, dest, counts)
        return f"real photos from {Path(zip_path).name}"
    generate_photos(dest, counts)
    return f"generated 200x150 JPEGs ({zip_path} is absent)"


def read_all_files(folder):
    """Read every file once so that no variant pays for the first read from disk."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            path.read_bytes()


def repeat_folder(source, dest, times):
    """A class-folder tree holding every image of `source` `times` times (hard links)."""
    source, dest = Path(source), Path(dest)
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        folder = dest / path.parent.relative_to(source)
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(times):
            target = folder / f"{path.stem}.r{copy}{path.suffix}"
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
    return dest


def count_images(folder):
    return sum(1 for p in Path(folder).rglob("*") if p.is_file())


def summarize(samples, images=None):
    """Median and spread of repeated `timed` samples, and the throughput at the median."""
    seconds = [sample["wall"] for sample in samples]
    cpu = [sample["cpu"] for sample in samples]
    median = statistics.median(seconds)
    summary = {
        "seconds": [round(s, 3) for s in seconds],
        "median_seconds": round(median, 3),
        "min_seconds": round(min(seconds), 3),
        "max_seconds": round(max(seconds), 3),
        "cpu_seconds": [round(s, 3) for s in cpu],
        "median_cpu_seconds": round(statistics.median(cpu), 3),
        "min_cpu_seconds": round(min(cpu), 3),
        # CPU seconds per second: how many cores the variant kept busy.
        "median_cores_busy": round(
            statistics.median(c / s for c, s in zip(cpu, seconds, strict=True)), 2
        ),
    }
    if all("thread_cpu" in sample for sample in samples):
        thread = statistics.median(sample["thread_cpu"] for sample in samples)
        summary["median_calling_thread_cpu_seconds"] = round(thread, 3)
    if images:
        summary["images"] = images
        summary["images_per_second"] = round(images / median, 2)
    return summary


class Worker:
    """A persistent interpreter with an environment of its own, running picklable calls.

    Some settings are fixed when TensorFlow is imported (oneDNN), and the book's code must run
    with TensorFlow's defaults while the pipeline runs with its own: each side gets its own
    interpreter, kept alive between calls so that imports and warm-ups are paid once.
    `preload` modules are imported first, as the pipeline's scripts import smallcnn first.
    """

    def __init__(self, env, preload=()):
        self._pool = concurrent.futures.ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_enter_worker,
            initargs=(dict(env), tuple(preload)),
        )

    def __call__(self, function, *args, **kwargs):
        return self._pool.submit(function, *args, **kwargs).result()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pool.shutdown()


def _enter_worker(env, preload):
    os.environ.clear()
    os.environ.update(env)
    for module in preload:
        importlib.import_module(module)


def timed(function, *args, **kwargs):
    """Wall and CPU seconds (all threads of this process) of one call, run inside a Worker so
    that no messaging is counted, and the CPU seconds of the calling thread alone. CPU time is
    the figure that other jobs on a shared machine disturb least; wall time is the one that
    matters. What the calling thread does while no other thread works (building a model,
    tracing it) cannot use a second core."""
    wall, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    function(*args, **kwargs)
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "thread_cpu": time.thread_time() - thread,
    }


def tensorflow_setup():
    """What decides TensorFlow's CPU kernels in this interpreter."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    return {
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "onednn": bool(_pywrap_util_port.IsMklEnabled()),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def tensorflow_defaults_env():
    """This process's environment without the knobs that override TensorFlow's CPU defaults."""
    env = dict(os.environ)
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    return env


def epoch_timer():
    """A Keras callback recording each epoch's wall and CPU time (training and validation)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []
            self.cpu_seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            self.cpu_started = time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)
            self.cpu_seconds.append(time.process_time() - self.cpu_started)

    return EpochTimer()


def peak_rss_of_feature_extraction(images, image_size, batch_size, precision, out):
    """Peak resident memory (MB) of the pipeline's extract_features over `images`, measured in
    a fresh interpreter so that nothing else this process allocated is counted."""
    code = (
        "import resource, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from smallcnn.features import extract_features\n"
        f"extract_features(images={str(images)!r}, out={str(out)!r},"
        " conv_base={'name': 'vgg16', 'weights': 'none'}, weights=None,"
        f" image_size={tuple(image_size)!r}, batch_size={batch_size},"
        f" precision={precision!r}, seed=0)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"feature extraction for the memory measurement failed:\n{result.stderr[-3000:]}"
        )
    # ru_maxrss is in kilobytes on Linux.
    return int(result.stdout.strip().splitlines()[-1]) / 1024
