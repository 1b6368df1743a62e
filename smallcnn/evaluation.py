"""Each trained model on the test split: metrics and one prediction per test image."""

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from smallcnn import crossval, datasets, devices, feature_file, folds, tta
from smallcnn import models as models_module
from smallcnn.errors import UserError
from smallcnn.metrics import (
    EPSILON,
    ERROR_COLUMNS,
    TRAINING_FACTS,
    class_metrics,
    class_probabilities,
    confusion_matrix,
    cross_entropy,
    predicted_classes,
    probability_columns,
    roc_auc,
)
from smallcnn.stats import accuracy_ci95

log = logging.getLogger(__name__)


def evaluate(
    model_path,
    summary_path,
    test,
    metrics_path,
    predictions_path,
    image_size,
    batch_size,
    threads=None,
    tta_views=(),
    errors_path=None,
    test_images=None,
):
    """Write the test metrics (json) and the per-image predictions (csv) of one model, and with
    `errors_path` every test image ranked by its loss (write_errors).

    `test`: the test split folder, or the test features (.h5) for the features experiment;
    `test_images`: the folder of the test images (default: `test`), for the errors' paths.
    `tta_views`: smallcnn.tta's view names; with any, the metrics gain tta_* figures beside the
    plain ones and the predictions tta_predicted and tta_probability (images only).
    """
    # The job's threads and GPU memory growth; the loaded model keeps the precision it was
    # trained with (its layers' saved dtype policies).
    devices.configure("float32", multi_gpu=False, threads=threads)
    model = keras.saving.load_model(model_path, compile=False)
    class_names, _ = models_module.model_info(model)
    summary = json.loads(Path(summary_path).read_text())
    prediction = predict_test(model, test, class_names, image_size, batch_size, tta_views)
    return write_test_results(
        prediction,
        class_names,
        {
            "experiment": summary["experiment"],
            "kind": summary.get("kind"),
            "seed": summary.get("seed"),
            "epochs_run": summary["epochs_run"],
            "best_epoch": summary["best_epoch"],
            "stopped_early": summary["stopped_early"],
            "train_seconds": summary["train_seconds"],
            **parameter_counts(model),
        },
        metrics_path,
        predictions_path,
        errors_path=errors_path,
        images_dir=test_images or test,
    )


def parameter_counts(model):
    return {
        "params_trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
        "params_total": int(model.count_params()),
    }


@dataclass
class TestPrediction:
    """One model's (or a fold ensemble's) probabilities on the test split; with TTA views also
    the views' mean and the (plain, TTA) inference seconds."""

    files: list
    labels: np.ndarray
    probabilities: np.ndarray
    tta_views: tuple = ()
    tta_probabilities: np.ndarray | None = None
    seconds: tuple = (0.0, 0.0)


def predict_test(model, test, class_names, image_size, batch_size, tta_views=()):
    """`model` on the test split: its folder, or its features (.h5) for a model trained on
    features (which takes no TTA views)."""
    if str(test).endswith(".h5"):
        test_set = feature_file.read(test)
        if test_set.class_names != class_names:
            raise UserError(f"{test} has classes {test_set.class_names}, the model {class_names}")
        outputs = model.predict(test_set.features, batch_size=batch_size, verbose=0)
        return TestPrediction(
            test_set.files, np.asarray(test_set.labels, dtype=int), class_probabilities(outputs)
        )
    image_set = datasets.load_images(test, image_size, batch_size, class_names=class_names)
    outputs = model.predict(image_set.dataset, verbose=0)
    prediction = TestPrediction(
        image_set.files, np.asarray(image_set.labels, dtype=int), class_probabilities(outputs)
    )
    if tta_views:
        batches = (images.numpy() for images, _ in image_set.dataset)
        _, tta_outputs, *seconds = tta.timed_outputs(model.predict_on_batch, batches, tta_views)
        prediction.tta_views = tuple(tta_views)
        prediction.tta_probabilities = class_probabilities(tta_outputs)
        prediction.seconds = tuple(seconds)
    return prediction


def ensemble(predictions):
    """The fold models' test predictions as one: the mean probability, plain and with TTA; the
    inference seconds are the sum (every fold model runs)."""
    first = predictions[0]
    for other in predictions[1:]:
        if list(other.files) != list(first.files):
            raise UserError("the fold models predicted different test images; rerun evaluation")
    return TestPrediction(
        first.files,
        first.labels,
        crossval.mean_probabilities([p.probabilities for p in predictions]),
        first.tta_views,
        crossval.mean_probabilities([p.tta_probabilities for p in predictions])
        if first.tta_views
        else None,
        tuple(float(sum(p.seconds[i] for p in predictions)) for i in range(2)),
    )


