"""``task_queues:`` Celery apps run end to end: waits against the M/M/c queue, losses to worker
crashes against 1 − exp(−S/M), the flows ``asyncsim check`` shows, and the scenario errors."""

import math
import re
import sys

import pytest

from sim import analytic, load_scenario, run, scenario_from_dict
from sim.cli import main
from sim.problems import ScenarioError
from sim.sketch import RELATIVE_ACCURACY
from sim.stats import mean_ci
from sim.topology import broker_flows


def app(tasks, workers, broker=None, duration=4000, warmup=200, **settings):
    return {
        "name": "celery", "seed": 3, "duration": duration, "warmup": warmup,
        "brokers": [broker or {"name": "q", "kind": "redis"}],
        "task_queues": [{"name": "app", "tasks": tasks, "workers": workers}],
        **settings,
    }


def task(name="t", rate=6.0, run_time=None, **options):
    return {"name": name, "queue": "q", "arrivals": {"process": "poisson", "rate": rate},
            "run_time": run_time or {"dist": "exponential", "mean": 0.5}, **options}


def group(**options):
    return {"name": "w", "consumes": "q", "concurrency": 4, **options}


@pytest.mark.slow
@pytest.mark.parametrize("multiplier", [1, 4])
def test_one_workers_tasks_wait_as_in_an_mmc_queue_whatever_the_prefetch(multiplier):
    """One worker of 4 children, Poisson 6/s, exponential runs of 0.5 s: M/M/4 at ρ = 0.75. The
    children take reserved tasks in order, so whether a task waits in Redis or in the worker's
    buffer, its wait (queue + reserved) is M/M/4's Wq; the prefetch only moves it."""
    exact = analytic.mmc(6.0, 2.0, 4)
    result = run(scenario_from_dict(app([task()], [group(prefetch_multiplier=multiplier)])), replications=8, seed=11)
    at = "task_queues.app.tasks.t"
    waits = [r.metrics[f"{at}.queue_wait_s.mean"] + r.metrics[f"{at}.reserved_s.mean"] for r in result.results]
    wait = mean_ci(waits)
    assert wait.contains(exact.wait_s), (exact.wait_s, wait)
    assert result.estimate(f"{at}.latency_s.mean").contains(exact.sojourn_s)
    in_broker, in_worker = result.estimate(f"{at}.queue_wait_s.mean").mean, result.estimate(f"{at}.reserved_s.mean").mean
    if multiplier == 4:  # 16 reserved: almost all the wait is in the worker
        assert in_broker < 0.05 * in_worker
    else:  # early ack, 4 reserved at most: the longer waits spill into Redis
        assert in_broker > 0.1 * in_worker
    assert result.ok


def rabbit(prefetch):
    return {"name": "q", "kind": "rabbitmq", "prefetch_count": prefetch}


@pytest.mark.slow
def test_early_ack_loses_a_running_task_with_probability_one_minus_exp_of_minus_s_over_m():
    """One child, runs of S = 1 s, worker crashes at MTBF M = 20 s (exponential: no memory), on
    RabbitMQ, which requeues what a dead consumer had not acknowledged: a task acknowledged as
    it starts is lost if a crash comes within S, so 1 − exp(−1/20) of the runs are lost."""
    expected = 1 - math.exp(-1.0 / 20.0)
    crashes = {"mtbf": "20s", "restart_time": "1s"}
    spec = app([task(rate=0.5, run_time="1s")], [group(concurrency=1, crashes=crashes)], broker=rabbit(4), duration=20_000)
    result = run(scenario_from_dict(spec), replications=8, seed=5)
    at = "task_queues.app.tasks.t"
    fractions = [r.metrics[f"{at}.lost"] / (r.metrics[f"{at}.lost"] + r.metrics[f"{at}.succeeded"]) for r in result.results]
    lost = mean_ci(fractions)
    assert lost.contains(expected), (expected, lost)
    assert lost.half_width < 0.15 * expected
    assert result.estimate(f"{at}.reruns").mean == 0
    assert result.ok


def test_acks_late_loses_nothing_to_worker_crashes_but_runs_the_interrupted_tasks_again():
    crashes = {"mtbf": "20s", "restart_time": "1s"}
    spec = app([task(rate=0.5, run_time="1s", acks_late=True)], [group(concurrency=1, crashes=crashes)], broker=rabbit(4), duration=3000)
    result = run(scenario_from_dict(spec), replications=2, seed=5)
    at = "task_queues.app.tasks.t"
    assert result.estimate(f"{at}.lost").mean == 0
    assert result.estimate("system.lost_rate").mean == 0
    reruns = result.estimate(f"{at}.reruns").mean
    crashes_seen = result.estimate("task_queues.app.workers.w.crashes").mean
    # crashes come as a Poisson process, so about half find the child running (0.5/s × 1 s busy)
    assert 0.3 * crashes_seen < reruns < 0.7 * crashes_seen
    assert result.ok


