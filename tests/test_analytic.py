"""Checks of sim.analytic against textbook values, closed forms and Monte Carlo samples."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from scipy.stats import poisson

from sim.analytic import (
    QueueMetrics,
    erlang_b,
    erlang_c,
    ggc_allen_cunneen,
    mg1,
    mm1,
    mmc,
    mmc_sojourn_cdf,
    mmc_sojourn_quantile,
    mmc_wait_cdf,
    mmc_wait_quantile,
    mmck,
    mmcc,
)

FIELDS = (
    "utilization", "wait_s", "sojourn_s", "queue_length", "number_in_system",
    "throughput_per_s", "p_wait", "p_reject",
)


def assert_same(left: QueueMetrics, right: QueueMetrics, rel: float = 1e-9, abs_: float = 1e-12):
    for name in FIELDS:
        assert getattr(left, name) == pytest.approx(getattr(right, name), rel=rel, abs=abs_), name


def erlang_b_direct(c: int, a: float) -> float:
    """B = (a^c/c!) / sum_k a^k/k!, written out for small c."""
    terms = [a**k / math.factorial(k) for k in range(c + 1)]
    return terms[-1] / sum(terms)


def erlang_c_direct(c: int, a: float) -> float:
    """C = (a^c/c!)(c/(c-a)) / (sum_{k<c} a^k/k! + (a^c/c!)(c/(c-a)))."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


# ------------------------------------------------------------------ Erlang B / C


def test_erlang_b_table_value():
    assert erlang_b(10, 5.0) == pytest.approx(0.018385, abs=5e-7)


@pytest.mark.parametrize("a", [0.1, 0.5, 1.0, 3.0, 40.0])
def test_erlang_b_one_server(a):
    assert erlang_b(1, a) == pytest.approx(a / (1 + a), rel=1e-12)


@pytest.mark.parametrize("c,a", [(2, 1.0), (5, 3.0), (8, 10.0), (15, 7.5)])
def test_erlang_b_matches_direct_sum(c, a):
    assert erlang_b(c, a) == pytest.approx(erlang_b_direct(c, a), rel=1e-12)


def test_erlang_b_zero_load_blocks_nobody():
    assert erlang_b(3, 0.0) == 0.0


def test_erlang_c_two_servers_one_erlang():
    # By hand: a = 1, c = 2. P0 = [1 + a + (a^2/2!)·c/(c−a)]^-1 = [1 + 1 + 0.5·2]^-1 = 1/3,
    # C = (a^2/2!)·c/(c−a)·P0 = 0.5·2·(1/3) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)


@pytest.mark.parametrize("c,a", [(1, 0.7), (3, 2.5), (5, 4.0), (12, 9.0)])
def test_erlang_c_matches_direct_formula(c, a):
    assert erlang_c(c, a) == pytest.approx(erlang_c_direct(c, a), rel=1e-12)


def test_erlang_c_one_server_is_rho():
    assert erlang_c(1, 0.6) == pytest.approx(0.6, rel=1e-12)


# ------------------------------------------------------------------ M/M/1, M/M/c


def test_mm1_closed_forms():
    lam, mu = 3.0, 5.0
    rho = lam / mu
    m = mm1(lam, mu)
    assert m.utilization == pytest.approx(rho)
    assert m.number_in_system == pytest.approx(rho / (1 - rho))
    assert m.queue_length == pytest.approx(rho**2 / (1 - rho))
    assert m.sojourn_s == pytest.approx(1 / (mu - lam))
    assert m.wait_s == pytest.approx(rho / (mu - lam))
    assert m.throughput_per_s == lam
    assert m.p_wait == pytest.approx(rho)
    assert m.p_reject == 0.0


@pytest.mark.parametrize("lam,mu", [(0.5, 1.0), (9.0, 10.0), (999.0, 1000.0)])
def test_mmc_one_server_equals_mm1(lam, mu):
    assert_same(mmc(lam, mu, 1), mm1(lam, mu))


