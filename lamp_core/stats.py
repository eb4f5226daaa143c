"""Small statistics for reports over seeds: mean ± std, and the paired LAMP − base difference
with a t-based 95% confidence interval (how every table in bench/results states a difference).

One helper per idea: `mean_std` is the only mean/std of a list of scores (the std of fewer than
two values is NaN: one seed has no spread, and a table prints it without ±), and `t_quantile`
is Student's t quantile, computed here (regularised incomplete beta function, Lentz's continued
fraction, then bisection) so that reports need no SciPy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(df: int, q: float = 0.975) -> float:
    """The q-quantile of Student's t with `df` >= 1 degrees of freedom (to ~1e-10)."""
    if df < 1 or not 0.0 < q < 1.0:
        raise ValueError(f"t_quantile needs df >= 1 and 0 < q < 1, not df={df}, q={q}")
    if q < 0.5:
        return -t_quantile(df, 1.0 - q)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """(mean, sample std, n) of the values that are numbers; std is NaN for fewer than two, and
    the mean too for none."""
    v = _finite(values)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else math.nan), len(v)


def fmt_ms(m: float, s: float, digits: int = 3) -> str:
    """"0.812 ± 0.004", or "0.812" when there is no spread (one seed), or "–" for no value."""
    if math.isnan(m):
        return "–"
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


@dataclass
class Paired:
    """LAMP − base over paired runs (same seed, class/category, setting)."""
    n: int
    mean: float
    lo: float               # 95% CI (t-based); nan when n < 2
    hi: float
    wins: int               # pairs where LAMP's AUROC is higher
    ties: int
    losses: int
    sd: float = math.nan    # sample std of the paired differences; nan when n < 2

    @property
    def mde(self) -> float:
        """The smallest true mean difference these pairs detect with 80% power (two-sided paired
        t-test at 5%), taking the observed spread as the true one: (t_.975 + t_.80) * sd / sqrt(n).
        A paper effect below it could not have been seen either way."""
        return minimum_detectable_effect(self.sd, self.n)

    def text(self, digits: int = 3) -> str:
        if self.n == 0:
            return "–"
        ci = "" if math.isnan(self.lo) else f" [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"
        return f"{self.mean:+.{digits}f}{ci}"


def paired(diffs: Sequence[float | None]) -> Paired:
    """The paired differences' mean with a 95% t-interval, and the wins, ties and losses."""
    d = _finite(diffs)
    n = len(d)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, 0, 0, 0)
    mean = float(d.mean())
    if n > 1:
        half = t_quantile(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        lo = hi = math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    return Paired(n, mean, lo, hi, int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum()), sd)


def minimum_detectable_effect(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean paired difference a two-sided paired t-test at level `alpha` finds with the
    given power over `n` pairs whose differences have standard deviation `sd`. Uses the usual
    t-approximation (t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n) rather than the
    noncentral t, which differs from it by under 2% for n >= 10; NaN for fewer than two pairs."""
    if n < 2 or math.isnan(sd):
        return math.nan
    return (t_quantile(n - 1, 1.0 - alpha / 2.0) + t_quantile(n - 1, power)) * sd / math.sqrt(n)
