"""The transactional outbox, the dual write it replaces, and idempotent consumers.

Each test runs a small scenario with a fixed seed and compares what the simulation measures with
a figure derived from the model's own rules: the expected value must lie inside the 95%
confidence interval over replications, and counts that the rules make exact are compared
exactly. Every run must also pass its own checks (Little's law on every boundary, conservation).
"""

import math

import pytest
from scipy import stats

from models.fates import Fates
from sim import ScenarioError, load_scenario_text, run, scenario_from_dict
from sim.analytic import mmc
from sim.recorder import Recorder
from sim.sketch import RELATIVE_ACCURACY
from tests.sketches import recorded

MS = 1e-3


def scenario(seed=1, duration=2_000, warmup=100, rate=5.0, arrivals=None, outbox=None, dual_write=None, idempotent=False,
             capacity=None, workers=4, service="10ms"):
    """One producer → an outbox or a dual write named ``orders`` → a fifo ``payments`` → ``payment-service``."""
    spec = {
        "name": "orders",
        "seed": seed,
        "duration": duration,
        "warmup": warmup,
        "producers": [{"name": "checkout", "arrivals": arrivals or {"process": "poisson", "rate": rate}, "sends_to": "orders"}],
        "brokers": [{"name": "payments", "kind": "fifo", **({"capacity": capacity} if capacity is not None else {})}],
        "workers": [{"name": "payment-service", "consumes": "payments", "count": workers,
                     "service_time": {"dist": "deterministic", "value": service}, "idempotent": idempotent}],
    }
    database = {"commit_time": {"dist": "deterministic", "value": "4ms"}, "connections": 10}
    if outbox is not None:
        spec["outbox"] = [{"name": "orders", "database": database, "publishes_to": "payments", **outbox}]
    if dual_write is not None:
        spec["dual_write"] = [{"name": "orders", "database": database, "publishes_to": "payments", **dual_write}]
    return scenario_from_dict(spec)


def total(result, metric):
    return sum(r.metrics[metric] for r in result.results)


def assert_checks_pass(result):
    assert result.ok, result.warnings()
    counts = result.counts()
    assert counts["produced"] == sum(counts[k] for k in ("processed", "lost", "rejected", "dead_lettered", "in_flight"))
    # the consistency outcomes of the events whose business row committed add up too
    assert counts["committed"] == sum(counts[k] for k in ("delivered_once", "delivered_more_than_once", "never_delivered", "committed_in_flight"))


# --- the polling relay and the log-tailing relay -----------------------------------------------


def test_a_polling_relay_at_light_load_adds_half_its_interval_plus_its_query_and_publish_times():
    # Polls start every I = 1 s (fixed rate); a query sees the rows committed before it started.
    # A row committed at a uniform moment waits I/2 on average for the next poll, then the query
    # (q = 5 ms), then one publication (p = 2 ms) for itself and one for each row committed before
    # it in the same interval (on average λ·I/2 of them, λ = 0.5/s).
    interval, q, p, rate = 1.0, 5 * MS, 2 * MS, 0.5
    relay = {"poll_interval": "1s", "query_time": "5ms", "publish_time": "2ms", "mark_time": "3ms"}
    result = run(scenario(rate=rate, duration=4_000, outbox={"relay": relay}), replications=8)
    expected = interval / 2 + q + p * (1 + rate * interval / 2)
    delay = result.estimate("outbox.orders.publish_delay_s.mean")
    assert delay.contains(expected), (expected, delay)
    assert delay.half_width < 0.02 * expected
    # the delay of a row is uniform on [q + p, I + q + p + ...]: its median is near I/2 too
    assert result.estimate("outbox.orders.publish_delay_s.p50").mean == pytest.approx(expected, abs=0.02)
    # database load of polling: one query and (when rows came) one mark per poll
    assert result.estimate("outbox.orders.relay.polls_per_s").mean == pytest.approx(1 / interval, rel=1e-3)
    assert result.estimate("outbox.orders.database.relay_transactions_per_s").mean == pytest.approx(1 / interval, rel=1e-3)
    marks = result.estimate("outbox.orders.relay.marks_per_s").mean  # a poll finds rows unless none came in a second
    assert marks == pytest.approx(1 - math.exp(-rate * interval), rel=0.03)
    counts = result.counts()
    assert counts["never_delivered"] == counts["phantom"] == counts["duplicates"] == 0
    assert_checks_pass(result)


