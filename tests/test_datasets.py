"""Split folders as tf.data pipelines."""

import numpy as np
import pytest
from conftest import make_class_images
from PIL import Image

from smallcnn import datasets
from smallcnn.errors import UserError


def test_files_and_labels_follow_sorted_class_folders(tmp_path):
    make_class_images(tmp_path, classes=("dog", "cat", "bird"), per_class=3)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    files, labels, class_names = datasets.list_images(tmp_path)
    assert class_names == ["bird", "cat", "dog"]
    assert files[:3] == ["bird/0.jpg", "bird/1.jpg", "bird/2.jpg"]
    assert "cat/notes.txt" not in files
    assert labels == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_labels_use_the_training_class_order(tmp_path):
    make_class_images(tmp_path, classes=("dog",), per_class=2)
    files, labels, names = datasets.list_images(tmp_path, class_names=["cat", "dog"])
    assert labels == [1, 1] and names == ["cat", "dog"]
    with pytest.raises(UserError, match="dog"):
        datasets.list_images(tmp_path, class_names=["cat", "bird"])


def test_a_folder_without_images_is_a_user_error(tmp_path):
    (tmp_path / "cat").mkdir()
    with pytest.raises(UserError, match="no images"):
        datasets.list_images(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        datasets.list_images(tmp_path / "missing")


def test_batches_are_resized_float_images_with_int_labels(tmp_path):
    make_class_images(tmp_path, per_class=5, size=(60, 40))
    Image.new("L", (50, 50), 128).save(tmp_path / "cat" / "grey.png")
    image_set = datasets.load_images(tmp_path, (32, 32), batch_size=4, cache=True)
    batches = list(image_set.dataset)
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.shape == (11, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    assert labels.tolist() == image_set.labels
    grey = images[image_set.files.index("cat/grey.png")]
    assert np.all(grey == 128)


def test_shuffling_is_seeded_and_changes_every_epoch(tmp_path):
    make_class_images(tmp_path, per_class=8, size=(32, 32))

    def orders(seed):
        image_set = datasets.load_images(
            tmp_path, (32, 32), batch_size=16, shuffle=True, seed=seed, cache=True
        )
        epochs = [next(iter(image_set.dataset))[0].numpy() for _ in range(2)]
        return [e[:, :2, :2, 0].reshape(len(e), -1).sum(axis=1) for e in epochs]

    first, second = orders(5), orders(5)
    np.testing.assert_array_equal(first[0], second[0])
    assert not np.array_equal(first[0], first[1])


def test_large_sets_are_cached_on_disk(tmp_path, monkeypatch):
    make_class_images(tmp_path / "train", per_class=3, size=(32, 32))
    monkeypatch.setattr(datasets, "MEMORY_CACHE_BYTES", 10)
    cache_dir = tmp_path / "cache"
    image_set = datasets.load_images(
        tmp_path / "train", (32, 32), 2, cache=True, cache_dir=cache_dir
    )
    first = np.concatenate([b[0].numpy() for b in image_set.dataset])
    again = np.concatenate([b[0].numpy() for b in image_set.dataset])
    np.testing.assert_array_equal(first, again)
    assert any(cache_dir.iterdir())
