"""How far each exported artifact is from the Keras model, measured on the test split.

Each artifact runs in its own runtime (smallcnn.artifacts) on the test images as raw uint8, and
is compared with the float32 Keras model on the same pixels: the largest absolute difference in
any class probability, the share of images given the same class, the test accuracy, the file
size and the median single-image latency. The targets are the issue's: float formats within 1e-4
and the same class for every image; int8 the same class for at least 97% and accuracy within 2
points, enforced only on 200 test images or more, where 97% is more than a handful of images.
"""

import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np

from smallcnn import artifacts, datasets, feature_file, registry
from smallcnn.errors import UserError
from smallcnn.evaluation import class_probabilities, predicted_classes

FLOAT_MAX_DIFF = 1e-4
INT8_MIN_AGREEMENT = 0.97
INT8_MAX_ACCURACY_GAP = 0.02
INT8_ENFORCED_FROM = 200
WARMUP_RUNS = 5
BATCH_SIZE = 32
# The CPU features that decide how fast (and in which precision) these runtimes compute.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
REFERENCE = "keras_float32"


class ParityError(UserError):
    """An artifact converted but misses its parity target."""


@dataclasses.dataclass
class TestSplit:
    images: np.ndarray  # uint8 (n, height, width, 3)
    labels: np.ndarray
    files: list

    @property
    def n(self):
        return len(self.labels)


def test_split(test_dir, class_names, image_size, batch_size=BATCH_SIZE):
    """The test split decoded and resized as evaluation does, as uint8."""
    image_set = datasets.load_images(test_dir, image_size, batch_size, class_names=class_names)
    images = np.concatenate([batch.numpy() for batch, _ in image_set.dataset])
    return TestSplit(
        images=images.astype(np.uint8),
        labels=np.asarray(image_set.labels, dtype=int),
        files=list(image_set.files),
    )


def trained_on_features(model, features_path, files):
    """The trained features model's outputs on the test features it was evaluated on, in the
    order of `files`."""
    feature_set = feature_file.read(features_path)
    index = {file: i for i, file in enumerate(feature_set.files)}
    missing = [file for file in files if file not in index]
    if missing:
        raise UserError(
            f"{features_path} lacks {len(missing)} test images (e.g. {missing[0]}): it was "
            "extracted from another split; rerun its extraction"
        )
    chosen = feature_set.features[[index[file] for file in files]]
    return model.predict(chosen, batch_size=BATCH_SIZE, verbose=0)


