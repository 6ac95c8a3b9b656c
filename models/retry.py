"""Client retry policies (how long to back off before retry number n) and the retry budget.

The backoff formulas are those of AWS's "Exponential Backoff and Jitter" (2015) and of its public
simulator, with ``n`` the number of the retry counted from 0 (the first retry waits about
``base``), ``base`` and ``cap`` in seconds, and ``uniform(a, b)`` a uniform draw:

==================  ====================================================
exponential          ``min(cap, base·2^n)`` (no jitter)
full jitter          ``uniform(0, min(cap, base·2^n))``
equal jitter         ``v/2 + uniform(0, v/2)`` with ``v = min(cap, base·2^n)``
decorrelated jitter  ``min(cap, uniform(base, 3·previous))``, ``previous`` = ``base`` at first
fixed                ``base`` every time
==================  ====================================================

A policy draws its uniform numbers from a callable returning uniform(0, 1) draws (a block
:class:`~sim.distributions.Sampler`), so that the same stream gives the same delays.
"""

from __future__ import annotations

from typing import Callable

_MAX_DOUBLINGS = 1000  # 2**1000 is finite; beyond it any cap wins anyway


def _capped_exponential(base_s: float, cap_s: float, n: int) -> float:
    return min(cap_s, base_s * 2.0 ** min(n, _MAX_DOUBLINGS))


class Backoff:
    """How long a client waits before retry number ``n`` (0 for the first retry).

    ``delay(n, previous_s)`` returns seconds; ``previous_s`` is the delay this request waited
    before its previous retry (``None`` before the first), which only decorrelated jitter uses.
    """

    name = "backoff"

    def delay(self, n: int, previous_s: float | None) -> float:
        raise NotImplementedError


class FixedBackoff(Backoff):
    """The same pause before every retry (Celery's ``default_retry_delay`` without backoff)."""

    name = "fixed"

    def __init__(self, base_s: float):
        self.base_s = base_s

    def delay(self, n, previous_s):
        return self.base_s


class ExponentialBackoff(Backoff):
    """``min(cap, base·2^n)``: every client that failed at the same moment retries at the same
    moment again — the synchronized waves AWS's article warns about."""

    name = "exponential"

    def __init__(self, base_s: float, cap_s: float):
        self.base_s = base_s
        self.cap_s = cap_s

    def delay(self, n, previous_s):
        return _capped_exponential(self.base_s, self.cap_s, n)


class FullJitterBackoff(ExponentialBackoff):
    """``uniform(0, min(cap, base·2^n))``: mean half the capped exponential; the least total work
    in AWS's simulation (and Celery's ``retry_jitter`` default)."""

    name = "full_jitter"

    def __init__(self, base_s: float, cap_s: float, uniform: Callable[[], float]):
        super().__init__(base_s, cap_s)
        self.uniform = uniform

    def delay(self, n, previous_s):
        return self.uniform() * _capped_exponential(self.base_s, self.cap_s, n)


class EqualJitterBackoff(FullJitterBackoff):
    """``v/2 + uniform(0, v/2)`` with ``v = min(cap, base·2^n)``: never less than half the
    exponential delay; mean three quarters of it."""

    name = "equal_jitter"

    def delay(self, n, previous_s):
        half = _capped_exponential(self.base_s, self.cap_s, n) / 2
        return half + self.uniform() * half


class DecorrelatedJitterBackoff(FullJitterBackoff):
    """``min(cap, uniform(base, 3·previous))``, starting from ``previous = base``: each delay
    depends on the last one rather than on the retry number."""

    name = "decorrelated_jitter"

    def delay(self, n, previous_s):
        previous = self.base_s if previous_s is None else previous_s
        low, high = self.base_s, 3.0 * previous
        return min(self.cap_s, low + self.uniform() * (high - low))


class RetryBudget:
    """The AWS SDKs' retry quota (standard retry mode): a token bucket shared by a client's
    requests. It starts full with ``tokens`` (500); a retry takes ``retry_cost`` (5), or
    ``timeout_retry_cost`` (10) when the failed attempt timed out; a successful request gives
    back ``success_refund`` (1), never beyond the initial capacity. With too few tokens left the
    retry is not made and the request fails at once, so that when most requests fail the clients
    stop multiplying the load (a retry storm is cut short) and start again as successes refill
    the bucket.

    Simplification: botocore refunds the cost of the last retry (not 1) when a retried request
    succeeds; as BROKERS.md states it, every success refunds ``success_refund`` here.
    """

    def __init__(self, tokens: int = 500, retry_cost: int = 5, timeout_retry_cost: int = 10, success_refund: int = 1):
        self.capacity = tokens
        self.tokens = tokens
        self.retry_cost = retry_cost
        self.timeout_retry_cost = timeout_retry_cost
        self.success_refund = success_refund
        self.refused = 0

    def acquire(self, after_timeout: bool) -> bool:
        """Take the cost of one retry; False (and nothing taken) if the bucket cannot pay it."""
        cost = self.timeout_retry_cost if after_timeout else self.retry_cost
        if self.tokens < cost:
            self.refused += 1
            return False
        self.tokens -= cost
        return True

    def refund(self) -> None:
        """A request succeeded."""
        self.tokens = min(self.capacity, self.tokens + self.success_refund)
