"""Redis as a message broker: what its lists and streams share.

:class:`RedisBroker` is one Redis data set holding one queue (a list, or a stream with a consumer
group; see :mod:`models.redis_list` and :mod:`models.redis_stream`). It does what both need:

- **Blocking reads.** A consumer that finds nothing blocks (BRPOP, BLMOVE, XREADGROUP BLOCK);
  blocked clients are served longest-waiting first, a new message going straight to the one that
  has waited longest.
- **Memory.** ``max_messages`` stands for ``maxmemory`` in messages: entries waiting, plus the
  processing list or the PEL, plus dead letters parked (``accept_dead_letter``). A write (LPUSH,
  XADD) that finds it full meets the ``maxmemory-policy`` (:mod:`models.redis_eviction`): with
  ``noeviction`` (the default) and ``volatile-*`` it fails (OOM), a refusal for the publisher,
  while reads, acknowledgements and deletions go on; with ``allkeys-*`` Redis first evicts the
  queue's keys, each whole, every message in them at once (lost unless a worker holds a copy). An
  eviction is final: a crash does not bring the key back (as if a snapshot followed it).
- **Crashes and persistence.** ``crashes`` (:class:`~models.crashes.Crashes`) make the server fail
  and come back;
  :class:`~models.redis_persistence.Persistence` says what the data set falls back to. While it
  is down, writes fail (publishers are refused), receives wait for it to come back (clients
  reconnect transparently and block again, in the order they were blocked), and acknowledgements
  fail (the item stays in the processing list or PEL, and the work will be done again).
- **Copies and losses.** A message can exist several times at once: an entry in the list, an entry
  in the processing list or PEL, a delivery in a worker's hands, a copy a crash brought back. The
  broker counts the copies of each message it or its consumers hold; a message whose last copy
  disappears without its work having been done (a pop whose worker died, a write a crash took back)
  is lost. A copy processed after the message was already processed is a duplicate (the Recorder
  counts those).

Boundaries: the broker's main boundary (``boundary``) holds the entries waiting in the list or
stream (not yet handed to a consumer); ``in_flight`` (reliable lists and streams) holds the entries
of the processing list or PEL. Every copy counts: a message the monitor pushes back, or that a
crash puts back, enters the waiting boundary again; an XAUTOCLAIM leaves the entry in the PEL (it
changes owner, it does not leave).

Counts (inside the measurement window): ``deliveries``; ``redeliveries`` (deliveries of an entry
that had been handed to a consumer before: after a monitor's requeue, an XAUTOCLAIM, or a crash
that undid its pop); ``refused`` (and ``refused_full``, ``refused_down``); ``lost``;
``dead_lettered``; ``crashes``, ``downtime_s``; ``writes_lost`` (entries a crash took back);
``pops_undone`` and ``acks_undone`` (entries a crash put back in the list, the processing list or
the PEL); ``requeued`` (monitor), ``claimed`` (XAUTOCLAIM), ``acks_failed`` (the server was down),
``acks_missed`` (LREM or XACK found nothing); ``parked`` (dead letters received, as a dead-letter
stream); ``evictions`` and ``evicted`` (keys and entries evicted, under an ``allkeys-*`` policy).

**The server's capacity** (``command_s``; None, the default, leaves it out): Redis executes one
command at a time, so it is a single server whose work is the commands of every client — about
100,000 a second without pipelining in redis.io's benchmarks, a network round trip each
(https://redis.io/docs/latest/operate/oss_and_stack/management/optimization/benchmarks/ and
…/using-commands/pipelining/). With it, each command (LPUSH or XADD; BRPOP, BLMOVE or XREADGROUP
and each XAUTOCLAIM; LREM or XACK; each push back by the monitor) takes ``command_s`` of the
server's time in arrival order, and a consumer waits for its turn, the command and
``round_trip_s`` before its reply (a blocking read then blocks as before). So when the work is
cheap the server saturates before the workers do. Simplifications: publishers do not wait for
their reply (their commands still take the server's time, refused ones included); every command
costs the same; the round trip is paid once per command, after it.
"""

