"""The report's statistics: confidence intervals over seeds, pure functions of arrays.

The table's default is ``hall_t``: Student's t-interval with Hall's (1992) skewness
correction. Coverage of the true mean at a nominal 95%, from ``benchmarks/interval_coverage.py``
(20,000 samples per cell, MC sd 0.15 points; the bootstrap column 4,000, MC sd 0.6 points):

    data (population skewness)              n    t      hall_t  percentile bootstrap
    normal (0)                              5    0.951  0.948   0.848
                                           10    0.952  0.951   0.898
    Beta(2, 18), mean 0.1 (1.11)            5    0.926  0.939   0.819
                                           10    0.932  0.947   0.884
    Beta(1, 9), mean 0.1 (1.47)             5    0.894  0.928   0.792
                                           10    0.912  0.944   0.871
    lognormal, sigma 0.5 (1.75)             5    0.916  0.930   0.816
    exponential (2.0)                       5    0.878  0.919   0.773
                                           10    0.898  0.937   0.858
    lognormal, sigma 1 (6.2)                5    0.820  0.879   0.734
                                           10    0.843  0.905   0.798
    Beta(2, 18) - Beta(1, 39) (paired)      5    0.936  0.940   0.818

So ``hall_t`` holds >= 0.93 at n = 5 up to a population skewness of about 1.1-1.5 (Beta(1, 9),
skewness 1.47, is on the edge at 0.928), 0.92 at skewness 2 and 0.88 at 6; at n = 10 it holds
to skewness 2. It costs width, because the skewness of 5 values is noisy (|gamma| <= 1.5 at
n = 5): its median width is 1.06-1.13x the t-interval's, but one sample in ten, normal data
included, gets 2.3x, with the stretch on the side the sample leans to (up to 4x t's half-width).
The studentized bootstrap covers about as well and is more erratic still (99th percentile
width 6-15x t's at n = 5). No interval built from 5
values holds for every distribution: if a condition ends at exactly 0 with probability p, all
5 seeds are 0 with probability p^5, and any such interval is then the point [0, 0]. The
percentile bootstrap is kept for its hand-worked cases and ``bootstrap_band``; at n = 5 it
under-covers whatever the data, because resampled means have the plug-in variance
(n-1)/n s^2 and normal, not Student, tails.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    method: str = ""          # a key of INTERVALS ('' for one built by hand)

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """'22.2 [14.1, 28.0]' (percent points by default); '-' for no data; no bracket for n = 1."""
        if self.n == 0:
            return "-"
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"


def _array(values: Sequence[float]) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"an interval needs a 1-D sequence of values, got shape {x.shape}")
    return x


@lru_cache(maxsize=256)
def _t_quantile(df: int, level: float) -> float:
    from scipy import stats   # lazily: the report's CLI answers --help without scipy's import time
    return float(stats.t.ppf(0.5 + level / 2.0, df))


def _special_case(x: np.ndarray, method: str) -> Interval | None:
    """No data -> n = 0; one value -> no interval (nan bounds); all equal -> the point itself."""
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, method)
    if x.size == 1:
        return Interval(float(x[0]), float("nan"), float("nan"), 1, method)
    if np.ptp(x) == 0:
        return Interval(float(x[0]), float(x[0]), float(x[0]), int(x.size), method)
    return None


# ---- t-intervals ----------------------------------------------------------------------------
def t_interval(values: Sequence[float], *, level: float = 0.95) -> Interval:
    """Student's t-interval: mean +- t_{n-1, (1+level)/2} * s / sqrt(n), s with ddof = 1.

    Exact for normal data at any n >= 2; under right skew it misses the true mean above
    more often than below (the t statistic is skewed the other way), see the module table.
    """
    x = _array(values)
    if (special := _special_case(x, "t")) is not None:
        return special
    n, mean = x.size, float(x.mean())
    half = _t_quantile(n - 1, level) * float(x.std(ddof=1)) / np.sqrt(n)
    return Interval(mean, mean - half, mean + half, int(n), "t")


def hall_t_interval(values: Sequence[float], *, level: float = 0.95) -> Interval:
    """The t-interval with Hall's (1992) cubic skewness correction; equals ``t_interval`` when
    the sample skewness is 0.

    With S = (xbar - mu) / s and gamma = m3 / m2^(3/2) (the plug-in sample skewness, m_k
    the k-th central sample moment), Edgeworth expansion gives the t statistic a skewness of
    about -2 gamma / sqrt(n). Johnson (1978) removed its first-order term with
    t + gamma t^2 / (3 sqrt n) + gamma / (6 sqrt n); Hall (1992, "On the removal of skewness
    by transformation", JRSS B 54) added gamma^2 t^3 / (27 n), which makes the map monotone:

        g(S) = S + gamma S^2 / 3 + gamma^2 S^3 / 27 + gamma / (6 n),   sqrt(n) g(S) ~ t_{n-1},
        g^-1(u) = (3 / gamma) * ((1 + gamma (u - gamma / (6 n)))^(1/3) - 1)    (real cube root),

    so the interval is [xbar - s g^-1(q / sqrt n), xbar - s g^-1(-q / sqrt n)] with q the
    Student quantile t_{n-1, (1+level)/2}. Hall's asymptotics use the normal quantile; at n = 5
    that covers only 0.88 even for normal data, so this uses Student's q with s (ddof 1),
    which makes it exactly the t-interval at gamma = 0. Under right skew (gamma > 0) the
    interval shifts up and widens on its upper side. At n = 5, |gamma| <= (n-2)/sqrt(n-1) = 1.5.
    """
    x = _array(values)
    if (special := _special_case(x, "hall_t")) is not None:
        return special
    n, mean = x.size, float(x.mean())
    s = float(x.std(ddof=1))
    centred = x - mean
    gamma = float((centred ** 3).mean() / (centred ** 2).mean() ** 1.5)
    q = _t_quantile(n - 1, level) / np.sqrt(n)
    if abs(gamma) < 1e-9:
        return Interval(mean, mean - s * q, mean + s * q, int(n), "hall_t")

    def inverse(u: float) -> float:
        return 3.0 / gamma * (np.cbrt(1.0 + gamma * (u - gamma / (6.0 * n))) - 1.0)

    return Interval(mean, mean - s * inverse(q), mean - s * inverse(-q), int(n), "hall_t")


# ---- the percentile bootstrap (the paper's statistic) ---------------------------------------
def bootstrap_ci(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                 level: float = 0.95) -> Interval:
    """Mean and percentile-bootstrap CI of the mean: resample ``values`` with replacement.

    With 5 seeds the bootstrap distribution of a mean has at most C(9, 5) = 126 distinct
    values, so this CI is coarse and too narrow (coverage ~0.83 at n = 5, module table).
    """
    x = _array(values)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "bootstrap")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(x.mean()), float(low), float(high), int(x.size), "bootstrap")


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], **kwargs) -> Interval:
    """CI of mean(a - b) for pairs (a_i, b_i) matched by seed: the pairs are resampled together."""
    return bootstrap_ci(_differences(a, b), **kwargs)


def bootstrap_band(curves: Sequence[Sequence[float]], **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, low, high) at every position of ragged curves, over the curves that reach it."""
    length = max((len(c) for c in curves), default=0)
    out = np.full((3, length), np.nan)
    for i in range(length):
        ci = bootstrap_ci([c[i] for c in curves if len(c) > i], **kwargs)
        out[:, i] = (ci.mean, ci.low, ci.high)
    return out[0], out[1], out[2]


# ---- one name for the report ----------------------------------------------------------------
INTERVALS: dict[str, Callable[..., Interval]] = {
    "hall_t": hall_t_interval,
    "t": t_interval,
    "bootstrap": bootstrap_ci,
}
DEFAULT_INTERVAL = "hall_t"
DESCRIPTIONS = {
    "hall_t": "t-interval with Hall's (1992) skewness correction",
    "t": "Student t-interval",
    "bootstrap": "percentile bootstrap",
}


def mean_interval(values: Sequence[float], *, method: str = DEFAULT_INTERVAL, level: float = 0.95,
                  bounds: tuple[float, float] | None = None) -> Interval:
    """The mean and its ``level`` CI by ``method`` (a key of INTERVALS); ``Interval.method`` names it.

    ``bounds`` clips the interval to where the mean can lie ((0, 1) for pass@1, (-1, 1) for a
    difference of two): clipping to the parameter space never lowers coverage.
    """
    if method not in INTERVALS:
        raise ValueError(f"unknown interval method {method!r}: choose one of {', '.join(INTERVALS)}")
    ci = replace(INTERVALS[method](values, level=level), method=method)
    if bounds is not None and ci.n >= 2:
        ci = replace(ci, low=max(ci.low, bounds[0]), high=min(ci.high, bounds[1]))
    return ci


def paired_interval(a: Sequence[float], b: Sequence[float], *, method: str = DEFAULT_INTERVAL,
                    level: float = 0.95, bounds: tuple[float, float] | None = None) -> Interval:
    """CI of mean(a - b) over pairs (a_i, b_i) matched by seed: the interval of the n differences."""
    return mean_interval(_differences(a, b), method=method, level=level, bounds=bounds)


def caption(method: str = DEFAULT_INTERVAL, level: float = 0.95) -> str:
    """'95% t-interval with Hall's (1992) skewness correction', for the table's caption."""
    return f"{level:.0%} {DESCRIPTIONS[method]}"


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    a, b = _array(a), _array(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have the same length, got {a.size} and {b.size}")
    return a - b


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of values against their index (0 for fewer than two points)."""
    y = np.asarray(values, dtype=float)
    if y.size < 2:
        return 0.0
    x = np.arange(y.size, dtype=float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
