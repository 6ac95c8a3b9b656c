"""models/rabbitmq.py (with models/rabbitmq_channel.py, rabbitmq_ready.py and rabbitmq_alarm.py):
push delivery bounded by prefetch, manual and automatic acks when a consumer dies, nacks,
``x-max-length`` overflow, TTL and delivery-limit dead-lettering, and the memory alarm."""

import pytest
import simpy

from models.rabbitmq import RabbitmqBroker, RabbitmqOptions
from tests.models.drive import Reader, ack_after, at, constant, nack_after


def make(fates, counts, level, env=None, **options):
    env = env or simpy.Environment()
    ready, unacked = level(), level()
    broker = RabbitmqBroker(env, "q", ready, unacked, counts(), fates, options=RabbitmqOptions(**options))
    return env, broker, ready, unacked


def send_at(env, broker, fates, *times_s, log=None):
    """Publish a new message at each of ``times_s``; ``log`` gets whether each was accepted."""
    def publish():
        accepted = broker.put(fates.new_message(env.now))
        if log is not None:
            log.append(accepted)
    for time_s in times_s:
        at(env, time_s, publish)


def unacked_ids(broker, reader):
    return [delivery.message.id for delivery in broker.channels[reader.consumer].unacked.values()]


def outcomes(observer):
    return [entry for entry in observer.log if entry[0] in ("lost", "dead_lettered")]


def test_pushes_go_round_robin_with_no_more_than_prefetch_count_unacked_per_consumer(fates, counts, level):
    env, broker, _, _ = make(fates, counts, level, prefetch_count=2)
    a = Reader(env, broker, "a", ack_after(1.0), receives=1)  # acks message 0 at 2
    b = Reader(env, broker, "b", receives=1)
    send_at(env, broker, fates, *[1.0] * 5)
    env.run(until=1.5)
    assert (unacked_ids(broker, a), unacked_ids(broker, b)) == ([0, 2], [1, 3]) and broker.waiting == 1
    env.run(until=3)
    assert (unacked_ids(broker, a), unacked_ids(broker, b)) == ([2, 4], [1, 3]) and broker.waiting == 0
    assert broker.counts["deliveries"] == 5


@pytest.mark.parametrize("auto_ack", [False, True])
def test_a_dying_consumers_deliveries_are_requeued_with_manual_acks_and_lost_with_auto_acks(
        fates, observer, counts, level, auto_ack):
    env, broker, ready, unacked = make(fates, counts, level, auto_ack=auto_ack)
    send_at(env, broker, fates, 0.0, 0.0)
    dies = Reader(env, broker, "dies", receives=1)  # starts message 0; message 1 waits in its buffer
    at(env, 2.0, dies.die)
    later = Reader(env, broker, "later", start_s=3.0)
    env.run(until=5)
    assert dies.got == [(0, 0.0, 1)]
    if auto_ack:
        assert observer.fates("lost") == [(0, 2.0), (1, 2.0)] and later.got == [] and unacked.area == 0.0
    else:
        assert observer.log == [] and later.got == [(0, 3.0, 2), (1, 3.0, 2)]
        assert broker.counts["requeued"] == 2 and ready.area == 2 * (3.0 - 2.0)


def test_work_done_whose_ack_is_still_on_its_way_when_the_connection_dies_is_redelivered(fates, observer, counts, level):
    env, broker, _, unacked = make(fates, counts, level, ack_latency=constant(0.5))
    broker.put(fates.new_message(0.0))
    done = Reader(env, broker, "done", ack_after(1.0), receives=1)  # its ack leaves at 1, would arrive at 1.5
    at(env, 1.2, done.die)
    later = Reader(env, broker, "later", start_s=2.0)
    env.run(until=3)
    assert later.got == [(0, 2.0, 2)] and broker.counts["requeued"] == 1 and observer.log == []
    assert unacked.integral(3.0) == 1.2 + 1.0


@pytest.mark.parametrize("requeue_on_error, dead_letter, got, fates_told", [
    (True, False, [(0, 0.0, 1), (0, 1.0, 2)], []),
    (False, False, [(0, 0.0, 1)], [("lost", 0, 1.0)]),
    (False, True, [(0, 0.0, 1)], [("dead_lettered", 0, 1.0)]),
])
def test_a_nack_requeues_at_once_or_dead_letters_or_drops(
        fates, observer, counts, level, requeue_on_error, dead_letter, got, fates_told):
    env, dead_letter_queue, _, _ = make(fates, counts, level)
    env, broker, _, _ = make(fates, counts, level, env=env, requeue_on_error=requeue_on_error,
                             dead_letter=(lambda: dead_letter_queue) if dead_letter else None)
    broker.put(fates.new_message(0.0))
    fails = Reader(env, broker, "fails", nack_after(1.0), receives=2)
    env.run(until=1.5)
    assert fails.got == got and outcomes(observer) == fates_told
    assert broker.counts["nacks"] == 1 and dead_letter_queue.dead_letters_held == dead_letter


