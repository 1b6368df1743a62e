"""The report's Exports section: per exported model, each format's parity with the Keras model."""

from pathlib import Path

from smallcnn import registry
from smallcnn.records import read_json

PARITY_KEYS = ("formats", "n_test", "float32_vs_trained", "experiment", "seed")
MODEL_KEYS = ("class_names", "input", "output", "source")
REFERENCE = "keras_float32"


def format_row(name, row):
    known = registry.EXPORT_FORMATS.get(name)
    return {
        "format": name,
        "description": known.description if known else "the .keras model rebuilt in float32",
        "path": known.path if known else None,
        "runtime": row.get("runtime"),
        "produced": row["status"] == "ok",
        "error": (
            f"{registry.EXPORT_STATUS[row['status']]}: {row['error']}" if row.get("error") else None
        ),
        "size_mb": row["size_bytes"] / 1e6 if row.get("size_bytes") is not None else None,
        "latency_ms": row.get("latency_ms"),
        "max_abs_diff": row.get("max_abs_diff"),
        "agreement": row.get("agreement"),
        "accuracy": row.get("accuracy"),
        "target": row.get("target"),
        "target_met": row.get("target_met"),
        "enforced": row.get("enforced"),
        "allowed_mismatch": row.get("allowed_mismatch"),
        "reference": name == REFERENCE,
    }


def exports_section(folders, not_exported):
    """{"models": one entry per export folder, "not_exported": {experiment: why}}."""
    exported = []
    for folder in folders:
        folder = Path(folder)
        remedy = f"rerun its export (snakemake --forcerun {folder})"
        parity = read_json(folder / "parity.json", PARITY_KEYS, remedy)
        info = read_json(folder / "model.json", MODEL_KEYS, remedy)
        rows = [format_row(name, row) for name, row in parity["formats"].items()]
        exported.append(
            {
                "experiment": parity["experiment"],
                "seed": parity["seed"],
                "folder": folder.as_posix(),
                "n_test": parity["n_test"],
                "rows": rows,
                "missed": [row["format"] for row in rows if row["target_met"] is False],
                "float32_vs_trained": parity["float32_vs_trained"],
                "training_precision": parity.get("training_precision"),
                "machine": parity.get("machine") or {},
                "latency": parity.get("latency"),
                "input": info["input"],
                "output": info["output"],
                "sha256": info["source"].get("sha256"),
                "conv_base": info.get("conv_base"),
            }
        )
    return {"models": exported, "not_exported": not_exported}
