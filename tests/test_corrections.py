"""data.corrections: label fixes applied by prepare, recorded in the manifest, source untouched."""

import csv
import re

import pytest
from conftest import REPO, make_class_images, run_snakemake, tree_digest

from smallcnn import data, split_sizes
from smallcnn.errors import UserError

SPLIT = {"train": 4, "validation": 2, "test": 2}
LIMITS = {"min_side": 32, "max_image_pixels": 10**6, "max_archive_bytes": 10**9}


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_csv(path, rows, columns=("file", "label")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def prepare_and_split(source, out, corrections):
    summary = data.prepare(
        source, out / "manifest.csv", out / "rejections.json", corrections=corrections, **LIMITS
    )
    table = data.split(
        source,
        out / "manifest.csv",
        out / "splits.csv",
        {name: out / name for name in split_sizes.names(SPLIT)},
        SPLIT,
        seed=7,
    )
    return summary, {row["file"]: row for row in read_csv(out / "manifest.csv")}, table


def test_a_corrections_file_relabels_one_file_and_excludes_another(tmp_path):
    source = tmp_path / "photos"
    make_class_images(source, per_class=10, size=(40, 40))
    before = tree_digest(source)
    corrections = write_csv(
        tmp_path / "fixes.csv",
        [
            {"file": "cat/3.jpg", "label": "dog", "reason": "a dog on second look"},
            {"file": "dog/5.jpg", "label": "exclude"},
        ],
        columns=("file", "label", "reason"),
    )
    summary, manifest, table = prepare_and_split(source, tmp_path / "out", corrections)

    relabelled = manifest["cat/3.jpg"]
    assert (relabelled["status"], relabelled["label"]) == ("ok", "dog")
    assert relabelled["correction"] == "relabelled"
    assert relabelled["original_label"] == "cat"
    assert relabelled["correction_reason"] == "a dog on second look"
    excluded = manifest["dog/5.jpg"]
    assert (excluded["status"], excluded["correction"]) == ("excluded", "excluded")
    assert excluded["original_label"] == "dog" and excluded["label"] == "dog"
    # Without a reason column, the reason names the file and line it came from.
    assert excluded["correction_reason"] == f"{corrections} line 3"
    assert f"{corrections} line 3" in excluded["detail"]
    untouched = [row for file, row in manifest.items() if file not in ("cat/3.jpg", "dog/5.jpg")]
    assert all(row["correction"] == "" and row["original_label"] == "" for row in untouched)
    assert summary["corrections"] == {"relabelled": 1, "excluded": 1, "unchanged": 0}
    assert summary["by_class"] == {"cat": 9, "dog": 10}
    assert summary["by_reason"]["excluded"]["count"] == 1

    # The split follows the corrected labels; the source is as it was.
    placed = {row["file"]: row for row in table}
    assert "dog/5.jpg" not in placed
    if "cat/3.jpg" in placed:
        assert placed["cat/3.jpg"]["label"] == "dog"
        assert placed["cat/3.jpg"]["path"].startswith("dog/")
    assert tree_digest(source) == before


def test_without_corrections_the_manifest_records_none(tmp_path):
    make_class_images(tmp_path / "photos", per_class=8, size=(40, 40))
    summary, manifest, _ = prepare_and_split(tmp_path / "photos", tmp_path / "out", None)
    assert summary["corrections"] == {"relabelled": 0, "excluded": 0, "unchanged": 0}
    assert {row["correction"] for row in manifest.values()} == {""}


@pytest.mark.parametrize(
    "rows, says",
    [
        (
            [{"file": "cat/1.jpg", "label": "dog"}, {"file": "cat/99.jpg", "label": "dog"}],
            r"line 3: cat/99.jpg is not a file of the source",
        ),
        (
            [{"file": "cat/1.jpg", "label": "wolf"}],
            r"line 2: 'wolf' is not a class of the source \(cat, dog\)",
        ),
        (
            [{"file": "cat/1.jpg", "label": "dog"}, {"file": "cat/1.jpg", "label": "exclude"}],
            r"line 3: cat/1.jpg is corrected on line 2 already",
        ),
        ([{"file": "cat/1.jpg", "label": ""}], r"line 2: no label for cat/1.jpg"),
    ],
)
def test_a_wrong_row_is_an_error_naming_it_and_nothing_is_written(tmp_path, rows, says):
    make_class_images(tmp_path / "photos", per_class=6, size=(40, 40))
    fixes = write_csv(tmp_path / "fixes.csv", rows)
    with pytest.raises(UserError, match=says) as error:
        data.prepare(
            tmp_path / "photos",
            tmp_path / "out" / "manifest.csv",
            tmp_path / "out" / "rejections.json",
            corrections=fixes,
            **LIMITS,
        )
    assert str(fixes) in str(error.value)
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_a_split_copy_path_or_a_missing_column_is_refused_with_what_to_write(tmp_path):
    make_class_images(tmp_path / "photos", per_class=6, size=(40, 40))
    out = tmp_path / "out"
    fixes = write_csv(tmp_path / "a.csv", [{"file": "train/cat/1.jpg", "label": "dog"}])
    with pytest.raises(UserError, match="relative to the source, not a split copy"):
        data.prepare(
            tmp_path / "photos", out / "m.csv", out / "r.json", corrections=fixes, **LIMITS
        )
    fixes = write_csv(tmp_path / "b.csv", [{"path": "cat/1.jpg"}], columns=("path",))
    with pytest.raises(UserError, match="lacks the column.*file, label"):
        data.prepare(
            tmp_path / "photos", out / "m.csv", out / "r.json", corrections=fixes, **LIMITS
        )


def test_an_edited_copy_of_label_issues_csv_works_as_it_is(tmp_path):
    from smallcnn.label_issues import LABEL_ISSUES_COLUMNS

    make_class_images(tmp_path / "photos", per_class=10, size=(40, 40))
    issues = [
        {
            "file": "dog/2.jpg",
            "label": "cat",
            "given_label": "dog",
            "self_confidence": "0.020000",
            "suggested_confidence": "0.980000",
            "rank": 1,
            "path": "train/dog/2.jpg",
            "reason": "cleanlab: dog has probability 0.020",
        },
        {
            "file": "cat/4.jpg",
            "label": "exclude",  # the user's edit: neither class
            "given_label": "cat",
            "self_confidence": "0.100000",
            "suggested_confidence": "0.900000",
            "rank": 2,
            "path": "validation/cat/4.jpg",
            "reason": "cleanlab: cat has probability 0.100",
        },
    ]
    fixes = write_csv(tmp_path / "label_issues.csv", issues, columns=LABEL_ISSUES_COLUMNS)
    _, manifest, _ = prepare_and_split(tmp_path / "photos", tmp_path / "out", fixes)
    assert manifest["dog/2.jpg"]["label"] == "cat"
    assert manifest["dog/2.jpg"]["correction_reason"] == "cleanlab: dog has probability 0.020"
    assert manifest["cat/4.jpg"]["status"] == "excluded"


def test_changing_the_corrections_reruns_the_data_stage_and_everything_after(demo_run, tmp_path):
    manifest = read_csv(demo_run / "results" / "data" / "manifest.csv")
    first_ok = {}
    for row in manifest:
        if row["status"] == "ok":
            first_ok.setdefault(row["label"], row["file"])
    cat, dog = sorted(first_ok)
    fixes = write_csv(
        demo_run / "fixes.csv",
        [{"file": first_ok[cat], "label": dog}, {"file": first_ok[dog], "label": "exclude"}],
    )
    try:
        result = run_snakemake(
            demo_run,
            ["results/report.html"],
            configfiles=[REPO / "config" / "demo.yaml"],
            config={"data": {"corrections": "fixes.csv"}},
            args=["--dry-run"],
        )
    finally:
        fixes.unlink()
    planned = set(re.findall(r"^(?:local)?rule (\w+):", result.stdout, re.MULTILINE))
    # The demo declares all five experiments: every stage after the data is planned again.
    assert {"prepare", "split", "extract_features", "train", "evaluate", "report"} <= planned
    assert "fixes.csv" in result.stdout, "the plan does not say the corrections are why"


def test_a_missing_corrections_file_stops_the_run_naming_it(tmp_path):
    result = run_snakemake(
        tmp_path,
        ["results/data/splits.csv"],
        configfiles=[REPO / "config" / "demo.yaml"],
        config={"data": {"corrections": "nowhere.csv"}},
        args=["--dry-run"],
        check=False,
    )
    assert result.returncode != 0
    assert "data.corrections='nowhere.csv': no such file" in result.stdout + result.stderr
