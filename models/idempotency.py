"""Idempotent consumers: a table of processed message ids, written in the consumer's own transaction."""

from __future__ import annotations


class IdempotentDone:
    """Takes the place of :class:`~models.workers.Done` (or of the next stage's broker) for a
    worker pool whose consumer is idempotent: its work and an INSERT of the message id into a
    processed-ids table commit in one transaction, so a copy of a message already processed
    fails on the table's unique key (or is found by a check first) and its transaction rolls
    back: the copy is skipped, counted as ``suppressed``, and acknowledged to the broker.
    A result the next hop refuses is not recorded (the transaction rolled back), so a later
    copy can still go through.

    Without it a copy is processed again (the Recorder counts a duplicate).

    Simplifications: the table keeps every id for the whole run (no retention); it is checked at
    the end of the work, so a suppressed copy has cost its service time (with a check before
    the work the copy would cost only the check — shorten nothing here, it is the pessimistic
    case); two copies in service at once race and the one that finishes first wins, as the
    unique key decides in a real database. The ids live in a bytearray indexed by message id:
    one byte per message of the run.
    """

    def __init__(self, env, fates, counts, next_hop):
        self.env = env
        self.fates = fates
        self.counts = counts
        self.next_hop = next_hop
        self.processed_ids = bytearray()

    def put(self, message) -> bool:
        i = message.id
        seen = self.processed_ids
        if i < len(seen) and seen[i]:
            self.counts.add("suppressed")
            self.fates.suppressed(message, self.env.now)
            return True
        if not self.next_hop.put(message):
            return False
        if i >= len(seen):
            seen.extend(bytes(max(i + 1 - len(seen), len(seen) // 2 + 1024)))
        seen[i] = 1
        return True

    def held_ids(self):
        return ()
