"""models/fifo.py: a plain queue, oldest first, bounded by ``capacity``, losing what it hands out."""

import simpy

from models.broker import Consumer
from models.fifo import FifoBroker


def make(fates, counts, level, capacity=None):
    env = simpy.Environment()
    boundary = level()
    return env, FifoBroker(env, "q", boundary, counts(), fates, capacity=capacity), boundary


def test_messages_wait_oldest_first_and_a_full_queue_refuses(fates, counts, level):
    env, broker, boundary = make(fates, counts, level, capacity=2)
    messages = [fates.new_message(0.0) for _ in range(3)]
    assert [broker.put(m) for m in messages] == [True, True, False]
    assert broker.waiting == 2 == boundary.n and broker.counts["refused"] == 1
    consumer = Consumer("c")
    got = []

    def take():
        for _ in range(2):
            (delivery,) = yield from broker.receive(consumer)
            got.append((delivery.message.id, env.now))
            yield env.timeout(1.0)

    env.process(take())
    env.run()
    assert got == [(0, 0.0), (1, 1.0)]
    assert broker.waiting == 0 and boundary.area == 1.0  # message 1 waited one second
    assert [d.message.id for d in consumer.held] == [0, 1] and broker.counts["deliveries"] == 2


def test_a_waiting_consumer_gets_a_new_message_at_once(fates, counts, level):
    env, broker, _ = make(fates, counts, level, capacity=0)
    consumer = Consumer("c")
    got = []

    def take():
        (delivery,) = yield from broker.receive(consumer)
        got.append((delivery.message.id, env.now))

    env.process(take())
    env.run(until=1.0)
    message = fates.new_message(2.0)
    env.timeout(1.0).callbacks.append(lambda _: got.append(broker.put(message)))
    env.run(until=3.0)
    assert got == [True, (0, 2.0)]  # capacity 0 still admits a message an idle consumer takes
    assert not broker.put(fates.new_message(3.0))


def test_what_a_consumer_fails_or_holds_when_it_dies_is_lost(fates, observer, counts, level):
    env, broker, _ = make(fates, counts, level)
    for _ in range(3):
        broker.put(fates.new_message(0.0))
    consumer = Consumer("c")
    deliveries = [next(iter(_receive_now(broker, consumer))) for _ in range(3)]
    broker.nack(deliveries[0])
    broker.disconnect(consumer, deliveries[1:])
    assert observer.fates("lost") == [(0, 0.0), (1, 0.0), (2, 0.0)] and broker.counts["lost"] == 3


def test_dead_letters_are_kept_outside_the_waiting_count_within_capacity(fates, counts, level):
    env, broker, boundary = make(fates, counts, level, capacity=1)
    assert broker.accept_dead_letter(fates.new_message(0.0))
    assert not broker.accept_dead_letter(fates.new_message(0.0))
    assert broker.dead_letters == 1 and broker.waiting == 0 and boundary.n == 0


def _receive_now(broker, consumer):
    """A receive that finds a message ready (it does not block)."""
    receive = broker.receive(consumer)
    try:
        next(receive)
    except StopIteration as done:
        return done.value
    raise AssertionError("the receive blocked")
