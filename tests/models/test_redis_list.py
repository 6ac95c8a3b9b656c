"""models/redis_list.py (with models/redis.py and models/redis_persistence.py): LPUSH + BRPOP is
at-most-once; the reliable list's monitor pushes back what is held too long; ``maxmemory`` with
``noeviction`` refuses writes; a crash falls back to the persistence mode's durable point."""

import pytest
import simpy

from models.crashes import Crashes
from models.redis_eviction import EvictionPolicy
from models.redis_list import RedisList
from tests.models.drive import Reader, ack_after, at, constant, draws, nack_after


def make(fates, counts, level, **options):
    env = simpy.Environment()
    boundary, in_flight = level(), level()
    broker = RedisList(env, "q", boundary, counts(), fates, in_flight=in_flight, **options)
    return env, broker, boundary, in_flight


def put_at(env, broker, fates, time_s, log=None):
    """Publish a new message at ``time_s``; ``log`` gets (message id, accepted)."""
    def publish():
        message = fates.new_message(env.now)
        accepted = broker.put(message)
        if log is not None:
            log.append((message.id, accepted))
    at(env, time_s, publish)


def test_a_plain_pop_is_at_most_once_what_a_consumer_dies_holding_or_fails_is_lost(fates, observer, counts, level):
    env, broker, boundary, _ = make(fates, counts, level)
    for _ in range(4):
        assert broker.put(fates.new_message(0.0))
    dies = Reader(env, broker, "dies", receives=1)  # pops message 0 and holds it
    at(env, 2.0, dies.die)
    fails = Reader(env, broker, "fails", nack_after(1.0), start_s=2.0, receives=1)  # pops 1, fails it at 3
    works = Reader(env, broker, "works", ack_after(1.0), start_s=3.0, receives=2)  # 2 then 3, acknowledged
    env.run(until=10)
    assert (dies.got, fails.got, works.got) == ([(0, 0.0, 1)], [(1, 2.0, 1)], [(2, 3.0, 1), (3, 4.0, 1)])
    assert observer.fates("lost") == [(0, 2.0), (1, 3.0)]
    assert broker.counts["lost"] == 2 and broker.counts["deliveries"] == 4 and broker.counts["redeliveries"] == 0
    assert broker.waiting == 0 and list(broker.held_ids()) == [] and broker.copies == {}
    assert boundary.area == 0.0 + 2.0 + 3.0 + 4.0  # each message waited until its pop


def test_blocked_consumers_are_served_longest_waiting_first_and_one_that_leaves_is_skipped(fates, counts, level):
    env, broker, _, _ = make(fates, counts, level)
    c = Reader(env, broker, "c", start_s=0.0)
    a = Reader(env, broker, "a", start_s=1.0)
    b = Reader(env, broker, "b", start_s=2.0)
    at(env, 3.0, b.die)  # withdraws its BRPOP
    for time_s in (5.0, 6.0, 7.0):
        put_at(env, broker, fates, time_s)
    env.run(until=10)
    assert (c.got, a.got, b.got) == ([(0, 5.0, 1), (2, 7.0, 1)], [(1, 6.0, 1)], [])
    assert [consumer.name for _, consumer in broker.blocked] == ["a", "c"]


def test_the_monitor_pushes_back_at_its_tick_an_item_held_longer_than_the_timeout(fates, observer, counts, level):
    env, broker, boundary, in_flight = make(
        fates, counts, level, reliable=True, processing_timeout=12.0, monitor_interval=10.0, monitor_phase=5.0)
    broker.put(fates.new_message(0.0))
    slow = Reader(env, broker, "slow", ack_after(27.0), start_s=3.0, receives=1)  # BLMOVE at 3, LREM at 30
    other = Reader(env, broker, "other", ack_after(6.0), start_s=4.0, receives=1)
    env.run(until=20)
    # the ticks are at 5, 15, 25: at 15 the item has been held exactly 12 s, not longer
    assert other.got == [] and broker.counts["requeued"] == 0 and list(broker.held_ids()) == [0]
    env.run(until=40)
    assert slow.got == [(0, 3.0, 1)] and other.got == [(0, 25.0, 2)]
    assert broker.counts["requeued"] == 1 and broker.counts["redeliveries"] == 1 and broker.counts["deliveries"] == 2
    # the late LREM at 30 removes the newest copy, the other consumer's: its own LREM at 31 finds nothing
    assert broker.counts["acks_missed"] == 1 and broker.processing == {} and broker.copies == {}
    assert observer.log == []  # nothing lost: the message was processed twice
    assert in_flight.area == (25.0 - 3.0) + (30.0 - 25.0) and boundary.area == 3.0


