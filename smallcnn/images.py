"""Checking one image file the way training will read it, and normalising unusual ones.

Training reads images with tf.io.decode_image(channels=3, expand_animations=False), as
keras.utils.image_dataset_from_directory does, so that decoder is the judge of whether a file is
usable. PIL reads the header first, which bounds the pixel count before anything is decoded, and
converts the unusual files (grayscale, CMYK, alpha, 16-bit, palette, GIF, WebP, TIFF) to plain
8-bit RGB PNG so that no later reader can trip over them.
"""

import dataclasses
import io
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from smallcnn import near_duplicates

# Formats PIL may identify that are worth keeping (after conversion where needed).
READABLE_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF"}
# Formats whose raw bytes must pass TensorFlow's decoder. GIF and WebP are always converted (so
# training never reads their raw bytes), and TensorFlow decodes every frame of a GIF, which an
# animation of many large frames would turn into gigabytes.
TF_FORMATS = {"JPEG", "MPO", "PNG", "BMP"}
# Stored unchanged (linked or copied) when 8-bit RGB: training and every other reader take them.
PLAIN_FORMATS = {"JPEG", "MPO", "PNG", "BMP"}
PLAIN_EXTENSIONS = {
    "JPEG": (".jpg", ".jpeg"),
    "MPO": (".jpg", ".jpeg"),
    "PNG": (".png",),
    "BMP": (".bmp",),
}
MAGIC = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}
# Room for metadata (EXIF, ICC profiles, thumbnails) on top of the pixels themselves.
METADATA_BYTES = 16 * 2**20


@dataclasses.dataclass
class Inspection:
    """What checking one file found. `status` is "ok" or a reason code."""

    status: str
    detail: str = ""
    width: int | None = None
    height: int | None = None
    format: str = ""
    mode: str = ""
    # True when the file must be re-encoded as RGB PNG before training may read it.
    convert: bool = False
    # Perceptual hash (16 hex digits) of the pixels training will see; "" unless usable.
    phash: str = ""


def max_file_bytes(max_image_pixels):
    """The largest file that can hold an image within the pixel bound: an uncompressed 32-bit
    bitmap plus metadata. Anything larger is not read into memory at all."""
    return 4 * max_image_pixels + METADATA_BYTES


def too_large(size, max_image_pixels):
    """An Inspection rejecting a file of `size` bytes that no image within the pixel bound can
    fill, else None: such a file is refused before it is read."""
    if size <= max_file_bytes(max_image_pixels):
        return None
    return Inspection(
        "too_large",
        f"{size:,} bytes: larger than any image within "
        f"data.max_image_pixels={max_image_pixels:,} can be",
    )


def tensorflow():
    """TensorFlow, imported on first use: it takes seconds, and splitting, the demo and the
    marker walk do without it."""
    import tensorflow as tf

    return tf


def decode_like_training(data):
    """The uint8 (height, width, 3) array training will see for these bytes."""
    return tensorflow().io.decode_image(data, channels=3, expand_animations=False).numpy()


def inspect_image(data, extension, min_side, max_image_pixels):
    """Check the bytes of one file; `extension` is its name's, lower case (".jpg")."""
    if not data:
        return Inspection("empty", "the file has no bytes")
    tf = tensorflow()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, mode, (width, height) = image.format, image.mode, image.size
            frames = getattr(image, "n_frames", 1) if image_format != "MPO" else 1
    except Image.DecompressionBombError as error:
        return Inspection("too_many_pixels", str(error))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        claimed = _claimed_format(data)
        if claimed:
            return Inspection(
                "corrupt", f"starts like a {claimed} file but its header is unreadable ({error})"
            )
        return Inspection("not_image", "not an image: its bytes match no image format")
    found = Inspection("ok", "", width, height, image_format, mode)
    if image_format not in READABLE_FORMATS:
        found.status, found.detail = "unsupported", f"{image_format} images are not supported"
        return found
    if width * height > max_image_pixels:
        found.status = "too_many_pixels"
        found.detail = f"{width}x{height} is more than data.max_image_pixels={max_image_pixels}"
        return found
    if min(width, height) < min_side:
        found.status = "too_small"
        found.detail = f"{width}x{height}: the shorter side is below data.min_side={min_side}"
        return found

    if image_format in ("JPEG", "MPO"):
        problem = jpeg_structure_problem(data)
        if problem:
            found.status, found.detail = problem
            return found
    decoded = None
    if image_format in TF_FORMATS:
        try:
            decoded = decode_like_training(data)
        except tf.errors.OpError as error:
            found.status, found.detail = _why_undecodable(data, image_format, error)
            return found
        found.height, found.width = decoded.shape[:2]

    found.convert = image_format not in PLAIN_FORMATS or mode != "RGB"
    if found.convert:
        try:
            decoded = decode_like_training(to_rgb_png(data))
        except (OSError, SyntaxError, ValueError, EOFError, tf.errors.OpError) as error:
            found.status, found.detail = _why_undecodable(data, image_format, error)
            return found
        animated = f", {frames} frames: the first is kept" if frames > 1 else ""
        found.detail = f"{image_format} {mode}{animated}: converted to RGB PNG"
    elif extension not in PLAIN_EXTENSIONS[image_format]:
        found.detail = f"{image_format} data under a {extension or 'bare'} name: renamed"
    found.phash = f"{near_duplicates.perceptual_hash(decoded):016x}"
    return found


