"""Worker pools, and the ways workers fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from simpy import Interrupt

from .broker import Consumer
from .clients import Attempt
from .crashes import Crashes, crash_loop
from .triggers import LoadDependentServiceTime, Slowdown

RETIRE = object()
"""The cause of the interrupt that asks an idle worker to leave its pool (scale-in, capacity loss)."""


class Done:
    """Where a last stage's finished work goes: the message is processed (again, a duplicate)."""

    def __init__(self, env, fates):
        self.env = env
        self.fates = fates

    def put(self, message) -> bool:
        self.fates.processed(message, self.env.now)
        return True

    def held_ids(self):
        return ()


@dataclass
class WorkerOptions:
    """How a pool's workers fail and what slows them (see :class:`WorkerPool`); the defaults are
    a pool that never fails."""

    delivery_latency: Callable[[], float] | None = None
    crashes: Crashes | None = None
    error_probability: float = 0.0
    poison_fraction: float = 0.0
    error_draw: Callable[[], float] | None = None
    shed_expired: bool = False
    slowdown: Slowdown | None = None


class WorkerPool:
    """``count`` identical workers, each a long-lived SimPy process with its own connection to one
    broker: receive (as the broker's protocol does), then for each message received wait the
    ``delivery_latency``, work for a service time, and either acknowledge it — handing the result
    to ``next_hop``: the next stage's broker, or :class:`Done` for a last stage — or, when the
    attempt fails, reject it (the broker redelivers or dead-letters it by its own rules). A result
    the next stage refuses is rejected.

    Failures:

    - ``crashes`` (:class:`~models.crashes.Crashes`, one crash loop per worker): a worker crashes, the
      broker learns that its connection died holding whatever it held (requeued, kept or lost by
      the broker's semantics), the worker stays down for the restart time, then reconnects.
      Work in progress is abandoned; a message already passed on or processed stays so, even if its
      acknowledgement had not reached the broker yet (which is how duplicates arise).
    - ``error_probability``: each attempt fails with this probability, independently.
      ``poison_fraction``: that fraction of messages (chosen by a hash of the message id, so the
      same message fails on every attempt and in every pool) can never be processed.
    - ``slowdown`` (:class:`~models.triggers.Slowdown`): the service time grows with the load
      (the messages in service in the pool, those waiting in ``broker``) and in a slowdown window.

    ``boundary`` counts messages in service, so its time average is the number of busy workers; a
    worker down after a crash is not busy. ``counts`` is the pool's window counter, ``fates`` the
    router told of messages the next hop refuses or that are shed.

    Elasticity: :meth:`add_workers` starts new workers at once (an autoscaler waits its
    scale-out delay before calling it); :meth:`retire_workers` takes workers out gracefully — an
    idle one leaves now, a busy one finishes the message in hand (a crashed one its restart)
    and leaves instead of receiving again. A worker that leaves closes its connection
    (``disconnect`` with nothing held). ``workers`` (a gauge starting at ``count``) follows the
    number of workers present; ``count`` is the number that will stay
    (present and not leaving).

    ``shed_expired``: a worker that takes an attempt whose deadline has passed (its client has
    stopped waiting: see :mod:`models.clients`) skips it instead of working on it, acknowledges
    it to the broker, and counts it as ``shed`` (load shedding, as a server that checks a
    request's deadline before starting on it). Skipping takes no time. Messages without a
    deadline are never shed.
    """

    def __init__(self, env, name, broker, count, service_time, next_hop, fates, boundary, workers, counts,
                 options: WorkerOptions | None = None):
        options = options if options is not None else WorkerOptions()
        self.env = env
        self.name = name
        self.broker = broker
        self.count = count
        self.boundary = boundary
        self.fates = fates
        self.next_hop = next_hop
        self.delivery_latency = options.delivery_latency
        self.error_probability = options.error_probability
        self.poison_threshold = int(options.poison_fraction * 2**32)
        self.error_draw = options.error_draw
        self.counts = counts
        self.crashes = options.crashes
        self.shed_expired = options.shed_expired
        self.workers = workers
        self.present = count
        self.retiring: set[Consumer] = set()
        self.down: set[Consumer] = set()
        self._starting: set[Consumer] = set()
        self._process_of: dict[Consumer, object] = {}
        self._next_index = count
        self.consumers = [Consumer(f"{name}/{i}") for i in range(count)]
        self.in_service: dict[Consumer, float] = {}
        if options.slowdown is not None:
            service_time = LoadDependentServiceTime(env, service_time, options.slowdown, self.in_service, broker)
        self.service_time = service_time
        self.processes = [self._start(c) for c in self.consumers]

    def _start(self, consumer):
        process = self.env.process(self._work(consumer))
        self._process_of[consumer] = process
        self._starting.add(consumer)
        if self.crashes is not None:
            self.env.process(crash_loop(self.env, self.crashes, process.interrupt, gone=lambda: not process.is_alive))
        return process

    # --- elasticity -----------------------------------------------------------------------------

    def add_workers(self, n: int) -> None:
        """Start ``n`` more workers now."""
        for _ in range(n):
            consumer = Consumer(f"{self.name}/{self._next_index}")
            self._next_index += 1
            self.consumers.append(consumer)
            self.count += 1
            self.present += 1
            self.processes.append(self._start(consumer))
        self.workers.set(self.env.now, self.present)

    def worker_seconds(self, now: float) -> tuple[float, float]:
        """(busy, present) worker-seconds since the start: the integrals of the workers in
        service and of the workers present (an autoscaler's utilisation is their ratio)."""
        return self.boundary.integral(now), self.workers.integral(now)

    def _idle(self, consumer) -> bool:
        """Waiting for work (or for an acknowledgement to go through): safe to interrupt."""
        return not consumer.held and consumer not in self.in_service and consumer not in self.down and consumer not in self._starting

    def retire_workers(self, n: int) -> int:
        """Take up to ``n`` workers out of the pool, idle ones first; returns how many."""
        staying = [c for c in self.consumers if c not in self.retiring]
        chosen = sorted(staying, key=lambda c: not self._idle(c))[:max(n, 0)]
        for consumer in chosen:
            self.retiring.add(consumer)
            self.count -= 1
            if self._idle(consumer):
                self._process_of[consumer].interrupt(RETIRE)
        return len(chosen)

    def _left(self, consumer) -> None:
        self.retiring.discard(consumer)
        self.consumers.remove(consumer)
        del self._process_of[consumer]
        self.present -= 1
        self.workers.set(self.env.now, self.present)
        self.broker.disconnect(consumer, [])

    # --- failures -------------------------------------------------------------------------------

    def _work(self, consumer):
        self._starting.discard(consumer)
        pending = None
        while True:
            try:
                yield from self._serve(consumer, pending)
                break  # asked to leave
            except Interrupt as stop:
                pending = None
                if stop.cause is RETIRE:
                    if consumer.held:  # handed work as it was told to go: finish it first
                        pending = list(consumer.held)
                        continue
                    break
                self._crashed(consumer)
                yield from self._down(consumer, stop.cause)
        self._left(consumer)

    def _down(self, consumer, down_for: float):
        """Stay down ``down_for`` seconds after a crash (a request to leave waits for the restart)."""
        env = self.env
        self.down.add(consumer)
        remaining = down_for
        while remaining > 0:
            started = env.now
            try:
                yield env.timeout(remaining)
                remaining = 0
            except Interrupt as again:
                remaining -= env.now - started
                if again.cause is RETIRE:
                    self.retiring.add(consumer)
        self.down.discard(consumer)

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

    def _serve(self, consumer, pending=None):
        env = self.env
        receive = self.broker.receive
        ack, nack = self.broker.ack, self.broker.nack
        service_time = self.service_time
        latency = self.delivery_latency
        boundary = self.boundary
        fates = self.fates
        put = self.next_hop.put
        in_service = self.in_service
        may_fail = self.error_probability > 0 or self.poison_threshold > 0
        timeout = env.timeout
        retiring = self.retiring
        shed = self.shed_expired
        while True:
            if pending is not None:
                deliveries, pending = pending, None
            elif retiring and consumer in retiring:
                return
            else:
                deliveries = yield from receive(consumer)
            for delivery in deliveries:
                if latency is not None:
                    yield timeout(latency())
                if shed:
                    message = delivery.message
                    if message.__class__ is Attempt and message.deadline_s < env.now:
                        consumer.held.remove(delivery)
                        self.counts.add("shed")
                        fates.shed(message, env.now)
                        wait = ack(delivery)
                        if wait:
                            yield timeout(wait)
                        continue
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
                        fates.rejected(message, now, admitted=True)
                    wait = ack(delivery)
                if wait:
                    yield timeout(wait)

    def held_ids(self):
        """Messages the workers hold: received and neither finished nor handed back."""
        return (d.message.id for c in self.consumers for d in c.held)
