"""The data stage without Snakemake: checking files, layouts, safe zips, duplicates, the split."""

import csv
import hashlib
import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import make_class_images, tree_digest
from PIL import Image

from smallcnn import data, images, layouts, split_sizes
from smallcnn.errors import UserError

MIN_SIDE = 32
MAX_PIXELS = 1_000_000
SPLIT = {"train": 3, "validation": 1, "test": 1}


# ---- sample files --------------------------------------------------------------------------


def picture(seed, size=(48, 40), mode="RGB"):
    """A PIL image of noise, different for each seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def encode(image, image_format="JPEG", **options):
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def jpeg(seed, **options):
    return encode(picture(seed, **options))


def header_over_garbage(seed):
    """A real JPEG's header (up to its start of scan) over random bytes, ended by an EOI."""
    good = jpeg(seed)
    scan = good.index(b"\xff\xda")
    header = good[: scan + 2 + int.from_bytes(good[scan + 2 : scan + 4], "big")]
    garbage = np.random.default_rng(seed).integers(0, 256, len(good) - len(header), np.uint8)
    return header + garbage.tobytes() + b"\xff\xd9"


def animated_gif(seed):
    frames = [picture(seed + k).convert("P") for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def png16(seed):
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 65535, (40, 48), dtype=np.uint16)), "PNG")


