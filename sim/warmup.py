"""The warm-up, chosen from the run itself: ``warmup: auto``.

Every replication starts empty, so its first stretch is a start-up transient, not the steady
state the estimates are of. With ``warmup: auto`` each replication first runs a pilot of its whole
duration with no warm-up, on its own random streams, and MSER-5 (:func:`mser5_truncation`) on the
end-to-end latencies of its messages in the order they finished — the output sequence MSER was
designed for — says how many to delete; the warm-up is the time the last deleted one finished.
The replication then runs again with that warm-up, so that every count, time average and latency
is of the window after it. The pilot keeps every latency (16 bytes a message) for this. Each replication thus chooses its own truncation, as MSER is meant to be
applied (White, Cobb & Spratt 2000); the price is a second pass per replication. When MSER-5
finds no steady state in the first half of the run, the warm-up is half the run and the
replication says so (``steady`` is false).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np
import simpy

from .network import build
from .recorder import Recorder
from .schema import AUTO
from .streams import Streams


def mser5_truncation(series) -> int | None:
    """How many leading points of ``series`` to delete as the initial transient, by MSER-5
    (White 1997; White, Cobb & Spratt 2000; Hoad, Robinson & Davies 2010): the points are
    averaged in batches of 5, and the truncation d (in batches) minimises the squared standard
    error of the mean of what remains, Σᵢ₌d (bᵢ − b̄_d)² / (m − d)². A minimum in the second half
    of the series means no steady state was reached within it: None."""
    x = np.asarray(series, dtype=float)
    m = x.size // 5
    if m < 4:
        return None
    batches = x[:m * 5].reshape(m, 5).mean(axis=1)
    scores = []
    for d in range(m // 2 + 1):
        rest = batches[d:]
        scores.append(float(((rest - rest.mean()) ** 2).sum()) / (m - d) ** 2)
    best = int(np.argmin(scores))
    return None if best >= m // 2 else 5 * best


class Tape:
    """Every value recorded, with its time, in order: what a pilot keeps of its latencies (it
    stands where the Recorder keeps its :class:`~sim.sketch.Sketch`)."""

    def __init__(self):
        self.values = array("d")
        self.times = array("d")

    def add(self, value: float, now: float) -> None:
        self.values.append(value)
        self.times.append(now)


@dataclass(frozen=True)
class WarmupChoice:
    """The warm-up a replication chose, and whether MSER-5 found a steady state at all."""

    warmup_s: float
    steady: bool


def choose_warmup(scenario, replication: int, seed: int) -> WarmupChoice:
    """The warm-up of ``replication`` of ``scenario`` (``warmup: auto``), from its pilot run."""
    pilot = scenario.model_copy(update={"warmup": 0.0})
    env = simpy.Environment()
    recorder = Recorder(0.0, pilot.duration)
    recorder.latency_s = tape = Tape()
    build(pilot, env, recorder, Streams(seed, replication))
    env.run(until=pilot.duration)
    deleted = mser5_truncation(tape.values)
    if deleted is None:
        return WarmupChoice(pilot.duration / 2, False)
    return WarmupChoice(tape.times[deleted - 1] if deleted else 0.0, True)


def inspectable(scenario):
    """``scenario`` as it is built to be inspected rather than run: with ``warmup: auto``, none."""
    return scenario.model_copy(update={"warmup": 0.0}) if scenario.warmup == AUTO else scenario