def test_mmc_two_servers_known_values():
    # λ = μ = 1, c = 2: C = 1/3 (above), Wq = C/(cμ − λ) = 1/3 s, W = 4/3 s, L = 4/3.
    m = mmc(1.0, 1.0, 2)
    assert m.p_wait == pytest.approx(1 / 3)
    assert m.wait_s == pytest.approx(1 / 3)
    assert m.sojourn_s == pytest.approx(4 / 3)
    assert m.number_in_system == pytest.approx(4 / 3)
    assert m.utilization == pytest.approx(0.5)


def test_large_mmc_stays_finite():
    m = mmc(190.0, 1.0, 200)
    b = poisson.pmf(200, 190.0) / poisson.cdf(200, 190.0)  # Erlang B via Poisson ratio
    assert erlang_b(200, 190.0) == pytest.approx(b, rel=1e-9)
    assert 0.0 < m.p_wait < 1.0
    assert all(math.isfinite(getattr(m, f)) for f in FIELDS)
    assert m.utilization == pytest.approx(0.95)


# ------------------------------------------------------------------ M/M/c/K, M/M/c/c


def test_mmck_huge_capacity_approaches_mmc():
    assert_same(mmck(2.0, 1.0, 3, 2000), mmc(2.0, 1.0, 3), rel=1e-9, abs_=1e-12)


@pytest.mark.parametrize("lam,mu,c", [(5.0, 1.0, 10), (3.0, 2.0, 1), (30.0, 1.0, 20)])
def test_mmck_without_waiting_room_is_erlang_loss(lam, mu, c):
    loss = mmcc(lam, mu, c)
    assert_same(mmck(lam, mu, c, c), loss)
    assert loss.p_reject == pytest.approx(erlang_b(c, lam / mu), rel=1e-12)
    assert loss.wait_s == 0.0 and loss.p_wait == 0.0
    assert loss.sojourn_s == pytest.approx(1 / mu)


@pytest.mark.parametrize("rho", [0.3, 0.9, 1.5, 4.0])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_mm1k_closed_form(rho, k):
    m = mmck(rho * 2.0, 2.0, 1, k)
    p_k = (1 - rho) * rho**k / (1 - rho ** (k + 1))
    big_l = rho / (1 - rho) - (k + 1) * rho ** (k + 1) / (1 - rho ** (k + 1))
    assert m.p_reject == pytest.approx(p_k, rel=1e-9)
    assert m.throughput_per_s == pytest.approx(rho * 2.0 * (1 - p_k), rel=1e-9)
    assert m.number_in_system == pytest.approx(big_l, rel=1e-9)


def test_mm1k_at_rho_one_is_uniform():
    k = 9
    m = mmck(4.0, 4.0, 1, k)
    assert m.p_reject == pytest.approx(1 / (k + 1))
    assert m.number_in_system == pytest.approx(k / 2)


@pytest.mark.parametrize("rho", [0.5, 0.99, 1.0, 1.5, 3.0])
def test_large_mmck_stays_finite(rho):
    c, k = 100, 1000
    m = mmck(rho * c * 0.5, 0.5, c, k)
    assert all(math.isfinite(getattr(m, f)) for f in FIELDS)
    assert 0.0 <= m.p_reject <= 1.0 and 0.0 <= m.p_wait <= 1.0
    assert 0.0 < m.utilization <= 1.0
    assert m.number_in_system <= k
    if rho > 1:
        # Overloaded: almost every server is busy and the room is nearly full.
        assert m.utilization == pytest.approx(1.0, abs=1e-9)
        assert m.p_reject == pytest.approx(1 - 1 / rho, rel=1e-6)


# ------------------------------------------------------------------ M/G/1, G/G/c


def test_mg1_exponential_service_equals_mm1():
    assert_same(mg1(3.0, 1 / 5.0, 1.0), mm1(3.0, 5.0))


def test_mg1_deterministic_service_halves_the_wait():
    md1 = mg1(3.0, 1 / 5.0, 0.0)
    assert md1.wait_s == pytest.approx(mm1(3.0, 5.0).wait_s / 2)
    assert md1.sojourn_s == pytest.approx(md1.wait_s + 0.2)


def test_allen_cunneen_exact_for_mmc():
    assert_same(ggc_allen_cunneen(7.0, 1.0, 1 / 2.0, 1.0, 4), mmc(7.0, 2.0, 4))


