"""``clients:`` groups of closed-loop clients, and what makes any sender a client: a timeout, a
retry policy and a retry budget (README: "Back pressure, retries and retry storms")."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from models.clients import Client, ClosedLoopClients
from models.retry import DecorrelatedJitterBackoff, EqualJitterBackoff, ExponentialBackoff, FixedBackoff, FullJitterBackoff, RetryBudget

from ..distributions import Sampler, Uniform
from ..fields import DurationOrDistribution, Name, PositiveDuration, Strict
from .base import BROKER, Kind, Source

CLIENT_EVENTS = ("requests", "attempts", "refused", "timeouts", "retries", "succeeded", "processings", "wasted", "shed", "suppressed",
                 "failed_downstream", "rejected_refused", "rejected_timed_out", "rejected_budget")


class NoRetrySpec(Strict):
    """``policy: none``: one attempt; a refusal or a timeout ends the request (rejected)."""

    policy: Literal["none"]

    @property
    def attempts(self) -> int:
        return 1


class FixedRetrySpec(Strict):
    """``policy: fixed``: wait ``base`` before each retry; at most ``max_attempts`` attempts in all
    (the first included)."""

    policy: Literal["fixed"]
    base: PositiveDuration
    max_attempts: Annotated[int, Field(ge=1, le=100, strict=True)] = 3

    @property
    def attempts(self) -> int:
        return self.max_attempts


class BackoffRetrySpec(Strict):
    """Exponential backoff before retry n (from 0), capped at ``cap`` (20 s, the AWS SDKs'
    maximum backoff), without jitter (``exponential``: min(cap, base·2^n)) or with it
    (``full_jitter``, ``equal_jitter``, ``decorrelated_jitter``: the formulas of AWS's
    "Exponential Backoff and Jitter"); at most ``max_attempts`` attempts in all (3, the AWS SDKs'
    standard mode), the first included."""

    policy: Literal["exponential", "full_jitter", "equal_jitter", "decorrelated_jitter"]
    base: PositiveDuration
    cap: PositiveDuration = 20.0
    max_attempts: Annotated[int, Field(ge=1, le=100, strict=True)] = 3

    @model_validator(mode="after")
    def _cap_above_base(self):
        if self.cap < self.base:
            raise ValueError(f"cap ({self.cap:g}s) must not be below base ({self.base:g}s)")
        return self

    @property
    def attempts(self) -> int:
        return self.max_attempts


RetrySpec = Annotated[Union[NoRetrySpec, FixedRetrySpec, BackoffRetrySpec], Field(discriminator="policy")]


class RetryBudgetSpec(Strict):
    """The AWS SDKs' retry quota: a bucket of ``tokens`` (500); a retry costs ``retry_cost`` (5),
    or ``timeout_retry_cost`` (10) after a timeout; each success refunds ``success_refund`` (1);
    a retry the bucket cannot pay is not made. ``retry_budget: true`` takes these defaults."""

    tokens: Annotated[int, Field(ge=1, strict=True)] = 500
    retry_cost: Annotated[int, Field(ge=0, strict=True)] = 5
    timeout_retry_cost: Annotated[int, Field(ge=0, strict=True)] = 10
    success_refund: Annotated[int, Field(ge=0, strict=True)] = 1


def _budget_shorthand(value):
    if value is True:
        return {}
    if value is False:
        return None
    return value


_BUDGET_SCHEMA = {
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "tokens": {"type": "integer", "minimum": 1, "default": 500},
                "retry_cost": {"type": "integer", "minimum": 0, "default": 5},
                "timeout_retry_cost": {"type": "integer", "minimum": 0, "default": 10},
                "success_refund": {"type": "integer", "minimum": 0, "default": 1},
            },
        },
        {"type": "null"},
    ],
    "description": "the AWS SDKs' retry quota (true: 500 tokens, 5 a retry, 10 after a timeout, 1 back per success)",
}

RetryBudgetField = Annotated[Optional[RetryBudgetSpec], BeforeValidator(_budget_shorthand), WithJsonSchema(_BUDGET_SCHEMA)]


class ClientBehaviour(Strict):
    """What makes a sender a client: it waits ``timeout`` for each response (none: as long as it
    takes), retries refusals and timeouts by ``retry``, within a ``retry_budget``."""

    timeout: Optional[PositiveDuration] = None
    retry: Optional[RetrySpec] = None
    retry_budget: RetryBudgetField = None

    @model_validator(mode="after")
    def _budget_needs_retries(self):
        if self.retry_budget is not None and self.retry is None:
            raise ValueError("retry_budget limits retries, and there is no retry policy: add 'retry'")
        return self

    @property
    def is_client(self) -> bool:
        return self.timeout is not None or self.retry is not None


class ClientGroup(ClientBehaviour):
    """``count`` closed-loop clients: each thinks for a ``think_time``, sends a request to
    ``sends_to``, waits for its outcome, and thinks again."""

    name: Name
    count: Annotated[int, Field(ge=1, strict=True)]
    think_time: DurationOrDistribution
    sends_to: Annotated[Name, BROKER]

    @field_validator("think_time")
    @classmethod
    def _thinks(cls, think_time):
        if not think_time.build().mean > 0:
            raise ValueError("the mean think time must be above zero (a client that never pauses would loop at one instant)")
        return think_time


def retry_policy(spec, streams, client: str):
    """(backoff policy or None, attempts at most) of a ``retry`` spec; jitter from the client's
    stream ``retry`` (``streams.rng``)."""
    if spec is None or spec.policy == "none":
        return None, 1
    if spec.policy == "fixed":
        return FixedBackoff(spec.base), spec.max_attempts
    if spec.policy == "exponential":
        return ExponentialBackoff(spec.base, spec.cap), spec.max_attempts
    uniform = Sampler(Uniform(0.0, 1.0), streams.rng(client, "retry"))
    jitter = {"full_jitter": FullJitterBackoff, "equal_jitter": EqualJitterBackoff, "decorrelated_jitter": DecorrelatedJitterBackoff}
    return jitter[spec.policy](spec.base, spec.cap, uniform), spec.max_attempts


def make_client(spec: ClientBehaviour, context) -> Client:
    """The client of a producer with a ``timeout`` or ``retry``, or of a group of closed-loop clients."""
    backoff, attempts = retry_policy(spec.retry, context, spec.name)
    budget = RetryBudget(**spec.retry_budget.model_dump()) if spec.retry_budget is not None else None
    requests = context.boundary(spec.name, "clients", keep_sojourns=True)
    open_attempts = context.boundary(f"{spec.name}:attempts", "attempts", keep_sojourns=False)
    client = Client(context.env, spec.name, context.target(spec.sends_to), context.fates, requests, open_attempts,
                    context.window_start_s, backoff=backoff, max_attempts=attempts, timeout_s=spec.timeout, budget=budget)
    context.network.clients[spec.name] = client
    return client


def measure_client(name: str, client: Client, measures) -> None:
    """``clients.NAME.*``: requests, attempts, goodput, rejections by cause, latency of successes."""
    t, window = client.tally, measures.window_s
    prefix = f"clients.{name}"
    requests = t["requests"]
    rejected = t["rejected_refused"] + t["rejected_timed_out"] + t["rejected_budget"]
    measures.metrics[f"{prefix}.requests_per_s"] = requests / window
    measures.metrics[f"{prefix}.attempts_per_s"] = t["attempts"] / window
    measures.metrics[f"{prefix}.goodput_per_s"] = t["succeeded"] / window
    measures.metrics[f"{prefix}.retry_amplification"] = t["attempts"] / requests if requests else math.nan
    measures.proportion(f"{prefix}.rejected_rate", rejected, requests)
    measures.counts(prefix, t, CLIENT_EVENTS[2:])
    measures.distribution(f"{prefix}.latency_s", np.frombuffer(client.latencies_s, dtype=np.float64))
    boundary = client.requests
    measures.metrics[f"{prefix}.in_progress_mean"] = boundary.area / window
    measures.metrics[f"{prefix}.completed_per_s"] = boundary.completed / window
    measures.metrics[f"{prefix}.response_s.mean"] = boundary.sojourn_sum / boundary.completed if boundary.completed else math.nan
    if client.budget is not None:
        measures.metrics[f"{prefix}.budget_tokens_at_end"] = float(client.budget.tokens)


class Clients(Kind):
    section = "clients"
    noun = "a group of clients"
    Spec = ClientGroup
    build_order = 6

    def flow(self, spec: ClientGroup) -> Source:
        """Closed-loop clients send only as fast as they are answered: their rate is not counted
        in the offered load (a simplification of the stability check)."""
        return Source(spec.name, spec.sends_to, 0.0, spec.timeout is not None)

    def build(self, spec: ClientGroup, context) -> ClosedLoopClients:
        client = make_client(spec, context)
        think_time = context.sampler(spec.think_time.build(), "think_time")
        return ClosedLoopClients(context.env, spec.name, spec.count, think_time, client)

    def measure(self, spec: ClientGroup, group: ClosedLoopClients, context, measures) -> None:
        measure_client(spec.name, group.client, measures)