def test_a_short_task_waits_behind_long_ones_on_a_shared_queue_and_not_on_its_own():
    one = app([task("long", rate=1.0, run_time={"dist": "exponential", "mean": 2.0}), task("short", rate=10.0, run_time="20ms")],
              [group(count=2, concurrency=2)], duration=1500)
    two = dict(one, brokers=[{"name": "q", "kind": "redis"}, {"name": "q2", "kind": "redis"}])
    two["task_queues"] = [{"name": "app", "tasks": [one["task_queues"][0]["tasks"][0], {**one["task_queues"][0]["tasks"][1], "queue": "q2"}],
                           "workers": [group(count=1, concurrency=3), {"name": "w2", "consumes": "q2", "concurrency": 1}]}]
    shared, split = (run(scenario_from_dict(s), replications=2, seed=1) for s in (one, two))
    key = "task_queues.app.tasks.short.latency_s.mean"
    assert shared.estimate(key).mean > 10 * split.estimate(key).mean
    assert shared.ok and split.ok


def test_check_counts_each_apps_tasks_and_worker_children_on_their_queues():
    spec = scenario_from_dict(app([task("a", rate=2.0), task("b", rate=2.0, run_time="1500ms")], [group(count=2)]))
    flow = broker_flows(spec)["q"]
    # 4/s offered; 8 children at a mean run time of (0.5 + 1.5) / 2 = 1 s
    assert (flow.arrival_rate_per_s, flow.service_capacity_per_s, flow.servers) == (4.0, 8.0, 8)
    assert flow.consumers == ("app.w",)


