"""``kind: redis``: lists (plain and reliable) and streams, worker crashes, poison messages, broker
crashes with each persistence mode, and maxmemory with each maxmemory-policy.

Two kinds of test. Unit tests drive the models by hand in a SimPy environment and check exact
behaviour (who gets what, when, what a crash takes back). Statistical tests run scenarios with fixed
seeds and check the simulated estimates against numbers derived from the model, by the 95%
confidence interval over replications; every scenario also passes the conservation and Little's law
checks.
"""

import math
from collections import Counter

import numpy as np
import pytest
import simpy

from models.broker import Consumer
from models.fates import Fates
from models.redis_list import RedisList
from models.redis_stream import RedisStream
from models.workers import Done, WorkerOptions, WorkerPool
from sim import ScenarioError, load_scenario, run, scenario_from_dict
from sim.analytic import mmck
from sim.distributions import Deterministic, Sampler
from sim.recorder import DEAD_LETTERED, LOST, PROCESSED, REJECTED, Recorder
from sim.stats import mean_ci

# --- helpers ------------------------------------------------------------------------------------


def scenario(broker=None, pool=None, arrivals=None, duration=20_000, warmup=200, seed=1, extra_brokers=()):
    return scenario_from_dict({
        "name": "redis",
        "seed": seed,
        "duration": duration,
        "warmup": warmup,
        "producers": [{"name": "source", "arrivals": arrivals or {"process": "poisson", "rate": 2.0}, "sends_to": "queue"}],
        "brokers": [{"name": "queue", "kind": "redis", **(broker or {})}, *extra_brokers],
        "workers": [{"name": "pool", "consumes": "queue", "count": 4, "service_time": {"dist": "deterministic", "value": 1.0}, **(pool or {})}],
    })


def assert_checks(result):
    summary = result.summary()
    assert summary["failures"] == []
    assert summary["conservation"]["ok"], summary["conservation"]
    assert all(c["ok"] for c in summary["littles_law"]), summary["littles_law"]


def per_replication(result, numerator, denominator):
    """The 95% CI over replications of a per-replication ratio of two columns."""
    table = result.replications
    return mean_ci((table[numerator] / table[denominator]).to_numpy())


class Bench:
    """A broker driven by hand: an environment, a Recorder with no warm-up, messages on demand."""

    def __init__(self, cls=RedisList, until=10_000.0, **options):
        self.env = simpy.Environment()
        self.recorder = Recorder(0.0, until)
        self.fates = Fates(self.recorder)
        needs_in_flight = cls is RedisStream or options.get("reliable")
        in_flight = self.recorder.boundary("q:in_flight", "broker") if needs_in_flight else None
        self.broker = cls(self.env, "q", self.recorder.boundary("q", "broker", True), self.recorder.counter("q"), self.fates,
                          in_flight=in_flight, **options)
        self.messages = []

    def publish(self, n=1):
        out = []
        for _ in range(n):
            message = self.fates.new_message(self.env.now)
            if self.broker.put(message):
                self.recorder.admitted(message, self.env.now)
            else:
                self.recorder.rejected(message, self.env.now, admitted=False)
            out.append(message)
            self.messages.append(message)
        return out

    def take(self, consumer):
        """One receive that must not block, done at once."""
        receive = self.broker.receive(consumer)
        try:
            next(receive)
        except StopIteration as done:
            return done.value
        raise AssertionError("the receive blocked")

    def waiting_ids(self):
        return [entry.message.id for entry in self.broker.ready]

    def at(self, t):
        self.env.run(until=t)

    def outcome(self, message):
        return self.recorder.outcome_of(message.id)


# --- plain list: LPUSH / BRPOP ------------------------------------------------------------------