def test_a_cdc_relay_delays_each_event_by_its_lag_and_runs_no_query():
    # gamma lag, mean 50 ms, cv 0.5; at one event a second (and spread ≪ gaps) order never delays one
    lag = {"dist": "gamma", "mean": "50ms", "cv": 0.5}
    result = run(scenario(rate=1.0, duration=3_000, outbox={"relay": {"kind": "cdc", "lag": lag}}), replications=6)
    shape, scale = 1 / 0.5**2, 0.05 * 0.5**2
    mean = result.estimate("outbox.orders.publish_delay_s.mean")
    assert mean.contains(0.05), mean
    for key, q in (("p50", 0.5), ("p95", 0.95)):
        assert result.estimate(f"outbox.orders.publish_delay_s.{key}").mean == pytest.approx(stats.gamma.ppf(q, shape, scale=scale), rel=0.03)
    assert result.estimate("outbox.orders.relay.statements_per_s").mean == 0
    assert result.estimate("outbox.orders.database.relay_transactions_per_s").mean == 0
    assert_checks_pass(result)


def test_a_cdc_connector_that_crashes_publishes_again_what_it_published_since_its_last_offset_flush():
    # offsets flushed every F = 10 s at a random phase, crashes at exponential times: a crash
    # comes on average F/2 after the last flush, so λ·F/2 = 5/s × 5 s = 25 events go out again
    relay = {"kind": "cdc", "lag": "20ms", "offset_flush_interval": "10s", "crashes": {"mtbf": "40s", "restart_time": "1s"}}
    result = run(scenario(rate=5.0, duration=2_000, outbox={"relay": relay}, idempotent=True), replications=6)
    per_crash = [r.metrics["outbox.orders.relay.republished"] / r.metrics["outbox.orders.relay.crashes"] for r in result.results]
    from sim.stats import mean_ci

    estimate = mean_ci(per_crash)
    assert estimate.contains(25), estimate
    counts = result.counts()
    assert counts["suppressed"] > 5000 and counts["duplicates"] == 0
    assert counts["never_delivered"] == counts["phantom"] == 0
    assert_checks_pass(result)


# --- the dual write ------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.05])
def test_a_dual_write_that_dies_between_commit_and_publish_loses_a_fraction_p_of_the_committed_events(p):
    # (seed 1 misses p by a hair: a 95% interval does, one time in twenty; 400,000 requests give 0.0499 ± 0.0007)
    result = run(scenario(seed=2, rate=20.0, duration=300, warmup=20, dual_write={"order": "commit-then-publish", "crash_probability": p}),
                 replications=8)
    lost = result.estimate("consistency.never_delivered_rate")
    assert lost.contains(p), lost
    assert lost.half_width < 0.1 * p
    counts = result.counts()
    assert counts["phantom"] == 0 and counts["lost"] == counts["never_delivered"]
    assert_checks_pass(result)


@pytest.mark.parametrize("p", [0.05])
def test_publish_then_commit_with_the_same_p_produces_a_fraction_p_of_phantoms(p):
    result = run(scenario(rate=20.0, duration=300, warmup=20, dual_write={"order": "publish-then-commit", "crash_probability": p}),
                 replications=8)
    phantoms = result.estimate("consistency.phantom_rate")
    assert phantoms.contains(p), phantoms
    assert phantoms.half_width < 0.1 * p
    counts = result.counts()
    assert counts["never_delivered"] == 0
    # every event whose row did not commit had been published: processed (a phantom) or still queued
    still_queued = counts["in_flight"] - counts["committed_in_flight"]
    assert counts["phantom"] + still_queued == counts["not_committed"]
    assert_checks_pass(result)