def test_asyncsim_check_prints_the_offered_load_of_a_celery_queue(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["asyncsim", "check", "scenarios/celery-one-queue.yaml"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("celery "))
    assert row.split()[1:] == ["22.4/s", "30.9/s", "8", "0.725", "no"]


def problems_of(spec) -> str:
    with pytest.raises(ScenarioError) as raised:
        scenario_from_dict(spec)
    return str(raised.value)


def test_an_app_whose_workers_cannot_keep_up_is_refused():
    assert "unstable: offered load 10/s ≥ capacity 8/s (4 servers of app.w (8/s); utilisation would be 1.25)" in problems_of(app([task(rate=10.0)], [group()]))


def test_unknown_queues_and_queues_no_worker_consumes_are_named_with_their_line():
    text = problems_of(app([task(), {**task("u"), "queue": "qq"}], [group(), {"name": "x", "consumes": "nope", "concurrency": 1}]))
    assert re.search(r"<dict>:\d+: task_queues\.app\.tasks\.1\.queue: 'qq' is not a broker \(did you mean 'q'\?\)", text)
    assert "task_queues.app.workers.1.consumes: 'nope' is not a broker" in text
    orphan = app([task()], [group()], brokers=[{"name": "q", "kind": "redis"}, {"name": "idle", "kind": "redis"}])
    orphan["task_queues"][0]["tasks"].append({**task("v"), "queue": "idle"})
    assert "task_queues.app.tasks.1.queue: no worker of app consumes 'idle'" in problems_of(orphan)


def test_a_celery_queue_carries_its_apps_tasks_only():
    spec = app([task()], [group()], producers=[{"name": "web", "arrivals": {"process": "poisson", "rate": 1.0}, "sends_to": "q"}])
    assert "'web' also uses the queue 'q', which carries app's tasks only" in problems_of(spec)


def test_task_and_worker_group_names_are_unique_in_an_app():
    assert "the name 't' is given to more than one task, worker group or reader" in problems_of(app([task(), task()], [group()]))


@pytest.mark.parametrize("visibility, copies", [("1000s", 8), ("1h", 2), ("3h", 1)])
def test_every_reminder_runs_once_per_copy_the_visibility_scans_restore_before_its_eta(visibility, copies):
    """countdown 2 h on Redis, two workers scanning at 0, 100, 200… s. A task delivered at a is
    restored at the first scan s₁ ≥ a + V, delivered again at once, restored again at s₁ + V
    (a scan time too), and so on before a + 2 h: with V = 1000 s, s₁ - a lies in [1000, 1100),
    so 7 restores and 8 runs for every task; with V = 1 h, one restore; with V = 3 h, none."""
    reminder = {**task("remind", rate=60 / 3600, run_time="200ms"), "countdown": "2h"}
    spec = app([reminder], [group(count=2)], duration=6 * 3600, warmup=600)
    spec["task_queues"][0]["broker_transport_options"] = {"visibility_timeout": visibility}
    result = run(scenario_from_dict(spec), replications=2, seed=2)
    assert result.estimate("system.duplicates_rate").mean == copies - 1
    assert result.estimate("system.lost_rate").mean == 0
    assert result.ok


def test_the_redelivery_loop_scenario_runs_each_reminder_three_times_and_its_fix_once():
    loop, fixed = (run(load_scenario(f"scenarios/celery-eta-redelivery-{name}.yaml"), replications=2, seed=1)
                   for name in ("loop", "fixed"))
    assert loop.estimate("system.duplicates_rate").mean == 2 and fixed.estimate("system.duplicates_rate").mean == 0
    assert loop.estimate("task_queues.signup.transports.celery.restored").mean > 0
    assert fixed.estimate("task_queues.signup.transports.celery.restored").mean == 0


@pytest.mark.parametrize("version, queue_type, restart, closes, exits", [("4.2", "classic", "10s", 5, 5), ("4.2", "classic", "70s", 4, 4),
                                                                    ("4.3", "quorum", "70s", 5, 0)])
def test_a_countdown_past_rabbitmqs_consumer_timeout_ends_the_workers_consumer_again_and_again(version, queue_type, restart, closes, exits):
    """A reminder every hour (countdown 1000 s), consumer_timeout 2 min checked every minute: the
    broker ends the consumer holding it at the first check more than 120 s after its delivery, and
    it runs once, at its ETA. Up to 4.2 the channel is closed: by Celery's default the worker
    exits and is back after the supervisor's restart time R, when it gets the reminder again:
    with R = 10 s closes at t + 180, 360, 540, 720, 900 (5); with R = 70 s at t + 180, 420, 660,
    900 (4). On a 4.3 quorum queue the consumer is cancelled, a recoverable error: the worker
    reconnects at once, closes at t + 180, 360, 540, 720, 900, and never exits. Nine reminders
    between 30 min and 10 h."""
    remind = {"name": "remind", "queue": "q", "beat": {"every": "1h"}, "countdown": "1000s", "run_time": "1s"}
    broker = {**rabbit(4), "consumer_timeout": "2m", "version": version, "queue_type": queue_type}
    workers = [group(concurrency=1, supervisor_restart_time=restart)]
    result = run(scenario_from_dict(app([remind], workers, broker=broker, duration="10h", warmup="30m")), replications=1, seed=1)
    at = "task_queues.app.tasks.remind"
    assert result.estimate(f"{at}.sent").mean == result.estimate(f"{at}.runs").mean == 9
    assert result.estimate(f"{at}.redelivered").mean == result.estimate("brokers.q.consumer_timeouts").mean == closes * 9
    assert result.estimate("task_queues.app.workers.w.exits").mean == exits * 9
    assert result.estimate(f"{at}.duplicates").mean == 0


def test_a_rate_limit_r_on_k_workers_caps_their_throughput_at_k_r():
    """10/s offered to 2 workers whose task has rate_limit 2/s (each could run 40/s): the bounded
    Redis list refuses the rest; the check counts the limit as the pool's capacity."""
    limited = {**task(rate=10.0, run_time="50ms"), "rate_limit": "2/s"}
    spec = app([limited], [group(count=2)], broker={"name": "q", "kind": "redis", "max_messages": 50}, duration=2000)
    assert broker_flows(scenario_from_dict(spec))["q"].service_capacity_per_s == 4.0
    result = run(scenario_from_dict(spec), replications=2, seed=4)
    assert result.estimate("task_queues.app.tasks.t.throughput_per_s").mean == pytest.approx(4.0, rel=0.002)
    assert result.estimate("system.rejected_rate").mean == pytest.approx(0.6, abs=0.01)
    assert result.ok


@pytest.mark.slow
def test_retries_run_a_task_1_plus_p_plus_p2_plus_p3_times_and_fail_it_for_good_with_probability_p4():
    """Each run fails with p = 0.3; max_retries 3: a task runs (1 − p⁴)/(1 − p) times on average
    and fails for good after its fourth failure, with probability p⁴ = 0.0081."""
    p = 0.3
    retried = {**task(rate=5.0, run_time={"dist": "exponential", "mean": 0.2}),
               "autoretry": {"failure_probability": p, "default_retry_delay": "2s"}}
    result = run(scenario_from_dict(app([retried], [group()], duration=12_000)), replications=10, seed=8)
    at = "task_queues.app.tasks.t"
    runs = mean_ci([r.metrics[f"{at}.runs"] / r.metrics[f"{at}.sent"] for r in result.results])
    failed = mean_ci([r.metrics[f"{at}.failed"] / r.metrics[f"{at}.sent"] for r in result.results])
    assert runs.contains((1 - p**4) / (1 - p)), runs
    assert failed.contains(p**4), failed
    assert result.estimate("system.lost_rate").contains(p**4)
    assert result.ok


def beat_task(every, run_time, schedulers=1):
    return {"name": "report", "queue": "q", "beat": {"every": every, "schedulers": schedulers}, "run_time": run_time}


def test_beat_overlaps_a_run_still_in_progress_with_the_probability_derived_from_the_run_times():
    """Beat every T = 60 s, runs exponential of mean 60 s, 16 children (a run starts at its tick).
    The run started k ticks earlier is still in progress with probability exp(−kT/m), so a start
    overlaps another run with probability 1 − Π (1 − e^(−k)) ≈ 0.496."""
    expected = 1 - math.prod(1 - math.exp(-k) for k in range(1, 60))
    spec = app([beat_task("60s", {"dist": "exponential", "mean": 60})], [group(concurrency=16)], duration=30_000)
    result = run(scenario_from_dict(spec), replications=8, seed=3)
    at = "task_queues.app.tasks.report"
    overlaps = mean_ci([r.metrics[f"{at}.overlaps"] / r.metrics[f"{at}.runs"] for r in result.results])
    assert overlaps.contains(expected), (expected, overlaps)
    assert result.estimate(f"{at}.sent").mean == (30_000 - 200) // 60  # one tick a minute, the first one minute in
    assert result.ok


def test_a_second_beat_scheduler_sends_every_periodic_task_twice():
    result = run(load_scenario("scenarios/celery-nightly-report.yaml", ["duration=8d"]), replications=2, seed=1)
    at = "task_queues.reports.tasks.nightly_report"
    assert result.estimate(f"{at}.sent").mean == 2 * result.estimate(f"{at}.beat_duplicates").mean > 0
    assert result.estimate(f"{at}.runs").mean == result.estimate(f"{at}.sent").mean
    assert result.ok
    fixed = run(load_scenario("scenarios/celery-nightly-report.yaml", ["duration=8d", "task_queues.reports.tasks.nightly_report.beat.schedulers=1"]),
                replications=2, seed=1)
    assert fixed.estimate(f"{at}.beat_duplicates").mean == 0 and fixed.estimate(f"{at}.sent").mean == result.estimate(f"{at}.sent").mean / 2


def test_a_crontab_beat_sends_at_its_minute_of_each_hour_whenever_its_schedulers_started():
    """Every hour at :15 over a window from 1 h to 3 d: 71 sends by each scheduler, the second
    one (started at 00:20) sending at the same times as the first."""
    report = {"name": "report", "queue": "q", "beat": {"crontab": {"minute": 15}, "started_at": [0, "20m"]}, "run_time": {"dist": "deterministic", "value": 60}}
    result = run(scenario_from_dict(app([report], [group()], duration="3d", warmup="1h")), replications=1, seed=1)
    at = "task_queues.app.tasks.report"
    assert result.estimate(f"{at}.sent").mean == 2 * 71 and result.estimate(f"{at}.beat_duplicates").mean == 71
    assert result.estimate(f"{at}.overlaps").mean == 71


def test_a_beat_gives_every_or_crontab_and_a_start_time_for_each_scheduler():
    for beat, message in (({"every": "1h", "crontab": {"minute": 0}}, "give either every (an interval) or crontab"),
                          ({}, "give either every (an interval) or crontab"),
                          ({"every": "1h", "schedulers": 3, "started_at": [0, 60]}, "started_at gives 2 start times for 3 schedulers"),
                          ({"crontab": {"minute": 60}}, "minute")):
        spec = app([{"name": "report", "queue": "q", "beat": beat, "run_time": {"dist": "deterministic", "value": 1}}], [group()])
        assert message in problems_of(spec), beat


def test_a_crontab_of_quarter_hours_in_office_hours_on_weekdays_sends_36_a_weekday():
    """minute */15, hour 9-17, mon-fri, over Monday to Wednesday (the simulation starts on a Monday
    at 00:00): 3 × 36 sends; the check counts 180 a week."""
    office = {"minute": "*/15", "hour": "9-17", "day_of_week": "mon-fri"}
    report = {"name": "report", "queue": "q", "beat": {"crontab": office}, "run_time": "1m"}
    spec = scenario_from_dict(app([report], [group()], duration="3d", warmup="1h"))
    assert broker_flows(spec)["q"].arrival_rate_per_s == pytest.approx(180 / (7 * 86400))
    result = run(spec, replications=1, seed=1)
    assert result.estimate("task_queues.app.tasks.report.sent").mean == 3 * 36
    assert result.ok


def test_a_bad_crontab_field_is_named_with_its_line(tmp_path):
    text = """name: c
duration: 1h
brokers: [{name: q, kind: redis}]
task_queues:
  - name: app
    tasks:
      - name: report
        queue: q
        beat:
          crontab:
            minute: "*/15"
            hour: 9-25
        run_time: 1s
    workers: [{name: w, consumes: q, concurrency: 1}]
"""
    path = tmp_path / "cron.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert f"{path}:12: task_queues.app.tasks.report.beat.crontab.hour: hour: 25 is outside 0–23" in str(raised.value)


def test_a_task_gives_either_arrivals_or_beat():
    both = {**task(), "beat": {"every": "1h"}}
    assert "give either arrivals (calls from the application) or beat (a periodic task)" in problems_of(app([both], [group()]))


@pytest.mark.parametrize("poll, extra_s", [(None, 0.0), ("100ms", 0.05)])
def test_the_latency_a_waiting_caller_sees_adds_half_a_poll_interval_to_the_tasks_outcome(poll, extra_s):
    """The child writes each result in 50 ms after the run, and the task's outcome is then: get()
    sees it at once; polling every 100 ms from the call finds it at the next poll, on average half
    an interval later (the latencies, of mean about 1 s, spread smoothly over many intervals)."""
    waited = {**task(), "poll_interval": poll} if poll else task()
    spec = app([waited], [group()], duration=3000)
    spec["task_queues"][0]["result_backend"] = {"write_time": "50ms", "result_expires": "2m"}
    result = run(scenario_from_dict(spec), replications=3, seed=6)
    at = "task_queues.app.tasks.t"
    extra = result.estimate(f"{at}.result_latency_s.mean").mean - result.estimate(f"{at}.latency_s.mean").mean
    assert extra == pytest.approx(extra_s, abs=0.005 if poll else 1e-3)
    # the backend keeps every result for 2 minutes (less than the warm-up): λ × 120 s at a time
    assert result.estimate("task_queues.app.results.stored_mean").mean == pytest.approx(6.0 * 120, rel=0.03)
    assert result.ok


def test_the_child_writing_a_result_is_busy_so_a_worker_is_an_md1_queue_of_the_run_plus_the_write():
    """One child, Poisson 0.5/s, runs of 1 s and a result write of 0.5 s in the child: service
    S = 1.5 s, ρ = 0.75 (0.5 if the write were not the child's), and the caller waits M/D/1's
    S + λS² / (2(1 − ρ)) = 3.75 s; the check counts 1/1.5 s per child."""
    spec = app([task(rate=0.5, run_time="1s")], [group(concurrency=1)], duration=20_000)
    spec["task_queues"][0]["result_backend"] = {"write_time": "500ms"}
    assert broker_flows(scenario_from_dict(spec))["q"].service_capacity_per_s == pytest.approx(1 / 1.5)
    result = run(scenario_from_dict(spec), replications=6, seed=8)
    at = "task_queues.app"
    assert result.estimate(f"{at}.workers.w.utilization").contains(0.75)
    assert result.estimate(f"{at}.tasks.t.result_latency_s.mean").contains(1.5 + 0.5 * 1.5**2 / (2 * 0.25))
    assert result.estimate(f"{at}.tasks.t.run_s.mean").mean == pytest.approx(1.0)
    assert result.ok


def chord_app(join, duration=20_000):
    header = {**task("shard", rate=0.05, run_time={"dist": "exponential", "mean": 1.0}),
              "chord": {"size": 8, "callback": "merge", "join": join}}
    merge = {"name": "merge", "queue": "q", "run_time": "100ms"}
    spec = app([header, merge], [group(count=2, concurrency=16)], duration=duration)
    spec["task_queues"][0]["result_backend"] = {"write_time": "10ms"}
    return spec


@pytest.mark.parametrize("join", ["counter", "poll"])
def test_a_chord_joins_at_the_slowest_of_its_members_plus_the_write_and_polling_at_the_next_check(join):
    """Eight exponential members of mean 1 s, started at once (16 children each on two workers,
    one chord every 20 s), results written 10 ms after: by counter the join takes E[max] + W =
    H₈ + 0.01 s; by chord_unlock every second from the call, E[⌈max + W⌉] = Σₖ P(max + W > k)."""
    harmonic = sum(1 / k for k in range(1, 9))
    expected = harmonic + 0.01 if join == "counter" else 1 + sum(1 - (1 - math.exp(-(k - 0.01))) ** 8 for k in range(1, 60))
    result = run(scenario_from_dict(chord_app(join)), replications=6, seed=12)
    at = "task_queues.app.tasks"
    assert result.estimate(f"{at}.shard.chord_join_s.mean").contains(expected), (expected, result.estimate(f"{at}.shard.chord_join_s.mean"))
    chords = result.estimate(f"{at}.merge.sent").mean
    assert result.estimate(f"{at}.shard.sent").mean == pytest.approx(8 * chords, rel=0.01)
    assert result.estimate(f"{at}.shard.chord_errors").mean == 0
    assert result.ok


def group_app(backend=True, failure_probability=0.0):
    shard = {**task("shard", rate=0.05, run_time={"dist": "exponential", "mean": 1.0}), "group": {"size": 8}}
    if failure_probability:
        shard["autoretry"] = {"failure_probability": failure_probability, "max_retries": 0}
    spec = app([shard], [group(count=2, concurrency=16)], duration=20_000)
    if backend:
        spec["task_queues"][0]["result_backend"] = {"write_time": "10ms"}
    return spec


@pytest.mark.slow
def test_a_group_without_a_callback_sends_its_members_at_once_and_its_caller_waits_for_the_slowest():
    """Eight exponential members of mean 1 s started at once, results written 10 ms after: the
    caller's GroupResult.get() returns after E[max] + W = H₈ + 0.01 s. Each member failing for
    good with p = 0.1 makes get() raise with probability 1 − 0.9⁸ per group. Without a backend
    the group is only a fan-out: every call sends 8 tasks."""
    at = "task_queues.app.tasks.shard"
    expected = sum(1 / k for k in range(1, 9)) + 0.01
    result = run(scenario_from_dict(group_app()), replications=6, seed=12)
    assert result.estimate(f"{at}.group_join_s.mean").contains(expected), (expected, result.estimate(f"{at}.group_join_s.mean"))
    assert result.estimate(f"{at}.group_errors").mean == 0 and result.ok
    failing = run(scenario_from_dict(group_app(failure_probability=0.1)), replications=6, seed=12)
    errors = mean_ci([r.metrics[f"{at}.group_errors"] / (r.metrics[f"{at}.sent"] / 8) for r in failing.results])
    assert errors.contains(1 - 0.9 ** 8), errors
    fan_out = run(scenario_from_dict(group_app(backend=False)), replications=2, seed=12)
    assert all(r.metrics[f"{at}.sent"] % 8 == 0 < r.metrics[f"{at}.sent"] for r in fan_out.results)
    assert f"{at}.group_join_s.mean" not in fan_out.results[0].metrics


def test_chords_need_a_result_backend_and_a_callback_sent_by_chords_only():
    spec = chord_app("counter")
    del spec["task_queues"][0]["result_backend"]
    assert "shard: a chord needs its header's results: give the app a result_backend" in problems_of(spec)
    spec = chord_app("counter")
    spec["task_queues"][0]["tasks"][0]["chord"]["callback"] = "shard"
    assert "a chord's callback must be a task of the app with neither arrivals nor beat" in problems_of(spec)
    spec = chord_app("counter")
    del spec["task_queues"][0]["tasks"][0]["chord"]
    assert "merge: a task needs arrivals or beat, unless it is a chord's callback" in problems_of(spec)


def test_a_task_may_not_take_the_name_of_a_chords_unlock_tasks():
    spec = chord_app("poll")
    spec["task_queues"][0]["tasks"].append({**task("shard_chord_unlock")})
    assert "shard_chord_unlock: the name of the chord_unlock tasks of shard's chords; give the task another" in problems_of(spec)


def test_check_counts_a_chords_members_and_its_callback_on_their_queue():
    flow = broker_flows(scenario_from_dict(chord_app("counter")))["q"]
    assert flow.arrival_rate_per_s == pytest.approx(0.05 * 8 + 0.05)


def test_precomputed_reads_are_instant_but_as_old_as_r_plus_half_the_period_and_on_demand_ones_wait_for_fresh_data():
    """Beat every T = 300 s, runs of R = 30 s, so the data served changes at kT + R to the data
    of kT: a read at a uniform time finds data aged uniformly on [R, T + R), mean R + T/2 = 180 s.
    Computing on demand (runs of 3 s, results written 10 ms after, get()): the caller waits at
    least 3.01 s, for data exactly 3.01 s old."""
    aggregate = {"name": "aggregate", "queue": "q", "beat": {"every": "5m"}, "run_time": "30s"}
    on_demand = task("report", rate=0.5, run_time="3s")
    spec = app([aggregate, on_demand], [group()], duration=20_000, warmup=600)
    spec["task_queues"][0]["readers"] = [{"name": "dashboard", "reads": "aggregate", "arrivals": {"process": "poisson", "rate": 1.0}}]
    spec["task_queues"][0]["result_backend"] = {"write_time": "10ms", "result_expires": "5m"}
    result = run(scenario_from_dict(spec), replications=4, seed=13)
    at = "task_queues.app"
    stale = result.estimate(f"{at}.readers.dashboard.staleness_s.mean")
    assert stale.contains(180.0), stale
    assert result.estimate(f"{at}.readers.dashboard.staleness_s.p50").mean == pytest.approx(180.0, abs=5)
    assert result.estimate(f"{at}.readers.dashboard.misses").mean == 0
    assert result.estimate(f"{at}.tasks.report.staleness_s.p999").mean == pytest.approx(3.01, rel=RELATIVE_ACCURACY)
    assert result.estimate(f"{at}.tasks.report.result_latency_s.mean").mean >= 3.01
    assert result.ok


def test_a_reader_reads_a_task_of_its_app():
    spec = app([task()], [group()])
    spec["task_queues"][0]["readers"] = [{"name": "dash", "reads": "nope", "arrivals": {"process": "poisson", "rate": 1.0}}]
    assert "readers: dash reads 'nope', which is not a task of the app" in problems_of(spec)


@pytest.mark.parametrize("limiter, limit, per_worker", [("ideal", "10/s", 10.0), ("event_loop", "10/s", 1.0), ("event_loop", "2/s", 1.0),
                                                        ("event_loop", "30/m", 0.5)])
def test_under_overload_the_event_loop_limiter_starts_one_task_a_second_per_worker_whatever_the_limit(limiter, limit, per_worker):
    """30 tasks/s offered to 2 workers (prefetch 16 each) of a type limited to ``limit``. The ideal
    limiter starts ``limit`` a second per worker. As the code runs it, each refusal adds a timer;
    past 10 the loop fires 10 a pass and then polls a full second (nothing wakes it: the prefetch
    is full), and a bucket keeps one token, so each pass starts one task: 1/s per worker; a
    limit under 1/s is kept (its timers fall due no faster)."""
    limited = {**task(rate=30.0, run_time="20ms"), "rate_limit": limit}
    spec = app([limited], [group(count=2, rate_limiter=limiter)], broker={"name": "q", "kind": "redis", "max_messages": 50}, duration=2000)
    assert broker_flows(scenario_from_dict(spec))["q"].service_capacity_per_s == 2 * per_worker
    result = run(scenario_from_dict(spec), replications=2, seed=4)
    assert result.estimate("task_queues.app.tasks.t.throughput_per_s").mean == pytest.approx(2 * per_worker, rel=0.01)
    assert result.ok


def test_check_counts_a_run_cut_at_its_hard_time_limit_and_the_replacement_of_its_child():
    """Runs exponential of mean 10 s killed at time_limit 5 s, a killed child replaced in 1 s: a run
    holds its slot E[min(S, 5)] + 1 × P(S > 5) = 10(1 − e^−½) + e^−½ s, so 4 children run
    4 / 4.541 = 0.881/s, where 4/10 s ignored the limit: 0.6/s is stable."""
    slot_s = 10 * (1 - math.exp(-0.5)) + math.exp(-0.5)
    spec = app([task(rate=0.6, run_time={"dist": "exponential", "mean": 10}, time_limit="5s")], [group(child_replacement_time="1s")])
    flow = broker_flows(scenario_from_dict(spec))["q"]
    assert flow.service_capacity_per_s == pytest.approx(4 / slot_s, rel=1e-9)
    assert flow.arrival_rate_per_s == pytest.approx(0.6)


def test_check_counts_the_retries_a_soft_time_limit_causes():
    """A soft limit at 5 s on runs exponential of mean 10 s, retried 3 times: a run is retried with
    r = e^−½, so a call makes (1 − r⁴) / (1 − r) runs, each holding a child 10(1 − r) s."""
    r = math.exp(-0.5)
    runs = (1 - r**4) / (1 - r)
    limited = task(rate=0.1, run_time={"dist": "exponential", "mean": 10}, soft_time_limit="5s", autoretry={"failure_probability": 0.0})
    flow = broker_flows(scenario_from_dict(app([limited], [group()])))["q"]
    assert flow.arrival_rate_per_s == pytest.approx(0.1 * runs, rel=1e-9)
    assert flow.service_capacity_per_s == pytest.approx(4 / (10 * (1 - r)), rel=1e-9)


def test_a_saturated_pool_completes_runs_at_the_capacity_check_derives_from_the_time_limits():
    """20/s offered (a bounded list refuses the rest) to 4 children whose runs, exponential of mean
    1 s, are killed at 0.5 s and the child replaced in 0.1 s: they complete 4 / (1 − e^−½ +
    0.1 e^−½) = 8.81 runs a second, a fraction e^−½ of them killed."""
    slot_s = 1 - math.exp(-0.5) + 0.1 * math.exp(-0.5)
    limited = task(rate=20.0, run_time={"dist": "exponential", "mean": 1}, time_limit="500ms")
    spec = app([limited], [group(child_replacement_time="100ms")], broker={"name": "q", "kind": "redis", "max_messages": 50}, duration=1200)
    assert broker_flows(scenario_from_dict(spec))["q"].service_capacity_per_s == pytest.approx(4 / slot_s)
    result = run(scenario_from_dict(spec), replications=4, seed=6)
    rates = mean_ci([r.metrics["task_queues.app.workers.w.completed"] / 1000 for r in result.results])
    assert rates.contains(4 / slot_s), (4 / slot_s, rates)
    killed = mean_ci([r.metrics["task_queues.app.tasks.t.hard_time_limits"] / r.metrics["task_queues.app.tasks.t.runs"] for r in result.results])
    assert killed.contains(math.exp(-0.5)), killed


def two_queues(tasks, consumes, concurrency=1, duration=4000, **options):
    spec = app(tasks, [group(consumes=consumes, concurrency=concurrency, **options)], duration=duration)
    spec["brokers"] = [{"name": "a", "kind": "redis", "max_messages": 50}, {"name": "b", "kind": "redis", "max_messages": 50}]
    return spec


def test_a_worker_on_two_backlogged_redis_queues_takes_from_each_in_turn():
    """kombu's BRPOP cycle: both queues always hold tasks, so one child alternates between them
    whatever their run times (1 s and 3 s): each runs 1 / (1 + 3) = 0.25 tasks a second (a fixed
    key order would run only the first queue's)."""
    tasks = [{**task("short", rate=5.0, run_time="1s"), "queue": "a"}, {**task("long", rate=5.0, run_time="3s"), "queue": "b"}]
    result = run(scenario_from_dict(two_queues(tasks, ["a", "b"], prefetch_multiplier=1, duration=2000)), replications=1, seed=2)
    for name in ("short", "long"):
        assert result.estimate(f"task_queues.app.tasks.{name}.throughput_per_s").mean == pytest.approx(0.25, abs=1 / 1800), name
    assert result.ok


def test_check_shows_a_worker_on_two_queues_at_its_whole_utilisation_on_each():
    """3/s of 0.5 s tasks on a, 1/s of 1 s tasks on b, 4 children taking from both: 2.5 erlangs
    of work, ρ = 0.625 on each queue; the 4 / (2.5 / 4) = 6.4/s split as the runs, 4.8 and 1.6."""
    tasks = [{**task("x", rate=3.0), "queue": "a"}, {**task("y", rate=1.0, run_time="1s"), "queue": "b"}]
    flows = broker_flows(scenario_from_dict(two_queues(tasks, ["a", "b"], concurrency=4)))
    assert (flows["a"].service_capacity_per_s, flows["b"].service_capacity_per_s) == (pytest.approx(4.8), pytest.approx(1.6))
    assert flows["a"].offered_load == pytest.approx(0.625) and flows["b"].offered_load == pytest.approx(0.625)


@pytest.mark.slow
def test_a_worker_on_two_queues_never_idles_while_one_holds_a_task_so_they_wait_as_one_mmc_queue():
    """3/s on each of two queues, exponential runs of 0.5 s, one worker of 4 children on both: as
    it takes from whichever queue holds a task, the two make one M/M/4 queue at ρ = 0.75, and
    each type's mean latency is its sojourn time."""
    exact = analytic.mmc(6.0, 2.0, 4)
    tasks = [{**task("x", rate=3.0), "queue": "a"}, {**task("y", rate=3.0), "queue": "b"}]
    spec = two_queues(tasks, ["a", "b"], concurrency=4)
    for broker in spec["brokers"]:
        del broker["max_messages"]
    result = run(scenario_from_dict(spec), replications=8, seed=11)
    for name in ("x", "y"):
        assert result.estimate(f"task_queues.app.tasks.{name}.latency_s.mean").contains(exact.sojourn_s), name
    assert result.ok


def test_a_worker_consumes_several_queues_on_redis_only():
    tasks = [{**task("x"), "queue": "a"}, {**task("y"), "queue": "r"}]
    spec = two_queues(tasks, ["a", "r"])
    spec["brokers"][1] = {"name": "r", "kind": "rabbitmq"}
    assert "workers.0.consumes.1: 'r' is a rabbitmq queue: a worker consuming several queues is modelled on Redis queues only" in problems_of(spec)


def test_a_chord_unlock_task_waits_in_the_worker_behind_the_header_and_takes_a_child():
    """A chord of 4 tasks of 1.1 s every minute on one child, each writing its result in 10 ms:
    the chord_unlock task falls due at 1 s behind the three header tasks reserved before it, so
    its first run starts when the last is written, at 4 × 1.11 = 4.44 s, and finds every result at
    its end, 4.54 s (0.1 s runs): the callback goes then, once per chord (a timer every second
    would send at 5)."""
    header = {"name": "shard", "queue": "q", "beat": {"every": "1m"}, "run_time": "1100ms",
              "chord": {"size": 4, "callback": "merge", "join": "poll", "unlock_run_time": "100ms"}}
    spec = app([header, {"name": "merge", "queue": "q", "run_time": "100ms"}], [group(concurrency=1)], duration=1200)
    spec["task_queues"][0]["result_backend"] = {"write_time": "10ms"}
    result = run(scenario_from_dict(spec), replications=1, seed=1)
    at = "task_queues.app.tasks"
    assert result.estimate(f"{at}.shard.chord_join_s.mean").mean == pytest.approx(4.54)
    # chords at 240, 300 … 1140 s fall in the window 200–1200 s: 16 unlocks, one run each
    assert result.estimate(f"{at}.shard_chord_unlock.runs").mean == result.estimate(f"{at}.merge.sent").mean == 16
    assert result.estimate(f"{at}.shard_chord_unlock.retries").mean == 0
    assert result.ok


@pytest.mark.parametrize("broker_visibility, transport_visibility, redelivered", [(None, None, False), ("30s", None, True), (None, "50s", True),
                                                                                  ("30s", "1h", True)])
def test_a_celery_queue_on_sqs_gets_kombus_30_minute_visibility_timeout_unless_the_queue_sets_its_own(broker_visibility, transport_visibility,
                                                                                                     redelivered):
    """kombu creates the SQS queue with broker_transport_options' visibility_timeout, 30 min by
    default, not SQS's 30 s: a 100 s acks_late task (deleted after its run) runs once. A queue
    that sets its own (it exists) keeps it, and one shorter than the run delivers the task again
    while it runs; a shorter transport option does the same on a queue that sets none."""
    broker = {"name": "q", "kind": "sqs", **({"visibility_timeout": broker_visibility} if broker_visibility else {})}
    report = {"name": "report", "queue": "q", "beat": {"every": "1000s"}, "run_time": "100s", "acks_late": True}
    spec = app([report], [group(concurrency=2)], broker=broker, duration="3h", warmup="0s")
    if transport_visibility:
        spec["task_queues"][0]["broker_transport_options"] = {"visibility_timeout": transport_visibility}
    result = run(scenario_from_dict(spec), replications=1, seed=1)
    at = "task_queues.app.tasks.report"
    assert result.estimate(f"{at}.sent").mean == 10
    assert (result.estimate(f"{at}.redelivered").mean > 0) == redelivered
    if not redelivered:
        assert result.estimate(f"{at}.runs").mean == result.estimate(f"{at}.succeeded").mean == 10


def test_an_idle_celery_worker_on_sqs_polls_once_every_wait_time_plus_polling_interval():
    """kombu long-polls 10 s and pauses 1 s after an empty receive: with calls of 1 ms an idle
    worker receives every 11.001 s, at 0 … 327 × 11.001 = 3597.3 s of a 1 h window: 328 times (360
    without the pause; SQS's own default, wait 0, would poll without end)."""
    rare = {"name": "report", "queue": "q", "beat": {"every": "2d"}, "run_time": "1s"}
    broker = {"name": "q", "kind": "sqs", "receive_latency": "1ms"}
    result = run(scenario_from_dict(app([rare], [group(concurrency=1)], broker=broker, duration="1h", warmup="0s")), replications=1, seed=1)
    assert result.estimate("brokers.q.receive_calls").mean == 328
    spec = app([rare], [group(concurrency=1)], broker={**broker, "wait_time": "20s"})
    assert "kombu's receives ask for WaitTimeSeconds from broker_transport_options.wait_time_seconds" in problems_of(spec)