def test_blocked_clients_are_served_longest_waiting_first_and_a_pop_is_at_most_once():
    bench = Bench()
    env, broker = bench.env, bench.broker
    got = []

    def client(name, start):
        consumer = Consumer(name)
        yield env.timeout(start)
        deliveries = yield from broker.receive(consumer)
        got.append((name, deliveries[0].message.id, env.now))

    for name, start in (("c", 3), ("a", 1), ("b", 2)):
        env.process(client(name, start))
    bench.at(5)
    first, second = bench.publish(2)
    bench.at(6)
    assert got == [("a", first.id, 5), ("b", second.id, 5)]
    assert [consumer.name for _, consumer in broker.blocked] == ["c"]
    (third,) = bench.publish()
    bench.at(7)
    assert got[-1] == ("c", third.id, 6) and not broker.blocked
    # a pop is the end of it in Redis: a failed attempt has nothing to go back to
    worker = Consumer("w")
    (failed,) = bench.publish()
    (delivery,) = bench.take(worker)
    worker.held.remove(delivery)
    broker.nack(delivery)
    assert bench.outcome(failed) == LOST and broker.counts["lost"] == 1 and not broker.copies.get(failed)


def test_a_worker_crash_loses_the_popped_message_with_probability_one_minus_exp_of_minus_s_over_m():
    # A worker holds a message only while serving it (S = 1 s, no delivery latency), and exponential
    # times to failure (M = 20 s) have no memory: whatever happened before, the service is cut short
    # with probability 1 − exp(−S/M). A BRPOP'd message exists nowhere else, so each message is lost
    # with that probability, independently of the Poisson arrivals.
    expected = 1 - math.exp(-1.0 / 20.0)
    result = run(scenario(pool={"crashes": {"mtbf": "20s", "restart_time": "5s"}}, duration=10_000), replications=8)
    lost = result.estimate("system.lost_rate")
    assert lost.contains(expected), (expected, lost)
    assert lost.half_width < 0.1 * expected
    assert result.counts()["duplicates"] == 0
    assert_checks(result)


# --- reliable list: BLMOVE / LREM / monitor -----------------------------------------------------


def test_reliable_list_loses_nothing_to_the_same_crashes_and_redelivers_what_they_interrupt():
    # Each attempt is cut short with probability q = 1 − exp(−S/M), and a cut attempt is followed by
    # another (the monitor pushes the item back after the 5 s timeout): attempts per message are
    # geometric with mean 1/(1 − q) = exp(S/M), so redeliveries per message are exp(S/M) − 1. The
    # work and its LREM happen at the same instant, so a crash causes no duplicate.
    expected = math.exp(1.0 / 20.0) - 1
    broker = {"reliable": True, "processing_timeout": "5s", "monitor_interval": "1s"}
    result = run(scenario(broker, pool={"crashes": {"mtbf": "20s", "restart_time": "5s"}}, duration=10_000), replications=8)
    counts = result.counts()
    assert counts["lost"] == 0
    assert counts["duplicates"] == 0
    redeliveries = per_replication(result, "brokers.queue.redeliveries", "counts.produced")
    assert redeliveries.contains(expected), (expected, redeliveries)
    assert redeliveries.half_width < 0.1 * expected
    requeued = result.estimate("brokers.queue.requeued").mean
    assert requeued == pytest.approx(result.estimate("brokers.queue.redeliveries").mean, rel=0.01)
    assert result.estimate("brokers.queue.in_flight_mean").mean > 0
    assert_checks(result)


def test_reliable_list_processes_twice_what_outlives_the_processing_timeout():
    # Service S = 1 s, timeout τ = 0.8 s, monitor every P = 0.4 s. An item taken at t is pushed back
    # at the first tick after t + τ, which (ticks being uniform relative to Poisson arrivals) is
    # t + τ + U·P with U ~ U(0, 1): before the worker's LREM at t + S with probability
    # (S − τ)/P = 0.5. With 20 workers mostly idle, another worker BLMOVEs the copy at once; the
    # late worker's LREM (by value) then removes that copy's processing entry, so the copy's own
    # work is never pushed back again and each message is processed once or twice: duplicates per
    # message = (S − τ)/P.
    expected = (1.0 - 0.8) / 0.4
    broker = {"reliable": True, "processing_timeout": "800ms", "monitor_interval": "400ms"}
    result = run(scenario(broker, pool={"count": 20}, duration=4_000), replications=6)
    counts = result.counts()
    assert counts["lost"] == 0
    duplicates = mean_ci([r.counts["duplicates"] / r.counts["produced"] for r in result.results])
    assert duplicates.contains(expected), (expected, duplicates)
    assert duplicates.half_width < 0.05 * expected
    # every pushed-back copy is delivered again, and the second LREM of each message finds nothing
    assert result.estimate("brokers.queue.redeliveries").mean == pytest.approx(result.estimate("brokers.queue.requeued").mean, rel=0.01)
    assert result.estimate("brokers.queue.acks_missed").mean == pytest.approx(result.estimate("brokers.queue.requeued").mean, rel=0.01)
    assert_checks(result)


