"""Where an SQS queue keeps its visible messages, and in what order a receive finds them.

Both structures hold :class:`~models.sqs_parts.Entry` objects and share one interface: ``push`` (a
new message), ``push_front`` (a message whose visibility timeout expired), ``discard`` (a visible
message deleted or expired; removed lazily) and ``take(n, found, accept)``: walk the receivable
messages in order, keep those the short poll ``found`` (every one when ``found`` is None), remove
them and hand each to ``accept``, which returns whether it counts towards the ``n`` asked for (a
message moved to the dead-letter queue instead of being delivered does not).
"""

from __future__ import annotations

import heapq
from collections import deque

from .sqs_parts import COMPACT_SLACK, VISIBLE


class StandardVisible:
    """A standard queue's visible messages, oldest first, in a ``deque``.

    SQS promises only best-effort order. New messages join the back; a message whose visibility
    timeout expired goes back to the front (it has waited longest), so the order is roughly that of
    sending. Entries deleted or expired while visible are skipped when reached, and the deque is
    compacted when skipped entries outnumber live ones.
    """

    __slots__ = ("queue", "live")

    def __init__(self):
        self.queue: deque = deque()
        self.live = 0

    def push(self, entry) -> None:
        self.queue.append(entry)
        self.live += 1

    def push_front(self, entry) -> None:
        self.queue.appendleft(entry)
        self.live += 1

    def discard(self, entry) -> None:
        self.live -= 1
        if len(self.queue) > 2 * self.live + COMPACT_SLACK:
            self.queue = deque(e for e in self.queue if e.state == VISIBLE)

    def take(self, n: int, found, accept) -> int:
        queue = self.queue
        taken = 0
        skipped = []
        while queue and taken < n:
            entry = queue.popleft()
            if entry.state != VISIBLE:
                continue
            if found is not None and not found():
                skipped.append(entry)
                continue
            self.live -= 1
            if accept(entry):
                taken += 1
        if skipped:
            queue.extendleft(reversed(skipped))
        return taken


class GroupedVisible:
    """A FIFO queue's visible messages by message group: strict order within a group, and a group
    with a message in flight is locked (none of its messages can be received until every one in
    flight is deleted or visible again).

    Each group keeps its messages in a ``deque``; a heap holds the groups that can be received
    from, keyed by the sequence number of their head, so that a receive serves the group with the
    oldest head first (SQS does not promise an order across groups). A receive takes as many
    consecutive messages of that group as it can ("Amazon SQS attempts to return as many messages
    with the same message group ID as possible", FIFO-queues-understanding-logic.html), then goes
    on to the next group if it has room. ``queued[group]`` names the one heap item that is current
    for a group; other items of the group are stale and skipped. ``locked[group]`` counts the
    group's messages in flight.
    """

    __slots__ = ("groups", "ready", "queued", "locked", "live")

    def __init__(self):
        self.groups: dict[int, deque] = {}
        self.ready: list[tuple[int, int]] = []
        self.queued: dict[int, int] = {}
        self.locked: dict[int, int] = {}
        self.live = 0

    def _offer(self, group: int) -> None:
        """Make ``group``'s head receivable, if it has one and is not locked."""
        queue = self.groups.get(group)
        if queue is None:
            return
        while queue and queue[0].state != VISIBLE:
            queue.popleft()
        if not queue:
            del self.groups[group]
            self.queued.pop(group, None)
            return
        if group in self.locked:
            return
        seq = queue[0].seq
        if self.queued.get(group) != seq:
            self.queued[group] = seq
            heapq.heappush(self.ready, (seq, group))

    def push(self, entry) -> None:
        group = entry.group
        queue = self.groups.get(group)
        if queue is None:
            queue = self.groups[group] = deque()
        queue.append(entry)
        self.live += 1
        if len(queue) == 1:
            self._offer(group)

    def push_front(self, entry) -> None:
        group = entry.group
        queue = self.groups.get(group)
        if queue is None:
            queue = self.groups[group] = deque()
        queue.appendleft(entry)
        self.live += 1
        self._offer(group)

    def discard(self, entry) -> None:
        self.live -= 1
        queue = self.groups.get(entry.group)
        if queue and queue[0] is entry:
            self._offer(entry.group)

    def unlock(self, group: int) -> None:
        """One of the group's messages in flight was deleted or came back: with none left in
        flight, its head is receivable again."""
        left = self.locked.get(group, 0) - 1
        if left > 0:
            self.locked[group] = left
            return
        self.locked.pop(group, None)
        self._offer(group)

    def take(self, n: int, found, accept) -> int:
        ready, groups, queued, locked = self.ready, self.groups, self.queued, self.locked
        taken = 0
        skipped = []
        while ready and taken < n:
            seq, group = heapq.heappop(ready)
            if queued.get(group) != seq or group in locked:
                continue
            if found is not None and not found():
                skipped.append((seq, group))
                continue
            queue = groups[group]
            del queued[group]
            while queue and taken < n:
                entry = queue.popleft()
                if entry.state != VISIBLE:
                    continue
                self.live -= 1
                if accept(entry):
                    taken += 1
                    locked[group] = locked.get(group, 0) + 1
            self._offer(group)
        for item in skipped:
            heapq.heappush(ready, item)
        return taken
