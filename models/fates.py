"""What becomes of a message, told by the models: its fates, routed to whoever must know.

Models tell a :class:`Fates` router what happens to a message: it was made (:meth:`Fates.new_message`),
admitted by the first component it was sent to, processed by the last stage, lost, rejected,
dead-lettered, shed by a worker, suppressed by an idempotent consumer, and whether its business
row committed. The router sends each fate of a client's :class:`~models.clients.Attempt` to the
attempt's client (which decides its request's outcome and tells the observer itself), and every
fate of any other message to an :class:`Observer` — in a simulation, the Recorder, which only
measures.

Whether a message already has an outcome (:meth:`Fates.settled`) is the observer's answer: a
broker asks it before counting a message it drops as lost (a copy of a message processed elsewhere
is not a loss).

The router checks a message's class once per fate; fates that never concern a client go straight
to the observer's bound methods.
"""

from __future__ import annotations

from typing import Protocol

from .clients import Attempt
from .message import Message


class Observer(Protocol):
    """Who is told of every fate of every message that is not a client's attempt, and of every
    request's outcome (from the clients)."""

    def created(self, now: float) -> int:
        """A message is made now; returns its id (0, 1, 2… in order of creation)."""

    def settled(self, message: Message) -> bool:
        """Whether ``message`` (or, for an attempt, its request) already has an outcome."""

    def admitted(self, message: Message, now: float) -> None: ...

    def processed(self, message: Message, now: float) -> None: ...

    def lost(self, message: Message, now: float) -> None: ...

    def dead_lettered(self, message: Message, now: float) -> None: ...

    def rejected(self, message: Message, now: float, admitted: bool) -> None: ...

    def suppressed(self, message: Message, now: float) -> None: ...

    def committed(self, message: Message, now: float) -> None: ...

    def not_committed(self, message: Message, now: float) -> None: ...

    def request_admitted(self, request, now: float) -> None: ...

    def request_settled(self, request, now: float, outcome: str) -> None: ...

    def duplicate(self, request) -> None: ...

    def retry_sent(self, now: float) -> None: ...

    def wasted(self, now: float) -> None: ...


class Fates:
    """Routes the fates models tell: an attempt's to its client, any other message's to ``observer``.

    - :meth:`new_message`: a producer makes a message;
    - ``admitted``: the first component it was sent to accepted it (it is in the system);
    - :meth:`processed`: the last stage finished it (again, if it had: a duplicate);
    - :meth:`lost`, :meth:`dead_lettered`: it is gone, or parked in a dead-letter queue;
    - :meth:`rejected`: refused for good (``admitted``: a later stage refused it);
    - :meth:`shed`: a worker skipped it because its client's deadline had passed (only attempts
      have deadlines);
    - :meth:`suppressed`: an idempotent consumer skipped a copy of a message it had processed;
    - ``committed``, ``not_committed``: its business row committed, or never will;
    - ``settled``: whether it already has an outcome.

    Clients tell the observer of their requests directly: ``request_admitted``,
    ``request_settled``, ``duplicate``, ``retry_sent`` and ``wasted`` are the observer's.
    """

    __slots__ = (
        "observer", "admitted", "committed", "not_committed", "settled", "request_admitted", "request_settled",
        "duplicate", "retry_sent", "wasted", "_created", "_processed", "_lost", "_dead_lettered", "_rejected", "_suppressed",
    )

    def __init__(self, observer: Observer):
        self.observer = observer
        self.admitted = observer.admitted
        self.committed = observer.committed
        self.not_committed = observer.not_committed
        self.settled = observer.settled
        self.request_admitted = observer.request_admitted
        self.request_settled = observer.request_settled
        self.duplicate = observer.duplicate
        self.retry_sent = observer.retry_sent
        self.wasted = observer.wasted
        self._created = observer.created
        self._processed = observer.processed
        self._lost = observer.lost
        self._dead_lettered = observer.dead_lettered
        self._rejected = observer.rejected
        self._suppressed = observer.suppressed

    def new_message(self, now: float) -> Message:
        """A new message, made now, with the next id."""
        return Message(self._created(now), now)

    def processed(self, message: Message, now: float) -> None:
        if message.__class__ is Attempt:
            message.request.client.attempt_processed(message, now)
        else:
            self._processed(message, now)

    def lost(self, message: Message, now: float) -> None:
        if message.__class__ is Attempt:
            message.request.client.attempt_failed(message, now, "lost")
        else:
            self._lost(message, now)

    def dead_lettered(self, message: Message, now: float) -> None:
        if message.__class__ is Attempt:
            message.request.client.attempt_failed(message, now, "dead_lettered")
        else:
            self._dead_lettered(message, now)

    def rejected(self, message: Message, now: float, admitted: bool) -> None:
        if message.__class__ is Attempt:
            message.request.client.attempt_failed(message, now, "rejected")
        else:
            self._rejected(message, now, admitted)

    def shed(self, message: Message, now: float) -> None:
        if message.__class__ is Attempt:
            message.request.client.attempt_shed(message, now)

    def suppressed(self, message: Message, now: float) -> None:
        """The observer flags the copy; an attempt's client gets the table's answer as its response."""
        self._suppressed(message, now)
        if message.__class__ is Attempt:
            message.request.client.attempt_suppressed(message, now)
