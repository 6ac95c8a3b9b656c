"""``workers:`` pools of identical workers, and what changes their capacity while they run:
load-dependent slowdown, capacity losses and autoscaling."""

from __future__ import annotations

import math
from typing import Annotated, Iterable, Optional

import numpy as np
from pydantic import Field, model_validator

from models.autoscaling import Autoscaler
from models.idempotency import IdempotentDone
from models.triggers import CapacityLoss, Slowdown
from models.workers import Done, WorkerOptions, WorkerPool as WorkerPoolModel

from ..distributions import Uniform
from ..fields import HOUR_S, NOT_A_BOOL, Crashes, DistributionSpec, Duration, DurationOrDistribution, Errors, Name, PositiveDuration, Price, Strict
from .base import BROKER, BROKER_OR_WRITER, Finding, Kind, Server

WORKER_EVENTS = ("completed", "errors", "crashes")


_WITH_FROM = {**Strict.model_config, "populate_by_name": True}


class SlowdownSpec(Strict):
    """Service that degrades with load: ``per_concurrent`` more for each other message in service
    in the pool when one starts, ``per_waiting`` more for each message waiting in its broker, and
    service times × ``factor`` from ``from`` until ``until``."""

    model_config = _WITH_FROM
    per_concurrent: Duration = 0.0
    per_waiting: Duration = 0.0
    from_: Optional[Duration] = Field(default=None, alias="from")
    until: Optional[PositiveDuration] = None
    factor: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None

    @model_validator(mode="after")
    def _consistent(self):
        window = [self.from_ is not None, self.until is not None, self.factor is not None]
        if any(window) and not all(window):
            raise ValueError("a slowdown window takes from, until and factor together")
        if all(window) and self.until <= self.from_:
            raise ValueError(f"until ({self.until:g}s) must come after from ({self.from_:g}s)")
        if not any(window) and self.per_concurrent == 0 and self.per_waiting == 0:
            raise ValueError("give per_concurrent, per_waiting, or a window (from, until, factor)")
        return self


class CapacityLossSpec(Strict):
    """``workers`` of the pool are gone from ``from`` until ``until`` (each finishes its message)."""

    model_config = _WITH_FROM
    from_: Duration = Field(alias="from")
    until: PositiveDuration
    workers: Annotated[int, Field(ge=1, strict=True)]

    @model_validator(mode="after")
    def _ordered(self):
        if self.until <= self.from_:
            raise ValueError(f"until ({self.until:g}s) must come after from ({self.from_:g}s)")
        return self


class AutoscalingSpec(Strict):
    """Target tracking: every ``evaluation_interval`` (15 s, Kubernetes' HPA period) the pool
    wants ceil(messages waiting / ``target_backlog_per_worker``) workers (AWS's backlog per
    instance), or ceil(workers × utilisation over the interval / ``target_utilization``) (the
    HPA's rule), within ``min``..``max``. New workers start ``scale_out_delay`` (60 s) after the
    decision; workers removed finish their message first; after an action, none for ``cooldown``
    (300 s, EC2 Auto Scaling's default)."""

    target_backlog_per_worker: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None
    target_utilization: Optional[Annotated[float, Field(gt=0, le=1), NOT_A_BOOL]] = None
    min: Annotated[int, Field(ge=1, strict=True)]
    max: Annotated[int, Field(ge=1, strict=True)]
    evaluation_interval: PositiveDuration = 15.0
    scale_out_delay: Duration = 60.0
    cooldown: Duration = 300.0

    @model_validator(mode="after")
    def _consistent(self):
        if (self.target_backlog_per_worker is None) == (self.target_utilization is None):
            raise ValueError("give one target: target_backlog_per_worker or target_utilization")
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must not be below min ({self.min})")
        return self


