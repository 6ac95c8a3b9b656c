"""A real Celery worker on a real Redis against models/celery_kombu.py: a countdown longer than
the visibility timeout runs once per restore the unacked-index scans make before the ETA, all
copies at the ETA.

Each case starts its own ``redis-server`` on a free port and a worker (``celery worker --pool solo
--concurrency 1 --without-mingle``) of a one-task app whose task appends the time it runs to a
file, and watches Redis with MONITOR for the worker's scans of the unacked index (``ZRANGE
unacked_index … BYSCORE REV``, redis-py 5+'s ZREVRANGEBYSCORE). Time 0 is the worker's second scan,
the first of its periodic series: the first, when it connects (``on_poll_init``), is made on
whichever channel a set yields first, and its own throttle counter, so the periodic scans that
follow start either ``unacked_restore_interval`` × ``unacked_restore_throttle`` or only
``unacked_restore_interval`` later (kombu 5.7, ``MultiChannelPoller.on_poll_init`` and
``maybe_restore_messages``; the model scans at its start and every interval × throttle, so its
phase is the first case's). Half a second after time 0 one task is sent with a countdown; when the
ETA has passed, the lines in the file are the real runs. The same task sent at the same time to
the model (a worker starting at 0, in a bare SimPy environment) gives the model's runs.

Needs ``redis-server`` on PATH and the ``celery`` and ``redis`` packages, which are not
dependencies of asyncsim; skipped otherwise. About a minute for the four cases."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import simpy

from models.celery import Caller, TaskLedger, TaskType
from models.celery_kombu import KombuRedisTransport
from models.celery_worker import CeleryWorker
from models.fates import Fates
from models.redis_list import RedisList
from tests.models.conftest import Counts, FakeObserver, Level
from tests.models.drive import constant
from tests.models.test_celery import Times

MISSING = [name for name in ("celery", "redis") if importlib.util.find_spec(name) is None]
if shutil.which("redis-server") is None:
    MISSING.append("redis-server (not on PATH)")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bool(MISSING), reason=f"a real Celery on Redis needs {', '.join(MISSING)}")]

SENT_AFTER_TIME_0_S = 0.5
TOLERANCE_S = 0.4
"""How far a real run or scan may be from the model's: process start-up, BRPOP round trips and
the event loop's timer lateness, a few tens of milliseconds in practice."""

APP = """
import time
from celery import Celery

app = Celery("realapp", broker="redis://127.0.0.1:{port}/0")
app.conf.broker_transport_options = {options!r}
app.conf.broker_connection_retry_on_startup = True


@app.task
def remind():
    with open({runs!r}, "a") as runs:
        runs.write(f"{{time.time()}}\\n")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout_s} s")


class Scans:
    """The worker's scans of the unacked index, seen through Redis MONITOR (wall-clock times)."""

    def __init__(self, client):
        self.times_s: list[float] = []
        self.brpop_s: list[float] = []
        """When the worker asked for tasks (BRPOP on the ``celery`` list)."""
        self.monitor = client.monitor()
        self.connection = self.monitor.__enter__()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        try:
            for command in self.connection.listen():
                text = command["command"]
                if "unacked_index" in text and ("ZREVRANGEBYSCORE" in text or "BYSCORE" in text):
                    self.times_s.append(float(command["time"]))
                elif text.startswith("BRPOP celery"):
                    self.brpop_s.append(float(command["time"]))
        except Exception:  # the connection is closed when the case ends
            return


