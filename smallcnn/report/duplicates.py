"""The report's near-duplicate part of the Data section, from what prepare and split wrote.

prepare writes results/data/near_duplicates.json (the groups, with example pairs as thumbnails)
and split writes results/data/near_duplicates_split.json (how many groups the split would have
put on two sides without the check). `near_duplicate_section` turns both into a plain dict that
templates/near_duplicates.html.j2 renders.
"""

import json
from pathlib import Path

from smallcnn.errors import UserError

SUMMARY_KEYS = ("enabled", "hash", "max_distance", "n_groups", "n_near_duplicate", "examples")
SPLIT_KEYS = ("n_straddling", "examples")


def near_duplicate_section(summary_path, split_path):
    """{"enabled", "hash", "max_distance", "n_groups", "n_images", "n_near_duplicate",
    "n_label_conflict_groups", "n_straddling", "straddling_examples", "pairs"}; each pair is
    {"distance", "images": [{"file", "label", "status", "size", "thumbnail"}, ...]}, the kept
    image first and `thumbnail` a PNG data URI."""
    summary = _read(summary_path, SUMMARY_KEYS)
    split = _read(split_path, SPLIT_KEYS)
    return {
        "enabled": summary["enabled"],
        "hash": summary["hash"],
        "max_distance": summary["max_distance"],
        "n_groups": summary["n_groups"],
        "n_images": summary["n_images"],
        "n_near_duplicate": summary["n_near_duplicate"],
        "n_label_conflict_groups": summary["n_label_conflict_groups"],
        "n_straddling": split["n_straddling"],
        "straddling_examples": split["examples"],
        "pairs": summary["examples"],
    }


def _read(path, keys):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}; rerun the data stage") from None
    missing = [key for key in keys if key not in data]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)}: it was written by another version of the "
            "workflow; delete it and rerun"
        )
    return data