def test_allen_cunneen_single_server_poisson_is_pollaczek_khinchine():
    assert_same(ggc_allen_cunneen(3.0, 1.0, 0.2, 0.4, 1), mg1(3.0, 0.2, 0.4))


def test_allen_cunneen_scales_wait_and_keeps_erlang_c():
    base = mmc(7.0, 2.0, 4)
    m = ggc_allen_cunneen(7.0, 0.5, 0.5, 0.0, 4)
    assert m.wait_s == pytest.approx(base.wait_s * 0.125)
    assert m.p_wait == base.p_wait


# ------------------------------------------------------------------ Little's law


@pytest.mark.parametrize(
    "metrics",
    [
        mm1(3.0, 5.0),
        mmc(7.0, 2.0, 4),
        mmc(190.0, 1.0, 200),
        mmck(2.0, 1.0, 3, 10),
        mmck(15.0, 1.0, 10, 25),
        mmck(150.0, 1.0, 100, 1000),
        mmcc(5.0, 1.0, 10),
        mg1(3.0, 0.2, 0.0),
        ggc_allen_cunneen(7.0, 1.3, 0.5, 0.7, 4),
    ],
)
def test_littles_law_inside_each_result(metrics):
    x = metrics.throughput_per_s
    assert metrics.number_in_system == pytest.approx(x * metrics.sojourn_s, rel=1e-9)
    assert metrics.queue_length == pytest.approx(x * metrics.wait_s, rel=1e-9)
    assert metrics.sojourn_s >= metrics.wait_s >= 0.0


# ------------------------------------------------------------------ distributions


def test_wait_cdf_scalar_and_array():
    c_prob = erlang_c(2, 1.0)
    assert mmc_wait_cdf(0.0, 1.0, 1.0, 2) == pytest.approx(1 - c_prob)
    assert mmc_wait_cdf(-1.0, 1.0, 1.0, 2) == 0.0
    assert isinstance(mmc_wait_cdf(0.5, 1.0, 1.0, 2), float)
    t = np.array([0.0, 0.5, 2.0])
    out = mmc_wait_cdf(t, 1.0, 1.0, 2)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, 1 - c_prob * np.exp(-t), rtol=1e-12)


@pytest.mark.parametrize("q", [0.7, 0.9, 0.95, 0.99, 0.999])
def test_wait_quantile_inverts_cdf(q):
    t = mmc_wait_quantile(q, 7.0, 2.0, 4)
    assert t > 0
    assert mmc_wait_cdf(t, 7.0, 2.0, 4) == pytest.approx(q, rel=1e-12)


def test_wait_quantile_is_zero_below_the_atom():
    c_prob = erlang_c(4, 3.5)
    assert mmc_wait_quantile(1 - c_prob - 1e-9, 7.0, 2.0, 4) == 0.0
    assert mmc_wait_quantile(0.0, 7.0, 2.0, 4) == 0.0


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9, 0.99, 0.9999])
@pytest.mark.parametrize("lam,mu", [(1.0, 2.0), (9.5, 10.0), (0.001, 1.0)])
def test_sojourn_quantile_mm1_is_exponential(q, lam, mu):
    assert mmc_sojourn_quantile(q, lam, mu, 1) == pytest.approx(
        -math.log(1 - q) / (mu - lam), rel=1e-9
    )


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99])
def test_sojourn_quantile_inverts_cdf(q):
    t = mmc_sojourn_quantile(q, 7.0, 2.0, 4)
    assert mmc_sojourn_cdf(t, 7.0, 2.0, 4) == pytest.approx(q, rel=1e-10)


def test_sojourn_cdf_when_wait_rate_equals_service_rate():
    # c = 2, λ = μ = 1: θ = cμ − λ = μ, so the waiting part is Erlang-2:
    # P(W > t) = e^{-t} + C·t·e^{-t} with C = 1/3.
    t = np.array([0.0, 0.3, 1.0, 4.0])
    np.testing.assert_allclose(
        mmc_sojourn_cdf(t, 1.0, 1.0, 2), 1 - np.exp(-t) * (1 + t / 3), rtol=1e-12, atol=1e-15
    )
    # and the formula is continuous through θ = μ
    near = mmc_sojourn_cdf(t, 1.0 + 1e-9, 1.0, 2)
    np.testing.assert_allclose(near, 1 - np.exp(-t) * (1 + t / 3), rtol=1e-7, atol=1e-9)


