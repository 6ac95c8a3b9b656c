"""The delay that prefetching adds to short tasks behind long ones across several Celery workers,
derived from two queueing models and tested against both.

Four workers of one child each consume a Redis queue that gets a Poisson stream of tasks: long
(exponential, mean 5 s) with probability 0.1, short (exponential, mean 0.2 s) otherwise: an H2
service time.

- **Without prefetch** (``acks_late``, multiplier 1: a worker holds only the task it runs, so it
  reads the queue only when idle) the four children serve one FCFS queue: M/H2/4. Its mean wait
  has no closed form; :func:`mh2c_wait` solves its Markov chain (number of tasks, long ones
  running), truncated where the tail is negligible.
- **With unlimited prefetch** (multiplier 0) every worker is always blocked in BRPOP with room,
  and Redis serves blocked clients longest-waiting first, so the tasks are dealt round-robin
  whatever each worker holds: every worker is a FCFS E₄/H2/1 queue (every fourth arrival of a
  Poisson stream: Erlang-4 gaps). Its mean wait (:func:`ek_h2_1_wait`) follows from the two
  roots s₁, s₂ in the left half-plane of D(s) − N(s)·A*(−s), where B* = N/D is the service's
  transform and A* the gaps' (GI/K₂/1: W*(s) = D(s)/D(0) · Π sᵢ/(sᵢ − s)), so
  W = 1/|s₁| + 1/|s₂| − 1/μ₁ − 1/μ₂. With one worker it is Pollaczek–Khinchine's formula.

A short task waits as long as a long one in both (FCFS: a wait does not depend on the task's own
run time), so the extra delay prefetching causes a short task is W(E₄/H2/1) − W(M/H2/4): at
ρ = 0.5, 3.29 − 0.26 = 3.03 s, fifteen times its own mean run time.
"""

import numpy as np
import pytest

from sim import run, scenario_from_dict
from sim.analytic import mmc
from sim.stats import mean_ci

P_LONG, LONG_S, SHORT_S, WORKERS = 0.1, 5.0, 0.2, 4
MEAN_S = P_LONG * LONG_S + (1 - P_LONG) * SHORT_S


def ek_h2_1_wait(k: int, rate_per_s: float, p_long: float = P_LONG, long_s: float = LONG_S, short_s: float = SHORT_S) -> float:
    """Mean FCFS wait of E_k/H2/1: gaps of k exponential phases of rate ``rate_per_s``."""
    m1, m2 = 1 / long_s, 1 / short_s

    def f(s):
        n = p_long * m1 * (m2 + s) + (1 - p_long) * m2 * (m1 + s)
        return (m1 + s) * (m2 + s) - n * (rate_per_s / (rate_per_s - s)) ** k

    def root(lo, hi):
        assert (f(lo) > 0) != (f(hi) > 0)
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if (f(mid) > 0) == (f(lo) > 0) else (lo, mid)
        return (lo + hi) / 2

    eps = 1e-9
    s1, s2 = root(-m1 + eps, -eps), root(-m2 + eps, -m1 - eps)
    return -1 / s1 - 1 / s2 - long_s - short_s


def mh2c_wait(c: int, rate_per_s: float, p_long: float = P_LONG, long_s: float = LONG_S, short_s: float = SHORT_S, most: int = 300) -> float:
    """Mean FCFS wait of M/H2/c from its Markov chain: states (n tasks, j long ones running),
    n up to ``most``; W = E[(n − c)⁺] / λ (Little)."""
    m1, m2 = 1 / long_s, 1 / short_s
    states = [(n, j) for n in range(most + 1) for j in range(min(n, c) + 1)]
    index = {s: i for i, s in enumerate(states)}
    q = np.zeros((len(states), len(states)))

    def add(a, b, r):
        if r and b in index:
            q[index[a], index[b]] += r

    for n, j in states:
        busy = min(n, c)
        if n < c:
            add((n, j), (n + 1, j + 1), rate_per_s * p_long)
            add((n, j), (n + 1, j), rate_per_s * (1 - p_long))
        else:
            add((n, j), (n + 1, j), rate_per_s)
        for done_long, r in ((True, j * m1), (False, (busy - j) * m2)):
            left = j - done_long
            if n > c:  # the next waiting task starts
                add((n, j), (n - 1, left + 1), r * p_long)
                add((n, j), (n - 1, left), r * (1 - p_long))
            else:
                add((n, j), (n - 1, left), r)
    np.fill_diagonal(q, -q.sum(axis=1))
    a = q.T.copy()
    a[-1] = 1.0  # π Q = 0 with one balance equation replaced by Σ π = 1
    pi = np.linalg.solve(a, np.r_[np.zeros(len(states) - 1), 1.0])
    waiting = sum(p * max(n - c, 0) for p, (n, _) in zip(pi, states))
    return waiting / rate_per_s


def test_the_derived_waits_reduce_to_pollaczek_khinchine_and_erlang_c():
    rate = 0.5 / MEAN_S
    second_moment = 2 * (P_LONG * LONG_S ** 2 + (1 - P_LONG) * SHORT_S ** 2)
    assert ek_h2_1_wait(1, rate) == pytest.approx(rate * second_moment / (2 * 0.5), rel=1e-9)
    assert mh2c_wait(1, rate) == pytest.approx(rate * second_moment / (2 * 0.5), rel=1e-6)
    assert mh2c_wait(2, 1.0, p_long=1.0, long_s=0.5) == pytest.approx(mmc(1.0, 2.0, 2).wait_s, rel=1e-6)


def prefetch_app(prefetch: bool, rho: float = 0.5):
    rate = WORKERS * rho / MEAN_S
    late = {} if prefetch else {"acks_late": True}
    tasks = [{"name": name, "queue": "q", "arrivals": {"process": "poisson", "rate": rate * p}, "run_time": {"dist": "exponential", "mean": mean}, **late}
             for name, p, mean in (("long", P_LONG, LONG_S), ("short", 1 - P_LONG, SHORT_S))]
    workers = [{"name": "w", "consumes": "q", "count": WORKERS, "concurrency": 1, "prefetch_multiplier": 0 if prefetch else 1}]
    return {"name": "prefetch", "seed": 5, "duration": 12_000, "warmup": 600, "brokers": [{"name": "q", "kind": "redis"}],
            "task_queues": [{"name": "app", "tasks": tasks, "workers": workers}]}, rate


@pytest.mark.slow
@pytest.mark.parametrize("prefetch", [False, True])
def test_prefetching_delays_short_tasks_by_the_round_robin_queues_wait_over_the_shared_queues(prefetch):
    spec, rate = prefetch_app(prefetch)
    expected = ek_h2_1_wait(WORKERS, rate) if prefetch else mh2c_wait(WORKERS, rate)
    result = run(scenario_from_dict(spec), replications=5, seed=5)
    at = "task_queues.app.tasks.short"
    waits = mean_ci([r.metrics[f"{at}.queue_wait_s.mean"] + r.metrics[f"{at}.reserved_s.mean"] for r in result.results])
    assert waits.contains(expected), (prefetch, expected, waits)
    assert result.ok