def test_a_process_crash_rate_loses_the_events_whose_publication_it_interrupts():
    # exponential times to failure (mean M = 10 s) have no memory: a publication of d = 0.5 s
    # that starts while the process is up is cut short with probability 1 − exp(−d/M)
    dual = {"order": "commit-then-publish", "publish_time": "500ms", "crashes": {"mtbf": "10s", "restart_time": "1s"}}
    result = run(scenario(rate=20.0, duration=500, warmup=20, dual_write=dual), replications=8)
    expected = 1 - math.exp(-0.5 / 10)
    lost = result.estimate("consistency.never_delivered_rate")
    assert lost.contains(expected), (expected, lost)
    counts = result.counts()
    assert counts["rejected"] > 0  # requests refused while the process restarts, and commits cut short
    assert counts["phantom"] == 0
    assert_checks_pass(result)


def test_a_publication_that_times_out_after_it_landed_makes_a_phantom_or_a_duplicate():
    # exponential publication latency (mean 2 ms) against a 5 ms timeout: exp(−2.5) of the
    # publications land after the application has given up on them
    slow = math.exp(-5 / 2)
    timeouts = {"publish_time": {"dist": "exponential", "mean": "2ms"}, "publish_timeout": "5ms"}
    phantoms = run(scenario(rate=20.0, duration=400, warmup=20, dual_write={"order": "publish-then-commit", **timeouts}), replications=6)
    rate = phantoms.estimate("consistency.phantom_rate")
    assert rate.contains(slow), (slow, rate)
    assert phantoms.counts()["never_delivered"] == 0
    assert_checks_pass(phantoms)
    # commit-then-publish retries once after the timeout: the event goes out twice; an ack lost
    # with probability 0.03 adds as many more
    retried = run(scenario(rate=20.0, duration=400, warmup=20, idempotent=True,
                           dual_write={"order": "commit-then-publish", "publish_retries": 1, "publish_timeout_probability": 0.03, **timeouts}),
                  replications=6)
    expected = slow + (1 - slow) * 0.03
    twice = retried.estimate("consistency.more_than_once_rate")
    assert twice.contains(expected), (expected, twice)
    counts = retried.counts()
    assert counts["duplicates"] == 0 and counts["suppressed"] >= counts["delivered_more_than_once"] > 0
    assert_checks_pass(retried)


def test_a_broker_that_refuses_loses_committed_events_of_a_dual_write_but_not_of_an_outbox():
    # a queue with room for 2 waiting and one slow worker refuses often
    slow_consumer = {"capacity": 2, "workers": 1, "service": "180ms"}
    dual = run(scenario(rate=5.0, duration=1_000, dual_write={}, **slow_consumer), replications=4)
    assert dual.counts()["never_delivered"] > 0.01 * dual.counts()["committed"]
    assert_checks_pass(dual)
    outbox = run(scenario(rate=5.0, duration=1_000, outbox={"relay": {"poll_interval": "200ms"}}, **slow_consumer), replications=4)
    counts = outbox.counts()
    assert outbox.estimate("outbox.orders.relay.refused_publishes").mean > 100  # refused, kept, published later
    assert counts["never_delivered"] == counts["phantom"] == 0
    assert_checks_pass(outbox)


# --- the outbox under failures ----------------------------------------------------------------


