"""``kind: sqs``: each documented behaviour of Amazon SQS, shown on a run, against a derived number
where one can be derived (fixed seeds; tolerances from the replications' confidence intervals).

Every run here also passes the run's own checks: conservation of messages and Little's law on
every boundary (visible, in flight, delayed, the worker pools and the system).
"""

import math

import pytest

import sim.components.brokers.sqs as sqs_kind
import sim.runner
from models.sqs import SqsBroker, message_group
from models.sqs_parts import DeduplicationWindow, TokenBucket
from sim import analytic, run, scenario_from_dict
from sim.problems import ScenarioError
from sim.recorder import Recorder
from sim.schema import Scenario
from sim.sketch import RELATIVE_ACCURACY
from sim.stats import mean_ci

INSTANT = {"receive_latency": 0, "delete_latency": 0}


def scenario(brokers, workers, producers=None, rate=None, duration=1000, warmup=0, validate=True):
    """A one-producer scenario (Poisson at ``rate`` into the first broker unless ``producers``)."""
    spec = {
        "name": "sqs-test",
        "seed": 11,
        "duration": duration,
        "warmup": warmup,
        "producers": producers or [{"name": "source", "arrivals": {"process": "poisson", "rate": rate}, "sends_to": brokers[0]["name"]}],
        "brokers": brokers,
        "workers": workers,
    }
    # validate=False skips the loader's wiring and stability checks, which do not allow yet a
    # dead-letter queue (no consumer) nor a burst of arrivals at one instant (an infinite rate)
    return scenario_from_dict(spec) if validate else Scenario.model_validate(spec)


def checked(result):
    """The run's own checks hold; returns the summary."""
    summary = result.summary()
    assert summary["conservation"]["ok"], summary["conservation"]
    assert all(c["ok"] for c in summary["littles_law"]), [c for c in summary["littles_law"] if not c["ok"]]
    return summary


def per_replication(result, metric):
    return [r.metrics[metric] for r in result.results]


def trace(tmp_path, times):
    path = tmp_path / "arrivals.csv"
    path.write_text("t\n" + "".join(f"{t}\n" for t in times))
    return {"process": "trace", "file": str(path)}


@pytest.fixture
def captured(monkeypatch):
    """The network of the last replication run in this process (run with jobs=1)."""
    networks = []
    build = sim.runner.build

    def capture(*args):
        built = build(*args)
        networks.append(built[0])
        return built

    monkeypatch.setattr(sim.runner, "build", capture)
    return networks


@pytest.fixture
def processing_order(monkeypatch):
    """(message id, time) of every processing, in order, for runs in this process."""
    log = []
    processed = Recorder.processed

    def record(self, message, now):
        log.append((message.id, now))
        processed(self, message, now)

    monkeypatch.setattr(Recorder, "processed", record)
    return log


# --- at-least-once: visibility timeouts and duplicates -----------------------------------------


def test_duplicates_from_a_visibility_timeout_follow_exp_minus_v_over_m():
    """Exponential service of mean m = 1 s, visibility timeout V = 2 s, batches of 1, no call
    latency, and 60 long-polling workers for 20 messages/s (about 23 busy: no queueing). A copy
    not deleted by V (probability p = P(S > V) = e^(−V/m)) is received at once by an idle worker
    and processed again, and that copy is redelivered with probability p too, memorylessly: the
    fraction of messages received more than once is p, and the extra processings per message,
    the duplicates, are geometric with mean p / (1 − p)."""
    p = math.exp(-2.0)
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "visibility_timeout": "2s", "wait_time": "20s", **INSTANT}],
        [{"name": "worker", "consumes": "jobs", "count": 60, "service_time": {"dist": "exponential", "mean": "1s"}}],
        rate=20, duration=1100, warmup=100,
    ), replications=6)
    checked(result)
    duplicates = mean_ci([r.counts["duplicates"] / r.counts["processed"] for r in result.results])
    assert duplicates.contains(p / (1 - p)), (p / (1 - p), duplicates)
    assert duplicates.half_width < 0.05 * p / (1 - p)
    redelivered = mean_ci([
        r.metrics["brokers.jobs.redelivered_messages"] / (r.metrics["brokers.jobs.deliveries"] - r.metrics["brokers.jobs.redeliveries"])
        for r in result.results
    ])
    assert redelivered.contains(p), (p, redelivered)
    assert redelivered.half_width < 0.05 * p


