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
    for counts in ((-1, 3), (3, -1)):
        with pytest.raises(ValueError, match="^discordant counts cannot be negative$"):
            mcnemar_exact(*counts)


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


@pytest.mark.parametrize(("correct", "total"), [(1, 0), (0, 0), (0, -5)])
def test_wilson_interval_needs_a_test_image(correct, total):
    with pytest.raises(ValueError, match="^accuracy_ci95 needs at least one test image$"):
        accuracy_ci95(correct, total)


@pytest.mark.parametrize(("correct", "total"), [(-1, 10), (11, 10)])
def test_wilson_interval_names_an_impossible_count(correct, total):
    with pytest.raises(ValueError, match=rf"^correct={correct} is outside 0\.\.{total}$"):
        accuracy_ci95(correct, total)


def test_wilson_interval_of_one_image():
    # 1/1: the lower bound is 1 / (1 + z^2).
    low, high = accuracy_ci95(1, 1)
    assert low == pytest.approx(1 / (1 + 1.959963984540054**2)) and high == 1.0


@pytest.mark.parametrize(
    ("a", "b", "exact"),
    [
        (1, 1, lambda x: x),
        (1, 3, lambda x: 1 - (1 - x) ** 3),
        (4, 1, lambda x: x**4),
        (0.5, 0.5, lambda x: 2 / math.pi * math.asin(math.sqrt(x))),
        # I_x(2, 3) = 6x^2 - 8x^3 + 3x^4.
        (2, 3, lambda x: 6 * x**2 - 8 * x**3 + 3 * x**4),
        (3, 2, lambda x: 4 * x**3 - 3 * x**4),
    ],
)
def test_the_incomplete_beta_function_matches_its_closed_forms(a, b, exact):
    """Both sides of the switch at x = (a + 1) / (a + b + 2), where the continued fraction is
    evaluated for I_x(a, b) directly or as 1 - I_(1-x)(b, a)."""
    from smallcnn.stats import _incomplete_beta

    for x in (0.01, 0.2, 0.45, 0.55, 0.8, 0.99):
        assert _incomplete_beta(a, b, x) == pytest.approx(exact(x), rel=1e-12, abs=1e-14), x


def test_the_incomplete_beta_function_is_zero_and_one_at_and_beyond_the_ends():
    from smallcnn.stats import _incomplete_beta

    assert _incomplete_beta(2, 3, 0) == _incomplete_beta(2, 3, -0.5) == 0.0
    assert _incomplete_beta(2, 3, 1) == _incomplete_beta(2, 3, 1.5) == 1.0


def test_the_incomplete_beta_function_converges_far_from_the_switch():
    """Large a and b, where the continued fraction on the wrong side converges too slowly: the
    symmetry I_x(a, b) = 1 - I_(1-x)(b, a) must hold to machine precision."""
    from smallcnn.stats import _incomplete_beta

    for a, b, x in ((60, 40, 0.5), (40, 60, 0.45), (200, 5, 0.99), (5, 200, 0.01)):
        assert _incomplete_beta(a, b, x) + _incomplete_beta(b, a, 1 - x) == pytest.approx(
            1.0, abs=1e-12
        )
    # I_0.5(a, a) = 1/2 by symmetry.
    assert _incomplete_beta(80, 80, 0.5) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(("p", "df"), [(0.5, 3), (0.4, 3), (1.0, 3), (1.5, 3), (0.975, 0)])
def test_t_quantile_refuses_what_it_cannot_compute(p, df):
    from smallcnn.stats import t_quantile

    with pytest.raises(ValueError, match=r"^t_quantile needs 0\.5 < p < 1 and df >= 1$"):
        t_quantile(p, df)


def test_t_quantiles_below_one_match_the_tables():
    from smallcnn.stats import t_quantile

    # 60% and 75% one-sided critical values from a t table.
    assert t_quantile(0.6, 10) == pytest.approx(0.260, abs=1e-3)
    assert t_quantile(0.75, 2) == pytest.approx(0.816, abs=1e-3)


