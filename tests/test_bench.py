"""Smoke tests of the benchmarks on tiny inputs: they run and report what they promise.

No timing is asserted here: speed is measured by bench/speed.py itself, on a quiet machine.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"

RATIO_KEYS = (
    "feature_extraction_speedup",
    "feature_extraction_vs_compute_bound",
    "feature_extraction_vs_compute_bound_fastest",
    "augmented_epoch_time_ratio",
    "augmented_epoch_vs_compute_bound",
)


@pytest.mark.slow
def test_speed_quick_on_tiny_generated_images_writes_every_key(tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "speed.py"),
            "--quick",
            "--images",
            "8",
            "--size",
            "48",
            "--repeats",
            "1",
            "--epochs",
            "1",
            # A path that does not exist: the benchmark generates its images instead.
            "--data",
            str(tmp_path / "absent.zip"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    for key in RATIO_KEYS:
        assert report[key] > 0, key
        assert key in report["targets_met"]
        assert key in result.stdout
    assert report["data"].startswith("generated")
    assert report["precision"]["book"] == "float32"
    assert report["precision"]["pipeline_and_compute_bound"] in ("float32", "mixed_bfloat16")
    assert report["machine"]["cpu_model"] and report["machine"]["date"]
    assert "avx512_bf16" in report["machine"]["cpu_flags"]
    assert set(report["augmented_epoch"]) == {"book", "pipeline", "compute_bound"}
    assert set(report["feature_extraction"]) == {"book", "pipeline", "compute_bound", "input_only"}
    assert 0 < report["feature_extraction"]["pipeline"]["median_cores_busy"] <= 2 * os.cpu_count()
    for variant in report["feature_extraction"].values():
        assert variant["images"] == 8 and variant["images_per_second"] > 0
    memory = report["memory"]
    assert memory["images_4n"] == 4 * memory["images_n"] == 32
    assert memory["peak_rss_mb_n"] > 0 and memory["peak_rss_mb_4n"] > 0


def test_bench_config_is_a_valid_pipeline_config_in_every_mode():
    sys.path.insert(0, str(BENCH))
    try:
        import accuracy
    finally:
        sys.path.remove(str(BENCH))
    from snakemake.utils import validate

    defaults = yaml.safe_load((REPO / "config.yaml").read_text())
    for mode in ("cpu", "full", "smoke"):
        config = accuracy.bench_config(mode)
        assert Path(config["data"]["path"]).is_absolute()
        assert Path(config["conv_base"]["weights"]).is_absolute()
        merged = _merge(defaults, config)
        validate(merged, str(REPO / "schemas" / "config.schema.yaml"))
        if mode == "full":
            assert merged["training"] == defaults["training"]
        else:
            assert merged["training"]["frozen"]["epochs"] < defaults["training"]["frozen"]["epochs"]


def _merge(base, update):
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def test_fingerprint_bench_times_each_mode_on_a_zip_and_a_folder(tmp_path):
    out = tmp_path / "fingerprint.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "fingerprint.py"),
            "--zip",
            str(tmp_path / "absent.zip"),
            "--files",
            "30",
            "--rounds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [name.split()[0] for name in report["results"]] == ["zip", "folder"]
    for cases in report["results"].values():
        assert list(cases) == ["metadata", "content_cold", "content_warm"]
        assert all(case["wall_s"] >= 0 and case["cpu_s"] >= 0 for case in cases.values())
    assert "| folder (30 files" in result.stdout and report["load_average_before"]