# Files every check must reject, with the reason code each must get.
REJECTED = {
    "empty": lambda: b"",
    "truncated": lambda: jpeg(1)[: len(jpeg(1)) // 2],
    "corrupt": lambda: header_over_garbage(2),
    "not_image": lambda: b"just some text, not an image\n" * 20,
    "too_small": lambda: jpeg(3, size=(20, 60)),
    "too_many_pixels": lambda: encode(Image.new("L", (1200, 1000)), "PNG"),
    "unsupported": lambda: encode(picture(4, size=(48, 48)), "ICO"),
}
# Decodable but unusual files: kept, converted to RGB PNG.
CONVERTED = {
    "grayscale": lambda: encode(picture(10, mode="L")),
    "cmyk": lambda: encode(picture(11, mode="CMYK")),
    "alpha": lambda: encode(picture(12, mode="RGBA"), "PNG"),
    "palette_bmp": lambda: encode(picture(13, mode="P"), "BMP"),
    "animated_gif": lambda: animated_gif(14),
    "png16": lambda: png16(15),
    "webp": lambda: encode(picture(16), "WEBP"),
    "tiff": lambda: encode(picture(17), "TIFF"),
}


def inspect(content, extension=".jpg"):
    return images.inspect_image(content, extension, MIN_SIDE, MAX_PIXELS)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def statuses(manifest):
    return {row["file"]: row["status"] for row in read_csv(manifest)}


def run_stage(source, out, counts=SPLIT, seed=7, **limits):
    """prepare + split of `source` into `out`; returns (manifest rows, splits rows)."""
    out = Path(out)
    settings = {"min_side": MIN_SIDE, "max_image_pixels": MAX_PIXELS, "max_archive_bytes": 10**9}
    settings.update(limits)
    data.prepare(source, out / "manifest.csv", out / "rejections.json", **settings)
    data.split(
        source,
        out / "manifest.csv",
        out / "splits.csv",
        {name: out / name for name in split_sizes.names(counts)},
        counts,
        seed,
    )
    return read_csv(out / "manifest.csv"), read_csv(out / "splits.csv")


def load_all(directory):
    """Every image of a split folder through image_dataset_from_directory; returns the count."""
    dataset = keras.utils.image_dataset_from_directory(
        directory, image_size=(32, 32), batch_size=64, shuffle=False
    )
    return sum(int(images_batch.shape[0]) for images_batch, _ in dataset)


# ---- one file at a time --------------------------------------------------------------------


@pytest.mark.parametrize("reason", sorted(REJECTED))
def test_each_bad_kind_is_rejected_with_its_reason(reason):
    found = inspect(REJECTED[reason]())
    assert found.status == reason, found
    assert found.detail


@pytest.mark.parametrize("seed", range(25))
def test_jpeg_header_over_garbage_is_corrupt_whatever_the_garbage(seed):
    # libjpeg decodes some of these to noise with only a warning; the marker walk must not.
    assert inspect(header_over_garbage(seed)).status == "corrupt"


def test_truncated_kinds():
    good = jpeg(5)
    assert inspect(good[:-2]).status == "truncated"  # the end-of-image marker cut off
    assert inspect(encode(picture(5), "PNG")[:300], ".png").status == "truncated"


@pytest.mark.parametrize("kind", sorted(CONVERTED))
def test_unusual_images_are_converted_to_rgb_png(kind):
    content = CONVERTED[kind]()
    found = inspect(content)
    assert (found.status, found.convert) == ("ok", True), found
    converted = images.to_rgb_png(content)
    with Image.open(io.BytesIO(converted)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (48, 40))
    assert images.decode_like_training(converted).shape == (40, 48, 3)
    assert images.output_extension(found.format, found.convert, ".jpg") == ".png"


def test_transparent_pixels_become_white():
    image = picture(20, mode="RGBA")
    image.putalpha(0)
    converted = images.to_rgb_png(encode(image, "PNG"))
    assert (images.decode_like_training(converted) == 255).all()


def test_png_bytes_under_a_jpg_name_keep_their_bytes_and_get_a_png_name():
    found = inspect(encode(picture(21), "PNG"), ".jpg")
    assert (found.status, found.convert, found.format) == ("ok", False, "PNG")
    assert images.output_extension(found.format, found.convert, ".jpg") == ".png"
    assert images.output_extension("JPEG", False, ".jpeg") == ".jpeg"


def test_plain_rgb_jpeg_is_ok_with_its_size():
    found = inspect(jpeg(22, size=(64, 33)))
    assert (found.status, found.convert, found.width, found.height) == ("ok", False, 64, 33)


def test_files_too_large_for_the_pixel_bound_are_not_read(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=6, size=(40, 40))
    (source / "cat" / "huge.jpg").write_bytes(bytes(images.max_file_bytes(MAX_PIXELS) + 1))
    manifest, _ = run_stage(source, tmp_path / "out")
    row = next(row for row in manifest if row["file"] == "cat/huge.jpg")
    assert (row["status"], row["sha256"]) == ("too_large", "")


# ---- layouts -------------------------------------------------------------------------------


def test_kaggle_flat_layout():
    names = [f"train/{label}.{i}.jpg" for label in ("cat", "dog") for i in range(5)]
    layout = layouts.find_layout(names + ["train/readme.txt", "sample.jpg"])
    assert layout.kind == "kaggle flat"
    assert layout.labels["train/cat.3.jpg"] == "cat"
    assert layout.labels["train/dog.0.jpg"] == "dog"
    assert "train/readme.txt" not in layout.labels and "sample.jpg" not in layout.labels


def test_petimages_layout_lower_cases_labels():
    names = [f"PetImages/{label}/{i}.jpg" for label in ("Cat", "Dog") for i in range(3)]
    layout = layouts.find_layout([*names, "readme[1].txt", "CDLA-Permissive-2.0.pdf"])
    assert layout.kind == "PetImages"
    assert layout.labels["PetImages/Cat/1.jpg"] == "cat"
    assert "readme[1].txt" not in layout.labels


def test_class_folders_with_any_number_of_classes_under_one_top_folder():
    names = [f"flowers/{label}/{i}.png" for label in ("daisy", "rose", "tulip") for i in range(3)]
    names.append("flowers/rose/more/9.jpg")
    layout = layouts.find_layout([*names, "flowers/LICENSE"])
    assert layout.kind == "class folders"
    assert sorted(set(layout.labels.values())) == ["daisy", "rose", "tulip"]
    assert layout.labels["flowers/rose/more/9.jpg"] == "rose"
    assert "flowers/LICENSE" not in layout.labels


def test_a_single_class_or_no_images_is_a_user_error():
    with pytest.raises(UserError, match="at least two"):
        layouts.find_layout(["only/cat/1.jpg", "only/cat/2.jpg"])
    with pytest.raises(UserError, match="no image files"):
        layouts.find_layout(["notes.txt"])


@pytest.mark.parametrize(
    "name",
    ["../evil.jpg", "cat/../../evil.jpg", "/tmp/evil.jpg", "C:\\evil.jpg", "..\\evil.jpg"],
)
def test_unsafe_member_names(name):
    assert layouts.unsafe_reason(name)


@pytest.mark.parametrize(
    "name", ["Thumbs.db", "cat/Thumbs.db", ".DS_Store", "__MACOSX/cat/._1.jpg", "cat/.hidden.jpg"]
)
def test_junk(name):
    assert layouts.is_junk(name)
    assert not layouts.is_junk("cat/1.jpg")


# ---- prepare + split -----------------------------------------------------------------------


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            # ZipInfo keeps the name exactly as given (writestr with a str would too, but this
            # makes it explicit for the unsafe ones).
            archive.writestr(zipfile.ZipInfo(name), content)
    return path


def class_members(per_class, prefix="", labels=("cat", "dog"), first_seed=100):
    members = {}
    for k, label in enumerate(labels):
        for i in range(per_class):
            members[f"{prefix}{label}/{i}.jpg"] = jpeg(first_seed + 1000 * k + i)
    return members


def test_zip_slip_entries_are_refused_and_nothing_is_written_outside(tmp_path):
    box = tmp_path / "box"
    members = class_members(5, prefix="data/")
    evil = jpeg(999)
    unsafe = [
        "../evil.jpg",
        "data/cat/../../../evil2.jpg",
        "/tmp/evil3.jpg",
        "data\\..\\..\\e4.jpg",
    ]
    members.update(dict.fromkeys(unsafe, evil))
    archive = write_zip(tmp_path / "slip.zip", members)
    manifest, splits = run_stage(archive, box / "out")
    found = statuses(box / "out" / "manifest.csv")
    assert {name: found[name] for name in unsafe} == dict.fromkeys(unsafe, "unsafe_path")
    outside = [p for p in tmp_path.rglob("*") if p.name.startswith(("evil", "e4"))]
    assert outside == []
    assert not Path("/tmp/evil3.jpg").exists()
    assert len(splits) == 10


def test_archive_claiming_more_than_the_bound_is_refused_before_reading(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("cat/0.jpg", bytes(5_000_000))
        handle.writestr("dog/0.jpg", bytes(5_000_000))
    assert archive.stat().st_size < 100_000
    with pytest.raises(UserError, match="max_archive_bytes"):
        data.prepare(archive, tmp_path / "m.csv", tmp_path / "r.json", 32, MAX_PIXELS, 1_000_000)
    assert not (tmp_path / "m.csv").exists()


def test_duplicates_are_kept_once_and_label_conflicts_excluded(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=6, size=(40, 40))
    cat0 = (source / "cat" / "0.jpg").read_bytes()
    (source / "cat" / "0-again.jpg").write_bytes(cat0)
    (source / "cat" / "z-again.jpg").write_bytes(cat0)
    both = jpeg(50)
    (source / "cat" / "both.jpg").write_bytes(both)
    (source / "dog" / "both.jpg").write_bytes(both)
    manifest, splits = run_stage(source, tmp_path / "out")
    found = statuses(tmp_path / "out" / "manifest.csv")
    assert found["cat/0-again.jpg"] == "ok"  # the first of the copies in file order
    assert found["cat/0.jpg"] == found["cat/z-again.jpg"] == "duplicate"
    assert found["cat/both.jpg"] == found["dog/both.jpg"] == "label_conflict"
    summary = json.loads((tmp_path / "out" / "rejections.json").read_text())
    assert summary["by_class"] == {"cat": 6, "dog": 6}
    assert summary["by_reason"]["duplicate"]["count"] == 2
    assert summary["by_reason"]["label_conflict"]["count"] == 2
    shas = [row["sha256"] for row in splits]
    assert len(shas) == len(set(shas)) == 10


def test_split_is_deterministic_stratified_and_disjoint(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=12, size=(40, 40))
    counts = {"train": 6, "validation": 3, "test": 2}
    _, first = run_stage(source, tmp_path / "a", counts, seed=3)
    _, again = run_stage(source, tmp_path / "b", counts, seed=3)
    _, other = run_stage(source, tmp_path / "c", counts, seed=4)
    assert first == again
    assert tree_digest(tmp_path / "a" / "train") == tree_digest(tmp_path / "b" / "train")
    assert {r["file"] for r in first if r["split"] == "test"} != {
        r["file"] for r in other if r["split"] == "test"
    }
    for split_name, n in counts.items():
        for label in ("cat", "dog"):
            rows = [r for r in first if r["split"] == split_name and r["label"] == label]
            assert len(rows) == n
            assert len(list((tmp_path / "a" / split_name / label).iterdir())) == n
    by_split = {name: {r["sha256"] for r in first if r["split"] == name} for name in counts}
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["validation"] & by_split["test"]
    for row in first:
        assert (tmp_path / "a" / row["split"] / row["path"]).is_file()


def test_changing_the_training_count_keeps_the_test_and_validation_images(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=12, size=(40, 40))
    _, small = run_stage(source, tmp_path / "a", {"train": 4, "validation": 2, "test": 2})
    _, large = run_stage(source, tmp_path / "b", {"train": 8, "validation": 2, "test": 2})
    for name in ("validation", "test"):
        assert [r for r in small if r["split"] == name] == [r for r in large if r["split"] == name]


def test_too_few_images_says_how_many_there_are(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=4, size=(40, 40))
    (source / "cat" / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserError) as error:
        run_stage(source, tmp_path / "out", {"train": 3, "validation": 1, "test": 1})
    message = str(error.value)
    assert "'cat' has 4 usable images" in message and "asks for 5" in message
    assert "\n" not in message


@pytest.mark.parametrize("cap", [6, 4])
def test_counts_over_max_per_class_stop_instead_of_starving_train(tmp_path, cap):
    """3 + 2 + 2 images per class from at most `cap`: train used to get what was left (2, or
    0 with a cap of 4) without a word."""
    source = tmp_path / "source"
    make_class_images(source, per_class=7, size=(40, 40))
    settings = {"train": 3, "validation": 2, "test": 2, "max_per_class": cap}
    with pytest.raises(UserError) as error:
        run_stage(source, tmp_path / "out", settings)
    message = str(error.value)
    assert "train 3 + validation 2 + test 2" in message and f"max_per_class={cap}" in message
    assert "raise split.max_per_class to at least 7" in message and "\n" not in message
    assert not (tmp_path / "out" / "splits.csv").exists()


def test_a_class_short_after_the_cap_names_both_sizes_and_the_cap_to_write(tmp_path):
    """Fractions of at most 4 images cannot give three splits one each (0.7 x 4 rounds to 3
    for train, one left for two splits), though the class has 7."""
    settings = {"train": 0.7, "validation": 0.15, "test": 0.15, "max_per_class": 4}
    message = split_sizes.shortfall(settings, "cat", 7)
    assert message.startswith("class 'cat' has 7 usable images, 4 after split.max_per_class")
    assert "too few for train 0.7 + validation 0.15 + test 0.15" in message
    assert "(train 3 / validation 1 / test 0)" in message
    assert "raise split.max_per_class to at least 5" in message
    assert split_sizes.shortfall({**settings, "max_per_class": 5}, "cat", 7) is None


def test_a_cap_that_binds_gives_each_split_exactly_its_count(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=9, size=(40, 40))
    settings = {"train": 3, "validation": 2, "test": 2, "max_per_class": 7}
    _, splits = run_stage(source, tmp_path / "out", settings)
    found = Counter((row["label"], row["split"]) for row in splits)
    expected = {"train": 3, "validation": 2, "test": 2}
    assert found == Counter(
        {(label, s): n for label in ("cat", "dog") for s, n in expected.items()}
    )


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"train": 3, "validation": 2, "test": 2, "max_per_class": 6},
            "split: train 3 + validation 2 + test 2 is 7 images per class, more than "
            "split.max_per_class=6 lets a class have; raise split.max_per_class to at least 7",
        ),
        (
            {"train": 0.7, "validation": 0.15, "test": 0.15, "max_per_class": 3},
            "raise split.max_per_class to at least 5",
        ),
    ],
)
def test_a_cap_no_dataset_can_satisfy_is_refused_before_any_data_is_read(settings, says):
    with pytest.raises(UserError) as error:
        split_sizes.check(settings)
    assert says in str(error.value)


