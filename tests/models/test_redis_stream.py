"""models/redis_stream.py: a consumer group keeps each entry pending until XACK; XAUTOCLAIM, every
``claim_interval``, hands entries idle for at least ``min_idle_time`` to the claiming consumer; past
``max_deliveries`` an idle entry goes to the dead-letter stream."""

import simpy

from models.redis_eviction import EvictionPolicy
from models.redis_stream import RedisStream
from tests.models.drive import Reader, ack_after, at, nack_after


def make(fates, counts, level, **options):
    env = simpy.Environment()
    boundary, in_flight = level(), level()
    broker = RedisStream(env, "s", boundary, counts(), fates, in_flight=in_flight, **options)
    return env, broker, in_flight


class DeadLetters:
    """A dead-letter stream that answers ``accept_dead_letter`` from ``answers`` in turn."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.accepted = []

    def accept_dead_letter(self, message):
        if self.answers.pop(0):
            self.accepted.append(message.id)
            return True
        return False


def test_an_entry_stays_pending_until_xack_through_a_failure_and_a_crash(fates, observer, counts, level):
    env, broker, in_flight = make(fates, counts, level)
    for _ in range(3):
        broker.put(fates.new_message(0.0))
    acks = Reader(env, broker, "acks", ack_after(1.0), receives=1)
    fails = Reader(env, broker, "fails", nack_after(1.0), receives=1)
    dies = Reader(env, broker, "dies", receives=1)
    at(env, 2.0, dies.die)
    env.run(until=5)
    assert (acks.got, fails.got, dies.got) == ([(0, 0.0, 1)], [(1, 0.0, 1)], [(2, 0.0, 1)])
    assert sorted(broker.pel) == [2, 3] and list(broker.held_ids()) == [1, 2]  # PEL keys are entry ids
    assert broker.waiting == 0 and in_flight.n == 2 and in_flight.integral(5.0) == 1.0 + 5.0 + 5.0
    assert observer.log == [] and broker.counts["lost"] == 0


def test_xautoclaim_at_the_claim_interval_takes_an_entry_idle_longer_than_min_idle_time(fates, observer, counts, level):
    env, broker, in_flight = make(fates, counts, level, min_idle_time=30.0, claim_interval=10.0)
    broker.put(fates.new_message(0.0))
    Reader(env, broker, "slow", ack_after(40.0), receives=1)  # XACK at 40
    other = Reader(env, broker, "other", ack_after(5.0), start_s=5.0, receives=1)
    env.run(until=34)
    # other claims at 5, 15, 25 (idle 5, 15, 25 s): nothing; its BLOCK ends at each claim
    assert other.got == [] and broker.counts["claimed"] == 0
    env.run(until=50)
    assert other.got == [(0, 35.0, 2)] and broker.pel == {}
    assert broker.counts["claimed"] == 1 and broker.counts["redeliveries"] == 1 and broker.counts["deliveries"] == 2
    # the slow consumer's XACK at 40 acknowledges the entry by id, though the other holds it: its XACK finds nothing
    assert broker.counts["acks_missed"] == 1 and broker.copies == {}
    assert in_flight.area == 40.0 and observer.log == []


def test_xautoclaim_takes_an_entry_idle_exactly_min_idle_time_as_redis_does(fates, counts, level):
    env, broker, _ = make(fates, counts, level, min_idle_time=30.0, claim_interval=10.0)
    broker.put(fates.new_message(0.0))
    Reader(env, broker, "holds", receives=1)
    other = Reader(env, broker, "other", receives=1)  # claims at 0, 10, 20, 30
    env.run(until=45)
    assert other.got == [(0, 30.0, 2)]


def test_an_idle_entry_delivered_max_deliveries_times_is_dead_lettered_and_acknowledged(fates, observer, counts, level):
    dead_letters = DeadLetters(True)
    env, broker, in_flight = make(fates, counts, level, min_idle_time=5.0, claim_interval=10.0, max_deliveries=2,
                                  dead_letter=lambda: dead_letters)
    broker.put(fates.new_message(0.0))
    poisoned = Reader(env, broker, "poisoned", nack_after(0.0))
    env.run(until=25)
    # read at 0, claimed at 10 (its second delivery), then at the claim at 20 it goes
    assert poisoned.got == [(0, 0.0, 1), (0, 10.0, 2)]
    assert observer.fates("dead_lettered") == [(0, 20.0)] and dead_letters.accepted == [0]
    assert broker.pel == {} and in_flight.n == 0 and broker.copies == {}
    assert broker.counts["dead_lettered"] == 1 and broker.counts["lost"] == 0


def test_an_entry_the_dead_letter_stream_refuses_stays_pending_for_the_next_claim(fates, observer, counts, level):
    dead_letters = DeadLetters(False, True)
    env, broker, _ = make(fates, counts, level, min_idle_time=5.0, claim_interval=10.0, max_deliveries=1,
                          dead_letter=lambda: dead_letters)
    broker.put(fates.new_message(0.0))
    poisoned = Reader(env, broker, "poisoned", nack_after(0.0))
    env.run(until=15)
    assert poisoned.got == [(0, 0.0, 1)] and list(broker.held_ids()) == [0] and observer.log == []
    env.run(until=25)
    assert poisoned.got == [(0, 0.0, 1)] and observer.fates("dead_lettered") == [(0, 20.0)]
    assert list(broker.held_ids()) == []


def test_dead_letters_are_parked_outside_the_waiting_count_within_max_messages(fates, counts, level):
    env, broker, in_flight = make(fates, counts, level, max_messages=2)
    assert broker.put(fates.new_message(0.0))
    assert broker.accept_dead_letter(fates.new_message(0.0))
    assert not broker.accept_dead_letter(fates.new_message(0.0))
    assert not broker.put(fates.new_message(0.0))
    assert broker.parked == 1 and broker.waiting == 1 and broker.counts["parked"] == 1


def test_an_allkeys_policy_evicts_the_stream_with_its_group_and_pending_entries(fates, observer, counts, level):
    # A stream is one key holding its entries, its consumer group and the PEL: M = 3 with one entry
    # pending (its worker holds it) and two waiting. The XADD at 2 evicts all three: the two waiting
    # are lost, the pending one survives in its worker's hands (its XACK then finds nothing).
    env, broker, in_flight = make(fates, counts, level, max_messages=3, eviction=EvictionPolicy("allkeys-lfu"))
    broker.put(fates.new_message(0.0))
    worker = Reader(env, broker, "w", ack_after(5.0), receives=1)  # reads entry 0 at once
    env.run(until=1)
    assert broker.put(fates.new_message(1.0)) and broker.put(fates.new_message(1.0)) and broker.size() == 3
    at(env, 2.0, lambda: broker.put(fates.new_message(2.0)))
    env.run(until=10)
    assert worker.got == [(0, 0.0, 1)]
    assert broker.counts["evictions"] == 1 and broker.counts["evicted"] == 3 and broker.counts["acks_missed"] == 1
    assert observer.fates("lost") == [(1, 2.0), (2, 2.0)]
    assert list(broker.held_ids()) == [3] and in_flight.n == 0
