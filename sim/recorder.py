"""What a replication measures, kept in memory proportional to the messages in flight.

The Recorder is a passive observer (:class:`models.fates.Observer`): the models' fates router
tells it when a message is made (:meth:`Recorder.created`), then :meth:`processed`, :meth:`lost`,
:meth:`rejected` or :meth:`dead_lettered` for its fate, and the clients tell it their requests'
outcomes; it calls no model. It also hands out, at build time, :class:`Boundary` objects for each
broker and worker pool, told when a message enters and leaves them, gauges, and window counters
(:meth:`counter`) for the events a component counts.

A message's outcome is the first of these, with one exception: a message processed after it was
lost or dead-lettered (a copy that survived) is processed. Whatever happens to a copy of a message
that already has an outcome leaves the outcome alone, except that processing it again counts as a
duplicate, and that a message the first component refused (``rejected``, not admitted) is
rejected whatever it was.

The measurement window runs from the end of the warm-up to the end of the run. Counts are of
messages produced in the window, whatever happened to them before the run ended; a sojourn counts
when the item entered the window's boundary inside the window; time averages integrate only the
part of each stay that lies inside the window.

Business rows (the transactional outbox, the dual write): a component that writes a database
row for a message tells the Recorder whether it committed (:meth:`committed`,
:meth:`not_committed`), and an idempotent consumer tells it of each copy it skips
(:meth:`suppressed`). From these and the outcomes, :meth:`counts` adds the consistency of each
logical event: its row committed and it was processed once, or more than once, or never (lost,
rejected, dead-lettered: ``never_delivered``); or its row did not commit yet it was processed
(``phantom``). These flags are kept only in scenarios that use them (:meth:`track_consistency`).

What the Recorder keeps of messages (see :class:`Recorder` for the exact list): running counters,
a table of the messages in flight, and, for messages that have an outcome, only what a later copy
of them can still change — 2 bits a message for the outcome, 4 more for the business-row flags —
packed in byte arrays (:class:`PackedCodes`). Each boundary folds its events into running sums
and 200 time bins.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from .packed import PackedCodes
from .sketch import Sketch

IN_FLIGHT, PROCESSED, LOST, REJECTED, DEAD_LETTERED = range(5)
OUTCOMES = {IN_FLIGHT: "in_flight", PROCESSED: "processed", LOST: "lost", REJECTED: "rejected", DEAD_LETTERED: "dead_lettered"}

TIME_BINS = 200

_OUTCOME_CODES = {name: code for code, name in OUTCOMES.items()}

# business-row flags, 4 bits a message (scenarios with outboxes, dual writes or idempotent consumers);
# COPIED: a copy was processed again, or skipped by an idempotent consumer; DELIVERED: some copy
# was processed, whatever the outcome (a message rejected — the user got an error — and processed
# all the same keeps its outcome, and is a phantom if its row did not commit)
COMMITTED, NOT_COMMITTED, COPIED, DELIVERED = 1, 2, 4, 8
CONSISTENCY_KEYS = (
    "committed", "not_committed", "delivered_once", "delivered_more_than_once", "never_delivered", "phantom",
    "suppressed", "processed_before_commit", "committed_in_flight",
)

_CHUNK = 1 << 20  # messages unpacked at a time when the flags are counted at the end


class WindowCounter(Counter):
    """Event counts that only count inside the measurement window (``open`` sets it going)."""

    def __init__(self, open_now: bool = False):
        super().__init__()
        self.open = open_now

    def add(self, event: str, n: int = 1) -> None:
        if self.open:
            self[event] += n


class Boundary:
    """A place items enter and leave (a broker's queue, a worker pool's servers, the whole system).

    It tracks the number inside, its time integral over the measurement window and per time bin,
    entries in the window, the sojourn of each item that entered in the window and has left (sum,
    and optionally a :class:`Sketch` of them for percentiles), the longest sojourn of the run, and
    the sum of the entry times of the window's entrants still inside (``entry_sum``: an addition on
    entry, a subtraction on leaving), from which :meth:`close` gets ``in_progress_s``, the time so
    far of the entrants still inside at the end (Little's law needs it, :mod:`sim.checks`).

    The integral of the number inside is kept from the events' own times (``now`` at each entry
    and leaving), apart from the sojourns, which come from the entry times the callers hand back:
    Little's law compares the two. Each event adds the number inside times the time since the
    last event to the running integral of the current time bin (``_bin_acc``), which goes into
    ``bin_area`` when a bin edge is passed; the window's ``area`` is the integral at the end less
    the integral when the window opened.
    """

    __slots__ = (
        "name", "kind", "n", "area", "entries", "completed", "sojourn_sum", "sojourns",
        "n_at_start", "n_at_end", "max_sojourn", "entry_sum", "in_progress_s", "bin_area", "_start", "_last", "_in_window",
        "_bin", "_bin_acc", "_bin_edge", "_bin_width", "_last_bin", "_integral_at_open",
    )

    def __init__(self, name: str, kind: str, start_s: float, end_s: float, keep_sojourns: bool = False):
        self.name = name
        self.kind = kind
        self.n = 0
        self.area = 0.0
        self.entries = 0
        self.completed = 0
        self.sojourn_sum = 0.0
        self.sojourns = Sketch(start_s, end_s) if keep_sojourns else None
        self.n_at_start = 0
        self.n_at_end = 0
        self.max_sojourn = 0.0
        self.entry_sum = 0.0
        self.in_progress_s = 0.0
        self.bin_area = [0.0] * TIME_BINS
        self._start = start_s
        self._last = 0.0
        self._in_window = start_s <= 0
        self._bin = 0
        self._bin_acc = 0.0
        self._bin_width = end_s / TIME_BINS
        self._bin_edge = self._bin_width
        self._last_bin = TIME_BINS - 1
        self._integral_at_open = 0.0

    def _advance(self, now: float) -> None:
        """Integrate the number inside up to ``now``, across bin edges if need be."""
        if now > self._bin_edge:
            self._cross_edges(now)
        self._bin_acc += self.n * (now - self._last)
        self._last = now

    def _cross_edges(self, now: float) -> None:
        edge, n, last = self._bin_edge, self.n, self._last
        while now > edge:
            self.bin_area[self._bin] = self._bin_acc + n * (edge - last)
            self._bin_acc, last = 0.0, edge
            self._bin += 1
            edge = self._bin_edge = edge + self._bin_width if self._bin < self._last_bin else math.inf
        self._last = last

    def enter(self, now: float) -> None:
        if now > self._bin_edge:  # _advance(now), written out: two calls per message and boundary
            self._cross_edges(now)
        self._bin_acc += self.n * (now - self._last)
        self._last = now
        self.n += 1
        if self._in_window:
            self.entries += 1
            self.entry_sum += now

    def leave(self, now: float, entered_s: float) -> None:
        if now > self._bin_edge:  # _advance(now), written out
            self._cross_edges(now)
        self._bin_acc += self.n * (now - self._last)
        self._last = now
        self.n -= 1
        sojourn = now - entered_s
        if sojourn > self.max_sojourn:
            self.max_sojourn = sojourn
        if entered_s >= self._start:
            self.completed += 1
            self.sojourn_sum += sojourn
            self.entry_sum -= entered_s
            if self.sojourns is not None:
                self.sojourns.add(sojourn, now)

    def integral(self, now: float) -> float:
        """The integral of the number inside over the whole run up to ``now`` (warm-up included)."""
        return sum(self.bin_area[:self._bin]) + self._bin_acc + self.n * max(now - self._last, 0.0)

    def open_window(self, now: float) -> None:
        self._advance(now)
        self._integral_at_open = self.integral(now)
        self._in_window = True
        self.n_at_start = self.n

    def close(self, now: float) -> None:
        self._advance(now)
        self.bin_area[self._bin] = self._bin_acc
        self.area = self.integral(now) - self._integral_at_open
        self.n_at_end = self.n
        self.in_progress_s = (self.entries - self.completed) * now - self.entry_sum


class Gauge(Boundary):
    """A level that changes now and then (the workers present in a pool), integrated over time
    like a boundary's count — over the window and per time bin — but with no items and no
    Little's law: :meth:`set` the new level when it changes."""

    __slots__ = ()

    def set(self, now: float, value: float) -> None:
        self._advance(now)
        self.n = value


