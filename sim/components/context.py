"""What a kind gets to build its parts with, and what the built network is.

:class:`BuildContext` hands a kind's ``build`` the simulation environment, the fates router, the
part's own random streams and samplers, crash samplers, measurement boundaries and counters (from
the Recorder, which only measures: models never read it), and the parts built before it, by
name. Each boundary and counter a part asks for is recorded as the part's own, so that its kind
can measure it afterwards without knowing names by convention.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from models.crashes import Crashes
from models.fates import Fates

from ..distributions import Distribution, Sampler
from ..fields import Crashes as CrashesSpec
from ..recorder import Boundary, Gauge, Recorder, WindowCounter

Rng = Callable[[str, str], np.random.Generator]


def crashes(spec: CrashesSpec | None, component: str, rng: Rng) -> Crashes | None:
    """The crash samplers of ``component`` from its ``crashes`` spec (None without one): the time
    to failure from its stream ``crashes``, the restart time from its stream ``restart_time``."""
    if spec is None:
        return None
    return Crashes(Sampler(spec.time_to_failure_distribution(), rng(component, "crashes")),
                   Sampler(spec.restart_time.build(), rng(component, "restart_time")))


@dataclass
class Network:
    """The built parts of one replication: ``parts[section][name]`` (a broker, a worker pool, a
    producer…), ``targets`` (what a sender puts into, by name: a broker, an admission gate in
    front of it, an outbox, a dual write), every client by name (``clients``: the open-loop
    producers with a timeout or retries, and the groups of closed-loop clients), and what some
    parts attached to themselves (``attached[name, role]``: a pool's autoscaler, its capacity loss)."""

    parts: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    targets: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)
    attached: dict[tuple[str, str], Any] = field(default_factory=dict)

    def section(self, section: str) -> dict[str, Any]:
        return self.parts.get(section, {})

    def held_ids(self, sections: tuple[str, ...] | None = None):
        """Ids of the messages the parts hold now (a message may be held in several places)."""
        for section, parts in self.parts.items():
            if sections is None or section in sections:
                for part in parts.values():
                    yield from part.held_ids()


@dataclass
class BuildContext:
    """The environment, the Recorder (boundaries, counters, gauges), the fates router, random
    streams and the network built so far."""

    env: Any
    scenario: Any
    recorder: Recorder
    fates: Fates
    rng: Rng
    network: Network
    owned: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    building: str = ""

    @property
    def window_start_s(self) -> float:
        return self.recorder.warmup_s

    def sampler(self, distribution: Distribution, purpose: str, component: str | None = None) -> Sampler:
        """Draws of ``distribution`` from the stream ``purpose`` of ``component`` (the part being built)."""
        return Sampler(distribution, self.rng(component or self.building, purpose))

    def crashes(self, spec: CrashesSpec | None, component: str | None = None) -> Crashes | None:
        return crashes(spec, component or self.building, self.rng)

    def boundary(self, name: str, kind: str = "broker", keep_sojourns: bool = True) -> Boundary:
        boundary = self.recorder.boundary(name, kind, keep_sojourns)
        self.owned[self.building].append(boundary)
        return boundary

    def counter(self, name: str) -> WindowCounter:
        counter = self.recorder.counter(name)
        self.owned[self.building].append(counter)
        return counter

    def gauge(self, name: str, value: float) -> Gauge:
        return self.recorder.gauge(name, value)

    def part(self, section: str, name: str) -> Any:
        """The part ``name`` of ``section``, built before this one."""
        return self.network.parts[section][name]

    def broker(self, name: str) -> Any:
        """The broker ``name`` (dead-letter queues are looked up once every broker exists)."""
        return self.network.parts["brokers"][name]

    def target(self, name: str) -> Any:
        """What a sender to ``name`` puts into: the broker, an admission gate in front of it, an
        outbox or a dual write."""
        return self.network.targets[name]
