"""One command line (issue 11): the same option means the same in every command, the help has no
type placeholders and describes every option, and the figures printed use the table's units."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sim.cli import app
from sim.cli.common import Failed
from sim.cli.summary import slo_texts

QUICKSTART = str(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml")
WEBHOOK = str(Path(__file__).resolve().parents[1] / "scenarios" / "webhook-capacity.yaml")
VERBS = ["run", "check", "schema", "validate", "sweep", "capacity", "report"]
WITH_SCENARIO = {"run", "check", "sweep", "capacity", "report"}
SHORT = ["--set", "duration=2m", "--set", "warmup=10s", "-j", "1"]


def code_of(result) -> int:
    return result.exception.code if isinstance(result.exception, Failed) else result.exit_code


def options_of(verb: str) -> dict[str, typer.core.click.Option]:
    command = typer.main.get_command(app).commands[verb]
    return {name: param for param in command.params for name in param.opts if name.startswith("--")}


@pytest.mark.parametrize("verb", VERBS)
def test_the_help_has_no_type_placeholders_and_describes_every_option(verb):
    text = CliRunner().invoke(app, [verb, "--help"], terminal_width=200).output
    assert "<bool>" not in text and "<list" not in text and "<str>" not in text and "<int" not in text
    for name, option in options_of(verb).items():
        assert option.help, f"{verb} {name} has no description"
    if verb in WITH_SCENARIO:
        assert "SCENARIO" in text.splitlines()[0]


def test_version_has_no_placeholder():
    assert "<bool>" not in CliRunner().invoke(app, ["--help"]).output


@pytest.mark.parametrize("option", ["--set", "--slo", "--seed", "-r", "--jobs", "--cluster", "--allow-path", "--out", "--json", "--vary", "--force"])
def test_an_option_reads_the_same_in_every_command_that_has_it(option):
    found = {}
    for verb in VERBS:
        command = typer.main.get_command(app).commands[verb]
        for param in command.params:
            if option in param.opts:
                found[verb] = param
    assert len(found) >= 2 or option == "--vary", found
    metavars = {param.metavar for param in found.values() if param.metavar is not None and option != "--vary"}
    assert len(metavars) <= 1, (option, metavars)
    if option == "--out":
        assert set(found) == {"run", "sweep", "report"} and metavars == {"DIR"}


def test_report_out_is_a_folder_as_in_run_and_sweep(tmp_path):
    runner = CliRunner()
    looks_like_a_file = runner.invoke(app, ["report", QUICKSTART, "--out", str(tmp_path / "r.html"), "-r", "2", *SHORT])
    assert looks_like_a_file.exit_code == 2 and "--out names a folder" in " ".join(looks_like_a_file.output.split())
    written = runner.invoke(app, ["report", QUICKSTART, "--out", str(tmp_path / "review"), "--format", "md", "-r", "2", *SHORT])
    assert written.exit_code == 0, written.output
    assert (tmp_path / "review" / "report.md").exists()
    as_json = runner.invoke(app, ["report", QUICKSTART, "--out", str(tmp_path / "json"), "--json", "-r", "2", *SHORT])
    assert as_json.exit_code == 0, as_json.output
    printed = json.loads(as_json.stdout)
    assert printed["report"] == str(tmp_path / "json" / "report.html") and printed["summary"]["replications"] == 2


def test_capacity_and_report_take_a_range_as_sweep_writes_it(tmp_path):
    result = CliRunner().invoke(app, ["capacity", WEBHOOK, "--vary", "workers.handler.count=12..13", "--no-headroom", "-r", "2", *SHORT])
    assert code_of(result) in (0, 1), result.output
    searched = set(re.findall(r"workers\.handler\.count=(\d+)", result.output))
    assert searched and searched <= {"12", "13"}
    report = CliRunner().invoke(app, ["report", WEBHOOK, "--vary", "workers.handler.count=12..13", "--no-headroom", "--format", "md",
                                      "--out", str(tmp_path), "-r", "2", *SHORT])
    assert code_of(report) in (0, 1), report.output
    assert "--vary workers.handler.count=12..13" in (tmp_path / "report.md").read_text()
    listed = CliRunner().invoke(app, ["capacity", WEBHOOK, "--vary", "workers.handler.count=8,12"])
    assert listed.exit_code == 2 and "give PATH or PATH=LOW..HIGH" in " ".join(listed.output.split())


def test_run_and_sweep_take_slo_objectives_like_capacity_and_report():
    result = CliRunner().invoke(app, ["run", QUICKSTART, "-r", "2", "--json", "--slo", "latency_p99=500ms", *SHORT])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["slo"]["latency_p99"]["target"] == 0.5
    bad = CliRunner().invoke(app, ["sweep", QUICKSTART, "--vary", "workers.renderer.count=8,9", "--slo", "latency_p98=1s"])
    assert bad.exit_code == 2 and "unknown objective 'latency_p98'" in bad.output


def test_slo_lines_are_in_the_units_of_the_table():
    latency = {"target": 0.5, "mean": 0.8434, "ci95": [0.432, 1.255]}
    assert slo_texts("latency_p99", latency) == ("500 ms", "843.4 ms", "[432, 1255] ms")
    loss = {"target": 0.01, "mean": 0.002, "ci95": [0.001, 0.003]}
    assert slo_texts("max_loss_rate", loss) == ("1%", "0.2%", "[0.1, 0.3]%")
    throughput = {"target": 20.0, "mean": 30.1, "ci95": [29.4, 30.8]}
    assert slo_texts("min_throughput", throughput) == ("20/s", "30.1/s", "[29.4, 30.8]/s")
