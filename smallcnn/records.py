"""The records one job writes and another reads: JSON objects and CSV tables."""

import csv
import json
from pathlib import Path

from smallcnn.errors import UserError


def read_json(path, keys, remedy="rerun the job that writes it"):
    """The JSON object at `path`, which must hold every one of `keys`: a UserError otherwise,
    saying what to do (`remedy`) or that the file comes from another version of the workflow."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}; {remedy}") from None
    missing = [key for key in keys if key not in data]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)}: it was written by another version of the "
            "workflow; delete it and rerun"
        )
    return data


def write_csv(path, columns, rows):
    """`rows` (dicts; keys beyond `columns` are left out) as a CSV table with a header, its
    folder made if need be."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
