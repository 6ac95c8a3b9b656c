"""Estimates across replications: the mean and its Student-t confidence interval.

The t quantile comes from ``scipy.special.stdtrit``, which is what ``scipy.stats.t.ppf``
computes, imported only when an interval is needed (two values or more): loading the small
``scipy.special`` rather than ``scipy.stats`` saves most of a second of start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    from scipy.special import stdtrit

    return float(stdtrit(degrees_of_freedom, 0.5 + confidence / 2))


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
