"""Statistics the result tables report."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bd_overlap", "bd_rate", "paired_difference", "wilson_interval"]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a success rate (95 % for the default ``z``); (0, 1) when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = 1.959964) -> dict[str, float]:
    """Success of ``a`` minus success of ``b`` on the same episodes, with its interval and McNemar's test.

    Episodes are paired (episode i of both ran with the same seed), so only the discordant ones
    (one succeeded, the other not) carry information about the difference: ``a_only`` and
    ``b_only`` count them. ``low``/``high``: the normal interval of the mean paired difference;
    ``p_value``: McNemar's exact two-sided test (a binomial test of ``a_only`` among the
    discordant pairs against 1/2).

    Example:
        >>> d = paired_difference([1, 1, 1, 0, 1, 1], [1, 0, 0, 0, 1, 1])
        >>> d["difference"], d["a_only"], d["b_only"], round(d["p_value"], 3)
        (0.3333333333333333, 2, 0, 0.5)
    """
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same episodes, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return {"difference": 0.0, "low": -1.0, "high": 1.0, "a_only": 0, "b_only": 0, "p_value": 1.0}
    diffs = [int(bool(x)) - int(bool(y)) for x, y in zip(a, b, strict=True)]
    a_only, b_only = diffs.count(1), diffs.count(-1)
    mean = (a_only - b_only) / n
    var = ((a_only + b_only) / n - mean * mean) / max(n - 1, 1)
    half = z * math.sqrt(max(var, 0.0))
    discordant = a_only + b_only
    tail = sum(math.comb(discordant, k) for k in range(min(a_only, b_only) + 1)) / 2**discordant
    return {
        "difference": mean,
        "low": max(-1.0, mean - half),
        "high": min(1.0, mean + half),
        "a_only": a_only,
        "b_only": b_only,
        "p_value": min(1.0, 2 * tail),
    }


def _monotone_curve(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(quality, log rate) sorted by rate, keeping only the points that raise the quality."""
    q, r, best = [], [], -math.inf
    for i in np.argsort(rates):
        if quality[i] > best:
            best = quality[i]
            q.append(float(quality[i]))
            r.append(math.log(float(rates[i])))
    return np.asarray(q), np.asarray(r)


def bd_overlap(
    rates_a: Sequence[float], quality_a: Sequence[float], rates_b: Sequence[float], quality_b: Sequence[float]
) -> tuple[float, float]:
    """The quality range :func:`bd_rate` averages over: where both monotone curves have points.

    ``lo >= hi`` when they do not overlap.
    """
    qa, _ = _monotone_curve(rates_a, quality_a)
    qb, _ = _monotone_curve(rates_b, quality_b)
    return max(qa[0], qb[0]), min(qa[-1], qb[-1])


def bd_rate(
    rates_a: Sequence[float], quality_a: Sequence[float], rates_b: Sequence[float], quality_b: Sequence[float]
) -> float:
    """BD-rate of codec B against codec A in percent (negative: B needs fewer bits at equal quality).

    Bjontegaard's average of ``log(rate)`` over the overlapping quality range, with piecewise-linear
    interpolation instead of a cubic fit (a handful of noisy points); each curve is first made
    monotone (sorted by rate, points that do not raise the quality dropped). NaN without overlap.
    """
    qa, ra = _monotone_curve(rates_a, quality_a)
    qb, rb = _monotone_curve(rates_b, quality_b)
    if len(qa) < 2 or len(qb) < 2:
        return math.nan
    lo, hi = bd_overlap(rates_a, quality_a, rates_b, quality_b)
    if not hi > lo:
        return math.nan
    grid = np.linspace(lo, hi, 201)
    diff = np.interp(grid, qb, rb) - np.interp(grid, qa, ra)
    return float((math.exp(diff.mean()) - 1.0) * 100.0)
