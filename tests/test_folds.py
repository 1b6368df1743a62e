"""Fold assignment: stratified, one partition per training seed, every image once per seed."""

import csv
import hashlib
import random
from collections import Counter

import pytest
from conftest import REPO, run_snakemake

from smallcnn import folds
from smallcnn.errors import UserError

SPLITS_COLUMNS = ["file", "label", "split", "sha256", "path"]


def splits_rows(per_class, test_per_class=3):
    """splits.csv rows: per_class[label] train+validation images of each class, and a test split."""
    rows = []
    for label, n in per_class.items():
        for i in range(n + test_per_class):
            split = "test" if i < test_per_class else ("validation" if i % 4 == 0 else "train")
            rows.append(
                {
                    "file": f"src/{label}/{i}.jpg",
                    "label": label,
                    "split": split,
                    "sha256": hashlib.sha256(f"{label}{i}".encode()).hexdigest(),
                    "path": f"{label}/{i}.jpg",
                }
            )
    return rows


def write_splits(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, SPLITS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_every_image_is_in_exactly_one_fold_per_seed_and_classes_are_stratified(tmp_path):
    per_class = {"cat": 23, "dog": 17, "fox": 11}
    rows = splits_rows(per_class)
    splits = write_splits(tmp_path / "splits.csv", rows)
    table = folds.write_folds(splits, tmp_path / "folds.csv", 5, split_seed=1337, seeds=[1, 2])
    pooled = {row["file"] for row in rows if row["split"] != "test"}
    for seed in (1, 2):
        written = folds.read_folds(tmp_path / "folds.csv", seed, k=5)
        assert Counter(row["file"] for row in written) == Counter(pooled)
        assert not any("test" in row["path"].split("/")[0] for row in written)
        by_fold = Counter(row["fold"] for row in written)
        assert set(by_fold) == set(range(5))
        assert max(by_fold.values()) - min(by_fold.values()) <= 1
        for label, n in per_class.items():
            counts = Counter(row["fold"] for row in written if row["label"] == label)
            # Each class spread evenly: n // 5 or n // 5 + 1 in every fold.
            assert set(counts.values()) <= {n // 5, n // 5 + 1}, (label, counts)
            assert sum(counts.values()) == n
        for fold in range(5):
            train, validation = folds.fold_paths(written, fold)
            assert not set(train) & set(validation)
            assert len(train) + len(validation) == len(pooled)
    assert len(table) == 2 * len(pooled)
    # The split copy path names the split folder it is in.
    split_of = {row["file"]: row["split"] for row in rows}
    assert all(row["path"].startswith(split_of[row["file"]] + "/") for row in table)


def test_two_seeds_give_two_partitions_and_one_seed_always_the_same():
    rows = [row for row in splits_rows({"cat": 30, "dog": 30}) if row["split"] != "test"]
    first = folds.assign(rows, 3, split_seed=1337, training_seed=1)
    again = folds.assign(list(reversed(rows)), 3, split_seed=1337, training_seed=1)
    second = folds.assign(rows, 3, split_seed=1337, training_seed=2)
    other_split_seed = folds.assign(rows, 3, split_seed=7, training_seed=1)
    assert first == again, "the partition depends on the order of the rows"
    assert first != second
    assert first != other_split_seed
    moved = sum(first[file] != second[file] for file in first)
    assert moved > len(first) / 3


def test_the_partition_follows_the_content_not_the_file_name():
    rows = [row for row in splits_rows({"cat": 12, "dog": 12}) if row["split"] != "test"]
    renamed = [{**row, "file": "renamed-" + row["file"]} for row in rows]
    random.Random(0).shuffle(renamed)
    before = folds.assign(rows, 4, 1337, 1)
    after = folds.assign(renamed, 4, 1337, 1)
    assert {f"renamed-{file}": fold for file, fold in before.items()} == after


def test_more_folds_than_a_class_has_images_is_an_error_naming_the_class():
    rows = [row for row in splits_rows({"cat": 12, "dog": 3}) if row["split"] != "test"]
    with pytest.raises(UserError, match=r"class 'dog' has 3 train \+ validation"):
        folds.assign(rows, 4, 1337, 1)
    with pytest.raises(UserError, match="at least 2 folds"):
        folds.assign(rows, 1, 1337, 1)


def test_reading_another_number_of_folds_is_an_error(tmp_path):
    splits = write_splits(tmp_path / "splits.csv", splits_rows({"cat": 8, "dog": 8}))
    folds.write_folds(splits, tmp_path / "folds.csv", 3, 1337, [1])
    with pytest.raises(UserError, match="3 folds, cross_validation.folds is 4"):
        folds.read_folds(tmp_path / "folds.csv", 1, k=4)
    with pytest.raises(UserError, match="no fold of training seed 2"):
        folds.read_folds(tmp_path / "folds.csv", 2)


def test_the_table_of_per_seed_files_equals_one_file_of_all_seeds(tmp_path):
    splits = write_splits(tmp_path / "splits.csv", splits_rows({"cat": 9, "dog": 7}))
    for seed in (3, 4):
        folds.write_folds(splits, tmp_path / f"{seed}.csv", 3, 1337, [seed])
    folds.concatenate([tmp_path / "3.csv", tmp_path / "4.csv"], tmp_path / "folds.csv")
    folds.write_folds(splits, tmp_path / "both.csv", 3, 1337, [3, 4])
    assert (tmp_path / "folds.csv").read_text() == (tmp_path / "both.csv").read_text()
    header = (tmp_path / "folds.csv").read_text().splitlines()[0]
    assert header == "file,path,label,seed,fold"


@pytest.mark.parametrize("folds_value", [1, "five"])
def test_the_schema_refuses_a_fold_count_below_two_naming_the_key(tmp_path, folds_value):
    result = run_snakemake(
        tmp_path,
        ["results/data/splits.csv"],
        configfiles=[REPO / "config" / "demo.yaml"],
        config={"cross_validation": {"folds": folds_value}},
        args=["--dry-run"],
        check=False,
    )
    assert result.returncode != 0
    assert "folds" in result.stdout + result.stderr


def test_a_fold_selects_its_rows_from_the_train_and_validation_features(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    train = SimpleNamespace(
        files=["cat/a.jpg", "dog/b.jpg"], features=np.array([[1.0], [2.0]]), labels=[0, 1]
    )
    validation = SimpleNamespace(files=["cat/c.jpg"], features=np.array([[3.0]]), labels=[0])
    sets = {"train": train, "validation": validation}
    features, labels = folds.select_rows(sets, ["validation/cat/c.jpg", "train/dog/b.jpg"])
    assert features.tolist() == [[3.0], [2.0]] and labels.tolist() == [0, 1]
    with pytest.raises(UserError, match="not in the features files, e.g. train/cat/z.jpg"):
        folds.select_rows(sets, ["train/cat/z.jpg"])
    assert folds.locate("train/cat/a.jpg", {"train": tmp_path}) == tmp_path / "cat" / "a.jpg"
    with pytest.raises(UserError, match="not in a split the job was given"):
        folds.locate("test/cat/a.jpg", {"train": tmp_path})


def test_a_features_fold_trains_on_the_other_folds_rows_and_validates_on_its_own(tmp_path):
    """training_data of a fold of a kind that trains on features: rows of the train and
    validation features files as the folds file divides them, nothing extracted."""
    import numpy as np

    from smallcnn import datasets, feature_file

    rows = splits_rows({"cat": 5, "dog": 4})
    write_splits(tmp_path / "splits.csv", rows)
    table = folds.write_folds(tmp_path / "splits.csv", tmp_path / "folds.csv", 3, 1337, [7])
    attrs = {
        "base_model": "vgg16",
        "weights_source": "w",
        "weights_sha256": "abc",
        "input_size": [32, 32],
        "class_names": ["cat", "dog"],
    }
    value = {}  # each row's features: a number naming its split copy
    inputs = {"folds": str(tmp_path / "folds.csv")}
    for split in ("train", "validation"):
        mine = [row for row in rows if row["split"] == split]
        for row in mine:
            value[f"{split}/{row['path']}"] = float(len(value))
        feature_file.write_rows(
            tmp_path / f"{split}.h5",
            [[value[f"{split}/{row['path']}"]] * 2 for row in mine],
            [["cat", "dog"].index(row["label"]) for row in mine],
            [row["path"] for row in mine],
            attrs,
        )
        inputs[split] = str(tmp_path / f"{split}.h5")
    settings = {"kind": "features", "seed": 7, "fold": 1, "folds": 3, "batch_size": 4}
    data = datasets.training_data(settings, inputs, tmp_path / "cache")

    def seen(dataset):
        x, y = zip(*((x.numpy()[:, 0], y.numpy()) for x, y in dataset), strict=True)
        return np.concatenate(x).tolist(), np.concatenate(y).tolist()

    mine = [row for row in table if row["fold"] == 1]
    others = [row for row in table if row["fold"] != 1]
    x, y = seen(data.validation)
    assert x == [value[row["path"]] for row in mine]
    assert y == [["cat", "dog"].index(row["label"]) for row in mine]
    x, _ = seen(data.train)
    assert sorted(x) == sorted(value[row["path"]] for row in others)
    assert data.steps == 2 and data.class_names == ["cat", "dog"]
    assert data.conv_base["weights_sha256"] == "abc"


def test_a_folds_diagnostics_batch_is_its_own_validation_images(tmp_path):
    """TensorBoard's activation histograms and gradient norms of an image fold are computed on a
    batch of the fold's own validation images, from both split folders, not on the validation
    split, most of which that fold trains on."""
    from types import SimpleNamespace

    from PIL import Image

    from smallcnn import monitoring

    rows = splits_rows({"cat": 5, "dog": 4})
    write_splits(tmp_path / "splits.csv", rows)
    table = folds.write_folds(tmp_path / "splits.csv", tmp_path / "folds.csv", 3, 1337, [7])
    value = {}  # each image's grey level names its split copy
    for row in rows:
        if row["split"] != "test":
            key = f"{row['split']}/{row['path']}"
            value[key] = 10 * len(value)
            (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (value[key],) * 3).save(tmp_path / key, format="PNG")
    inputs = {
        "folds": str(tmp_path / "folds.csv"),
        "train": str(tmp_path / "train"),
        "validation": str(tmp_path / "validation"),
    }
    settings = {
        "kind": "scratch",
        "seed": 7,
        "fold": 1,
        "folds": 3,
        "batch_size": 16,
        "image_size": [8, 8],
    }
    images, labels = monitoring.fixed_batch(
        settings, inputs, SimpleNamespace(class_names=["cat", "dog"])
    )
    mine = [row for row in table if row["fold"] == 1]
    assert images.numpy()[:, 0, 0, 0].tolist() == [value[row["path"]] for row in mine]
    assert labels.numpy().tolist() == [["cat", "dog"].index(row["label"]) for row in mine]
    assert {row["path"].split("/")[0] for row in mine} == {"train", "validation"}
