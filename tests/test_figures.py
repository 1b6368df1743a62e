"""Every figure renders to PNG, and class and experiment names are drawn as written, never as
mathtext or TeX (issue 12, finding 1)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from PIL import Image

from smallcnn import figures
from smallcnn.report import charts

# Mathtext with an unknown command, subscripts, superscripts and backslashes between dollars,
# an odd dollar, and markup.
HOSTILE = [
    r"dog $\notacommand{x}$",
    r"cat $x_1$",
    r"$2^{10}$ birds",
    r"$\alpha$ \beta",
    "price $5",
    "<script>alert(1)</script>",
]


def render(fig, tmp_path, name):
    """Save through the report's writer; returns the figure's Text objects after drawing."""
    saved = figures.FigureWriter(tmp_path).save(fig, "test", name, alt=name)
    with Image.open(saved.path) as image:
        assert image.format == "PNG" and min(image.size) > 50
    assert saved.uri.startswith("data:image/png;base64,")
    return fig.findobj(Text)


def assert_literal(texts, expected):
    """Each expected string is the whole text of some Text drawn with mathtext and TeX off."""
    for value in expected:
        found = [text for text in texts if text.get_text() == value]
        assert found, f"no text {value!r} among {[t.get_text() for t in texts]}"
        for text in found:
            assert text.get_parse_math() is False, value
            assert text.get_usetex() is False, value


def test_confusion_matrix_draws_class_names_and_title_literally(tmp_path):
    matrix = np.arange(len(HOSTILE) ** 2).reshape(len(HOSTILE), -1)
    fig = figures.confusion_matrix(matrix, HOSTILE, HOSTILE[0])
    texts = render(fig, tmp_path, "confusion")
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == HOSTILE
    assert [label.get_text() for label in ax.get_yticklabels()] == HOSTILE
    assert_literal(texts, HOSTILE)


def test_confusion_heatmap_labels_forty_classes_literally(tmp_path):
    names = HOSTILE + [f"breed {k}" for k in range(40 - len(HOSTILE))]
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (40, 40)) + np.diag(rng.integers(5, 30, 40))
    matrix[3] = 0  # a class absent from the test set: its row stays blank, not NaN
    fig = figures.confusion_heatmap(matrix, names, HOSTILE[1])
    texts = render(fig, tmp_path, "heatmap")
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == names
    assert [label.get_text() for label in ax.get_yticklabels()] == names
    assert_literal(texts, [*names, HOSTILE[1]])
    shares = ax.get_images()[0].get_array()
    assert np.allclose(shares.sum(axis=1), [0 if k == 3 else 1 for k in range(40)])


def test_accuracy_chart_draws_experiment_names_literally(tmp_path):
    rows = [
        {
            "name": name,
            "accuracy": 0.7,
            "ci_low": 0.6,
            "ci_high": 0.8,
            "seed_accuracies": [0.65, 0.75],
            "book": None,
        }
        for name in HOSTILE
    ]
    rows[0]["book"] = 0.71
    texts = render(charts.accuracy_chart(rows), tmp_path, "accuracy")
    assert_literal(texts, HOSTILE)


def test_learning_curves_title_is_literal(tmp_path):
    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "accuracy": [0.5, 0.6, 0.7],
            "loss": [0.7, 0.6, 0.5],
            "val_accuracy": [0.5, 0.55, 0.6],
            "val_loss": [0.7, 0.65, 0.6],
        }
    )
    title = f"{HOSTILE[0]}: 2 seeds, kept epoch 2 of 3, 3 of 3"
    runs = [
        SimpleNamespace(seed=seed, history=history, metrics={"best_epoch": 2}) for seed in (1, 2)
    ]
    texts = render(charts.learning_curves(runs, title), tmp_path, "curves")
    assert_literal(texts, [title])


def test_image_grid_captions_are_literal(tmp_path):
    images = [np.full((16, 16, 3), 40 * k, dtype=np.uint8) for k in range(len(HOSTILE))]
    captions = [f"{name} as {HOSTILE[0]}\np=0.97" for name in HOSTILE]
    texts = render(figures.image_grid(images, captions, columns=3), tmp_path, "grid")
    assert_literal(texts, captions)


def test_mathtext_would_fail_on_the_hostile_name(tmp_path):
    """The premise of the tests above: drawn as matplotlib does by default, the name breaks."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title(HOSTILE[0])
    with pytest.raises(ValueError, match="notacommand"):
        fig.savefig(tmp_path / "default.png")
    plt.close(fig)