def test_lrem_of_an_item_already_pushed_back_finds_nothing_or_the_other_copy():
    bench = Bench(reliable=True, processing_timeout=10.0, monitor_interval=1.0, monitor_phase=0.5)
    broker = bench.broker
    slow, other = Consumer("slow"), Consumer("other")
    (message,) = bench.publish()
    (first,) = bench.take(slow)
    assert broker.pending_count() == 1 and not bench.waiting_ids()
    bench.at(11)  # the tick at 10.5 finds it held 10.5 s > 10 s: pushed back
    assert broker.counts["requeued"] == 1 and bench.waiting_ids() == [message.id]
    assert broker.pending_count() == 0
    # the slow worker finishes now: LREM finds nothing, and the copy waits to be processed again
    slow.held.remove(first)
    bench.recorder.processed(message, 11)
    broker.ack(first)
    assert broker.counts["acks_missed"] == 1 and bench.waiting_ids() == [message.id]
    (second,) = bench.take(other)
    assert second.redelivered and second.receive_count == 2
    other.held.remove(second)
    bench.recorder.processed(message, 12)
    broker.ack(second)
    assert bench.recorder.duplicates == 1
    assert broker.pending_count() == 0 and not broker.copies


def test_a_failed_attempt_on_a_reliable_list_waits_for_the_monitor():
    bench = Bench(reliable=True, processing_timeout=5.0, monitor_interval=1.0, monitor_phase=0.25)
    broker = bench.broker
    consumer = Consumer("w")
    (message,) = bench.publish()
    (delivery,) = bench.take(consumer)
    consumer.held.remove(delivery)
    broker.nack(delivery)
    assert broker.pending_count() == 1 and bench.outcome(message) == 0
    bench.at(6)  # ticks at 0.25, 1.25, ... 5.25: held 5.25 s > 5 s
    assert bench.waiting_ids() == [message.id]


# --- streams: XREADGROUP / XACK / XAUTOCLAIM ----------------------------------------------------


def test_xautoclaim_hands_a_crashed_consumers_entry_to_another_after_min_idle_time():
    bench = Bench(RedisStream, min_idle_time=30.0, claim_interval=5.0)
    env, broker = bench.env, bench.broker
    crashed, rescuer = Consumer("crashed"), Consumer("rescuer")
    got = []
    (message,) = bench.publish()
    (first,) = bench.take(crashed)

    def crash():
        yield env.timeout(1)
        held, crashed.held = crashed.held, []
        broker.disconnect(crashed, held)

    def rescue():
        yield env.timeout(0.5)
        deliveries = yield from broker.receive(rescuer)
        got.extend((d, env.now) for d in deliveries)

    env.process(crash())
    env.process(rescue())
    bench.at(100)
    # the rescuer claims at 0.5, 5.5, 10.5 ... ; at 30.5 the entry has been idle 30.5 s > 30 s
    ((delivery, when),) = got
    assert delivery.message is message and when == pytest.approx(30.5)
    assert 30.0 < when - first.delivered_s <= 30.0 + 5.0
    assert delivery.receive_count == 2 and delivery.redelivered
    assert broker.counts["claimed"] == 1 and broker.counts["redeliveries"] == 1
    assert broker.pel[delivery.tag].owner is rescuer
    rescuer.held.remove(delivery)
    broker.ack(delivery)
    assert broker.pending_count() == 0 and not broker.copies and bench.outcome(message) == 0


