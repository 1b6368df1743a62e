"""The report's statistics against values computed independently."""

import math

import pytest

from smallcnn.stats import accuracy_ci95, discordant_pairs, mcnemar_exact


def test_wilson_interval_of_81_in_100():
    low, high = accuracy_ci95(81, 100)
    assert low == pytest.approx(0.7222, abs=1e-4)
    assert high == pytest.approx(0.8749, abs=1e-4)


def test_wilson_interval_of_half():
    # Symmetric around 0.5: 50/100 -> 0.4038 .. 0.5962.
    low, high = accuracy_ci95(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4)
    assert high == pytest.approx(0.5962, abs=1e-4)
    assert low + high == pytest.approx(1.0)


def test_wilson_interval_at_the_extremes_stays_inside_zero_one_and_is_not_degenerate():
    low, high = accuracy_ci95(40, 40)
    assert high == 1.0
    # 40/40 -> lower bound z^2/(n+z^2) away from 1: 0.9124.
    assert low == pytest.approx(0.9124, abs=1e-4)
    low, high = accuracy_ci95(0, 40)
    assert low == 0.0
    assert high == pytest.approx(1 - 0.9124, abs=1e-4)


def test_wilson_interval_narrows_with_more_images():
    small = accuracy_ci95(8, 10)
    large = accuracy_ci95(800, 1000)
    assert large[1] - large[0] < small[1] - small[0]
    assert small[0] < 0.8 < small[1] and large[0] < 0.8 < large[1]


@pytest.mark.parametrize("correct, total", [(1, 0), (-1, 10), (11, 10), (0, -5)])
def test_wilson_interval_rejects_impossible_counts(correct, total):
    with pytest.raises(ValueError):
        accuracy_ci95(correct, total)


def test_mcnemar_exact_known_value():
    # Two-sided binomial test of 2 successes in 12 trials at p = 1/2: 2 * 79 / 4096.
    assert mcnemar_exact(10, 2) == pytest.approx(0.038574, abs=1e-6)


def test_mcnemar_exact_is_symmetric():
    assert mcnemar_exact(10, 2) == mcnemar_exact(2, 10)
    assert mcnemar_exact(3, 17) == mcnemar_exact(17, 3)


def test_mcnemar_exact_edge_cases():
    # No discordant pair: no evidence of any difference.
    assert mcnemar_exact(0, 0) == 1.0
    # Equal split: the two-sided tail exceeds one and is capped.
    assert mcnemar_exact(5, 5) == 1.0
    # All five discordant pairs one way: 2 / 2**5.
    assert mcnemar_exact(5, 0) == pytest.approx(0.0625)
    assert mcnemar_exact(1, 0) == 1.0


def test_mcnemar_exact_matches_a_direct_binomial_sum_on_a_large_test_set():
    only_a, only_b = 130, 90
    n = only_a + only_b
    expected = 2 * sum(math.comb(n, i) for i in range(only_b + 1)) / 2**n
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12)
    assert 0.005 < mcnemar_exact(only_a, only_b) < 0.01


def test_mcnemar_exact_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_discordant_pairs_counts_only_disagreements():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    assert discordant_pairs(a, b) == (2, 1)
    assert discordant_pairs(b, a) == (1, 2)


def test_discordant_pairs_needs_the_same_images():
    with pytest.raises(ValueError, match="different numbers"):
        discordant_pairs([True], [True, False])


def test_t_quantiles_match_the_tables():
    from smallcnn.stats import t_quantile

    # Two-sided 95% critical values from any t table.
    for df, value in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)):
        assert t_quantile(0.975, df) == pytest.approx(value, abs=1e-3)


def test_paired_difference_interval():
    from smallcnn.stats import paired_difference

    mean, low, high = paired_difference([0.01, 0.03, 0.02])
    assert mean == pytest.approx(0.02)
    # sd 0.01, n 3: half-width 4.303 * 0.01 / sqrt(3).
    assert (high - low) / 2 == pytest.approx(4.303 * 0.01 / 3**0.5, rel=1e-3)
    assert paired_difference([0.05]) == (0.05, None, None)


def mcnemar_by_binomial_coefficients(only_a, only_b):
    """The exact sum this module computed until issue 21: exact, and 31 s at 10,000 / 9,800."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_mcnemar_exact_equals_the_exact_binomial_sum_on_every_count_up_to_60():
    for only_a in range(61):
        for only_b in range(61):
            expected = mcnemar_by_binomial_coefficients(only_a, only_b)
            assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize(
    "only_a, only_b",
    [(130, 90), (2_000, 2_150), (5_000, 4_900), (10_000, 9_800), (9_800, 10_000), (600, 20)],
)
def test_mcnemar_exact_matches_scipys_binomial_test_on_large_tests(only_a, only_b):
    binomtest = pytest.importorskip("scipy.stats").binomtest
    expected = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_exact_on_a_million_discordant_pairs():
    """A million pairs, as many seeds pooled over the full Kaggle test set could give: the sum of
    exact binomial coefficients would not finish here (hours); this is a few milliseconds."""
    binomtest = pytest.importorskip("scipy.stats").binomtest
    only_a, only_b = 501_000, 499_000
    expected = binomtest(only_b, only_a + only_b, 0.5).pvalue
    assert 0.04 < expected < 0.06
    assert mcnemar_exact(only_a, only_b) == pytest.approx(expected, rel=1e-8)
