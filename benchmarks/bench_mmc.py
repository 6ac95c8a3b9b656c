"""Speed of asyncsim on an M/M/c queue, beside a minimal SimPy model, in one process.

The model: Poisson arrivals at λ = 9/s, c = 10 servers, exponential service of mean 1 s
(utilisation 0.9), for ``messages / λ`` seconds of simulated time, no warm-up, one replication.

Speed: asyncsim (``sim.run_replication`` with all its recording) and a minimal hand-written SimPy
model of the same system (a source process, one process per customer on a
``simpy.Resource(capacity=10)``, numpy draws in blocks of 4096, no recording) run alternately in
this process, several rounds each with the order alternated; the best (minimum) wall time of each
is kept. Target: asyncsim / minimal ≤ 1.5. Whole processes (start-up, a whole ``asyncsim run``,
peak memory) are bench_process.py's.

    python benchmarks/bench_mmc.py                      # 200,000 messages, 3 rounds
    python benchmarks/bench_mmc.py --messages 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import numpy as np
import simpy

ARRIVAL_RATE = 9.0  # λ, per second
SERVERS = 10  # c
MEAN_SERVICE_S = 1.0  # 1/μ
BLOCK_SIZE = 4096  # draws per numpy call, as asyncsim's Sampler
SEED = 12345
SPEED_TARGET = 1.5


def duration_for(messages: int) -> float:
    return messages / ARRIVAL_RATE


def scenario_dict(messages: int) -> dict:
    return {
        "name": "bench-mmc",
        "seed": SEED,
        "duration": duration_for(messages),
        "warmup": 0,
        "replications": 1,
        "producers": [{"name": "source", "arrivals": {"process": "poisson", "rate": ARRIVAL_RATE}, "sends_to": "queue"}],
        "brokers": [{"name": "queue", "kind": "fifo"}],
        "workers": [
            {
                "name": "servers",
                "consumes": "queue",
                "count": SERVERS,
                "service_time": {"dist": "exponential", "mean": MEAN_SERVICE_S},
            }
        ],
    }


def build_scenario(messages: int):
    import sim

    return sim.scenario_from_dict(scenario_dict(messages))


# --- the two models -----------------------------------------------------------------------------


def run_asyncsim(scenario) -> tuple[float, int, object]:
    """(wall seconds, messages produced, the ReplicationResult) of one asyncsim replication."""
    import sim

    gc.collect()
    started = time.perf_counter()
    result = sim.run_replication(scenario, 0)
    wall = time.perf_counter() - started
    return wall, result.messages, result


def run_minimal(duration_s: float, seed: int = SEED) -> tuple[float, int]:
    """(wall seconds, arrivals) of a minimal SimPy M/M/c model: no recording at all."""
    gc.collect()
    started = time.perf_counter()
    root = np.random.SeedSequence(seed)
    gap_rng, service_rng = (np.random.Generator(np.random.PCG64(s)) for s in root.spawn(2))
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=SERVERS)
    timeout = env.timeout
    process = env.process
    request = server.request
    arrivals = 0

    def customer(service_s):
        with request() as req:
            yield req
            yield timeout(service_s)

    def source():
        nonlocal arrivals
        gaps: list[float] = []
        services: list[float] = []
        mean_gap = 1.0 / ARRIVAL_RATE
        while True:
            if not gaps:
                gaps = gap_rng.exponential(mean_gap, BLOCK_SIZE).tolist()
            yield timeout(gaps.pop())
            if not services:
                services = service_rng.exponential(MEAN_SERVICE_S, BLOCK_SIZE).tolist()
            arrivals += 1
            process(customer(services.pop()))

    process(source())
    env.run(until=duration_s)
    wall = time.perf_counter() - started
    return wall, arrivals


# --- speed --------------------------------------------------------------------------------------


def speed(messages: int, rounds: int) -> bool:
    import sim  # noqa: F401  (imported outside the timings)
    from sim.analytic import mmc

    t0 = time.perf_counter()
    scenario = build_scenario(messages)
    build_s = time.perf_counter() - t0
    duration = duration_for(messages)
    print(f"M/M/c: λ = {ARRIVAL_RATE:g}/s, c = {SERVERS}, mean service {MEAN_SERVICE_S:g} s "
          f"(ρ = {ARRIVAL_RATE * MEAN_SERVICE_S / SERVERS:.2f}); duration {duration:,.1f} s "
          f"≈ {messages:,} messages; {rounds} rounds each, best kept")
    print(f"(scenario_from_dict: {build_s * 1000:.1f} ms, not in the timings)")

    walls = {"asyncsim": [], "minimal": []}
    counts = {}
    last_result = None
    for r in range(rounds):
        order = ("asyncsim", "minimal") if r % 2 == 0 else ("minimal", "asyncsim")
        for which in order:
            if which == "asyncsim":
                wall, n, last_result = run_asyncsim(scenario)
            else:
                wall, n = run_minimal(duration)
            walls[which].append(wall)
            counts[which] = n
            print(f"  round {r + 1} {which:8s} {wall:7.3f} s")

    best = {k: min(v) for k, v in walls.items()}
    print()
    for which in ("asyncsim", "minimal"):
        n = counts[which]
        print(f"{which:8s}  best {best[which]:7.3f} s   {n:,} messages   {n / best[which]:>10,.0f} messages/s"
              f"   (all rounds: {', '.join(f'{w:.3f}' for w in walls[which])})")
    ratio = best["asyncsim"] / best["minimal"]
    met = ratio <= SPEED_TARGET
    print(f"ratio asyncsim / minimal = {ratio:.2f}  (target ≤ {SPEED_TARGET}): {'MET' if met else 'NOT MET'}")

    exact = mmc(ARRIVAL_RATE, 1.0 / MEAN_SERVICE_S, SERVERS)
    got = last_result.metrics["system.latency_s.mean"]
    print(f"sanity: asyncsim mean latency {got:.4f} s vs exact M/M/c sojourn {exact.sojourn_s:.4f} s (one replication)")
    return met


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages in the speed runs (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each model, order alternated (default 3)")
    args = parser.parse_args(argv)
    return 0 if speed(args.messages, args.rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
