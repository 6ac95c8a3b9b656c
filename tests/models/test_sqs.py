"""models/sqs.py (with models/sqs_parts.py and models/sqs_visible.py): visibility timeouts and
receipt handles, batches, long and short polling, the redrive policy, delay, retention, and a FIFO
queue's order within a message group. Receives here long-poll for 20 s unless a test says not."""

import math
import random

import pytest
import simpy

from models.sqs import SqsBroker, SqsOptions
from tests.models.drive import Reader, ack_after, at, constant, draws


def make(fates, counts, level, env=None, **options):
    env = env or simpy.Environment()
    visible, in_flight, delayed = level(), level(), level()
    options = {"receive_latency": constant(0.0), "delete_latency": constant(0.0), "wait_time_s": 20.0, **options}
    broker = SqsBroker(env, "q", counts(), fates, visible, in_flight, delayed, options=SqsOptions(**options))
    return env, broker, (visible, in_flight, delayed)


def send_at(env, broker, fates, *times_s):
    for time_s in times_s:
        at(env, time_s, lambda: broker.put(fates.new_message(env.now)))


def test_an_undeleted_message_is_visible_again_exactly_at_its_visibility_timeout(fates, counts, level):
    env, broker, (visible, in_flight, _) = make(fates, counts, level, visibility_timeout_s=30.0)
    broker.put(fates.new_message(0.0))
    Reader(env, broker, "forgets", receives=1)
    second = Reader(env, broker, "second", ack_after(1.0), start_s=25.0, receives=1)
    env.run(until=30)
    assert second.got == [] and list(broker.held_ids()) == [0]
    env.run(until=40)
    assert second.got == [(0, 30.0, 2)] and list(broker.held_ids()) == []  # deleted at 31
    assert broker.counts["visibility_timeouts"] == 1 and broker.counts["redelivered_messages"] == 1
    assert in_flight.area == 30.0 + 1.0 and visible.area == 0.0


@pytest.mark.parametrize("stale_delete", ["keep", "delete"])
def test_a_delete_with_a_stale_receipt_handle_keeps_or_deletes_the_copy_received_since(fates, counts, level, stale_delete):
    env, broker, (_, in_flight, _) = make(fates, counts, level, visibility_timeout_s=10.0, stale_delete=stale_delete)
    broker.put(fates.new_message(0.0))
    first = Reader(env, broker, "first", ack_after(12.0), receives=1)  # deletes at 12 with the handle of 0
    second = Reader(env, broker, "second", ack_after(3.0), start_s=5.0, receives=1)  # received at 10, deletes at 13
    env.run(until=12.5)
    assert (first.got, second.got) == ([(0, 0.0, 1)], [(0, 10.0, 2)])
    assert broker.counts["stale_deletes"] == 1
    assert list(broker.held_ids()) == ([0] if stale_delete == "keep" else []) and in_flight.n == (stale_delete == "keep")
    env.run(until=20)
    assert list(broker.held_ids()) == [] and in_flight.n == 0 and broker.counts["delete_calls"] == 2


def test_a_late_delete_with_the_latest_handle_still_deletes(fates, counts, level):
    env, broker, (visible, in_flight, _) = make(fates, counts, level, visibility_timeout_s=10.0)
    broker.put(fates.new_message(0.0))
    Reader(env, broker, "late", ack_after(15.0), receives=1)
    env.run(until=20)
    assert broker.counts["visibility_timeouts"] == 1 and broker.counts["stale_deletes"] == 0
    assert list(broker.held_ids()) == [] and visible.n == 0 and visible.area == 5.0 and in_flight.area == 10.0


def test_a_receive_returns_up_to_batch_size_messages(fates, counts, level):
    env, broker, _ = make(fates, counts, level, batch_size=3)
    for _ in range(5):
        broker.put(fates.new_message(0.0))
    reader = Reader(env, broker, "c", receives=2)
    env.run(until=1)
    assert reader.got == [(0, 0.0, 1), (1, 0.0, 1), (2, 0.0, 1), (3, 0.0, 1), (4, 0.0, 1)]
    assert broker.counts["receive_calls"] == 2 and broker.counts["deliveries"] == 5


