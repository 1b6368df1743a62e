"""The data stage: check every file of a source (prepare), then split the usable ones.

prepare writes results/data/manifest.csv (one row per file found), rejections.json and
near_duplicates.json; split writes results/data/splits.csv, the images under
results/data/<split>/<label>/ and what near-duplicates would have done without the check. The
source is never modified: a folder is read in place, a zip member by member, and split copies the
images, so that results/data/ holds the bytes checked and editing it never edits the source.
"""

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import time
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from smallcnn import images, layouts, near_duplicates, split_sizes
from smallcnn.corrections import MANIFEST_COLUMNS as CORRECTION_COLUMNS
from smallcnn.corrections import apply as apply_corrections
from smallcnn.errors import UserError
from smallcnn.records import write_csv

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "file",
    "label",
    "sha256",
    "width",
    "height",
    "status",
    "detail",
    "format",
    "mode",
    "bytes",
    "convert",
    "phash",
    "group",
    *CORRECTION_COLUMNS,
]
SPLITS_COLUMNS = ["file", "label", "split", "sha256", "path"]
EXAMPLES = 5
CHUNK_BYTES = 1 << 30  # the most one copy_file_range call is asked to copy


def prepare(
    source,
    manifest,
    rejections,
    min_side,
    max_image_pixels,
    max_archive_bytes,
    workers=2,
    near_duplicate_check=None,
    near_duplicate_summary=None,
    corrections=None,
):
    """Check every file of `source` (a zip or a folder) and write the manifest and rejections.

    `near_duplicate_check` is the config's data.near_duplicates ({"enabled", "max_distance"});
    None skips the check. `near_duplicate_summary` is where its summary for the report goes.
    `corrections`: the config's data.corrections CSV (smallcnn.corrections), or None.
    """
    started = time.perf_counter()
    _refuse_results_inside(source, [manifest, rejections])
    origin = layouts.open_source(source, max_archive_bytes)
    rows = {}
    candidates = []
    for member in origin.members:
        row = {"file": member.name, "label": "", "bytes": member.size}
        rows.setdefault(member.name, row)
        unsafe = layouts.unsafe_reason(member.name)
        if member.name in origin.repeated:
            unsafe = "several entries of the archive have this name"
        if unsafe:
            row.update(status="unsafe_path", detail=f"refused: {unsafe}")
        elif layouts.is_junk(member.name):
            row.update(status="junk", detail="operating-system clutter, not an image")
        else:
            candidates.append(member)
    layout = layouts.find_layout([m.name for m in candidates], str(source))
    log.info("prepare: %s, %s", source, layout.describe())

    to_check = []
    for member in candidates:
        row = rows[member.name]
        if member.name in layout.labels:
            row["label"] = layout.labels[member.name]
            to_check.append(member)
        else:
            row.update(status="unlabelled", detail=f"outside the {layout.describe()}")
    corrected = {"relabelled": 0, "excluded": 0, "unchanged": 0}
    if corrections:
        # Before the checks: duplicates under two labels are judged by the corrected labels.
        excluded, corrected = apply_corrections(
            rows,
            {member.name for member in to_check},
            corrections,
            set(layout.labels.values()),
        )
        to_check = [member for member in to_check if member.name not in excluded]

    def inspect_member(member):
        refused = images.too_large(member.size, max_image_pixels)
        if refused:
            return {"status": refused.status, "detail": refused.detail}
        try:
            data = origin.read(member.name)
        except (OSError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError) as error:
            # zipfile raises BadZipFile on a bad CRC, RuntimeError when a member is encrypted.
            return {"status": "unreadable", "detail": str(error)}
        found = images.inspect_image(
            data, PurePosixPath(member.name.lower()).suffix, min_side, max_image_pixels
        )
        return {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "status": found.status,
            "detail": found.detail,
            "width": found.width,
            "height": found.height,
            "format": found.format,
            "mode": found.mode,
            "convert": found.convert,
            "phash": found.phash,
        }

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for member, result in zip(to_check, pool.map(inspect_member, to_check), strict=True):
            rows[member.name].update(result)

    _mark_duplicates(rows.values())
    near_duplicate_settings = near_duplicate_check or {"enabled": False, "max_distance": None}
    groups = []
    if near_duplicate_settings["enabled"]:
        hashing = time.perf_counter()
        groups = near_duplicates.mark(rows.values(), near_duplicate_settings["max_distance"])
        log.info(
            "prepare: %d near-duplicate groups within %d bits, found in %.1f s",
            len(groups),
            near_duplicate_settings["max_distance"],
            time.perf_counter() - hashing,
        )
    if near_duplicate_summary:
        _write_json(
            near_duplicate_summary,
            near_duplicates.summary(
                groups,
                near_duplicate_settings["enabled"],
                near_duplicate_settings["max_distance"],
                origin.read,
            ),
        )
    table = sorted(rows.values(), key=lambda row: row["file"])
    write_csv(manifest, MANIFEST_COLUMNS, table)
    summary = _summarise(table, sorted(set(layout.labels.values())))
    summary["corrections"] = corrected
    _write_json(rejections, summary)
    _log_summary(summary, time.perf_counter() - started)
    return summary


