"""Bad scenario input never crashes and never floods (issue 11): nested aliases, deep nesting,
huge files, ``--set`` values that are not YAML, booleans for numbers, a cv no float can hold,
a file of comments only. Each is refused with a short message that names the file and line."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from sim import ScenarioError, load_scenario, load_scenario_text
from sim.cli import main
from sim.overrides import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from sim.problems import SHOWN_CHARS, SHOWN_PROBLEMS, shorten

GOOD = """\
name: shop
duration: 10m
warmup: 1m
replications: 2
producers:
  - name: web
    arrivals: {process: poisson, rate: 30/s}
    sends_to: jobs
brokers:
  - name: jobs
    kind: fifo
workers:
  - name: pool
    consumes: jobs
    count: 8
    service_time: {dist: lognormal, mean: 200ms, cv: 0.8}
"""


def laughs(levels: int, field: str = "duration") -> str:
    """A "billion laughs": each level an anchored list of nine aliases of the level below;
    ``field`` set to the last level (9**levels strings once expanded)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: laughs\n{field}: *l{levels - 1}\n"


def error_of(text: str, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text, source="s.yaml", overrides=overrides)
    return str(caught.value)


@pytest.fixture
def call(tmp_path, monkeypatch, capsys):
    """``sim.cli.main`` with ``args`` in ``tmp_path``: (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASYNCSIM_DEBUG", raising=False)

    def call(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["asyncsim", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, capsys.readouterr().err

    return call


# --- #3: nested aliases, and every quoted value kept short --------------------------------------


def test_a_large_value_is_quoted_short_in_the_message():
    text = laughs(4)  # 6561 strings: within the limits, but a wrong value for a duration
    message = error_of(text)
    assert "s.yaml:6: duration: expected a duration such as 80ms, 1.5s, 10m or 2h, got [[[" in message
    assert "..." in message
    assert len(message) < 2000


def test_a_billion_laughs_is_refused_at_its_line_in_little_memory_and_time(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs(9))  # 9**9 strings once expanded: a few hundred bytes of YAML
    assert path.stat().st_size < 700

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))  # 2 GB: the defect needed more

    done = subprocess.run([sys.executable, "-m", "sim", "check", str(path)], capture_output=True, text=True,
                          timeout=120, preexec_fn=limit_memory)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"laughs.yaml:5: more than {MAX_VALUES:,} values (an alias counts as all it repeats)" in done.stderr
    assert len(done.stdout) + len(done.stderr) < 2000


def test_a_billion_laughs_in_a_set_value_is_blamed_on_the_set():
    value = "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], " \
            "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], *e]"
    message = error_of(GOOD, (f"name={value}",))
    assert message == f"s.yaml (command line: {shorten('name=' + value)}): more than {MAX_VALUES:,} values (an alias counts as all it repeats); " \
                      "that is the limit for a scenario file"


def test_an_alias_inside_its_own_anchor_is_refused():
    assert error_of(GOOD + "extra: &loop [1, *loop]\n") == \
        "s.yaml:17: the alias *loop repeats a mapping or list that contains it"


def test_a_long_string_is_quoted_short_in_the_message_and_the_path():
    long_name = "x" * 50_000 + "."
    message = error_of(GOOD.replace("name: web", f"name: {long_name}"))
    assert message.startswith(f"s.yaml:6: producers.{'x' * (SHOWN_CHARS - 1)}….name: 'xxxx")
    assert "is not a valid name" in message
    assert len(message) < 3 * SHOWN_CHARS + 200


def test_many_problems_are_listed_up_to_a_limit_and_counted():
    text = GOOD.replace("producers:\n", "producers: [" + ", ".join(["1"] * 500) + "]\nx:\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(text, source="s.yaml")
    problems = caught.value.problems
    assert len(problems) == SHOWN_PROBLEMS + 1
    assert problems[-1].message.startswith(f"... and {501 - SHOWN_PROBLEMS} more problems")


# --- #7: a --set value that is not YAML ----------------------------------------------------------


@pytest.mark.parametrize("spec, what", [
    ("name=@x", "found character '@' that cannot start any token"),
    ("x=[1,", "expected the node content, but found '<stream end>'"),
])
def test_a_set_value_that_is_not_yaml_is_a_scenario_error(spec, what):
    assert error_of(GOOD, (spec,)) == f"s.yaml (command line: {spec}): not valid YAML: {what}"


def test_a_set_value_that_is_not_yaml_exits_2(call, tmp_path):
    (tmp_path / "s.yaml").write_text(GOOD)
    code, err = call("check", "s.yaml", "--set", "name=@x")
    assert code == 2
    assert "s.yaml (command line: name=@x): not valid YAML: found character '@'" in err
    assert "internal error" not in err


# --- #9: deep nesting ----------------------------------------------------------------------------


def test_nesting_400_deep_is_refused_at_its_line(call, tmp_path):
    (tmp_path / "deep.yaml").write_text("name: deep\nduration: " + "[" * 400 + "]" * 400 + "\n")
    code, err = call("check", "deep.yaml")
    assert code == 2, err
    assert f"deep.yaml:2: nested more than {MAX_DEPTH} levels deep (the limit for a scenario file)" in err
    assert "RecursionError" not in err


def test_an_alias_that_nests_too_deep_is_refused():
    text = "a: &a " + "[" * 30 + "]" * 30 + "\nb: [[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]\n"
    assert error_of(text) == f"s.yaml:2: nested more than {MAX_DEPTH} levels deep (the limit for a scenario file)"


# --- #11: booleans where numbers are meant -------------------------------------------------------


@pytest.mark.parametrize("old, new, where", [
    ("cv: 0.8", "cv: true", "s.yaml:16: workers.pool.service_time.cv: must be a number, got True"),
    ("count: 8", "count: false", "s.yaml:15: workers.pool.count: must be a whole number, got False"),
    ("rate: 30/s", "rate: true", "s.yaml:7: producers.web.arrivals.rate: expected a rate such as 200/s, got True"),
    ("mean: 200ms", "mean: true", "s.yaml:16: workers.pool.service_time.mean: expected a duration such as 80ms or 2h, got True"),
    ("kind: fifo", "kind: fifo\n    capacity: true", "s.yaml:12: brokers.jobs.capacity: must be a whole number, got True"),
])
def test_a_boolean_is_not_a_number(old, new, where):
    assert error_of(GOOD.replace(old, new)) == where


def test_a_boolean_is_not_a_number_for_erlang_k_or_a_probability():
    erlang = GOOD.replace("{dist: lognormal, mean: 200ms, cv: 0.8}", "{dist: erlang, mean: 200ms, k: true}")
    assert error_of(erlang) == "s.yaml:16: workers.pool.service_time.k: must be a number, got True"
    errors = GOOD + "    errors: {probability: true}\n"
    assert error_of(errors) == "s.yaml:17: workers.pool.errors.probability: must be a number, got True"


def test_a_boolean_is_still_a_boolean_where_one_is_meant():
    text = GOOD.replace("kind: fifo", "kind: sqs\n    fifo: false")
    assert load_scenario_text(text).brokers[0].fifo is False


# --- #2: a cv no floating-point distribution can hold --------------------------------------------


@pytest.mark.parametrize("dist", ["gamma", "pareto", "lognormal", "hyperexponential", "normal"])
def test_a_huge_cv_is_refused_at_its_field(dist):
    message = error_of(GOOD.replace("dist: lognormal, mean: 200ms, cv: 0.8", f"dist: {dist}, mean: 200ms, cv: 1e155"))
    assert message == (f"s.yaml:16: workers.pool.service_time: cv 1e+155 is too large for a {dist} distribution: "
                       "its parameters, variance or draws are not finite positive numbers in floating point")


def test_a_hyperexponential_cv_whose_phases_degenerate_is_refused():
    message = error_of(GOOD.replace("dist: lognormal, mean: 200ms, cv: 0.8", "dist: hyperexponential, mean: 200ms, cv: 1e9"))
    assert "cv 1e+09 is too large for a hyperexponential distribution" in message


def test_a_large_cv_that_floats_hold_is_still_accepted():
    for dist in ("gamma", "pareto", "lognormal"):
        text = GOOD.replace("dist: lognormal, mean: 200ms, cv: 0.8", f"dist: {dist}, mean: 1ms, cv: 1e20")
        assert load_scenario_text(text).workers[0].service_time.cv == 1e20


@pytest.mark.parametrize("args", [
    ("check",), ("run", "-r", "1", "-j", "1"), ("sweep", "--vary", "workers.pool.count=8,9", "-r", "1", "-j", "1"),
    ("capacity", "--vary", "workers.pool.count", "-j", "1"),
])
def test_no_command_crashes_on_a_huge_cv(call, tmp_path, args):
    (tmp_path / "s.yaml").write_text(GOOD.replace("mean: 200ms, cv: 0.8", "mean: 200ms, cv: 1e155").replace("lognormal", "gamma")
                                     + "slo: {latency_p99: 1s}\n")
    code, err = call(args[0], "s.yaml", *args[1:])
    assert code == 2, err
    assert "cv 1e+155 is too large for a gamma distribution" in err


# --- #14: size limits ----------------------------------------------------------------------------


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value) == f"{path}: the file is 1.0 MB; scenario files are limited to {MAX_FILE_BYTES / 1e6:g} MB"


def test_a_file_over_the_value_limit_is_refused_at_its_line():
    text = GOOD + "extra: [" + ", ".join(["1"] * MAX_VALUES) + "]\n"
    assert error_of(text) == (f"s.yaml:17: more than {MAX_VALUES:,} values (an alias counts as all it repeats); "
                              "that is the limit for a scenario file")


def test_the_example_scenarios_are_well_within_the_limits():
    for path in (Path(__file__).resolve().parent.parent / "scenarios").glob("*.yaml"):
        assert path.stat().st_size < MAX_FILE_BYTES / 100
        load_scenario(path)


# --- files that are not YAML text ---------------------------------------------------------------


def test_a_control_character_is_refused_at_its_line(call, tmp_path):
    (tmp_path / "ctl.yaml").write_bytes(b"name: ok\nduration: 1h\n\x07\n")
    code, err = call("check", "ctl.yaml")
    assert code == 2, err
    assert "ctl.yaml:3: not valid YAML: the character #x0007 is not allowed" in err


def test_a_file_that_is_not_utf8_is_refused(call, tmp_path):
    (tmp_path / "utf16.yaml").write_bytes("name: x\n".encode("utf-16"))
    code, err = call("check", "utf16.yaml")
    assert code == 2, err
    assert "utf16.yaml: not UTF-8 text: byte 0xff at offset 0" in err


def test_a_long_set_value_is_shown_short_where_it_is_blamed():
    spec = "workers.nowhere.count=" + "a" * 300
    message = error_of(GOOD, (spec,))
    assert "a" * 100 not in message and "(command line: workers.nowhere.count=aaa" in message
    assert len(message) < 400
