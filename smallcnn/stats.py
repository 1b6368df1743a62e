"""Statistics for comparing classifiers on one shared test set."""

import math


def accuracy_ci95(correct, total):
    """Wilson score 95% interval of a binomial proportion, as (low, high).

    Wilson rather than the normal approximation: it stays inside [0, 1] and is honest at the
    extremes (a perfect score on 40 images is not a certainty).
    """
    if total <= 0:
        raise ValueError("accuracy_ci95 needs at least one test image")
    if not 0 <= correct <= total:
        raise ValueError(f"correct={correct} is outside 0..{total}")
    z = 1.959963984540054
    p = correct / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(only_a_right, only_b_right):
    """Two-sided exact McNemar p-value from the discordant pairs.

    `only_a_right`: test images model A classified correctly and model B did not; `only_b_right`
    the reverse. Under the null hypothesis of equal error rates each discordant pair goes either
    way with probability 1/2, so the p-value is a two-sided binomial test: twice the smaller tail
    of Binomial(n, 1/2), capped at 1.

    The tail is summed from its largest term down, each term from the next by the ratio
    C(n, i - 1) / C(n, i) = i / (n - i + 1), and the largest term comes from log-gamma: a few
    hundred floating-point steps where the exact binomial coefficients of 20,000 pairs took
    half a minute. The sum stops once the terms left cannot change it.
    """
    if only_a_right < 0 or only_b_right < 0:
        raise ValueError("discordant counts cannot be negative")
    n = only_a_right + only_b_right
    k = min(only_a_right, only_b_right)
    if 2 * k == n:
        # An even split (or no discordant pair): the two tails cover everything.
        return 1.0
    # Terms relative to the largest one, C(n, k) / 2**n, from i = k down to 0.
    total, term = 1.0, 1.0
    for i in range(k, 0, -1):
        ratio = i / (n - i + 1)
        term *= ratio
        total += term
        # Later ratios are smaller still, so the rest is below a geometric series.
        if term * ratio / (1 - ratio) < 1e-17 * total:
            break
    log_largest = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * math.log(2)
    return min(1.0, 2 * math.exp(log_largest) * total)


def discordant_pairs(a_correct, b_correct):
    """Counts (only A right, only B right) of two models' per-image correctness on the same images.

    The arguments are equally long sequences of booleans in the same image order; the pairs both
    models got right or both got wrong carry no information about which model is better.
    """
    a_correct = [bool(value) for value in a_correct]
    b_correct = [bool(value) for value in b_correct]
    if len(a_correct) != len(b_correct):
        raise ValueError(
            f"the two models were scored on different numbers of images "
            f"({len(a_correct)} and {len(b_correct)})"
        )
    only_a = sum(a and not b for a, b in zip(a_correct, b_correct, strict=True))
    only_b = sum(b and not a for a, b in zip(a_correct, b_correct, strict=True))
    return only_a, only_b


def _incomplete_beta(a, b, x):
    """Regularised incomplete beta function I_x(a, b), by Lentz's continued fraction."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _incomplete_beta(b, a, 1 - x)
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * result / a


def t_quantile(p, df):
    """The p-quantile of Student's t with `df` degrees of freedom (0.5 < p < 1), by bisection
    on its CDF: a few lines instead of a SciPy dependency for one number."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError("t_quantile needs 0.5 < p < 1 and df >= 1")

    def upper_tail(t):
        return 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))

    low, high = 0.0, 1e6
    for _ in range(200):
        middle = (low + high) / 2
        if upper_tail(middle) > 1 - p:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def paired_difference(differences):
    """Mean of seed-paired differences with its 95% t-interval, as (mean, low, high).

    The interval is None with fewer than two pairs, where the spread is unknown.
    """
    differences = [float(value) for value in differences]
    n = len(differences)
    if n == 0:
        raise ValueError("paired_difference needs at least one pair")
    mean = sum(differences) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((value - mean) ** 2 for value in differences) / (n - 1))
    half = t_quantile(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