def test_folder_source_is_copied_never_linked_and_left_unchanged(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=6, size=(40, 40))
    (source / "cat" / "0.jpg").write_bytes(encode(picture(30, mode="L")))
    before = tree_digest(source)
    _, splits = run_stage(source, tmp_path / "out", {"train": 4, "validation": 1, "test": 1})
    assert tree_digest(source) == before
    assert len(splits) == 12
    for row in splits:
        placed = tmp_path / "out" / row["split"] / row["path"]
        original = source / row["file"]
        assert not placed.samefile(original)
        if row["file"] == "cat/0.jpg":
            assert placed.suffix == ".png"
        else:
            assert hashlib.sha256(placed.read_bytes()).hexdigest() == row["sha256"]
    # An edit of the split never reaches the user's photo.
    placed.write_bytes(b"edited")
    assert tree_digest(source) == before


def test_symlinked_class_folders_are_followed_and_a_loop_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    make_class_images(elsewhere, per_class=5, size=(40, 40))
    source = tmp_path / "source"
    source.mkdir()
    for label in ("cat", "dog"):
        (source / label).symlink_to(elsewhere / label, target_is_directory=True)
    manifest, splits = run_stage(source, tmp_path / "out")
    assert {row["label"] for row in manifest if row["status"] == "ok"} == {"cat", "dog"}
    assert len(splits) == 10

    (source / "cat" / "again").symlink_to(source, target_is_directory=True)
    with pytest.raises(UserError, match="links back to a folder that contains it"):
        run_stage(source, tmp_path / "loop")


