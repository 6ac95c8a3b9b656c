"""``dual_write:`` an application that writes its database and the broker in two steps."""

from __future__ import annotations

from typing import Annotated, Iterable, Literal, Optional

from pydantic import Field

from models.dual_write import DualWrite, DualWriteOptions

from ..distributions import Uniform
from ..fields import NOT_A_BOOL, Crashes, DurationOrDistribution, Name, PositiveDuration, Strict
from .base import BROKER, Finding, Kind, Relay
from .database import DatabaseSpec, build_database, database_overload, measure_database
from .outbox import unfed

DUAL_WRITE_EVENTS = (
    "committed", "commit_failed", "published", "refused_publishes", "publish_timeouts", "publish_retries",
    "died_between_writes", "crashes", "never_published", "answered_ok", "answered_error", "refused",
)


class DualWriteSpec(Strict):
    """Writing the database and the broker in two steps, in ``order``: a request can die between
    them (``crash_probability``, or the process's ``crashes``), the broker can refuse, and a
    publication can time out although it landed (``publish_timeout`` on a ``publish_time``
    distribution, or ``publish_timeout_probability``)."""

    name: Name
    database: DatabaseSpec
    publishes_to: Annotated[Name, BROKER]
    order: Literal["commit-then-publish", "publish-then-commit"] = "commit-then-publish"
    publish_time: DurationOrDistribution = Field(default="1ms", validate_default=True)
    publish_timeout: Optional[PositiveDuration] = None
    publish_timeout_probability: Annotated[float, Field(ge=0, lt=1), NOT_A_BOOL] = 0.0
    publish_retries: Annotated[int, Field(ge=0, strict=True)] = 0
    crash_probability: Annotated[float, Field(ge=0, le=1), NOT_A_BOOL] = 0.0
    crashes: Optional[Crashes] = None


class DualWrites(Kind):
    section = "dual_write"
    noun = "a dual write"
    Spec = DualWriteSpec
    build_order = 2

    def problems(self, spec, scenario) -> Iterable[Finding]:
        return unfed(spec, scenario)

    def flow(self, spec: DualWriteSpec) -> Relay:
        return Relay(spec.name, spec.publishes_to)

    def overload(self, spec: DualWriteSpec, inflow_per_s: float) -> Iterable[Finding]:
        return database_overload(spec.database, inflow_per_s)

    def build(self, spec: DualWriteSpec, context) -> DualWrite:
        """The application writing its database, then the broker (or the other way round)."""
        name = spec.name
        context.recorder.track_consistency()
        database = build_database(spec.database, name, context)
        options = DualWriteOptions(
            commit_time=context.sampler(spec.database.commit_time.build(), "commit_time"),
            publish_time=context.sampler(spec.publish_time.build(), "publish_time"),
            commit_first=spec.order == "commit-then-publish",
            crash_probability=spec.crash_probability,
            crash_draw=context.sampler(Uniform(0.0, 1.0), "crash_between_writes"),
            ack_lost_draw=context.sampler(Uniform(0.0, 1.0), "publish_timeouts"),
            publish_timeout_s=spec.publish_timeout,
            publish_timeout_probability=spec.publish_timeout_probability,
            publish_retries=spec.publish_retries,
            crashes=context.crashes(spec.crashes),
            window_start_s=context.window_start_s,
        )
        application = DualWrite(context.env, name, database, context.target(spec.publishes_to), context.fates,
                                context.boundary(name, "application", keep_sojourns=False), context.counter(name), options)
        context.network.targets[name] = application
        return application

    def measure(self, spec: DualWriteSpec, application: DualWrite, context, measures) -> None:
        prefix = f"dual_write.{spec.name}"
        measures.distribution(f"{prefix}.request_latency_s", application.request_latencies_s)
        measures.metrics[f"{prefix}.in_progress_mean"] = application.boundary.area / measures.window_s
        measures.counts(prefix, context.recorder.counters[spec.name], DUAL_WRITE_EVENTS)
        measure_database(prefix, application.database, measures)
        measures.series[f"{prefix}.in_progress"] = measures.level(application.boundary)