from __future__ import annotations

from collections import deque

from simpy import Interrupt

from .broker import BrokerBase, Delivery
from .crashes import Crashes, crash_loop
from .redis_eviction import EvictionPolicy
from .redis_persistence import DEFAULT_SAVE_RULES, Persistence

EXTRA_COUNTS = ("refused_full", "refused_down", "crashes", "downtime_s", "writes_lost", "pops_undone", "parked")
"""Counts every Redis broker reports beyond the standard broker events; subclasses add theirs."""


class Entry:
    """One element of the list, or one stream entry: a copy of a message waiting in Redis."""

    __slots__ = ("message", "seq", "since", "handed")

    def __init__(self, message, seq: int, since: float, handed: int = 0):
        self.message = message
        self.seq = seq
        self.since = since
        self.handed = handed
        """How many times this copy has been handed to a consumer."""


class Pending:
    """One element of the processing list, or one entry of the PEL: handed out, not acknowledged."""

    __slots__ = ("entry", "pseq", "entered", "taken_s", "count", "owner")

    def __init__(self, entry: Entry, pseq: int, now: float, owner):
        self.entry = entry
        self.pseq = pseq
        self.entered = now
        self.taken_s = now
        """When it was last handed out (the monitor's clock, the PEL's idle time)."""
        self.count = 1
        """Delivery count (a stream's PEL counts deliveries; XAUTOCLAIM adds one)."""
        self.owner = owner

    def state(self) -> tuple:
        return (self.taken_s, self.count, self.owner)

    def restore(self, state: tuple) -> None:
        self.taken_s, self.count, self.owner = state


class CommandServer:
    """Redis's one thread: commands executed one at a time, in arrival order, ``command_s`` each
    (see the module's docstring). ``busy_until_s`` is when the last command queued finishes."""

    __slots__ = ("command_s", "round_trip_s", "busy_until_s", "counts")

    def __init__(self, command_s: float, round_trip_s: float, counts):
        self.command_s = command_s
        self.round_trip_s = round_trip_s
        self.busy_until_s = 0.0
        self.counts = counts

    def call(self, now: float) -> float:
        """A command issued at ``now``: the seconds until its reply reaches the client."""
        self.busy_until_s = max(now, self.busy_until_s) + self.command_s
        self.counts.add("commands")
        self.counts.add("server_busy_s", self.command_s)
        return self.busy_until_s - now + self.round_trip_s


