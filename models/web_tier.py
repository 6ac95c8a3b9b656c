"""A web tier: a pool of request handlers answering users synchronously, or with 202 Accepted."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, Callable

import simpy


@dataclass
class WebOptions:
    """What a request costs the web tier beyond waiting for a handler (see :class:`WebTier`).

    ``work``: the in-line work (a sampler of seconds); ``calls``: downstream services called in
    order while the handler waits (:class:`~models.delay.DelayStation`); ``request``, ``respond``,
    ``publish``: the links (:class:`~models.link.Link`) the request, its response and its
    publication cross; ``publish_to``: where an asynchronous handler publishes the job (None: the
    tier is synchronous); ``backlog``: requests that may wait for a handler (None: no bound);
    ``client_step``: the client-side step after a 202 that makes the task seem done;
    ``notification``: :class:`~models.notification.Push` or :class:`~models.notification.Poll`;
    ``signalled``: the last stage of the asynchronous path signals completions (:meth:`WebTier.put`),
    so the tier keeps the ids of the jobs it published until their signal comes; ``poll_request``,
    ``poll_respond``: the links a status poll crosses (None: ``request``, ``respond``), which may
    draw from streams of their own so that the requests' draws do not depend on the polls."""

    work: Callable[[], float] | None = None
    calls: list = field(default_factory=list)
    request: Any = None
    respond: Any = None
    publish: Any = None
    publish_to: Any = None
    backlog: int | None = None
    client_step: Callable[[], float] | None = None
    notification: Any = None
    signalled: bool = False
    poll_request: Any = None
    poll_respond: Any = None


