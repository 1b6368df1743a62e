"""The weights id a job gets where the weights file is not (smallcnn/object_storage.py)."""

import os
from types import SimpleNamespace

import pytest

from smallcnn import object_storage
from smallcnn.errors import UserError
from smallcnn.experiments import weights_id


def workflow(remote):
    return SimpleNamespace(
        storage_settings=SimpleNamespace(default_storage_provider="fs"), remote_exec=remote
    )


def test_a_job_without_the_file_gets_the_id_snakemake_computed(tmp_path, monkeypatch):
    weights = tmp_path / "base.weights.h5"
    weights.write_bytes(b"weights")
    monkeypatch.setenv(object_storage.WEIGHTS_IDS, '{"stale": "from-an-earlier-run"}')

    object_storage.prepare(workflow(remote=False))  # Snakemake's own process
    expected = weights_id(str(weights))
    assert object_storage.weights_id(str(weights), weights_id) == expected
    assert object_storage.weights_id("imagenet", weights_id) == "imagenet"
    passed = os.environ[object_storage.WEIGHTS_IDS]
    assert "stale" not in passed

    # A pod: the same declared path, no file, the environment Snakemake handed over.
    weights.unlink()
    object_storage.prepare(workflow(remote=True))
    assert object_storage.weights_id(str(weights), weights_id) == expected
    assert os.environ[object_storage.WEIGHTS_IDS] == passed


def test_a_missing_file_snakemake_never_hashed_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv(object_storage.WEIGHTS_IDS, "{}")
    object_storage.prepare(workflow(remote=False))
    with pytest.raises(UserError, match="no such file"):
        object_storage.weights_id(str(tmp_path / "absent.weights.h5"), weights_id)


def test_a_changed_file_gets_a_new_id_where_it_is(tmp_path, monkeypatch):
    weights = tmp_path / "base.weights.h5"
    weights.write_bytes(b"weights")
    monkeypatch.setenv(object_storage.WEIGHTS_IDS, "{}")
    first = object_storage.weights_id(str(weights), weights_id)
    weights.write_bytes(b"other weights")
    assert object_storage.weights_id(str(weights), weights_id) != first