def test_a_visibility_timeout_longer_than_every_service_time_gives_no_duplicates():
    """Service at most 1.5 s plus a receive latency of tens of ms, against the default 30 s."""
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs"}],
        [{"name": "worker", "consumes": "jobs", "count": 8, "service_time": {"dist": "uniform", "low": "0.5s", "high": "1.5s"}}],
        rate=4, duration=600, warmup=60,
    ), replications=2, jobs=1)
    summary = checked(result)
    assert summary["counts"]["duplicates"] == 0 and summary["counts"]["processed"] > 3_000
    assert result.estimate("brokers.jobs.redeliveries").mean == 0
    assert result.estimate("brokers.jobs.visibility_timeouts").mean == 0


def test_later_messages_of_a_batch_are_the_ones_processed_twice(tmp_path):
    """Ten messages visible at once (sent at 0.5 s, delay 1 s), batches of 10, 1 s of work each,
    visibility timeout 4.5 s. Worker A takes all ten at 1.5 s and deletes #1–#4 by 5.5 s; #5–#10
    come back at 6.0 s and worker B takes them; B deletes #5–#8 by 10 s, and #9–#10 come back at
    10.5 s for worker C. A and B process #5–#8, A, B and C process #9 and #10: 4 + 2·2 = 8
    duplicates, all late in a batch. With batches of 1, ten workers take one each: none."""
    def batches_of(size):
        return run(scenario(
            [{"name": "jobs", "kind": "sqs", "batch_size": size, "visibility_timeout": "4.5s", "delay": "1s", "wait_time": "20s", **INSTANT}],
            [{"name": "worker", "consumes": "jobs", "count": 12, "service_time": {"dist": "deterministic", "value": "1s"}}],
            producers=[{"name": "source", "arrivals": trace(tmp_path, [0.5] * 10), "sends_to": "jobs"}],
            duration=100, validate=False,
        ), replications=1, jobs=1)

    tens = batches_of(10)
    summary = checked(tens)
    assert summary["counts"]["processed"] == 10 and summary["counts"]["duplicates"] == 8
    assert tens.estimate("brokers.jobs.redeliveries").mean == 8
    assert tens.estimate("brokers.jobs.stale_deletes").mean == 8  # A's six late deletes, B's two
    ones = batches_of(1)
    assert checked(ones)["counts"] == {**summary["counts"], "duplicates": 0}


def test_a_delete_with_an_older_receipt_handle_does_not_delete_the_newer_copy(tmp_path):
    """One message, 1.5 s of work, a 1 s visibility timeout, two workers: every copy comes back
    before its worker deletes it, and each delete uses a handle made stale by the next receive.
    Kept (AWS's "may succeed without deleting"), the message goes round until the run ends, one
    processing a second; with ``stale_delete: delete`` the first stale delete (at 2.5 s) removes
    it, and the copy received at 2 s is the only duplicate."""
    def with_stale(mode):
        return run(scenario(
            [{"name": "jobs", "kind": "sqs", "visibility_timeout": "1s", "wait_time": "20s", "stale_delete": mode, **INSTANT}],
            [{"name": "worker", "consumes": "jobs", "count": 2, "service_time": {"dist": "deterministic", "value": "1.5s"}}],
            producers=[{"name": "source", "arrivals": trace(tmp_path, [1.0]), "sends_to": "jobs"}],
            duration=30, validate=False,
        ), replications=1, jobs=1)

    kept = checked(with_stale("keep"))["counts"]
    deleted = checked(with_stale("delete"))["counts"]
    assert deleted == {**deleted, "produced": 1, "processed": 1, "duplicates": 1, "in_flight": 0}
    assert kept["processed"] == 1 and kept["duplicates"] == 27  # processings end at 2.5, 3.5, ..., 29.5 s


