"""Worker pools, and the ways workers fail."""

from __future__ import annotations

from simpy import Interrupt

from .broker import Consumer
from .clients import Attempt

RETIRE = object()
"""The cause of the interrupt that asks an idle worker to leave its pool (scale-in, capacity loss)."""


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

    Elasticity: :meth:`add_workers` starts new workers at once (an autoscaler waits its
    scale-out delay before calling it); :meth:`retire_workers` takes workers out gracefully — an
    idle one leaves now, a busy one finishes the message in hand (a crashed one its restart)
    and leaves instead of receiving again. A worker that leaves closes its connection
    (``disconnect`` with nothing held). ``workers`` (a Recorder gauge) follows the number of
    workers present; ``count`` is the number that will stay (present and not leaving).

    ``shed_expired``: a worker that takes an attempt whose deadline has passed (its client has
    stopped waiting: see :mod:`models.clients`) skips it instead of working on it, acknowledges
    it to the broker, and counts it as ``shed`` (load shedding, as a server that checks a
    request's deadline before starting on it). Skipping takes no time. Messages without a
    deadline are never shed.
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
        shed_expired=False,
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
        self.crash_after = crash_after
        self.shed_expired = shed_expired
        self.workers = recorder.gauge(name, count)
        self.present = count
        self.retiring: set[Consumer] = set()
        self.down: set[Consumer] = set()
        self._starting: set[Consumer] = set()
        self._process_of: dict[Consumer, object] = {}
        self._next_index = count
        self.consumers = [Consumer(f"{name}/{i}") for i in range(count)]
        self.in_service: dict[Consumer, float] = {}
        self.processes = [self._start(c) for c in self.consumers]

    def _start(self, consumer):
        process = self.env.process(self._work(consumer))
        self._process_of[consumer] = process
        self._starting.add(consumer)
        if self.crash_after is not None:
            self.env.process(self._failures(process, self.crash_after))
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

    def _failures(self, worker, crash_after):
        env = self.env
        while True:
            yield env.timeout(crash_after())
            if not worker.is_alive:
                return  # the worker left the pool
            down_for = self.restart_time()
            worker.interrupt(down_for)
            yield env.timeout(down_for)

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
        recorder = self.recorder
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
                        recorder.shed(message, env.now)
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
                        recorder.rejected(message, now, admitted=True)
                    wait = ack(delivery)
                if wait:
                    yield timeout(wait)

    def held_ids(self):
        """Messages the workers hold: received and neither finished nor handed back."""
        return (d.message.id for c in self.consumers for d in c.held)
