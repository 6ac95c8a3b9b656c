"""Whole processes, as a user meets them: start-up, a whole ``asyncsim run``, and peak memory.

Three parts, each beside a baseline measured in the same run:

- start-up: the wall time of ``asyncsim --help``, ``asyncsim check scenarios/quickstart.yaml`` and
  ``python -c "import sim"``, each the median of ``--repeat`` runs, beside ``python -c pass``.
  Targets (absolute): --help < 0.3 s, check < 0.6 s.
- whole process: ``asyncsim run`` of the M/M/10 scenario of bench_mmc.py (``--messages``,
  200,000 by default; one replication, ``-j 1``, all recording on) as a subprocess, beside the
  minimal SimPy model of bench_mmc.py run as a subprocess for the same simulated time; rounds
  alternate, the best of each is kept. Target: asyncsim / minimal ≤ 1.0.
- memory: one replication of ``--memory-messages`` messages in a child process, which reports
  its own ``ru_maxrss`` right after ``import sim`` and building the scenario (the baseline) and
  after the run (the peak); the parent reads the same child's figure with ``os.wait4``.
  Target: peak < 300 MiB at 10,000,000 messages.

Python's bytecode: an installed package has its modules compiled once (pip compiles them when it
installs, an editable install on the first run), so the children may write and read ``.pyc``
files even where the environment sets ``PYTHONDONTWRITEBYTECODE`` (this machine does), and every
command runs once, unmeasured, before the measured runs. ``--no-bytecode-cache`` measures
instead a start with every module compiled again, as such an environment gives.

    python benchmarks/bench_process.py                              # about a minute
    python benchmarks/bench_process.py --memory-messages 10000000   # the issue's memory figure
    python benchmarks/bench_process.py --json figures.json          # also write the figures
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_mmc import SEED, build_scenario, duration_for, run_minimal, scenario_dict

ROOT = Path(importlib.util.find_spec("sim").origin).resolve().parents[1]  # the sim this interpreter imports
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
HELP_TARGET_S = 0.3
CHECK_TARGET_S = 0.6
PROCESS_TARGET = 1.0
MEMORY_TARGET_MIB = 300.0
MEMORY_TARGET_MESSAGES = 10_000_000
MIB = 1024 * 1024


def asyncsim_command() -> list[str]:
    """The installed ``asyncsim`` script beside this interpreter (not a shell shim in front of
    it, which would add its own start-up), or ``python -m sim`` when there is none."""
    script = Path(sys.executable).parent / "asyncsim"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sim"]


def child_environment(bytecode_cache: bool) -> dict[str, str]:
    """This process's environment, with bytecode files written and read or not."""
    environment = dict(os.environ)
    if bytecode_cache:
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    return environment



