"""Distributions of durations (sim.distributions) built from their scenario specs (sim.schema).

Each distribution is checked three ways: its ``.mean`` and ``.scv`` against the parameters given,
its exact moments computed independently (closed forms or scipy), and 200,000 draws with a fixed
seed: the sample mean must lie within 4 standard errors of the exact mean (standard error from
the exact variance), and the sample cv within 4 standard errors of the exact cv, the standard
error of the cv coming from the delta method with the exact moments up to the fourth (so only
distributions whose fourth moment exists get the cv test). 4 standard errors leave a chance of
about 6e-5 per check of a false alarm, and the seeds are fixed, so the outcome is deterministic.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError
from scipy import special, stats

from sim import distributions as d
from sim.fields import DistributionSpec

DATA = Path(__file__).resolve().parent / "data"
N = 200_000
SEED = 20240611

SPEC = TypeAdapter(DistributionSpec)


def build(spec: dict) -> d.Distribution:
    return SPEC.validate_python(spec, context={"base_dir": str(DATA)}).build()


# --- exact raw moments E[X^k], k = 1..4, computed without the code under test --------------------


def exponential_moments(mean):
    return [math.factorial(k) * mean**k for k in range(1, 5)]


def scipy_moments(law):
    return [float(law.moment(k)) for k in range(1, 5)]


def lognormal_moments(mean, cv):
    sigma2 = math.log(1 + cv**2)
    mu = math.log(mean) - sigma2 / 2
    return [math.exp(k * mu + k * k * sigma2 / 2) for k in range(1, 5)]


def gamma_moments(shape, scale):
    return [math.exp(special.gammaln(shape + k) - special.gammaln(shape)) * scale**k for k in range(1, 5)]


def pareto_moments(alpha, scale):
    return [alpha * scale**k / (alpha - k) if alpha > k else math.inf for k in range(1, 5)]


def weibull_moments(shape, scale):
    return [scale**k * math.gamma(1 + k / shape) for k in range(1, 5)]


def hyperexponential_moments(mean, cv):
    # two exponential phases with balanced means: p·m1 = (1-p)·m2 = mean/2, and E[X²] = mean²(1 + cv²)
    # give p(1-p) = 1 / (2(1 + cv²)); p is the root above one half
    p = (1 + math.sqrt(1 - 2 / (1 + cv**2))) / 2
    m1, m2 = mean / (2 * p), mean / (2 * (1 - p))
    return [math.factorial(k) * (p * m1**k + (1 - p) * m2**k) for k in range(1, 5)]


def truncated_normal_mean_var(loc, scale):
    """Mean and variance of N(loc, scale²) conditioned on X ≥ 0 (closed form)."""
    alpha = -loc / scale
    lam = stats.norm.pdf(alpha) / stats.norm.sf(alpha)
    return loc + scale * lam, scale**2 * (1 + alpha * lam - lam**2)


EMPIRICAL_MS = np.array([120, 80, 250, 95, 80, 400, 150, 60, 210], dtype=float)  # tests/data/service_times_ms.csv
EMPIRICAL_S = EMPIRICAL_MS / 1000


# id: (spec, exact mean, exact scv, exact raw moments 1..4)
CASES = {
    "exponential-mean": ({"dist": "exponential", "mean": "200ms"}, 0.2, 1.0, exponential_moments(0.2)),
    "exponential-rate": ({"dist": "exponential", "rate": "5/s"}, 0.2, 1.0, exponential_moments(0.2)),
    "uniform-low-high": ({"dist": "uniform", "low": "100ms", "high": "300ms"}, 0.2, 1 / 12, scipy_moments(stats.uniform(0.1, 0.2))),
    "uniform-mean-cv": ({"dist": "uniform", "mean": "1s", "cv": 0.5}, 1.0, 0.25, scipy_moments(stats.uniform(1 - 0.5 * math.sqrt(3), math.sqrt(3)))),
    "normal-narrow": ({"dist": "normal", "mean": "200ms", "cv": 0.1}, 0.2, 0.01, scipy_moments(stats.truncnorm(-10, np.inf, loc=0.2, scale=0.02))),
    "normal-truncated": (
        {"dist": "normal", "mean": "1s", "sd": "1s"},
        truncated_normal_mean_var(1, 1)[0],
        truncated_normal_mean_var(1, 1)[1] / truncated_normal_mean_var(1, 1)[0] ** 2,
        scipy_moments(stats.truncnorm(-1, np.inf, loc=1, scale=1)),
    ),
    "lognormal": ({"dist": "lognormal", "mean": "200ms", "cv": 0.8}, 0.2, 0.64, lognormal_moments(0.2, 0.8)),
    "gamma-mean-cv": ({"dist": "gamma", "mean": "200ms", "cv": 0.5}, 0.2, 0.25, gamma_moments(4, 0.05)),
    "gamma-shape-scale": ({"dist": "gamma", "shape": 2.5, "scale": "40ms"}, 0.1, 0.4, gamma_moments(2.5, 0.04)),
    "erlang-k": ({"dist": "erlang", "mean": "200ms", "k": 4}, 0.2, 0.25, gamma_moments(4, 0.05)),
    "erlang-cv": ({"dist": "erlang", "mean": "200ms", "cv": 0.5}, 0.2, 0.25, gamma_moments(4, 0.05)),
    "hyperexponential": ({"dist": "hyperexponential", "mean": "200ms", "cv": 2}, 0.2, 4.0, hyperexponential_moments(0.2, 2)),
    # cv 0.3 gives alpha = 1 + sqrt(1 + 1/0.09) ≈ 4.48 > 4: the fourth moment exists, so the CLT and
    # the delta method for the sample cv both hold
    "pareto-mean-cv": (
        {"dist": "pareto", "mean": "200ms", "cv": 0.3},
        0.2,
        0.09,
        pareto_moments(1 + math.sqrt(1 + 1 / 0.09), 0.2 * math.sqrt(1 + 1 / 0.09) / (1 + math.sqrt(1 + 1 / 0.09))),
    ),
    "pareto-alpha-scale": ({"dist": "pareto", "alpha": 5, "scale": "100ms"}, 0.125, 1 / 15, pareto_moments(5, 0.1)),
    # alpha 3: finite variance (the sample mean test holds by the CLT) but no fourth moment (no cv test)
    "pareto-alpha-mean": ({"dist": "pareto", "alpha": 3, "mean": "1s"}, 1.0, 1 / 3, pareto_moments(3, 2 / 3)),
    "weibull-mean-cv": (
        {"dist": "weibull", "mean": "200ms", "cv": 0.5},
        0.2,
        0.25,
        weibull_moments(d.weibull_shape_for_cv(0.5), 0.2 / math.gamma(1 + 1 / d.weibull_shape_for_cv(0.5))),
    ),
    "weibull-heavy": (
        {"dist": "weibull", "mean": "1s", "cv": 2},
        1.0,
        4.0,
        weibull_moments(d.weibull_shape_for_cv(2), 1 / math.gamma(1 + 1 / d.weibull_shape_for_cv(2))),
    ),
    "weibull-shape-scale": (
        {"dist": "weibull", "shape": 1.5, "scale": "300ms"},
        0.3 * math.gamma(1 + 1 / 1.5),
        math.gamma(1 + 2 / 1.5) / math.gamma(1 + 1 / 1.5) ** 2 - 1,
        weibull_moments(1.5, 0.3),
    ),
    "empirical": (
        {"dist": "empirical", "file": "service_times_ms.csv", "column": "service_ms", "unit": "1ms"},
        EMPIRICAL_S.mean(),
        EMPIRICAL_S.var() / EMPIRICAL_S.mean() ** 2,
        [float(np.mean(EMPIRICAL_S**k)) for k in range(1, 5)],
    ),
}


def exact_variance(moments):
    return moments[1] - moments[0] ** 2


def cv_standard_error(moments, n):
    """Delta-method standard error of the sample cv = sqrt(m2 - m1²)/m1, from the exact raw moments."""
    m1, m2, m3, m4 = moments
    sigma = math.sqrt(m2 - m1**2)
    grad = np.array([-1 / sigma - sigma / m1**2, 1 / (2 * sigma * m1)])  # d cv / d(m1, m2)
    cov = np.array([[m2 - m1**2, m3 - m1 * m2], [m3 - m1 * m2, m4 - m2**2]])
    return math.sqrt(grad @ cov @ grad / n)


@pytest.fixture(scope="module")
def samples():
    """200,000 draws of every case, each from its own fixed seed."""
    return {case: build(spec).draw(np.random.default_rng([SEED, i]), N) for i, (case, (spec, *_)) in enumerate(CASES.items())}


@pytest.mark.parametrize("case", CASES)
def test_mean_and_scv_match_the_parameters(case):
    spec, mean, scv, moments = CASES[case]
    dist = build(spec)
    assert dist.name == spec["dist"]
    assert dist.mean == pytest.approx(mean, rel=1e-9)
    assert dist.scv == pytest.approx(scv, rel=1e-8)
    assert dist.cv == pytest.approx(math.sqrt(scv), rel=1e-8)
    # and the independent exact moments agree with both
    assert moments[0] == pytest.approx(mean, rel=1e-9)
    assert exact_variance(moments) / moments[0] ** 2 == pytest.approx(scv, rel=1e-8)


@pytest.mark.parametrize("case", CASES)
def test_sample_mean_is_within_4_standard_errors_of_the_mean(case, samples):
    _, mean, _, moments = CASES[case]
    values = samples[case]
    assert values.shape == (N,)
    assert np.all(values >= 0)
    standard_error = math.sqrt(exact_variance(moments) / N)
    assert abs(values.mean() - mean) < 4 * standard_error, (values.mean(), mean, standard_error)


@pytest.mark.parametrize("case", [c for c in CASES if math.isfinite(CASES[c][3][3])])
def test_sample_cv_is_within_4_standard_errors_of_the_cv(case, samples):
    _, _, scv, moments = CASES[case]
    values = samples[case]
    sample_cv = values.std() / values.mean()
    tolerance = 4 * cv_standard_error(moments, N)
    assert tolerance < 0.1 * math.sqrt(scv)  # a meaningful test: the tolerance is a small part of the cv
    assert abs(sample_cv - math.sqrt(scv)) < tolerance, (sample_cv, math.sqrt(scv), tolerance)


def test_deterministic_is_exactly_its_value():
    for spec in ({"dist": "deterministic", "value": "80ms"}, {"dist": "deterministic", "mean": "80ms"}):
        dist = build(spec)
        assert (dist.mean, dist.scv) == (0.08, 0.0)
        assert np.array_equal(dist.draw(np.random.default_rng(1), 1000), np.full(1000, 0.08))


def test_bounded_distributions_stay_in_their_bounds(samples):
    assert samples["uniform-low-high"].min() >= 0.1 and samples["uniform-low-high"].max() <= 0.3
    alpha = 1 + math.sqrt(1 + 1 / 0.09)
    assert samples["pareto-mean-cv"].min() >= 0.2 * (alpha - 1) / alpha
    assert samples["pareto-alpha-scale"].min() >= 0.1


def test_empirical_resamples_the_values_in_their_proportions(samples):
    values = samples["empirical"]
    distinct = np.unique(EMPIRICAL_S)
    nearest = distinct[np.abs(values[:, None] - distinct[None, :]).argmin(axis=1)]
    assert np.allclose(values, nearest, rtol=1e-12, atol=0)  # nothing but the file's values
    for value in distinct:
        p = np.mean(EMPIRICAL_S == value)
        share = np.mean(nearest == value)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / N), (value, share, p)


def test_hyperexponential_phases_are_balanced_and_fit_the_mean_and_cv():
    dist = build({"dist": "hyperexponential", "mean": "200ms", "cv": 2})
    p, m1, m2 = dist.phases()
    assert 0.5 < p < 1
    assert p * m1 == pytest.approx((1 - p) * m2)
    assert p * m1 + (1 - p) * m2 == pytest.approx(0.2)
    assert 2 * (p * m1**2 + (1 - p) * m2**2) == pytest.approx(0.2**2 * (1 + 4))


@pytest.mark.parametrize("cv", [0.05, 0.3, 0.5, 1.0, 2.0, 5.0, 15.0])
def test_weibull_from_mean_and_cv_recovers_the_cv(cv):
    dist = build({"dist": "weibull", "mean": "2s", "cv": cv})
    assert dist.cv == pytest.approx(cv, rel=1e-8)
    assert dist.mean == pytest.approx(2.0, rel=1e-9)
    # an exponential is the Weibull of shape 1
    if cv == 1.0:
        assert dist.shape == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("cv", [0.1, 0.5, 1.0, 3.0])
def test_pareto_from_mean_and_cv_recovers_them(cv):
    dist = build({"dist": "pareto", "mean": "500ms", "cv": cv})
    assert dist.alpha > 2
    assert dist.mean == pytest.approx(0.5, rel=1e-12)
    assert dist.cv == pytest.approx(cv, rel=1e-12)


def test_pareto_with_a_heavy_tail_has_infinite_moments():
    assert build({"dist": "pareto", "alpha": 1.5, "scale": "1s"}).scv == math.inf
    assert build({"dist": "pareto", "alpha": 1.5, "scale": "1s"}).mean == pytest.approx(3.0)
    assert build({"dist": "pareto", "alpha": 0.8, "scale": "1s"}).mean == math.inf


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"dist": "exponential", "mean": 1, "rate": 2}, "exponential takes {mean} or {rate}; got {mean, rate}"),
        ({"dist": "exponential"}, "exponential takes {mean} or {rate}; got {}"),
        ({"dist": "uniform", "low": "2s", "high": "1s"}, "high (1s) must not be below low (2s)"),
        ({"dist": "uniform", "mean": 1, "cv": 0.6}, "cv ≤ 0.577"),
        ({"dist": "erlang", "mean": 1, "cv": 0.3}, "cv 0.3 gives k = 11.11"),
        ({"dist": "pareto", "alpha": 1, "mean": 1}, "alpha ≤ 1 has no mean"),
        ({"dist": "lognormal", "mean": 1}, "cv"),
        ({"dist": "hyperexponential", "mean": 1, "cv": 1}, "greater than 1"),
        ({"dist": "weibull", "mean": 1, "cv": 25}, "less than 20"),
        ({"dist": "gamma", "mean": -1, "cv": 1}, "must be a positive finite amount"),
        ({"dist": "normal", "mean": "1s"}, "normal takes {mean, cv} or {mean, sd}; got {mean}"),
    ],
)
def test_invalid_parameters_are_refused_with_a_reason(spec, words):
    with pytest.raises(ValidationError) as info:
        build(spec)
    assert words in str(info.value)


# --- Sampler ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["lognormal", "hyperexponential", "normal-truncated", "empirical"])
def test_sampler_hands_out_the_blocks_in_order(case):
    dist = build(CASES[case][0])
    sampler = d.Sampler(dist, np.random.default_rng(99))
    n = 3 * d.BLOCK_SIZE + 17
    drawn = [sampler() for _ in range(n)]
    direct_rng = np.random.default_rng(99)
    direct = np.concatenate([dist.draw(direct_rng, d.BLOCK_SIZE) for _ in range(4)])[:n]
    assert all(type(x) is float for x in drawn[:10])
    assert np.array_equal(np.array(drawn), direct)


def test_sampler_streams_with_the_same_seed_agree_and_different_seeds_do_not():
    dist = build({"dist": "exponential", "mean": "1s"})
    a = d.Sampler(dist, np.random.default_rng(5))
    b = d.Sampler(dist, np.random.default_rng(5))
    c = d.Sampler(dist, np.random.default_rng(6))
    first = [a() for _ in range(100)]
    assert first == [b() for _ in range(100)]
    assert first != [c() for _ in range(100)]
    assert len(set(first)) == 100


# --- the truncated normal -----------------------------------------------------------------------


@pytest.mark.parametrize("loc, scale", [(1.0, 2.0), (0.2, 0.1), (0.5, 1.5)])
def test_truncated_normal_never_goes_negative_and_matches_scipy(loc, scale):
    dist = d.TruncatedNormal(loc, scale)
    law = stats.truncnorm(-loc / scale, np.inf, loc=loc, scale=scale)
    assert dist.mean == pytest.approx(law.mean(), rel=1e-12)
    assert dist.scv == pytest.approx(law.var() / law.mean() ** 2, rel=1e-12)
    mean, var = truncated_normal_mean_var(loc, scale)
    assert dist.mean == pytest.approx(mean, rel=1e-9)
    assert dist.mean > loc  # truncation at zero raises the mean
    values = dist.draw(np.random.default_rng([SEED, 7]), N)
    assert values.min() >= 0
    assert abs(values.mean() - law.mean()) < 4 * math.sqrt(law.var() / N)
    # and the shape: the share below the median of the truncated law is one half
    below = np.mean(values < law.median())
    assert abs(below - 0.5) < 4 * math.sqrt(0.25 / N)


@pytest.mark.parametrize("case", CASES)
def test_a_duration_cut_at_a_limit_has_the_mean_and_exceedance_of_the_samples_cut_there(case, samples):
    """E[min(X, L)] and P(X > L), at L = the mean, within 4 standard errors of the samples'."""
    dist, values = build(CASES[case][0]), samples[case]
    limit = dist.mean
    cut = np.minimum(values, limit)
    assert abs(dist.limited_mean(limit) - cut.mean()) < 4 * cut.std() / math.sqrt(N) + 1e-12, (dist.limited_mean(limit), cut.mean())
    beyond = (values > limit).mean()
    assert abs(dist.survival(limit) - beyond) < 4 * math.sqrt(max(beyond * (1 - beyond), 1e-12) / N) + 1e-12, (dist.survival(limit), beyond)
    assert dist.limited_mean(0.0) == 0.0


def test_an_exponential_cut_at_l_has_mean_m_times_one_minus_exp_of_minus_l_over_m():
    dist = build({"dist": "exponential", "mean": 10.0})
    assert dist.limited_mean(5.0) == pytest.approx(10 * (1 - math.exp(-0.5)), rel=1e-12)
    assert dist.survival(5.0) == pytest.approx(math.exp(-0.5), rel=1e-12)