def test_poison_messages_reach_the_dead_letter_stream_after_exactly_max_deliveries():
    env = simpy.Environment()
    recorder = Recorder(0.0, 10_000.0)
    fates = Fates(recorder)
    dead = RedisStream(env, "dead", recorder.boundary("dead", "broker"), recorder.counter("dead"), fates,
                       in_flight=recorder.boundary("dead:in_flight", "broker"))
    queue = RedisStream(
        env, "q", recorder.boundary("q", "broker"), recorder.counter("q"), fates, in_flight=recorder.boundary("q:in_flight", "broker"),
        min_idle_time=2.0, claim_interval=1.0, max_deliveries=3, dead_letter=lambda: dead,
    )
    deliveries = Counter()
    new_delivery = queue._new_delivery

    def spy(entry, consumer, tag, count=None):
        delivery = new_delivery(entry, consumer, tag, count)
        deliveries[delivery.message.id] += 1
        assert delivery.receive_count == deliveries[delivery.message.id]
        return delivery

    queue._new_delivery = spy
    pool = WorkerPool(
        env, "pool", queue, 4, Sampler(Deterministic(0.1), np.random.default_rng(0)), Done(env, fates), fates,
        recorder.boundary("pool", "workers"), recorder.gauge("pool", 4), recorder.counter("pool"),
        WorkerOptions(poison_fraction=0.2, error_draw=lambda: 1.0),
    )
    messages = []
    for _ in range(300):
        message = fates.new_message(0.0)
        assert queue.put(message)
        recorder.admitted(message, 0.0)
        messages.append(message)
    env.run(until=1_000)
    poison = [m for m in messages if pool._is_poison(m)]
    assert 40 < len(poison) < 80
    for message in messages:
        if pool._is_poison(message):
            assert deliveries[message.id] == 3 and recorder.outcome_of(message.id) == DEAD_LETTERED
        else:
            assert deliveries[message.id] == 1 and recorder.outcome_of(message.id) == PROCESSED
    assert dead.parked == len(poison) and queue.counts["dead_lettered"] == len(poison)
    assert queue.counts["redeliveries"] == 2 * len(poison)
    assert queue.pending_count() == 0 and not queue.copies


def test_a_stream_dead_letters_its_poison_and_recovers_crashed_consumers_without_loss():
    # Poison messages (10% of ids) fail on every attempt: delivered max_deliveries = 3 times, then
    # dead-lettered — whether an attempt ends in an error or in a crash, it is one of the 3, so a
    # poison message has exactly 2 redeliveries. Crashes (M = 200 s, S = 1 s) leave the others'
    # entries pending until another consumer claims them: an attempt is cut with probability
    # q = 1 − exp(−S/M), attempts are geometric, exp(S/M) − 1 redeliveries per message. Nothing
    # is lost.
    broker = {"mode": "stream", "min_idle_time": "5s", "claim_interval": "1s", "max_deliveries": 3, "dead_letter": "dead"}
    dead = {"name": "dead", "kind": "redis", "mode": "stream", "max_messages": 1_000_000}
    pool = {"errors": {"poison_fraction": 0.1}, "crashes": {"mtbf": "200s", "restart_time": "5s"}}
    result = run(scenario(broker, pool=pool, duration=10_000, extra_brokers=[dead]), replications=6)
    counts = result.counts()
    assert counts["lost"] == 0
    dead_lettered = result.estimate("system.dead_lettered_rate")
    assert abs(dead_lettered.mean - 0.1) < 0.005, dead_lettered
    expected = 0.9 * (math.exp(1.0 / 200.0) - 1) + 0.1 * 2
    redeliveries = per_replication(result, "brokers.queue.redeliveries", "counts.produced")
    assert redeliveries.contains(expected), (expected, redeliveries)
    assert redeliveries.half_width < 0.01 * expected
    assert result.estimate("brokers.dead.parked").mean == pytest.approx(result.estimate("brokers.queue.dead_lettered").mean)
    assert_checks(result)


# --- broker crashes and persistence -------------------------------------------------------------


def test_a_crash_rolls_a_list_back_to_its_last_snapshot():
    bench = Bench(persistence="rdb", rdb_interval=10.0)
    broker = bench.broker
    worker = Consumer("w")
    a, b, c = bench.publish(3)
    bench.at(10.5)  # snapshot at 10: [a, b, c]
    (delivery,) = bench.take(worker)
    assert delivery.message is a
    (d,) = bench.publish()
    broker.crash()
    # the pop of a is undone (a is back, at the head), the push of d is lost
    assert bench.waiting_ids() == [a.id, b.id, c.id]
    assert bench.outcome(d) == LOST and broker.counts["writes_lost"] == 1 and broker.counts["pops_undone"] == 1
    # down: publishers are refused, the worker's message is still its own
    refused = bench.publish(2)
    assert all(bench.outcome(m) == REJECTED for m in refused) and broker.counts["refused_down"] == 2
    worker.held.remove(delivery)
    bench.recorder.processed(a, 11)
    broker.ack(delivery)
    broker.restart()
    # a comes again: processing it again is a duplicate
    (again,) = bench.take(Consumer("v"))
    assert again.message is a and again.redelivered
    bench.recorder.processed(a, 12)
    assert bench.recorder.duplicates == 1


