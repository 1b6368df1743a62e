"""A trained model as deployable artifacts: SavedModel, ONNX, LiteRT float32 and LiteRT int8.

What is exported is an inference graph rebuilt from the trained .keras file, not the file's
training graph:
- in float32, whatever precision training used: the layers are rebuilt from the model's config
  with every dtype policy set to float32, and the trained weights (float32 variables under mixed
  precision too) copied in;
- without the layers that only act in training: RandomAffine (augmentation) and Dropout are left
  out, not traced in inference mode, so that no converter sees a random op or a training branch,
  and the identity ModelInfo layer too, whose class names go to model.json;
- taking raw RGB uint8 images: a cast to float32 comes first, then the model's own preprocessing
  (Rescaling, or the conv base's preprocess_input layer), so a user never reimplements it;
- a features experiment's head gets its conv base in front (rebuilt from the weights file whose
  sha256 the model records), so its artifacts take images, not features.

Keras' Model.export writes the SavedModel, the ONNX file (through tf2onnx) and the LiteRT files
(through TensorFlow's converter); smallcnn.parity then runs each with its own runtime against the
float32 Keras model on the test split.
"""

import importlib.metadata
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from smallcnn import artifacts, datasets, devices, models, parity, registry
from smallcnn.atomic import atomic_write
from smallcnn.errors import UserError
from smallcnn.fingerprint import file_sha256

log = logging.getLogger(__name__)

MODEL_JSON = artifacts.MODEL_JSON
PARITY_JSON = "parity.json"
BATCH_SIZE = 32
RESIZE = (
    "decode, resize to the input size with bilinear interpolation (tf.image.resize), round to "
    "uint8: as smallcnn.datasets.decode_and_resize, which training and evaluation used"
)
OUTPUT = "probabilities"
PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