def split(source, manifest, splits, out_dirs, settings, seed, straddling=None):
    """Choose each class's images for every split (`settings`: the config's split block, counts
    or fractions) and write them under out_dirs[split]/<label>/.

    The choice ranks images by a hash of the seed and their content, so it depends on nothing
    but the seed and the source: not on file order, the machine or the library versions.
    `straddling`, when given, is where to write how many near-duplicate groups this split would
    have put on two sides without the check.
    """
    started = time.perf_counter()
    split_sizes.check(settings)
    names = split_sizes.names(settings)
    if set(names) != set(out_dirs):
        raise UserError(f"split names {sorted(names)} and folders {sorted(out_dirs)} differ")
    _refuse_results_inside(source, [splits, *out_dirs.values()])
    with open(manifest, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    by_label = defaultdict(list)
    for row in table:
        if row["status"] == "ok":
            by_label[row["label"]].append(row)

    short = [
        problem
        for label, rows in sorted(by_label.items())
        if (problem := split_sizes.shortfall(settings, label, len(rows)))
    ]
    if len(by_label) < 2:
        short.append(f"{len(by_label)} class(es) have usable images; a classifier needs two")
    if short:
        raise UserError(
            "; ".join(short) + f". Lower the split or add images ({manifest} and the "
            "rejections next to it say what was rejected and why)"
        )
    chosen = _assign(by_label, settings, seed)
    if straddling:
        _write_json(straddling, _straddling(table, settings, seed))

    for directory in out_dirs.values():
        if Path(directory).exists():
            shutil.rmtree(directory)
        Path(directory).mkdir(parents=True)
    # prepare has bounded the archive already; only the chosen members are read again.
    origin = layouts.open_source(source, max_archive_bytes=float("inf"))
    written = defaultdict(int)
    used_names = defaultdict(set)
    table = []
    for row in sorted(chosen, key=lambda row: (row["label"], row["file"])):
        name = _output_name(row, used_names[row["label"]])
        target = Path(out_dirs[row["split"]]) / row["label"] / name
        target.parent.mkdir(parents=True, exist_ok=True)
        written[_place(origin, row, target)] += 1
        table.append({**row, "path": f"{row['label']}/{name}"})

    order = {name: i for i, name in enumerate(names)}
    table.sort(key=lambda row: (order[row["split"]], row["label"], row["path"]))
    write_csv(splits, SPLITS_COLUMNS, table)
    per_class = Counter((row["label"], row["split"]) for row in table)
    log.info(
        "split: %d classes (%s); %s; %s in %.1f s",
        len(by_label),
        ", ".join(
            f"{label} {split_sizes.format_sizes({name: per_class[label, name] for name in names})}"
            for label in sorted(by_label)
        ),
        split_sizes.describe(settings),
        ", ".join(f"{n} {how}" for how, n in sorted(written.items())),
        time.perf_counter() - started,
    )
    return table


def _assign(by_label, settings, seed):
    """[{**row, "split": name}] for the rows each class gives each split."""
    names = split_sizes.names(settings)
    chosen = []
    for label in sorted(by_label):
        # Checked again here, so that no split ever comes out smaller than asked without an error.
        problem = split_sizes.shortfall(settings, label, len(by_label[label]))
        if problem:
            raise UserError(problem)
        ranked = sorted(by_label[label], key=lambda row: _rank(seed, row["sha256"]))
        ranked = ranked[: split_sizes.available(settings, len(ranked))]
        sizes = split_sizes.per_class(settings, len(ranked))
        # The last split named (test) takes the top of the ranking, then the one before: changing
        # the training count then leaves the test and validation images as they were.
        start = 0
        for name in reversed(names):
            for row in ranked[start : start + sizes[name]]:
                chosen.append({**row, "split": name})
            start += sizes[name]
    return chosen


def _straddling(table, settings, seed):
    """How many near-duplicate groups the same split would have put in two splits had prepare
    not grouped them: every member of a group counted as a usable image of its own."""
    unchecked = defaultdict(list)
    for row in table:
        if row["status"] == "ok" or row["group"]:
            unchecked[row["label"]].append(row)
    splits_of = defaultdict(set)
    for row in _assign(unchecked, settings, seed):
        if row["group"]:
            splits_of[row["group"]].add(row["split"])
    across = sorted(group for group, names in splits_of.items() if len(names) > 1)
    return {
        "n_groups": len({row["group"] for row in table if row["group"]}),
        "n_straddling": len(across),
        "examples": across[:EXAMPLES],
    }


def _rank(seed, sha256):
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def _output_name(row, used):
    """A file name that is safe, unique within its class folder, and whose extension matches
    what its bytes will be, so that image_dataset_from_directory lists and decodes it."""
    base = PurePosixPath(row["file"].replace("\\", "/")).name
    stem, extension = os.path.splitext(base)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-") or "image"
    extension = images.output_extension(row["format"], row["convert"] == "True", extension.lower())
    name = f"{stem}{extension}"
    if name in used:
        name = f"{stem}-{row['sha256'][:12]}{extension}"
    used.add(name)
    return name


def _place(origin, row, target):
    """Write one chosen image to `target`, a file of its own: never a link to the source, whose
    files may change after they were checked. Returns how ("copies" or "converted")."""
    data = origin.read(row["file"])
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        raise UserError(
            f"{row['file']} in {origin.path} changed since it was checked; run the prepare "
            "step again (snakemake --forcerun prepare)"
        )
    if row["convert"] == "True":
        target.write_bytes(images.to_rgb_png(data))
        return "converted"
    local = origin.local_path(row["file"])
    # The kernel's copy shares the blocks copy-on-write where the file system can (btrfs, XFS:
    # a reflink, no space used). The file may have changed since it was read above, so the copy
    # is kept only if it holds the bytes checked; else those bytes are written.
    copied = local is not None and _kernel_copy(local, target)
    if not copied or hashlib.sha256(target.read_bytes()).hexdigest() != row["sha256"]:
        target.write_bytes(data)
    return "copies"


def _kernel_copy(source, target):
    """Copy with os.copy_file_range (Linux): a reflink where the file system supports one, else
    an in-kernel copy. False where it is unavailable (another OS, or across file systems)."""
    if not hasattr(os, "copy_file_range"):
        return False
    try:
        with open(source, "rb") as reader, open(target, "wb") as writer:
            while os.copy_file_range(reader.fileno(), writer.fileno(), CHUNK_BYTES):
                pass
    except OSError:
        return False
    return True


def _mark_duplicates(rows):
    """Same bytes twice: keep the first; same bytes under two labels: exclude every copy."""
    by_content = defaultdict(list)
    for row in rows:
        if row.get("status") == "ok":
            by_content[row["sha256"]].append(row)
    for copies in by_content.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda row: row["file"])
        labels = sorted({row["label"] for row in copies})
        if len(labels) > 1:
            for row in copies:
                others = [r["file"] for r in copies if r is not row][:EXAMPLES]
                row.update(
                    status="label_conflict",
                    detail=f"the same bytes are labelled {' and '.join(labels)}: "
                    + ", ".join(others),
                )
        else:
            for row in copies[1:]:
                row.update(status="duplicate", detail=f"the same bytes as {copies[0]['file']}")


