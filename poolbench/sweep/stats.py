"""Small-sample statistics for sweep tables: mean with a 95% confidence interval, the paired and
Welch t-tests, and Holm's correction for the many tests of one table.

Seeds are few (often 3), so intervals use Student's t, not the normal approximation. The t
distribution comes from the regularized incomplete beta function (a continued fraction,
Numerical Recipes 6.4), which keeps SciPy out of the dependencies for three formulas.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's method for the continued fraction of I_x(a, b)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < eps:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom (df may be fractional)."""
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(probability: float, df: float) -> float:
    """The t value with P(T <= t) = probability (0.5 < probability < 1), by bisection."""
    tail = 2.0 * (1.0 - probability)  # the two-sided p-value that this quantile has
    low, high = 0.0, 1.0
    while t_two_sided_p(high, df) > tail:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_two_sided_p(middle, df) > tail:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * high:
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Estimate:
    mean: float
    std: float | None     # sample standard deviation; None for a single value
    ci95: float | None    # half-width of the 95% confidence interval of the mean
    n: int


def estimate(values: list[float]) -> Estimate:
    """Mean, sample standard deviation and the 95% t-interval half-width of `values`."""
    n = len(values)
    if n == 0:
        raise ValueError("estimate() needs at least one value")
    mean = statistics.fmean(values)
    if n == 1:
        return Estimate(mean, None, None, 1)
    std = statistics.stdev(values)
    return Estimate(mean, std, t_quantile(0.975, n - 1) * std / math.sqrt(n), n)


def welch_p_value(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test (unequal variances) for mean(a) == mean(b).

    None where the test is undefined: fewer than two values on a side, or no spread on
    either side (a deterministic quantity such as a parameter count needs no test).
    """
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0.0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t_two_sided_p(t, df)


def paired_p_value(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of the paired t-test for mean(a - b) == 0; a[i] and b[i] share a seed.

    Runs with the same seed share their initialization and data order, so their difference
    removes that shared variation: the right test when both sides ran the same seeds. None
    where undefined: fewer than two pairs, or differences without spread (deterministic).
    """
    if len(a) != len(b):
        raise ValueError("paired_p_value needs the same number of values on both sides")
    if len(a) < 2:
        return None
    differences = [x - y for x, y in zip(a, b)]
    spread = statistics.stdev(differences)
    if spread == 0.0:
        return None
    t = statistics.fmean(differences) / (spread / math.sqrt(len(differences)))
    return t_two_sided_p(t, len(differences) - 1)


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input's order.

    The smallest of m p-values is multiplied by m, the next by m - 1, and so on, each kept at
    least as large as the one before (and at most 1). Comparing the adjusted values with alpha
    controls the chance of any false "significant" among all m tests at alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