def test_zip_source_extracts_only_the_chosen_members(tmp_path):
    archive = write_zip(
        tmp_path / "flat.zip",
        {
            f"train/{label}.{i}.jpg": jpeg(200 + 50 * k + i)
            for k, label in enumerate(("cat", "dog"))
            for i in range(9)
        },
    )
    _, splits = run_stage(archive, tmp_path / "out")
    written = [p for p in (tmp_path / "out").rglob("*.jpg")]
    assert len(written) == len(splits) == 10
    assert {p.name for p in written} == {Path(row["file"]).name for row in splits}


def test_source_changed_since_prepare_is_a_user_error(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=5, size=(40, 40))
    out = tmp_path / "out"
    data.prepare(source, out / "manifest.csv", out / "rejections.json", MIN_SIDE, MAX_PIXELS, 10**9)
    for k, path in enumerate(sorted(source.rglob("*.jpg"))):
        path.write_bytes(jpeg(500 + k))
    with pytest.raises(UserError, match="changed since"):
        data.split(
            source,
            out / "manifest.csv",
            out / "splits.csv",
            {n: out / n for n in SPLIT},
            SPLIT,
            1,
        )


def test_outputs_inside_the_source_folder_are_refused(tmp_path):
    make_class_images(tmp_path, per_class=5, size=(40, 40))
    with pytest.raises(UserError, match="contains the output"):
        data.prepare(
            tmp_path, tmp_path / "results" / "manifest.csv", tmp_path / "r.json", 32, 10**6, 10**9
        )