def test_missed_deletes_bring_messages_back():
    """``duplicate_probability`` q: each delete is missed with probability q and the copy comes
    back after its visibility timeout, to be processed and deleted (or missed) again: geometric
    extra processings of mean q / (1 − q) = 1/9, with service far shorter than the timeout."""
    q = 0.1
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "visibility_timeout": "5s", "wait_time": "20s", "duplicate_probability": q}],
        [{"name": "worker", "consumes": "jobs", "count": 20, "service_time": {"dist": "exponential", "mean": "200ms"}}],
        rate=20, duration=1050, warmup=50,
    ), replications=4)
    checked(result)
    duplicates = mean_ci([r.counts["duplicates"] / r.counts["processed"] for r in result.results])
    assert duplicates.contains(q / (1 - q)), duplicates
    assert duplicates.half_width < 0.06 * q / (1 - q)
    assert result.estimate("brokers.jobs.missed_deletes").mean > 0


def test_worker_crashes_lose_nothing_their_messages_come_back():
    """SQS knows no connections: a message whose worker died comes back at its timeout."""
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "visibility_timeout": "10s", "wait_time": "20s", "batch_size": 5}],
        [{"name": "worker", "consumes": "jobs", "count": 10, "service_time": {"dist": "exponential", "mean": "500ms"},
          "crashes": {"mtbf": "60s", "restart_time": "5s"}}],
        rate=8, duration=1200, warmup=100,
    ), replications=2, jobs=1)
    summary = checked(result)
    assert summary["counts"]["lost"] == 0
    crashes = result.estimate("workers.worker.crashes").mean
    assert crashes > 100
    # a worker busy 40% of the time crashes holding messages (up to 5) about that often
    assert 0.2 * crashes < result.estimate("brokers.jobs.visibility_timeouts").mean < 2 * crashes


# --- errors, the redrive policy, retention, delay ----------------------------------------------


def test_on_error_waits_for_the_visibility_timeout_or_releases_at_once():
    """A failed attempt (probability 0.3) waits out the 30 s timeout by default; with
    ``on_error: release`` it is visible again at once (ChangeMessageVisibility to 0)."""
    def on_error(mode):
        return run(scenario(
            [{"name": "jobs", "kind": "sqs", "wait_time": "20s", "on_error": mode}],
            [{"name": "worker", "consumes": "jobs", "count": 10, "service_time": {"dist": "exponential", "mean": "200ms"},
              "errors": {"probability": 0.3}}],
            rate=10, duration=1000, warmup=100,
        ), replications=2, jobs=1)

    waited, released = on_error("wait"), on_error("release")
    checked(waited), checked(released)
    # 30% fail at least once and wait 30 s; 70% go through in about 0.25 s
    assert waited.estimate("system.latency_s.p50").mean < 1
    assert waited.estimate("system.latency_s.p95").mean > 30
    assert released.estimate("system.latency_s.p99").mean < 5
    assert released.estimate("brokers.jobs.change_visibility_calls").mean == released.estimate("workers.worker.errors").mean
    assert waited.estimate("brokers.jobs.change_visibility_calls").mean == 0


@pytest.mark.parametrize("on_error", ["wait", "release"])
def test_a_poison_message_is_received_max_receive_count_times_then_dead_lettered(on_error, captured):
    """A poison message (5% of ids) fails every attempt: it is received exactly
    max_receive_count = 4 times and, at the fifth receive, moves to the dead-letter queue. The
    traffic stops at 100 s so that every message is settled: deliveries = produced + 3 × poison."""
    result = run(scenario(
        [
            {"name": "jobs", "kind": "sqs", "visibility_timeout": "10s", "wait_time": "20s", "on_error": on_error,
             "dead_letter_queue": "jobs-dlq", "max_receive_count": 4},
            # a 60 s retention lets the dead-letter queue's own boundary settle for Little's law
            {"name": "jobs-dlq", "kind": "sqs", "retention": "60s"},
        ],
        [{"name": "worker", "consumes": "jobs", "count": 10, "service_time": {"dist": "exponential", "mean": "200ms"},
          "errors": {"poison_fraction": 0.05}}],
        producers=[{"name": "source", "arrivals": {"process": "schedule", "steps": [{"duration": "100s", "rate": 5}, {"duration": "1s", "rate": 0}]}, "sends_to": "jobs"}],
        duration=300, validate=False,
    ), replications=1, jobs=1)
    counts = checked(result)["counts"]
    poison = counts["dead_lettered"]
    assert counts["in_flight"] == 0 and counts["processed"] + poison == counts["produced"]
    assert 0.02 * counts["produced"] < poison < 0.08 * counts["produced"]
    assert result.estimate("brokers.jobs.deliveries").mean == counts["produced"] + 3 * poison
    assert result.estimate("brokers.jobs.redeliveries").mean == 3 * poison
    assert result.estimate("brokers.jobs.dead_lettered").mean == poison
    # each landed in the DLQ (a redrive is not a SendMessage call) and expired there, 60 s after it
    # was first sent (a standard queue's dead letter keeps its original enqueue time)
    assert result.estimate("brokers.jobs-dlq.send_calls").mean == 0
    assert result.estimate("brokers.jobs-dlq.expired").mean == poison
    assert result.estimate("workers.worker.errors").mean == 4 * poison


