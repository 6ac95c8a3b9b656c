"""What a broker builder gets to build its broker with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..recorder import Boundary, Recorder


@dataclass
class BuildContext:
    """The environment, the Recorder, random streams and the other brokers (for dead-letter
    targets, looked up by name once every broker exists)."""

    env: object
    recorder: Recorder
    rng: Callable[[str, str], np.random.Generator]
    broker: Callable[[str], object]

    def boundary(self, name: str, kind: str = "broker", keep_sojourns: bool = True) -> Boundary:
        return self.recorder.boundary(name, kind, keep_sojourns)