class WebTier:
    """Users' requests arriving at a pool of ``handlers`` request handlers (the threads or worker
    processes of an application server: Puma's threads, Gunicorn's sync workers, Tomcat's
    ``maxThreads``), served first come first served.

    A request crosses the ``request`` link, waits for a handler (refused with a 503 when
    ``backlog`` requests already wait), and holds its handler for the whole call: the in-line
    ``work``, then each downstream call in turn (the handler blocks on it, as a synchronous HTTP
    or database client does). Then:

    - **synchronous** (no ``publish_to``): the work is done, the message processed (its
      completion), and the handler answers;
    - **asynchronous**: the handler publishes the job (crossing the ``publish`` link: the broker
      round trip and serialisation) and answers 202 Accepted at once; a refused publication is
      answered 503 and the request rejected. A worker does the work later; the last stage that
      finishes it (a worker pool, or a delay station after it: the last of a fan-out's deliveries)
      may signal the tier (:meth:`put`: "a worker ... signals the job is complete"), which marks
      the completion and tells the user by ``notification`` (polling or a push). Only the first
      signal of a job this tier published counts: a message from another source, or a second
      signal of the same job (a redelivery), is processed there and not counted as a completion.

    The handler is freed when it answers; the answer crosses the ``respond`` link to the user.
    What the user sees, per request made in the measurement window (from ``window_start_s``):
    ``response_s`` (request to answer), ``perceived_s`` (the answer, plus after a 202 the
    ``client_step`` that makes the task seem done: an optimistic UI), ``completed_s`` (request
    to the work done: in the handler when synchronous, at the completion signal otherwise) and
    ``notified_s`` (when the user learned of it: with the answer when synchronous).

    A polling client's status requests are requests too: each waits for a handler and holds it
    for its lookup (:class:`~models.notification.Poll`), so polling costs the tier capacity.

    Boundaries: ``busy`` counts handlers in use (its mean over ``handlers`` is the utilisation),
    ``queue`` requests (and status polls) waiting for a handler. The tier holds a request from its
    arrival until it is processed, published or refused. Simplifications: a handler is a thread
    that never fails and never times out; work does not slow under load; a 503 is answered without
    a handler; the ids of jobs published and never signalled (lost on the way) are kept to the end.
    """

    def __init__(self, env, name, arrivals, handlers: int, fates, busy, queue, counts, options: WebOptions, window_start_s=0.0):
        self.env = env
        self.name = name
        self.arrivals = arrivals
        self.handlers = handlers
        self.pool = simpy.Resource(env, capacity=handlers)
        self.fates = fates
        self.busy = busy
        self.queue = queue
        self.counts = counts
        self.options = options
        self.window_start_s = window_start_s
        self.holding: set[int] = set()
        self.answered_s: dict[int, float] = {}  # asynchronous requests waiting for their completion signal
        self.published: set[int] = set()  # jobs published and not yet signalled (with options.signalled)
        self.completed_ids: set[int] = set()  # jobs signalled whose polling client does not know yet
        self.response_s = array("d")
        self.perceived_s = array("d")
        self.completed_s = array("d")
        self.notified_s = array("d")
        self.process = env.process(self._arrive())

    @property
    def synchronous(self) -> bool:
        return self.options.publish_to is None

    def publish_gate(self):
        return None

    def _arrive(self):
        env = self.env
        while True:
            at = self.arrivals.next_arrival(env.now)
            if at is None:
                return
            yield env.timeout(at - env.now)
            message = self.fates.new_message(env.now)
            self.fates.admitted(message, env.now)
            self.holding.add(message.id)
            self.counts.add("requests")
            env.process(self._request(message))

    def _request(self, message):
        env, options = self.env, self.options
        if options.request is not None:
            yield from options.request.cross()
        if self._backlog_full():
            self._refused(message)
            return
        accepted = yield from self._handled(self._call(message))
        if not accepted:
            return
        latency = options.respond.latency() if options.respond is not None else 0.0
        polls = getattr(options.notification, "polls", False)
        if not self.synchronous and options.notification is not None and not polls:
            self.answered_s[message.id] = env.now + latency
        if options.respond is not None:
            yield from options.respond.cross(latency)
        self._answered(message)
        if polls and not self.synchronous:
            yield from self._poll(message)

    def _backlog_full(self) -> bool:
        backlog = self.options.backlog
        return backlog is not None and self.pool.count == self.handlers and len(self.pool.queue) >= backlog

    def _handled(self, steps):
        """Wait for a handler (first come, first served), hold it while ``steps`` (a generator)
        run, and free it; what ``steps`` returns."""
        env = self.env
        queued = env.now
        self.queue.enter(queued)
        with self.pool.request() as handler:
            yield handler
            started = env.now
            self.queue.leave(started, queued)
            self.busy.enter(started)
            outcome = yield from steps
            self.busy.leave(env.now, started)
        return outcome

    def _call(self, message):
        """What a handler does for a request: the work, the calls, then the result (synchronous)
        or the publication; True if the request is answered (not refused)."""
        env, options = self.env, self.options
        if options.work is not None:
            yield env.timeout(options.work())
        for station in options.calls:
            yield station.call(message)
        if self.synchronous:
            self._completed(message)
            return True
        if options.publish is not None:
            yield from options.publish.cross()
        return self._publish(message)

    def _poll(self, message):
        """The client polls the status endpoint until it learns that the job is done: each poll
        ``interval_s`` after the previous answer, crossing the request and respond links and
        holding a handler for its ``status`` lookup like any request (a full backlog refuses it,
        and the client polls again after the interval). It never gives up."""
        env, options, poll = self.env, self.options, self.options.notification
        request, respond = options.poll_request or options.request, options.poll_respond or options.respond
        while True:
            yield env.timeout(poll.interval_s)
            if request is not None:
                yield from request.cross()
            done = False
            if not self._backlog_full():
                done = yield from self._handled(self._status(message))
            if respond is not None:
                yield from respond.cross()
            if done:
                self.completed_ids.discard(message.id)
                if message.created_s >= self.window_start_s:
                    self.notified_s.append(env.now - message.created_s)
                return

    def _status(self, message):
        """A status request in a handler: the lookup, then whether the job is done."""
        self.counts.add("polls")
        status = self.options.notification.status
        if status is not None:
            yield self.env.timeout(status())
        return message.id in self.completed_ids

    def _completed(self, message) -> None:
        """The synchronous handler has done the work: the message is processed now."""
        self.holding.discard(message.id)
        now = self.env.now
        self.fates.processed(message, now)
        if message.created_s >= self.window_start_s:
            self.completed_s.append(now - message.created_s)

    def _publish(self, message) -> bool:
        """Hand the job to the broker: 202 if it takes it, 503 (rejected) if it refuses."""
        self.holding.discard(message.id)
        if self.options.publish_to.put(message):
            self.counts.add("accepted")
            if self.options.signalled:
                self.published.add(message.id)
            return True
        self.counts.add("refused")
        self.fates.rejected(message, self.env.now, admitted=True)
        return False

    def _refused(self, message) -> None:
        self.counts.add("refused")
        self.holding.discard(message.id)
        self.fates.rejected(message, self.env.now, admitted=True)

    def _answered(self, message) -> None:
        if message.created_s < self.window_start_s:
            return
        response = self.env.now - message.created_s
        self.response_s.append(response)
        if self.synchronous:  # the answer carries the result: the user sees and knows it now
            self.perceived_s.append(response)
            self.notified_s.append(response)
            return
        step = self.options.client_step
        self.perceived_s.append(response + step() if step is not None else response)

    def put(self, message) -> bool:
        """The last stage signals that the job of ``message`` is complete: it is processed now,
        and, if this tier published it and this is its first signal, the completion is timed and
        the user learns of it by the notification (at once, without one)."""
        now = self.env.now
        self.fates.processed(message, now)
        if message.id not in self.published:
            return True
        self.published.discard(message.id)
        notification = self.options.notification
        if message.created_s >= self.window_start_s:
            self.completed_s.append(now - message.created_s)
        if getattr(notification, "polls", False):  # the client's next poll will find it done
            self.completed_ids.add(message.id)
            return True
        answered = self.answered_s.pop(message.id, now)
        notified = notification.notified_s(now, answered) if notification is not None else now
        if message.created_s >= self.window_start_s:
            self.notified_s.append(notified - message.created_s)
        return True

    def held_ids(self):
        """Requests arrived and not yet processed, published or refused."""
        return self.holding
