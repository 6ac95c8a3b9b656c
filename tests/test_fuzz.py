"""A property-based fuzz test (issue 11): every scenario in ``scenarios/``, mutated (a value
replaced by a wrong or extreme one, a key removed or misspelled, an item duplicated), must give
``check`` a valid scenario or a refusal whose every problem names the file and line (or the
``--set``), in bounded output and time, and a short run of a valid one must neither raise nor
fail a replication. Hypothesis is derandomized (the same examples every time) and bounded.
"""

from __future__ import annotations

import copy
import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from sim import ScenarioError, load_scenario_text, run
from sim.cost import estimate_cost
from tests.test_cli import asyncsim_executable

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
FILES = sorted(SCENARIOS.glob("*.yaml"))
MAX_MESSAGE_CHARS = 20_000
MAX_CHECK_S = 5.0
MAX_RUN_EVENTS = 100_000

ODD_VALUES = [-1, 0, 1, 2.5, 1e308, -1e-300, 1e155, True, None, "", "abc", "nan", "inf", "-5ms", "1e400s", "10/s",
              "0/s", "3h", "1 ms", "x" * 500, [], {}, [1, 2], {"dist": "lognormal"}, {"unknown": 1}, "../../etc/passwd"]
PLAUSIBLE_VALUES = [3, 10, 100, 0.5, 0.01, "50ms", "2s", "20/s", "200/s", 1, 2]


def plain(node):
    """ruamel's round-trip data as plain dicts and lists."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node


def places(node):
    """Every (container, key) in the data: where a mutation can act."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from places(value)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from places(value)


def mutate(data, choice: int, how: int, value) -> None:
    """Change ``data`` at the ``choice``-th place: ``how`` picks what is done there."""
    spots = list(places(data))
    container, key = spots[choice % len(spots)]
    action = how % 4
    value = copy.deepcopy(value)
    if action == 0:
        container[key] = value
    elif action == 1:
        del container[key]
    elif action == 2 and isinstance(container, dict):
        container[f"{key}x"] = container.pop(key)
    else:
        if isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
        else:
            container[key] = value


def to_yaml(data) -> str:
    buffer = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, buffer)
    return buffer.getvalue()


ORIGINALS = {path.name: plain(YAML(typ="safe", pure=True).load(path.read_text())) for path in FILES}


def checked(text: str, source: str):
    """``check``'s verdict on ``text`` in bounded time: the scenario, or the refusal's text."""
    started = time.perf_counter()
    try:
        scenario = load_scenario_text(text, source=source, base_dir=SCENARIOS)
        refusal = None
    except ScenarioError as exc:
        scenario, refusal = None, exc
    assert time.perf_counter() - started < MAX_CHECK_S
    if refusal is not None:
        message = str(refusal)
        assert len(message) < MAX_MESSAGE_CHARS
        for problem in refusal.problems:
            if problem.message.startswith("... and "):
                continue
            assert problem.line is not None or problem.override, f"no line: {problem.format(source)}"
            assert problem.format(source).startswith(f"{source}:{problem.line}: "), problem.format(source)
    return scenario


@pytest.mark.slow
@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(name=st.sampled_from(sorted(ORIGINALS)), choice=st.integers(0, 10_000), how=st.integers(0, 3),
       value=st.sampled_from(ODD_VALUES + PLAUSIBLE_VALUES), mutations=st.integers(1, 2))
def test_a_mutated_scenario_is_checked_cleanly_and_runs_without_failing(name, choice, how, value, mutations):
    data = copy.deepcopy(ORIGINALS[name])
    for step in range(mutations):
        mutate(data, choice * (step + 1) + step, how + step, value)
    source = f"mutated-{name}"
    scenario = checked(to_yaml(data), source)
    if scenario is None:
        return
    short = scenario.model_copy(update={"duration": min(scenario.duration, 20.0), "warmup": 0.0})
    if estimate_cost(short).events > MAX_RUN_EVENTS:
        return  # valid, but too long for a fuzz example: check's estimate says so
    result = run(short, replications=1, jobs=1)
    assert not result.failures, result.failures[0].traceback
    assert len(result.results) == 1


MUTATED_FILES = [
    ("quickstart.yaml", lambda d: d["workers"][0].update(count="many")),
    ("image-pipeline.yaml", lambda d: d["brokers"].append({"name": "resize-queue", "kind": "nope"})),
    ("recorded-burst.yaml", lambda d: d["producers"][0]["arrivals"].update(file="/etc/passwd")),
]


@pytest.mark.slow
def test_the_command_line_refuses_mutated_files_at_their_lines_without_a_traceback(tmp_path):
    (tmp_path / "data").symlink_to(SCENARIOS / "data")
    processes = []
    for name, change in MUTATED_FILES:
        data = copy.deepcopy(ORIGINALS[name])
        change(data)
        path = tmp_path / name
        path.write_text(to_yaml(data))
        processes.append((path, subprocess.Popen([asyncsim_executable(), "check", str(path)], text=True, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE, env={k: v for k, v in os.environ.items() if k != "ASYNCSIM_DEBUG"})))
    for path, process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, stdout + stderr
        assert "Traceback" not in stderr and len(stderr) < MAX_MESSAGE_CHARS
        lines = stderr.strip().splitlines()
        assert lines[0] == f"error in {path}:"
        assert all(line.startswith(f"  {path}:") for line in lines[1:]), stderr
        assert "root:" not in stderr
