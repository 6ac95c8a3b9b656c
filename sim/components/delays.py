"""``delays:`` infinite-server delay stations: network transit, think times, fan-outs."""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import Field

from models.delay import DelayStation

from ..fields import DurationOrDistribution, Name, Strict
from .base import BROKER, Kind, Relay


class DelaySpec(Strict):
    """Each message stays ``delay`` (a duration or a distribution), all at once and independently
    (M/G/∞); with ``fan_out`` N it is delivered N times in parallel and leaves at the last
    delivery. Then it goes on to ``sends_to`` (a broker), or it is processed there. A web tier's
    handler may also ``call`` it and wait."""

    name: Name
    delay: DurationOrDistribution
    fan_out: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1
    sends_to: Annotated[Optional[Name], BROKER] = None


class Delays(Kind):
    section = "delays"
    noun = "a delay station"
    Spec = DelaySpec
    build_order = 3  # after brokers and their gates (what it sends to), before what sends to it

    def flow(self, spec: DelaySpec) -> Relay | None:
        return Relay(spec.name, spec.sends_to) if spec.sends_to is not None else None

    def build(self, spec: DelaySpec, context) -> DelayStation:
        next_hop = context.target(spec.sends_to) if spec.sends_to is not None else None
        station = DelayStation(context.env, spec.name, context.sampler(spec.delay.build(), "delay"),
                               context.boundary(spec.name, "delay", keep_sojourns=False), context.fates, next_hop, spec.fan_out)
        context.network.targets[spec.name] = station
        return station

    def measure(self, spec: DelaySpec, station: DelayStation, context, measures) -> None:
        """Mean occupancy (λ·E[stay] by Little's law), mean stay, and the rate of stays ended."""
        inside = context.recorder.boundaries[spec.name]
        prefix = f"delays.{spec.name}"
        measures.metrics[f"{prefix}.occupancy_mean"] = inside.area / measures.window_s
        measures.metrics[f"{prefix}.stay_s.mean"] = inside.sojourn_sum / inside.completed if inside.completed else float("nan")
        measures.metrics[f"{prefix}.entries_per_s"] = inside.entries / measures.window_s
        measures.series[f"{prefix}.occupancy"] = measures.level(inside)
