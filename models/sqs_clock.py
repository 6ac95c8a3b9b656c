"""An SQS queue's clock: delays, visibility timeouts, retention and long polls that fall due.

The SQS Developer Guide's behaviour, for :class:`~models.sqs.SqsBroker`: ``delay_s`` holds each new
message hidden before its first visibility; a message whose visibility timeout ends undeleted
becomes visible again, at the front of the queue; a message ``retention_s`` after it was sent is
deleted, whatever its state, and is lost if nothing processed it; a long poll that waited
``wait_time_s`` returns empty.

Visibility timeouts, delays and retention cost no SimPy event per message: each is a queue sorted by
due time (the timeouts and delays are constant, so arrival order is due order) that an
:class:`~models.sqs_parts.Alarm` looks at when the earliest item falls due; deleted messages are
skipped there, so a healthy queue wakes about once a visibility timeout.

Simplifications:

- Retention and delay are per queue. A dead letter from a standard queue expires by its original
  enqueue time (see :class:`~models.sqs.SqsBroker`).
- A message in a worker's hands when its retention ends is deleted from the queue (counted
  ``expired`` and ``lost`` here); if the worker then finishes it, it is processed all the same (the
  Recorder's rule for survivors).
"""

from __future__ import annotations

import heapq

from .sqs_parts import DELAYED, GONE, IN_FLIGHT

EPSILON_S = 1e-9


class Clock:
    """What falls due in :class:`~models.sqs.SqsBroker` (see the module's docstring), on the queues
    sorted by due time that the broker's ``__init__`` sets up (``delayed``, ``expiring``,
    ``by_age``, ``waiters``)."""

    def _wake(self, now: float) -> None:
        """Whatever fell due: delays over, visibility timeouts expired, retention reached."""
        horizon = now + EPSILON_S
        delayed = self.delayed
        while delayed and delayed[0][0] <= horizon:
            _, entry = delayed.popleft()
            if entry.state == DELAYED:
                self.delayed_boundary.leave(now, entry.since_s)
                self._make_visible(entry, now, front=False)
        expiring = self.expiring
        returning = []
        while expiring and expiring[0][0] <= horizon:
            _, entry, handle = expiring.popleft()
            if entry.state == IN_FLIGHT and entry.handle == handle:
                self.counts.add("visibility_timeouts")
                self._leave_in_flight(entry, now)
                returning.append(entry)
        for entry in reversed(returning):  # back to the front, in the order they were received
            self._make_visible(entry, now, front=True)
        by_age = self.by_age
        retention_s = self.retention_s
        while by_age:
            entry = by_age[0]
            if entry.state != GONE:
                if entry.sent_s + retention_s > horizon:
                    break  # a redriven entry (sent earlier) waits for its own alarm below
                self._remove(entry, now)
                self.counts.add("expired")
                self.counts.add("lost")
                self.fates.lost(entry.message, now)
            by_age.popleft()
        redriven = self.redriven
        while redriven and redriven[0][0] <= horizon:
            _, _, entry = heapq.heappop(redriven)
            if entry.state != GONE:
                self._remove(entry, now)
                self.counts.add("expired")
                self.counts.add("lost")
                self.fates.lost(entry.message, now)
        if self.active_waiters:
            self._serve_waiters()
            waiters = self.waiters
            while waiters and (waiters[0].cancelled or waiters[0].due_s <= horizon):
                waiter = waiters.popleft()
                if not waiter.cancelled:
                    self.active_waiters -= 1
                    waiter.event.succeed([])
        self._rearm()

    def _rearm(self) -> None:
        expiring = self.expiring
        while expiring and not (expiring[0][1].state == IN_FLIGHT and expiring[0][1].handle == expiring[0][2]):
            expiring.popleft()
        at = self.alarm.at
        if expiring:
            at(expiring[0][0])
        if self.delayed:
            at(self.delayed[0][0])
        if self.by_age:
            at(self.by_age[0].sent_s + self.retention_s)
        if self.redriven:
            at(self.redriven[0][0])
        waiters = self.waiters
        while waiters and waiters[0].cancelled:
            waiters.popleft()
        if waiters:
            at(waiters[0].due_s)