@pytest.mark.parametrize("overflow, confirms, dead_letter, accepted, fates_told, ready", [
    ("drop-head", False, False, [True] * 4, [("lost", 1, 3.0)], [2, 3]),
    ("drop-head", False, True, [True] * 4, [("dead_lettered", 1, 3.0)], [2, 3]),
    ("reject-publish", True, False, [True, True, True, False], [], [1, 2]),
    ("reject-publish", False, False, [True] * 4, [("lost", 3, 3.0)], [1, 2]),
    ("reject-publish-dlx", True, True, [True] * 4, [("dead_lettered", 3, 3.0)], [1, 2]),
])
def test_max_length_counts_ready_messages_and_overflow_drops_the_head_or_refuses_the_newest(
        fates, observer, counts, level, overflow, confirms, dead_letter, accepted, fates_told, ready):
    env, dead_letter_queue, _, _ = make(fates, counts, level)
    env, broker, _, _ = make(fates, counts, level, env=env, max_length=2, overflow=overflow, publisher_confirms=confirms,
                             prefetch_count=1, dead_letter=(lambda: dead_letter_queue) if dead_letter else None)
    Reader(env, broker, "holds", receives=1)  # message 0, unacknowledged: not counted
    log = []
    send_at(env, broker, fates, 0.0, 1.0, 2.0, 3.0, log=log)
    env.run(until=4)
    assert log == accepted and outcomes(observer) == fates_told and list(broker.held_ids()) == [*ready, 0]
    assert broker.counts["overflow_dropped"] == (overflow == "drop-head") and broker.counts["nacked_publishes"] == confirms


def test_an_expired_message_is_dead_lettered_when_it_reaches_the_head_never_delivered(fates, observer, counts, level):
    env, dead_letter_queue, _, _ = make(fates, counts, level)
    env, broker, _, _ = make(fates, counts, level, env=env, message_ttl_s=10.0, dead_letter=lambda: dead_letter_queue)
    send_at(env, broker, fates, 0.0, 5.0, 11.0)
    reader = Reader(env, broker, "c", start_s=16.0)
    env.run(until=20)
    # message 0 (expired at 10) goes when message 2 is published; message 1 (expired at 15) when a push would take it
    assert observer.fates("dead_lettered") == [(0, 11.0), (1, 16.0)] and reader.got == [(2, 16.0, 1)]
    assert broker.counts["expired"] == 2 and dead_letter_queue.dead_letters_held == 2


def test_a_quorum_queue_dead_letters_a_message_past_its_delivery_limit(fates, observer, counts, level):
    env, dead_letter_queue, _, _ = make(fates, counts, level)
    env, broker, _, _ = make(fates, counts, level, env=env, quorum=True, delivery_limit=2, dead_letter=lambda: dead_letter_queue)
    broker.put(fates.new_message(0.0))
    poisoned = Reader(env, broker, "poisoned", nack_after(1.0))
    env.run(until=10)
    assert poisoned.got == [(0, 0.0, 1), (0, 1.0, 2), (0, 2.0, 3)]  # delivery_limit + 1 deliveries
    assert observer.fates("dead_lettered") == [(0, 3.0)] and broker.counts["delivery_limit_exceeded"] == 1


@pytest.mark.parametrize("quorum, delivery_limit, second", [(False, None, 0), (True, 5, 0), (True, None, 1)])
def test_a_requeue_goes_to_the_head_except_in_a_quorum_queue_without_a_delivery_limit(
        fates, counts, level, quorum, delivery_limit, second):
    env, broker, _, _ = make(fates, counts, level, quorum=quorum, delivery_limit=delivery_limit, prefetch_count=1)
    send_at(env, broker, fates, 0.0, 0.0)
    reader = Reader(env, broker, "c", nack_after(1.0), receives=2)
    env.run(until=1.5)
    assert reader.ids() == [0, second]


def test_the_memory_alarm_blocks_publishers_from_a_monitor_tick_to_the_tick_that_finds_it_cleared(fates, counts, level):
    env, broker, _, _ = make(fates, counts, level, memory_limit_messages=3)  # ticks every 2.5 s
    published = []

    def publisher():
        yield env.timeout(0.25)
        while True:
            gate = broker.publish_gate()
            if gate is not None:
                yield gate
            broker.put(fates.new_message(env.now))
            published.append(env.now)
            yield env.timeout(1.0)

    env.process(publisher())
    consumer = Reader(env, broker, "c", ack_after(0.0), start_s=6.0)  # consumers go on during the alarm
    env.run(until=9)
    # the tick at 2.5 finds 3 messages (not above 3), the one at 5 finds 5: alarm; the consumer takes them
    # all at 6; the tick at 7.5 finds none and clears it
    assert published == [0.25, 1.25, 2.25, 3.25, 4.25, 7.5, 8.5]
    assert consumer.ids() == [0, 1, 2, 3, 4, 5, 6] and consumer.got[4:] == [(4, 6.0, 1), (5, 7.5, 1), (6, 8.5, 1)]
    assert broker.metrics()["memory_alarms"] == 1 and broker.metrics()["memory_alarm_s"] == 2.5