def test_max_receive_count_without_a_named_queue_dead_letters_all_the_same():
    """The redrive policy of DESIGN.md's example names no dead-letter broker: messages are
    dead-lettered to a queue the scenario does not model."""
    result = run(scenario(
        [{"name": "payments", "kind": "sqs", "visibility_timeout": "30s", "max_receive_count": 5, "on_error": "release", "wait_time": "20s"}],
        [{"name": "worker", "consumes": "payments", "count": 4, "service_time": {"dist": "exponential", "mean": "100ms"},
          "errors": {"poison_fraction": 0.1}}],
        producers=[{"name": "source", "arrivals": {"process": "schedule", "steps": [{"duration": "300s", "rate": 5}, {"duration": "1s", "rate": 0}]}, "sends_to": "payments"}],
        duration=400,
    ), replications=1, jobs=1)
    counts = checked(result)["counts"]
    assert counts["in_flight"] == 0 and counts["processed"] + counts["dead_lettered"] == counts["produced"]
    assert 0.05 * counts["produced"] < counts["dead_lettered"] < 0.15 * counts["produced"]
    assert result.estimate("brokers.payments.redeliveries").mean == 4 * counts["dead_lettered"]


def test_retention_deletes_unconsumed_messages_unseen(tmp_path):
    """100 messages sent at 0.5 s, one worker taking 1.1 s each, retention 60 s: message k starts
    at 0.5 + 1.1 (k − 1) s, before 60.5 s for k ≤ 55; the other 45 are deleted at 60.5 s, lost."""
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "retention": "60s", "wait_time": "20s", **INSTANT}],
        [{"name": "worker", "consumes": "jobs", "count": 1, "service_time": {"dist": "deterministic", "value": "1.1s"}}],
        producers=[{"name": "source", "arrivals": trace(tmp_path, [0.5] * 100), "sends_to": "jobs"}],
        duration=200, validate=False,
    ), replications=1, jobs=1)
    counts = checked(result)["counts"]
    assert counts["processed"] == 55 and counts["lost"] == 45 and counts["in_flight"] == 0
    # the 55th was in the worker's hands at 60.5 s: deleted from the queue, processed all the same
    assert result.estimate("brokers.jobs.expired").mean == 46


def test_delay_holds_each_new_message_for_exactly_the_delay():
    """Delay 10 s, 0.5 s of work, instant calls and idle long-polling workers: every message takes
    exactly 10.5 s, and the delayed boundary holds λ × 10 s messages on average (Little)."""
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "delay": "10s", "wait_time": "20s", **INSTANT}],
        [{"name": "worker", "consumes": "jobs", "count": 10, "service_time": {"dist": "deterministic", "value": "500ms"}}],
        rate=2, duration=1000, warmup=50,
    ), replications=2, jobs=1)
    summary = checked(result)
    assert summary["counts"]["in_flight"] > 0  # the messages still delayed at the end are held
    for q in ("p50", "p99", "p999"):
        assert result.estimate(f"system.latency_s.{q}").mean == pytest.approx(10.5, rel=RELATIVE_ACCURACY)
    delayed = next(c for c in summary["littles_law"] if c["boundary"] == "jobs:delayed")
    assert delayed["W_s"] == pytest.approx(10.0)
    assert result.estimate("brokers.jobs.delayed_mean").mean == pytest.approx(2 * 10, rel=0.05)


# --- polling ------------------------------------------------------------------------------------


