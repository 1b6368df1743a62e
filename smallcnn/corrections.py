"""data.corrections: the user's fixes to the source's labels, applied by prepare.

A CSV with columns `file,label` (and optionally `reason`), keyed by the source file as the
manifest names it, never by a split copy's path, so that it survives a new split. A class name
relabels the file; `exclude` drops it. The source is never touched: the manifest records each
correction (`relabelled` with the original label kept, or `excluded`) and its reason, and the
split that follows uses the corrected labels. An edited copy of results/label_issues.csv is such
a file as it is (its extra columns are ignored, its `reason` kept).
"""

import csv
import logging

from smallcnn.errors import UserError

log = logging.getLogger(__name__)

EXCLUDE = "exclude"
REQUIRED = ("file", "label")
# Columns prepare adds to every manifest row (empty where nothing was corrected).
MANIFEST_COLUMNS = ["correction", "original_label", "correction_reason"]


def read(path):
    """[{"line", "file", "label", "reason"}] of a corrections CSV; a UserError names the line of
    any row that is incomplete or names a file twice."""
    try:
        # utf-8-sig: a CSV saved by a spreadsheet often starts with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in columns]
            if missing:
                raise UserError(
                    f"data.corrections {path} lacks the column(s) {', '.join(missing)}: it needs "
                    "a header line `file,label` (an edited copy of results/label_issues.csv has it)"
                )
            reader.fieldnames = columns
            rows, seen = [], {}
            for row in reader:
                line = reader.line_num
                file = (row.get("file") or "").strip()
                label = (row.get("label") or "").strip()
                if not file and not label:
                    continue
                if not file or not label:
                    raise UserError(
                        f"data.corrections {path} line {line}: "
                        + ("no file" if not file else f"no label for {file}")
                        + f" (a class name, or {EXCLUDE})"
                    )
                if file in seen:
                    raise UserError(
                        f"data.corrections {path} line {line}: {file} is corrected on line "
                        f"{seen[file]} already; keep one row per file"
                    )
                seen[file] = line
                reason = (row.get("reason") or "").strip() or f"{path} line {line}"
                rows.append({"line": line, "file": file, "label": label, "reason": reason})
    except OSError as error:
        raise UserError(f"cannot read data.corrections {path}: {error}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise UserError(f"data.corrections {path} is not a UTF-8 CSV file: {error}") from None
    return rows


def apply(rows, labelled, path, classes):
    """Apply the corrections of `path` to the manifest `rows` ({file: row}) of the `labelled`
    images (file names), before they are checked. `classes`: the source's class names.

    Returns the set of excluded files (prepare checks none of them) and the counts. Every row
    must name a labelled image of the source and a known class (or `exclude`): else a UserError
    names the line, and nothing is applied.
    """
    corrections = read(path)
    known = sorted(classes)
    for correction in corrections:
        where = f"data.corrections {path} line {correction['line']}"
        row = rows.get(correction["file"])
        if row is None:
            raise UserError(
                f"{where}: {correction['file']} is not a file of the source (the file column "
                "names a file as manifest.csv does, relative to the source, not a split copy)"
            )
        if correction["file"] not in labelled:
            raise UserError(
                f"{where}: {correction['file']} is not a labelled image of the source "
                f"({row['status']}: {row['detail']}), so there is no label to correct"
            )
        if correction["label"] != EXCLUDE and correction["label"] not in known:
            raise UserError(
                f"{where}: {correction['label']!r} is not a class of the source "
                f"({', '.join(known)}); write one of them, or {EXCLUDE} to drop the file"
            )
    excluded = set()
    counts = {"relabelled": 0, "excluded": 0, "unchanged": 0}
    for correction in corrections:
        row = rows[correction["file"]]
        original = row["label"]
        if correction["label"] == EXCLUDE:
            row.update(
                status="excluded",
                detail=f"data.corrections: {correction['reason']}",
                correction="excluded",
                original_label=original,
                correction_reason=correction["reason"],
            )
            excluded.add(correction["file"])
            counts["excluded"] += 1
        elif correction["label"] == original:
            counts["unchanged"] += 1
        else:
            row.update(
                label=correction["label"],
                correction="relabelled",
                original_label=original,
                correction_reason=correction["reason"],
            )
            counts["relabelled"] += 1
    log.info(
        "prepare: data.corrections %s: %d relabelled, %d excluded, %d already so",
        path,
        counts["relabelled"],
        counts["excluded"],
        counts["unchanged"],
    )
    return excluded, counts