def test_paired_difference_of_two_pairs_has_an_interval():
    from smallcnn.stats import paired_difference

    mean, low, high = paired_difference([0.01, 0.03])
    # sd 0.01 * sqrt(2), n 2: half-width 12.706 * 0.01.
    assert mean == pytest.approx(0.02)
    assert (low, high) == pytest.approx((0.02 - 0.12706, 0.02 + 0.12706), abs=1e-4)


def test_paired_difference_needs_a_pair():
    from smallcnn.stats import paired_difference

    with pytest.raises(ValueError, match="^paired_difference needs at least one pair$"):
        paired_difference([])


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


def test_corrected_repeated_kfold_t_against_a_hand_computation():
    from smallcnn.stats import corrected_repeated_kfold_t

    # k = 3 folds, r = 1 seed, 300 train + validation images: each fold trains on 200 and
    # validates on 100. Differences 0.04, 0.01, 0.07: mean 0.04, sample variance
    # (0 + 0.03^2 + 0.03^2) / 2 = 0.0009. Corrected variance of the mean:
    # (1/3 + 100/200) * 0.0009 = 0.00075; t = 0.04 / sqrt(0.00075) = 1.460593 with 2 df, whose
    # two-sided p has a closed form: 1 - t / sqrt(2 + t^2) = 0.281579.
    result = corrected_repeated_kfold_t([0.04, 0.01, 0.07], n_train=200, n_test=100)
    assert result["mean"] == pytest.approx(0.04)
    assert result["variance"] == pytest.approx(0.00075)
    assert result["t"] == pytest.approx(1.460593, abs=1e-6)
    assert result["df"] == 2
    assert result["p"] == pytest.approx(0.281579, abs=1e-6)
    # 95% interval: t(0.975, 2) = 4.302653 times sqrt(0.00075) = 0.117833 either side.
    assert result["low"] == pytest.approx(0.04 - 0.117833, abs=1e-6)
    assert result["high"] == pytest.approx(0.04 + 0.117833, abs=1e-6)
    # The plain paired t-test on the same differences (variance / 3) would claim p = 0.147.
    plain_t = 0.04 / math.sqrt(0.0009 / 3)
    assert 1 - plain_t / math.sqrt(2 + plain_t**2) == pytest.approx(0.147197, abs=1e-6)


def test_corrected_repeated_kfold_t_matches_scipy_with_more_folds_and_seeds():
    from scipy import stats as scipy_stats

    from smallcnn.stats import corrected_repeated_kfold_t

    # k = 5, r = 2: ten differences, 9 df; each fold trains on 400 and validates on 100.
    differences = [0.02, 0.05, -0.01, 0.03, 0.04, 0.00, 0.06, 0.02, 0.01, 0.03]
    result = corrected_repeated_kfold_t(differences, n_train=400, n_test=100)
    mean = sum(differences) / 10
    variance = (1 / 10 + 100 / 400) * scipy_stats.tvar(differences)
    t = mean / math.sqrt(variance)
    assert result["t"] == pytest.approx(t, rel=1e-12)
    assert result["df"] == 9
    assert result["p"] == pytest.approx(2 * scipy_stats.t.sf(abs(t), 9), rel=1e-9)
    half = scipy_stats.t.ppf(0.975, 9) * math.sqrt(variance)
    assert result["high"] - result["low"] == pytest.approx(2 * half, rel=1e-6)


def test_corrected_repeated_kfold_t_needs_two_differences_with_spread():
    from smallcnn.stats import corrected_repeated_kfold_t

    with pytest.raises(ValueError, match="at least two"):
        corrected_repeated_kfold_t([0.02], n_train=10, n_test=5)
    with pytest.raises(ValueError, match="no spread"):
        corrected_repeated_kfold_t([0.02, 0.02, 0.02], n_train=10, n_test=5)


@pytest.mark.parametrize(("only_a", "only_b"), [(1, 2), (2, 3), (9, 10), (10, 9), (501, 500)])
def test_mcnemar_on_a_split_one_apart_is_exactly_one_never_more(only_a, only_b):
    """Twice the smaller tail of an odd n split (n - 1) / 2 to (n + 1) / 2 is 1, which the float
    sum overshoots in its last bits (1.0000000000000009 for 1 and 2): a p-value above 1 would
    print as 1.0000 but compare as more."""
    assert mcnemar_exact(only_a, only_b) == 1.0