def float32_config(config):
    """A Keras model config with every dtype policy (mixed_bfloat16, mixed_float16) float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [float32_config(value) for value in config]
    return config


def float32_rebuild(model):
    """The same layers and weights as `model`, computing in float32."""
    rebuilt = model.__class__.from_config(float32_config(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def takes_images(model):
    return len(model.input_shape) == 4 and model.input_shape[-1] == 3


def conv_base(info, weights_path):
    """The float32 conv base a features model was trained on, from the weights file it names."""
    if info is None:
        raise UserError("the features model does not say which conv base made its features")
    if info["weights"] == "none" or info["weights_sha256"] == "none":
        raise UserError(
            "this features model was trained on features of a randomly initialised conv base, "
            "which cannot be rebuilt: it cannot be exported (leave it out of export.experiments)"
        )
    if not weights_path or not Path(weights_path).is_file():
        raise UserError(f"the {info['name']} weights file {weights_path} is missing")
    if file_sha256(weights_path) != info["weights_sha256"]:
        raise UserError(
            f"{weights_path} is not the weights file the features were extracted with "
            f"(sha256 {info['weights_sha256']})"
        )
    return models.build_conv_base(info["name"], str(weights_path), (*info["input_size"], 3))


def _head_layers(model):
    """The layers of a linear model after its input, without those that act only in training
    and without the identity ModelInfo."""
    import keras

    skipped = (models.RandomAffine, keras.layers.Dropout, models.ModelInfo)
    return [layer for layer in model.layers[1:] if not isinstance(layer, skipped)]


def _apply(layers, x):
    import keras

    for layer in layers:
        # A nested conv base runs in inference mode, as training called it.
        x = layer(x, training=False) if isinstance(layer, keras.Model) else layer(x)
    return x


def reference_model(model, base=None):
    """The float32 Keras model the artifacts are compared with: float images in 0..255 to
    probabilities; the trained model itself (float32) or, for features, base then head."""
    import keras

    if base is None:
        return model
    inputs = keras.Input(shape=base.input_shape[1:], name="image")
    outputs = model(base(inputs, training=False), training=False)
    return keras.Model(inputs, outputs, name=f"{model.name}_on_images")


def inference_model(model, base=None):
    """uint8 RGB images to probabilities, with only the layers that act at inference."""
    import keras

    shape = base.input_shape[1:] if base is not None else model.input_shape[1:]
    inputs = keras.Input(shape=shape, dtype="uint8", name="image")
    x = keras.ops.cast(inputs, "float32")
    if base is not None:
        x = base(x, training=False)
    outputs = _apply(_head_layers(model), x)
    # A named output: the signatures and the ONNX graph call it "probabilities", not output_0.
    return keras.Model(inputs, {OUTPUT: outputs}, name="inference")


def representative_images(train_dir, class_names, image_size, count, seed):
    """`count` training images (all when there are fewer), drawn with `seed`, as uint8."""
    files, _, _ = datasets.list_images(train_dir, class_names)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(files), size=min(count, len(files)), replace=False))
    return [
        datasets.decode_and_resize(Path(train_dir, files[i]).read_bytes(), image_size).numpy()
        for i in chosen
    ]


def convert(serving, name, path, representative=None):
    """Write format `name` of the inference model `serving` to `path`."""
    import tensorflow as tf

    if name == "saved_model":
        serving.export(str(path), format="tf_saved_model", verbose=False)
    elif name == "onnx":
        serving.export(str(path), format="onnx", verbose=False)
    elif name == "tflite":
        # Built-in ops only: a model that needed TensorFlow ops (the Flex delegate) would not
        # run in ai-edge-litert or on a phone, so the converter must refuse it here.
        serving.export(
            str(path),
            format="litert",
            verbose=False,
            target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
        )
    elif name == "tflite_int8":

        def calibration():
            for image in representative:
                yield [image[None]]

        serving.export(
            str(path),
            format="litert",
            verbose=False,
            optimizations=[tf.lite.Optimize.DEFAULT],
            representative_dataset=calibration,
            target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
            # The image stays uint8 (cast inside), the probabilities float32.
            inference_input_type=tf.uint8,
            inference_output_type=tf.float32,
        )
    else:
        raise ValueError(f"unknown export format {name!r}")


def _remove(path):
    if Path(path).is_dir():
        shutil.rmtree(path)
    elif Path(path).exists():
        Path(path).unlink()


def produce(serving, names, out_dir, representative):
    """{format: {"path", "status", "error"}}: each format converted, or the converter's refusal
    (logged with its traceback) while the other formats go on."""
    # Keras' ONNX export refuses a model that has never run ("never called").
    serving(np.zeros((1, *serving.input_shape[1:]), dtype="uint8"))
    produced = {}
    for name in names:
        export_format = registry.EXPORT_FORMATS[name]
        path = Path(out_dir) / export_format.path
        log.info("%s: converting", name)
        try:
            convert(serving, name, path, representative)
        # Converters fail in their own ways (ValueError, ConverterError, tf2onnx's errors...):
        # any of them is this format's refusal, and the other formats go on.
        except Exception as error:
            log.exception("%s: the converter refused the model", name)
            _remove(path)
            message = " ".join(str(error).split())[:300] or type(error).__name__
            produced[name] = {
                "path": export_format.path,
                "status": "cannot_be_produced",
                "error": f"{type(error).__name__}: {message}",
            }
            continue
        produced[name] = {"path": export_format.path, "status": "ok", "error": None}
        if name == "onnx":
            produced[name]["opset"] = onnx_opset(path)
    return produced


def onnx_opset(path):
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def versions():
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def model_description(serving, base_info, class_names, image_size, summary, source, produced):
    """model.json: what a user needs to feed an artifact and read its output."""
    binary = len(class_names) == 2
    output = {
        "name": OUTPUT,
        "dtype": "float32",
        "shape": [None, 1] if binary else [None, len(class_names)],
        "activation": "sigmoid" if binary else "softmax",
        "meaning": (
            f"the probability of {class_names[1]!r} (class_names[1]): {class_names[1]!r} when it "
            f"is above 0.5, else {class_names[0]!r}"
            if binary
            else "one probability per class, in class_names order; the largest is the prediction"
        ),
    }
    preprocessing = (
        registry.BASES[base_info["name"]].preprocessing if base_info else "x / 255 (Rescaling)"
    )
    return {
        "experiment": summary.get("experiment"),
        "kind": summary.get("kind"),
        "seed": summary.get("seed"),
        "class_names": class_names,
        "input": {
            "name": "image",
            "dtype": "uint8",
            "shape": [None, *image_size, 3],
            "layout": "NHWC: batch, height, width, channels",
            "channel_order": "RGB",
            "value_range": [0, 255],
            "resize": RESIZE,
            "preprocessing": f"inside the model: {preprocessing}; feed the raw pixels",
        },
        "output": output,
        "source": {
            "keras_file": str(source),
            "sha256": file_sha256(source),
            "training_precision": summary.get("precision"),
            "dropped_layers": "augmentation (RandomAffine) and Dropout act only in training "
            "and are not in the exported graph",
        },
        "conv_base": (
            {
                "name": base_info["name"],
                "weights": base_info["weights"],
                "weights_sha256": base_info["weights_sha256"],
                "in_artifact": "conv base and head together: the artifact takes images",
            }
            if base_info
            else None
        ),
        "formats": {
            name: {
                **entry,
                "runtime": registry.EXPORT_FORMATS[name].runtime,
                "description": registry.EXPORT_FORMATS[name].description,
            }
            for name, entry in produced.items()
        },
        "exported_with": versions(),
        "parameters": int(serving.count_params()),
    }


def write_json(path, data):
    """`data` as JSON at `path`, which appears only when complete."""
    with atomic_write(path, suffix=".partial") as partial:
        partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def export(
    model_path,
    summary_path,
    out_dir,
    test_dir,
    formats,
    allow_mismatch=(),
    train_dir=None,
    weights_path=None,
    test_features=None,
    representative_count=200,
    latency_runs=50,
    seed=0,
    threads=None,
):
    """Export one trained model to `out_dir`: the artifacts of `formats`, model.json and
    parity.json. A format whose parity misses its target raises a ParityError with the figures
    unless `allow_mismatch` names it.

    `test_dir`: the test split folder; `train_dir`: the training split, whose images calibrate
    the int8 quantisation; `weights_path` and `test_features` (.h5): a features model's conv base
    weights and the test features it was evaluated on.
    """
    import keras

    runtime = devices.configure("float32", multi_gpu=False, threads=threads)
    summary = json.loads(Path(summary_path).read_text())
    trained = keras.saving.load_model(model_path, compile=False)
    class_names, base_info = models.model_info(trained)
    head = float32_rebuild(trained)
    base = None if takes_images(trained) else conv_base(base_info, weights_path)
    reference = reference_model(head, base)
    serving = inference_model(head, base)
    image_size = tuple(serving.input_shape[1:3])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    representative = None
    if registry.calibrates(formats):
        representative = representative_images(
            train_dir, class_names, image_size, representative_count, seed
        )
        log.info("int8 calibration on %d training images", len(representative))
    produced = produce(serving, formats, out_dir, representative)
    # Before parity: the artifacts are loaded as a user loads them, with their model.json.
    write_json(
        out_dir / MODEL_JSON,
        model_description(
            serving, base_info, class_names, image_size, summary, model_path, produced
        ),
    )

    test = parity.test_split(test_dir, class_names, image_size, BATCH_SIZE)
    if base is None:
        trained_outputs = trained.predict(test.images.astype("float32"), verbose=0)
    else:
        trained_outputs = parity.trained_on_features(trained, test_features, test.files)
    results = parity.measure(
        reference,
        trained_outputs,
        test,
        out_dir,
        produced,
        allow_mismatch,
        latency_runs,
        threads,
    )
    results.update(
        experiment=summary.get("experiment"),
        seed=summary.get("seed"),
        training_precision=summary.get("precision"),
        machine={
            "device": runtime.device,
            "cpu_flags": sorted(devices.cpu_flags() & set(parity.REPORTED_FLAGS)),
            "threads": threads,
            "load_average": list(os.getloadavg()),
        },
    )
    write_json(out_dir / PARITY_JSON, results)
    log.info("parity on %d test images:\n%s", test.n, parity.table(results))
    parity.enforce(results, f"{summary.get('experiment')}/{summary.get('seed')}")
    return results