def test_a_reliable_list_loses_nothing_to_a_failure_or_a_crash_the_monitor_redelivers_both(fates, observer, counts, level):
    env, broker, _, in_flight = make(
        fates, counts, level, reliable=True, processing_timeout=5.0, monitor_interval=1.0, monitor_phase=1.0)
    for _ in range(2):
        broker.put(fates.new_message(0.0))
    fails = Reader(env, broker, "fails", nack_after(1.0), receives=1)
    dies = Reader(env, broker, "dies", receives=1)
    at(env, 2.0, dies.die)
    later = Reader(env, broker, "later", ack_after(0.0), start_s=3.0)
    env.run(until=10)
    assert (fails.got, dies.got) == ([(0, 0.0, 1)], [(1, 0.0, 1)])
    assert later.got == [(0, 6.0, 2), (1, 6.0, 2)]  # pushed back at the first tick after 5 s held
    assert observer.log == [] and broker.counts["requeued"] == 2
    assert list(broker.held_ids()) == [] and in_flight.n == 0


def test_noeviction_refuses_writes_past_max_messages_while_pops_go_on(fates, counts, level):
    # BRPOP is not denyoom: a plain list's consumers read on at maxmemory (a reliable list's BLMOVE
    # is refused: see the denyoom tests below)
    env, broker, _, _ = make(fates, counts, level, max_messages=2)
    log = []
    for time_s in (0.0, 0.0, 0.0, 2.0, 4.0):
        put_at(env, broker, fates, time_s, log)
    Reader(env, broker, "c", ack_after(2.0), start_s=1.0, receives=1)  # pops message 0 at 1, done at 3
    env.run(until=5)
    # the pop frees the memory at once
    assert log == [(0, True), (1, True), (2, False), (3, True), (4, False)]
    assert broker.counts["refused"] == broker.counts["refused_full"] == 2


@pytest.mark.parametrize("persistence, lost, got, undone", [
    # none: the server comes back empty; message 0 is in the worker's hands, message 1 is lost
    ("none", [(1, 10.0)], [(3, 16.0, 1)], 0),
    # rdb (snapshots at 4 and 8): the pop of 0 at 9 is undone, the write of 1 at 9.5 is lost
    ("rdb", [(1, 10.0)], [(0, 15.0, 2)], 1),
    # aof-always: every acknowledged write survives
    ("aof-always", [], [(1, 15.0, 1)], 0),
])
def test_a_crash_falls_back_to_the_durable_point_of_the_persistence_mode(
        fates, observer, counts, level, persistence, lost, got, undone):
    crashes = Crashes(draws(10.0, 1000.0), constant(5.0))  # down from 10 to 15
    env, broker, _, _ = make(fates, counts, level, persistence=persistence, rdb_interval=4.0, crashes=crashes)
    log = []
    for time_s in (0.0, 9.5, 11.0, 16.0):
        put_at(env, broker, fates, time_s, log)
    first = Reader(env, broker, "first", ack_after(3.0), start_s=9.0, receives=1)
    second = Reader(env, broker, "second", start_s=12.0, receives=1)  # waits for the restart
    env.run(until=20)
    assert first.got == [(0, 9.0, 1)] and second.got == got
    assert log == [(0, True), (1, True), (2, False), (3, True)]  # refused while down
    assert observer.fates("lost") == lost
    assert broker.counts["writes_lost"] == len(lost) and broker.counts["pops_undone"] == undone
    assert broker.counts["refused_down"] == 1 and broker.counts["crashes"] == 1
    assert broker.metrics()["downtime_s"] == 5.0


@pytest.mark.parametrize("writes, snapshot_s", [(10_000, 60.0), (150, 300.0), (1, 3600.0)])
def test_rdb_snapshots_follow_the_default_save_points_of_redis_conf(fates, counts, level, writes, snapshot_s):
    # redis.conf: "save 3600 1 300 100 60 10000" — a snapshot once 60 s passed with 10,000 changes,
    # 300 s with 100, 3600 s with 1 (https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/)
    env, broker, _, _ = make(fates, counts, level, persistence="rdb")
    for _ in range(writes):
        broker.put(fates.new_message(0.0))
    env.run(until=snapshot_s - 1)
    assert broker.persistence.durable_s == 0.0 and broker.persistence.changes == writes
    env.run(until=snapshot_s + 0.5)
    assert broker.persistence.durable_s == snapshot_s and broker.persistence.changes == 0


