"""What a replication will cost before it runs: events, run time and peak memory, and whether
the runs asked for fit in this machine's memory.

The estimate is a model with three measured constants, not a pilot run (a pilot of ten million
workers would itself need the memory it is meant to check):

- **Events.** A message passing through a broker (a *hop*: the long-run arrival rate of every
  broker from :func:`sim.topology.broker_flows`, of every web tier and delay station from
  :func:`sim.topology.part_loads`, plus what closed-loop clients can send at most, times the duration) costs about :data:`EVENTS_PER_HOP` SimPy events: its arrival, the put, the
  get, the service. Measured by counting ``Environment.step`` calls over the scenarios in
  ``scenarios/``: 2.2 to 5 per hop, up to 9 where retries multiply the messages.
- **Run time.** :data:`SECONDS_PER_EVENT` per event, the median of the same runs on a 2-core
  machine shared with other work (5 to 9 µs per event, 19 for SQS's polling).
- **Memory.** A part that runs its own SimPy process (a worker, a closed-loop client) holds a
  generator, its events and its state: :data:`BYTES_PER_PART` (tracemalloc's peak with 20,000
  workers, divided by them). Each message leaves :data:`BYTES_PER_HOP` in the Recorder (its
  latency, its outcome bits, the table of messages in flight as it grows), measured the same way
  on one-hour runs (20 to 200 bytes a hop; retry storms, whose queues grow, up to 800).
  :data:`PROCESS_BYTES` is what a process holds before it simulates anything (Python, numpy,
  scipy, pandas, pydantic), and :data:`RESULT_BYTES` what one finished replication's result
  takes in the parent: its metrics, checks, time series and histogram (about 20 kB) and, mostly,
  the buckets of each latency and wait distribution by time section (pickled, 50 kB for
  retry-storm to 1.5 MB for celery-two-queues' thirteen distributions; 240 to 530 kB for most).

The figures are orders of magnitude, good to a factor of two or three: enough to see that
ten million workers (about 25 GB) or a century of traffic (terabytes, for days) will not fit,
which is what the commands refuse without ``--force``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .components.registry import SECTIONS
from .schema import Scenario
from .topology import broker_flows, part_loads
from .units import format_duration

EVENTS_PER_HOP = 3.5
SECONDS_PER_EVENT = 7e-6
BYTES_PER_PART = 2_500
BYTES_PER_HOP = 200
PROCESS_BYTES = 250e6
RESULT_BYTES = 500e3


@dataclass(frozen=True)
class Cost:
    """The estimated cost of one replication of a scenario."""

    hops: float
    events: float
    run_s: float
    peak_bytes: float

    def as_dict(self) -> dict:
        return {"events": self.events, "run_s": self.run_s, "peak_memory_bytes": self.peak_bytes}


def parts_with_processes(scenario: Scenario) -> int:
    """Workers (at an autoscaled pool's most) and closed-loop clients: each runs a SimPy process."""
    total = 0
    for section in SECTIONS:
        for spec in getattr(scenario, section):
            total += getattr(spec, "max_count", None) or getattr(spec, "count", 0) or 0
    return total


def hops_per_s(scenario: Scenario) -> float:
    """Messages arriving at brokers per second in the long run, at the parts that serve without a
    broker in front (a web tier's requests, a delay station's stays), and closed-loop clients' most."""
    rate = sum(flow.arrival_rate_per_s for flow in broker_flows(scenario).values())
    rate += sum(load.rate_per_s for _, _, load in part_loads(scenario))
    for clients in getattr(scenario, "clients", None) or ():
        think_s = clients.think_time.build().mean if getattr(clients, "think_time", None) is not None else 0.0
        rate += clients.count / think_s if think_s > 0 else 0.0
    return rate


def estimate_cost(scenario: Scenario) -> Cost:
    """Events, run time (this process, one core) and peak memory of one replication."""
    hops = float(hops_per_s(scenario) * scenario.duration)
    events = EVENTS_PER_HOP * hops
    peak = BYTES_PER_PART * parts_with_processes(scenario) + BYTES_PER_HOP * hops
    return Cost(hops, events, events * SECONDS_PER_EVENT, peak)


def machine_memory_bytes() -> float | None:
    """This machine's physical memory, or None where the system does not say."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_needed_bytes(cost: Cost, replications: int, parallel: int) -> float:
    """Memory for ``replications`` run ``parallel`` at a time here: each running process's own and
    its replication's peak, and every finished replication's result kept in this process."""
    at_once = max(1, min(parallel, replications))
    return at_once * (PROCESS_BYTES + cost.peak_bytes) + replications * RESULT_BYTES


def too_big(cost: Cost, replications: int, parallel: int) -> str | None:
    """Why the runs cannot fit in this machine's memory, or None if they can (or it is not known)."""
    memory = machine_memory_bytes()
    needed = memory_needed_bytes(cost, replications, parallel)
    if memory is None or needed <= memory:
        return None
    at_once = max(1, min(parallel, replications))
    return (f"this would need about {format_bytes(needed)} of memory and the machine has {format_bytes(memory)}: "
            f"{format_bytes(cost.peak_bytes)} per replication ({format_count(cost.events)} events, about "
            f"{format_duration(cost.run_s)} each) × {at_once} at once, and {replications:,} results of "
            f"{format_bytes(RESULT_BYTES)}. Shorten the duration, use fewer parts or replications, "
            f"or pass --force to run anyway")


def format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_count(n: float) -> str:
    return f"{n:,.0f}" if n < 1e9 else f"{n:.3g}"
