"""How an SQS queue answers DeleteMessage and ChangeMessageVisibility.

The SQS Developer Guide's behaviour, for :class:`~models.sqs.SqsBroker`:

- DeleteMessage with the latest handle deletes the message (even if its timeout has expired,
  provided nobody received it since). With an older handle the call succeeds but, by default
  (``stale_delete="keep"``), does not delete the copy received since ("a delete with an older handle
  may succeed without deleting the message"); ``"delete"`` deletes it anyway. Every delete takes
  ``delete_latency()``; it takes effect when made and the worker waits for its answer.
- With ``duplicate_probability`` p, a delete is missed by a server holding a copy: the call
  succeeds but the message stays in flight and comes back visible when its visibility timeout ends,
  to be received and processed again (SQS's "occasionally a second copy").
- No negative acknowledgement: a failed message is left to its visibility timeout
  (``on_error="wait"``) or released at once with ChangeMessageVisibility to 0
  (``on_error="release"``, a call that takes ``delete_latency``). A consumer that dies holds nothing
  the queue knows of: its messages come back when their timeouts end.
- FIFO queue: a throttled delete deletes nothing (the message comes back after its timeout); a
  throttled ChangeMessageVisibility changes nothing.

Simplification: ChangeMessageVisibility with a stale handle does nothing.
"""

from __future__ import annotations

from .sqs_parts import GONE, IN_FLIGHT


class Deleting:
    """DeleteMessage and ChangeMessageVisibility for :class:`~models.sqs.SqsBroker` (see the
    module's docstring)."""

    def ack(self, delivery) -> float:
        """DeleteMessage with the delivery's receipt handle; returns the call's latency."""
        now = self.env.now
        counts = self.counts
        counts.add("delete_calls")
        latency = self.delete_latency()
        if self.delete_limit is not None and not self.delete_limit.take(now):
            counts.add("throttled")
            counts.add("throttled_deletes")
            return latency
        entry = delivery.entry
        if entry.state == GONE:
            return latency
        if delivery.tag != entry.handle:
            counts.add("stale_deletes")
            if not self.stale_delete_deletes:
                return latency
        elif self.duplicate_probability > 0 and entry.state == IN_FLIGHT and self.duplicate_draw() < self.duplicate_probability:
            counts.add("missed_deletes")
            return latency
        self._remove(entry, now)
        return latency

    def nack(self, delivery) -> float:
        """No nack in SQS: wait for the visibility timeout, or ChangeMessageVisibility to 0."""
        if not self.release_on_error:
            return 0.0
        now = self.env.now
        counts = self.counts
        counts.add("change_visibility_calls")
        latency = self.delete_latency()
        if self.change_limit is not None and not self.change_limit.take(now):
            counts.add("throttled")
            counts.add("throttled_visibility_changes")
            return latency
        entry = delivery.entry
        if entry.state == IN_FLIGHT and delivery.tag == entry.handle:
            self._leave_in_flight(entry, now)
            self._make_visible(entry, now, front=True)
            if self.active_waiters:
                self._serve_waiters()
        return latency

    def disconnect(self, consumer, deliveries) -> None:
        """SQS knows no connections: what a dead consumer held comes back after its timeouts."""