def _summarise(table, labels):
    by_class = dict.fromkeys(labels, 0)
    by_reason = {}
    converted = []
    for row in table:
        if row["status"] == "ok":
            by_class[row["label"]] += 1
            if row.get("convert"):
                converted.append(row["file"])
            continue
        reason = by_reason.setdefault(row["status"], {"count": 0, "examples": []})
        reason["count"] += 1
        if len(reason["examples"]) < EXAMPLES:
            reason["examples"].append(row["file"])
    return {
        "n_files": len(table),
        "n_ok": sum(by_class.values()),
        "by_class": by_class,
        "by_reason": dict(sorted(by_reason.items(), key=lambda item: -item[1]["count"])),
        "converted": {"count": len(converted), "examples": converted[:EXAMPLES]},
    }


def _log_summary(summary, seconds):
    classes = ", ".join(f"{label} {n}" for label, n in summary["by_class"].items())
    log.info(
        "prepare: %d files, %d usable (%s) in %.1f s",
        summary["n_files"],
        summary["n_ok"],
        classes,
        seconds,
    )
    for reason, info in summary["by_reason"].items():
        log.info(
            "  rejected %-15s %6d  e.g. %s", reason, info["count"], ", ".join(info["examples"])
        )
    if summary["converted"]["count"]:
        log.info(
            "  converted to RGB PNG %6d  e.g. %s",
            summary["converted"]["count"],
            ", ".join(summary["converted"]["examples"]),
        )


def _refuse_results_inside(source, outputs):
    """A source folder that holds the outputs would list them as images on the next run (and
    split empties its output folders, which must never hold the source)."""
    source = Path(source).resolve()
    for output in outputs:
        output = Path(output).resolve()
        if output == source or output in source.parents:
            raise UserError(f"the output {output} would hold the data source {source}")
        if source in output.parents:
            raise UserError(
                f"the data source {source} contains the output {output}; point data.path at a "
                "folder that holds only the images"
            )


def _write_json(path, value):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
