"""Exact and approximate queueing results to check simulations against.

All rates are per second (``arrival_rate_per_s`` = λ, ``service_rate_per_s`` = μ) and all
times are in seconds. The offered load is ``a = λ/μ`` erlangs and the per-server load is
``ρ = a/c``. Every queue is FIFO with Poisson arrivals unless a function says otherwise.
Formulas are the textbook ones (Kleinrock, *Queueing Systems* vol. 1; Gross & Harris,
*Fundamentals of Queueing Theory*), computed with recurrences or in log space so that
hundreds of servers and thousands of places do not overflow.

Only the sojourn quantile (a root search) and M/M/c/K (log-space sums) need scipy, and import it
when called: the closed forms cost nothing to load.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = [
    "QueueMetrics",
    "erlang_b",
    "erlang_c",
    "mm1",
    "mmc",
    "mmc_wait_cdf",
    "mmc_wait_quantile",
    "mmc_sojourn_cdf",
    "mmc_sojourn_quantile",
    "mmck",
    "mmcc",
    "mg1",
    "ggc_allen_cunneen",
]


@dataclass(frozen=True)
class QueueMetrics:
    """Steady-state figures of one queue.

    ``utilization`` is per server, of admitted traffic; ``wait_s`` is the mean time in queue
    (Wq); ``sojourn_s`` the mean time in system (W = Wq + mean service); ``queue_length`` the
    mean number waiting (Lq); ``number_in_system`` (L); ``throughput_per_s`` the admitted
    rate; ``p_wait`` the probability an admitted arrival waits; ``p_reject`` the probability
    an arrival is refused (0 for infinite queues). Little's law holds: L = throughput·W and
    Lq = throughput·Wq.
    """

    utilization: float
    wait_s: float
    sojourn_s: float
    queue_length: float
    number_in_system: float
    throughput_per_s: float
    p_wait: float
    p_reject: float


# --------------------------------------------------------------------------- validation


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return value


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be non-negative and finite, got {value!r}")
    return value


def _count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _stable(offered_load: float, servers: int) -> None:
    if offered_load >= servers:
        plural = "server" if servers == 1 else "servers"
        raise ValueError(
            f"unstable: offered load {round(offered_load, 6)} erlangs ≥ {servers} {plural}"
        )


def _probability(q: float) -> float:
    q = _non_negative("q", q)
    if q >= 1:
        raise ValueError(f"q must be in [0, 1), got {q!r}")
    return q


def _from_wait(lam: float, mean_service_s: float, wait_s: float, servers: int,
               p_wait: float, p_reject: float = 0.0) -> QueueMetrics:
    """Fill in a QueueMetrics from the admitted rate and Wq by Little's law."""
    sojourn_s = wait_s + mean_service_s
    return QueueMetrics(
        utilization=lam * mean_service_s / servers,
        wait_s=wait_s,
        sojourn_s=sojourn_s,
        queue_length=lam * wait_s,
        number_in_system=lam * sojourn_s,
        throughput_per_s=lam,
        p_wait=p_wait,
        p_reject=p_reject,
    )


# --------------------------------------------------------------------------- Erlang


def erlang_b(servers: int, offered_load: float) -> float:
    """Erlang B: probability an arrival is blocked in M/M/c/c (loss system, no queue).

    ``offered_load`` is a = λ/μ erlangs. Computed with the stable recurrence
    B(0) = 1, B(k) = a·B(k−1) / (k + a·B(k−1)) (Erlang 1917; Gross & Harris §2.5).
    The result is insensitive to the service distribution (holds for M/G/c/c).
    """
    c = _count("servers", servers)
    a = _non_negative("offered_load", offered_load)
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(servers: int, offered_load: float) -> float:
    """Erlang C: probability an arrival waits in M/M/c with an unlimited FIFO queue.

    Requires a = λ/μ < c. Derived from Erlang B as C = c·B / (c − a·(1 − B))
    (Gross & Harris §2.3), which stays accurate for large c.
    """
    c = _count("servers", servers)
    a = _non_negative("offered_load", offered_load)
    _stable(a, c)
    b = erlang_b(c, a)
    return c * b / (c - a * (1.0 - b))


# --------------------------------------------------------------------------- Markovian