class Recorder:
    """Outcomes, counters and the boundaries of one replication.

    Clients (:mod:`models.clients`) send attempts of a request; the fates router hands what
    happens to an attempt to its client, never to the Recorder, and the client tells the Recorder
    its request's outcome (:meth:`request_admitted`, :meth:`request_settled`, :meth:`duplicate`,
    :meth:`wasted`).

    Of messages (requests included: they share the ids), the Recorder keeps:

    - running counters: ``messages`` made (the next id), ``produced`` (made in the window),
      ``created_per_bin`` (made per time bin: the unique requests offered), ``outcomes`` (of the
      messages made in the window that have an outcome, by outcome, tallied when they get it or
      when a later copy changes it), ``duplicates``, and the other window and per-bin counts;
    - ``in_flight``: id → creation time of each message without an outcome, deleted when it gets
      one — from it come :meth:`settled`, :meth:`in_flight_ids` and the ``in_flight`` count;
    - for messages with an outcome, only what a later copy can change or read: the outcome,
      2 bits a message (:class:`PackedCodes`; the array stops at the highest id that was lost,
      rejected or dead-lettered, as processed reads 0), and, in scenarios that
      :meth:`track_consistency`, the business-row flags, 4 bits a message, and ``committed_s``,
      the commit time of each message in flight whose row committed (until its first processing
      or its outcome);
    - ``latency_s``, a :class:`Sketch` of the latencies of the messages processed in the window
      (for the percentiles): its buckets, not the values.

    Ids are handed out in order of creation and the clock never goes back, so the messages made
    in the window are the last ``produced`` ids, and ``created_per_bin`` only ever moves forward.
    """

    def __init__(self, warmup_s: float, duration_s: float):
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        self.messages = 0
        self.produced = 0
        self.in_flight: dict[int, float] = {}
        self.outcomes = [0] * len(OUTCOMES)  # made in the window, by outcome (in_flight: see counts)
        self.settled_outcomes = PackedCodes(2)  # outcome − PROCESSED, of messages with one
        self.latency_s = Sketch(warmup_s, duration_s)
        self.duplicates = 0
        self.counters: dict[str, WindowCounter] = {}
        self.processed_in_window = 0
        self.created_per_bin = [0] * (TIME_BINS + 1)  # the last: made after the run's end (none in a run)
        self.processed_per_bin = [0] * TIME_BINS
        self.retries_per_bin = [0] * TIME_BINS  # attempts after a request's first (clients)
        self.wasted_per_bin = [0] * TIME_BINS  # attempts processed after their client gave up on them
        self.gauges: dict[str, Gauge] = {}
        self._bin_width = duration_s / TIME_BINS
        # the edges np.histogram(range=(0, duration)) uses; a time equal to the duration is in the last bin
        edges = np.linspace(0.0, duration_s, TIME_BINS + 1).tolist()
        self._created_edges = edges[:-1] + [math.nextafter(edges[-1], math.inf), math.inf]
        self._created_bin = 0
        self._next_created_edge = self._created_edges[1]
        self.boundaries: dict[str, Boundary] = {}
        self.system = self.boundary("system", "system")
        self.tracks_consistency = False
        self.flags = PackedCodes(4)
        self.committed_s: dict[int, float] = {}
        self.suppressed_in_window = 0
        self.processed_before_commit = 0
        self.commit_to_processed_s = Sketch(warmup_s, duration_s)

    def boundary(self, name: str, kind: str, keep_sojourns: bool = False) -> Boundary:
        """A new boundary named ``name`` (``kind`` is broker, workers or system)."""
        b = Boundary(name, kind, self.warmup_s, self.duration_s, keep_sojourns)
        self.boundaries[name] = b
        return b

    def counter(self, name: str) -> WindowCounter:
        """Event counts of component ``name`` that count only inside the measurement window."""
        counter = self.counters[name] = WindowCounter(open_now=self.warmup_s <= 0)
        return counter

    def gauge(self, name: str, value: float = 0.0) -> Gauge:
        """A level named ``name`` (workers present in a pool), starting at ``value``."""
        g = Gauge(name, "gauge", self.warmup_s, self.duration_s)
        g.n = value
        self.gauges[name] = g
        return g

    # --- messages -------------------------------------------------------------------------------

    def created(self, now: float) -> int:
        """A message is made now: its id."""
        i = self.messages
        self.messages = i + 1
        self.in_flight[i] = now
        if now >= self._next_created_edge:
            edges, b = self._created_edges, self._created_bin
            while now >= edges[b + 1]:
                b += 1
            self._created_bin, self._next_created_edge = b, edges[b + 1]
        self.created_per_bin[self._created_bin] += 1
        if now >= self.warmup_s:
            self.produced += 1
        return i

    def settled(self, message) -> bool:
        """Whether the message (a request, for a client's attempt) has an outcome."""
        return message.id not in self.in_flight

    def outcome_of(self, message_id: int) -> int:
        """The outcome code of message ``message_id`` (IN_FLIGHT, PROCESSED, LOST...)."""
        if message_id in self.in_flight:
            return IN_FLIGHT
        return PROCESSED + self.settled_outcomes.get(message_id)

    def _set_outcome(self, i: int, outcome: int) -> None:
        self.settled_outcomes.set(i, outcome - PROCESSED)

    def admitted(self, message, now: float) -> None:
        """The message was accepted by the first component it was sent to: it is in the system."""
        self.system.enter(now)

    def processed(self, message, now: float) -> None:
        """The last stage finished the message (again, if it had: a duplicate)."""
        i = message.id
        created_s = self.in_flight.pop(i, None)
        if self.tracks_consistency:
            self.flags.add(i, DELIVERED)
        if created_s is None:
            self._processed_again(message)
            return
        if self.tracks_consistency:
            self._first_processing(message, now)
        if created_s >= self.warmup_s:
            self.outcomes[PROCESSED] += 1
            self.latency_s.add(now - created_s, now)
        self.system.leave(now, created_s)
        self.processed_per_bin[min(int(now / self._bin_width), TIME_BINS - 1)] += 1
        if now >= self.warmup_s:
            self.processed_in_window += 1

    def _processed_again(self, message) -> None:
        """A copy of a message that has an outcome was processed."""
        i = message.id
        outcome = PROCESSED + self.settled_outcomes.get(i)
        if outcome == PROCESSED:
            if message.created_s >= self.warmup_s:
                self.duplicates += 1
            if self.tracks_consistency:
                self.flags.add(i, COPIED)
        elif outcome != REJECTED:
            self._set_outcome(i, PROCESSED)
            if message.created_s >= self.warmup_s:
                self.outcomes[outcome] -= 1
                self.outcomes[PROCESSED] += 1

    def lost(self, message, now: float) -> None:
        self._settle(message, LOST, now)

    def dead_lettered(self, message, now: float) -> None:
        self._settle(message, DEAD_LETTERED, now)

    def rejected(self, message, now: float, admitted: bool) -> None:
        """Refused for good; ``admitted`` says whether it had entered the system (a later stage refused it)."""
        if admitted:
            self._settle(message, REJECTED, now)
            return
        i = message.id
        created_s = self.in_flight.pop(i, None)
        if created_s is None:  # refused at the door after an outcome: rejected all the same
            outcome, created_s = PROCESSED + self.settled_outcomes.get(i), message.created_s
            if created_s >= self.warmup_s:
                self.outcomes[outcome] -= 1
        self.committed_s.pop(i, None)
        self._set_outcome(i, REJECTED)
        if created_s >= self.warmup_s:
            self.outcomes[REJECTED] += 1

    def _settle(self, message, outcome: int, now: float) -> None:
        i = message.id
        created_s = self.in_flight.pop(i, None)
        if created_s is None:
            return
        self.committed_s.pop(i, None)
        self._set_outcome(i, outcome)
        if created_s >= self.warmup_s:
            self.outcomes[outcome] += 1
        self.system.leave(now, created_s)

    # --- requests of clients (models.clients) -------------------------------------------------

    def request_admitted(self, request, now: float) -> None:
        """An attempt of ``request`` was admitted for the first time: the request is in the system
        (until its outcome; its stay is counted from this admission)."""
        self.system.enter(now)

    def request_settled(self, request, now: float, outcome: str) -> None:
        """The client decided ``request``'s outcome: processed (it got the response), rejected
        (it gave up), or lost / dead_lettered / rejected downstream (told of a failure)."""
        i = request.id
        created_s = self.in_flight.pop(i, None)
        if created_s is None:
            return
        self.committed_s.pop(i, None)
        code = _OUTCOME_CODES[outcome]
        if code != PROCESSED:
            self._set_outcome(i, code)
        if created_s >= self.warmup_s:
            self.outcomes[code] += 1
        if request.admitted_s is not None:
            self.system.leave(now, request.admitted_s)
        if code == PROCESSED:
            self.processed_per_bin[min(int(now / self._bin_width), TIME_BINS - 1)] += 1
            if now >= self.warmup_s:
                self.processed_in_window += 1
            if created_s >= self.warmup_s:
                self.latency_s.add(now - created_s, now)

    def duplicate(self, request) -> None:
        """An attempt of ``request`` was processed after another one had been."""
        if request.created_s >= self.warmup_s:
            self.duplicates += 1

    def retry_sent(self, now: float) -> None:
        self.retries_per_bin[min(int(now / self._bin_width), TIME_BINS - 1)] += 1

    def wasted(self, now: float) -> None:
        """An attempt was processed that nobody waited for any more."""
        self.wasted_per_bin[min(int(now / self._bin_width), TIME_BINS - 1)] += 1

    # --- business rows and idempotent consumers ----------------------------------------------

    def track_consistency(self) -> None:
        """Keep the business-row flags: called when the network has outboxes, dual writes or
        idempotent consumers, before any message exists."""
        self.tracks_consistency = True

    def committed(self, message, now: float) -> None:
        """The message's business row (and, with an outbox, its event row) committed."""
        i = message.id
        self.flags.add(i, COMMITTED)
        if i in self.in_flight:
            self.committed_s[i] = now
        if self.flags.get(i) & DELIVERED and message.created_s >= self.warmup_s:
            self.processed_before_commit += 1  # published first, and a consumer was quicker

    def not_committed(self, message, now: float) -> None:
        """The message's business row did not commit and never will (refused, rolled back, or
        the application gave up or died before committing)."""
        self.flags.add(message.id, NOT_COMMITTED)

    def suppressed(self, message, now: float) -> None:
        """An idempotent consumer skipped a copy of a message it had processed."""
        self.flags.add(message.id, COPIED)
        if message.created_s >= self.warmup_s:
            self.suppressed_in_window += 1

    def _first_processing(self, message, now: float) -> None:
        committed_s = self.committed_s.pop(message.id, None)
        if committed_s is not None and message.created_s >= self.warmup_s:
            self.commit_to_processed_s.add(now - committed_s, now)

    def consistency_counts(self) -> dict[str, int]:
        """Per logical event produced in the window: what became of its business row and its event."""
        # messages made in the window by flags (rows) and outcome (columns), counted a chunk at a time
        table = np.zeros((16, len(OUTCOMES)), dtype=np.int64)
        for start in range(self.messages - self.produced, self.messages, _CHUNK):
            stop = min(start + _CHUNK, self.messages)
            cell = self.flags.unpack(start, stop).astype(np.intp) * 4 + self.settled_outcomes.unpack(start, stop)
            table[:, PROCESSED:] += np.bincount(cell, minlength=16 * 4).reshape(16, 4)
        for i, created_s in self.in_flight.items():  # counted above as processed (their code is 0)
            if created_s >= self.warmup_s:
                flags = self.flags.get(i)
                table[flags, PROCESSED] -= 1
                table[flags, IN_FLIGHT] += 1
        flags = np.arange(16)
        committed = (flags & COMMITTED) != 0
        not_committed = ((flags & NOT_COMMITTED) != 0) & ~committed
        delivered = (flags & DELIVERED) != 0
        copied = (flags & COPIED) != 0
        events = table.sum(axis=1)
        never = table[:, [LOST, REJECTED, DEAD_LETTERED]].sum(axis=1)
        return {
            "committed": int(events[committed].sum()),
            "not_committed": int(events[not_committed].sum()),
            "delivered_once": int(events[committed & delivered & ~copied].sum()),
            "delivered_more_than_once": int(events[committed & delivered & copied].sum()),
            "never_delivered": int(never[committed & ~delivered].sum()),
            "phantom": int(events[not_committed & delivered].sum()),
            "suppressed": self.suppressed_in_window,
            "processed_before_commit": self.processed_before_commit,
            "committed_in_flight": int(table[committed & ~delivered, IN_FLIGHT].sum()),
        }

    # --- window ---------------------------------------------------------------------------------

    def open_window(self, now: float) -> None:
        for b in self.boundaries.values():
            b.open_window(now)
        for g in self.gauges.values():
            g.open_window(now)
        for counter in self.counters.values():
            counter.open = True

    def close(self, now: float) -> None:
        for b in self.boundaries.values():
            b.close(now)
        for g in self.gauges.values():
            g.close(now)

    def counts(self) -> dict[str, int]:
        """Outcomes of the messages produced in the measurement window, and their duplicates."""
        in_flight = sum(1 for created_s in self.in_flight.values() if created_s >= self.warmup_s)
        counts = {"produced": self.produced}
        counts.update({name: in_flight if code == IN_FLIGHT else self.outcomes[code] for code, name in OUTCOMES.items()})
        counts["duplicates"] = self.duplicates
        if self.tracks_consistency:
            counts.update(self.consistency_counts())
        return counts

    def in_flight_ids(self) -> np.ndarray:
        """Messages of the whole run (warm-up included) with no outcome yet, in order of id."""
        return np.fromiter(self.in_flight, dtype=np.int64, count=len(self.in_flight))