def test_a_long_poll_returns_as_soon_as_a_message_arrives_and_a_timed_out_one_swallows_nothing():
    """One worker, a message every 50 s on average, 20 s long polls: most polls time out empty,
    and a message arriving during a poll reaches the worker after the receive latency (50 ms),
    not at the end of the poll: latency = 50 ms + 100 ms of work."""
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "wait_time": "20s", "receive_latency": "50ms", "delete_latency": 0}],
        [{"name": "worker", "consumes": "jobs", "count": 1, "service_time": {"dist": "deterministic", "value": "100ms"}}],
        rate=0.02, duration=40_000,
    ), replications=1, jobs=1)
    summary = checked(result)
    assert summary["counts"]["lost"] == 0 and summary["counts"]["processed"] > 700
    assert result.estimate("brokers.jobs.empty_receives").mean > 1_000
    assert result.estimate("system.latency_s.p50").mean == pytest.approx(0.15, rel=RELATIVE_ACCURACY)
    assert result.estimate("system.latency_s.mean").mean < 0.16


def test_short_polling_finds_each_visible_message_with_the_sample_probability():
    """Short polls every 20 ms (the receive latency), each finding a visible message with
    probability q: a message arriving at an idle worker waits for the next poll (uniform over
    20 ms: 10 ms on average) and then for the failed polls before it is found, (1 − q)/q of
    them: a mean wait of 10 ms + 20 ms (1 − q)/q, 70 ms for q = 0.25. Nearly every poll is empty."""
    q = 0.25
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "short_poll_sample": q, "receive_latency": "20ms", "delete_latency": 0}],
        [{"name": "worker", "consumes": "jobs", "count": 1, "service_time": {"dist": "deterministic", "value": "10ms"}}],
        rate=0.25, duration=4000,
    ), replications=4)
    checked(result)
    wait = result.estimate("brokers.jobs.wait_s.mean")
    expected = 0.010 + 0.020 * (1 - q) / q
    assert wait.contains(expected), (expected, wait)
    assert wait.half_width < 0.05 * expected
    assert result.estimate("brokers.jobs.empty_receive_fraction").mean > 0.99


def test_the_in_flight_limit_makes_extra_workers_idle():
    """At most 5 messages in flight: 10 workers behave as 5, an M/M/5 queue with instant calls,
    whose mean wait in the queue is Erlang C's."""
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "max_in_flight": 5, "wait_time": "20s", **INSTANT}],
        [{"name": "worker", "consumes": "jobs", "count": 10, "service_time": {"dist": "exponential", "mean": "1s"}}],
        rate=4, duration=5_500, warmup=500,
    ), replications=4)
    checked(result)
    wait = result.estimate("brokers.jobs.wait_s.mean")
    expected = analytic.mmc(4.0, 1.0, 5).wait_s
    assert wait.contains(expected), (expected, wait)
    assert wait.half_width < 0.15 * expected  # queue waits at 80% load are strongly autocorrelated
    assert result.estimate("brokers.jobs.in_flight_mean").mean == pytest.approx(4.0, rel=0.05)


def test_short_polls_over_the_in_flight_limit_fail():
    result = run(scenario(
        [{"name": "jobs", "kind": "sqs", "max_in_flight": 2}],
        [{"name": "worker", "consumes": "jobs", "count": 4, "service_time": {"dist": "exponential", "mean": "1s"}}],
        rate=1, duration=300,
    ), replications=1, jobs=1)
    checked(result)
    assert result.estimate("brokers.jobs.over_limit").mean > 100
    assert result.estimate("workers.worker.busy_mean").mean <= 2


# --- FIFO queues --------------------------------------------------------------------------------


class CheckedFifo(SqsBroker):
    """Counts each group's messages in flight, remembers the most ever seen, and counts the times a
    group had messages in flight from two receives at once."""

    most_in_flight = 0
    two_receives = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.group_in_flight = {}
        self.group_receive = {}

    def _accept(self, entry):
        delivered = super()._accept(entry)
        if delivered:
            n = self.group_in_flight[entry.group] = self.group_in_flight.get(entry.group, 0) + 1
            if n == 1:
                self.group_receive[entry.group] = self._batch
            elif self.group_receive[entry.group] is not self._batch:
                CheckedFifo.two_receives += 1
            CheckedFifo.most_in_flight = max(CheckedFifo.most_in_flight, n)
        return delivered

    def _leave_in_flight(self, entry, now):
        self.group_in_flight[entry.group] -= 1
        super()._leave_in_flight(entry, now)


