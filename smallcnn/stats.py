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
    way with probability 1/2, so the p-value is a two-sided binomial test.
    """
    if only_a_right < 0 or only_b_right < 0:
        raise ValueError("discordant counts cannot be negative")
    n = only_a_right + only_b_right
    if n == 0:
        return 1.0
    k = min(only_a_right, only_b_right)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


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