class WorkerPool(Strict):
    """``count`` identical workers taking messages from ``consumes``; when ``sends_to`` names a
    broker, each finished message goes on to it (a pipeline stage), otherwise it is done.
    ``delivery_latency`` is the time a receive (or a push) takes to bring a message to a worker.
    ``price_per_hour``: what one worker (an instance, a container) costs an hour, paid for the
    time it is present: an autoscaled pool pays for its time-average count (workers on their way
    during ``scale_out_delay`` are not counted), one down after a crash is still paid for."""

    name: Name
    consumes: Annotated[Name, BROKER]
    count: Annotated[int, Field(ge=1, strict=True)]
    service_time: DistributionSpec
    sends_to: Annotated[Optional[Name], BROKER_OR_WRITER] = None
    delivery_latency: Optional[DurationOrDistribution] = None
    crashes: Optional[Crashes] = None
    errors: Optional[Errors] = None
    slowdown: Optional[SlowdownSpec] = None
    capacity_loss: Optional[CapacityLossSpec] = None
    autoscaling: Optional[AutoscalingSpec] = None
    shed_expired: bool = False
    idempotent: bool = False  # a processed-ids table: copies of a processed message are skipped (suppressed)
    price_per_hour: Optional[Price] = None

    @model_validator(mode="after")
    def _elastic_counts(self):
        if self.autoscaling is not None and not self.autoscaling.min <= self.count <= self.autoscaling.max:
            raise ValueError(f"count ({self.count}, the workers at the start) must lie within autoscaling min ({self.autoscaling.min}) and max ({self.autoscaling.max})")
        if self.capacity_loss is not None and self.capacity_loss.workers > self.count:
            raise ValueError(f"capacity_loss.workers ({self.capacity_loss.workers}) is more than the pool's count ({self.count})")
        return self

    @property
    def max_count(self) -> int:
        """The most workers the pool can have (its autoscaling max, or its count)."""
        return self.autoscaling.max if self.autoscaling is not None else self.count


def slowdown(spec: WorkerPool) -> Slowdown | None:
    """How a pool's service slows down with load, if it has a ``slowdown``."""
    slow = spec.slowdown
    if slow is None:
        return None
    return Slowdown(slow.per_concurrent, slow.per_waiting, slow.from_, slow.until, slow.factor or 1.0)


def busy_s(spec: WorkerPool) -> float:
    """The mean time a worker spends on one message by itself: its delivery latency (a worker
    waits for it, message by message) and its service time."""
    delivery = spec.delivery_latency.build().mean if spec.delivery_latency is not None else 0.0
    return delivery + spec.service_time.build().mean


def capacity_per_s(spec: WorkerPool) -> float:
    """Messages per second the pool can finish in the long run: count (an autoscaled pool's max) /
    its time per message (:func:`busy_s`), times the fraction of time a worker is up when it
    crashes and restarts. What the broker makes a worker wait for besides is the broker's
    (``consumer_capacity_per_s`` of its spec)."""
    capacity = spec.max_count / busy_s(spec)
    if spec.crashes is not None:
        up = spec.crashes.time_to_failure_distribution().mean
        capacity *= up / (up + spec.crashes.restart_time.build().mean)
    return capacity


def elastic(spec: WorkerPool) -> bool:
    """Whether the pool's workers come and go (autoscaling, a capacity loss)."""
    return spec.autoscaling is not None or spec.capacity_loss is not None


