"""Seed statistics: a number from one base seed is one draw, so rows that aggregate several seeds
carry an interval and their ``n``, and two numbers are compared against those intervals.

Rule: with n >= 4 values, the 95 % t-interval of the mean (mean ± t(0.975, n-1) · sd / √n); with
n = 2 or 3, the range min–max (a t-interval from so few draws is too wide to read: t = 12.7 at n = 2);
with n = 1, none.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

T_INTERVAL_MIN_N = 4
INTERVAL_RULE = ("[lo, hi]: over base seeds, the 95 % t-interval of the mean for n >= 4, the range min–max for "
                 "n = 2 or 3; none for one seed")
WITHIN, BEYOND = "within seed noise", "beyond seed noise"
LO, HI = "_lo", "_hi"  # suffixes of a column's interval bounds


def interval(values: Sequence[float]) -> tuple[float, float]:
    """(lo, hi) of the finite ``values`` by :data:`INTERVAL_RULE`; (nan, nan) for fewer than two."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return math.nan, math.nan
    if len(x) < T_INTERVAL_MIN_N:
        return float(x.min()), float(x.max())
    from scipy.stats import t  # lazy: scipy is slow to import and only needed here

    half = float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return float(x.mean()) - half, float(x.mean()) + half


def interval_name(n: int) -> str:
    """What :func:`interval` gives for ``n`` values, in words (figure legends)."""
    return "95 % t-interval" if n >= T_INTERVAL_MIN_N else "min–max" if n >= 2 else "none"


def noise_verdict(a: tuple[float, float], b: tuple[float, float]) -> str | None:
    """Whether two intervals overlap (``within seed noise``) or not; None when either is missing."""
    if any(v is None or math.isnan(v) for v in (*a, *b)):
        return None
    return WITHIN if a[0] <= b[1] and b[0] <= a[1] else BEYOND
