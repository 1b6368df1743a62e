"""Each trained model on the test split: metrics and one prediction per test image."""

import csv
import json
import logging
from pathlib import Path

import keras
import numpy as np

from smallcnn import datasets, devices, feature_file, models
from smallcnn.errors import UserError
from smallcnn.metrics import (
    class_metrics,
    confusion_matrix,
    predicted_classes,
    probability_columns,
    roc_auc,
)
from smallcnn.stats import accuracy_ci95

log = logging.getLogger(__name__)

# Probabilities are clipped like Keras' cross-entropy losses, so that the loss is finite.
EPSILON = 1e-7


def class_probabilities(outputs):
    """Model outputs -> (n, n_classes) probabilities (a sigmoid output is P(class 1))."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim == 1 or outputs.shape[1] == 1:
        p = outputs.reshape(-1)
        return np.stack([1 - p, p], axis=1)
    return outputs


def cross_entropy(labels, probabilities):
    chosen = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(chosen, EPSILON, 1 - EPSILON))))


def evaluate(
    model_path,
    summary_path,
    test,
    metrics_path,
    predictions_path,
    image_size,
    batch_size,
    threads=None,
):
    """Write the test metrics (json) and the per-image predictions (csv) of one model.

    `test`: the test split folder, or the test features (.h5) for the features experiment.
    """
    # The job's threads and GPU memory growth; the loaded model keeps the precision it was
    # trained with (its layers' saved dtype policies).
    devices.configure("float32", multi_gpu=False, threads=threads)
    model = keras.saving.load_model(model_path, compile=False)
    class_names, _ = models.model_info(model)
    summary = json.loads(Path(summary_path).read_text())
    if str(test).endswith(".h5"):
        test_set = feature_file.read(test)
        if test_set.class_names != class_names:
            raise UserError(f"{test} has classes {test_set.class_names}, the model {class_names}")
        outputs = model.predict(test_set.features, batch_size=batch_size, verbose=0)
        files, labels = test_set.files, test_set.labels
    else:
        image_set = datasets.load_images(test, image_size, batch_size, class_names=class_names)
        outputs = model.predict(image_set.dataset, verbose=0)
        files, labels = image_set.files, image_set.labels
    labels = np.asarray(labels, dtype=int)
    probabilities = class_probabilities(outputs)
    predicted = predicted_classes(probabilities)
    correct = predicted == labels
    n_test = len(labels)
    low, high = accuracy_ci95(int(correct.sum()), n_test)
    metrics = {
        "experiment": summary["experiment"],
        "kind": summary.get("kind"),
        "seed": summary.get("seed"),
        "test_accuracy": float(correct.mean()),
        "test_loss": cross_entropy(labels, probabilities),
        "roc_auc": roc_auc(labels, outputs if len(class_names) == 2 else probabilities),
        "confusion_matrix": confusion_matrix(labels, predicted, len(class_names)).tolist(),
        **class_metrics(labels, predicted, probabilities, class_names),
        "class_names": class_names,
        "n_test": n_test,
        "accuracy_ci95": [low, high],
        "epochs_run": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "stopped_early": summary["stopped_early"],
        "train_seconds": summary["train_seconds"],
        "params_trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "params_total": int(model.count_params()),
    }
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(metrics, indent=2) + "\n")
    Path(predictions_path).parent.mkdir(parents=True, exist_ok=True)
    with open(predictions_path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(
            ["file", "label", "predicted", "probability", "correct"]
            + probability_columns(class_names)
        )
        for i, file in enumerate(files):
            writer.writerow(
                [
                    file,
                    class_names[labels[i]],
                    class_names[predicted[i]],
                    f"{probabilities[i, predicted[i]]:.6f}",
                    "true" if correct[i] else "false",
                    # Every class's, exactly (repr round-trips): the report averages them over
                    # seeds and must predict as this file does for one seed.
                    *(repr(float(p)) for p in probabilities[i]),
                ]
            )
    log.info(
        "%s: test accuracy %.4f (95%% CI %.4f-%.4f) on %d images, loss %.4f, AUC %s",
        summary["experiment"],
        metrics["test_accuracy"],
        low,
        high,
        n_test,
        metrics["test_loss"],
        metrics["roc_auc"],
    )
    return metrics
