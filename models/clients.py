"""Clients that wait for responses, time out and retry: logical requests and their attempts.

A *request* is what a user asked for once; an *attempt* is one sending of it. Every attempt of a
request is a :class:`Attempt` — a :class:`~models.message.Message` with the request's id and
creation time — so brokers and workers handle it as any message, the Recorder keeps one outcome
per request, and processing a request a second time (a retry whose earlier attempt was still
queued) counts as a duplicate.

What becomes of an attempt, and who decides the request's outcome:

- Refused at the door (the broker or an admission gate answers busy: HTTP 503/429) — the client
  backs off and retries while attempts and budget remain, and otherwise gives up: the request is
  *rejected*.
- Admitted — the client waits for the response, which comes when the last stage processes the
  attempt (the fates router, :mod:`models.fates`, hands the processing to the attempt's client). Received while the client
  still waits for that attempt: the request is *processed* (a success). With a ``timeout`` the
  client stops waiting after it and retries (or gives up: *rejected*) although the attempt is
  still queued or in service: the attempt is *abandoned*. When an abandoned attempt is processed
  later nobody gets the response: *wasted work* (and a duplicate if the request had been
  processed before); a worker that sheds expired work skips it instead (*shed*). An idempotent
  consumer that skips a copy of a processed request answers it from its processed-ids table (a
  response, without a second side effect or a duplicate).
- Lost, dead-lettered or refused by a later stage — with a ``timeout`` the client does not learn
  of it (it times out as for a slow response); without one it would wait forever, so it is told,
  as a synchronous caller gets an error, and the request ends with that outcome (no retry:
  retries answer refusals and timeouts).

Every admitted attempt is counted until it ends (processed, shed, lost, dead-lettered, refused
downstream): each client keeps the set of its open attempts, and a boundary per client for them
(``NAME:attempts``), so that an attempt nobody accounts for shows in the checks. Requests are
counted from their creation to their outcome, backoff waits included, on a boundary named after
the client (kind ``clients``).

The client needs no SimPy process per request: timeouts, backoffs and think times are timeout
events with a callback (a timeout that fires after its attempt was answered finds it no longer
awaited and does nothing).

Simplifications: a response travels back in no time; a refusal is immediate; a broker that
blocks its publishers (RabbitMQ's alarms) answers a client as if it refused (the client would
otherwise block until its timeout, then retry — this retries after the backoff instead).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter

from .message import Message

REFUSED, TIMED_OUT = False, True


class Request:
    """One logical request: its id, when it was made, its client, and how its attempts went."""

    __slots__ = ("id", "created_s", "client", "attempts", "current", "admitted_s", "previous_backoff_s", "processings", "settled", "last_failure")

    def __init__(self, id: int, created_s: float, client):
        self.id = id
        self.created_s = created_s
        self.client = client
        self.attempts = 0  # sent so far
        self.current = None  # the attempt the client waits for, if any
        self.admitted_s = None  # when an attempt was first admitted
        self.previous_backoff_s = None
        self.processings = 0  # attempts of it processed by the last stage
        self.settled = False
        self.last_failure = REFUSED


class Attempt(Message):
    """One sending of a request: a message with the request's id and creation time, the attempt's
    number (1 for the first), when it was sent, and its deadline (sent + the client's timeout,
    ``inf`` without one), after which nobody waits for its response."""

    __slots__ = ("request", "number", "sent_s", "deadline_s", "ended")

    def __init__(self, request: Request, number: int, sent_s: float, deadline_s: float):
        self.id = request.id
        self.created_s = request.created_s
        self.request = request
        self.number = number
        self.sent_s = sent_s
        self.deadline_s = deadline_s
        self.ended = False

    def __repr__(self) -> str:
        return f"Attempt(id={self.id}, number={self.number}, sent_s={self.sent_s:g})"


class Client:
    """Sends requests to ``target`` (``put(message) -> bool``), waits for their responses, and
    retries refusals and timeouts by its ``backoff`` policy (:mod:`models.retry`), at most
    ``max_attempts`` attempts a request, and, with a ``budget`` (:class:`~models.retry.RetryBudget`),
    only while the budget pays for it.

    One Client serves an open-loop producer (:class:`OpenLoopClient`) or a group of closed-loop
    clients (:class:`ClosedLoopClients`); ``on_settled(request, now)`` is called when a request
    has its outcome. ``fates`` (:class:`~models.fates.Fates`) makes its requests' messages and
    hears their outcomes; ``requests`` and ``attempts`` are the boundaries of its requests and of
    its open attempts. ``tally`` counts the events of the requests created in the measurement
    window (from ``window_start_s``); ``latencies_s`` holds the client-observed latency of each of them that succeeded
    (creation to response: refusals, backoffs, timeouts and retries included).
    """

    def __init__(self, env, name, target, fates, requests, attempts, window_start_s=0.0, backoff=None, max_attempts=1,
                 timeout_s=None, budget=None, on_settled=None):
        self.env = env
        self.name = name
        self.target = target
        self.fates = fates
        self.backoff = backoff
        self.max_attempts = max_attempts if backoff is not None else 1
        self.timeout_s = timeout_s
        self.budget = budget
        self.on_settled = on_settled
        self.pending: dict[int, Request] = {}  # requests without an outcome, by id
        self.open_attempts: set[Attempt] = set()  # admitted and not ended
        self.requests = requests
        self.attempts_boundary = attempts
        self.tally: Counter = Counter()
        self.latencies_s = array("d")
        self.window_start_s = window_start_s
        self._gate = target.publish_gate

    # --- sending ----------------------------------------------------------------------------

    def start(self, now: float) -> Request:
        """Make a new request and send its first attempt."""
        message = self.fates.new_message(now)
        request = Request(message.id, now, self)
        self.pending[request.id] = request
        self.requests.enter(now)
        self._count(request, "requests")
        self._send(request, now)
        return request

    def _count(self, request: Request, event: str) -> None:
        if request.created_s >= self.window_start_s:
            self.tally[event] += 1

    def _send(self, request: Request, now: float) -> None:
        request.attempts += 1
        timeout = self.timeout_s
        attempt = Attempt(request, request.attempts, now, now + timeout if timeout is not None else math.inf)
        self._count(request, "attempts")
        if request.attempts > 1:
            self.fates.retry_sent(now)
        request.current = attempt
        if self._gate() is not None or not self.target.put(attempt):
            attempt.ended = True
            self._count(request, "refused")
            if not request.settled:  # (a target that refuses and dead-letters at once has settled it)
                request.current = None
                self._failed(request, now, REFUSED)
            return
        self.attempts_boundary.enter(now)
        if request.admitted_s is None and not request.settled:
            request.admitted_s = now
            self.fates.request_admitted(request, now)
        if attempt.ended:  # the target finished with it while taking it (dropped or answered at once)
            self.attempts_boundary.leave(now, now)
        else:
            self.open_attempts.add(attempt)
        if timeout is not None and request.current is attempt:
            self.env.timeout(timeout, attempt).callbacks.append(self._timed_out)

    def _timed_out(self, event) -> None:
        attempt = event.value
        request = attempt.request
        if request.current is not attempt or request.settled:
            return  # answered in time, or already given up
        request.current = None
        self._count(request, "timeouts")
        self._failed(request, self.env.now, TIMED_OUT)

    def _failed(self, request: Request, now: float, timed_out: bool) -> None:
        """The attempt was refused or timed out: retry after the backoff, or give up."""
        request.last_failure = timed_out
        if request.attempts >= self.max_attempts:
            self._give_up(request, now, "timed_out" if timed_out else "refused")
            return
        if self.budget is not None and not self.budget.acquire(timed_out):
            self._give_up(request, now, "budget")
            return
        delay = self.backoff.delay(request.attempts - 1, request.previous_backoff_s)
        request.previous_backoff_s = delay
        self._count(request, "retries")
        if delay > 0:
            self.env.timeout(delay, request).callbacks.append(self._retry_due)
        else:
            self._send(request, now)

    def _retry_due(self, event) -> None:
        request = event.value
        if not request.settled:
            self._send(request, self.env.now)

    # --- what the network tells the client ---------------------------------------------------

    def _end(self, attempt: Attempt, now: float) -> bool:
        """Close an attempt's account (once, whatever copy ends first); False if it was closed."""
        if attempt.ended:
            return False
        attempt.ended = True
        if attempt in self.open_attempts:
            self.open_attempts.discard(attempt)
            self.attempts_boundary.leave(now, attempt.sent_s)
        return True

    def attempt_processed(self, attempt: Attempt, now: float) -> None:
        """The last stage processed ``attempt``: a response if the client still waits for it."""
        request = attempt.request
        request.processings += 1
        self._count(request, "processings")
        if request.processings > 1:
            self.fates.duplicate(request)
        self._end(attempt, now)
        self._answered(attempt, now)

    def attempt_suppressed(self, attempt: Attempt, now: float) -> None:
        """An idempotent consumer skipped ``attempt`` because its request had been processed: its
        processed-ids table answers for it (no second side effect, no duplicate)."""
        request = attempt.request
        self._count(request, "suppressed")
        self._end(attempt, now)
        self._answered(attempt, now)

    def _answered(self, attempt: Attempt, now: float) -> None:
        """A response for ``attempt``: a success if the client still waits for it, else wasted work."""
        request = attempt.request
        if request.current is attempt and not request.settled:
            request.current = None
            self._count(request, "succeeded")
            if request.created_s >= self.window_start_s:
                self.latencies_s.append(now - request.created_s)
            if self.budget is not None:
                self.budget.refund()
            self._settle(request, now, "processed")
        else:
            self._count(request, "wasted")
            self.fates.wasted(now)

    def attempt_failed(self, attempt: Attempt, now: float, outcome: str) -> None:
        """``attempt`` was lost, dead-lettered or refused by a later stage (``outcome``)."""
        request = attempt.request
        if self._end(attempt, now):
            self._count(request, "failed_downstream")
        if request.current is attempt and self.timeout_s is None and not request.settled:
            request.current = None
            self._settle(request, now, outcome)

    def attempt_shed(self, attempt: Attempt, now: float) -> None:
        """A worker skipped ``attempt`` because its deadline had passed (nobody waits for it)."""
        request = attempt.request
        if self._end(attempt, now):
            self._count(request, "shed")
        if request.current is attempt and not request.settled:  # its timeout fires at this very instant
            request.current = None
            self._count(request, "timeouts")
            self._failed(request, now, TIMED_OUT)

    # --- outcomes -----------------------------------------------------------------------------

    def _give_up(self, request: Request, now: float, reason: str) -> None:
        self._count(request, f"rejected_{reason}")
        self._settle(request, now, "rejected")

    def _settle(self, request: Request, now: float, outcome: str) -> None:
        request.settled = True
        del self.pending[request.id]
        self.requests.leave(now, request.created_s)
        self.fates.request_settled(request, now, outcome)
        if self.on_settled is not None:
            self.on_settled(request, now)

    def held_ids(self):
        """Requests without an outcome: waiting for a response or in a backoff."""
        return iter(self.pending)


