"""Ctrl-C on ``asyncsim run -j 2`` (issue 11, #5): a real process, interrupted as a terminal does
(SIGINT to its whole process group, worker processes included). The run stops at once, keeps and
reports the replications that finished, says so once, exits 130, leaves no process behind, and
prints no traceback, even when Ctrl-C is pressed twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.test_cli import GOOD, asyncsim_executable

LONG = GOOD.replace("name: shop", "name: long").replace("duration: 10m\nwarmup: 1m\nreplications: 4", "duration: 5m\nwarmup: 0s\nreplications: 200") \
    .replace("rate: 30/s", "rate: 200/s").replace("{dist: lognormal, mean: 200ms, cv: 0.8}", "{dist: exponential, mean: 20ms}")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_a_parallel_run_at_once_and_reports_what_finished(tmp_path, presses):
    (tmp_path / "long.yaml").write_text(LONG)
    process = subprocess.Popen([asyncsim_executable(), "run", "long.yaml", "-j", "2"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               env={k: v for k, v in os.environ.items() if k != "ASYNCSIM_DEBUG"})
    time.sleep(6)  # imports, then replications under way (each takes about a second)
    assert process.poll() is None, process.communicate()
    pressed = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    if presses == 2:
        time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    stopped_s = time.monotonic() - pressed

    assert process.returncode == 130, stderr
    assert stopped_s < 10, f"took {stopped_s:.1f}s to stop"
    assert "Traceback" not in stdout + stderr and "Error" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    finished = re.fullmatch(r"interrupted: (\d+) of 200 replications finished|interrupted: no replication finished", lines[0])
    assert finished, lines[0]
    n = int(finished.group(1) or 0)
    assert stdout.startswith(f"long: {n} replication(s) × 5min")
    time.sleep(0.5)
    assert not group_alive(process.pid), "a worker process outlived the run"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="process groups and SIGINT are POSIX")
@pytest.mark.parametrize("verb", [["capacity", "--vary", "workers.pool.count", "--slo", "latency_mean=1s"], ["report", "--out", "reports"]],
                         ids=["capacity", "report"])
def test_ctrl_c_stops_a_capacity_search_or_a_report_in_one_line(tmp_path, verb):
    (tmp_path / "long.yaml").write_text(LONG)
    process = subprocess.Popen([asyncsim_executable(), verb[0], "long.yaml", *verb[1:], "-r", "100", "-j", "2"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               env={k: v for k, v in os.environ.items() if k != "ASYNCSIM_DEBUG"})
    time.sleep(6)
    assert process.poll() is None, process.communicate()
    for _ in range(2):
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.2)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr == "interrupted: stopped before the end, nothing written\n" and "Traceback" not in stdout
    assert not (tmp_path / "reports" / "report.html").exists()
    time.sleep(0.5)
    assert not group_alive(process.pid), "a worker process outlived the run"
