"""``admission:`` gates in front of a broker: rate limits (429) and load shedding (503)."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field, model_validator

from ..fields import Name, PositiveDuration, Rate, Strict
from .base import Kind, Refers


class RateLimitSpec(Strict):
    """A token bucket: ``rate`` admissions a second in the long run, ``burst`` at once."""

    rate: Rate
    burst: Annotated[int, Field(ge=1, strict=True)]


class AdmissionSpec(Strict):
    """Admission control in front of a broker (``in_front_of``: the broker, or a worker pool, for
    the broker it consumes): a message is refused (HTTP 429/503) when ``rate_limit`` has no token,
    when ``max_queue`` messages wait, or when the estimated wait — messages waiting × mean service
    time / workers — exceeds ``max_wait``."""

    name: Name
    in_front_of: Annotated[Name, Refers(("brokers", "workers"))]
    max_queue: Optional[Annotated[int, Field(ge=0, strict=True)]] = None
    max_wait: Optional[PositiveDuration] = None
    rate_limit: Optional[RateLimitSpec] = None

    @model_validator(mode="after")
    def _something(self):
        if self.max_queue is None and self.max_wait is None and self.rate_limit is None:
            raise ValueError("give max_queue, max_wait or rate_limit: otherwise it admits everything")
        return self

    def bounds_queue(self) -> bool:
        return self.max_queue is not None or self.max_wait is not None


class Admission(Kind):
    section = "admission"
    noun = "an admission gate"
    Spec = AdmissionSpec