def test_the_outbox_loses_no_event_and_makes_no_phantom_under_the_same_crashes():
    failures = {
        "crash_probability": 0.05,  # the same p as the dual write's tests
        "crashes": {"mtbf": "60s", "restart_time": "2s"},
        "relay": {"poll_interval": "300ms", "crashes": {"mtbf": "30s", "restart_time": "2s"},
                  "crash_before_mark": {"probability": 0.05, "restart_time": "1s"}},
    }
    spec = scenario(rate=20.0, duration=500, warmup=20, outbox=failures, idempotent=True)
    database = {"commit_time": {"dist": "exponential", "mean": "20ms"}, "connections": 2, "crashes": {"mtbf": "60s", "restart_time": "3s"}}
    spec = spec.model_copy(update={"outbox": [spec.outbox[0].model_copy(update={"database": type(spec.outbox[0].database).model_validate(database)})]})
    result = run(spec, replications=6)
    counts = result.counts()
    assert counts["never_delivered"] == 0 and counts["phantom"] == 0 and counts["lost"] == 0
    # the failures did happen: requests rolled back or refused (the user got an error), events published again
    assert counts["not_committed"] > 0.05 * counts["produced"] and counts["rejected"] == counts["not_committed"]
    assert total(result, "outbox.orders.database.crashes") > 0 and total(result, "outbox.orders.database.rolled_back") > 0
    assert total(result, "outbox.orders.relay.failed_polls") > 0 and total(result, "outbox.orders.died_in_transaction") > 0
    assert counts["suppressed"] > 0 and counts["duplicates"] == 0
    assert_checks_pass(result)


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_relay_crash_between_publish_and_mark_duplicates_exactly_what_the_idempotent_consumer_suppresses(idempotent):
    # traffic stops 100 s before the end, so every copy published has been processed by then
    arrivals = {"process": "schedule", "steps": [{"duration": "600s", "rate": 10}, {"duration": "100s", "rate": 0}]}
    relay = {"poll_interval": "500ms", "crash_before_mark": {"probability": 0.05, "restart_time": "2s"}}
    result = run(scenario(duration=700, warmup=20, arrivals=arrivals, outbox={"relay": relay}, idempotent=idempotent), replications=4)
    published_again = total(result, "outbox.orders.relay.republished")
    counts = result.counts()
    assert published_again > 300
    assert counts["in_flight"] == 0
    if idempotent:
        assert counts["suppressed"] == published_again and counts["duplicates"] == 0
    else:
        assert counts["duplicates"] == published_again and counts["suppressed"] == 0
    assert counts["never_delivered"] == counts["phantom"] == 0
    assert_checks_pass(result)


def test_relays_without_skip_locked_publish_the_same_rows_and_with_it_never():
    def relays(skip_locked):
        relay = {"relays": 3, "skip_locked": skip_locked, "poll_interval": "200ms", "publish_time": "5ms"}
        return run(scenario(rate=20.0, duration=300, warmup=20, outbox={"relay": relay}), replications=4)

    unlocked = relays(False)
    again = total(unlocked, "outbox.orders.relay.republished")
    assert again > 0.01 * unlocked.counts()["produced"]
    assert unlocked.counts()["duplicates"] == pytest.approx(again, abs=4 * 20)  # copies still in the queue at the end aside
    assert_checks_pass(unlocked)
    locked = relays(True)
    assert total(locked, "outbox.orders.relay.republished") == 0 and locked.counts()["duplicates"] == 0
    # three relays share the polling: each row waits a sixth of the interval, not half of it
    assert locked.estimate("outbox.orders.publish_delay_s.mean").mean < 0.1
    assert_checks_pass(locked)


# --- the database -------------------------------------------------------------------------------


def test_transactions_wait_for_a_connection_as_in_an_mmc_queue():
    # Poisson requests (150/s), exponential transactions (mean 20 ms), 4 connections: M/M/4 at
    # 75% busy. The relay tails the log (CDC) so that it takes no connection of the pool.
    spec = scenario(rate=150.0, duration=150, warmup=10, outbox={"relay": {"kind": "cdc", "lag": "10ms"}}, workers=2, service="1ms")
    database = type(spec.outbox[0].database).model_validate({"commit_time": {"dist": "exponential", "mean": "20ms"}, "connections": 4})
    spec = spec.model_copy(update={"outbox": [spec.outbox[0].model_copy(update={"database": database})]})
    result = run(spec, replications=6)
    theory = mmc(150.0, 50.0, 4)
    wait = result.estimate("outbox.orders.database.connection_wait_s.mean")
    assert wait.contains(theory.wait_s), (theory.wait_s, wait)
    assert result.estimate("outbox.orders.database.utilization").mean == pytest.approx(0.75, rel=0.02)
    latency = result.estimate("outbox.orders.request_latency_s.mean")
    assert latency.contains(theory.sojourn_s), (theory.sojourn_s, latency)
    assert_checks_pass(result)