def test_a_fifo_queue_keeps_order_within_a_group_and_hands_a_group_to_one_receive_at_a_time(monkeypatch, processing_order):
    """Eight groups, twenty workers, batches of 10: each group's messages are processed in the order
    sent (ids rise with sending time); a receive takes several messages of one group at once
    (AWS returns as many of one group as it can), and no other receive gets any of that group until
    they are all deleted, so most workers are idle."""
    monkeypatch.setattr(sqs_kind, "SqsBroker", CheckedFifo)
    CheckedFifo.most_in_flight = CheckedFifo.two_receives = 0
    result = run(scenario(
        [{"name": "orders", "kind": "sqs", "fifo": True, "message_groups": 8, "batch_size": 10, "wait_time": "20s"}],
        [{"name": "worker", "consumes": "orders", "count": 20, "service_time": {"dist": "exponential", "mean": "100ms"}}],
        rate=20, duration=600, warmup=30,
    ), replications=1, jobs=1)
    summary = checked(result)
    assert summary["counts"]["duplicates"] == 0
    assert CheckedFifo.two_receives == 0 and 1 < CheckedFifo.most_in_flight <= 10
    last = {}
    for message_id, _ in processing_order:
        group = message_group(message_id, 8)
        assert message_id > last.get(group, -1), f"group {group}: {message_id} after {last[group]}"
        last[group] = message_id
    assert len(last) == 8 and len(processing_order) > 10_000
    # eight groups, each in one worker's hands at a time: at most 8 workers busy
    assert result.estimate("workers.worker.busy_mean").mean < 8


def test_a_fifo_queue_drops_a_message_sent_again_within_five_minutes():
    """A stage whose SQS queue redelivers (visibility timeout 1 s for exponential work of mean
    1 s) sends some messages twice downstream. A FIFO queue there drops the second send
    (deduplication within 5 minutes): no duplicate reaches the end. A standard queue passes them on."""
    def downstream(fifo):
        second = {"name": "second", "kind": "sqs", "wait_time": "20s"}
        if fifo:
            second.update(fifo=True, message_groups=50)
        return run(scenario(
            [{"name": "first", "kind": "sqs", "visibility_timeout": "1s", "wait_time": "20s"}, second],
            [
                {"name": "stage", "consumes": "first", "count": 30, "service_time": {"dist": "exponential", "mean": "1s"}, "sends_to": "second"},
                {"name": "last", "consumes": "second", "count": 10, "service_time": {"dist": "exponential", "mean": "50ms"}},
            ],
            rate=5, duration=600, warmup=30,
        ), replications=1, jobs=1)

    standard, fifo = downstream(False), downstream(True)
    assert checked(standard)["counts"]["duplicates"] > 200
    counts = checked(fifo)["counts"]
    assert counts["duplicates"] == 0
    assert fifo.estimate("brokers.second.deduplicated").mean > 200


def test_a_fifo_queue_throttles_receives_above_300_per_second():
    """Twenty workers short-polling every 20 ms try 1,000 receives a second: the token bucket lets
    through 300 a second (plus its one-second burst), and throttles the rest."""
    result = run(scenario(
        [{"name": "orders", "kind": "sqs", "fifo": True, "message_groups": 10, "receive_latency": "20ms"}],
        [{"name": "worker", "consumes": "orders", "count": 20, "service_time": {"dist": "exponential", "mean": "100ms"}}],
        rate=10, duration=110, warmup=10,
    ), replications=1, jobs=1)
    checked(result)
    window = 100
    calls = result.estimate("brokers.orders.receive_calls").mean
    throttled = result.estimate("brokers.orders.throttled_receives").mean
    assert calls > 800 * window
    assert 300 * window - 300 <= calls - throttled <= 300 * window + 300
    assert result.estimate("brokers.orders.throttled_sends").mean == 0


