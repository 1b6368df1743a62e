"""How many images of each class go to each split, from counts or fractions, by hand."""

import pytest

from smallcnn import split_sizes
from smallcnn.errors import UserError

COUNTS = {"train": 1000, "validation": 500, "test": 500, "max_per_class": None}


def test_counts_are_taken_as_they_are_whatever_the_class_holds():
    assert split_sizes.per_class(COUNTS, 12_500) == {"train": 1000, "validation": 500, "test": 500}
    # A count of 1 is a count, not a fraction of 100%.
    ones = {"train": 1, "validation": 1, "test": 1}
    assert not split_sizes.is_fractions(ones)
    split_sizes.check(ones)
    assert split_sizes.per_class(ones, 10) == {"train": 1, "validation": 1, "test": 1}


@pytest.mark.parametrize(
    ("fractions", "available", "expected"),
    [
        # Quotas 7, 1.5, 1.5: the image rounding leaves over goes to the first of the two
        # equal remainders.
        ((0.7, 0.15, 0.15), 10, (7, 2, 1)),
        # Quotas 3.5, 2.1, 1.4: the leftover goes to the largest remainder, train's.
        ((0.5, 0.3, 0.2), 7, (4, 2, 1)),
        # Whole quotas stay whole (float error must not take one away).
        ((0.5, 0.2, 0.1), 10, (5, 2, 1)),
        ((0.7, 0.2, 0.1), 10, (7, 2, 1)),
        # Fractions adding up to less than 1 leave images out: 0.8 of 10.
        ((0.5, 0.2, 0.1), 11, (5, 2, 1)),
        ((0.6, 0.2, 0.2), 0, (0, 0, 0)),
    ],
)
def test_fractions_split_each_class_by_largest_remainder(fractions, available, expected):
    settings = dict(zip(("train", "validation", "test"), fractions, strict=True))
    sizes = split_sizes.per_class({**settings, "max_per_class": None}, available)
    assert sizes == dict(zip(("train", "validation", "test"), expected, strict=True))


def test_fractions_adding_up_to_more_than_one_are_refused_with_what_to_change():
    message = (
        r"^split: the fractions add up to 1\.2 \(train 0\.7 \+ validation 0\.3 \+ test 0\.2\), "
        r"more than 1; lower one of split\.train, split\.validation, split\.test$"
    )
    with pytest.raises(UserError, match=message):
        split_sizes.check({"train": 0.7, "validation": 0.3, "test": 0.2, "max_per_class": 50})
    split_sizes.check({"train": 0.7, "validation": 0.15, "test": 0.15, "max_per_class": None})


def test_a_generated_dataset_gets_the_images_its_split_needs():
    assert split_sizes.images_needed(COUNTS) == 2000
    fractions = {"train": 0.7, "validation": 0.15, "test": 0.15}
    assert split_sizes.images_needed({**fractions, "max_per_class": None}) == 100
    assert split_sizes.images_needed({**fractions, "max_per_class": 40}) == 40


def test_the_split_as_messages_name_it():
    assert split_sizes.describe(COUNTS) == "train 1000 + validation 500 + test 500"
    assert split_sizes.describe({"train": 0.8, "test": 0.2, "max_per_class": 50}) == (
        "train 0.8 + test 0.2, at most 50 per class"
    )