def test_a_saturated_pool_makes_the_second_of_two_simultaneous_transactions_wait_for_the_first():
    # two producers send a request each at 0.1 s, 0.2 s, ...: two transactions of 30 ms start at
    # once on a pool of one connection; the second waits the 30 ms of the first
    spec = scenario(duration=100, warmup=10, arrivals={"process": "deterministic", "rate": 10},
                    outbox={"relay": {"kind": "cdc", "lag": "1ms"}}, workers=2, service="1ms")
    data = _as_dict(spec)
    data["producers"].append({**data["producers"][0], "name": "checkout-2"})
    data["outbox"][0]["database"] = {"commit_time": "30ms", "connections": 1}
    result = run(scenario_from_dict(data), replications=2)
    # (the pair arriving just as the window opens may count one of its two: hence rel=1e-3)
    assert result.estimate("outbox.orders.database.connection_wait_s.mean").mean == pytest.approx(0.015, rel=1e-3)
    assert result.estimate("outbox.orders.database.connection_wait_s.p999").mean == pytest.approx(0.030, rel=RELATIVE_ACCURACY)
    assert result.estimate("outbox.orders.request_latency_s.mean").mean == pytest.approx(0.045)
    assert result.estimate("outbox.orders.database.utilization").mean == pytest.approx(0.6, rel=1e-3)
    assert result.estimate("outbox.orders.database.waiting_mean").mean == pytest.approx(0.3, rel=1e-3)  # L = λW: 10/s × 30 ms
    assert_checks_pass(result)
    # a request every 50 ms on the same pool is more than one connection can take: refused before running
    data["producers"][0]["arrivals"] = data["producers"][1]["arrivals"] = {"process": "deterministic", "rate": 20}
    with pytest.raises(ScenarioError, match="the connection pool would be busy 1.2 of the time"):
        scenario_from_dict(data)


def _as_dict(spec):
    return spec.model_dump(mode="json", exclude_none=True)


# --- scenario files: wiring and errors ----------------------------------------------------------


GOOD = """\
name: wiring
duration: 10m
producers:
  - name: checkout
    arrivals: {process: poisson, rate: 20/s}
    sends_to: orders
outbox:
  - name: orders
    database: {commit_time: {dist: lognormal, mean: 4ms, cv: 0.5}, connections: 20}
    relay: {poll_interval: 500ms, batch_size: 100}
    publishes_to: payments
brokers:
  - name: payments
    kind: fifo
workers:
  - name: payment-service
    consumes: payments
    count: 4
    service_time: {dist: lognormal, mean: 90ms, cv: 1.2}
"""


def test_the_design_documents_outbox_keys_load_and_default_to_a_polling_relay():
    spec = load_scenario_text(GOOD)
    relay = spec.outbox[0].relay
    assert relay.kind == "polling" and relay.poll_interval == 0.5 and relay.batch_size == 100 and relay.skip_locked
    assert spec.outbox[0].database.connections == 20


