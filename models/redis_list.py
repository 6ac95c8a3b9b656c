"""Redis lists as queues: LPUSH + BRPOP, and the reliable queue (BLMOVE + LREM + a monitor)."""

from __future__ import annotations

from simpy import Interrupt

from .redis import EXTRA_COUNTS, Pending, RedisBroker

RELIABLE_COUNTS = (*EXTRA_COUNTS, "acks_undone", "requeued", "acks_failed", "acks_missed")


class RedisList(RedisBroker):
    """A Redis list used as a queue.

    Publishers LPUSH; consumers take from the other end, oldest first, blocking while the list is
    empty (blocked clients are served longest-waiting first).

    **Plain** (``reliable=False``): BRPOP removes the message from Redis. From then on it exists
    only in the worker's hands: a worker that dies holding it loses it (at-most-once), and so does
    a failed attempt (a nack: there is nothing to redeliver from, so the failure loses it; real code
    could LPUSH it again, which is a new message as far as Redis knows).

    **Reliable** (``reliable=True``): BLMOVE moves the message atomically into a processing list
    (its LEFT end: the newest first); after the work the worker removes it with ``LREM processing
    1 value``; a monitor wakes every ``monitor_interval`` and pushes back (LPUSH, the back of the
    line, as RPOPLPUSH from the processing list does) every item held longer than
    ``processing_timeout``. Nothing is lost to a worker's crash (at-least-once), but:

    - a worker that is late (a service longer than the timeout) or that dies after the work and
      before its LREM gets its message processed again: a duplicate;
    - LREM removes by value: the first copy of the message found from the head of the processing
      list, which is the newest. When a late worker acknowledges a message the monitor has already
      pushed back, its LREM finds nothing if the copy still waits in the list (that copy will be
      processed again), or removes the copy another worker has just taken — whose own LREM then
      finds nothing, and whose work, unprotected, is the duplicate;
    - a failed attempt (a nack) is left in the processing list for the monitor to push back after
      the timeout (a retry with a delay of ``processing_timeout``; a poison message loops for ever,
      as with a hand-written monitor that counts nothing);
    - while Redis is down an LREM fails and the item stays in the processing list: the monitor
      pushes it back after the restart and it is processed again;
    - BLMOVE is a ``denyoom`` command (its command table entry, ``src/commands/blmove.json``, carries
      the ``DENYOOM`` flag; BRPOP and XREADGROUP do not): at ``maxmemory`` with ``noeviction`` it is
      refused like a write, although it only moves an item. So when the queue fills Redis to
      ``max_messages``, consumers cannot take work either: they stall (counted ``oom_stalls``) until
      an LREM frees room. A full list with an empty processing list stays stuck until something
      outside the queue frees memory. Simplification: a refused BLMOVE is retried the moment memory
      falls below the limit (clients retry after an error, with some delay). Under an ``allkeys-*``
      ``maxmemory-policy`` the BLMOVE is not refused: Redis evicts a key first
      (:mod:`models.redis_eviction`: the processing list, the waiting list, or both).

    The monitor is one client for the whole queue (a cron job or a thread in one worker); its
    clock starts at ``monitor_phase`` (random by default, so that its ticks are not aligned with
    anything else) and it does nothing while Redis is down. Each item's taking time is known to it
    (real code keeps it beside the item, in a hash or in the value).
    """

    def __init__(self, env, name, boundary, counts, fates, reliable=False, processing_timeout=60.0, monitor_interval=10.0,
                 monitor_phase=None, **options):
        super().__init__(env, name, boundary, counts, fates, **options)
        self.reliable = reliable
        self.memory_waiters: list = []
        """Consumers whose BLMOVE was refused at maxmemory, waiting for room."""
        if reliable:
            stalls = ("oom_stalls",) if self.max_messages is not None and not self.eviction.evicts else ()
            self.extra_counts = (*RELIABLE_COUNTS, *self.extra_counts[len(EXTRA_COUNTS):], *stalls)
        self.processing_timeout = processing_timeout
        self.monitor_interval = monitor_interval
        self.processing: dict[int, list[Pending]] = {}
        self._processing_n = 0
        if reliable:
            if self.in_flight is None:
                raise ValueError("a reliable list needs an in_flight boundary for its processing list")
            env.process(self._monitor(monitor_interval if monitor_phase is None else monitor_phase))

    def restore(self, message) -> bool:
        """RPUSH: ``message`` back at the pop end, so that it is the next one taken (what kombu's
        ``restore_visible`` does with what stayed unacknowledged too long); refused as ``put`` is."""
        return self._insert(message, at_head=True)

    # --- the processing list --------------------------------------------------------------------

    def pending(self):
        for copies in self.processing.values():
            yield from copies

    def pending_count(self) -> int:
        return self._processing_n

    def _add_pending(self, pending: Pending) -> None:
        self.processing.setdefault(pending.entry.message.id, []).append(pending)
        self._processing_n += 1

    def _discard_pending(self, pending: Pending) -> None:
        key = pending.entry.message.id
        copies = self.processing[key]
        copies.remove(pending)
        if not copies:
            del self.processing[key]
        self._processing_n -= 1
        if self.memory_waiters:
            waiters, self.memory_waiters = self.memory_waiters, []
            for event in waiters:
                event.succeed()

    def _keys(self) -> list[str]:
        return [*super()._keys(), "processing"] if self._processing_n else super()._keys()

    # --- consumers ------------------------------------------------------------------------------

    def receive(self, consumer):
        """BRPOP (or BLMOVE): the oldest message, blocking while there is none. A reliable list's
        BLMOVE is refused at maxmemory: the consumer waits for room, then tries again."""
        yield from self._until_up()
        yield from self._command_reply()
        yield from self._until_up()
        while self.reliable and not self._room():  # BLMOVE is denyoom
            self.counts.add("oom_stalls")
            event = self.env.event()
            self.memory_waiters.append(event)
            try:
                yield event
            except Interrupt:
                if event in self.memory_waiters:
                    self.memory_waiters.remove(event)
                raise
            yield from self._until_up()
        if self.ready:
            deliveries = [self._deliver(self._take(self.env.now), consumer)]
        else:
            deliveries = yield from self._block(consumer)
        consumer.held.extend(deliveries)
        return deliveries

    def _deliver(self, entry, consumer):
        if self.reliable:
            self._new_pending(entry, consumer, self.env.now)
        return self._new_delivery(entry, consumer, self._next_tag())

    def ack(self, delivery) -> float:
        """Plain: nothing to do (the pop was the end of it). Reliable: LREM processing 1 value;
        returns the seconds the consumer waits for its reply."""
        now = self.env.now
        message = delivery.message
        wait = 0.0
        if self.reliable:
            wait = self.command()
            if not self.up:
                self.counts.add("acks_failed")
            else:
                copies = self.processing.get(message.id)
                if copies:
                    removed = copies[-1]
                    self._remove_pending(removed, now)
                    self._release(removed.entry.message, now, dropped=False)
                else:
                    self.counts.add("acks_missed")
        self._release(message, now, dropped=False)
        return wait

    def nack(self, delivery) -> float:
        """Plain: the message is gone. Reliable: it stays in the processing list for the monitor."""
        self._release(delivery.message, self.env.now, dropped=True)
        return 0.0

    def disconnect(self, consumer, deliveries) -> None:
        """A worker died holding ``deliveries``: plain, they are lost; reliable, their copies in
        the processing list wait for the monitor."""
        now = self.env.now
        for delivery in deliveries:
            self._release(delivery.message, now, dropped=True)

    # --- the monitor ----------------------------------------------------------------------------

    def _monitor(self, phase: float):
        env = self.env
        yield env.timeout(phase)
        while True:
            if self.up:
                self.requeue_stale(env.now)
            yield env.timeout(self.monitor_interval)

    def requeue_stale(self, now: float) -> int:
        """Push back every item held longer than ``processing_timeout``; returns how many."""
        limit = now - self.processing_timeout
        stale = sorted((p for p in self.pending() if p.taken_s < limit), key=lambda p: p.pseq)
        for pending in stale:
            self.command()
            entry = pending.entry
            self._remove_pending(pending, now)
            self._push(entry.message, now, handed=entry.handed)
            self._release(entry.message, now, dropped=False)
            self.counts.add("requeued")
        if stale and self.blocked:
            self._serve_waiting()
        return len(stale)
