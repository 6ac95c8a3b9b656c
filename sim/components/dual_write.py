"""``dual_write:`` an application that writes its database and the broker in two steps."""

from __future__ import annotations

from typing import Annotated, Iterable, Literal, Optional

from pydantic import Field

from ..fields import Crashes, DurationOrDistribution, Name, PositiveDuration, Strict
from .base import Finding, Kind, Refers
from .database import DatabaseSpec
from .outbox import unfed

BROKER = Refers(("brokers",))


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
    publish_timeout_probability: Annotated[float, Field(ge=0, lt=1)] = 0.0
    publish_retries: Annotated[int, Field(ge=0, strict=True)] = 0
    crash_probability: Annotated[float, Field(ge=0, le=1)] = 0.0
    crashes: Optional[Crashes] = None


class DualWrites(Kind):
    section = "dual_write"
    noun = "a dual write"
    Spec = DualWriteSpec

    def problems(self, spec, scenario) -> Iterable[Finding]:
        return unfed(spec, scenario)
