"""The report's "Labels worth a second look": the candidates of results/label_issues.csv."""

from pathlib import Path

from smallcnn import figures
from smallcnn.errors import UserError
from smallcnn.label_issues import read_label_issues

# Thumbnails shown; the CSV lists every candidate.
SHOWN = 24
THUMBNAIL_PIXELS = 112


def label_issue_section(path, data_dir, folds):
    """What the section shows: with folds, the number of candidates and up to SHOWN thumbnails
    (given label -> suggested label, and the self-confidence); without, why there are none.

    `path`: results/label_issues.csv (None without folds); `data_dir`: results/data, which the
    candidates' split copy paths are relative to.
    """
    if not folds:
        return {"enabled": False}
    rows = read_label_issues(path)
    images = []
    for row in rows[:SHOWN]:
        image = Path(data_dir) / row["path"]
        if not image.is_file():
            raise UserError(f"{image} is a label-issue candidate in {path} but missing; rerun")
        confidence = float(row["self_confidence"])
        images.append(
            {
                "file": row["file"],
                "given": row["given_label"],
                "suggested": row["label"],
                "confidence": confidence,
                "rank": int(row["rank"]),
                "uri": figures.png_data_uri(
                    figures.png_bytes(figures.thumbnail(image, THUMBNAIL_PIXELS))
                ),
                "alt": f"{row['file']}: labelled {row['given_label']}, which the out-of-fold "
                f"prediction gives probability {confidence:.2f}; it looks like a {row['label']}.",
            }
        )
    return {
        "enabled": True,
        "folds": folds,
        "n_candidates": len(rows),
        "images": images,
        "path": str(path),
    }