def mm1(arrival_rate_per_s: float, service_rate_per_s: float) -> QueueMetrics:
    """M/M/1: Poisson arrivals, one exponential server, unlimited FIFO queue.

    Requires ρ = λ/μ < 1. Closed forms (Kleinrock vol. 1 §3.2): L = ρ/(1−ρ),
    W = 1/(μ−λ), Wq = ρ/(μ−λ), Lq = ρ²/(1−ρ), P(wait) = ρ.
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    rho = lam / mu
    _stable(rho, 1)
    return QueueMetrics(
        utilization=rho,
        wait_s=rho / (mu - lam),
        sojourn_s=1.0 / (mu - lam),
        queue_length=rho * rho / (1.0 - rho),
        number_in_system=rho / (1.0 - rho),
        throughput_per_s=lam,
        p_wait=rho,
        p_reject=0.0,
    )


def mmc(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> QueueMetrics:
    """M/M/c: Poisson arrivals, c exponential servers, unlimited FIFO queue.

    Requires a = λ/μ < c. Wq = C(c, a) / (cμ − λ) with C the Erlang C probability,
    W = Wq + 1/μ, Lq = λ·Wq, L = λ·W (Gross & Harris §2.3).
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    c = _count("servers", servers)
    p_wait = erlang_c(c, lam / mu)
    return _from_wait(lam, 1.0 / mu, p_wait / (c * mu - lam), c, p_wait)


def mmc_wait_cdf(t_s, arrival_rate_per_s: float, service_rate_per_s: float, servers: int):
    """P(Wq ≤ t) for M/M/c FIFO: 1 − C·exp(−(cμ − λ)t) for t ≥ 0, and 0 for t < 0.

    Wq is 0 with probability 1 − C and otherwise exponential with rate cμ − λ
    (Gross & Harris §2.3). ``t_s`` may be a scalar (float returned) or a numpy array.
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    c = _count("servers", servers)
    p_wait = erlang_c(c, lam / mu)
    t = np.asarray(t_s, dtype=float)
    cdf = np.where(t >= 0, 1.0 - p_wait * np.exp(-(c * mu - lam) * np.maximum(t, 0.0)), 0.0)
    return float(cdf) if cdf.ndim == 0 else cdf


def mmc_wait_quantile(q: float, arrival_rate_per_s: float, service_rate_per_s: float,
                      servers: int) -> float:
    """The q-quantile of the queueing delay Wq in M/M/c FIFO, for 0 ≤ q < 1.

    Inverts ``mmc_wait_cdf``: 0 when q ≤ 1 − C, else ln(C/(1 − q)) / (cμ − λ).
    """
    q = _probability(q)
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    c = _count("servers", servers)
    p_wait = erlang_c(c, lam / mu)
    if q <= 1.0 - p_wait:
        return 0.0
    return math.log(p_wait / (1.0 - q)) / (c * mu - lam)


def mmc_sojourn_cdf(t_s, arrival_rate_per_s: float, service_rate_per_s: float, servers: int):
    """P(W ≤ t) for the sojourn time W = Wq + S in M/M/c FIFO (scalar or numpy array).

    Wq and the exponential service S (rate μ) are independent; Wq is 0 with probability
    1 − C and else exponential with rate θ = cμ − λ. Convolving gives
    P(W > t) = e^{−μt} + C·μ·(e^{−θt} − e^{−μt})/(μ − θ), whose last factor tends to
    t·e^{−μt} when θ = μ (Gross & Harris §2.3). It is evaluated as
    −e^{−mt}·expm1(−|μ−θ|t)/|μ−θ| with m = min(μ, θ), which is stable near θ = μ.
    For c = 1 it reduces to 1 − e^{−(μ−λ)t}.
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    c = _count("servers", servers)
    p_wait = erlang_c(c, lam / mu)
    theta = c * mu - lam
    t = np.maximum(np.asarray(t_s, dtype=float), 0.0)
    gap, slow = abs(mu - theta), min(mu, theta)
    if gap == 0.0:
        diff = t * np.exp(-slow * t)
    else:
        diff = -np.exp(-slow * t) * np.expm1(-gap * t) / gap
    survival = np.exp(-mu * t) + p_wait * mu * diff
    cdf = np.where(np.asarray(t_s, dtype=float) >= 0, 1.0 - survival, 0.0)
    return float(cdf) if cdf.ndim == 0 else cdf


def mmc_sojourn_quantile(q: float, arrival_rate_per_s: float, service_rate_per_s: float,
                         servers: int) -> float:
    """The q-quantile of the sojourn time (wait + service) in M/M/c FIFO, for 0 ≤ q < 1.

    Inverts ``mmc_sojourn_cdf`` numerically with ``scipy.optimize.brentq``. For M/M/1
    the sojourn is exponential with rate μ − λ, so the quantile is −ln(1 − q)/(μ − λ).
    """
    q = _probability(q)
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    c = _count("servers", servers)
    _stable(lam / mu, c)
    if q == 0.0:
        return 0.0
    from scipy.optimize import brentq

    def gap(t: float) -> float:
        return mmc_sojourn_cdf(t, lam, mu, c) - q

    hi = -math.log1p(-q) / min(mu, c * mu - lam)
    while gap(hi) < 0:
        hi *= 2.0
    return brentq(gap, 0.0, hi, xtol=hi * 1e-14, rtol=1e-13, maxiter=500)


