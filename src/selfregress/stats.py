"""The report's statistics: seeded percentile bootstrap CIs, pure functions of arrays.

With 5 seeds the bootstrap distribution of a mean has at most C(9, 5) = 126 distinct values,
so a percentile CI is coarse and a little narrow; it is the paper's statistic, and the report
always prints n next to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """'22.2 [14.1, 28.0]' (percent points by default); '-' for no data."""
        if self.n == 0:
            return "-"
        return f"{self.mean * scale:.{digits}f} [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"


def bootstrap_ci(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                 level: float = 0.95) -> Interval:
    """Mean and percentile-bootstrap CI of the mean: resample ``values`` with replacement."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(x.mean()), float(low), float(high), int(x.size))


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], **kwargs) -> Interval:
    """CI of mean(a - b) for pairs (a_i, b_i) matched by seed: the pairs are resampled together."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    return bootstrap_ci(a - b, **kwargs)


def bootstrap_band(curves: Sequence[Sequence[float]], **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) at every position of ragged curves, over the curves that reach it."""
    length = max((len(c) for c in curves), default=0)
    out = np.full((3, length), np.nan)
    for i in range(length):
        ci = bootstrap_ci([c[i] for c in curves if len(c) > i], **kwargs)
        out[:, i] = (ci.mean, ci.low, ci.high)
    return out[0], out[1], out[2]


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of values against their index (0 for fewer than two points)."""
    y = np.asarray(values, dtype=float)
    if y.size < 2:
        return 0.0
    x = np.arange(y.size, dtype=float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
