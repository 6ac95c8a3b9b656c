"""The dual write: an application writes its database and publishes to a broker as two separate
steps, with no transaction spanning both — what the transactional outbox replaces."""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Callable

from .crashes import Crashes, crash_loop

CONNECT, COMMIT, PUBLISH, DONE = range(4)


class PublishCall:
    """One publication sent to the broker: it lands after its latency, whatever the application
    has decided by then (it may have stopped waiting: a timeout)."""

    __slots__ = ("request", "cancelled")

    def __init__(self, request):
        self.request = request
        self.cancelled = False

    def land(self, _event) -> None:
        self.request.app._land(self)

    def timed_out(self, _event) -> None:
        self.request.app._timed_out(self)


class DualWriteRequest:
    """One user request going through the two writes."""

    __slots__ = ("app", "message", "started_s", "stage", "waiter", "connection", "call", "attempts", "in_transit",
                 "landed", "committed", "answered")

    def __init__(self, app, message, started_s: float):
        self.app = app
        self.message = message
        self.started_s = started_s
        self.stage = CONNECT
        self.waiter = None
        self.connection = None
        self.call = None
        self.attempts = 0
        self.in_transit = 0
        self.landed = 0
        self.committed = False
        self.answered = False

    def connected(self, connection) -> None:
        self.app._connected(self, connection)

    def commit_done(self, _event) -> None:
        self.app._commit_done(self)

    def connection_lost(self) -> None:
        self.app._connection_lost(self)


@dataclass
class DualWriteOptions:
    """How a dual write goes and fails (see :class:`DualWrite`): ``commit_time`` and
    ``publish_time`` are samplers, ``crash_draw`` and ``ack_lost_draw`` uniform draws,
    ``window_start_s`` the start of the measurement window (request latencies count from it)."""

    commit_time: Callable[[], float]
    publish_time: Callable[[], float]
    commit_first: bool = True
    crash_probability: float = 0.0
    crash_draw: Callable[[], float] | None = None
    ack_lost_draw: Callable[[], float] | None = None
    publish_timeout_s: float | None = None
    publish_timeout_probability: float = 0.0
    publish_retries: int = 0
    crashes: Crashes | None = None
    window_start_s: float = 0.0


