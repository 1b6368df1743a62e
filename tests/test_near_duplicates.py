"""Near-duplicates: the hash, the pair search, grouping in prepare, the split, the report part."""

import base64
import csv
import io
import json
from pathlib import Path

import jinja2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from smallcnn import data, near_duplicates
from smallcnn.report.duplicates import near_duplicate_section

LIMITS = {"min_side": 32, "max_image_pixels": 10**7, "max_archive_bytes": 10**9}
CHECK = {"enabled": True, "max_distance": 6}
VARIANTS = ("half", "smaller", "quality60", "brighter")


def scene(seed, background=0, size=(240, 180)):
    """A photo-like image: a smooth two-colour gradient (chosen by `background`) with a few
    ellipses of random colour, size and place (chosen by `seed`)."""
    rng = np.random.default_rng([background, 0])
    width, height = size
    top, bottom = rng.integers(0, 256, (2, 3))
    ramp = np.linspace(0, 1, height)[:, None, None]
    pixels = (top * (1 - ramp) + bottom * ramp) * np.ones((1, width, 1))
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng([seed, 1])
    for _ in range(5):
        x, y = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(15, 60, 2)
        draw.ellipse(
            (x - rx, y - ry, x + rx, y + ry), fill=tuple(int(c) for c in rng.integers(0, 256, 3))
        )
    return image


