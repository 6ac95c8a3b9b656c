"""Distributions of durations: a validated spec turns into a sampler that draws in blocks.

Each distribution knows its mean and squared coefficient of variation (``scv`` = variance / mean²)
so that the analytic models and the stability check can use it, and draws ``n`` values at once
from a numpy Generator. A :class:`Sampler` wraps one distribution and one Generator and hands out
one value per call from a block of 4096 draws: the hot path pays a list pop, not a numpy call.

scipy is imported only by the few functions that need it (the truncated normal's moments, the
Weibull's gamma functions and shape fit), so loading a scenario does not pay for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BLOCK_SIZE = 4096


class Distribution:
    """A non-negative random duration in seconds."""

    name = "distribution"

    @property
    def mean(self) -> float:
        raise NotImplementedError

    @property
    def scv(self) -> float:
        """Squared coefficient of variation, variance / mean² (``inf`` when the variance is)."""
        raise NotImplementedError

    @property
    def cv(self) -> float:
        return math.sqrt(self.scv)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError

    def survival(self, x_s: float) -> float:
        """P(X > x_s)."""
        raise NotImplementedError

    def limited_mean(self, limit_s: float) -> float:
        """E[min(X, limit_s)], the mean of a duration cut short at ``limit_s``: the integral of
        the survival function from 0 to the limit (numerically, unless a subclass knows it)."""
        from scipy import integrate

        if limit_s <= 0:
            return 0.0
        return float(integrate.quad(self.survival, 0.0, limit_s, limit=200)[0])

    @property
    def exponential(self) -> bool:
        """Exactly exponential (an exponential, or a gamma of shape 1)."""
        return False


@dataclass(frozen=True)
class Exponential(Distribution):
    mean_s: float
    name = "exponential"

    @property
    def mean(self):
        return self.mean_s

    @property
    def scv(self):
        return 1.0

    @property
    def exponential(self) -> bool:
        return True

    def draw(self, rng, n):
        return rng.exponential(self.mean_s, n)

    def survival(self, x_s):
        return math.exp(-max(x_s, 0.0) / self.mean_s) if self.mean_s > 0 else 0.0

    def limited_mean(self, limit_s):
        return self.mean_s * (1 - self.survival(limit_s))


@dataclass(frozen=True)
class Deterministic(Distribution):
    value_s: float
    name = "deterministic"

    @property
    def mean(self):
        return self.value_s

    @property
    def scv(self):
        return 0.0

    def draw(self, rng, n):
        return np.full(n, self.value_s)

    def survival(self, x_s):
        return float(self.value_s > x_s)

    def limited_mean(self, limit_s):
        return min(self.value_s, max(limit_s, 0.0))


@dataclass(frozen=True)
class Uniform(Distribution):
    low_s: float
    high_s: float
    name = "uniform"

    @property
    def mean(self):
        return (self.low_s + self.high_s) / 2

    @property
    def scv(self):
        return ((self.high_s - self.low_s) ** 2 / 12) / self.mean**2 if self.mean > 0 else 0.0

    def draw(self, rng, n):
        return rng.uniform(self.low_s, self.high_s, n)

    def survival(self, x_s):
        if self.high_s == self.low_s:
            return float(self.low_s > x_s)
        return min(1.0, max(0.0, (self.high_s - x_s) / (self.high_s - self.low_s)))


@dataclass(frozen=True)
class TruncatedNormal(Distribution):
    """A normal distribution with location ``loc_s`` and scale ``scale_s``, conditioned to be ≥ 0.

    Negative draws are redrawn, so the samples follow the truncated law exactly; its mean and
    variance (slightly above ``loc_s`` and below ``scale_s²`` when the scale is a large fraction of
    the location) are those of the truncated law.
    """

    loc_s: float
    scale_s: float
    name = "normal"

    def _law(self):
        from scipy import stats

        return stats.truncnorm((0 - self.loc_s) / self.scale_s, np.inf, loc=self.loc_s, scale=self.scale_s)

    @property
    def mean(self):
        return float(self._law().mean())

    @property
    def scv(self):
        return float(self._law().var()) / self.mean**2

    def draw(self, rng, n):
        values = rng.normal(self.loc_s, self.scale_s, n)
        negative = values < 0
        while negative.any():
            values[negative] = rng.normal(self.loc_s, self.scale_s, int(negative.sum()))
            negative = values < 0
        return values

    def survival(self, x_s):
        return float(self._law().sf(x_s))


@dataclass(frozen=True)
class Lognormal(Distribution):
    mean_s: float
    cv_: float
    name = "lognormal"

    @property
    def mean(self):
        return self.mean_s

    @property
    def scv(self):
        return self.cv_**2

    def draw(self, rng, n):
        sigma2 = math.log1p(self.cv_**2)
        return rng.lognormal(math.log(self.mean_s) - sigma2 / 2, math.sqrt(sigma2), n)

    def survival(self, x_s):
        from scipy import stats

        sigma2 = math.log1p(self.cv_**2)
        return float(stats.lognorm.sf(x_s, math.sqrt(sigma2), scale=self.mean_s * math.exp(-sigma2 / 2)))


@dataclass(frozen=True)
class Gamma(Distribution):
    shape: float
    scale_s: float
    name = "gamma"

    @property
    def mean(self):
        return self.shape * self.scale_s

    @property
    def scv(self):
        return 1.0 / self.shape

    @property
    def exponential(self) -> bool:
        return abs(self.shape - 1.0) < 1e-12

    def draw(self, rng, n):
        return rng.gamma(self.shape, self.scale_s, n)

    def survival(self, x_s):
        from scipy import stats

        return float(stats.gamma.sf(x_s, self.shape, scale=self.scale_s))


@dataclass(frozen=True)
class Erlang(Gamma):
    """A gamma distribution of integer shape ``k``: the sum of k exponential phases."""

    name = "erlang"


@dataclass(frozen=True)
class Hyperexponential(Distribution):
    """Two exponential phases with balanced means (p₁/μ₁ = p₂/μ₂), fitted to a mean and a cv > 1."""

    mean_s: float
    cv_: float
    name = "hyperexponential"

    @property
    def mean(self):
        return self.mean_s

    @property
    def scv(self):
        return self.cv_**2

    def phases(self) -> tuple[float, float, float]:
        """(p, mean of phase 1, mean of phase 2), phase 1 chosen with probability p."""
        c2 = self.cv_**2
        p = 0.5 * (1 + math.sqrt((c2 - 1) / (c2 + 1)))
        return p, self.mean_s / (2 * p), self.mean_s / (2 * (1 - p))

    def draw(self, rng, n):
        p, mean1, mean2 = self.phases()
        means = np.where(rng.random(n) < p, mean1, mean2)
        return rng.exponential(1.0, n) * means

    def survival(self, x_s):
        p, mean1, mean2 = self.phases()
        return p * math.exp(-max(x_s, 0.0) / mean1) + (1 - p) * math.exp(-max(x_s, 0.0) / mean2)


@dataclass(frozen=True)
class Pareto(Distribution):
    """Pareto type I: P(X > x) = (x_m / x)^α for x ≥ x_m."""

    alpha: float
    scale_s: float
    name = "pareto"

    @property
    def mean(self):
        return math.inf if self.alpha <= 1 else self.alpha * self.scale_s / (self.alpha - 1)

    @property
    def scv(self):
        return math.inf if self.alpha <= 2 else 1.0 / (self.alpha * (self.alpha - 2))

    def draw(self, rng, n):
        return self.scale_s * (1.0 + rng.pareto(self.alpha, n))

    def survival(self, x_s):
        return 1.0 if x_s < self.scale_s else (self.scale_s / x_s) ** self.alpha


@dataclass(frozen=True)
class Weibull(Distribution):
    shape: float
    scale_s: float
    name = "weibull"

    @property
    def mean(self):
        from scipy import special

        return self.scale_s * special.gamma(1 + 1 / self.shape)

    @property
    def scv(self):
        from scipy import special

        g1 = special.gamma(1 + 1 / self.shape)
        return special.gamma(1 + 2 / self.shape) / g1**2 - 1

    def draw(self, rng, n):
        return self.scale_s * rng.weibull(self.shape, n)

    def survival(self, x_s):
        return math.exp(-((max(x_s, 0.0) / self.scale_s) ** self.shape))


@dataclass(frozen=True)
class Empirical(Distribution):
    """Resamples, with replacement, the values of one column of a CSV file."""

    values_s: np.ndarray = field(repr=False)
    source: str = ""
    name = "empirical"

    @property
    def mean(self):
        return float(self.values_s.mean())

    @property
    def scv(self):
        return float(self.values_s.var()) / self.mean**2 if self.mean > 0 else 0.0

    def draw(self, rng, n):
        return rng.choice(self.values_s, n)

    def survival(self, x_s):
        return float((self.values_s > x_s).mean())

    def limited_mean(self, limit_s):
        return float(np.minimum(self.values_s, max(limit_s, 0.0)).mean())


def weibull_shape_for_cv(cv: float) -> float:
    """The Weibull shape k whose coefficient of variation is ``cv``."""
    from scipy import optimize, special

    def excess(log_k):
        k = math.exp(log_k)
        g1 = special.gammaln(1 + 1 / k)
        g2 = special.gammaln(1 + 2 / k)
        return math.sqrt(math.expm1(g2 - 2 * g1)) - cv

    return math.exp(optimize.brentq(excess, math.log(0.05), math.log(500.0), xtol=1e-12))


def pareto_alpha_for_cv(cv: float) -> float:
    """The Pareto shape α whose coefficient of variation is ``cv`` (always > 2)."""
    return 1.0 + math.sqrt(1.0 + 1.0 / cv**2)


class Sampler:
    """Draws one value at a time from ``distribution``, refilling a block of draws as needed."""

    __slots__ = ("distribution", "rng", "_block")

    def __init__(self, distribution: Distribution, rng: np.random.Generator):
        self.distribution = distribution
        self.rng = rng
        self._block: list[float] = []

    def __call__(self) -> float:
        block = self._block
        if not block:
            block.extend(self.distribution.draw(self.rng, BLOCK_SIZE).tolist())
            block.reverse()
        return block.pop()