def test_a_short_poll_finds_each_visible_message_by_a_draw_and_may_return_nothing(fates, counts, level):
    draw = draws(0.9, 0.1, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9)
    env, broker, _ = make(fates, counts, level, wait_time_s=0.0, batch_size=3, short_poll_sample=0.5, short_poll_draw=draw)
    reader = Reader(env, broker, "c", receives=2)
    env.run(until=1)
    assert reader.empty_s == [0.0, 0.0]  # an empty queue: empty answers at once, no draw
    send_at(env, broker, fates, *[1.0] * 5)
    reader = Reader(env, broker, "d", start_s=1.0, receives=2)
    env.run(until=3)
    # draws 0.9 0.1 0.9 0.1 0.9 over messages 0-4 find 1 and 3; then 0, 2, 4 are all missed
    assert reader.got == [(1, 1.0, 1), (3, 1.0, 1)] and reader.empty_s == [1.0]
    assert broker.counts["empty_receives"] == 3 and broker.waiting == 3


def test_a_long_poll_returns_as_soon_as_a_message_is_sent_and_its_clock_starts_at_the_queue(fates, counts, level):
    env, broker, _ = make(fates, counts, level, visibility_timeout_s=30.0, receive_latency=constant(0.5))
    reader = Reader(env, broker, "c", receives=3)
    send_at(env, broker, fates, 7.0)
    env.run(until=60)
    # chosen at 7, in hand at 7.5; the next poll (7.5 to 27.5) finds nothing; the third gets the
    # message back at 37 (7 + 30), in hand at 37.5
    assert reader.got == [(0, 7.5, 1), (0, 37.5, 2)] and reader.empty_s == [28.0]


def test_a_message_received_max_receive_count_times_moves_to_the_dead_letter_queue(fates, observer, counts, level):
    env, dead_letter_queue, _ = make(fates, counts, level)
    env, broker, (visible, _, _) = make(fates, counts, level, env=env, visibility_timeout_s=10.0, max_receive_count=2,
                                        dead_letter_queue=lambda: dead_letter_queue)
    broker.put(fates.new_message(0.0))
    reader = Reader(env, broker, "forgets")
    env.run(until=45)
    assert reader.got == [(0, 0.0, 1), (0, 10.0, 2)]  # at 20 a third receive would exceed 2: it moves instead
    assert observer.fates("dead_lettered") == [(0, 20.0)] and broker.counts["dead_lettered"] == 1
    assert list(broker.held_ids()) == [] and list(dead_letter_queue.held_ids()) == [0] and visible.n == 0


@pytest.mark.parametrize("fifo, dlq_retention_s, expires_s", [
    (False, 100.0, 100.0),  # standard: the original enqueue time (0) + the dead-letter queue's retention
    (True, 100.0, 120.0),   # FIFO: the move (at 20) resets the enqueue timestamp
    (False, 15.0, 20.0),    # standard, already older than the dead-letter queue's retention: deleted at once
])
def test_a_dead_letter_expires_by_its_original_enqueue_time_from_a_standard_queue_and_by_the_move_from_a_fifo_one(
        fates, observer, counts, level, fifo, dlq_retention_s, expires_s):
    # "For standard queues, the expiration of a message is always based on its original enqueue
    # timestamp ... For FIFO queues, the enqueue timestamp resets when the message is moved to a
    # dead-letter queue" (SQS Developer Guide, setting-up-dead-letter-queue-retention.html)
    fifo_options = {"fifo": True, "message_groups": 1, "api_calls_per_s": 100.0} if fifo else {}
    env, dead_letter_queue, _ = make(fates, counts, level, retention_s=dlq_retention_s, **fifo_options)
    env, broker, _ = make(fates, counts, level, env=env, visibility_timeout_s=10.0, max_receive_count=2,
                          dead_letter_queue=lambda: dead_letter_queue, **fifo_options)
    broker.put(fates.new_message(0.0))
    Reader(env, broker, "forgets")
    env.run(until=20.5)
    assert observer.fates("dead_lettered") == [(0, 20.0)] and list(dead_letter_queue.held_ids()) == ([0] if expires_s > 20 else [])
    env.run(until=expires_s + 0.5 if expires_s > 20 else 21.0)
    assert observer.fates("lost") == [(0, expires_s)] and list(dead_letter_queue.held_ids()) == []
    assert dead_letter_queue.counts["expired"] == 1