def write_test_results(
    prediction,
    class_names,
    record,
    metrics_path,
    predictions_path,
    extra=None,
    errors_path=None,
    images_dir=None,
):
    """The metrics JSON (`record`'s training facts, the test figures, and `extra`), the
    predictions CSV of a TestPrediction and, with `errors_path`, its errors file."""
    files, labels, probabilities = prediction.files, prediction.labels, prediction.probabilities
    tta_probabilities = prediction.tta_probabilities
    predicted = predicted_classes(probabilities)
    correct = predicted == labels
    n_test = len(labels)
    low, high = accuracy_ci95(int(correct.sum()), n_test)
    scores = probabilities[:, 1] if len(class_names) == 2 else probabilities
    metrics = {
        "experiment": record["experiment"],
        "kind": record.get("kind"),
        "seed": record.get("seed"),
        "test_accuracy": float(correct.mean()),
        "test_loss": cross_entropy(labels, probabilities),
        "roc_auc": roc_auc(labels, scores),
        "confusion_matrix": confusion_matrix(labels, predicted, len(class_names)).tolist(),
        **class_metrics(labels, predicted, probabilities, class_names),
        "class_names": class_names,
        "n_test": n_test,
        "accuracy_ci95": [low, high],
        **{key: record[key] for key in TRAINING_FACTS},
        **(extra or {}),
    }
    if tta_probabilities is not None:
        metrics.update(
            tta.figures(
                labels,
                probabilities,
                tta_probabilities,
                class_names,
                prediction.tta_views,
                prediction.seconds,
            )
        )
        tta_predicted = predicted_classes(tta_probabilities)
        log.info(
            "with test-time augmentation over %s: accuracy %.4f, %.1fx the inference time",
            ", ".join(prediction.tta_views),
            metrics["tta_test_accuracy"],
            metrics["tta_time_ratio"] or float("nan"),
        )
    Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics_path).write_text(json.dumps(metrics, indent=2) + "\n")
    Path(predictions_path).parent.mkdir(parents=True, exist_ok=True)
    with open(predictions_path, "w", newline="") as stream:
        writer = csv.writer(stream)
        tta_columns = []
        if tta_probabilities is not None:
            tta_columns = [
                "tta_predicted",
                "tta_probability",
                *tta.probability_columns(class_names),
            ]
        writer.writerow(
            ["file", "label", "predicted", "probability", "correct"]
            + probability_columns(class_names)
            + tta_columns
        )
        for i, file in enumerate(files):
            row = [
                file,
                class_names[labels[i]],
                class_names[predicted[i]],
                f"{probabilities[i, predicted[i]]:.6f}",
                "true" if correct[i] else "false",
                # Every class's, exactly (repr round-trips): the report averages them over
                # seeds and must predict as this file does for one seed.
                *(repr(float(p)) for p in probabilities[i]),
            ]
            if tta_columns:
                k = tta_predicted[i]
                row += [class_names[k], f"{tta_probabilities[i, k]:.6f}"]
                row += [repr(float(p)) for p in tta_probabilities[i]]
            writer.writerow(row)
    if errors_path is not None:
        write_errors(errors_path, files, labels, probabilities, class_names, images_dir)
    log.info(
        "%s: test accuracy %.4f (95%% CI %.4f-%.4f) on %d images, loss %.4f, AUC %s",
        record["experiment"],
        metrics["test_accuracy"],
        low,
        high,
        n_test,
        metrics["test_loss"],
        metrics["roc_auc"],
    )
    return metrics


