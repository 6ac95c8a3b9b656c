"""A Redis stream read by one consumer group: XADD, XREADGROUP, XACK, XAUTOCLAIM."""

from __future__ import annotations

from itertools import islice

from .redis import EXTRA_COUNTS, Pending, RedisBroker

SCAN_FACTOR = 10
"""XAUTOCLAIM scans at most COUNT × 10 entries of the PEL per call (hard-coded in Redis)."""


class RedisStream(RedisBroker):
    """A stream with one consumer group, every worker one consumer of it.

    - Publishers XADD. A consumer reads with ``XREADGROUP ... COUNT 1 BLOCK ... STREAMS key >``:
      the oldest entry not yet delivered to the group, blocking while there is none (blocked
      consumers are served longest-waiting first). The entry goes to that one consumer and into the
      group's pending entries list (PEL) with a delivery count of 1, until XACK.
    - A failed attempt (a nack) and a worker's crash leave the entry pending.
    - Each consumer runs ``XAUTOCLAIM key group me min_idle_time 0-0 COUNT claim_count`` when it
      comes to read and ``claim_interval`` has passed since its last claim (its first read claims at
      once; its BLOCK timeout ends at its next claim, so an idle consumer wakes up to claim). The
      claim takes over entries idle for at least ``min_idle_time`` (scanning at most
      10 × ``claim_count`` entries, oldest first), resets their idle time and adds one to their
      delivery count; the consumer works through them before reading new entries. A busy consumer
      does not claim until it comes back to read.
    - Poison messages: with ``max_deliveries``, the claiming consumer does not take an idle entry
      that has already been delivered ``max_deliveries`` times; it XADDs it to the dead-letter
      stream and XACKs it (the message is dead-lettered after exactly ``max_deliveries``
      deliveries). If the dead-letter stream refuses it (down, full), the entry stays pending and
      the next claim tries again.
    - XACK acknowledges an entry by id, whoever holds it now: a slow consumer's late XACK
      acknowledges the entry another consumer has claimed meanwhile (whose own XACK then finds
      nothing); both processed it — a duplicate. While Redis is down an XACK fails and the entry
      stays pending, to be claimed and processed again.

    Simplifications: acknowledged entries are deleted from the stream (XACK then XDEL, or a MAXLEN
    trim), so memory holds unread and pending entries only; a ``none``-persistence restart finds the
    group recreated (real consumers would recreate it on NOGROUP); ``dead_letter`` is a separate
    broker, not a key of the same server (its crashes are its own).
    """

    extra_counts = (*EXTRA_COUNTS, "acks_undone", "claimed", "acks_failed", "acks_missed")

    def __init__(self, env, name, boundary, counts, fates, min_idle_time=60.0, claim_interval=10.0, claim_count=100,
                 max_deliveries=None, dead_letter=None, **options):
        super().__init__(env, name, boundary, counts, fates, **options)
        if self.in_flight is None:
            raise ValueError("a stream needs an in_flight boundary for its PEL")
        if max_deliveries is not None and dead_letter is None:
            raise ValueError("max_deliveries needs a dead_letter target")
        self.min_idle_time = min_idle_time
        self.claim_interval = claim_interval
        self.claim_count = claim_count
        self.max_deliveries = max_deliveries
        self.dead_letter = dead_letter
        """A callable returning the dead-letter broker (looked up once every broker exists)."""
        self.pel: dict[int, Pending] = {}
        self._next_claim: dict = {}

    # --- the PEL --------------------------------------------------------------------------------

    def pending(self):
        return self.pel.values()

    def pending_count(self) -> int:
        return len(self.pel)

    def _add_pending(self, pending: Pending) -> None:
        self.pel[pending.entry.seq] = pending

    def _discard_pending(self, pending: Pending) -> None:
        del self.pel[pending.entry.seq]

    def _keys(self) -> list[str]:
        """One key: the stream holds its consumer group and the PEL too, and is evicted with them."""
        return ["stream"] if self.ready or self.parked or self.pel else []

    # --- consumers ------------------------------------------------------------------------------

    def receive(self, consumer):
        """Claim idle entries when the claim is due, else read the next new entry (blocking until
        one comes or the next claim is due)."""
        env = self.env
        while True:
            yield from self._until_up()
            now = env.now
            due = self._next_claim.get(consumer, now)
            if now >= due:
                yield from self._command_reply()  # XAUTOCLAIM
                yield from self._until_up()
                now = env.now
                due = self._next_claim[consumer] = now + self.claim_interval
                claimed = self._autoclaim(consumer, now)
                if claimed:
                    consumer.held.extend(claimed)
                    return claimed
            yield from self._command_reply()  # XREADGROUP
            yield from self._until_up()
            now = env.now
            if self.ready:
                deliveries = [self._deliver(self._take(now), consumer)]
            else:
                deliveries = yield from self._block(consumer, max(0.0, due - now))
                if deliveries is None:
                    continue
            consumer.held.extend(deliveries)
            return deliveries

    def _deliver(self, entry, consumer):
        pending = self._new_pending(entry, consumer, self.env.now)
        return self._new_delivery(entry, consumer, entry.seq, pending.count)

    def _autoclaim(self, consumer, now: float) -> list:
        """XAUTOCLAIM: take over the entries idle for at least ``min_idle_time``."""
        if not self.pel:
            return []
        limit = now - self.min_idle_time
        claimed = []
        for pending in list(islice(self.pel.values(), self.claim_count * SCAN_FACTOR)):
            if pending.taken_s > limit:  # idle < min_idle_time (Redis: xautoclaimCommand skips this_idle < minidle)
                continue
            if self.max_deliveries is not None and pending.count >= self.max_deliveries:
                self._to_dead_letter(pending, now)
                continue
            self.persistence.pending_changed(pending)
            pending.count += 1
            pending.taken_s = now
            pending.owner = consumer
            self.counts.add("claimed")
            self._hold(pending.entry.message)
            claimed.append(self._new_delivery(pending.entry, consumer, pending.entry.seq, pending.count))
            if len(claimed) >= self.claim_count:
                break
        return claimed

    def _to_dead_letter(self, pending: Pending, now: float) -> bool:
        """XADD the entry to the dead-letter stream, then XACK it here."""
        message = pending.entry.message
        if not self.dead_letter().accept_dead_letter(message):
            return False
        self._remove_pending(pending, now)
        if not self.fates.settled(message):
            self.counts.add("dead_lettered")
        self.fates.dead_lettered(message, now)
        self._release(message, now, dropped=False)
        return True

    def ack(self, delivery) -> float:
        """XACK by entry id (a no-op if the entry is no longer pending; fails while Redis is down);
        returns the seconds the consumer waits for its reply."""
        now = self.env.now
        message = delivery.message
        wait = 0.0
        if not self.up:
            self.counts.add("acks_failed")
        else:
            wait = self.command()
            pending = self.pel.get(delivery.tag)
            if pending is not None:
                self._remove_pending(pending, now)
                self._release(pending.entry.message, now, dropped=False)
            else:
                self.counts.add("acks_missed")
        self._release(message, now, dropped=False)
        return wait

    def nack(self, delivery) -> float:
        """No XACK: the entry stays pending until a claim hands it out again."""
        self._release(delivery.message, self.env.now, dropped=True)
        return 0.0

    def disconnect(self, consumer, deliveries) -> None:
        """A consumer died (or left): its entries stay pending, for another consumer's XAUTOCLAIM.
        A consumer that connects again claims at once, as consumers do when they start."""
        self._next_claim.pop(consumer, None)
        now = self.env.now
        for delivery in deliveries:
            self._release(delivery.message, now, dropped=True)
