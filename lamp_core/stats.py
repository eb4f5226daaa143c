"""Small statistics for reports over seeds: mean ± std, and the paired LAMP − base difference
with a t-based 95% confidence interval (how every table in bench/results states a difference).

One helper per idea: `mean_std` is the only mean/std of a list of scores (the std of fewer than
two values is NaN: one seed has no spread, and a table prints it without ±), and `t_quantile`
is Student's t quantile, SciPy's (`scipy.stats.t`; SciPy comes with scikit-learn, which
imports `scipy.stats` itself, so it costs no extra import).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import t as student_t


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    return float(student_t.cdf(t, df))


def t_quantile(df: int, q: float = 0.975) -> float:
    """The q-quantile of Student's t with `df` >= 1 degrees of freedom."""
    if df < 1 or not 0.0 < q < 1.0:
        raise ValueError(f"t_quantile needs df >= 1 and 0 < q < 1, not df={df}, q={q}")
    return float(student_t.ppf(q, df))


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
