"""What loading the package and a scenario costs at start-up: the heavy libraries stay unloaded
until a result needs them (a run and its intervals need none), and the lighter routes they were
replaced by give the same numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sim.stats import mean_ci, t_quantile, t_quantile_between

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("scipy", "pandas", "matplotlib")


def modules_loaded_by(code: str) -> set[str]:
    """The top-level packages among HEAVY that a fresh interpreter has loaded after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_sim_loads_no_heavy_library():
    assert modules_loaded_by("import sim") == set()


def test_loading_and_running_one_replication_loads_no_heavy_library():
    code = (
        "import sim\n"
        "scenario = sim.load_scenario('scenarios/quickstart.yaml', ['duration=2m', 'warmup=10s'])\n"
        "sim.run(scenario, replications=1, jobs=1)"
    )
    assert modules_loaded_by(code) == set()


@pytest.mark.parametrize("replications", [1, 2])
def test_a_confidence_interval_loads_no_heavy_library(replications):
    # one replication's intervals come from batches of its window, two replications' from both
    code = (
        "import sim\n"
        "scenario = sim.load_scenario('scenarios/quickstart.yaml', ['duration=2m', 'warmup=10s'])\n"
        f"sim.run(scenario, replications={replications}, jobs=1).summary()"
    )
    assert modules_loaded_by(code) == set()


@pytest.mark.parametrize("n", [2, 3, 10, 30, 101])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_confidence_interval_is_the_student_t_one(n, confidence):
    values = np.random.default_rng(n).normal(5.0, 2.0, n)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    estimate = mean_ci(values, confidence)
    assert estimate.low == pytest.approx(float(values.mean() - half), rel=1e-12)
    assert estimate.high == pytest.approx(float(values.mean() + half), rel=1e-12)


def test_the_t_quantile_for_whole_degrees_of_freedom_is_scipys_to_twelve_digits():
    for df in [*range(1, 202), 499, 1000, 5001]:
        for confidence in (0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
            assert t_quantile(df, confidence) == pytest.approx(scipy_stats.t.ppf(0.5 + confidence / 2, df), rel=1e-11), (df, confidence)
    assert t_quantile(math.inf) == pytest.approx(scipy_stats.norm.ppf(0.975), rel=1e-12)
    assert t_quantile(2.5) == pytest.approx(scipy_stats.t.ppf(0.975, 2.5), rel=1e-12)


def test_the_t_quantile_between_whole_degrees_of_freedom_is_within_3_percent_of_scipys():
    for nu in np.linspace(1, 300, 2_991):
        exact = scipy_stats.t.ppf(0.975, nu)
        assert t_quantile_between(nu) == pytest.approx(exact, rel=0.03 if nu < 2 else 0.005), nu
    assert t_quantile_between(7.0) == t_quantile(7)


def test_the_command_line_builds_no_scenario_schema_until_a_command_needs_one():
    # building the pydantic models of every kind of part is most of `check`'s start-up; --help needs none of it
    probe = "import sys, sim.cli\nprint('sim.components.registry' in sys.modules, 'sim.schema' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def collector_after(*args: str) -> tuple[bool, int]:
    """Whether the garbage collector runs, and how many objects are frozen out of its reach, after
    the ``asyncsim`` entry point ran the command ``args`` in a fresh interpreter."""
    probe = ("import gc, sys\nfrom sim.__main__ import main\n"
             f"sys.argv = ['asyncsim', *{list(args)!r}]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print(gc.isenabled(), gc.get_freeze_count(), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    enabled, frozen = done.stderr.split()[-2:]
    return enabled == "True", int(frozen)


def test_the_collector_pauses_for_start_up_and_runs_again_with_it_frozen_once_a_command_simulates():
    assert collector_after("check", "scenarios/quickstart.yaml") == (False, 0)
    enabled, frozen = collector_after("run", "scenarios/quickstart.yaml", "--set", "duration=1m", "--set", "warmup=5s", "-r", "1", "--json")
    assert enabled and frozen > 50_000  # the modules and the scenario's models (about 98,000 objects), built once


def test_importing_the_command_line_leaves_the_collector_alone():
    # a notebook or a test that imports sim.cli keeps its collector as it was
    probe = "import gc, sim.cli\nprint(gc.isenabled(), gc.get_freeze_count())"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "0"]