def test_a_classic_priority_queue_delivers_in_cycles_so_a_stream_of_high_priorities_does_not_starve_a_low_one(
        fates, counts, level):
    # "Classic queues' priority implementation uses sub-queues. For every delivery cycle, the queue
    # will deliver the messages in the highest-priority sub-queue first ... High-priority messages
    # enqueued during a delivery cycle will be delivered during the next cycle, preventing
    # starvation" (https://www.rabbitmq.com/docs/priority#resource-starvation)
    env, broker, _, _ = make(fates, counts, level, prefetch_count=1, priority_of=lambda message: 0 if message.id == 0 else 1)
    send_at(env, broker, fates, *[0.0] * 4)  # message 0 at priority 0, then three at priority 1
    send_at(env, broker, fates, *[0.5 + 0.5 * k for k in range(40)])  # priority 1 every 0.5 s, twice the service rate
    reader = Reader(env, broker, "c", ack_after(1.0), start_s=0.1)
    env.run(until=20)
    order = reader.ids()
    # the first cycle holds what was there when it began (0..3): 1, 2, 3 first, then 0; strict
    # priority would keep 0 waiting behind the stream for as long as it lasts
    assert order[:4] == [1, 2, 3, 0]
    assert broker.counts["pushes_priority_0"] == 1


@pytest.mark.parametrize("high_first, expected", [
    # normal ones published first: high, high, normal, … (2:1) until the high level is empty
    (False, [10, 11, 0, 12, 13, 1, 14, 15, 2, 16, 17, 3, 18, 19, 4, 5, 6, 7, 8, 9]),
    # high ones published first: at the normal level's turn the older high head goes anyway
    (True, list(range(20))),
])
def test_a_quorum_queue_in_4_0_to_4_2_delivers_two_high_priorities_for_one_normal(fates, counts, level, high_first, expected):
    # "for every 2 high priority message the queue will deliver 1 normal priority message (if
    # available)"; "if a high priority message was published before a normal priority one, the high
    # priority message will always be delivered first even if it is the normal priority's turn"
    # (https://www.rabbitmq.com/docs/4.2/quorum-queues#priorities). Ten of priority 5 (high: above 4)
    # and ten of priority 4 (normal), one consumer with a prefetch of 1.
    high = set(range(10)) if high_first else set(range(10, 20))
    env, broker, _, _ = make(fates, counts, level, quorum=True, prefetch_count=1, priorities="two-levels",
                             priority_of=lambda message: 5 if message.id in high else 4)
    send_at(env, broker, fates, *[0.0] * 20)
    reader = Reader(env, broker, "c", ack_after(1.0), start_s=1.0)
    env.run(until=30)
    assert reader.ids() == expected
    assert broker.counts["pushes_priority_5"] == broker.counts["pushes_priority_4"] == 10


def test_a_quorum_queue_in_4_3_is_strict_and_delivers_returned_messages_first_whatever_their_priority(
        fates, observer, counts, level):
    # 4.3: strict priorities, 0–31 (RMQ 4.3/quorum-queues#priorities); returned messages "are
    # requeued in the exact order they were returned, regardless of their priority" and go first.
    # Message 0 (priority 0) is delivered and failed (nack, requeue) while 1..4 (priorities 0, 40
    # clamped to 31, 2, 31) wait; then a steady stream of priority 9 starves priority 0 and 2.
    priorities = {0: 0, 1: 0, 2: 40, 3: 2, 4: 31}
    env, broker, _, _ = make(fates, counts, level, quorum=True, prefetch_count=1, priorities="strict", delivery_limit=20,
                             priority_of=lambda message: priorities.get(message.id, 9))
    send_at(env, broker, fates, 0.0)
    first = Reader(env, broker, "fails", nack_after(1.0), receives=1)
    at(env, 1.2, first.die)  # its channel closes: message 0, pushed to it again, is returned too
    send_at(env, broker, fates, *[0.5] * 4)
    send_at(env, broker, fates, *[2.0 + k for k in range(10)])  # priority 9, one a second
    reader = Reader(env, broker, "c", ack_after(1.0), start_s=1.5)
    env.run(until=14)
    assert first.got == [(0, 0.0, 1)]
    # 0 returned first; 2 and 4 (both at 31; 2 published first), then the priority-9 stream, one a
    # second as fast as it is served, keeps 3 and 1 waiting
    assert reader.ids()[:4] == [0, 2, 4, 5] and reader.ids()[4:] == list(range(6, 6 + len(reader.ids()) - 4))
    assert broker.waiting >= 2 and {1, 3} <= set(broker.held_ids())


