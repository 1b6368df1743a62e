"""Code identity: a script's hash changes with exactly the smallcnn modules it reaches."""

import shutil
from pathlib import Path

import pytest

from smallcnn import codehash

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cold_cache():
    """Every test parses afresh: _parse caches by content, and a result cached by an earlier test
    (or by mutmut's first run of the suite) would hide what the parser does with that source."""
    codehash._parse.cache_clear()


@pytest.fixture
def checkout(tmp_path):
    """A copy of this checkout's scripts and smallcnn package, free to edit."""
    skip = shutil.ignore_patterns("__pycache__")
    for folder in ("scripts", "smallcnn"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=skip)
    return tmp_path


def hashes(root):
    return {
        script.stem: codehash.code_hash(script.relative_to(root), root)
        for script in sorted((root / "scripts").glob("*.py"))
    }


def changed_by(root, relative, text="\n# an edit\n"):
    before = hashes(root)
    with open(root / relative, "a", encoding="utf-8") as stream:
        stream.write(text)
    after = hashes(root)
    return {name for name in before if before[name] != after[name]}


def test_every_module_changes_exactly_the_scripts_that_reach_it(checkout):
    reaches = {
        script.stem: set(codehash.code_files(script, checkout))
        for script in (checkout / "scripts").glob("*.py")
    }
    for module in sorted((checkout / "smallcnn").rglob("*.py")):
        expected = {name for name, files in reaches.items() if module in files}
        assert changed_by(checkout, module.relative_to(checkout)) == expected, module


def test_models_reruns_the_model_jobs_and_not_the_data_stage(checkout):
    changed = changed_by(checkout, "smallcnn/models.py")
    # report builds the augmentation examples with models, inside a function.
    assert {"train", "evaluate", "extract_features", "fetch_weights", "report"} <= changed
    assert not changed & {"prepare", "split", "download", "make_demo"}


def test_report_module_reruns_only_the_report(checkout):
    report = checkout / "smallcnn" / "report.py"
    if not report.exists():  # the report as a package
        report = checkout / "smallcnn" / "report" / "__init__.py"
    assert changed_by(checkout, report.relative_to(checkout)) == {"report"}


def test_declared_templates_belong_to_the_report(checkout):
    report = checkout / "smallcnn" / "report.py"
    if not report.exists():
        report = checkout / "smallcnn" / "report" / "__init__.py"
    if "PACKAGE_DATA" not in report.read_text():
        with open(report, "a", encoding="utf-8") as stream:
            stream.write('\nPACKAGE_DATA = ("templates/*",)\n')
    template = next((checkout / "smallcnn" / "templates").iterdir())
    assert changed_by(checkout, template.relative_to(checkout), "\n{# an edit #}\n") == {"report"}


def test_every_form_of_import_is_followed(tmp_path):
    package = tmp_path / "smallcnn"
    (package / "sub").mkdir(parents=True)
    (package / "sub2").mkdir()
    modules = {
        "__init__.py": "",
        "a.py": "",
        "b.py": "",
        "c.py": "from . import d\n",  # relative, from a module
        "d.py": "",
        "e.py": "",
        "f.py": "",
        "g.py": "",
        "sub/__init__.py": "from .h import name\n",  # relative, from a package's __init__
        "sub/h.py": "from ..e import name\n",  # two levels up
        "sub/i.py": "",
        "sub2/__init__.py": "from .. import j\n",  # one level up, from a package's __init__
        "j.py": "",
        "unused.py": "",
        "data.txt": "",
    }
    for name, text in modules.items():
        (package / name).write_text(text)
    (package / "a.py").write_text('PACKAGE_DATA = (\n    "data.txt",\n)\n')
    script = tmp_path / "scripts" / "job.py"
    script.parent.mkdir()
    script.write_text(
        '"""Reads\nfrom the cache, then\nimport smallcnn.unused is only prose."""\n'
        "import os\n"
        "from smallcnn import a, b as bee\n"
        "from smallcnn.c import something\n"
        "from smallcnn.f import (\n"
        "    one,\n"
        "    two,  # a comment (with a bracket\n"
        ")\n"
        "import smallcnn.sub.i as i\n"
        "import smallcnn.sub2\n"
        "\n"
        "def later():\n"
        "    from smallcnn import g\n"
        "    return g\n"
    )
    found = {p.relative_to(tmp_path).as_posix() for p in codehash.code_files(script, tmp_path)}
    # unused.py is named in the docstring only, as a line "import smallcnn.unused is ...",
    # which is not a statement.
    assert found == {
        "scripts/job.py",
        *(f"smallcnn/{name}" for name in modules if name != "unused.py"),
    }