class Workers(Kind):
    section = "workers"
    noun = "a worker pool"
    Spec = WorkerPool
    build_order = 4

    def problems(self, spec: WorkerPool, scenario) -> Iterable[Finding]:
        for key in ("capacity_loss", "slowdown"):
            trigger = getattr(spec, key)
            if trigger is not None and trigger.from_ is not None and trigger.from_ >= scenario.duration:
                yield Finding(f"{key}.from", f"starts at {trigger.from_:g}s, after the run ends ({scenario.duration:g}s)")

    def flow(self, spec: WorkerPool) -> Server:
        return Server(spec.name, spec.consumes, capacity_per_s(spec), spec.count, spec.sends_to, spec.shed_expired, busy_s(spec))

    def build(self, spec: WorkerPool, context) -> WorkerPoolModel:
        """The pool, each random quantity drawn from its own stream; its finished work goes to
        ``sends_to`` or is done, through a processed-ids table when it is ``idempotent``."""
        options = WorkerOptions(crashes=context.crashes(spec.crashes), shed_expired=spec.shed_expired, slowdown=slowdown(spec))
        if spec.delivery_latency is not None:
            options.delivery_latency = context.sampler(spec.delivery_latency.build(), "delivery_latency")
        if spec.errors is not None:
            options.error_probability = spec.errors.probability
            options.poison_fraction = spec.errors.poison_fraction
            options.error_draw = context.sampler(Uniform(0.0, 1.0), "errors")
        service_time = context.sampler(spec.service_time.build(), "service_time")
        boundary = context.boundary(spec.name, "workers", keep_sojourns=False)
        hop = context.target(spec.sends_to) if spec.sends_to else Done(context.env, context.fates)
        if spec.idempotent:
            context.recorder.track_consistency()
            hop = IdempotentDone(context.env, context.fates, context.counter(f"{spec.name}:idempotency"), hop)
        return WorkerPoolModel(context.env, spec.name, context.target(spec.consumes), spec.count, service_time, hop, context.fates,
                               boundary, context.gauge(spec.name, spec.count), context.counter(spec.name), options)

    def connect(self, spec: WorkerPool, pool: WorkerPoolModel, context) -> None:
        """What changes the pool's capacity while it runs: a capacity loss, autoscaling."""
        if spec.capacity_loss is not None:
            loss = spec.capacity_loss
            context.network.attached[spec.name, "capacity_loss"] = CapacityLoss(context.env, pool, loss.from_, loss.until, loss.workers)
        if spec.autoscaling is not None:
            a = spec.autoscaling
            context.network.attached[spec.name, "autoscaler"] = Autoscaler(
                context.env, pool, a.min, a.max, a.evaluation_interval, a.scale_out_delay, a.cooldown,
                target_backlog_per_worker=a.target_backlog_per_worker, target_utilization=a.target_utilization,
            )

    def measure(self, spec: WorkerPool, pool: WorkerPoolModel, context, measures) -> None:
        """Utilisation (busy time over the worker time present for an elastic pool), busy workers,
        service time, events; for elastic pools the workers present and the scaling actions."""
        prefix = f"workers.{spec.name}"
        window = measures.window_s
        busy = context.recorder.boundaries[spec.name]
        counted = context.recorder.counters[spec.name]
        measures.metrics[f"{prefix}.busy_mean"] = busy.area / window
        measures.metrics[f"{prefix}.service_s.mean"] = busy.sojourn_sum / busy.completed if busy.completed else float("nan")
        measures.counts(prefix, counted, WORKER_EVENTS)
        if spec.shed_expired:
            measures.metrics[f"{prefix}.shed"] = float(counted["shed"])
        if spec.idempotent:
            measures.metrics[f"{prefix}.suppressed"] = float(context.recorder.counters[f"{spec.name}:idempotency"]["suppressed"])
        if not elastic(spec):
            measures.metrics[f"{prefix}.utilization"] = busy.area / (pool.count * window)
            measures.series[f"{prefix}.utilization"] = measures.level(busy) / pool.count
            return
        present = pool.workers
        bins = np.asarray(present.bin_area)
        measures.metrics[f"{prefix}.count_mean"] = present.area / window
        measures.metrics[f"{prefix}.utilization"] = busy.area / present.area if present.area else math.nan
        measures.series[f"{prefix}.count"] = bins / measures.bin_width_s
        with np.errstate(divide="ignore", invalid="ignore"):
            measures.series[f"{prefix}.utilization"] = np.where(bins > 0, np.asarray(busy.bin_area) / np.where(bins > 0, bins, 1), 0.0)
        measures.metrics[f"{prefix}.scale_outs"] = float(counted["scale_outs"])
        measures.metrics[f"{prefix}.scale_ins"] = float(counted["scale_ins"])

    def cost_usd(self, spec: WorkerPool, pool: WorkerPoolModel, context, window_s: float) -> float | None:
        """Worker-hours over the window (the workers present, integrated over time) at ``price_per_hour``."""
        if spec.price_per_hour is None:
            return None
        return spec.price_per_hour * pool.workers.area / HOUR_S