def test_a_quorum_queue_reads_from_disk_what_waited_through_a_flush_of_its_write_ahead_log(fates, counts, level):
    # Quorum queues keep message bodies only in the write-ahead log, flushed to segment files when
    # it reaches raft.wal_max_size_bytes (https://www.rabbitmq.com/docs/quorum-queues, "How Memory,
    # WAL and Segments Files Interact"). A log of 100 messages, 250 published with nobody reading:
    # flushes after the 100th and the 200th, so 200 wait on disk and 50 in memory (what the memory
    # alarm weighs). A consumer then takes all 250: exactly 200 disk reads of 0.5 s each.
    env, broker, _, _ = make(fates, counts, level, quorum=True, prefetch_count=1, wal_messages=100, disk_read=constant(0.5))
    send_at(env, broker, fates, *[0.0] * 250)
    env.run(until=1)
    assert broker.counts["wal_flushes"] == 2 and broker.paged_messages() == 200 and broker.messages() == 50
    reader = Reader(env, broker, "c", ack_after(0.0), start_s=1.0)
    env.run(until=1000)
    assert len(reader.got) == 250 and broker.metrics()["disk_reads"] == 200
    assert reader.got[199][1] == reader.got[249][1] == pytest.approx(1.0 + 0.5 * 200)  # the last 50 without a read


def test_a_long_classic_queue_keeps_only_messages_in_memory_ready_messages_in_memory_so_it_alone_trips_no_alarm(
        fates, counts, level):
    # since 3.12 "classic queues keep up to 2048 messages in memory ... all other messages are
    # written to disk" (https://www.rabbitmq.com/docs/classic-queues#memory): here 5 in memory
    # against a watermark of 8 messages
    env, broker, _, _ = make(fates, counts, level, messages_in_memory=5, memory_limit_messages=8)
    send_at(env, broker, fates, *[0.0] * 20)
    env.run(until=10)
    assert broker.waiting == 20 and broker.messages() == 5 and broker.publish_gate() is None
    reader = Reader(env, broker, "holds", start_s=10.0)  # unlimited prefetch: takes all 20, acks none
    env.run(until=15)
    assert broker.waiting == 0 and broker.messages() == 20 and broker.publish_gate() is not None  # unacked ones count
    assert len(reader.got) == 20


def test_the_disk_alarm_blocks_publishers_while_paged_messages_leave_too_little_free_disk(fates, counts, level):
    # "When free disk space drops below a configured limit (50 MB by default), an alarm will be
    # triggered and all producers will be blocked"; free space is normally checked every 10 s
    # (https://www.rabbitmq.com/docs/disk-alarms). Here 5 messages in memory, room on disk for 3.
    env, broker, _, _ = make(fates, counts, level, messages_in_memory=5, disk_limit_messages=3)
    send_at(env, broker, fates, *[0.0] * 10)  # messages 5..9 are paged: 5 on disk
    env.run(until=9)
    assert broker.paged_messages() == 5 and broker.publish_gate() is None  # not checked yet
    env.run(until=11)
    assert broker.publish_gate() is not None and broker.counts["disk_alarms"] == 1
    Reader(env, broker, "drains", ack_after(0.1), start_s=11.0)  # reads them back from disk
    env.run(until=19)
    assert broker.paged_messages() == 0 and broker.publish_gate() is not None  # cleared at the next check
    env.run(until=21)
    assert broker.publish_gate() is None and broker.metrics()["disk_alarm_s"] == 10.0


def test_credit_flow_slows_a_fast_publisher_down_to_what_the_queue_process_takes_in(fates, counts, level):
    # "RabbitMQ will reduce the speed of connections which are publishing too quickly for queues to
    # keep up" (https://www.rabbitmq.com/docs/flow-control): a publisher trying 2,000 messages a
    # second against a queue process of 1 ms a publish gets 1,000 a second through, once its
    # initial credit of 400 is spent
    env, broker, _, _ = make(fates, counts, level, publish_s=0.001)
    published = []

    def publisher():
        while True:
            gate = broker.publish_gate()
            if gate is not None:
                yield gate
                continue
            broker.put(fates.new_message(env.now))
            published.append(env.now)
            yield env.timeout(0.0005)

    env.process(publisher())
    Reader(env, broker, "c", ack_after(0.0))
    env.run(until=20)
    late = [t for t in published if t >= 10]
    assert len(late) == pytest.approx(1000 * 10, rel=0.01)
    assert broker.counts["flow_blocks"] > 10  # blocked and unblocked again and again
