"""Random number streams: one SeedSequence per run, a child stream per replication and component.

A stream's spawn key is (replication, hash of the component's name, hash of its purpose), so a
component draws the same numbers whatever else the scenario contains or changes: common random
numbers across the points of a sweep, and identical results whatever the number of processes.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(text: str) -> int:
    """A 32-bit hash of ``text`` that is the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


class Streams:
    """Hands out independent numpy Generators keyed by component name and purpose."""

    def __init__(self, seed: int, replication: int):
        self.seed = seed
        self.replication = replication

    def rng(self, component: str, purpose: str) -> np.random.Generator:
        sequence = np.random.SeedSequence(self.seed, spawn_key=(self.replication, stable_hash(component), stable_hash(purpose)))
        return np.random.Generator(np.random.PCG64(sequence))