def test_a_fifo_queue_refuses_sends_beyond_its_limit():
    """A producer at 80 messages/s against a limit set to 50 calls/s: 3/8 of the sends refused."""
    result = run(scenario(
        [{"name": "orders", "kind": "sqs", "fifo": True, "message_groups": 40, "api_calls_per_s": "50/s", "batch_size": 10, "wait_time": "20s"}],
        [{"name": "worker", "consumes": "orders", "count": 20, "service_time": {"dist": "exponential", "mean": "50ms"}}],
        producers=[{"name": "source", "arrivals": {"process": "deterministic", "rate": 80}, "sends_to": "orders"}],
        duration=210, warmup=10,
    ), replications=1, jobs=1)
    counts = checked(result)["counts"]
    assert counts["rejected"] / counts["produced"] == pytest.approx(3 / 8, abs=0.01)
    assert result.estimate("brokers.orders.refused").mean == counts["rejected"]


# --- the parts, the spec ------------------------------------------------------------------------


def test_token_bucket_allows_its_rate_and_burst():
    bucket = TokenBucket(300.0)
    assert sum(bucket.take(0.0) for _ in range(1000)) == 300  # a full bucket: one second's burst
    assert sum(bucket.take(t / 1000) for t in range(1, 10_001)) == pytest.approx(3000, abs=1)


def test_deduplication_window_lasts_five_minutes_from_the_first_send():
    window = DeduplicationWindow(300.0)
    assert not window.seen(7, 0.0)
    assert window.seen(7, 299.0)  # dropped, and the window is not extended
    assert not window.seen(7, 300.0)  # a new send
    assert window.seen(7, 599.0)


def test_defaults_follow_aws():
    spec = scenario([{"name": "q", "kind": "sqs"}], [{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "exponential", "mean": 1}}], rate=0.5).brokers[0]
    assert (spec.visibility_timeout, spec.wait_time, spec.batch_size) == (30.0, 0.0, 1)
    assert (spec.retention, spec.delay, spec.max_in_flight) == (4 * 86400.0, 0.0, 120_000)
    assert spec.max_receive_count_or_default is None and spec.api_calls_per_s_or_default is None
    assert spec.dead_letter_targets() == [] and not spec.bounds_queue()
    fifo = spec.model_copy(update={"fifo": True, "message_groups": 4})
    assert fifo.api_calls_per_s_or_default == 300.0
    assert fifo.model_copy(update={"high_throughput": True}).api_calls_per_s_or_default == 3000.0
    redrive = spec.model_copy(update={"dead_letter_queue": "dlq"})
    assert redrive.max_receive_count_or_default == 10 and redrive.dead_letter_targets() == ["dlq"]


@pytest.mark.parametrize("extra, message", [
    ({"visibility_timeout": "13h"}, "visibility_timeout: must be between 0s and 12h"),
    ({"wait_time": "21s"}, "wait_time: must be between 0s and 20s"),
    ({"batch_size": 11}, "batch_size: must be ≤ 10"),
    ({"retention": "30s"}, "retention: must be between 60s and 14d"),
    ({"delay": "16min"}, "delay: must be between 0s and 15min"),
    ({"max_receive_count": 1001}, "max_receive_count: must be ≤ 1000"),
    ({"fifo": True}, "a FIFO queue needs message_groups"),
    ({"message_groups": 4}, "message_groups: for FIFO queues only"),
    ({"fifo": True, "message_groups": 2, "duplicate_probability": 0.01}, "FIFO queues do not introduce duplicates"),
    ({"receive_latency": 0}, "short polling (wait_time 0) needs a receive_latency above zero"),
    ({"dead_letter_queue": "jobs"}, "cannot be its own dead_letter_queue"),
    ({"dead_letter_queue": "nowhere"}, "dead-letter target 'nowhere' is not a broker"),
    ({"visibilty_timeout": "1s"}, "visibilty_timeout"),
])
def test_bad_settings_are_refused_with_a_clear_message(extra, message):
    with pytest.raises(ScenarioError, match=None) as error:
        scenario([{"name": "jobs", "kind": "sqs", **extra}], [{"name": "w", "consumes": "jobs", "count": 1, "service_time": {"dist": "exponential", "mean": 1}}], rate=0.5)
    assert message in str(error.value)


def test_the_scenario_shows_duplicates_from_a_short_visibility_timeout():
    from pathlib import Path

    from sim import load_scenario

    path = Path(__file__).resolve().parents[1] / "scenarios" / "sqs-short-visibility-timeout.yaml"
    result = run(load_scenario(path, ["duration=20m", "warmup=2m"]), replications=2)
    summary = checked(result)
    assert summary["counts"]["duplicates"] > 0 and summary["counts"]["lost"] == 0