@pytest.mark.parametrize(
    "change, expected",
    [
        (("publishes_to: payments", "publishes_to: paymnts"), "wiring.yaml:11: outbox.orders.publishes_to: 'paymnts' is not a broker; did you mean 'payments'?"),
        (("sends_to: orders", "sends_to: ordrs"), "wiring.yaml:6: producers.checkout.sends_to: 'ordrs' is not a broker, an outbox, a dual write, a delay station or a web tier; did you mean 'orders'?"),
        (("batch_size: 100}", "batch_size: 100, poll_intervl: 1s}"), "wiring.yaml:10: outbox.orders.relay.poll_intervl: unknown key 'poll_intervl'; did you mean 'poll_interval'?"),
        (("relay: {", "relay: {kind: kafka, "), "wiring.yaml:10: outbox.orders.relay.kind: unknown kind 'kafka' (expected one of: 'polling', 'cdc')"),
        (("connections: 20}", "connections: 0}"), "wiring.yaml:9: outbox.orders.database.connections: must be ≥ 1, got 0"),
        (("batch_size: 100}", "batch_size: 5}"), "wiring.yaml:10: outbox.orders.relay: unstable: 20 events/s committed, but the relays publish at most 10/s"),
        (("    publishes_to: payments", "    publishes_to: payments\n    crash_probability: 2"), "wiring.yaml:12: outbox.orders.crash_probability: must be ≤ 1.0, got 2"),
    ],
)
def test_bad_outbox_input_is_named_by_file_line_and_field(change, expected):
    old, new = change
    assert old in GOOD
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(GOOD.replace(old, new, 1), source="wiring.yaml")
    assert expected in str(caught.value), str(caught.value)


def test_an_outbox_nobody_sends_to_is_reported():
    text = GOOD.replace("sends_to: orders", "sends_to: payments")
    with pytest.raises(ScenarioError, match=r"wiring.yaml:8: outbox.orders: nothing sends to it"):
        load_scenario_text(text, source="wiring.yaml")


def test_the_stability_check_follows_events_through_the_outbox_to_its_broker():
    text = GOOD.replace("count: 4", "count: 1")  # 20/s × 90 ms = 1.8 erlangs on 1 worker
    with pytest.raises(ScenarioError, match=r"wiring.yaml:13: brokers.payments: unstable: offered load 20/s ≥ capacity 11.1"):
        load_scenario_text(text, source="wiring.yaml")


# --- the Recorder's classification ----------------------------------------------------------------


def test_the_recorder_classifies_each_event_once():
    recorder = Recorder(warmup_s=0.0, duration_s=10.0)
    recorder.track_consistency()
    messages = [Fates(recorder).new_message(0.0) for _ in range(7)]
    once, twice, suppressed, lost, phantom, rejected_phantom, refused = messages
    for m in messages:
        recorder.admitted(m, 0.0)
    for m in (once, twice, suppressed, lost):
        recorder.committed(m, 1.0)
    recorder.processed(once, 2.0)
    recorder.processed(twice, 2.0)
    recorder.processed(twice, 3.0)
    recorder.processed(suppressed, 2.0)
    recorder.suppressed(suppressed, 3.0)
    recorder.lost(lost, 2.0)
    recorder.processed(phantom, 1.5)  # published first, processed, then its commit failed
    recorder.not_committed(phantom, 2.0)
    # the user got an error and the message was settled rejected, yet a copy was processed
    recorder.not_committed(rejected_phantom, 1.0)
    recorder.rejected(rejected_phantom, 1.0, admitted=True)
    recorder.processed(rejected_phantom, 2.0)
    recorder.not_committed(refused, 1.0)
    recorder.rejected(refused, 1.0, admitted=True)
    counts = recorder.counts()
    assert {k: counts[k] for k in ("committed", "not_committed", "delivered_once", "delivered_more_than_once", "never_delivered",
                                   "phantom", "suppressed", "committed_in_flight", "duplicates")} == {
        "committed": 4, "not_committed": 3, "delivered_once": 1, "delivered_more_than_once": 2, "never_delivered": 1,
        "phantom": 2, "suppressed": 1, "committed_in_flight": 0, "duplicates": 1}
    # the outcomes are as before: a message rejected stays rejected even when a copy is processed
    assert (counts["processed"], counts["lost"], counts["rejected"]) == (4, 1, 2)
    assert recorded(recorder.commit_to_processed_s) == [1.0, 1.0, 1.0]