# ---- the salted zip ------------------------------------------------------------------------


def corrupt_member_crc(path, name):
    """Flip one byte of a stored member's data, so that reading it fails its CRC check."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    raw = bytearray(path.read_bytes())
    name_length = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    raw[start + 100] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_salted_zip_rejects_every_bad_kind_and_the_split_loads(tmp_path):
    per_class = 8
    members = class_members(per_class, prefix="photos/")
    expected = {}
    for reason, make in REJECTED.items():
        members[f"photos/cat/{reason}.jpg"] = make()
        expected[f"photos/cat/{reason}.jpg"] = reason
    for kind, make in CONVERTED.items():
        members[f"photos/dog/{kind}.jpg"] = make()
        expected[f"photos/dog/{kind}.jpg"] = "ok"
    members["photos/dog/png-bytes.jpg"] = encode(picture(40), "PNG")
    expected["photos/dog/png-bytes.jpg"] = "ok"
    junk = ["photos/cat/Thumbs.db", "photos/.DS_Store", "__MACOSX/photos/cat/._0.jpg"]
    for name in junk:
        members[name] = b"\x00\x05\x16\x07clutter"
        expected[name] = "junk"
    for name in ["../escape.jpg", "/abs/escape.jpg"]:
        members[name] = jpeg(41)
        expected[name] = "unsafe_path"
    members["photos/cat/copy-of-0.jpg"] = members["photos/cat/0.jpg"]
    expected["photos/cat/copy-of-0.jpg"] = "duplicate"
    members["photos/cat/both.jpg"] = members["photos/dog/both.jpg"] = jpeg(42)
    expected["photos/cat/both.jpg"] = expected["photos/dog/both.jpg"] = "label_conflict"
    members["photos/README.txt"] = b"where these came from\n"
    expected["photos/README.txt"] = "unlabelled"
    members["photos/cat/badcrc.jpg"] = jpeg(43)
    expected["photos/cat/badcrc.jpg"] = "unreadable"
    members["photos/dog/too-large.jpg"] = bytes(images.max_file_bytes(MAX_PIXELS) + 1)
    expected["photos/dog/too-large.jpg"] = "too_large"

    archive = tmp_path / "salted.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, content in members.items():
            # Stored, so that corrupt_member_crc finds the bytes; the big one compressed.
            method = zipfile.ZIP_DEFLATED if name.endswith("too-large.jpg") else zipfile.ZIP_STORED
            handle.writestr(zipfile.ZipInfo(name), content, method)
    corrupt_member_crc(archive, "photos/cat/badcrc.jpg")

    counts = {"train": 5, "validation": 2, "test": 1}
    out = tmp_path / "out"
    manifest, splits = run_stage(archive, out, counts)
    found = statuses(out / "manifest.csv")
    assert {name: found[name] for name in expected} == expected
    assert len(found) == len(members)
    details = {row["file"]: row["detail"] for row in manifest}
    assert all(details[name] for name, status in expected.items() if status != "ok")

    summary = json.loads((out / "rejections.json").read_text())
    assert summary["n_files"] == len(members)
    assert summary["by_class"] == {"cat": per_class, "dog": per_class + len(CONVERTED) + 1}
    reasons = {reason for reason in expected.values() if reason != "ok"}
    assert set(summary["by_reason"]) == reasons

    for name, n in counts.items():
        assert load_all(out / name) == 2 * n
    for path in out.glob("*/*/*"):
        assert path.suffix in (".jpg", ".png")
        if path.suffix == ".png":
            with Image.open(path) as image:
                assert image.mode == "RGB" and image.format == "PNG"


# ---- splits by fraction --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # 150 x 0.15 = 22.5: the image rounding leaves over goes to validation, the first of
        # the tied splits; 25 x 0.15 = 3.75 rounds up in both. With fractions adding up to 1,
        # every image is used.
        (
            {"train": 0.7, "validation": 0.15, "test": 0.15},
            {"cat": (105, 23, 22), "dog": (42, 9, 9), "bird": (17, 4, 4)},
        ),
        (
            {"train": 0.7, "validation": 0.15, "test": 0.15, "max_per_class": 40},
            {"cat": (28, 6, 6), "dog": (28, 6, 6), "bird": (17, 4, 4)},
        ),
        (
            {"train": 0.5, "validation": 0.2, "test": 0.1},
            {"cat": (75, 30, 15), "dog": (30, 12, 6), "bird": (13, 5, 2)},
        ),
    ],
)
def test_fractions_of_each_class_on_an_imbalanced_dataset(tmp_path, settings, expected):
    source = tmp_path / "source"
    for seed, (label, n) in enumerate((("cat", 150), ("dog", 60), ("bird", 25))):
        make_class_images(source, classes=(label,), per_class=n, size=(40, 40), seed=seed)
    _, splits = run_stage(source, tmp_path / "out", settings)
    found = {
        label: tuple(
            sum(row["label"] == label and row["split"] == name for row in splits)
            for name in ("train", "validation", "test")
        )
        for label in expected
    }
    assert found == expected
    for name in ("train", "validation", "test"):
        for label, sizes in expected.items():
            folder = tmp_path / "out" / name / label
            assert len(list(folder.iterdir())) == sizes[("train", "validation", "test").index(name)]


def test_fractions_too_small_for_a_class_say_so(tmp_path):
    source = tmp_path / "source"
    make_class_images(source, per_class=3, size=(40, 40))
    with pytest.raises(UserError) as error:
        run_stage(source, tmp_path / "out", {"train": 0.8, "validation": 0.1, "test": 0.1})
    assert "'cat' has 3 usable images, too few for train 0.8 + validation 0.1 + test 0.1" in str(
        error.value
    )


def test_fractions_over_one_are_refused():
    with pytest.raises(UserError, match=r"split: the fractions add up to 1\.1 .*split\.train"):
        split_sizes.check({"train": 0.7, "validation": 0.2, "test": 0.2})