@pytest.mark.parametrize("persistence, waiting, lost", [("none", [], 3), ("aof-always", [1, 2, 3], 0)])
def test_no_persistence_comes_back_empty_and_aof_always_loses_nothing(persistence, waiting, lost):
    bench = Bench(persistence=persistence)
    broker = bench.broker
    bench.publish(3)
    bench.at(5)
    bench.take(Consumer("w"))  # message 0, in the worker's hands either way
    bench.publish()
    broker.crash()
    assert bench.waiting_ids() == waiting
    assert broker.counts["writes_lost"] == lost and broker.counts["pops_undone"] == 0
    assert sum(bench.outcome(m) == LOST for m in bench.messages) == lost


def test_a_crash_undoes_lrem_and_blmove_on_a_reliable_list():
    bench = Bench(reliable=True, persistence="aof-everysec", processing_timeout=60.0, monitor_interval=60.0)
    broker = bench.broker
    worker = Consumer("w")
    a, b = bench.publish(2)
    (first,) = bench.take(worker)
    bench.at(3.5)  # fsync at 3: a in the processing list, b waiting
    worker.held.remove(first)
    broker.ack(first)  # LREM a
    (second,) = bench.take(worker)  # BLMOVE b
    assert broker.pending_count() == 1 and not bench.waiting_ids()
    broker.crash()
    # back to the fsync: a in the processing list again (its LREM undone), b waiting again
    assert [p.entry.message for p in broker.pending()] == [a] and bench.waiting_ids() == [b.id]
    assert broker.counts["acks_undone"] == 1 and broker.counts["pops_undone"] == 1
    # an LREM while down fails; the worker's own copy of b remains its own
    worker.held.remove(second)
    broker.ack(second)
    assert broker.counts["acks_failed"] == 1 and bench.outcome(b) == 0


def test_a_crash_takes_back_reads_claims_and_acks_of_a_stream():
    bench = Bench(RedisStream, persistence="rdb", rdb_interval=100.0, min_idle_time=10.0, claim_interval=1.0)
    broker = bench.broker
    one, two = Consumer("one"), Consumer("two")
    a, b, c = bench.publish(3)
    (da,) = bench.take(one)
    (db,) = bench.take(one)
    bench.at(100.5)  # snapshot at 100: a, b pending (one delivery each), c unread
    one.held.clear()
    broker.ack(da)  # XACK a
    claimed = bench.take(two)  # XAUTOCLAIM: b idle 100.5 s
    assert [d.message for d in claimed] == [b] and claimed[0].receive_count == 2
    (dc,) = bench.take(two)  # XREADGROUP: c
    broker.crash()
    pel = {p.entry.message.id: p for p in broker.pending()}
    assert set(pel) == {a.id, b.id} and bench.waiting_ids() == [c.id]
    assert pel[b.id].count == 1 and pel[b.id].owner is one and pel[b.id].taken_s == 0.0
    assert broker.counts["acks_undone"] == 1 and broker.counts["pops_undone"] == 1


def test_restarting_redis_keeps_consumers_waiting_and_refuses_publishers():
    bench = Bench(persistence="aof-always")
    env, broker = bench.env, bench.broker
    got = []

    def client():
        deliveries = yield from broker.receive(Consumer("w"))
        got.append(env.now)

    broker.crash()
    env.process(client())
    bench.at(2)
    assert not broker.put(bench.fates.new_message(2))
    broker.restart()
    bench.publish()
    bench.at(3)
    assert got == [2.0]


PERSISTENCE_SCENARIO = dict(
    arrivals={"process": "poisson", "rate": 6.0},
    pool={"count": 5, "service_time": {"dist": "exponential", "mean": 1.0}},
    duration=7_200,
    warmup=600,
)


def persistence_run(persistence, crashes, replications, duration=7_200, **extra):
    broker = {"persistence": persistence, "max_messages": 300, "crashes": crashes, **extra}
    return run(scenario(broker, **{**PERSISTENCE_SCENARIO, "duration": duration}), replications=replications)