def test_a_delay_hides_a_new_message_for_delay_s(fates, counts, level):
    env, broker, (visible, _, delayed) = make(fates, counts, level, delay_s=5.0)
    send_at(env, broker, fates, 1.0)
    reader = Reader(env, broker, "c", receives=1)
    env.run(until=4)
    assert broker.waiting == 0 and list(broker.held_ids()) == [0] and reader.got == []
    env.run(until=10)
    assert reader.got == [(0, 6.0, 1)] and delayed.area == 5.0 and delayed.n == 0 and visible.area == 0.0


def test_retention_deletes_a_message_as_lost_whatever_its_state(fates, observer, counts, level):
    env, broker, (visible, in_flight, _) = make(fates, counts, level, retention_s=100.0, visibility_timeout_s=300.0)
    send_at(env, broker, fates, 0.0, 50.0)
    Reader(env, broker, "holds", start_s=60.0, receives=1)  # message 0 is in flight when it expires
    env.run(until=200)
    assert observer.fates("lost") == [(0, 100.0), (1, 150.0)]
    assert broker.counts["expired"] == broker.counts["lost"] == 2
    assert list(broker.held_ids()) == [] and visible.n == in_flight.n == 0


def test_a_fifo_group_is_received_in_order_one_message_at_a_time(fates, counts, level):
    env, broker, _ = make(fates, counts, level, fifo=True, message_groups=1, api_calls_per_s=100.0, visibility_timeout_s=10.0)
    broker.put(fates.new_message(0.0))
    first = Reader(env, broker, "forgets", receives=1)
    send_at(env, broker, fates, 1.0, 1.0)  # behind a head in flight
    second = Reader(env, broker, "second", ack_after(1.0), start_s=1.0)
    env.run(until=9)
    assert first.got == [(0, 0.0, 1)] and second.got == [] and broker.waiting == 2  # the group is locked
    env.run(until=20)
    # message 0 comes back at the front of its group at 10; each delete unlocks the group
    assert second.got == [(0, 10.0, 2), (1, 11.0, 1), (2, 12.0, 1)]


def test_a_fifo_receive_returns_as_many_of_one_group_as_it_can_and_the_group_stays_locked_until_all_are_done(
        fates, counts, level):
    # "Amazon SQS attempts to return as many messages with the same message group ID as possible"
    # and "you can't receive additional messages with the same message group ID ... unless the
    # currently received messages are deleted or they become visible" (FIFO-queues-understanding-logic.html)
    env, broker, _ = make(fates, counts, level, fifo=True, message_groups=1, api_calls_per_s=100.0, batch_size=10)
    for _ in range(4):
        broker.put(fates.new_message(0.0))
    first = Reader(env, broker, "first", ack_after(1.0))  # deletes 0..3 at 1, 2, 3, 4
    send_at(env, broker, fates, 0.5)
    second = Reader(env, broker, "second", ack_after(1.0), start_s=0.5, receives=1)
    env.run(until=10)
    assert [(i, count) for i, _, count in first.got] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert first.got[3][1] == 3.0 and broker.counts["receive_calls"] >= 2  # all four in the first receive
    assert second.got == [(4, 4.0, 1)]  # locked until the last of the batch was deleted at 4


