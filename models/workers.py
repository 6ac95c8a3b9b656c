"""Worker pools, and the ways workers fail."""

from __future__ import annotations

from simpy import Interrupt

from .broker import Consumer


class Done:
    """Where a last stage's finished work goes: the message is processed (again, a duplicate)."""

    def __init__(self, env, recorder):
        self.env = env
        self.recorder = recorder

    def put(self, message) -> bool:
        self.recorder.processed(message, self.env.now)
        return True

    def held_ids(self):
        return ()


class WorkerPool:
    """``count`` identical workers, each a long-lived SimPy process with its own connection to one
    broker: receive (as the broker's protocol does), then for each message received wait the
    ``delivery_latency``, work for a service time, and either acknowledge it — handing the result
    to ``next_hop``: the next stage's broker, or :class:`Done` for a last stage — or, when the
    attempt fails, reject it (the broker redelivers or dead-letters it by its own rules). A result
    the next stage refuses is rejected.

    Failures:

    - ``crash_after`` (a sampler of times to failure) and ``restart_time``: a worker crashes, the
      broker learns that its connection died holding whatever it held (requeued, kept or lost by
      the broker's semantics), the worker stays down for the restart time, then reconnects.
      Work in progress is abandoned; a message already passed on or processed stays so, even if its
      acknowledgement had not reached the broker yet (which is how duplicates arise).
    - ``error_probability``: each attempt fails with this probability, independently.
      ``poison_fraction``: that fraction of messages (chosen by a hash of the message id, so the
      same message fails on every attempt and in every pool) can never be processed.

    The pool's :class:`~sim.recorder.Boundary` counts messages in service, so its time average is
    the number of busy workers; a worker down after a crash is not busy.
    """

    def __init__(
        self,
        env,
        name,
        broker,
        count,
        service_time,
        boundary,
        recorder,
        next_hop,
        delivery_latency=None,
        crash_after=None,
        restart_time=None,
        error_probability=0.0,
        poison_fraction=0.0,
        error_draw=None,
    ):
        self.env = env
        self.name = name
        self.broker = broker
        self.count = count
        self.service_time = service_time
        self.boundary = boundary
        self.recorder = recorder
        self.next_hop = next_hop
        self.delivery_latency = delivery_latency
        self.restart_time = restart_time
        self.error_probability = error_probability
        self.poison_threshold = int(poison_fraction * 2**32)
        self.error_draw = error_draw
        self.counts = recorder.counter(name)
        self.consumers = [Consumer(f"{name}/{i}") for i in range(count)]
        self.in_service: dict[Consumer, float] = {}
        self.processes = [env.process(self._work(c)) for c in self.consumers]
        if crash_after is not None:
            for process in self.processes:
                env.process(self._failures(process, crash_after))

    def _failures(self, worker, crash_after):
        env = self.env
        while True:
            yield env.timeout(crash_after())
            down_for = self.restart_time()
            worker.interrupt(down_for)
            yield env.timeout(down_for)

    def _work(self, consumer):
        env = self.env
        while True:
            try:
                yield from self._serve(consumer)
            except Interrupt as crash:
                self._crashed(consumer)
                yield env.timeout(crash.cause)

    def _crashed(self, consumer) -> None:
        now = self.env.now
        self.counts.add("crashes")
        started = self.in_service.pop(consumer, None)
        if started is not None:
            self.boundary.leave(now, started)
        held, consumer.held = consumer.held, []
        self.broker.disconnect(consumer, held)

    def _is_poison(self, message) -> bool:
        return ((message.id * 2654435761) & 0xFFFFFFFF) < self.poison_threshold

    def _serve(self, consumer):
        env = self.env
        receive = self.broker.receive
        ack, nack = self.broker.ack, self.broker.nack
        service_time = self.service_time
        latency = self.delivery_latency
        boundary = self.boundary
        recorder = self.recorder
        put = self.next_hop.put
        in_service = self.in_service
        may_fail = self.error_probability > 0 or self.poison_threshold > 0
        timeout = env.timeout
        while True:
            deliveries = yield from receive(consumer)
            for delivery in deliveries:
                if latency is not None:
                    yield timeout(latency())
                started = env.now
                in_service[consumer] = started
                boundary.enter(started)
                yield timeout(service_time())
                now = env.now
                del in_service[consumer]
                boundary.leave(now, started)
                consumer.held.remove(delivery)
                message = delivery.message
                if may_fail and (self._is_poison(message) or self.error_draw() < self.error_probability):
                    self.counts.add("errors")
                    wait = nack(delivery)
                else:
                    self.counts.add("completed")
                    if not put(message):
                        recorder.rejected(message, now, admitted=True)
                    wait = ack(delivery)
                if wait:
                    yield timeout(wait)

    def held_ids(self):
        """Messages the workers hold: received and neither finished nor handed back."""
        return (d.message.id for c in self.consumers for d in c.held)
