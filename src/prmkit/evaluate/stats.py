"""Intervals over seeds: the mean and Student's t 95 % interval of a few runs' results (RL methods,
search strategies, whole demo runs)."""

from __future__ import annotations

import statistics

# Student's t 0.975 quantiles for 1..10 degrees of freedom (scipy is not a dependency for ten numbers)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def t975(df: int) -> float:
    """Student's t 0.975 quantile: the table to 10 degrees of freedom, Cornish-Fisher beyond (error < 1e-3).

    >>> t975(2), round(t975(30), 3)
    (4.303, 2.042)
    """
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean_ci(xs: list[float]) -> tuple[float, float | None]:
    """Mean and the 95 % t interval's half-width (None for one value).

    >>> m, h = mean_ci([0.5, 0.6, 0.7]); round(m, 3), round(h, 3)
    (0.6, 0.248)

    The standard deviation is 0.1, the standard error 0.1 / sqrt(3) = 0.0577, times t(2) = 4.303.
    """
    n = len(xs)
    mean = statistics.fmean(xs)
    if n < 2:
        return mean, None
    return mean, t975(n - 1) * statistics.stdev(xs) / n**0.5


def spread(xs: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), and the half-width of the 95% t-interval of the
    mean over seeds (0 for one value).

    >>> spread([0.5, 0.6, 0.7])
    {'mean': 0.6, 'std': 0.1, 'ci95': 0.2484338208}
    """
    mean, ci = mean_ci(xs)
    return {
        "mean": round(mean, 10),
        "std": round(statistics.stdev(xs), 10) if len(xs) > 1 else 0.0,
        "ci95": round(ci, 10) if ci is not None else 0.0,
    }
