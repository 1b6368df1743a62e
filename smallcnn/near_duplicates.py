"""Near-duplicates: the same photo saved again at another size, JPEG quality or brightness.

Every usable image gets a 64-bit perceptual hash of its pixels; images whose hashes differ in at
most `max_distance` bits are one group (transitively), and a group is one photo: prepare keeps
its largest image and marks the others `near_duplicate`, or, when the group carries two labels,
excludes every image as a `label_conflict`.

The hash is pHash (the DCT hash of Zauner 2010), bit for bit as the `imagehash` package computes
it (the tests compare the two): the sign of each of the 8x8 lowest-frequency DCT coefficients of
a 32x32 grey thumbnail (plain Lanczos) against their median. Resizing and re-encoding change
mostly high frequencies, which it ignores; a brightness change moves the DC coefficient, which
stays above the median either way. A difference hash (dHash) is as cheap but compares
neighbouring pixels of a 9x8 thumbnail, where in flat regions (sky, a wall) JPEG noise alone can
flip a bit (not measured here). On the 4,000 real photos, decoded as prepare decodes them, copies
resized to 0.5x or 0.8x or re-encoded at quality 60 moved at most 4 bits (99% at most 2), 10%
brighter at most 6 (99% at most 4), 20% brighter up to 10 (22 photos beyond 6); the closest two
different photos were 10 bits apart (measured 2026-12-01, issue 21).
Its weakness: synthetic images that differ mostly in fine detail (the demo's stripes) hash alike.
"""

import base64
import io

import numpy as np
from PIL import Image

HASH_NAME = "pHash (64-bit DCT hash)"
THUMB_SIDE = 32
LOW = 8
EXAMPLES = 6
EXAMPLE_THUMBNAIL = 120
# Pair search works on blocks of rows against every later hash; this bounds one block's matrix
# of XORs (8 bytes each) to about 32 MB.
BLOCK_ELEMENTS = 4_000_000

_n = np.arange(THUMB_SIDE)
# The DCT-II basis, unnormalised: only the signs against the median matter, not the scale.
_DCT = np.cos(np.pi * (2 * _n[None, :] + 1) * _n[:LOW, None] / (2 * THUMB_SIDE))