@pytest.fixture(scope="module")
def persistence_results():
    # An overloaded queue held at max_messages = 300 by noeviction (6/s offered, 5/s served): every
    # message waits about a minute, so a write a crash takes back was still waiting — its message
    # is lost — and a pop it takes back is a message already being processed — processed again.
    crashes = {"mtbf": "15m", "restart_time": "5s"}
    return {p: persistence_run(p, crashes, 3, **({"rdb_interval": "20s"} if p == "rdb" else {})) for p in ("none", "rdb", "aof-everysec", "aof-always")}


def test_crash_losses_order_none_rdb_everysec_always(persistence_results):
    lost = {p: r.counts()["lost"] for p, r in persistence_results.items()}
    assert lost["none"] > lost["rdb"] > lost["aof-everysec"] > lost["aof-always"] == 0, lost
    # the same crash times in every run (the broker's crash stream is its own): per crash, none
    # loses the whole list (≈ 300), rdb the writes of the last U(0, 20 s) (≈ 5/s × 10 s), everysec
    # those of the last U(0, 1 s) (≈ 2.5)
    crashes = persistence_results["none"].estimate("brokers.queue.crashes").mean
    assert crashes > 0
    assert lost["none"] / 3 / crashes > 150
    assert 25 < lost["rdb"] / 3 / crashes < 100
    assert 0.5 < lost["aof-everysec"] / 3 / crashes < 6
    for result in persistence_results.values():
        assert_checks(result)


def test_pops_a_crash_undoes_are_processed_twice(persistence_results):
    for persistence, result in persistence_results.items():
        duplicates = result.counts()["duplicates"]
        undone = 3 * result.estimate("brokers.queue.pops_undone").mean
        if persistence in ("none", "aof-always"):
            assert duplicates == undone == 0
        else:
            # a message popped since the durable point is back in the list while its first worker
            # finishes it: it is processed twice — but a message made before the window opened
            # does not count as a duplicate, and a copy still waiting at the end is not processed
            # yet (each about as likely as a crash in the minute a message waits at either edge)
            assert undone > 0 and 0.9 * undone <= duplicates <= undone, (persistence, duplicates, undone)


def test_aof_everysec_loses_the_writes_since_the_last_fsync():
    # Crashes are exponential, the fsync clock ticks every second from the restart, so the time
    # since the last fsync at a crash is U(0, 1 s): the crash loses the writes of the last U seconds.
    # Writes come at the rate the full list frees places (the throughput X): lost per crash ≈
    # X × 0.5 s. Pops of that last second are undone too: as many duplicates. (Restarts are kept
    # short: the workers that finished during a restart of R seconds all pop when it ends, and the
    # X·R writes that refill their places fall before the first fsync of a crash that comes within
    # a second — an excess of about 2R/M on the ratio, 0.7% here.)
    result = persistence_run("aof-everysec", {"mtbf": "30s", "restart_time": "100ms"}, 10, duration=3_600)
    table = result.replications
    window = result.scenario.window_s
    per_second = table["brokers.queue.deliveries"] / window
    lost = mean_ci(np.array([r.counts["lost"] for r in result.results]) / table["brokers.queue.crashes"].to_numpy() / per_second.to_numpy())
    assert lost.contains(0.5), lost
    assert lost.half_width < 0.05
    writes = mean_ci(table["brokers.queue.writes_lost"] / table["brokers.queue.crashes"] / per_second)
    assert writes.contains(0.5), writes
    undone = table["brokers.queue.pops_undone"].sum()
    assert 0.9 * undone <= result.counts()["duplicates"] <= undone
    assert_checks(result)


