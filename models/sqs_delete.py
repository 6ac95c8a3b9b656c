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
- FIFO queue: DeleteMessage and ChangeMessageVisibility are limited to ``api_calls_per_s`` calls a
  second each ("300 transactions per second, per API action", troubleshooting-fifo-throttling-issues.html).
  A throttled call gets a ThrottlingException, which the AWS SDKs retry with backoff: here it is
  retried until the limit lets it through (it waits for the token it needs), and takes effect then.
  So a throttled delete is late, not lost: the message comes back only if its visibility timeout
  ends meanwhile (and then the late delete's handle is stale).
- ``delete_batch``: the deletes of the messages one receive returned go as one DeleteMessageBatch
  (up to 10 receipt handles): each delete costs a share of one call (1/len(batch)), so batching
  lifts the FIFO limit to 10 messages per call (3,000 messages a second).

Simplifications: ChangeMessageVisibility with a stale handle does nothing. A batched delete is
made when each message is done (not when the last of its batch is): the batching changes only the
calls counted and the throttle, as if the SDK's buffered client flushed at no cost in time. The SDK's
retries are not bounded (the standard retry mode gives up after 3 attempts).
"""

from __future__ import annotations

from .sqs_parts import GONE, IN_FLIGHT


class Deleting:
    """DeleteMessage and ChangeMessageVisibility for :class:`~models.sqs.SqsBroker` (see the
    module's docstring)."""

    def ack(self, delivery) -> float:
        """DeleteMessage with the delivery's receipt handle; returns the call's latency (with the
        wait for a throttled call's retries)."""
        return self._call(delivery, "delete_calls", self.delete_limit, "throttled_deletes", self._delete)

    def _call(self, delivery, calls: str, limit, throttled: str, effect) -> float:
        """A DeleteMessage or ChangeMessageVisibility call about ``delivery`` (a share of a batch
        call with ``delete_batch``): ``effect(delivery)`` happens now, or, throttled by the FIFO
        limit, once its retries get through; returns how long the consumer waits for the answer."""
        cost = 1.0 / delivery.batch if self.delete_batch else 1.0
        self.counts.add(calls, cost)
        self.counts.add("billed_requests", cost)
        latency = self.delete_latency()
        wait = 0.0 if limit is None else limit.reserve(self.env.now, cost)
        if wait > 0:
            self.counts.add("throttled")
            self.counts.add(throttled)
            self.env.timeout(wait).callbacks.append(lambda _: effect(delivery))
        else:
            effect(delivery)
        return wait + latency

    def _delete(self, delivery) -> None:
        counts = self.counts
        entry = delivery.entry
        if entry.state == GONE:
            return
        if delivery.tag != entry.handle:
            counts.add("stale_deletes")
            if not self.stale_delete_deletes:
                return
        elif self.duplicate_probability > 0 and entry.state == IN_FLIGHT and self.duplicate_draw() < self.duplicate_probability:
            counts.add("missed_deletes")
            return
        self._remove(entry, self.env.now)

    def nack(self, delivery) -> float:
        """No nack in SQS: wait for the visibility timeout, or ChangeMessageVisibility to 0."""
        if not self.release_on_error:
            return 0.0
        return self._call(delivery, "change_visibility_calls", self.change_limit, "throttled_visibility_changes", self._release)

    def _release(self, delivery) -> None:
        entry = delivery.entry
        if entry.state == IN_FLIGHT and delivery.tag == entry.handle:
            now = self.env.now
            self._leave_in_flight(entry, now)
            self._make_visible(entry, now, front=True)
            if self.active_waiters:
                self._serve_waiters()

    def disconnect(self, consumer, deliveries) -> None:
        """SQS knows no connections: what a dead consumer held comes back after its timeouts."""
