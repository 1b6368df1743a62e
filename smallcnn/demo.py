"""The offline demo dataset: stripes whose direction is the class, plus bad files.

Each image is stripes of random period, phase, grey level and size, tilted up to 10 degrees off
its class's direction (horizontal, vertical, diagonal or antidiagonal), with noise: the direction
is the only thing that tells the classes apart. A handful of deliberately bad files (empty,
truncated, a JPEG header over garbage, not an image, junk, a duplicate, a label conflict, one too
small) and unusual ones (grayscale, PNG bytes under .jpg) make the data stage show what it rejects
and converts. Every class keeps at least `per_class` usable images.
"""

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from smallcnn import images
from smallcnn.errors import UserError

log = logging.getLogger(__name__)

ANGLES = {"horizontal": 0, "vertical": 90, "diagonal": 45, "antidiagonal": 135}
SIDE_RANGE = (64, 97)  # image sides in pixels, varied so that resizing happens as with photos
JPEG_QUALITY = 90
# Grey levels between light and dark stripes. Chosen by measurement, with 60 images per class,
# 64x64 and 2 epochs: the book's convnet mostly reached over 90% validation accuracy on these
# grey stripes, and stayed near chance on stripes (or shapes) of random colours.
CONTRAST = 160


def make_demo(out_dir, per_class, seed, classes=("horizontal", "vertical")):
    """Write `<out_dir>/<class>/<class>-<i>.jpg` (per_class each) and the bad files.

    `classes`: two or more stripe directions of horizontal, vertical, diagonal, antidiagonal.
    """
    unknown = [name for name in classes if name not in ANGLES]
    if unknown or len(set(classes)) < 2:
        raise UserError(
            f"demo classes must be two or more of {', '.join(ANGLES)}, got {', '.join(classes)}"
        )
    if per_class < 1:
        raise UserError(f"the demo needs at least one image per class, got {per_class}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        # Files left from another run would make the dataset differ from what the seed gives.
        raise UserError(f"{out} is not empty; the demo is generated into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    first = {}
    for label in classes:
        (out / label).mkdir(exist_ok=True)
        for i in range(per_class):
            data = _jpeg(_draw(label, rng))
            (out / label / f"{label}-{i:04d}.jpg").write_bytes(data)
            first.setdefault(label, data)
    bad = _bad_files(classes, first, rng)
    for name, data in bad.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    log.info(
        "demo: %d classes (%s), %d images each and %d unusual or bad files in %s",
        len(classes),
        ", ".join(classes),
        per_class,
        len(bad),
        out,
    )


def _draw(label, rng):
    width, height = (int(side) for side in rng.integers(*SIDE_RANGE, size=2))
    angle = np.deg2rad(ANGLES[label] + rng.uniform(-10, 10))
    period = rng.uniform(12, 24)
    y, x = np.mgrid[0:height, 0:width]
    # Distance across the stripes: they run along `angle`.
    across = -x * np.sin(angle) + y * np.cos(angle)
    stripe = np.sin(2 * np.pi * across / period + rng.uniform(0, 2 * np.pi)) > 0
    dark = rng.integers(0, 256 - CONTRAST)
    grey = np.where(stripe, dark + CONTRAST, dark) + rng.normal(0, 8, (height, width))
    pixels = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return Image.fromarray(pixels)


def _jpeg(image, **options):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, **options)
    return buffer.getvalue()


def _bad_files(classes, first, rng):
    """Files the data stage must reject or convert, spread over the first two classes."""
    a, b = classes[0], classes[1]
    good = first[a]
    # Keep the JPEG up to the end of its start-of-scan header; replace the image data.
    scan = good.index(b"\xff\xda")
    header = good[: scan + 2 + int.from_bytes(good[scan + 2 : scan + 4], "big")]
    while True:
        garbage = header + rng.integers(0, 256, len(good) - len(header), np.uint8).tobytes()
        garbage += b"\xff\xd9"
        # Random bytes that happen to start with an end-of-image marker read as a JPEG with
        # trailing data (about one draw in 250): draw again, so that the demo shows this kind.
        if images.jpeg_structure_problem(garbage):
            break
    png = io.BytesIO()
    _draw(b, rng).save(png, "PNG")
    conflict = _jpeg(_draw(a, rng))
    return {
        f"{a}/empty.jpg": b"",
        f"{a}/truncated.jpg": good[: len(good) // 2],
        f"{a}/garbage.jpg": garbage,
        f"{a}/{a}-0000_copy.jpg": good,
        f"{a}/grayscale.jpg": _jpeg(_draw(a, rng).convert("L")),
        f"{a}/conflict.jpg": conflict,
        f"{b}/conflict.jpg": conflict,
        f"{b}/not-an-image.jpg": b"This text file has a .jpg name.\n",
        f"{b}/tiny.jpg": _jpeg(_draw(b, rng).resize((16, 16))),
        f"{b}/png-bytes.jpg": png.getvalue(),
        f"{b}/Thumbs.db": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
        ".DS_Store": b"\x00\x00\x00\x01Bud1" + bytes(100),
    }