def test_publishers_are_refused_while_redis_restarts():
    # 10/s offered, restarts of R = 5 s: about 10 × 5 = 50 refusals per crash; aof-always keeps
    # every acknowledged write, so nothing is lost and nothing is processed twice
    broker = {"persistence": "aof-always", "crashes": {"mtbf": "2m", "restart_time": "5s"}}
    pool = {"service_time": {"dist": "exponential", "mean": "200ms"}}
    result = run(scenario(broker, pool=pool, arrivals={"process": "poisson", "rate": 10.0}, duration=3_600), replications=5)
    # refusals over the time it was down: the arrival rate, whatever the window's edges cut
    rate = per_replication(result, "brokers.queue.refused", "brokers.queue.downtime_s")
    assert rate.contains(10.0), rate
    assert rate.half_width < 1.0
    refused = per_replication(result, "brokers.queue.refused", "brokers.queue.crashes")
    assert abs(refused.mean - 50.0) < 5, refused
    counts = result.counts()
    assert counts["rejected"] == pytest.approx(result.estimate("brokers.queue.refused").mean * 5, rel=0.01)
    assert counts["lost"] == counts["duplicates"] == 0
    downtime = per_replication(result, "brokers.queue.downtime_s", "brokers.queue.crashes")
    assert abs(downtime.mean - 5.0) < 0.5
    assert_checks(result)


# --- maxmemory with noeviction ------------------------------------------------------------------


@pytest.mark.parametrize("reliable, max_messages", [(False, 3), (True, 4)])
def test_noeviction_refuses_writes_while_full_as_an_mm1k_queue(reliable, max_messages):
    # One worker, exponential service of 1 s, Poisson 0.8/s. A plain list keeps only what waits
    # (a popped message has left Redis): with max_messages = 3 the system holds at most 4, an
    # M/M/1/4 queue. A reliable list also keeps the message in service in its processing list, so
    # max_messages = 4 bounds the same 4. Either way an arrival finding 4 is refused (PASTA).
    expected = mmck(0.8, 1.0, 1, 4).p_reject
    broker = {"max_messages": max_messages}
    if reliable:
        broker.update(reliable=True, processing_timeout="1h", monitor_interval="1m")
    pool = {"count": 1, "service_time": {"dist": "exponential", "mean": 1.0}}
    result = run(scenario(broker, pool=pool, arrivals={"process": "poisson", "rate": 0.8}), replications=6)
    rejected = result.estimate("system.rejected_rate")
    assert rejected.contains(expected), (expected, rejected)
    assert rejected.half_width < 0.1 * expected
    assert result.estimate("brokers.queue.refused_full").mean > 0
    counts = result.counts()
    assert counts["produced"] == counts["processed"] + counts["rejected"] + counts["in_flight"]
    assert_checks(result)


# --- maxmemory-policy: allkeys-* evict the queue whole ------------------------------------------


def test_under_allkeys_random_an_overloaded_list_loses_the_excess_in_whole_queues_of_max_messages():
    # 10 jobs/s (Poisson) into a plain list that 8 workers of 1 s drain at 8/s, maxmemory 50
    # messages, allkeys-random. The backlog grows at 2/s; the push that finds 50 waiting evicts the
    # list (its only key) and every message in it. So each eviction loses exactly 50, and in the
    # long run everything above the workers' capacity is lost: 10 − 8 / 1 = 2 a second. (The
    # warm-up of 500 s lets the arrivals' noise, sd √5000 ≈ 71 messages, spread the sawtooth's phase
    # over more than a period, so that the window's ends fall anywhere in it.)
    result = run(scenario({"max_messages": 50, "maxmemory_policy": "allkeys-random"},
                          pool={"count": 8, "service_time": {"dist": "deterministic", "value": 1.0}},
                          arrivals={"process": "poisson", "rate": 10.0}, duration=2500, warmup=500), replications=6)
    table = result.replications
    assert (table["brokers.queue.evicted"] == 50 * table["brokers.queue.evictions"]).all()
    assert (table["brokers.queue.evictions"] >= 60).all()
    lost_per_s = mean_ci((table["brokers.queue.lost"] / 2000).to_numpy())
    assert lost_per_s.contains(2.0) and lost_per_s.half_width < 0.1, lost_per_s
    assert result.estimate("brokers.queue.refused").mean == 0
    assert_checks(result)