@pytest.mark.parametrize("delete_batch, done_s, throttled", [(False, 2.5, 1), (True, 1.5, 0)])
def test_a_throttled_fifo_delete_is_retried_until_it_goes_through_not_turned_into_a_redelivery(
        fates, counts, level, delete_batch, done_s, throttled):
    # 300 calls per second per action, DeleteMessageBatch carrying up to 10 receipt handles
    # (troubleshooting-fifo-throttling-issues.html); here 1 call/s with a burst of 1
    env, broker, _ = make(fates, counts, level, fifo=True, message_groups=1, api_calls_per_s=1.0, api_burst=1,
                          batch_size=2, delete_batch=delete_batch)
    send_at(env, broker, fates, 0.0, 1.0)  # a send a second: within the limit
    done = []

    def delete_both(reader, delivery):
        yield env.timeout(reader.ack(delivery))
        done.append(env.now)

    Reader(env, broker, "c", delete_both, start_s=1.5, receives=1)
    env.run(until=60)
    # without batching, the second delete finds the bucket empty: retried, it goes through 1 s later
    # (its retry waits for the token), well inside the 30 s visibility timeout
    assert done == [1.5, done_s] and broker.counts["throttled_deletes"] == throttled
    assert list(broker.held_ids()) == [] and broker.counts["visibility_timeouts"] == 0
    assert broker.counts["delete_calls"] == (1.0 if delete_batch else 2.0)


def test_send_batches_carry_ten_messages_per_call_of_the_fifo_limit(fates, counts, level):
    # "3,000 transactions per second represent 300 API calls, each with a batch of 10 messages" (quotas-messages.html)
    for size, accepted in ((1, 300), (10, 3000)):
        env, broker, _ = make(fates, counts, level, fifo=True, message_groups=4, api_calls_per_s=300.0, send_batch_size=size)
        results = [broker.put(fates.new_message(0.0)) for _ in range(4000)]
        assert sum(results) == accepted and broker.counts["send_calls"] == pytest.approx(4000 / size)


def test_a_short_poll_of_a_small_queue_likely_returns_fewer_than_asked_by_default(fates, counts, level):
    # "If the number of messages in the queue is small (fewer than 1,000), you most likely get fewer
    # messages than you requested per ReceiveMessage call. If the number of messages in the queue is
    # extremely small, you might not receive any" (API Reference, ReceiveMessage). Each of the n
    # messages is found with p = 0.01: a receive of 10 returns E[min(10, Binomial(n, p))].
    rng = random.Random(5)
    for n, polls in ((1, 2000), (100, 600)):
        found = []
        for _ in range(polls):
            env, broker, _ = make(fates, counts, level, wait_time_s=0.0, batch_size=10, short_poll_draw=rng.random)
            for _ in range(n):
                broker.put(fates.new_message(0.0))
            reader = Reader(env, broker, "c", receives=1)
            env.run(until=1)
            found.append(len(reader.got))
        p = 0.01
        pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
        mean = sum(min(10, k) * q for k, q in enumerate(pmf))
        sd = math.sqrt(sum((min(10, k) - mean) ** 2 * q for k, q in enumerate(pmf)) / polls)
        observed = sum(found) / polls
        assert abs(observed - mean) < 4 * sd, (n, observed, mean)
        assert mean < 1.1  # 10 asked for: about 1 returned from 100 messages, almost never 1 of 1


def test_each_call_is_billed_one_request_per_64_kib_chunk_and_an_empty_receive_is_billed_too(fates, counts, level):
    # a 100 KiB message is two chunks to send; a receive of three is 300 KiB, five chunks; a delete
    # carries a receipt handle, one request; an empty short poll is billed like any other receive
    env, broker, _ = make(fates, counts, level, wait_time_s=0.0, batch_size=3, short_poll_sample=1.0,
                          short_poll_draw=constant(0.0), receive_latency=constant(0.02),
                          message_size_bytes=100 * 1024, price_per_million_requests=0.4)
    for _ in range(3):
        broker.put(fates.new_message(0.0))
    Reader(env, broker, "c", ack_after(0.0), receives=2)  # the second receive finds nothing
    env.run(until=1)
    assert broker.counts["empty_receives"] == 1
    assert broker.metrics()["billed_requests"] == 3 * 2 + 5 + 3 * 1 + 1
    assert broker.metrics()["cost_usd"] == pytest.approx(15 * 0.4 / 1e6)