def evaluate_folds(
    models,
    summaries,
    folds_path,
    pooled,
    test,
    metrics_path,
    predictions_path,
    oof_path,
    image_size,
    batch_size,
    k,
    seed,
    threads=None,
    tta_views=(),
    errors_path=None,
    test_images=None,
):
    """One (experiment, seed) cross-validated: each of its k fold models predicts the images of
    its own fold (out-of-fold, written to `oof_path`) and the test split; the seed's test
    prediction is their mean probability, written as `evaluate` writes one model's, and its
    metrics gain the `cv` block (smallcnn.crossval).

    `models`, `summaries`: fold i's at index i; `pooled`: {"train", "validation"}: the split
    folders, or their features files for a model trained on features. `tta_views`,
    `errors_path` and `test_images` as for `evaluate`, on the fold ensemble.
    """
    devices.configure("float32", multi_gpu=False, threads=threads)
    rows = folds.read_folds(folds_path, seed, k)
    if len(models) != k or len(summaries) != k:
        raise UserError(f"{len(models)} fold models and {len(summaries)} summaries for {k} folds")
    on_features = str(pooled["train"]).endswith(".h5")
    feature_sets = (
        {split: feature_file.read(path) for split, path in pooled.items()} if on_features else None
    )
    class_names, held_out, test_predictions, records = None, [], [], []
    for fold, (model_path, summary_path) in enumerate(zip(models, summaries, strict=True)):
        model = keras.saving.load_model(model_path, compile=False)
        names, _ = models_module.model_info(model)
        if class_names is None:
            class_names = names
        elif names != class_names:
            raise UserError(f"{model_path} has classes {names}, fold 0's model {class_names}")
        summary = json.loads(Path(summary_path).read_text())
        mine = [row for row in rows if row["fold"] == fold]
        unknown = sorted({row["label"] for row in mine} - set(class_names))
        if unknown:
            raise UserError(
                f"fold {fold} has classes {unknown} that {model_path} was not trained on"
            )
        labels = np.asarray([class_names.index(row["label"]) for row in mine], dtype=int)
        paths = [row["path"] for row in mine]
        if on_features:
            inputs, _ = folds.select_rows(feature_sets, paths)
            outputs = model.predict(inputs, batch_size=batch_size, verbose=0)
        else:
            image_set = datasets.load_listed(
                [folds.locate(path, pooled) for path in paths],
                labels,
                class_names,
                image_size,
                batch_size,
                files=paths,
            )
            outputs = model.predict(image_set.dataset, verbose=0)
        held_out.append(
            {
                "fold": fold,
                "rows": mine,
                "labels": labels,
                "probabilities": class_probabilities(outputs),
                "n_train": len(rows) - len(mine),
                "summary": summary,
            }
        )
        test_predictions.append(
            predict_test(model, test, class_names, image_size, batch_size, tta_views)
        )
        records.append({**summary, **parameter_counts(model)})
        log.info(
            "fold %d: %d out-of-fold images, accuracy %.4f",
            fold,
            len(mine),
            float(np.mean(predicted_classes(held_out[-1]["probabilities"]) == labels)),
        )
    cv, oof_rows = crossval.cross_validated(held_out, class_names)
    crossval.write_oof(oof_path, oof_rows, class_names)
    log.info(
        "%s/%d: cross-validated accuracy %.4f on %d train + validation images (%d folds)",
        records[0]["experiment"],
        seed,
        cv["accuracy"],
        cv["n_images"],
        k,
    )
    return write_test_results(
        ensemble(test_predictions),
        class_names,
        {
            "experiment": records[0]["experiment"],
            "kind": records[0].get("kind"),
            "seed": seed,
            # Per fold model, averaged; the training time is the seed's whole: every fold's.
            "epochs_run": round(np.mean([r["epochs_run"] for r in records])),
            "best_epoch": round(np.mean([r["best_epoch"] for r in records])),
            "stopped_early": any(r["stopped_early"] for r in records),
            "train_seconds": round(sum(r["train_seconds"] for r in records), 3),
            "params_trainable": records[0]["params_trainable"],
            "params_total": records[0]["params_total"],
        },
        metrics_path,
        predictions_path,
        extra={"cv": cv},
        errors_path=errors_path,
        images_dir=test_images or test,
    )


def write_errors(path, files, labels, probabilities, class_names, images_dir):
    """Every test image ranked by its cross-entropy, the worst first (ties by file): `file`
    relative to the test split (as in the predictions), `path` the image itself, the true and
    predicted class, the predicted class's probability and the true class's (`p_true`)."""
    labels = np.asarray(labels, dtype=int)
    predicted = predicted_classes(probabilities)
    p_true = probabilities[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(p_true, EPSILON, 1 - EPSILON))
    order = sorted(range(len(files)), key=lambda i: (-losses[i], files[i]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(ERROR_COLUMNS)
        for rank, i in enumerate(order, start=1):
            writer.writerow(
                [
                    rank,
                    f"{losses[i]:.6f}",
                    files[i],
                    (Path(images_dir) / files[i]).as_posix(),
                    class_names[labels[i]],
                    class_names[predicted[i]],
                    f"{probabilities[i, predicted[i]]:.6f}",
                    f"{p_true[i]:.6f}",
                ]
            )