@pytest.mark.slow
def test_the_eviction_scenario_loses_one_whole_queue_where_noeviction_refuses(root):
    result = run(load_scenario(root / "scenarios" / "redis-eviction.yaml", ["duration=8m", "warmup=2m"]), replications=2)
    table = result.replications
    assert (table["brokers.evicting.evictions"] == 1).all() and (table["brokers.evicting.lost"] == 2000).all()
    assert (table["brokers.refusing.lost"] == 0).all() and (table["brokers.refusing.refused_full"] > 1000).all()
    assert (table["brokers.evicting.refused"] == 0).all()


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl"])
def test_a_volatile_policy_refuses_as_noeviction_does(policy):
    broker = {"max_messages": 3}
    pool = {"count": 1, "service_time": {"dist": "exponential", "mean": 1.0}}
    noeviction = run(scenario(broker, pool=pool, arrivals={"process": "poisson", "rate": 0.8}, duration=2000), replications=2)
    volatile = run(scenario({**broker, "maxmemory_policy": policy}, pool=pool,
                            arrivals={"process": "poisson", "rate": 0.8}, duration=2000), replications=2)
    assert volatile.summary()["counts"] == noeviction.summary()["counts"]


# --- the scenario file and the schema -----------------------------------------------------------


@pytest.mark.parametrize("name, what", [("redis-worker-crashes.yaml", "lost"), ("redis-reliable-duplicates.yaml", "duplicates")])
def test_redis_scenarios_show_their_point(root, name, what):
    scenario_ = load_scenario(root / "scenarios" / name, ["duration=30m", "warmup=2m"])
    result = run(scenario_, replications=3)
    counts = result.counts()
    assert counts[what] > 0
    if what == "duplicates":
        assert counts["lost"] == 0
    assert_checks(result)


@pytest.mark.parametrize("broker, complaint", [
    ({"mode": "stream", "reliable": True}, "for mode list only"),
    ({"min_idle_time": "5s"}, "for mode stream only"),
    ({"processing_timeout": "5s"}, "only with reliable: true"),
    ({"mode": "stream", "max_deliveries": 3}, "go together"),
    ({"rdb_interval": "1m", "persistence": "aof-always"}, "only with persistence: rdb"),
    ({"persistence": "aof"}, "persistence"),
    ({"save": [["60s", 1]], "persistence": "aof-no"}, "save: only with persistence: rdb"),
    ({"save": [["60s", 1]], "rdb_interval": "1m"}, "not both"),
    ({"round_trip": "1ms"}, "round_trip: only with command_time"),
    ({"maxmemory_policy": "allkeys-lru"}, "maxmemory_policy: only with max_messages"),
    ({"max_messages": 5, "maxmemory_policy": "lru"}, "maxmemory_policy"),
])
def test_the_schema_refuses_keys_that_do_not_fit(broker, complaint):
    with pytest.raises(ScenarioError) as caught:
        scenario(broker)
    assert complaint in str(caught.value)


def test_a_saturated_redis_server_caps_the_throughput_of_cheap_work():
    """Redis executes one command at a time. A plain list costs two commands a message (LPUSH,
    BRPOP); at 1 ms a command, 700 pushes a second into a list bounded at 200 (refused ones take
    the server's time too) leave 0.3 of the server to the consumers' BRPOPs: 300 messages a second,
    whatever the 40 workers of 1 ms could do. (A reliable list here would deadlock: once the list
    is full with nothing in processing, every BLMOVE is refused as denyoom.)"""
    result = run(scenario({"max_messages": 200, "command_time": "1ms"},
                          pool={"count": 40, "service_time": {"dist": "deterministic", "value": 0.001}},
                          arrivals={"process": "poisson", "rate": 700.0}, duration=120, warmup=20), replications=1, jobs=1)
    throughput = result.estimate("brokers.queue.deliveries").mean / 100
    assert throughput == pytest.approx(300, rel=0.02)
    assert result.estimate("brokers.queue.server_utilization").mean == pytest.approx(1.0, abs=0.02)


def test_save_rules_default_to_redis_conf_and_can_be_given():
    assert scenario({}).brokers[0].save is None
    given = scenario({"save": [["15m", 1], ["1m", 500]]}).brokers[0]
    assert given.save == [(900.0, 1), (60.0, 500)]


def test_bounds_and_dead_letter_targets():
    bounded = scenario({"max_messages": 10}).brokers[0]
    assert bounded.bounds_queue() and bounded.dead_letter_targets() == []
    stream = scenario(
        {"mode": "stream", "max_deliveries": 5, "dead_letter": "dead"},
        extra_brokers=[{"name": "dead", "kind": "redis", "mode": "stream", "max_messages": 1000}],
    ).brokers[0]
    assert not stream.bounds_queue() and stream.dead_letter_targets() == ["dead"]
