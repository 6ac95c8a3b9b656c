"""Estimates across replications: the mean and its Student-t confidence interval.

Intervals need the Student-t quantile for n − 1 degrees of freedom, a whole number. For those it
is computed here, exactly, from the closed form of the t distribution for an integer number of
degrees of freedom (Abramowitz & Stegun 26.7.3–4); importing ``scipy.special`` for it would cost
a command a sixth of a second of start-up. Other degrees of freedom go to ``scipy.special.stdtrit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A mean over replications with its confidence interval (``None`` bounds with one value)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict:
        return {"mean": self.mean, "ci95": [self.low, self.high]}

    @property
    def half_width(self) -> float | None:
        return None if self.low is None else (self.high - self.low) / 2

    def contains(self, value: float) -> bool:
        return self.low is not None and self.low <= value <= self.high


def is_nan(x: Any) -> bool:
    """Whether ``x`` is a float NaN (a metric with no value)."""
    return isinstance(x, float) and math.isnan(x)


def json_safe(x: Any) -> Any:
    """``x`` as JSON takes it: numpy scalars as Python ones, NaN and infinities as None."""
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def t_quantile(degrees_of_freedom: float, confidence: float = 0.95) -> float:
    """The two-sided Student-t quantile t(1 − α/2, df): the normal one for infinite ``df``."""
    if math.isinf(degrees_of_freedom):
        return NormalDist().inv_cdf(0.5 + confidence / 2)
    if degrees_of_freedom != int(degrees_of_freedom) or degrees_of_freedom < 1:
        from scipy.special import stdtrit

        return float(stdtrit(degrees_of_freedom, 0.5 + confidence / 2))
    nu = int(degrees_of_freedom)
    if nu == 1:
        return math.tan(math.pi * confidence / 2)
    # Newton's method on P(|T| ≤ t) = confidence from the normal quantile, which lies below: the
    # probability is concave in t, so the steps increase towards the root without passing it
    log_density_constant = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    t = NormalDist().inv_cdf(0.5 + confidence / 2)
    for _ in range(100):
        density = math.exp(log_density_constant - (nu + 1) / 2 * math.log1p(t * t / nu))
        step = (confidence - t_within(t, nu)) / (2 * density)
        t += step
        if step < 1e-13 * t:
            break
    return t


def t_quantile_between(degrees_of_freedom: float, confidence: float = 0.95) -> float:
    """The t quantile for ν ≥ 1 degrees of freedom that need not be whole, without scipy: exact
    at a whole ν, else log t interpolated linearly in 1/ν between the whole degrees around ν
    (within 3% of the exact quantile between 1 and 2 degrees, 0.5% from 2 on)."""
    low, high = math.floor(degrees_of_freedom), math.ceil(degrees_of_freedom)
    if low == high:
        return t_quantile(low, confidence)
    share = (1 / low - 1 / degrees_of_freedom) / (1 / low - 1 / high)
    return math.exp((1 - share) * math.log(t_quantile(low, confidence)) + share * math.log(t_quantile(high, confidence)))


def t_within(t: float, nu: int) -> float:
    """P(|T| ≤ t) for Student's T with ``nu`` (a whole number, ≥ 2) degrees of freedom:
    Abramowitz & Stegun 26.7.3 (odd ``nu``) and 26.7.4 (even), with θ = atan(t/√nu)."""
    theta = math.atan(t / math.sqrt(nu))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    odd = nu % 2
    term = math.cos(theta) if odd else 1.0
    total = term
    for j in range(odd, nu - 3, 2):  # the term in cos^(j+2)θ from the term in cos^jθ, up to cos^(nu-2)θ
        term *= cos2 * (j + 1) / (j + 2)
        total += term
    return 2 / math.pi * (theta + sin * total) if odd else sin * total


def mean_ci(values, confidence: float = 0.95) -> Estimate:
    """Mean of the finite ``values`` and the Student-t interval at ``confidence``.

    Replications are independent and identically distributed, so the replication means are too;
    by the central limit theorem their mean is close to normal, and with an unknown variance the
    interval is mean ± t(1 − α/2, n − 1)·s/√n.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Estimate(None, None, None, 0)
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, None, None, 1)
    half = t_quantile(n - 1, confidence) * float(x.std(ddof=1)) / math.sqrt(n)
    return Estimate(json_safe(mean), json_safe(mean - half), json_safe(mean + half), n)
