"""The report's near-duplicate part of the Data section, from what prepare and split wrote.

prepare writes results/data/near_duplicates.json (the groups, with example pairs as thumbnails)
and split writes results/data/near_duplicates_split.json (how many groups the split would have
put on two sides without the check). `near_duplicate_section` turns both into a plain dict that
templates/near_duplicates.html.j2 renders.
"""

from smallcnn.records import read_json

SUMMARY_KEYS = ("enabled", "hash", "max_distance", "n_groups", "n_near_duplicate", "examples")
SPLIT_KEYS = ("n_straddling", "examples")


def near_duplicate_section(summary_path, split_path):
    """{"enabled", "hash", "max_distance", "n_groups", "n_images", "n_near_duplicate",
    "n_label_conflict_groups", "n_straddling", "straddling_examples", "pairs"}; each pair is
    {"distance", "images": [{"file", "label", "status", "size", "thumbnail"}, ...]}, the kept
    image first and `thumbnail` a PNG data URI."""
    summary = read_json(summary_path, SUMMARY_KEYS, "rerun the data stage")
    split = read_json(split_path, SPLIT_KEYS, "rerun the data stage")
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