def _fifo_sojourns(lam: float, mu: float, c: int, n: int, seed: int) -> np.ndarray:
    """Simulate a FIFO M/M/c queue (Kiefer–Wolfowitz: each customer takes the first free server)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    services = rng.exponential(1 / mu, n)
    free_at = [0.0] * c
    out = np.empty(n)
    for i in range(n):
        start = max(arrivals[i], heapq.heappop(free_at))
        heapq.heappush(free_at, start + services[i])
        out[i] = start + services[i] - arrivals[i]
    return out[n // 10:]  # drop the warm-up


@pytest.mark.parametrize("lam,mu,c", [(0.6, 1.0, 1), (3.0, 1.0, 4)])
def test_sojourn_quantiles_match_monte_carlo(lam, mu, c):
    sample = _fifo_sojourns(lam, mu, c, 200_000, seed=20240601)
    for q, rel in ((0.5, 0.03), (0.9, 0.03), (0.99, 0.06)):  # the tail quantile is noisier
        assert np.quantile(sample, q) == pytest.approx(
            mmc_sojourn_quantile(q, lam, mu, c), rel=rel
        ), q
    if c == 1:  # M/M/1 sojourn is exactly exponential with rate μ − λ
        assert sample.mean() == pytest.approx(1 / (mu - lam), rel=0.03)
        assert np.quantile(sample, 0.9) == pytest.approx(-math.log(0.1) / (mu - lam), rel=0.03)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: mmc(12.0, 1.0, 10), "unstable: offered load 12.0 erlangs ≥ 10 servers"),
        (lambda: mmc(10.0, 1.0, 10), "unstable: offered load 10.0 erlangs ≥ 10 servers"),
        (lambda: erlang_c(10, 12.0), "unstable: offered load 12.0 erlangs ≥ 10 servers"),
        (lambda: mm1(6.0, 5.0), "unstable: offered load 1.2 erlangs ≥ 1 server"),
        (lambda: mg1(6.0, 0.2, 1.0), "unstable: offered load 1.2 erlangs ≥ 1 server"),
        (lambda: ggc_allen_cunneen(9.0, 1.0, 0.5, 1.0, 4), "unstable: offered load 4.5 erlangs"),
        (lambda: mmc_wait_quantile(0.9, 9.0, 2.0, 4), "unstable"),
        (lambda: mmc_sojourn_quantile(0.9, 9.0, 2.0, 4), "unstable"),
    ],
)
def test_unstable_load_is_refused(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: mm1(0.0, 1.0), "arrival_rate_per_s must be positive"),
        (lambda: mmc(1.0, -2.0, 3), "service_rate_per_s must be positive"),
        (lambda: mmc(1.0, float("nan"), 3), "service_rate_per_s must be positive"),
        (lambda: mmc(1.0, 2.0, 0), "servers must be at least 1"),
        (lambda: mmc(1.0, 2.0, 2.5), "servers must be an integer"),
        (lambda: erlang_b(0, 1.0), "servers must be at least 1"),
        (lambda: erlang_b(3, -1.0), "offered_load must be non-negative"),
        (lambda: mmck(1.0, 2.0, 5, 4), "capacity_in_system K=4 must be at least servers c=5"),
        (lambda: mmcc(1.0, 0.0, 2), "service_rate_per_s must be positive"),
        (lambda: mg1(1.0, 0.1, -0.5), "service_cv must be non-negative"),
        (lambda: mg1(1.0, 0.0, 1.0), "mean_service_s must be positive"),
        (lambda: ggc_allen_cunneen(1.0, -1.0, 0.1, 1.0, 2), "arrival_cv must be non-negative"),
        (lambda: mmc_wait_quantile(1.0, 1.0, 2.0, 1), "q must be in [0, 1)"),
        (lambda: mmc_sojourn_quantile(-0.1, 1.0, 2.0, 1), "q must be non-negative"),
    ],
)
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)
