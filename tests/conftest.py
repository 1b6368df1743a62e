"""Shared test helpers: generated image folders and a Snakemake runner on a scratch directory."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BIN = Path(sys.executable).parent


def in_ci():
    """True under continuous integration, which sets CI (GitHub, GitLab and most others: "true")."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason):
    """Skip a test that lacks a tool or data set, saying which; in CI, fail it instead, so that
    a missing binary cannot pass a broken feature off as a skip."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: what CI lacks is a failure there, not a skip)")
    pytest.skip(reason)


def needs(missing):
    """Mark for tests that need something this machine may lack: `missing` says what is
    missing and why, or is None when nothing is. Checked before any fixture runs (see
    pytest_runtest_setup), so that a test does not build its inputs only to skip."""
    return pytest.mark.needs(missing)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(missing): skip, or fail in CI, when missing is set")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        if mark.args[0] is not None:
            skip_or_fail(mark.args[0])


def make_class_images(root, classes=("cat", "dog"), per_class=10, size=(48, 48), seed=0, ext="jpg"):
    """Write `<root>/<class>/<i>.<ext>`: class k is a bright square at a class-specific place,
    so that a small convnet can tell the classes apart. Returns the list of paths."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    paths = []
    for k, label in enumerate(classes):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (size[1], size[0], 3), dtype=np.uint8)
            side = size[0] // 3
            x0 = (k * side) % (size[0] - side)
            y0 = rng.integers(0, size[1] - side)
            pixels[y0 : y0 + side, x0 : x0 + side] = 220
            path = root / label / f"{i}.{ext}"
            Image.fromarray(pixels).save(path)
            paths.append(path)
    return paths


def tree_digest(root):
    """Every file under root with its sha256: to prove a source was left as it was."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_snakemake(
    workdir, targets, config=None, configfiles=(), args=(), check=True, timeout=1800, env=None
):
    """Run this repository's workflow in `workdir`.

    `configfiles` and then the dict `config` are merged over config.yaml, in that order (pass
    config files here, not in `args`: a second --configfile option would replace the first).
    `env`: the environment (default: this process's), with this virtualenv first on PATH.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--show-failed-logs",
        # Targets before options: several options (--configfile, --forcerun) take many values.
        *targets,
        *args,
    ]
    configfiles = [str(path) for path in configfiles]
    if config is not None:
        configfile = workdir / "test-config.yaml"
        configfile.write_text(yaml.safe_dump(config))
        configfiles.append(str(configfile))
    if configfiles:
        command += ["--configfile", *configfiles]
    env = dict(os.environ if env is None else env)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n"
            f"{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
        )
    return result


def files_holding(secrets, paths):
    """The files under `paths` (files or folders) whose bytes contain any of `secrets`: where a
    credential was recorded."""
    found = []
    for path in map(Path, paths):
        for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if item.is_file() and not item.is_symlink():
                data = item.read_bytes()
                if any(secret.encode() in data for secret in secrets):
                    found.append(item)
    return found


@pytest.fixture
def shared_data():
    """The real 4,000-photo zip from ../shared, or a skip (a failure in CI) saying why."""
    path = SHARED / "data" / "dogs-vs-cats-4000.zip"
    if not path.exists():
        skip_or_fail(f"{path} is absent (../shared is not beside the project)")
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The offline demo (config/demo.yaml) run once to results/report.html for the whole session.

    Tests that only inspect what the demo produced share this run instead of training again.
    Returns the working directory holding results/, logs/ and benchmarks/.
    """
    workdir = tmp_path_factory.mktemp("demo")
    run_snakemake(workdir, ["results/report.html"], configfiles=[REPO / "config" / "demo.yaml"])
    return workdir