def test_a_pattern_that_matches_nothing_is_an_error(tmp_path):
    (tmp_path / "smallcnn").mkdir()
    (tmp_path / "smallcnn" / "__init__.py").write_text('PACKAGE_DATA = ("templates/*.j2",)\n')
    (tmp_path / "job.py").write_text("import smallcnn\n")
    with pytest.raises(ValueError, match=r"'templates/\*.j2' matches no file"):
        codehash.code_hash("job.py", tmp_path)


def test_the_hash_does_not_depend_on_where_the_checkout_is(checkout, tmp_path_factory):
    moved = tmp_path_factory.mktemp("elsewhere")
    for folder in ("scripts", "smallcnn"):
        shutil.copytree(checkout / folder, moved / folder)
    assert hashes(moved) == hashes(checkout)


def test_hashing_every_script_parses_each_module_once():
    """What keeps a DAG build cheap: the scripts share most modules, and each is parsed once,
    however many scripts import it (only its import statements, see codehash._parse)."""
    codehash._parse.cache_clear()
    hashes(REPO)
    modules = {
        path
        for script in (REPO / "scripts").glob("*.py")
        for path in codehash.code_files(script.relative_to(REPO), REPO)
        if path.suffix == ".py"
    }
    info = codehash._parse.cache_info()
    assert info.misses == len(modules)
    assert info.hits > len(modules)


def test_a_relative_import_in_a_script_is_an_error(tmp_path):
    (tmp_path / "smallcnn").mkdir()
    (tmp_path / "smallcnn" / "__init__.py").write_text("")
    # On line 4, after a blank first line and before more code: counted from the top.
    (tmp_path / "job.py").write_text("\nimport os\nimport sys\nfrom . import helpers\nx = 1\n")
    with pytest.raises(ValueError, match="^relative import outside the smallcnn package: line 4$"):
        codehash.code_hash("job.py", tmp_path)


def test_package_data_must_be_a_tuple_of_globs(tmp_path):
    (tmp_path / "smallcnn" / "templates").mkdir(parents=True)
    (tmp_path / "smallcnn" / "templates" / "page.j2").write_text("")
    (tmp_path / "job.py").write_text("import smallcnn\n")
    for value in ('"templates/*"', '("templates/*", 3)', "TEMPLATES"):
        (tmp_path / "smallcnn" / "__init__.py").write_text(f"PACKAGE_DATA = {value}\n")
        codehash._parse.cache_clear()
        with pytest.raises(ValueError, match="^smallcnn: PACKAGE_DATA must be a tuple of glob"):
            codehash.code_hash("job.py", tmp_path)


def test_a_missing_script_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"job\.py: no such script to hash$"):
        codehash.code_hash("job.py", tmp_path)


def test_a_script_outside_the_checkout_is_hashed_by_its_name_and_content(tmp_path):
    (tmp_path / "checkout" / "smallcnn").mkdir(parents=True)
    (tmp_path / "checkout" / "smallcnn" / "__init__.py").write_text("")
    script = tmp_path / "elsewhere" / "job.py"
    script.parent.mkdir()
    script.write_text("import smallcnn\n")
    first = codehash.code_hash(script, tmp_path / "checkout")
    script.write_text("import smallcnn  # edited\n")
    assert codehash.code_hash(script, tmp_path / "checkout") != first


def test_a_data_file_moved_to_another_declared_folder_changes_the_hash(tmp_path):
    """Same bytes, same file name, another folder (the files in the same order): the code is
    not the same."""
    (tmp_path / "smallcnn" / "templates").mkdir(parents=True)
    (tmp_path / "smallcnn" / "themes").mkdir()
    (tmp_path / "smallcnn" / "__init__.py").write_text(
        'PACKAGE_DATA = ("templates/*", "themes/*")\n'
    )
    (tmp_path / "job.py").write_text("import smallcnn\n")
    (tmp_path / "smallcnn" / "templates" / "page.j2").write_text("{{ body }}")
    (tmp_path / "smallcnn" / "templates" / "base.j2").write_text("<html>")
    (tmp_path / "smallcnn" / "themes" / "z.css").write_text("body {}")
    first = codehash.code_hash("job.py", tmp_path)
    (tmp_path / "smallcnn" / "templates" / "page.j2").rename(
        tmp_path / "smallcnn" / "themes" / "page.j2"
    )
    assert codehash.code_hash("job.py", tmp_path) != first


def test_the_hash_of_unchanged_code_stays_as_released(tmp_path):
    """Every rule carries this hash in its params: a new value reruns every job of every user,
    so a change to what is hashed, or how, must be deliberate (then update the value)."""
    (tmp_path / "smallcnn").mkdir()
    (tmp_path / "smallcnn" / "__init__.py").write_text("")
    (tmp_path / "smallcnn" / "stats.py").write_text("import math\n")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "job.py").write_text("from smallcnn import stats\n")
    assert codehash.code_hash("scripts/job.py", tmp_path) == "9a55e12917df"