def perceptual_hash(pixels):
    """pHash of a decoded uint8 (height, width, 3) image, as an int of 64 bits."""
    grey = Image.fromarray(np.ascontiguousarray(pixels)).convert("L")
    # Plain Lanczos, as imagehash resizes. PIL's reducing_gap shortcut (a box reduction first)
    # took 0.35 ms instead of 0.55 ms per real photo (decoding one takes 1.7 ms), but moved up to
    # 14 bits of random 1200x900 images, so it was not pHash there.
    thumb = grey.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    small = np.asarray(thumb, float)
    # Rounded: coefficients that are zero (every one but the first of a flat image, half of them
    # for stripes or a centred box) come out of the float products as +-1e-13 noise, whose signs
    # against a median of zero made up bits that imagehash does not have. Real coefficients are
    # whole pixel sums, far from 1e-6.
    low = np.round(_DCT @ small @ _DCT.T, 6)
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def close_pairs(hashes, max_distance):
    """(i, j, distance) arrays of every pair i < j whose hashes differ in at most max_distance
    bits. Vectorised popcount over blocks: 25,000 hashes are 312 million pairs, about a second."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    firsts, seconds, distances = [np.empty(0, int)], [np.empty(0, int)], [np.empty(0, int)]
    block = max(1, BLOCK_ELEMENTS // max(n, 1))
    for start in range(0, n, block):
        # Each row of the block against itself and every later hash: each pair is seen once.
        bits = np.bitwise_count(hashes[start : start + block, None] ^ hashes[None, start:])
        rows, columns = np.nonzero(bits <= max_distance)
        later = columns > rows
        rows, columns = rows[later], columns[later]
        firsts.append(rows + start)
        seconds.append(columns + start)
        distances.append(bits[rows, columns].astype(int))
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)


def components(n, first, second):
    """Connected components of the graph with edges first[k]-second[k]: each node's label is the
    smallest node of its component. Vectorised label propagation with pointer jumping, so that a
    loose threshold that links millions of pairs cannot stall in a Python loop."""
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[first], labels[second])
        previous = labels.copy()
        np.minimum.at(labels, first, low)
        np.minimum.at(labels, second, low)
        while not np.array_equal(labels, labels[labels]):
            labels = labels[labels]
        if np.array_equal(labels, previous):
            return labels


def mark(rows, max_distance):
    """Group the usable rows (status "ok", with a "phash") by hash distance and mark them.

    Sets "group" (the file name of the group's largest image) on every member, and status
    "near_duplicate" or "label_conflict" as the module says. Returns the groups as lists of rows,
    largest image first, each row with "distance" (bits from that image) added.
    """
    usable = [row for row in rows if row.get("status") == "ok" and row.get("phash")]
    hashes = np.array([int(row["phash"], 16) for row in usable], dtype=np.uint64)
    first, second, _ = close_pairs(hashes, max_distance)
    labels = components(len(usable), first, second)
    members = {}
    for index in np.unique(np.concatenate([first, second])):
        members.setdefault(labels[index], []).append(usable[index])
    groups = []
    for group in members.values():
        # The largest image carries the most detail; bytes, then the name, break ties stably.
        group.sort(
            key=lambda row: (
                -int(row["width"]) * int(row["height"]),
                -int(row["bytes"]),
                row["file"],
            )
        )
        kept = group[0]
        for row in group:
            row["group"] = kept["file"]
            row["distance"] = hamming(row["phash"], kept["phash"])
        labels_seen = sorted({row["label"] for row in group})
        if len(labels_seen) > 1:
            for row in group:
                others = [r["file"] for r in group if r is not row][:EXAMPLES]
                row.update(
                    status="label_conflict",
                    detail=f"near-duplicates labelled {' and '.join(labels_seen)}: "
                    + ", ".join(others),
                )
        else:
            for row in group[1:]:
                row.update(
                    status="near_duplicate",
                    detail=f"the same photo as {kept['file']} ({row['distance']} bits apart)",
                )
        groups.append(group)
    groups.sort(key=lambda group: group[0]["file"])
    return groups


def hamming(first, second):
    return (int(first, 16) ^ int(second, 16)).bit_count()


def summary(groups, enabled, max_distance, read):
    """What the report shows: counts and up to EXAMPLES pairs with thumbnails. `read(file)`
    returns a file's bytes. The pairs shown are the farthest apart, the ones worth a look."""
    pairs = sorted(
        ((group[0], max(group[1:], key=lambda row: row["distance"])) for group in groups),
        key=lambda pair: (-pair[1]["distance"], pair[0]["file"]),
    )
    return {
        "enabled": enabled,
        "hash": HASH_NAME,
        "max_distance": max_distance,
        "n_groups": len(groups),
        "n_images": sum(len(group) for group in groups),
        "n_near_duplicate": sum(
            row["status"] == "near_duplicate" for group in groups for row in group
        ),
        "n_label_conflict_groups": sum(group[0]["status"] == "label_conflict" for group in groups),
        "examples": [
            {
                "distance": other["distance"],
                "images": [_example(row, read) for row in (kept, other)],
            }
            for kept, other in pairs[:EXAMPLES]
        ],
    }


def _example(row, read):
    with Image.open(io.BytesIO(read(row["file"]))) as image:
        image.seek(0)
        thumbnail = image.convert("RGB")
    thumbnail.thumbnail((EXAMPLE_THUMBNAIL, EXAMPLE_THUMBNAIL))
    buffer = io.BytesIO()
    thumbnail.save(buffer, "PNG")
    return {
        "file": row["file"],
        "label": row["label"],
        "status": row["status"],
        "size": f"{row['width']}x{row['height']}",
        "thumbnail": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }
