"""The report's figures: matplotlib charts and image thumbnails, as PNG files and data URIs."""

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

# No display on cluster nodes or in CI: render off-screen.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

TRAIN_COLOUR = "#1f77b4"
VALIDATION_COLOUR = "#d62728"
BEST_COLOUR = "#2ca02c"
LR_COLOUR = "#7f7f7f"
BOOK_COLOUR = "#ff7f0e"
DPI = 100
# Class names are folder names and experiment names come from the config: matplotlib would read
# `$...$` in them as mathtext (and any text as TeX under rcParams text.usetex) and fail on an
# unknown command or draw something else. Every text that may hold such a name is drawn with
# these properties, so that it renders as written.
LITERAL = {"parse_math": False, "usetex": False}
# A many-class heatmap: inches per class, within bounds on the side of its matrix in inches.
HEATMAP_CELL = 0.14
HEATMAP_SIDE = (4.0, 20.0)


@dataclass
class Figure:
    """One rendered figure: what the report embeds and what Snakemake's report picks up."""

    uri: str
    alt: str
    path: Path | None


def png_data_uri(png: bytes):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def jpeg_data_uri(jpeg: bytes):
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


class FigureWriter:
    """Renders figures to PNG, writes them under `directory/<section>/<name>.png` (when given)
    for `snakemake --report`, and returns them as data URIs for the self-contained HTML."""

    def __init__(self, directory=None):
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def save(self, fig, section, name, alt):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        return self.save_png(buffer.getvalue(), section, name, alt)

    def save_png(self, png, section, name, alt):
        path = None
        if self.directory is not None:
            path = self.directory / section / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
        return Figure(uri=png_data_uri(png), alt=alt, path=path)


def confusion_matrix(matrix, class_names, title):
    matrix = np.asarray(matrix)
    size = 1.2 + 0.5 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", **LITERAL)
    ax.set_yticks(ticks, class_names, **LITERAL)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(
            col,
            row,
            str(value),
            ha="center",
            va="center",
            color="white" if value > threshold else "black",
        )
    ax.set_title(title, fontsize=10, **LITERAL)
    fig.tight_layout()
    return fig


def confusion_heatmap(matrix, class_names, title):
    """A confusion matrix of many classes as a heatmap, every class labelled, no counts drawn.

    Each row is shown as shares of its true class, so that a small class's errors stand out as
    clearly as a large one's; the diagonal is then the per-class recall.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = float(np.clip(HEATMAP_CELL * n, *HEATMAP_SIDE))
    fontsize = float(np.clip(side / max(n, 1) * 72 * 0.75, 3, 8))
    # Room for the longest class name, so that tight_layout need not shrink the matrix for it.
    margin = 0.6 + 0.55 * fontsize / 72 * max((len(name) for name in class_names), default=0)
    fig, ax = plt.subplots(figsize=(side + margin + 1.4, side + margin + 0.5))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ticks = np.arange(n)
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=fontsize, **LITERAL)
    ax.set_yticks(ticks, class_names, fontsize=fontsize, **LITERAL)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("share of the true class")
    ax.set_title(title, fontsize=10, **LITERAL)
    fig.tight_layout()
    return fig


def image_grid(images, captions, columns):
    """Images (uint8 arrays) in a grid with a caption above each."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions, strict=False):
        ax.imshow(image)
        ax.set_title(caption, fontsize=8, **LITERAL)
    fig.tight_layout()
    return fig


def thumbnail(path, size):
    """The image at `path` in RGB, shrunk to fit in size x size pixels."""
    with Image.open(path) as image:
        small = image.convert("RGB")
        small.thumbnail((size, size))
    return small


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def jpeg_bytes(image, quality=85):
    """A PIL image as JPEG: a photo thumbnail in a quarter of a PNG's bytes."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