def run_child(command: list[str], environment: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in bytes, stdout) of one child process, which must exit with 0.

    ``os.wait4`` gives the resources of this child alone; ``RUSAGE_CHILDREN`` would give the
    largest peak of every child reaped so far.
    """
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True, env=environment)
        stdout = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.stdout.close()
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}:\n{errors.read()}")
    return wall, usage.ru_maxrss * 1024, stdout  # Linux reports kilobytes


# --- start-up -----------------------------------------------------------------------------------


def startup(repeat: int, environment: dict[str, str]) -> tuple[dict, bool]:
    asyncsim = asyncsim_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import sim"': [sys.executable, "-c", "import sim"],
        "asyncsim --help": asyncsim + ["--help"],
        "asyncsim check quickstart.yaml": asyncsim + ["check", str(QUICKSTART)],
    }
    targets = {"asyncsim --help": HELP_TARGET_S, "asyncsim check quickstart.yaml": CHECK_TARGET_S}
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():
        run_child(command, environment)  # unmeasured: bytecode compiled (and cached if allowed), files in the page cache
    for _ in range(repeat):  # interleaved, so that a busy moment of the machine hits all alike
        for name, command in commands.items():
            walls[name].append(run_child(command, environment)[0])
    medians = {name: statistics.median(values) for name, values in walls.items()}
    baseline = medians["python -c pass"]
    print(f"start-up: median of {repeat} runs each, in {ROOT} ({' '.join(asyncsim)} for asyncsim)")
    met = True
    for name, median in medians.items():
        line = f"  {name:32s} {median:7.3f} s   {median / baseline:5.1f} × python -c pass"
        if name in targets:
            ok = median < targets[name]
            met &= ok
            line += f"   (target < {targets[name]:g} s: {'MET' if ok else 'NOT MET'})"
        print(line + f"   [{min(walls[name]):.3f}–{max(walls[name]):.3f}]")
    figures = {name: {"median_s": medians[name], "runs_s": walls[name], "ratio_to_python": medians[name] / baseline} for name in commands}
    return figures, met


# --- whole process ------------------------------------------------------------------------------


def whole_process(messages: int, rounds: int, environment: dict[str, str]) -> tuple[dict, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        scenario_file = Path(tmp) / "bench-mmc.yaml"
        scenario_file.write_text(json.dumps(scenario_dict(messages)))  # JSON is YAML
        commands = {
            "asyncsim": asyncsim_command() + ["run", str(scenario_file), "-r", "1", "-j", "1", "--seed", str(SEED), "--json"],
            "minimal": [sys.executable, __file__, "--_minimal", str(messages)],
        }
        walls: dict[str, list[float]] = {"asyncsim": [], "minimal": []}
        produced = {}
        for command in commands.values():
            run_child(command, environment)  # unmeasured, as in startup()
        for r in range(rounds):
            for which in ("asyncsim", "minimal") if r % 2 == 0 else ("minimal", "asyncsim"):
                wall, _, stdout = run_child(commands[which], environment)
                walls[which].append(wall)
                produced[which] = json.loads(stdout)["counts"]["produced"] if which == "asyncsim" else int(stdout)
    best = {which: min(values) for which, values in walls.items()}
    ratio = best["asyncsim"] / best["minimal"]
    met = ratio <= PROCESS_TARGET
    print(f"whole process: M/M/10 for {duration_for(messages):,.1f} s ≈ {messages:,} messages, {rounds} rounds each, best kept")
    for which in ("asyncsim", "minimal"):
        print(f"  {which:8s} {best[which]:7.3f} s   {produced[which]:,} messages   (all rounds: {', '.join(f'{w:.3f}' for w in walls[which])})")
    print(f"  ratio asyncsim / minimal = {ratio:.2f}  (target ≤ {PROCESS_TARGET:g}): {'MET' if met else 'NOT MET'}")
    return {"messages": messages, "best_s": best, "runs_s": walls, "produced": produced, "ratio": ratio}, met


# --- memory -------------------------------------------------------------------------------------


def memory(messages: int, environment: dict[str, str]) -> tuple[dict, bool]:
    wall, peak, stdout = run_child([sys.executable, __file__, "--_memory", str(messages)], environment)
    child = json.loads(stdout)
    baseline = child["baseline_maxrss_bytes"]
    per_message = (peak - baseline) / child["messages"]
    judged = messages >= MEMORY_TARGET_MESSAGES  # the target is for that many; fewer would pass it too easily
    met = peak < MEMORY_TARGET_MIB * MIB or not judged
    print(f"memory: one replication of {messages:,} messages (duration {duration_for(messages):,.1f} s) in a child process")
    print(f"  after import sim + scenario  {baseline / MIB:8.1f} MiB")
    print(f"  peak of the replication      {peak / MIB:8.1f} MiB   (child's own figure {child['peak_maxrss_bytes'] / MIB:.1f} MiB;"
          f" run {child['run_s']:.1f} s, process {wall:.1f} s)")
    print(f"  replication                  {(peak - baseline) / MIB:8.1f} MiB   = {per_message:.0f} bytes/message"
          f" over {child['messages']:,} messages")
    verdict = ("MET" if met else "NOT MET") if judged else "not judged below that many messages"
    print(f"  peak {peak / MIB:.1f} MiB (target < {MEMORY_TARGET_MIB:g} MiB at {MEMORY_TARGET_MESSAGES:,} messages): {verdict}")
    return {"messages": child["messages"], "baseline_bytes": baseline, "peak_bytes": peak, "bytes_per_message": per_message,
            "run_s": child["run_s"]}, met


def memory_child(messages: int) -> None:
    """In the measured child: import sim, build the scenario, note ru_maxrss, run, note it again."""
    import sim

    scenario = build_scenario(messages)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    result = sim.run_replication(scenario, 0)
    run_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"baseline_maxrss_bytes": baseline, "peak_maxrss_bytes": peak, "messages": result.messages, "run_s": run_s}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs of each start-up command, median kept (default 7)")
    parser.add_argument("--messages", type=int, default=200_000, help="messages in the whole-process runs (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="whole-process rounds of each, order alternated (default 3)")
    parser.add_argument("--memory-messages", type=int, default=200_000,
                        help="messages in the memory run (default 200000; the issue's target is for 10000000)")
    parser.add_argument("--skip", action="append", default=[], choices=("startup", "process", "memory"), help="leave a part out (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--no-bytecode-cache", action="store_true", help="compile every module at every start (PYTHONDONTWRITEBYTECODE)")
    parser.add_argument("--_minimal", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_memory", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._minimal is not None:
        print(run_minimal(duration_for(args._minimal))[1])
        return 0
    if args._memory is not None:
        memory_child(args._memory)
        return 0
    environment = child_environment(not args.no_bytecode_cache)
    print(f"bytecode: {'compiled at every start' if args.no_bytecode_cache else 'cached, as an installed package has it'}\n")
    parts = {"startup": lambda: startup(args.repeat, environment), "process": lambda: whole_process(args.messages, args.rounds, environment),
             "memory": lambda: memory(args.memory_messages, environment)}
    figures, ok = {}, True
    for name, part in parts.items():
        if name in args.skip:
            continue
        if figures:
            print()
        figures[name], met = part()
        ok &= met
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
