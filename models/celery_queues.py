"""A Celery worker consuming several Redis queues (``celery worker -Q a,b``): kombu's BRPOP over
several keys, in a round-robin cycle."""

from __future__ import annotations

from simpy import Interrupt


class QueueCycle:
    """What a worker started with ``-Q a,b`` talks to on Redis, in the broker protocol's terms
    (kombu 5.x, ``kombu/transport/redis.py``: ``Channel._brpop_start``, ``Channel._brpop_read``;
    ``kombu/utils/scheduling.py``: ``round_robin_cycle``, the default ``queue_order_strategy``).

    kombu issues one BRPOP over the keys of all its queues, in the order of its cycle; Redis pops
    from the first of them that holds a message, and kombu then moves that queue to the end of
    the cycle (``round_robin_cycle.rotate``). So while several queues hold tasks the worker takes
    from each in turn, one task at a time, whatever their lengths or run times; a queue that is
    empty is skipped (the worker never idles while any of its queues holds a task); and when all
    are empty the BRPOP blocks on all, and the first task pushed to any of them is the worker's.
    ``queues``: queue name → the transport (:class:`~models.celery_kombu.KombuRedisTransport`)
    over that queue, in the order given to ``-Q``.

    Acknowledgements go to the queue that delivered (the task type's queue); a task the worker publishes again (a retry,
    a requeue) goes to its type's queue; what a dead worker held goes back to each queue by its
    transport's rules; each scan (:meth:`scans`) restores on every queue's unacked index.

    Simplifications: blocked on several queues, the worker waits on each (one SimPy process per
    queue, the others withdrawn when one serves it); two queues served in the same instant both
    hand it their task (BRPOP pops one), and one served in the instant the worker dies leaves
    its task in the dead worker's hands. A worker that finds a queue holding a task reads that
    queue alone (its command time paid there), and blocks on it if another worker took the task
    meanwhile.
    """

    def __init__(self, env, queues: dict):
        self.env = env
        self.queues = dict(queues)
        self.cycle = list(self.queues)
        """The queue names in BRPOP's key order: the one last taken from at the end."""
        self.name = ",".join(self.cycle)

    def receive(self, consumer):
        """BRPOP over the cycle's keys: from the first queue (in cycle order) that holds a task,
        or, when none does, from the first that gets one; that queue goes to the end."""
        ready = next((name for name in self.cycle if self.queues[name].waiting > 0), None)
        if ready is not None:
            deliveries = yield from self.queues[ready].receive(consumer)
            self._rotate(deliveries)
            return deliveries
        known = set(consumer.held)
        waits = [self.env.process(self._wait(name, consumer)) for name in self.cycle]
        try:
            yield self.env.any_of(waits)
        except Interrupt:
            self._withdraw(waits)
            raise
        self._withdraw(waits)
        yield self.env.all_of(waits)
        deliveries = [delivery for delivery in consumer.held if delivery not in known]
        for delivery in deliveries:
            self._queue_of(delivery).received([delivery])
        self._rotate(deliveries)
        return deliveries

    def _wait(self, name: str, consumer):
        """Block on one queue (its broker adds what it hands over to ``consumer.held``, also when
        served in the instant it is withdrawn)."""
        try:
            yield from self.queues[name].broker.receive(consumer)
        except Interrupt:
            return

    @staticmethod
    def _withdraw(waits) -> None:
        for wait in waits:
            if wait.is_alive:
                wait.interrupt()

    def _queue_of(self, delivery):
        return self.queues[delivery.message.type.queue]

    def _rotate(self, deliveries: list) -> None:
        """Move each queue taken from to the end of the cycle."""
        for delivery in deliveries:
            name = delivery.message.type.queue
            self.cycle.append(self.cycle.pop(self.cycle.index(name)))

    def ack(self, delivery) -> float:
        return self._queue_of(delivery).ack(delivery)

    def nack(self, delivery) -> float:
        return self._queue_of(delivery).nack(delivery)

    def put(self, message) -> bool:
        """Publish ``message`` to its task type's queue."""
        return self.queues[message.type.queue].put(message)

    def raise_prefetch(self, consumer, by: int) -> None:
        """Nothing: on Redis kombu's QoS is the worker's own count."""

    def disconnect(self, consumer, deliveries) -> None:
        by_queue = {name: [] for name in self.queues}
        for delivery in deliveries:
            by_queue[delivery.message.type.queue].append(delivery)
        for name, held in by_queue.items():
            self.queues[name].disconnect(consumer, held)

    def scans(self):
        """One worker's ``restore_visible`` scans over every queue's unacked index: when its event
        loop starts, then every scan period (the app's transports share their options)."""
        transports = list(self.queues.values())
        try:
            while True:
                for transport in transports:
                    transport.scan()
                yield self.env.timeout(transports[0].scan_period_s)
        except Interrupt:
            return