class OpenLoopClient:
    """An open-loop producer that behaves as a client: a new request at each arrival, whatever
    became of the earlier ones (the rate does not drop when the system slows down), each request
    waiting, timing out and retrying as its :class:`Client` says."""

    def __init__(self, env, name, arrivals, client: Client):
        self.env = env
        self.name = name
        self.arrivals = arrivals
        self.client = client
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        next_arrival = self.arrivals.next_arrival
        start = self.client.start
        while True:
            at = next_arrival(env.now)
            if at is None:
                return
            yield env.timeout(at - env.now)
            start(env.now)

    def held_ids(self):
        return self.client.held_ids()


class ClosedLoopClients:
    """``count`` clients in a closed loop, each thinking for a ``think_time``, sending a request,
    waiting for its outcome (the response, or giving up after its retries), then thinking again:
    at most ``count`` requests are outstanding, so a slower system slows the clients down (the
    interactive response-time law: throughput = count / (think time + response time)). Each
    client starts with a think time, so they do not all start at once.

    A client that times out while its attempt is still queued retries, so with timeouts the
    attempts in the system are no longer bounded by ``count``.
    """

    def __init__(self, env, name, count: int, think_time, client: Client):
        self.env = env
        self.name = name
        self.count = count
        self.think_time = think_time
        self.client = client
        client.on_settled = self._settled
        for _ in range(count):
            self._think()

    def _think(self) -> None:
        self.env.timeout(self.think_time()).callbacks.append(self._send)

    def _send(self, event) -> None:
        self.client.start(self.env.now)

    def _settled(self, request, now) -> None:
        self._think()

    def held_ids(self):
        return self.client.held_ids()
