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


FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}
COUNTS_7 = {"train": 3, "validation": 2, "test": 2}


def test_a_cap_draws_at_most_its_images_from_a_class():
    assert split_sizes.available({**COUNTS_7, "max_per_class": None}, 9) == 9
    assert split_sizes.available({**COUNTS_7, "max_per_class": 5}, 9) == 5
    assert split_sizes.available({**COUNTS_7, "max_per_class": 5}, 3) == 3


def test_a_cap_too_small_for_the_fractions_is_refused_with_the_smallest_that_works():
    # 4 images: train 3 / validation 1 / test 0; 5 give every split one.
    message = (
        r"^split: train 0\.7 \+ validation 0\.15 \+ test 0\.15 of at most "
        r"split\.max_per_class=4 images per class leaves a split empty \(train 3 / validation 1 "
        r"/ test 0\); raise split\.max_per_class to at least 5$"
    )
    with pytest.raises(UserError, match=message):
        split_sizes.check({**FRACTIONS, "max_per_class": 4})
    split_sizes.check({**FRACTIONS, "max_per_class": 5})


def test_a_cap_below_the_counts_is_refused():
    message = (
        r"^split: train 3 \+ validation 2 \+ test 2 is 7 images per class, more than "
        r"split\.max_per_class=6 lets a class have; raise split\.max_per_class to at least 7 "
        r"\(or null for no cap\), or lower the counts$"
    )
    with pytest.raises(UserError, match=message):
        split_sizes.check({**COUNTS_7, "max_per_class": 6})
    split_sizes.check({**COUNTS_7, "max_per_class": 7})


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (COUNTS_7, 7),
        (FRACTIONS, 5),
        # 2 images: train 1 / validation 1 / test 0; 3: one each.
        ({"train": 0.5, "validation": 0.3, "test": 0.2}, 3),
        # Up to 6 images the largest remainders go to train before test.
        ({"train": 0.8, "validation": 0.1, "test": 0.1}, 7),
        # An even count: 3 images give train 2 / validation 1 / test 0; 4 give 2 / 1 / 1.
        ({"train": 0.6, "validation": 0.2, "test": 0.2}, 4),
    ],
)
def test_the_smallest_class_that_gives_every_split_one(settings, expected):
    assert split_sizes.smallest_class({**settings, "max_per_class": None}) == expected


@pytest.mark.parametrize(
    ("settings", "usable", "message"),
    [
        (COUNTS_7, 7, None),
        ({**FRACTIONS, "max_per_class": 5}, 9, None),
        (
            COUNTS_7,
            5,
            "class 'cat' has 5 usable images but the split asks for 7 (train 3 + validation 2 + "
            "test 2)",
        ),
        # The class has enough: the cap falls short, and the message says to raise it.
        (
            {**COUNTS_7, "max_per_class": 6},
            10,
            "class 'cat' has 10 usable images, 6 after split.max_per_class but the split asks "
            "for 7 (train 3 + validation 2 + test 2, at most 6 per class); raise "
            "split.max_per_class to at least 7",
        ),
        (
            FRACTIONS,
            3,
            "class 'cat' has 3 usable images, too few for train 0.7 + validation 0.15 + test 0.15 "
            "to give every split one (train 2 / validation 1 / test 0)",
        ),
        (
            {**FRACTIONS, "max_per_class": 4},
            5,
            "class 'cat' has 5 usable images, 4 after split.max_per_class, too few for train 0.7 "
            "+ validation 0.15 + test 0.15, at most 4 per class to give every split one (train 3 "
            "/ validation 1 / test 0); raise split.max_per_class to at least 5",
        ),
        # Too few even without the cap: raising it would not help, so the message does not say so.
        (
            {**FRACTIONS, "max_per_class": 3},
            4,
            "class 'cat' has 4 usable images, 3 after split.max_per_class, too few for train 0.7 "
            "+ validation 0.15 + test 0.15, at most 3 per class to give every split one (train 2 "
            "/ validation 1 / test 0)",
        ),
    ],
)
def test_the_shortfall_of_a_class_says_what_it_has_what_is_asked_and_what_to_write(
    settings, usable, message
):
    assert split_sizes.shortfall(settings, "cat", usable) == message
