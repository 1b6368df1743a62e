"""The per-class report section: a table for few classes; for many a heatmap, the most frequent
confusions and the recall per class worst first, from fabricated results of a 40-class problem."""

from pathlib import Path

import jinja2
import numpy as np
import pytest
from PIL import Image
from test_report import Page

from smallcnn.errors import UserError
from smallcnn.figures import FigureWriter
from smallcnn.report import classes as report_classes

TEMPLATES = Path(report_classes.__file__).parents[1] / "templates"
SCRIPT = "<script>alert(1)</script>"
MATH = r"dog $\notacommand{x}$"


def forty_classes():
    """40 classes, 20 right each, with known errors: class k (0-11) taken for k+5 30-k times;
    one image of 20-29 taken for class 0; class 35 absent from the test set; class 39 never
    predicted (its 5 images all taken for 38)."""
    names = [f"breed {k:02d}" for k in range(40)]
    names[0], names[5] = SCRIPT, MATH
    matrix = np.diag(np.full(40, 20))
    for k in range(12):
        matrix[k, k + 5] = 30 - k
    matrix[20:30, 0] = 1
    matrix[35, 35] = 0
    matrix[39, 39] = 0
    matrix[39, 38] = 5
    return names, matrix


def render(section):
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.from_string(
        '{% from "classes.html.j2" import class_section %}{{ class_section(section) }}'
    )
    return template.render(section=section)


def test_top_confusions_by_hand_with_ties_in_class_order():
    matrix = [[5, 2, 3], [4, 6, 0], [2, 0, 1]]
    assert report_classes.top_confusions(matrix, ["a", "b", "c"], count=4) == [
        {"true": "b", "predicted": "a", "count": 4, "share": 0.4},
        {"true": "a", "predicted": "c", "count": 3, "share": 0.3},
        {"true": "a", "predicted": "b", "count": 2, "share": 0.2},
        {"true": "c", "predicted": "a", "count": 2, "share": 2 / 3},
    ]
    assert len(report_classes.top_confusions(matrix, ["a", "b", "c"], count=2)) == 2
    assert report_classes.top_confusions(np.diag([3, 4]), ["a", "b"]) == []


def test_recall_worst_first_puts_classes_absent_from_the_test_set_last():
    matrix = [[1, 3, 0], [0, 0, 0], [0, 1, 1]]
    rows = report_classes.recall_worst_first(matrix, ["a", "absent", "c"])
    assert [(row["class"], row["recall"]) for row in rows] == [
        ("a", 0.25),
        ("c", 0.5),
        ("absent", None),
    ]


def test_forty_classes_get_a_heatmap_the_top_confusions_and_recall_worst_first(tmp_path):
    names, matrix = forty_classes()
    metrics = {"confusion_matrix": matrix.tolist(), "class_names": names}
    section = report_classes.class_section("scratch", metrics, FigureWriter(tmp_path))
    assert section["many"] and section["rows"] == []
    with Image.open(tmp_path / "confusion" / "scratch.png") as image:
        assert image.format == "PNG" and min(image.size) > 500

    html = render(section)
    page = Page(html)
    assert "confusion-scratch" not in page.tables  # no 40x40 table of counts
    [image] = page.images
    assert image["src"] == section["figure"].uri
    assert image["alt"].startswith("Confusion matrix of scratch over 40 classes as a heatmap")
    assert f"the most frequent confusion is {SCRIPT} taken for {MATH} (30 images)" in image["alt"]

    top = page.tables["top-confusions-scratch"]
    assert [row[:3] for row in top] == [[names[k], names[k + 5], str(30 - k)] for k in range(10)]
    assert top[0][3] == "60.0%"  # 30 of class 0's 50 test images

    recall = page.tables["class-recall-scratch"]
    assert len(recall) == 40
    # Class 39 never predicted: recall 0, precision n/a; then k = 0-11 with 20 of 50-k right.
    assert recall[0] == ["breed 39", "0.0%", "5", "n/a", "0.0%"]
    assert [row[0] for row in recall[1:13]] == names[:12]
    assert recall[1][1] == "40.0%"
    assert recall[-1] == ["breed 35", "n/a", "0", "n/a", "n/a"]
    values = [float(row[1].rstrip("%")) for row in recall[:-1]]
    assert values == sorted(values)

    # Class names are data: escaped in HTML, literal in the alt text.
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize(("n", "many"), [(3, False), (10, False), (11, True)])
def test_a_table_up_to_ten_classes_a_heatmap_above(tmp_path, n, many):
    names = [f"c{k}" for k in range(n)]
    names[0] = SCRIPT
    matrix = np.diag(np.arange(1, n + 1)) + 1
    metrics = {"confusion_matrix": matrix.tolist(), "class_names": names}
    section = report_classes.class_section("augmented", metrics, FigureWriter(tmp_path))
    page = Page(render(section))
    assert section["many"] is many
    assert ("confusion-augmented" in page.tables) is not many
    assert ("top-confusions-augmented" in page.tables) is many
    assert (tmp_path / "confusion" / "augmented.png").is_file()
    if not many:
        rows = page.tables["confusion-augmented"]
        assert [row[0] for row in rows] == names
        assert [[int(cell) for cell in row[1:]] for row in rows] == [
            [*matrix[i], matrix[i].sum()] for i in range(n)
        ]
        assert page.images == []


def test_a_matrix_that_does_not_fit_the_classes_is_a_user_error(tmp_path):
    metrics = {"confusion_matrix": [[1, 2], [3, 4]], "class_names": ["a", "b", "c"]}
    with pytest.raises(UserError, match="2x2 but it has 3 classes"):
        report_classes.class_section("scratch", metrics, FigureWriter(tmp_path))
