"""Data files (issue 11, #4): a trace's or an empirical distribution's ``file:`` is read only from
the scenario's folder unless allowed (``--allow-path`` on every verb that loads a scenario, or
``ASYNCSIM_ALLOW_PATH``), and no error ever shows a data file's text."""

from __future__ import annotations

import os
import sys

import pytest
from typer.testing import CliRunner

from sim import ScenarioError, load_scenario
from sim.cli import app, main
from sim.datafiles import ALLOW_ENV
from tests.test_cli import GOOD

SECRET = "SECRET-TOKEN-4d1f"

SCENARIO = GOOD.replace("duration: 10m\nwarmup: 1m\nreplications: 4", "duration: 1m\nwarmup: 0s\nreplications: 2") \
    .replace("rate: 30/s", "rate: 5/s").replace("count: 8", "count: 2") \
    .replace("{dist: lognormal, mean: 200ms, cv: 0.8}", "{dist: empirical, file: FILE, unit: 1ms}")
FILE_LINE = 17


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """``project/s.yaml`` and ``elsewhere/`` holding a CSV with a secret header and good values."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "times.csv").write_text(f"{SECRET}\n100\n200\n")

    def scenario(file: str) -> str:
        path = tmp_path / "project" / "s.yaml"
        path.write_text(SCENARIO.replace("FILE", file))
        return str(path)

    return tmp_path, scenario


def error_of(path: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    return str(caught.value)


@pytest.mark.parametrize("file", ["../elsewhere/times.csv", "ABSOLUTE"])
def test_a_data_file_outside_the_scenarios_folder_is_refused_at_its_line(layout, file):
    root, scenario = layout
    path = scenario(file.replace("ABSOLUTE", str(root / "elsewhere" / "times.csv")))
    message = error_of(path)
    assert f"{path}:{FILE_LINE}: workers.pool.service_time.file: " in message
    assert "is outside the scenario's folder" in message and "--allow-path" in message and ALLOW_ENV in message
    assert SECRET not in message


def test_a_symbolic_link_inside_the_folder_to_a_file_outside_is_refused(layout):
    root, scenario = layout
    (root / "project" / "link.csv").symlink_to(root / "elsewhere" / "times.csv")
    assert "is outside the scenario's folder" in error_of(scenario("link.csv"))


def test_a_file_below_the_scenarios_folder_is_read(layout):
    root, scenario = layout
    (root / "project" / "data").mkdir()
    (root / "project" / "data" / "t.csv").write_text("t\n100\n300\n")
    spec = load_scenario(scenario("data/t.csv")).workers[0].service_time
    assert sorted(spec.values_s().tolist()) == pytest.approx([0.1, 0.3])


def test_the_environment_variable_allows_a_folder(layout, monkeypatch):
    root, scenario = layout
    path = scenario("../elsewhere/times.csv")
    monkeypatch.setenv(ALLOW_ENV, os.pathsep.join(["/nonexistent", str(root / "elsewhere")]))
    # the header is not a number, so the values are the two below it
    assert sorted(load_scenario(path).workers[0].service_time.values_s().tolist()) == pytest.approx([0.1, 0.2])


VERBS = [["check"], ["run", "-r", "2", "-j", "1", "--json"], ["sweep", "--vary", "workers.pool.count=2,3", "-r", "2", "-j", "1", "--json"],
         ["capacity", "--vary", "workers.pool.count", "--slo", "latency_mean=1s", "-r", "2", "-j", "1", "--no-headroom", "--json"],
         ["report", "-r", "2", "-j", "1", "--out", "reports", "--format", "md"]]


@pytest.mark.parametrize("verb", VERBS, ids=[v[0] for v in VERBS])
def test_every_verb_that_loads_a_scenario_refuses_the_path_and_allows_it_with_allow_path(layout, verb):
    root, scenario = layout
    path = scenario("../elsewhere/times.csv")
    runner = CliRunner()
    refused = runner.invoke(app, [verb[0], path, *verb[1:]])
    assert refused.exit_code != 0
    assert "outside the scenario's folder" in (refused.output + str(refused.exception))
    allowed = runner.invoke(app, [verb[0], path, *verb[1:], "--allow-path", str(root / "elsewhere")])
    assert allowed.exit_code == 0, allowed.output
    assert SECRET not in allowed.output


def test_allow_path_lasts_one_command(layout, monkeypatch, capsys):
    root, scenario = layout
    path = scenario("../elsewhere/times.csv")
    monkeypatch.setattr(sys, "argv", ["asyncsim", "check", path, "--allow-path", str(root / "elsewhere")])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    assert "is outside the scenario's folder" in error_of(path)


def test_check_names_allow_path_in_every_verbs_help():
    runner = CliRunner()
    for verb in ("check", "run", "sweep", "capacity", "report"):
        assert "--allow-path" in runner.invoke(app, [verb, "--help"], terminal_width=200).output, verb


# --- no error shows the file's text -------------------------------------------------------------


@pytest.mark.parametrize("content, column, wanted", [
    (f"{SECRET}\n100\n", "missing", "data.csv:1: the header has no column 'missing' (1 columns)"),
    (f"{SECRET}\nnot-a-number\n", None, "data.csv: the first column holds no numbers"),
    (f"{SECRET},x\n1,2\n".encode() + b"\xff\n", None, "data.csv:3: not UTF-8 text (byte "),
    ("", None, "data.csv:1: no header line"),
    (f"{SECRET}\n{'1' * 200_000}\n", None, "data.csv:2: not a CSV line (field larger than field limit"),
], ids=["no column", "no numbers", "not utf-8", "empty", "huge field"])
def test_an_error_in_a_data_file_names_the_file_and_line_never_its_text(tmp_path, content, column, wanted):
    data = tmp_path / "data.csv"
    if isinstance(content, bytes):
        data.write_bytes(content)
    else:
        data.write_text(content)
    spec = "{dist: empirical, file: data.csv" + (f", column: {column}" if column else "") + "}"
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.replace("{dist: empirical, file: FILE, unit: 1ms}", spec))
    message = error_of(str(path))
    assert f"{path}:{FILE_LINE}: workers.pool.service_time: " in message
    assert wanted in message
    assert SECRET not in message


def test_a_password_file_is_neither_read_nor_quoted(layout):
    _, scenario = layout
    message = error_of(scenario("/etc/passwd"))
    assert "is outside the scenario's folder" in message
    assert "root:" not in message
