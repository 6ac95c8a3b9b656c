"""What a replication measures, kept in bounded memory.

The Recorder is a passive observer (:class:`models.fates.Observer`): the models' fates router
tells it when a message is made (:meth:`Recorder.created`), then :meth:`processed`, :meth:`lost`,
:meth:`rejected` or :meth:`dead_lettered` for its fate, and the clients tell it their requests'
outcomes; it calls no model. It also hands out, at build time, :class:`Boundary` objects for each
broker and worker pool, told when a message enters and leaves them, gauges, and window counters
(:meth:`counter`) for the events a component counts.

A message's outcome is the first of these, with one exception: a message processed after it was
lost or dead-lettered (a copy that survived) is processed. Whatever happens to a copy of a message
that already has an outcome leaves the outcome alone, except that processing it again counts as a
duplicate.

Per-message data lives in ``array.array`` columns (8 bytes a timestamp, 1 byte an outcome), not
in Python objects; each boundary folds its events into running sums and 200 time bins.

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
(``phantom``). These flags take one byte a message, allocated only in scenarios that use them
(:meth:`track_consistency`).
"""

from __future__ import annotations

from array import array
from collections import Counter

import numpy as np

IN_FLIGHT, PROCESSED, LOST, REJECTED, DEAD_LETTERED = range(5)
OUTCOMES = {IN_FLIGHT: "in_flight", PROCESSED: "processed", LOST: "lost", REJECTED: "rejected", DEAD_LETTERED: "dead_lettered"}

TIME_BINS = 200

_OUTCOME_CODES = {name: code for code, name in OUTCOMES.items()}

# business-row flags, one byte per message (scenarios with outboxes, dual writes or idempotent consumers);
# DELIVERED: some copy was processed, whatever the outcome (a message rejected — the user got an
# error — and processed all the same keeps its outcome, and is a phantom if its row did not commit)
COMMITTED, NOT_COMMITTED, PROCESSED_AGAIN, SUPPRESSED, DELIVERED = 1, 2, 4, 8, 16
CONSISTENCY_KEYS = (
    "committed", "not_committed", "delivered_once", "delivered_more_than_once", "never_delivered", "phantom",
    "suppressed", "processed_before_commit", "committed_in_flight",
)


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
    sum of squares, and optionally every value for percentiles), the longest sojourn of the run,
    and leaves per time bin.
    """

    __slots__ = (
        "name", "kind", "n", "area", "entries", "completed", "sojourn_sum", "sojourn_sq_sum", "sojourns",
        "n_at_start", "n_at_end", "max_sojourn", "bin_area", "bin_leaves", "_start", "_last", "_in_window",
        "_bin", "_bin_edge", "_bin_width", "_last_bin",
    )

    def __init__(self, name: str, kind: str, start_s: float, end_s: float, keep_sojourns: bool = False):
        self.name = name
        self.kind = kind
        self.n = 0
        self.area = 0.0
        self.entries = 0
        self.completed = 0
        self.sojourn_sum = 0.0
        self.sojourn_sq_sum = 0.0
        self.sojourns = array("d") if keep_sojourns else None
        self.n_at_start = 0
        self.n_at_end = 0
        self.max_sojourn = 0.0
        self.bin_area = [0.0] * TIME_BINS
        self.bin_leaves = [0] * TIME_BINS
        self._start = start_s
        self._last = 0.0
        self._in_window = start_s <= 0
        self._bin = 0
        self._bin_width = end_s / TIME_BINS
        self._bin_edge = self._bin_width
        self._last_bin = TIME_BINS - 1

    def _advance(self, now: float) -> None:
        last = self._last
        if now <= last:
            return
        n = self.n
        if self._in_window:
            self.area += n * (now - last)
        edge = self._bin_edge
        while now > edge and self._bin < self._last_bin:
            self.bin_area[self._bin] += n * (edge - last)
            last = edge
            self._bin += 1
            edge += self._bin_width
            self._bin_edge = edge
        self.bin_area[self._bin] += n * (now - last)
        self._last = now

    def enter(self, now: float) -> None:
        self._advance(now)
        self.n += 1
        if self._in_window:
            self.entries += 1

    def leave(self, now: float, entered_s: float) -> None:
        self._advance(now)
        self.n -= 1
        self.bin_leaves[self._bin] += 1
        sojourn = now - entered_s
        if sojourn > self.max_sojourn:
            self.max_sojourn = sojourn
        if entered_s >= self._start:
            self.completed += 1
            self.sojourn_sum += sojourn
            self.sojourn_sq_sum += sojourn * sojourn
            if self.sojourns is not None:
                self.sojourns.append(sojourn)

    def integral(self, now: float) -> float:
        """The integral of the number inside over the whole run up to ``now`` (warm-up included)."""
        return sum(self.bin_area) + self.n * max(now - self._last, 0.0)

    def open_window(self, now: float) -> None:
        self._advance(now)
        self._in_window = True
        self.n_at_start = self.n

    def close(self, now: float) -> None:
        self._advance(now)
        self.n_at_end = self.n


class Gauge(Boundary):
    """A level that changes now and then (the workers present in a pool), integrated over time
    like a boundary's count — over the window and per time bin — but with no items and no
    Little's law: :meth:`set` the new level when it changes."""

    __slots__ = ()

    def set(self, now: float, value: float) -> None:
        self._advance(now)
        self.n = value