def test_appendfsync_no_loses_what_the_os_had_not_flushed_about_30_seconds(fates, observer, counts, level):
    crashes = Crashes(draws(50.0, 1000.0), constant(5.0))  # the host dies at 50; flushes at 30, 60...
    env, broker, _, _ = make(fates, counts, level, persistence="aof-no", crashes=crashes)
    for time_s in (10.0, 29.0, 31.0, 49.0):
        put_at(env, broker, fates, time_s)
    env.run(until=56)
    assert observer.fates("lost") == [(2, 50.0), (3, 50.0)] and broker.counts["writes_lost"] == 2
    assert sorted(broker.held_ids()) == [0, 1]


def test_blmove_is_denyoom_so_reliable_consumers_stall_at_maxmemory_until_an_lrem_frees_room(fates, counts, level):
    # BLMOVE carries the DENYOOM flag (redis src/commands/blmove.json): refused at maxmemory like a write
    env, broker, _, _ = make(fates, counts, level, max_messages=3, reliable=True, monitor_phase=1000.0)
    log = []
    for time_s in (0.0, 0.0, 1.2, 1.3):
        put_at(env, broker, fates, time_s, log)
    first = Reader(env, broker, "first", ack_after(3.0), start_s=1.0, receives=1)  # moves 0 at 1, LREM at 4
    second = Reader(env, broker, "second", ack_after(1.0), start_s=1.5, receives=1)  # 1 item in processing + 2 waiting: full
    env.run(until=10)
    assert log == [(0, True), (1, True), (2, True), (3, False)]
    assert first.got == [(0, 1.0, 1)] and second.got == [(1, 4.0, 1)]  # its BLMOVE went through after the LREM
    assert broker.counts["oom_stalls"] == 1 and broker.counts["refused_full"] == 1


def test_a_full_reliable_list_with_nothing_in_processing_stalls_its_consumers_for_good(fates, counts, level):
    env, broker, _, _ = make(fates, counts, level, max_messages=2, reliable=True, monitor_phase=1000.0)
    for _ in range(2):
        broker.put(fates.new_message(0.0))
    stuck = Reader(env, broker, "stuck", ack_after(1.0), receives=1)
    env.run(until=100)
    assert stuck.got == [] and broker.waiting == 2 and broker.counts["oom_stalls"] == 1