class DualWrite:
    """An application that, for each request (``put(message)``), commits the business row in its
    database and publishes the event to ``target`` in two steps:

    - ``commit_first`` (commit-then-publish): a request whose commit fails publishes nothing
      (the user got an error; consistent); one that dies after its commit, or whose publication
      never reaches the broker, leaves a committed row that nobody hears of: the event is
      **lost**.
    - publish-then-commit: a request that dies after publishing, or whose commit then fails,
      leaves an event in the broker for a row that does not exist: a **phantom**, processed
      downstream (the Recorder finds it: processed, business row not committed).

    What can go wrong between and around the two writes:

    - ``crash_probability``: the request's handler dies right between the two writes;
    - ``crashes``: the whole process dies at any moment: a transaction in
      progress rolls back, a publication not yet sent is not sent, every request in progress
      gets an error; while it restarts, requests are refused (``put`` returns False);
    - the broker refuses a publication (``target.put`` returns False): the application sees an
      error;
    - the publication takes ``publish_time`` (a sampler) to reach the broker; if that exceeds
      ``publish_timeout_s`` the application stops waiting at the timeout and treats it as a
      failure although the message lands later; with ``publish_timeout_probability`` a
      publication that landed has its acknowledgement lost and the application sees a timeout
      too. A failed publication is retried ``publish_retries`` times (each retry that follows a
      timeout may duplicate the event); after the last one, commit-then-publish gives up (the
      row stays committed) and publish-then-commit does not commit (the user gets an error);
    - the database crashes (:class:`~models.database.Database`) or is down.

    The user's answer (``request_latency``) comes after both steps; the application's
    ``boundary`` counts requests until answered. A message ends with the
    broker's outcome if some copy landed; otherwise the request settles it: ``lost`` if its row
    committed, ``rejected`` if not.

    Simplifications: a publication lands (or not) at the end of its latency, as one event; an
    acknowledgement takes no extra time; retries follow at once, without backoff.
    """

    def __init__(self, env, name, database, target, fates, boundary, counts, options: DualWriteOptions):
        o = options
        self.env = env
        self.name = name
        self.database = database
        self.target = target
        self.fates = fates
        self.boundary = boundary
        self.counts = counts
        self.commit_time = o.commit_time
        self.publish_time = o.publish_time
        self.commit_first = o.commit_first
        self.crash_probability = o.crash_probability
        self.crash_draw = o.crash_draw
        self.ack_lost_draw = o.ack_lost_draw
        self.publish_timeout_s = o.publish_timeout_s
        self.publish_timeout_probability = o.publish_timeout_probability
        self.publish_retries = o.publish_retries
        self.window_start_s = o.window_start_s
        self.up = True
        self.requests: dict[DualWriteRequest, None] = {}  # in order of arrival: a crash abandons them in that order
        self.request_latencies_s = array("d")
        if o.crashes is not None:
            env.process(crash_loop(env, o.crashes, self._crash, self._restart))

    # --- requests -------------------------------------------------------------------------------

    def put(self, message) -> bool:
        now = self.env.now
        if not self.up or (self.commit_first and not self.database.up):
            self.counts.add("refused")
            self.fates.not_committed(message, now)
            return False
        request = DualWriteRequest(self, message, now)
        self.requests.setdefault(request)
        self.boundary.enter(now)
        if self.commit_first:
            self._transaction(request)
        else:
            self._publish(request)
        return True

    def _transaction(self, request) -> None:
        request.stage = CONNECT
        request.waiter = self.database.connect("request", request.connected)
        if request.waiter is None:
            self._commit_failed(request)

    def _connected(self, request, connection) -> None:
        request.waiter = None
        if connection is None:
            self._commit_failed(request)
            return
        request.connection = connection
        connection.on_lost = request.connection_lost
        request.stage = COMMIT
        self.env.timeout(self.commit_time()).callbacks.append(request.commit_done)

    def _commit_done(self, request) -> None:
        connection = request.connection
        if request.stage != COMMIT or connection is None:
            return
        request.connection = None
        if not self.database.release(connection):
            self._commit_failed(request)
            return
        now = self.env.now
        request.committed = True
        self.counts.add("committed")
        self.fates.committed(request.message, now)
        if self.commit_first:
            if not self._dies_between(request):
                self._publish(request)
        else:
            self._finish(request, ok=True)

    def _connection_lost(self, request) -> None:
        if request.stage == COMMIT:
            request.connection = None
            self._commit_failed(request)

    def _commit_failed(self, request) -> None:
        self.counts.add("commit_failed")
        self.fates.not_committed(request.message, self.env.now)
        self._finish(request, ok=False)

    def _dies_between(self, request) -> bool:
        if self.crash_probability and self.crash_draw() < self.crash_probability:
            self.counts.add("died_between_writes")
            if not request.committed:
                self.fates.not_committed(request.message, self.env.now)
            self._finish(request, ok=False)
            return True
        return False

    def _publish(self, request) -> None:
        request.stage = PUBLISH
        request.attempts += 1
        call = request.call = PublishCall(request)
        request.in_transit += 1
        latency = self.publish_time()
        env = self.env
        env.timeout(latency).callbacks.append(call.land)
        if self.publish_timeout_s is not None and latency > self.publish_timeout_s:
            env.timeout(self.publish_timeout_s).callbacks.append(call.timed_out)

    def _land(self, call) -> None:
        if call.cancelled:
            return
        request = call.request
        request.in_transit -= 1
        accepted = self.target.put(call.request.message)
        if accepted:
            request.landed += 1
            self.counts.add("published")
        else:
            self.counts.add("refused_publishes")
        if request.call is call and request.stage == PUBLISH:
            request.call = None
            if accepted and self.publish_timeout_probability and self.ack_lost_draw() < self.publish_timeout_probability:
                self.counts.add("publish_timeouts")
                self._publish_failed(request)
            elif accepted:
                self._published(request)
            else:
                self._publish_failed(request)
        else:
            self._settle(request)

    def _timed_out(self, call) -> None:
        request = call.request
        if call.cancelled or request.call is not call or request.stage != PUBLISH:
            return
        request.call = None
        self.counts.add("publish_timeouts")
        self._publish_failed(request)

    def _published(self, request) -> None:
        if self.commit_first:
            self._finish(request, ok=True)
        elif not self._dies_between(request):
            self._transaction(request)

    def _publish_failed(self, request) -> None:
        if request.attempts <= self.publish_retries:
            self.counts.add("publish_retries")
            self._publish(request)
            return
        if not self.commit_first:
            self.fates.not_committed(request.message, self.env.now)
        self._finish(request, ok=False)

    def _finish(self, request, ok: bool) -> None:
        """Answer the user (success or error); settle the message once nothing is in transit."""
        request.stage = DONE
        if not request.answered:
            request.answered = True
            now = self.env.now
            self.boundary.leave(now, request.started_s)
            self.counts.add("answered_ok" if ok else "answered_error")
            if ok and request.started_s >= self.window_start_s:
                self.request_latencies_s.append(now - request.started_s)
        self._settle(request)

    def _settle(self, request) -> None:
        if request.stage != DONE or request.in_transit or request not in self.requests:
            return
        self.requests.pop(request, None)
        if request.landed:
            return  # a copy is in the broker: its fate is the broker's
        now = self.env.now
        if request.committed:
            self.counts.add("never_published")
            self.fates.lost(request.message, now)
        else:
            self.fates.rejected(request.message, now, admitted=True)

    # --- the process dies -----------------------------------------------------------------------

    def _crash(self, down_s: float) -> None:
        """The process dies for ``down_s``: every request in progress fails."""
        self.up = False
        self.counts.add("crashes")
        now = self.env.now
        requests = list(self.requests)
        for request in requests:  # the waiters die with it: none may be lent a connection freed below
            if request.stage == CONNECT and request.waiter is not None:
                self.database.cancel(request.waiter)
                request.waiter = None
        for request in requests:
            stage = request.stage
            if stage == DONE:
                continue  # answered; only an abandoned publication is still on its way
            if stage == CONNECT and request.waiter is not None:
                self.database.cancel(request.waiter)
                request.waiter = None
            elif stage == COMMIT and request.connection is not None:
                self.database.abandon(request.connection)
                request.connection = None
            elif stage == PUBLISH and request.call is not None:
                request.call.cancelled = True
                request.call = None
                request.in_transit -= 1
            if not request.committed:
                self.fates.not_committed(request.message, now)
            self._finish(request, ok=False)

    def _restart(self) -> None:
        self.up = True

    def publish_gate(self):
        """The application answers every request (it may refuse it): it never blocks its callers."""
        return None

    def held_ids(self):
        return (request.message.id for request in self.requests)
