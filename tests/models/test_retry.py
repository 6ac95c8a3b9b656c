"""models/retry.py: each backoff policy's delay before retry n, and the retry budget's tokens."""

import pytest

from models.retry import (DecorrelatedJitterBackoff, EqualJitterBackoff, ExponentialBackoff, FixedBackoff,
                          FullJitterBackoff, RetryBudget)


def delays(policy, retries):
    """The delays before retries 0..retries-1 of one request, each after the previous one."""
    out, previous = [], None
    for n in range(retries):
        previous = policy.delay(n, previous)
        out.append(previous)
    return out


def test_fixed_waits_its_base_before_every_retry():
    assert delays(FixedBackoff(2.5), 5) == [2.5] * 5


def test_exponential_doubles_from_base_until_the_cap():
    assert delays(ExponentialBackoff(0.5, 3.0), 6) == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert ExponentialBackoff(0.5, 3.0).delay(10_000, None) == 3.0  # no overflow for a huge retry number


def test_full_jitter_scales_the_capped_exponential_by_the_draw():
    policy = FullJitterBackoff(0.5, 3.0, iter([0.5, 0.25, 1.0, 0.0, 0.5]).__next__)
    # uniform(0, min(3, 0.5·2^n)) with draws u: u·0.5, u·1, u·2, u·3 (capped), u·3
    assert delays(policy, 5) == [0.25, 0.25, 2.0, 0.0, 1.5]


def test_equal_jitter_keeps_half_the_capped_exponential_and_draws_the_other_half():
    policy = EqualJitterBackoff(1.0, 6.0, iter([0.0, 1.0, 0.5, 0.25]).__next__)
    # v = 1, 2, 4, 6 (capped): v/2 + u·v/2
    assert delays(policy, 4) == [0.5, 2.0, 3.0, 3.75]


def test_decorrelated_jitter_draws_between_base_and_three_times_the_previous_delay():
    policy = DecorrelatedJitterBackoff(1.0, 10.0, iter([0.5, 0.5, 1.0, 0.0, 0.25]).__next__)
    # previous = base at first: uniform(1, 3) → 2; uniform(1, 6) → 3.5; uniform(1, 10.5) → 10.5, capped
    # at 10; uniform(1, 30) with u = 0 → 1; uniform(1, 3) with u = 0.25 → 1.5
    assert delays(policy, 5) == [2.0, 3.5, 10.0, 1.0, 1.5]


def test_decorrelated_jitter_ignores_the_retry_number():
    policy = DecorrelatedJitterBackoff(1.0, 10.0, lambda: 0.5)
    assert policy.delay(0, 2.0) == policy.delay(7, 2.0) == 3.5


def test_the_budget_pays_a_hundred_retries_then_refuses():
    budget = RetryBudget()
    assert all(budget.acquire(after_timeout=False) for _ in range(100))
    assert budget.tokens == 0 and budget.refused == 0
    assert not budget.acquire(after_timeout=False)
    assert (budget.tokens, budget.refused) == (0, 1)


def test_a_retry_after_a_timeout_costs_ten_and_a_refused_one_takes_nothing():
    budget = RetryBudget()
    assert all(budget.acquire(after_timeout=True) for _ in range(49))
    assert budget.tokens == 10
    assert budget.acquire(after_timeout=False) and budget.tokens == 5
    assert not budget.acquire(after_timeout=True)  # 5 left: a timeout retry (10) is refused...
    assert (budget.tokens, budget.refused) == (5, 1)
    assert budget.acquire(after_timeout=False) and budget.tokens == 0  # ...a plain one (5) is paid


def test_each_success_refunds_one_token_up_to_the_initial_capacity():
    budget = RetryBudget()
    budget.refund()
    assert budget.tokens == 500
    for _ in range(100):
        budget.acquire(after_timeout=False)
    for _ in range(4):
        budget.refund()
    assert not budget.acquire(after_timeout=False)  # 4 tokens cannot pay a retry
    budget.refund()
    assert budget.acquire(after_timeout=False) and budget.tokens == 0


@pytest.mark.parametrize("tokens, cost, timeout_cost, paid", [(12, 3, 6, 4), (12, 5, 6, 2)])
def test_a_budget_of_other_sizes_pays_by_its_own_costs(tokens, cost, timeout_cost, paid):
    budget = RetryBudget(tokens=tokens, retry_cost=cost, timeout_retry_cost=timeout_cost)
    assert sum(budget.acquire(after_timeout=False) for _ in range(10)) == paid
    assert budget.refused == 10 - paid