def jpeg(image, quality=92):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def variant(image, kind):
    width, height = image.size
    if kind == "half":
        return jpeg(image.resize((width // 2, height // 2), Image.Resampling.LANCZOS))
    if kind == "smaller":
        return jpeg(image.resize((int(width * 0.8), int(height * 0.8)), Image.Resampling.LANCZOS))
    if kind == "quality60":
        return jpeg(image, quality=60)
    return jpeg(ImageEnhance.Brightness(image).enhance(1.1))


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["file"]: row for row in csv.DictReader(handle)}


def prepare(source, out, check=CHECK):
    data.prepare(
        source,
        out / "manifest.csv",
        out / "rejections.json",
        **LIMITS,
        near_duplicate_check=check,
        near_duplicate_summary=out / "near_duplicates.json",
    )
    return read_csv(out / "manifest.csv"), json.loads((out / "near_duplicates.json").read_text())


def photos_with_copies(root, originals=4, shared_background=6):
    """cat/: `originals` scenes, each with its four variants; dog/: scenes that all share one
    background and differ only in their ellipses. Returns {original: [its variants]}."""
    groups = {}
    for seed in range(originals):
        image = scene(seed, background=seed)
        name = f"cat/{seed}.jpg"
        write(root / name, jpeg(image, quality=95))
        groups[name] = [f"cat/{seed}-{kind}.jpg" for kind in VARIANTS]
        for kind, copy in zip(VARIANTS, groups[name], strict=True):
            write(root / copy, variant(image, kind))
    for seed in range(shared_background):
        write(root / f"dog/{seed}.jpg", jpeg(scene(100 + seed, background=99)))
    return groups


@pytest.mark.parametrize("size", [(48, 40), (200, 150), (640, 480), (1200, 900)])
def test_the_hash_is_imagehash_phash(size):
    """The same 64 bits as imagehash.phash (a pinned test dependency), also above 64 pixels,
    where a box reduction before Lanczos (PIL's reducing_gap) moved up to 12 bits."""
    imagehash = pytest.importorskip("imagehash")
    rng = np.random.default_rng(list(size))
    pictures = [scene(seed, background=seed, size=size) for seed in range(4)] + [
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        for _ in range(4)
    ]
    for picture in pictures:
        expected = int(str(imagehash.phash(picture)), 16)
        assert near_duplicates.perceptual_hash(np.asarray(picture)) == expected


def structured(kind):
    """Images whose DCT has coefficients that are exactly zero."""
    pixels = np.zeros((48, 64, 3), np.uint8)
    if kind == "flat":
        pixels[:] = (90, 140, 200)
    elif kind == "stripes":
        pixels[::2] = 255
    elif kind == "halves":
        pixels[:24] = 200
    elif kind == "box":
        pixels[10:38, 20:44] = 255
    return Image.fromarray(pixels)


@pytest.mark.parametrize("kind", ["flat", "black", "stripes", "halves", "box"])
def test_images_with_zero_coefficients_hash_as_imagehash_does(kind):
    """A flat image: every coefficient but the first is zero, and so is their median; imagehash
    compares with >, so only the first bit is set. Float noise in those zeros used to set others
    at random (c6d6282929c6d628 for this flat colour)."""
    imagehash = pytest.importorskip("imagehash")
    picture = structured(kind)
    expected = int(str(imagehash.phash(picture)), 16)
    assert near_duplicates.perceptual_hash(np.asarray(picture)) == expected
    if kind == "flat":
        assert expected == 1 << 63


def test_resized_reencoded_and_brightened_copies_are_one_photo(tmp_path):
    groups = photos_with_copies(tmp_path / "src")
    rows, summary = prepare(tmp_path / "src", tmp_path / "out")
    for original, copies in groups.items():
        members = [original, *copies]
        # The largest image is kept: most pixels, then most bytes.
        kept = max(
            members,
            key=lambda f: (int(rows[f]["width"]) * int(rows[f]["height"]), int(rows[f]["bytes"])),
        )
        assert {rows[f]["group"] for f in members} == {kept}
        assert rows[kept]["status"] == "ok"
        for name in members:
            if name == kept:
                continue
            distance = near_duplicates.hamming(rows[name]["phash"], rows[kept]["phash"])
            assert rows[name]["status"] == "near_duplicate"
            assert rows[name]["detail"] == f"the same photo as {kept} ({distance} bits apart)"
    # Different photos, even on one shared background, stay apart.
    dogs = [row for name, row in rows.items() if name.startswith("dog/")]
    assert [(row["status"], row["group"]) for row in dogs] == [("ok", "")] * 6
    assert (summary["n_groups"], summary["n_images"], summary["n_near_duplicate"]) == (4, 20, 16)
    assert len(summary["examples"]) == 4
    for pair in summary["examples"]:
        kept, other = pair["images"]
        assert other["file"] in groups.get(kept["file"], []) or kept["file"] in groups
        assert pair["distance"] == near_duplicates.hamming(
            rows[kept["file"]]["phash"], rows[other["file"]]["phash"]
        )
        png = base64.b64decode(kept["thumbnail"].removeprefix("data:image/png;base64,"))
        with Image.open(io.BytesIO(png)) as thumbnail:
            assert thumbnail.format == "PNG" and max(thumbnail.size) <= 120


def test_a_group_with_two_labels_is_a_label_conflict(tmp_path):
    src = tmp_path / "src"
    photos_with_copies(src, originals=2, shared_background=4)
    image = scene(50, background=50)
    write(src / "cat/shared.jpg", jpeg(image))
    write(src / "dog/shared-small.jpg", variant(image, "half"))
    rows, summary = prepare(src, tmp_path / "out")
    assert rows["cat/shared.jpg"]["status"] == "label_conflict"
    assert rows["dog/shared-small.jpg"]["status"] == "label_conflict"
    assert rows["cat/shared.jpg"]["detail"] == (
        "near-duplicates labelled cat and dog: dog/shared-small.jpg"
    )
    assert summary["n_label_conflict_groups"] == 1


def test_the_check_turned_off_keeps_every_copy(tmp_path):
    photos_with_copies(tmp_path / "src")
    rows, summary = prepare(
        tmp_path / "src", tmp_path / "out", {"enabled": False, "max_distance": 6}
    )
    assert {row["status"] for row in rows.values()} == {"ok"}
    assert all(row["phash"] and not row["group"] for row in rows.values())
    assert (summary["enabled"], summary["n_groups"], summary["examples"]) == (False, 0, [])


def split(source, out, settings, seed=5):
    data.split(
        source,
        out / "manifest.csv",
        out / "splits.csv",
        {name: out / name for name in ("train", "validation", "test")},
        settings,
        seed,
        straddling=out / "straddling.json",
    )
    with open(out / "splits.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle)), json.loads((out / "straddling.json").read_text())


def test_groups_never_straddle_and_the_count_without_the_check_is_right(tmp_path):
    src = tmp_path / "src"
    for label, first in (("cat", 0), ("dog", 1000)):
        for seed in range(first, first + 14):
            image = scene(seed, background=seed)
            write(src / f"{label}/{seed}.jpg", jpeg(image))
            write(src / f"{label}/{seed}-small.jpg", variant(image, "smaller"))
    settings = {"train": 0.5, "validation": 0.25, "test": 0.25}
    rows, _ = prepare(src, tmp_path / "on")
    used, straddling = split(src, tmp_path / "on", settings)
    groups = {name: row["group"] for name, row in rows.items() if row["group"]}
    splits_of = {}
    for row in used:
        splits_of.setdefault(groups[row["file"]], set()).add(row["split"])
    assert len(used) == len(splits_of) == 28
    assert all(len(names) == 1 for names in splits_of.values())

    # The same split with the check off: the groups it puts on two sides are the ones counted.
    prepare(src, tmp_path / "off", {"enabled": False, "max_distance": 6})
    unchecked, _ = split(src, tmp_path / "off", settings)
    across = {}
    for row in unchecked:
        across.setdefault(groups[row["file"]], set()).add(row["split"])
    expected = sorted(group for group, names in across.items() if len(names) > 1)
    assert straddling["n_groups"] == 28
    assert straddling["n_straddling"] == len(expected) > 0
    assert straddling["examples"] == expected[:5]


def test_pair_search_matches_brute_force_across_block_edges(monkeypatch):
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**63, 300, dtype=np.uint64)
    for k in range(0, 300, 7):  # plant close pairs, some across block edges
        hashes[(k * 31) % 300] = hashes[k] ^ np.uint64(1 << int(rng.integers(0, 63)))
    monkeypatch.setattr(near_duplicates, "BLOCK_ELEMENTS", 300 * 13)
    first, second, distance = near_duplicates.close_pairs(hashes, 6)
    found = set(zip(first.tolist(), second.tolist(), distance.tolist(), strict=True))
    expected = {
        (i, j, int(hashes[i] ^ hashes[j]).bit_count())
        for i in range(300)
        for j in range(i + 1, 300)
        if int(hashes[i] ^ hashes[j]).bit_count() <= 6
    }
    assert found == expected and len(expected) > 30


@pytest.mark.parametrize("max_distance", [0, 1, 6, 63])
def test_hashes_exactly_max_distance_bits_apart_are_a_pair_one_bit_more_are_not(max_distance):
    """The threshold is inclusive: `max_distance: 6` groups copies 6 bits apart, not 7."""
    base = 0x0123_4567_89AB_CDEF

    def apart(bits):
        # The top `bits` bits flipped: a hash exactly `bits` bits from base.
        return base ^ (((1 << bits) - 1) << (64 - bits))

    first, second, distance = near_duplicates.close_pairs([base, apart(max_distance)], max_distance)
    assert (first.tolist(), second.tolist(), distance.tolist()) == ([0], [1], [max_distance])
    first, _, _ = near_duplicates.close_pairs([base, apart(max_distance + 1)], max_distance)
    assert first.tolist() == []

    # The same edge through the grouping that prepare applies: the smaller copy is rejected.
    def row(name, side, value):
        return {
            "file": f"cat/{name}.jpg",
            "label": "cat",
            "status": "ok",
            "width": side,
            "height": side,
            "bytes": 100 * side,
            "phash": f"{value:016x}",
        }

    for bits, status in ((max_distance, "near_duplicate"), (max_distance + 1, "ok")):
        rows = [row("kept", 64, base), row("copy", 32, apart(bits))]
        groups = near_duplicates.mark(rows, max_distance)
        assert [r["status"] for r in rows] == ["ok", status], bits
        assert len(groups) == (status == "near_duplicate")


def hashed(file, label, phash, width=64, height=64, status="ok"):
    return {
        "file": file,
        "label": label,
        "status": status,
        "width": width,
        "height": height,
        "bytes": width * height,
        "phash": phash,
    }


def test_grouping_keeps_the_largest_image_and_names_the_others():
    rows = [
        # Wide but smaller in area (3,000 pixels) than the square kept (4,096).
        hashed("cat/wide.jpg", "cat", "00000000000000ff", width=100, height=30),
        hashed("cat/square.jpg", "cat", "00000000000000fe"),
        hashed("cat/other.jpg", "cat", "ffffffff00000000"),
        # A rejected file is not grouped, whatever its hash.
        hashed("cat/corrupt.jpg", "cat", "00000000000000ff", status="corrupt"),
        # Three labels' worth of one photo: a conflict, each naming the others.
        hashed("dog/b.jpg", "dog", "f0f0f0f0f0f0f0f0"),
        hashed("dog/a.jpg", "dog", "f0f0f0f0f0f0f0f1"),
        hashed("cat/c.jpg", "cat", "f0f0f0f0f0f0f0f3"),
    ]
    groups = near_duplicates.mark(rows, max_distance=2)
    # Sorted by the kept file; each group largest first (then most bytes, then name).
    assert [[row["file"] for row in group] for group in groups] == [
        ["cat/c.jpg", "dog/a.jpg", "dog/b.jpg"],
        ["cat/square.jpg", "cat/wide.jpg"],
    ]
    wide, square, other, corrupt = rows[:4]
    assert (square["status"], square["group"], square["distance"]) == ("ok", "cat/square.jpg", 0)
    assert (wide["status"], wide["group"], wide["distance"]) == (
        "near_duplicate",
        "cat/square.jpg",
        1,
    )
    assert wide["detail"] == "the same photo as cat/square.jpg (1 bits apart)"
    assert other["status"] == "ok" and "group" not in other
    assert corrupt["status"] == "corrupt" and "group" not in corrupt
    b, a, c = rows[4:]
    assert {row["status"] for row in (a, b, c)} == {"label_conflict"}
    assert a["detail"] == "near-duplicates labelled cat and dog: cat/c.jpg, dog/b.jpg"
    assert (b["distance"], a["distance"]) == (2, 1)


def test_the_hamming_distance_counts_differing_bits():
    assert near_duplicates.hamming("00ff", "0f0f") == 8
    assert near_duplicates.hamming("ffffffffffffffff", "0000000000000000") == 64
    assert near_duplicates.hamming("1234", "1234") == 0


def test_pair_distances_are_bit_counts():
    first, second, distance = near_duplicates.close_pairs([0b1011, 0b0001, 0b0000], 3)
    assert (first.tolist(), second.tolist(), distance.tolist()) == ([0, 0, 1], [1, 2, 2], [2, 3, 1])
    assert distance.dtype.kind == "i"
    assert near_duplicates.close_pairs([], 6)[2].dtype.kind == "i"


def test_the_examples_shown_are_the_farthest_pairs(tmp_path):
    images = {}
    for name, mode in (("a.jpg", "RGB"), ("b.jpg", "CMYK"), ("c.jpg", "L"), ("d.jpg", "RGB")):
        buffer = io.BytesIO()
        Image.new(mode, (40, 30)).save(buffer, "JPEG")
        images[name] = buffer.getvalue()

    def row(file, distance, status="near_duplicate"):
        return {**hashed(file, "cat", "0"), "status": status, "distance": distance}

    groups = [
        [row("c.jpg", 0, "ok"), row("a.jpg", 2)],
        [row("d.jpg", 0, "ok"), row("b.jpg", 5), row("a.jpg", 1)],
        [row("b.jpg", 0, "ok"), row("c.jpg", 2)],
    ]
    summary = near_duplicates.summary(groups, True, 6, images.__getitem__)
    assert [[image["file"] for image in example["images"]] for example in summary["examples"]] == [
        ["d.jpg", "b.jpg"],
        ["b.jpg", "c.jpg"],
        ["c.jpg", "a.jpg"],
    ]
    assert [example["distance"] for example in summary["examples"]] == [5, 2, 2]
    assert (summary["n_groups"], summary["n_images"], summary["n_near_duplicate"]) == (3, 7, 4)
    # Every thumbnail is a PNG, whatever the mode of the file (CMYK and greyscale here).
    for example in summary["examples"]:
        for image in example["images"]:
            data = base64.b64decode(image["thumbnail"].removeprefix("data:image/png;base64,"))
            assert Image.open(io.BytesIO(data)).format == "PNG"


def test_components_follow_chains():
    labels = near_duplicates.components(7, np.array([5, 1, 3]), np.array([1, 3, 6]))
    assert labels.tolist() == [0, 1, 2, 1, 4, 1, 1]


# ---- the report part -----------------------------------------------------------------------


def render(section):
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(data.__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template("near_duplicates.html.j2").render(near_duplicates=section)


def test_report_section_from_the_data_stage_files(tmp_path):
    src = tmp_path / "src"
    photos_with_copies(src, originals=2, shared_background=4)
    odd = scene(77, background=77)
    write(src / "cat/<b>odd & name</b>.jpg", jpeg(odd))
    write(src / "cat/<b>odd & name</b>-small.jpg", variant(odd, "half"))
    prepare(src, tmp_path / "out")
    split(src, tmp_path / "out", {"train": 0.5, "validation": 0.25, "test": 0.25})
    section = near_duplicate_section(
        tmp_path / "out" / "near_duplicates.json", tmp_path / "out" / "straddling.json"
    )
    assert (section["n_groups"], section["n_near_duplicate"], len(section["pairs"])) == (3, 9, 3)
    html = render(section)
    assert "3 groups of near-duplicates" in html and "9 others rejected" in html
    words = " ".join(html.split())
    assert f"{section['n_straddling']} of the {section['n_groups']} groups would have been" in words
    assert html.count('<img src="data:image/png;base64,') == 6
    # File names render literally, never as markup.
    assert "<b>odd" not in html and "&lt;b&gt;odd &amp; name&lt;/b&gt;.jpg" in html


@pytest.mark.parametrize(
    ("enabled", "n_groups", "says"),
    [(False, 0, "check was off"), (True, 0, "no photo appears twice")],
)
def test_report_section_without_groups(tmp_path, enabled, n_groups, says):
    summary = {
        "enabled": enabled,
        "hash": near_duplicates.HASH_NAME,
        "max_distance": 6,
        "n_groups": n_groups,
        "n_images": 0,
        "n_near_duplicate": 0,
        "n_label_conflict_groups": 0,
        "examples": [],
    }
    (tmp_path / "s.json").write_text(json.dumps(summary))
    (tmp_path / "t.json").write_text(json.dumps({"n_groups": 0, "n_straddling": 0, "examples": []}))
    html = render(near_duplicate_section(tmp_path / "s.json", tmp_path / "t.json"))
    assert says in html and "<table" not in html