def real_runs(tmp_path: Path, countdown_s: float, options: dict, wait_s: float):
    """When one task sent with ``countdown_s`` was sent, when the worker scanned and when the task
    ran, in s after time 0 (the worker's first periodic scan; its start-up scan is before)."""
    import redis
    port, runs = free_port(), tmp_path / "runs.txt"
    (tmp_path / "realapp.py").write_text(APP.format(port=port, options=options, runs=str(runs)))
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        client = redis.Redis(port=port)
        wait_for(lambda: _pings(client), 10, "redis-server")
        scans = Scans(client)
        env = dict(os.environ, PYTHONPATH=str(tmp_path))
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "realapp", "worker", "--pool", "solo", "--concurrency", "1",
                                   "--without-mingle", "--loglevel", "WARNING"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time_0 = wait_for(lambda: scans.times_s[1:2], 30, "second scan of the unacked index")[0]
        wait_for(lambda: scans.brpop_s, 10, "BRPOP from the worker")
        time.sleep(max(0.0, time_0 + SENT_AFTER_TIME_0_S - time.time()))
        sys.path.insert(0, str(tmp_path))
        try:
            from realapp import app
            sent = time.time()
            app.send_task("realapp.remind", countdown=countdown_s)
            app.pool.force_close_all()
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("realapp", None)
        time.sleep(max(0.0, sent + wait_s - time.time()))
        ran = [float(line) - time_0 for line in runs.read_text().split()] if runs.exists() else []
        return sent - time_0, [t - time_0 for t in scans.times_s], ran
    finally:
        for process in (worker, server):
            if process is not None:
                process.kill()
                process.wait()


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False


def model_runs(sent_s: float, countdown_s: float, visibility_s: float, interval_s: float, throttle: int, until_s: float):
    """Scan times and run times of the same task in the model: a worker starting at 0 that
    scans as kombu does, one child, the default prefetch multiplier."""
    env = simpy.Environment()
    observer = FakeObserver()
    fates = Fates(observer)
    broker = RedisList(env, "q", Level(), Counts(), fates)
    transport = KombuRedisTransport(env, broker, Counts(), visibility_s, interval_s, throttle)
    ledger = TaskLedger()
    remind = TaskType("remind", "q", constant(0.0), Level(), Level(), Level(), Level(), Level(), Counts(), countdown=constant(countdown_s))
    CeleryWorker(env, "worker", transport, 1, 4, fates, ledger, Level(), Counts(), scanner=transport.scans)
    Caller(env, remind, Times(sent_s), transport, fates, ledger)
    env.run(until=until_s)
    scans = [k * transport.scan_period_s for k in range(int(until_s // transport.scan_period_s) + 1)]
    return scans, [t for _, t in observer.fates("processed")], transport.counts["restored"]


@pytest.mark.parametrize("countdown_s, visibility_s, interval_s, throttle", [
    (3, 5, 1, 2),     # countdown shorter than the timeout: one run
    (8, 5, 1, 2),     # just over: restored at the scan at 6 s, two runs at the ETA
    (20, 5, 1, 2),    # several timeouts: restored at 6, 12 and 18 s, four runs
    (14, 5, 2, 1),    # throttle 1, scans every 2 s: restored at 6 and 12 s, three runs
])
def test_a_real_worker_runs_a_countdown_as_often_and_when_the_model_says(tmp_path, countdown_s, visibility_s, interval_s, throttle):
    options = {"visibility_timeout": visibility_s, "unacked_restore_interval": interval_s, "unacked_restore_throttle": throttle}
    sent, real_scans, real = real_runs(tmp_path, countdown_s, options, wait_s=countdown_s + 3)
    scans, model, restored = model_runs(sent, countdown_s, visibility_s, interval_s, throttle, until_s=sent + countdown_s + 3)
    print(f"\ncountdown {countdown_s} s, V {visibility_s} s, scans every {interval_s} s x {throttle}; sent at {sent:.3f} s")
    print("real scans:", [round(t, 3) for t in real_scans])
    print("real runs: ", [round(t, 3) for t in real])
    print(f"model runs: {[round(t, 3) for t in model]} ({restored} restores)")
    assert len(real) == len(model), (real, model)
    assert all(abs(r - m) < TOLERANCE_S for r, m in zip(sorted(real), model)), (real, model)
    periodic = [t for t in real_scans if t > -TOLERANCE_S]
    assert len(periodic) >= len(scans) - 1 and all(abs(r - m) < TOLERANCE_S for r, m in zip(periodic, scans)), (real_scans, scans)