class RedisBroker(BrokerBase):
    """A Redis server holding one queue; subclasses say how it is read and acknowledged.

    ``counts`` is its window counter, ``fates`` the router told of lost and dead-lettered messages,
    ``window_start_s`` the start of the measurement window (downtime counts from it)."""

    extra_counts = EXTRA_COUNTS

    def __init__(
        self,
        env,
        name,
        boundary,
        counts,
        fates,
        in_flight=None,
        max_messages=None,
        persistence="rdb",
        rdb_interval=None,
        save_rules=DEFAULT_SAVE_RULES,
        crashes: Crashes | None = None,
        window_start_s=0.0,
        command_s: float | None = None,
        round_trip_s: float = 0.0,
        eviction: EvictionPolicy | None = None,
    ):
        self.env = env
        self.name = name
        self.boundary = boundary
        self.in_flight = in_flight
        self.counts = counts
        self.fates = fates
        self.window_start_s = window_start_s
        self.max_messages = max_messages
        self.eviction = eviction or EvictionPolicy()
        if max_messages is not None and self.eviction.evicts:
            self.extra_counts = (*self.extra_counts, "evictions", "evicted")
        self.persistence = Persistence(persistence, rdb_interval, save_rules)
        self.server = CommandServer(command_s, round_trip_s, counts) if command_s is not None else None
        self.ready: deque[Entry] = deque()
        self.blocked: deque = deque()
        """Consumers blocked in a read, longest-waiting first: (event, consumer)."""
        self.copies: dict = {}
        """Copies of each message (the Message object: a client's attempts are distinct messages)."""
        self.parked = 0
        self.up = True
        self._back = None
        self._down_since = 0.0
        self._seq = 0
        self._pseq = 0
        self._tags = 0
        self._generation = 0
        if self.persistence.interval_s is not None:
            env.process(self._durable_points(self._generation))
        if crashes is not None:
            env.process(crash_loop(env, crashes, self.crash, self.restart))

    # --- what subclasses provide ----------------------------------------------------------------

    def _deliver(self, entry: Entry, consumer) -> Delivery:
        """Hand ``entry``, just taken from the list, to ``consumer``."""
        raise NotImplementedError

    def pending(self):
        """The processing list or PEL entries (none for a plain list)."""
        return ()

    def pending_count(self) -> int:
        return 0

    def _add_pending(self, pending: Pending) -> None:
        raise NotImplementedError

    def _discard_pending(self, pending: Pending) -> None:
        raise NotImplementedError

    # --- publishers -----------------------------------------------------------------------------

    def size(self) -> int:
        """Messages the queue keeps in Redis (what ``max_messages`` bounds)."""
        return len(self.ready) + self.pending_count() + self.parked

    def put(self, message) -> bool:
        """LPUSH or XADD: False if Redis is down or out of memory (noeviction)."""
        return self._insert(message, at_head=False)

    def _insert(self, message, at_head: bool) -> bool:
        """Write ``message`` to the back of the queue, or ``at_head`` (taken next); False if Redis
        is down or out of memory."""
        if not self.up:
            self.counts.add("refused")
            self.counts.add("refused_down")
            return False
        self.command()
        if not self._room():
            self.counts.add("refused")
            self.counts.add("refused_full")
            return False
        self._push(message, self.env.now, at_head=at_head)
        if self.blocked:
            self._serve_waiting()
        return True

    def _push(self, message, now: float, handed: int = 0, at_head: bool = False) -> Entry:
        self._seq += 1
        entry = Entry(message, self._seq, now, handed)
        if at_head:
            self.ready.appendleft(entry)
        else:
            self.ready.append(entry)
        self.boundary.enter(now)
        self.persistence.written()
        self._hold(message)
        return entry

    def accept_dead_letter(self, message) -> bool:
        """Receive a dead letter (XADD to this stream as a dead-letter queue): it stays for
        inspection, outside the waiting boundary (nobody waits for it), counted as ``parked``."""
        if not self.up or not self._room():
            return False
        self.parked += 1
        self.counts.add("parked")
        return True

    # --- maxmemory -------------------------------------------------------------------------------

    def _room(self) -> bool:
        """Whether a command that adds data may run: the data set is below ``max_messages``, or
        the policy evicted keys until it is."""
        if self.max_messages is None or self.size() < self.max_messages:
            return True
        if not self.eviction.evicts:
            return False
        now = self.env.now
        for key in self.eviction.order(self._keys()):
            self._evict(key, now)
            if self.size() < self.max_messages:
                return True
        return False

    def _keys(self) -> list[str]:
        """The queue's keys that exist (Redis deletes an empty list), the waiting list first."""
        return ["queue"] if self.ready or self.parked else []

    def _evict(self, key: str, now: float) -> None:
        """The policy evicts ``key`` ("queue", "processing", or "stream": both): all its messages go."""
        self.counts.add("evictions")
        self.persistence.written()
        if key != "processing":
            self.counts.add("evicted", len(self.ready) + self.parked)
            self._drop_ready(now)
            self.parked = 0
        if key != "queue":
            self.counts.add("evicted", self.pending_count())
            self._drop_pending(now)

    # --- consumers ------------------------------------------------------------------------------

    def command(self) -> float:
        """One command to the server now: the seconds until its reply (0 without ``command_s``)."""
        return self.server.call(self.env.now) if self.server is not None else 0.0

    def _command_reply(self):
        """Issue a command and wait for its reply (a consumer's read)."""
        wait = self.command()
        if wait > 0:
            yield self.env.timeout(wait)

    def _until_up(self):
        while not self.up:
            yield self._back

    def _take(self, now: float) -> Entry:
        """Take the oldest waiting entry out of the list (the pop end)."""
        entry = self.ready.popleft()
        self.boundary.leave(now, entry.since)
        self.persistence.entry_taken(entry)
        return entry

    def _new_delivery(self, entry: Entry, consumer, tag: int, count: int | None = None) -> Delivery:
        """A delivery of ``entry`` (``count``: its delivery count, by default how many times this
        copy has been handed out, this time included)."""
        self.counts.add("deliveries")
        if entry.handed:
            self.counts.add("redeliveries")
        entry.handed += 1
        return Delivery(entry.message, consumer, tag, self.env.now, entry.handed if count is None else count)

    def _next_tag(self) -> int:
        self._tags += 1
        return self._tags

    def _block(self, consumer, timeout: float | None = None):
        """Block until a write serves this consumer (longest-waiting first) and return its
        deliveries, or ``None`` after ``timeout`` seconds (a BLOCK timeout) with nothing.

        A block abandoned (a timeout, the worker's crash) is withdrawn, so that no later write is
        handed to a consumer that has stopped waiting; a delivery made in the same instant as the
        crash is the worker's (its crash then hands it back to the broker)."""
        event = self.env.event()
        item = (event, consumer)
        self.blocked.append(item)
        try:
            if timeout is None:
                yield event
            else:
                yield event | self.env.timeout(timeout)
        except Interrupt:
            if event.triggered:
                consumer.held.extend(event.value)
            else:
                self.blocked.remove(item)
            raise
        if event.triggered:
            return event.value
        self.blocked.remove(item)
        return None

    def _serve_waiting(self) -> None:
        """Hand waiting entries to blocked consumers, longest waiting first."""
        now = self.env.now
        while self.blocked and self.ready:
            event, consumer = self.blocked.popleft()
            event.succeed([self._deliver(self._take(now), consumer)])

    # --- pending entries ------------------------------------------------------------------------

    def _new_pending(self, entry: Entry, consumer, now: float) -> Pending:
        self._pseq += 1
        pending = Pending(entry, self._pseq, now, consumer)
        self._add_pending(pending)
        self.in_flight.enter(now)
        self._hold(entry.message)
        return pending

    def _remove_pending(self, pending: Pending, now: float) -> None:
        """LREM, XACK, a requeue or a dead-lettering: the pending entry goes."""
        self._discard_pending(pending)
        self.in_flight.leave(now, pending.entered)
        self.persistence.pending_removed(pending)

    # --- copies ---------------------------------------------------------------------------------

    def _hold(self, message) -> None:
        copies = self.copies
        copies[message] = copies.get(message, 0) + 1

    def _release(self, message, now: float, dropped: bool) -> None:
        """One copy of ``message`` is gone; if it was the last and went without its work being
        done (``dropped``), the message is lost (the Recorder keeps an outcome it already has)."""
        copies = self.copies
        left = copies[message] - 1
        if left:
            copies[message] = left
            return
        del copies[message]
        if dropped:
            if not self.fates.settled(message):
                self.counts.add("lost")
            self.fates.lost(message, now)

    # --- crashes --------------------------------------------------------------------------------

    def crash(self, down_s: float = 0.0) -> None:
        """The server dies: the data set falls back to its durable point."""
        now = self.env.now
        self.up = False
        self._back = self.env.event()
        self._down_since = now
        self._generation += 1
        self.counts.add("crashes")
        persistence = self.persistence
        if persistence.loses_everything:
            self._wipe(now)
        elif not persistence.loses_nothing:
            self._roll_back(now)

    def restart(self) -> None:
        """The server is back with the data set it loaded, which is now its durable point."""
        now = self.env.now
        self.up = True
        start = max(self._down_since, self.window_start_s)
        if now > start:
            self.counts.add("downtime_s", now - start)
        self.persistence.durable(self._seq, self._pseq, now)
        if self.persistence.interval_s is not None:
            self.env.process(self._durable_points(self._generation))
        back, self._back = self._back, None
        back.succeed()
        self._serve_waiting()
        self._restarted(now)

    def _restarted(self, now: float) -> None:
        """Subclasses restart their own clocks."""

    def _durable_points(self, generation: int):
        """Snapshots or fsyncs every ``interval_s`` while the server runs (from its start), or,
        under ``save`` rules, a snapshot at each check that finds one due."""
        persistence = self.persistence
        interval = persistence.interval_s
        while True:
            yield self.env.timeout(interval)
            if generation != self._generation:
                return
            now = self.env.now
            if persistence.due(now):
                persistence.durable(self._seq, self._pseq, now)

    def _wipe(self, now: float) -> None:
        """No persistence: the server comes back empty."""
        self.counts.add("writes_lost", len(self.ready))
        self._drop_ready(now)
        self._drop_pending(now)
        self.parked = 0

    def _drop_ready(self, now: float) -> None:
        """Every waiting entry goes (a crash without persistence, an eviction)."""
        ready, self.ready = self.ready, deque()
        for entry in ready:
            self.boundary.leave(now, entry.since)
            self._release(entry.message, now, dropped=True)

    def _drop_pending(self, now: float) -> None:
        """Every pending entry goes: the copies in workers' hands remain."""
        for pending in list(self.pending()):
            self._discard_pending(pending)
            self.in_flight.leave(now, pending.entered)
            self._release(pending.entry.message, now, dropped=True)

    def _roll_back(self, now: float) -> None:
        """Put the data set back to its durable point, from the log since then.

        What was taken since comes back first, then what was written since goes, so that a message
        merely moved since the durable point is never taken for gone.
        """
        log = self.persistence
        counts = self.counts
        restored = deque()
        for entry in log.taken:
            entry.since = now
            self.boundary.enter(now)
            self._hold(entry.message)
            restored.append(entry)
            counts.add("pops_undone")
        for pending in log.removed:
            pending.entered = now
            self._add_pending(pending)
            self.in_flight.enter(now)
            self._hold(pending.entry.message)
            counts.add("acks_undone")
        for pending, state in log.saved.items():
            pending.restore(state)
        written = []
        for entry in self.ready:
            (restored if entry.seq <= log.durable_seq else written).append(entry)
        self.ready = restored
        for entry in written:
            self.boundary.leave(now, entry.since)
            counts.add("writes_lost")
            self._release(entry.message, now, dropped=True)
        for pending in [p for p in self.pending() if p.pseq > log.durable_pending_seq]:
            self._discard_pending(pending)
            self.in_flight.leave(now, pending.entered)
            self._release(pending.entry.message, now, dropped=True)
        log.durable(self._seq, self._pseq, now)

    # --- reporting ------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Entries in the list or stream not yet handed to a consumer."""
        return len(self.ready)

    def held_ids(self):
        """Messages in Redis: waiting, and in the processing list or PEL."""
        for entry in self.ready:
            yield entry.message.id
        for pending in self.pending():
            yield pending.entry.message.id

    def metrics(self) -> dict[str, float]:
        """Counts beyond the standard broker events (inside the measurement window)."""
        out = {key: float(self.counts[key]) for key in self.extra_counts}
        if self.server is not None:
            window_s = self.env.now - self.window_start_s
            out["commands"] = float(self.counts["commands"])
            out["server_utilization"] = self.counts["server_busy_s"] / window_s if window_s > 0 else float("nan")
        if not self.up:  # down at the end of the run: the downtime so far
            now = self.env.now
            start = max(self._down_since, self.window_start_s)
            if now > start:
                out["downtime_s"] += now - start
        return out