def batched(run, images, batch_size=BATCH_SIZE):
    return np.concatenate(
        [np.asarray(run(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    )


def latency_ms(run, image, runs):
    """Median wall time of `runs` single-image calls of `run`, after WARMUP_RUNS untimed ones."""
    for _ in range(WARMUP_RUNS):
        run(image)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def compare(reference_probabilities, outputs, labels):
    probabilities = class_probabilities(outputs)
    predicted = predicted_classes(probabilities)
    return {
        "max_abs_diff": float(np.max(np.abs(probabilities - reference_probabilities))),
        "agreement": float(np.mean(predicted == predicted_classes(reference_probabilities))),
        "accuracy": float(np.mean(predicted == labels)),
    }


def size_bytes(path):
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def judge(name, figures, reference_accuracy, n_test, allow_mismatch):
    """The target of format `name`, whether the figures meet it, and whether a miss fails."""
    if registry.EXPORT_FORMATS[name].quantized:
        gap = abs(figures["accuracy"] - reference_accuracy)
        met = figures["agreement"] >= INT8_MIN_AGREEMENT and gap <= INT8_MAX_ACCURACY_GAP
        target = (
            f"agreement >= {INT8_MIN_AGREEMENT:.0%} and accuracy within "
            f"{100 * INT8_MAX_ACCURACY_GAP:.0f} points"
        )
        enforced = n_test >= INT8_ENFORCED_FROM
    else:
        met = figures["max_abs_diff"] <= FLOAT_MAX_DIFF and figures["agreement"] == 1.0
        target = f"max |dp| <= {FLOAT_MAX_DIFF:g} and 100% agreement"
        enforced = True
    return {
        "target": target,
        "target_met": bool(met),
        "enforced": enforced,
        "allowed_mismatch": name in allow_mismatch,
    }


def measure(reference, trained_outputs, test, out_dir, produced, allow_mismatch, runs, threads):
    """parity.json's figures: the float32 Keras model against the trained one, and every
    produced artifact (as `produced` lists them, in `out_dir`) against the float32 model."""

    def run_reference(images):
        return reference.predict_on_batch(images.astype(np.float32))

    reference_probabilities = class_probabilities(batched(run_reference, test.images))
    reference_accuracy = float(np.mean(predicted_classes(reference_probabilities) == test.labels))
    rows = {
        REFERENCE: {
            "status": "ok",
            "runtime": "keras (TensorFlow), predict_on_batch",
            "accuracy": reference_accuracy,
            "latency_ms": latency_ms(run_reference, test.images[:1], runs),
        }
    }
    for name, entry in produced.items():
        if entry["status"] != "ok":
            rows[name] = dict(entry)
            continue
        path = Path(out_dir) / entry["path"]
        runtime = registry.EXPORT_FORMATS[name].runtime
        try:
            artifact = artifacts.load(path, threads)
            outputs = batched(artifact.run, test.images)
        except UserError as error:
            # Converted, but its runtime cannot run it on images: a miss, not a refusal.
            rows[name] = {
                "status": "does_not_run",
                "error": str(error),
                "runtime": runtime,
                "size_bytes": size_bytes(path),
                "target": "runs on the image alone",
                "target_met": False,
                "enforced": True,
                "allowed_mismatch": name in allow_mismatch,
            }
            continue
        figures = compare(reference_probabilities, outputs, test.labels)
        figures.update(
            status="ok",
            runtime=runtime,
            size_bytes=size_bytes(path),
            latency_ms=latency_ms(artifact.run, test.images[:1], runs),
        )
        figures.update(judge(name, figures, reference_accuracy, test.n, allow_mismatch))
        rows[name] = figures
    return {
        "n_test": test.n,
        "reference": "the .keras model rebuilt in float32, on the same uint8 pixels",
        "latency": f"median of {runs} single-image runs after {WARMUP_RUNS} untimed ones",
        "float32_vs_trained": compare(reference_probabilities, trained_outputs, test.labels),
        "formats": rows,
    }


def failures(results):
    """Formats that converted, miss an enforced target and are not in allow_mismatch."""
    return [
        name
        for name, row in results["formats"].items()
        if row.get("target_met") is False and row["enforced"] and not row["allowed_mismatch"]
    ]


def table(results):
    """The figures as lines of text, for the job's log and a failure's message."""
    lines = []
    for name, row in results["formats"].items():
        if row["status"] != "ok":
            lines.append(f"  {name}: {registry.EXPORT_STATUS[row['status']]}: {row['error']}")
            continue
        figures = [f"accuracy {row['accuracy']:.2%}", f"latency {row['latency_ms']:.2f} ms"]
        if name != REFERENCE:
            figures[:0] = [
                f"max |dp| {row['max_abs_diff']:.2e}",
                f"agreement {row['agreement']:.2%}",
            ]
            figures.append(f"{row['size_bytes'] / 1e6:.2f} MB")
            verdict = "met" if row["target_met"] else "MISSED"
            if not row["target_met"]:
                verdict += " (allowed)" if row["allowed_mismatch"] else ""
                verdict += "" if row["enforced"] else " (not enforced: under 200 test images)"
            figures.append(f"target {row['target']}: {verdict}")
        lines.append(f"  {name}: " + ", ".join(figures))
    gap = results["float32_vs_trained"]
    lines.append(
        f"  float32 model vs the trained one: max |dp| {gap['max_abs_diff']:.2e}, "
        f"agreement {gap['agreement']:.2%}, trained accuracy {gap['accuracy']:.2%}"
    )
    return "\n".join(lines)


def enforce(results, what):
    missed = failures(results)
    if missed:
        raise ParityError(
            f"the export of {what} misses its parity target in {', '.join(missed)} "
            f"({results['n_test']} test images):\n{table(results)}\n"
            "Fix the conversion, or name the format in export.allow_mismatch to keep it anyway."
        )
