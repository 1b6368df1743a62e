"""Exported models run by their own runtimes: TensorFlow for a SavedModel, onnxruntime for ONNX,
ai-edge-litert for LiteRT (TFLite) files, float or int8.

Every artifact smallcnn.export writes takes a batch of raw RGB uint8 images of its input size
and returns probabilities, and has a model.json beside it (in the same folder; the SavedModel
folder's parent) with its class names. The parity check and `smallcnn.predict` both load
artifacts here, so what is measured is what a user runs.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from smallcnn.errors import UserError

MODEL_JSON = "model.json"
SUFFIXES = {".onnx": "onnx", ".tflite": "tflite"}


@dataclasses.dataclass
class Artifact:
    path: Path
    # saved_model, onnx or tflite: the runtime that runs it.
    runtime_format: str
    # model.json: input, output, class names, source.
    info: dict
    # uint8 images (n, height, width, 3) -> float outputs (n, 1) or (n, classes).
    run: object

    @property
    def class_names(self):
        return list(self.info["class_names"])

    @property
    def image_size(self):
        return tuple(self.info["input"]["shape"][1:3])


def runtime_format(path):
    """saved_model, onnx or tflite for an exported artifact's path, None for anything else."""
    path = Path(path)
    if path.is_dir():
        return "saved_model" if (path / "saved_model.pb").is_file() else None
    return SUFFIXES.get(path.suffix.lower())


def read_info(path):
    """The model.json that describes the artifact at `path`."""
    path = Path(path)
    info_path = path.parent / MODEL_JSON
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path} has no {MODEL_JSON} beside it ({info_path}): it holds the class names; "
            "copy it along with the model from results/export/<experiment>/<seed>/"
        ) from None
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {info_path}: {error}") from None
    for key in ("class_names", "input", "output"):
        if key not in info:
            raise UserError(f"{info_path} lacks {key}: it was not written by smallcnn.export")
    return info


def load(path, threads=None):
    """The artifact at `path` with its runtime, using `threads` CPU threads (None: the
    runtime's default)."""
    path = Path(path)
    found = runtime_format(path)
    if found is None:
        raise UserError(
            f"{path} is not an exported model: expected a SavedModel folder (with "
            "saved_model.pb), a .onnx or a .tflite file"
        )
    info = read_info(path)
    loader = {"saved_model": _saved_model, "onnx": _onnx, "tflite": _tflite}[found]
    return Artifact(path=path, runtime_format=found, info=info, run=loader(path, threads))


def as_uint8(images):
    """Float images in 0..255 (as smallcnn.datasets decodes them) as the uint8 artifacts take."""
    return np.clip(np.rint(np.asarray(images)), 0, 255).astype(np.uint8)


def _saved_model(path, threads):
    import tensorflow as tf

    from smallcnn import devices

    if threads is not None:
        devices.set_threads(threads)
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    (name,) = signature.structured_input_signature[1]

    def run(images):
        outputs = signature(**{name: tf.constant(images, dtype=tf.uint8)})
        (value,) = outputs.values()
        return value.numpy()

    return run


def _onnx(path, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    image, *others = session.get_inputs()
    if others:
        raise UserError(
            f"{path} takes {len(others) + 1} inputs ({', '.join(i.name for i in [image, *others])})"
            ", not the image alone: the converter left tensors of the model as graph inputs"
        )

    def run(images):
        return session.run(None, {image.name: np.ascontiguousarray(images, dtype=np.uint8)})[0]

    return run


def _tflite(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    (image,) = interpreter.get_input_details()
    (output,) = interpreter.get_output_details()
    if image["dtype"] != np.uint8:
        raise UserError(f"{path} takes {image['dtype'].__name__} input, not uint8 images")
    allocated = {"batch": None}

    def run(images):
        images = np.ascontiguousarray(images, dtype=np.uint8)
        # The interpreter's tensors have a fixed batch size: resized when it changes.
        if allocated["batch"] != len(images):
            interpreter.resize_tensor_input(image["index"], [len(images), *image["shape"][1:]])
            interpreter.allocate_tensors()
            allocated["batch"] = len(images)
        interpreter.set_tensor(image["index"], images)
        interpreter.invoke()
        values = interpreter.get_tensor(output["index"]).copy()
        scale, zero_point = output["quantization"]
        if values.dtype != np.float32 and scale:
            values = (values.astype(np.float32) - zero_point) * scale
        return values

    return run