def mmck(arrival_rate_per_s: float, service_rate_per_s: float, servers: int,
         capacity_in_system: int) -> QueueMetrics:
    """M/M/c/K: c exponential servers, at most K customers in system (K − c waiting places).

    Arrivals finding K present are refused. Any load is allowed (ρ ≥ 1 too). The stationary
    probabilities p_n ∝ aⁿ/n! for n ≤ c and ∝ a^c/c!·ρ^{n−c} for c < n ≤ K (Gross & Harris
    §2.5) are normalised in log space. p_reject = p_K (PASTA), throughput = λ(1 − p_K),
    P(wait) = P(c ≤ N < K)/(1 − p_K), and W, Wq follow from Little's law on the admitted rate.
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    c = _count("servers", servers)
    k = _count("capacity_in_system", capacity_in_system)
    if k < c:
        raise ValueError(f"capacity_in_system K={k} must be at least servers c={c}")
    from scipy.special import gammaln, logsumexp

    a = lam / mu
    n = np.arange(k + 1)
    log_w = np.where(
        n <= c,
        n * math.log(a) - gammaln(n + 1),
        c * math.log(a) - gammaln(c + 1) + (n - c) * math.log(a / c),
    )
    p = np.exp(log_w - logsumexp(log_w))
    p_reject = float(p[-1])
    admitted = lam * (1.0 - p_reject)
    queue_length = float(np.sum(np.maximum(n - c, 0) * p))
    number_in_system = float(np.sum(n * p))
    busy = float(np.sum(np.minimum(n, c) * p))
    return QueueMetrics(
        utilization=min(busy / c, 1.0),
        wait_s=queue_length / admitted,
        sojourn_s=number_in_system / admitted,
        queue_length=queue_length,
        number_in_system=number_in_system,
        throughput_per_s=admitted,
        p_wait=min(float(np.sum(p[c:k])) / (1.0 - p_reject), 1.0),
        p_reject=p_reject,
    )


def mmcc(arrival_rate_per_s: float, service_rate_per_s: float, servers: int) -> QueueMetrics:
    """M/M/c/c Erlang loss system: c servers and no waiting room.

    p_reject = Erlang B(c, λ/μ); nobody waits, so Wq = 0 and W = 1/μ; throughput
    λ(1 − B). Insensitive to the service distribution (Gross & Harris §2.5).
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mu = _positive("service_rate_per_s", service_rate_per_s)
    c = _count("servers", servers)
    blocked = erlang_b(c, lam / mu)
    return _from_wait(lam * (1.0 - blocked), 1.0 / mu, 0.0, c, 0.0, blocked)


# --------------------------------------------------------------------------- general


def mg1(arrival_rate_per_s: float, mean_service_s: float, service_cv: float) -> QueueMetrics:
    """M/G/1: Poisson arrivals, one server with any service distribution, FIFO.

    Pollaczek–Khinchine mean value (Kleinrock vol. 1 §5.6): Wq = λ·E[S²] / (2(1 − ρ)) with
    E[S²] = E[S]²(1 + cv²) and ρ = λ·E[S] < 1. cv = 1 gives M/M/1, cv = 0 gives M/D/1.
    P(wait) = ρ, the probability the server is busy (PASTA).
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    mean_s = _positive("mean_service_s", mean_service_s)
    cv = _non_negative("service_cv", service_cv)
    rho = lam * mean_s
    _stable(rho, 1)
    wait_s = lam * mean_s * mean_s * (1.0 + cv * cv) / (2.0 * (1.0 - rho))
    return _from_wait(lam, mean_s, wait_s, 1, rho)


def ggc_allen_cunneen(arrival_rate_per_s: float, arrival_cv: float, mean_service_s: float,
                      service_cv: float, servers: int) -> QueueMetrics:
    """G/G/c Allen–Cunneen approximation: Wq ≈ Wq(M/M/c) · (ca² + cs²)/2.

    An approximation (Allen 1990, *Probability, Statistics and Queueing Theory*), not an
    exact result; it is exact for M/M/c (ca = cs = 1) and for M/G/1 (ca = 1, c = 1).
    ``arrival_cv`` and ``service_cv`` are the coefficients of variation of inter-arrival
    and service times. Requires λ·E[S] < c. ``p_wait`` is the M/M/c Erlang C value, used
    as is; the other fields follow from Wq by Little's law.
    """
    lam = _positive("arrival_rate_per_s", arrival_rate_per_s)
    ca = _non_negative("arrival_cv", arrival_cv)
    mean_s = _positive("mean_service_s", mean_service_s)
    cs = _non_negative("service_cv", service_cv)
    c = _count("servers", servers)
    base = mmc(lam, 1.0 / mean_s, c)
    wait_s = base.wait_s * (ca * ca + cs * cs) / 2.0
    return _from_wait(lam, mean_s, wait_s, c, base.p_wait)