# --- maxmemory-policy (redis.io, Key eviction): allkeys-* evict the queue's keys whole ------------


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lrm", "allkeys-lfu", "allkeys-random"])
def test_an_allkeys_policy_evicts_the_whole_list_when_a_write_finds_it_full(fates, observer, counts, level, policy):
    # No consumer: N = 23 pushes into max_messages M = 5. The 6th finds 5 and evicts the list (its
    # only key) before it runs, so every (M+1)-th push evicts M: floor((N - 1) / M) = 4 evictions,
    # 4 × 5 = 20 messages lost at once, the 3 last waiting; no push is refused.
    env, broker, boundary, _ = make(fates, counts, level, max_messages=5, eviction=EvictionPolicy(policy, constant(0.0)))
    log = []
    for k in range(23):
        put_at(env, broker, fates, float(k), log)
    env.run(until=30)
    assert all(accepted for _, accepted in log)
    assert broker.counts["evictions"] == 4 and broker.counts["evicted"] == 20 and broker.counts["refused"] == 0
    assert observer.fates("lost") == [(k, float(5 * (k // 5) + 5)) for k in range(20)]
    assert broker.counts["lost"] == 20 and broker.waiting == boundary.n == 3 and "evictions" in broker.metrics()


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru", "volatile-lrm", "volatile-lfu", "volatile-random", "volatile-ttl"])
def test_noeviction_and_the_volatile_policies_refuse_the_write_a_queue_has_no_ttl(fates, counts, level, policy):
    # "The volatile-xxx policies behave like noeviction if no keys have an associated expiration"
    env, broker, _, _ = make(fates, counts, level, max_messages=5, eviction=EvictionPolicy(policy))
    accepted = [broker.put(fates.new_message(0.0)) for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3 and broker.counts["refused_full"] == 3
    assert "evictions" not in broker.metrics() and broker.counts["lost"] == 0


@pytest.mark.parametrize("policy, draw, first", [("allkeys-lru", None, "processing"), ("allkeys-lfu", None, "processing"),
                                                 ("allkeys-random", 0.7, "processing"), ("allkeys-random", 0.2, "queue")])
def test_a_reliable_list_loses_its_processing_list_or_its_waiting_list(fates, observer, counts, level, policy, draw, first):
    # Two keys: 2 moved into the processing list (their workers still hold them), 2 waiting, M = 4.
    # LRU/LFU evict the processing list first (under a backlog the waiting list takes every LPUSH);
    # that frees room for the write. The workers' copies survive: nothing is lost, their LREMs find
    # nothing. allkeys-random picks either key: a draw < 1/2 takes the waiting list (2 lost).
    env, broker, _, in_flight = make(fates, counts, level, max_messages=4, reliable=True, monitor_phase=1000.0,
                                     eviction=EvictionPolicy(policy, None if draw is None else constant(draw)))
    for _ in range(3):
        broker.put(fates.new_message(0.0))
    readers = [Reader(env, broker, f"w{k}", ack_after(5.0), receives=1) for k in range(2)]
    put_at(env, broker, fates, 0.5)  # the data set is full: 2 waiting, 2 in processing
    put_at(env, broker, fates, 1.0)
    env.run(until=10)
    assert [reader.got for reader in readers] == [[(0, 0.0, 1)], [(1, 0.0, 1)]]
    assert broker.counts["evictions"] == 1 and broker.counts["evicted"] == 2
    if first == "processing":
        assert broker.counts["acks_missed"] == 2 and observer.fates("lost") == [] and broker.waiting == 3
    else:
        assert broker.counts["acks_missed"] == 0 and observer.fates("lost") == [(2, 1.0), (3, 1.0)] and broker.waiting == 1
    assert in_flight.n == 0 and sorted(broker.held_ids()) == ([4] if first == "queue" else [2, 3, 4])


def test_under_allkeys_a_blmove_at_maxmemory_evicts_instead_of_stalling(fates, observer, counts, level):
    # The denyoom BLMOVE of test_blmove_is_denyoom... finds the data set full; with allkeys-lru Redis
    # evicts before running it: the processing list (message 0, still in its worker's hands) goes.
    env, broker, _, _ = make(fates, counts, level, max_messages=3, reliable=True, monitor_phase=1000.0,
                             eviction=EvictionPolicy("allkeys-lru"))
    for time_s in (0.0, 0.0, 1.2):
        put_at(env, broker, fates, time_s)
    first = Reader(env, broker, "first", ack_after(3.0), start_s=1.0, receives=1)
    second = Reader(env, broker, "second", ack_after(1.0), start_s=1.5, receives=1)
    env.run(until=10)
    assert first.got == [(0, 1.0, 1)] and second.got == [(1, 1.5, 1)]
    assert broker.counts["oom_stalls"] == 0 and broker.counts["evictions"] == 1 and broker.counts["acks_missed"] == 1
    assert observer.fates("lost") == [] and "oom_stalls" not in broker.metrics()


def test_one_command_at_a_time_caps_what_consumers_get_at_the_servers_time_left_by_the_publishers(fates, counts, level):
    # Redis executes one command at a time (about 100,000 a second unpipelined, redis.io benchmarks):
    # here 1 ms each. A publisher LPUSHes 600 a second into a list bounded at 100 (its refused
    # pushes take the server's time too) and 50 idle consumers BRPOP as fast as replies come: the
    # server is always busy, 0.6 of it on pushes, so the pops get (1 − 600 × 0.001) / 0.001 = 400/s.
    env, broker, _, _ = make(fates, counts, level, max_messages=100, command_s=0.001)

    def publish():
        while True:
            broker.put(fates.new_message(env.now))
            yield env.timeout(1 / 600)

    env.process(publish())
    for k in range(50):
        Reader(env, broker, f"c{k}", ack_after(0.0))
    env.run(until=30)
    assert broker.counts["deliveries"] == pytest.approx(400 * 30, rel=0.01)
    assert broker.metrics()["server_utilization"] == pytest.approx(1.0, abs=0.01)  # counted when queued
    assert broker.counts["refused_full"] == pytest.approx(200 * 30, rel=0.03)