def jpeg_structure_problem(data):
    """(reason, detail) when JPEG bytes are not a well-formed sequence of markers up to the
    end-of-image marker, else None.

    Decoders are lenient: over garbage that happens to hold a few plausible markers, libjpeg
    (in TensorFlow and PIL) warns and returns an image of noise. Walking the markers catches
    such a JPEG header over garbage, unless the garbage starts with an end-of-image marker
    (then it reads as trailing data, which real photos have too). A file cut short ends inside
    its headers or its image data;
    one that ends because a marker segment after the image data runs past the end is garbage.
    """
    size, position, scanned = len(data), 2, False  # after the start-of-image marker

    def ends_early():
        if scanned:
            return "corrupt", "a JPEG header over garbage: a marker segment runs past the end"
        return "truncated", "the JPEG data ends inside its headers"

    while True:
        if position >= size:
            return ends_early()
        if data[position] != 0xFF:
            return "corrupt", f"a JPEG header over garbage: no marker at byte {position}"
        while position < size and data[position] == 0xFF:  # fill bytes
            position += 1
        if position >= size:
            return ends_early()
        marker = data[position]
        position += 1
        if marker == 0xD9:
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a segment
            continue
        if marker < 0xC0 or marker == 0xD8:
            return "corrupt", f"a JPEG header over garbage: marker 0x{marker:02X} at {position}"
        if position + 2 > size:
            return ends_early()
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2:
            return "corrupt", f"a JPEG header over garbage: segment length {length} at {position}"
        position += length
        if marker == 0xDA:
            scanned = True
            # Entropy-coded data: 0xFF is followed by 0x00 (a stuffed byte) or a restart marker
            # inside it; anything else is the marker that ends it.
            while True:
                position = data.find(b"\xff", position)
                if position < 0 or position + 1 >= size:
                    return "truncated", "the JPEG image data ends before its end-of-image marker"
                following = data[position + 1]
                if following != 0x00 and not 0xD0 <= following <= 0xD7:
                    break
                position += 2


def output_extension(image_format, convert, extension):
    """The extension a file gets in the split folders: one that matches its bytes."""
    if convert:
        return ".png"
    allowed = PLAIN_EXTENSIONS[image_format]
    return extension if extension in allowed else allowed[0]


def to_rgb_png(data):
    """Re-encode an image as 8-bit RGB PNG (first frame; transparency over white)."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        image.load()
        if image.mode.startswith("I;16"):
            # 16-bit grey: keep the top byte, as TensorFlow does when it decodes to uint8.
            image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8))
        elif image.mode in ("I", "F"):
            raise ValueError(f"{image.mode} (32-bit) images are not supported")
        if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image.alpha_composite(rgba)
        rgb = image.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, "PNG")
    return buffer.getvalue()


def _claimed_format(data):
    for magic, name in MAGIC.items():
        if data.startswith(magic):
            return name
    return None


def _why_undecodable(data, image_format, error):
    """(reason, detail) for a file with a readable header whose image data fails to decode."""
    message = _first_line(error)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except OSError as pil_error:
        if "truncated" in str(pil_error):
            return "truncated", f"the image data is cut short ({message})"
    except (SyntaxError, ValueError, EOFError):
        pass
    return "corrupt", f"a {image_format} header over data that does not decode ({message})"


def _first_line(error):
    # TensorFlow prefixes its messages with the op's name in braces.
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__
