"""``delays:`` infinite-server delay stations: network transit, think times, fan-outs."""

from __future__ import annotations

from typing import Annotated, Iterable, Optional

import numpy as np
from pydantic import Field

from models.delay import DelayStation

from ..fields import DurationOrDistribution, Name, Strict
from ..units import format_duration
from .base import Arrow, Box, Kind, Load, Refers, Relay, Shown


BROKER_OR_WEB = Refers(("brokers", "web"))
"""Where a station sends what has stayed: a broker, or a web tier (a completion signal)."""


class DelaySpec(Strict):
    """Each message stays ``delay`` (a duration or a distribution), all at once and independently
    (M/G/∞); with ``fan_out`` N it is delivered N times in parallel and leaves at the last
    delivery. Then it goes on to ``sends_to`` (a broker, or a web tier: the completion signal of
    that tier's asynchronous path), or it is processed there. A web tier's handler may also
    ``call`` it and wait."""

    name: Name
    delay: DurationOrDistribution
    fan_out: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 1
    sends_to: Annotated[Optional[Name], BROKER_OR_WEB] = None


def stay_moments(station, draws: int = 4000) -> tuple[float, float]:
    """A delay station's stay: (mean, variance). Its delay's, or for a fan-out those of the
    largest of ``fan_out`` draws, estimated from ``draws`` samples (a fixed seed: the same every time)."""
    distribution = station.delay.build()
    if station.fan_out == 1:
        return distribution.mean, distribution.scv * distribution.mean ** 2
    samples = distribution.draw(np.random.default_rng(0), draws * station.fan_out).reshape(draws, station.fan_out).max(axis=1)
    return float(samples.mean()), float(samples.var())


def mean_stay_s(station) -> float:
    """A delay station's mean stay (see :func:`stay_moments`)."""
    return stay_moments(station)[0]


class Delays(Kind):
    section = "delays"
    noun = "a delay station"
    Spec = DelaySpec
    build_order = 3  # after brokers and their gates (what it sends to), before what sends to it

    def flow(self, spec: DelaySpec) -> Relay | None:
        return Relay(spec.name, spec.sends_to) if spec.sends_to is not None else None

    def build(self, spec: DelaySpec, context) -> DelayStation:
        """A station sending to a web tier gets it as its next hop when the tier is built (after it)."""
        next_hop = context.target(spec.sends_to) if spec.sends_to in context.network.targets else None
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

    def shown(self, measured: dict) -> Iterable[Shown]:
        yield Shown("inside, mean (λ·E[stay])", "occupancy_mean")
        yield Shown("stay mean", "stay_s.mean", "s")

    def load(self, spec: DelaySpec, scenario, sent_per_s: dict[str, float]) -> Load:
        """What is sent to it, and each web tier's requests once per call."""
        calls = sum(tier.arrivals.mean_rate() * tier.calls.count(spec.name) for tier in scenario.web)
        return Load(spec.name, sent_per_s.get(spec.name, 0.0) + calls, mean_stay_s(spec))

    def theory(self, spec: DelaySpec, load: Load, queue) -> dict[str, tuple[float, bool]]:
        """M/G/∞: each stay is the delay drawn, and the mean number inside is λ·E[stay]."""
        prefix = f"delays.{spec.name}"
        return {f"{prefix}.occupancy_mean": (load.busy_mean, True), f"{prefix}.stay_s.mean": (load.held_s, True),
                f"{prefix}.entries_per_s": (load.rate_per_s, True)}

    def box(self, spec: DelaySpec, measured: dict) -> Box:
        delay = spec.delay.build()
        text = f"{delay.name}, mean {format_duration(delay.mean)}"
        if spec.fan_out > 1:
            text += f"\nfan-out to {spec.fan_out:,}: leaves at the last"
        inside = measured.get("occupancy_mean", {}).get("mean")
        if inside is not None:
            text += f"\n{inside:.3g} inside on average"
        return Box("delay station", text)

    def arrows(self, spec: DelaySpec, scenario) -> Iterable[Arrow]:
        if spec.sends_to is not None:
            signal = any(tier.name == spec.sends_to for tier in scenario.web)
            yield Arrow(spec.sends_to, "completion" if signal else "", dashed=signal)
