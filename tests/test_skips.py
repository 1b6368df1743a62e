"""A test that lacks a tool or data set skips and says why, except in CI, where it fails: a
missing binary there would otherwise pass a broken feature off as a skip."""

import os
import subprocess
import sys

import pytest
from conftest import REPO

EXAMPLE = """
import pytest
from conftest import needs, skip_or_fail

@needs("frobnicator is missing (Debian package frobnicator)")
def test_needs_a_missing_tool():
    raise AssertionError("ran although the tool is missing")

@needs(None)
def test_needs_what_is_there():
    pass

def test_lacks_its_data():
    skip_or_fail("the data set is absent")
"""


def run_example(tmp_path, ci):
    (tmp_path / "test_example.py").write_text(EXAMPLE)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    # The real tests/conftest.py, loaded as a plugin, so that its hooks apply to the example.
    env["PYTHONPATH"] = str(REPO / "tests")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-rA", "-p", "no:cacheprovider"]
        + ["--rootdir", str(tmp_path), str(tmp_path / "test_example.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    return result.returncode, result.stdout


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_outside_ci_a_missing_requirement_skips_with_the_reason(tmp_path, ci):
    status, out = run_example(tmp_path, ci)
    assert status == 0, out
    assert "1 passed, 2 skipped" in out
    assert "frobnicator is missing (Debian package frobnicator)" in out
    assert "the data set is absent" in out


def test_in_ci_a_missing_requirement_fails_with_the_reason(tmp_path):
    status, out = run_example(tmp_path, "true")
    assert status == 1, out
    # Failed in the test body, or at setup (an error) for a mark checked before the fixtures.
    assert "1 failed, 1 passed, 1 error" in out, out
    assert "Failed: frobnicator is missing (Debian package frobnicator) (CI is set" in out
    assert "Failed: the data set is absent (CI is set" in out
    assert "ran although the tool is missing" not in out
