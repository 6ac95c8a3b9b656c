"""What a broker builder gets to build its broker with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.crashes import Crashes
from models.fates import Fates

from ..distributions import Sampler
from ..fields import Crashes as CrashesSpec
from ..recorder import Boundary, Recorder, WindowCounter

Rng = Callable[[str, str], np.random.Generator]


def crashes(spec: CrashesSpec | None, component: str, rng: Rng) -> Crashes | None:
    """The crash samplers of ``component`` from its ``crashes`` spec (None without one): the time
    to failure from its stream ``crashes``, the restart time from its stream ``restart_time``."""
    if spec is None:
        return None
    return Crashes(Sampler(spec.time_to_failure_distribution(), rng(component, "crashes")),
                   Sampler(spec.restart_time.build(), rng(component, "restart_time")))


@dataclass
class BuildContext:
    """The environment, the Recorder (for boundaries and counters), the fates router, random
    streams and the other brokers (for dead-letter targets, looked up by name once every broker
    exists)."""

    env: object
    recorder: Recorder
    fates: Fates
    rng: Rng
    broker: Callable[[str], object]

    @property
    def window_start_s(self) -> float:
        return self.recorder.warmup_s

    def boundary(self, name: str, kind: str = "broker", keep_sojourns: bool = True) -> Boundary:
        return self.recorder.boundary(name, kind, keep_sojourns)

    def counter(self, name: str) -> WindowCounter:
        return self.recorder.counter(name)

    def crashes(self, spec: CrashesSpec | None, component: str) -> Crashes | None:
        return crashes(spec, component, self.rng)