class Recorder:
    """Per-message outcomes and the boundaries of one replication.

    Clients (:mod:`models.clients`) send attempts of a request; the fates router hands what
    happens to an attempt to its client, never to the Recorder, and the client tells the Recorder
    its request's outcome (:meth:`request_admitted`, :meth:`request_settled`, :meth:`duplicate`,
    :meth:`wasted`).
    """

    def __init__(self, warmup_s: float, duration_s: float):
        self.warmup_s = warmup_s
        self.duration_s = duration_s
        self.created_s = array("d")
        self.outcome = array("b")
        self.latencies_s = array("d")
        self.duplicates = 0
        self.counters: dict[str, WindowCounter] = {}
        self.processed_in_window = 0
        self.processed_per_bin = [0] * TIME_BINS
        self.retries_per_bin = [0] * TIME_BINS  # attempts after a request's first (clients)
        self.wasted_per_bin = [0] * TIME_BINS  # attempts processed after their client gave up on them
        self.gauges: dict[str, Gauge] = {}
        self._bin_width = duration_s / TIME_BINS
        self.boundaries: dict[str, Boundary] = {}
        self.system = self.boundary("system", "system")
        self.tracks_consistency = False
        self.flags = array("b")
        self.committed_s = array("d")
        self.suppressed_in_window = 0
        self.processed_before_commit = 0
        self.commit_to_processed_s = array("d")

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
        self.created_s.append(now)
        self.outcome.append(IN_FLIGHT)
        return len(self.outcome) - 1

    def settled(self, message) -> bool:
        """Whether the message (a request, for a client's attempt) has an outcome."""
        return self.outcome[message.id] != IN_FLIGHT

    def admitted(self, message, now: float) -> None:
        """The message was accepted by the first component it was sent to: it is in the system."""
        self.system.enter(now)

    def processed(self, message, now: float) -> None:
        """The last stage finished the message (again, if it had: a duplicate)."""
        i = message.id
        outcome = self.outcome[i]
        if self.tracks_consistency:
            self._flag(i, DELIVERED)
        if outcome != IN_FLIGHT:
            if outcome == PROCESSED:
                if message.created_s >= self.warmup_s:
                    self.duplicates += 1
                if self.tracks_consistency:
                    self._flag(i, PROCESSED_AGAIN)
            elif outcome != REJECTED:
                self.outcome[i] = PROCESSED
            return
        self.outcome[i] = PROCESSED
        if self.tracks_consistency:
            self._first_processing(message, now)
        self.system.leave(now, message.created_s)
        self.processed_per_bin[min(int(now / self._bin_width), TIME_BINS - 1)] += 1
        if now >= self.warmup_s:
            self.processed_in_window += 1
        if message.created_s >= self.warmup_s:
            self.latencies_s.append(now - message.created_s)

    def lost(self, message, now: float) -> None:
        self._settle(message, LOST, now)

    def dead_lettered(self, message, now: float) -> None:
        self._settle(message, DEAD_LETTERED, now)

    def rejected(self, message, now: float, admitted: bool) -> None:
        """Refused for good; ``admitted`` says whether it had entered the system (a later stage refused it)."""
        if admitted:
            self._settle(message, REJECTED, now)
        else:
            self.outcome[message.id] = REJECTED

    def _settle(self, message, outcome: int, now: float) -> None:
        if self.outcome[message.id] == IN_FLIGHT:
            self.outcome[message.id] = outcome
            self.system.leave(now, message.created_s)

    # --- requests of clients (models.clients) -------------------------------------------------

    def request_admitted(self, request, now: float) -> None:
        """An attempt of ``request`` was admitted for the first time: the request is in the system
        (until its outcome; its stay is counted from this admission)."""
        self.system.enter(now)

    def request_settled(self, request, now: float, outcome: str) -> None:
        """The client decided ``request``'s outcome: processed (it got the response), rejected
        (it gave up), or lost / dead_lettered / rejected downstream (told of a failure)."""
        i = request.id
        if self.outcome[i] != IN_FLIGHT:
            return
        code = _OUTCOME_CODES[outcome]
        self.outcome[i] = code
        if request.admitted_s is not None:
            self.system.leave(now, request.admitted_s)
        if code == PROCESSED:
            self.processed_per_bin[min(int(now / self._bin_width), TIME_BINS - 1)] += 1
            if now >= self.warmup_s:
                self.processed_in_window += 1
            if request.created_s >= self.warmup_s:
                self.latencies_s.append(now - request.created_s)

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

    def _flag(self, i: int, flag: int) -> None:
        flags = self.flags
        if i >= len(flags):
            grow = max(i + 1 - len(flags), len(flags) // 2 + 1024)
            flags.frombytes(bytes(grow))
            self.committed_s.extend([float("nan")] * grow)
        flags[i] |= flag

    def committed(self, message, now: float) -> None:
        """The message's business row (and, with an outbox, its event row) committed."""
        i = message.id
        self._flag(i, COMMITTED)
        self.committed_s[i] = now
        if self.flags[i] & DELIVERED and message.created_s >= self.warmup_s:
            self.processed_before_commit += 1  # published first, and a consumer was quicker

    def not_committed(self, message, now: float) -> None:
        """The message's business row did not commit and never will (refused, rolled back, or
        the application gave up or died before committing)."""
        self._flag(message.id, NOT_COMMITTED)

    def suppressed(self, message, now: float) -> None:
        """An idempotent consumer skipped a copy of a message it had processed."""
        self._flag(message.id, SUPPRESSED)
        if message.created_s >= self.warmup_s:
            self.suppressed_in_window += 1

    def _first_processing(self, message, now: float) -> None:
        i = message.id
        if i < len(self.flags) and self.flags[i] & COMMITTED and message.created_s >= self.warmup_s:
            self.commit_to_processed_s.append(now - self.committed_s[i])

    def consistency_counts(self) -> dict[str, int]:
        """Per logical event produced in the window: what became of its business row and its event."""
        n = len(self.outcome)
        created = np.frombuffer(self.created_s, dtype=np.float64)
        in_window = created >= self.warmup_s
        outcome = np.frombuffer(self.outcome, dtype=np.int8)[in_window]
        flags = np.zeros(n, dtype=np.int8)
        known = np.frombuffer(self.flags, dtype=np.int8)[:n]
        flags[: known.size] = known
        flags = flags[in_window]
        committed = (flags & COMMITTED) != 0
        not_committed = ((flags & NOT_COMMITTED) != 0) & ~committed
        delivered = (flags & DELIVERED) != 0
        copied = (flags & (PROCESSED_AGAIN | SUPPRESSED)) != 0
        never = ~delivered & ((outcome == LOST) | (outcome == REJECTED) | (outcome == DEAD_LETTERED))
        return {
            "committed": int(committed.sum()),
            "not_committed": int(not_committed.sum()),
            "delivered_once": int((committed & delivered & ~copied).sum()),
            "delivered_more_than_once": int((committed & delivered & copied).sum()),
            "never_delivered": int((committed & never).sum()),
            "phantom": int((not_committed & delivered).sum()),
            "suppressed": self.suppressed_in_window,
            "processed_before_commit": self.processed_before_commit,
            "committed_in_flight": int((committed & ~delivered & (outcome == IN_FLIGHT)).sum()),
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
        created = np.frombuffer(self.created_s, dtype=np.float64)
        outcome = np.frombuffer(self.outcome, dtype=np.int8)
        in_window = outcome[created >= self.warmup_s]
        tally = np.bincount(in_window, minlength=len(OUTCOMES))
        counts = {"produced": int(in_window.size)}
        counts.update({name: int(tally[code]) for code, name in OUTCOMES.items()})
        counts["duplicates"] = self.duplicates
        if self.tracks_consistency:
            counts.update(self.consistency_counts())
        return counts

    def in_flight_ids(self) -> np.ndarray:
        """Messages of the whole run (warm-up included) with no outcome yet."""
        return np.flatnonzero(np.frombuffer(self.outcome, dtype=np.int8) == IN_FLIGHT)
