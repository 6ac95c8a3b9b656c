"""What a Redis crash takes back: the durable point of the data set and the log since it.

Redis keeps its data set in memory and makes it durable in one of five ways (redis.io, "Redis
persistence", https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/, and the
``save`` and ``appendfsync`` settings of the redis.conf that ships with Redis):

- ``none``: nothing is written; a restart comes back empty.
- ``rdb``: snapshots by the ``save <seconds> <changes>`` rules: a snapshot is taken once at least
  ``seconds`` have passed since the last one *and* at least ``changes`` writes were made since.
  redis.conf's default is ``save 3600 1 300 100 60 10000`` (an hour and 1 change, 5 minutes and 100,
  a minute and 10,000), so a queue busier than 10,000 writes a minute is snapshotted about every
  60 s, a quieter one every 5 minutes or every hour. A fixed ``rdb_interval`` instead takes one
  snapshot every interval whatever the writes (a BGSAVE from cron). A crash falls back on the last
  snapshot.
- ``aof-everysec`` (Redis's AOF default): every write command is appended to a file that is
  fsynced once a second; a crash loses the writes since the last fsync, about the last second.
- ``aof-no`` (``appendfsync no``): Redis never fsyncs and leaves flushing to the operating system,
  "every 30 seconds" on Linux as the persistence page says; a crash loses up to about 30 s.
- ``aof-always``: the file is fsynced before a command is answered; what a client was told is done
  stays done.

A write is any command that changes the data set (``server.dirty``): a push, a pop or a move, an
LREM or an XACK, each counted once.

A crash puts the data set back to its *durable point* (the last snapshot or fsync). Everything
written since is gone — pushes, but also pops, moves, acknowledgements: a message popped since the
durable point is back in the list, and will be processed again. Rather than copying the queue at
each durable point, this class keeps the log of what the rollback needs:

- the durable point as two sequence numbers: list or stream entries numbered above
  ``durable_seq`` were written since (they vanish), pending entries (processing list, PEL)
  numbered above ``durable_pending_seq`` were created since (they vanish);
- ``taken``: entries that existed at the durable point and have been taken out of the list since
  (they come back, in the order they were taken, at the head of the list);
- ``removed``: pending entries that existed at the durable point and have been removed since
  (LREM, XACK, a monitor's requeue, a dead-lettering: they come back);
- ``saved``: the durable-point state of pending entries changed since (an XAUTOCLAIM's new owner,
  idle time and delivery count are taken back).

The log holds only what changed since the last durable point (a second of traffic with
``aof-everysec``, up to ``rdb_interval`` with ``rdb``), never a copy of the queue; ``none`` and
``aof-always`` keep no log at all.

Simplifications: a crash is a failure of the host (a kernel panic, a power or VM loss), so
``aof-everysec`` loses what was not yet fsynced; a crash of the Redis process alone would leave the
written but unsynced AOF in the page cache and lose nothing. A snapshot is durable the moment it is
taken (the fork), although writing it takes a while in reality. The fsync runs on a steady
one-second clock (a slow disk can stretch the loss to two seconds in real Redis), the OS flush of
``aof-no`` on a steady 30-second one. The ``save`` rules are checked once a second (Redis checks them
in its ``serverCron``, ten times a second by default), and a failed snapshot is never retried (none
fails here).
"""

from __future__ import annotations

MODES = ("none", "rdb", "aof-everysec", "aof-no", "aof-always")
FSYNC_INTERVAL_S = 1.0
OS_FLUSH_INTERVAL_S = 30.0
"""``appendfsync no``: Linux writes dirty pages back about every 30 seconds (Redis's persistence page)."""
DEFAULT_SAVE_RULES = ((3600.0, 1), (300.0, 100), (60.0, 10000))
"""redis.conf's default ``save 3600 1 300 100 60 10000``: (seconds, changes) pairs."""
SAVE_CHECK_INTERVAL_S = 1.0
"""How often the model checks the ``save`` rules."""


class Persistence:
    """The durable point of one Redis data set, and the log of what changed since."""

    __slots__ = ("mode", "interval_s", "save_rules", "logging", "durable_seq", "durable_pending_seq", "taken",
                 "removed", "saved", "changes", "durable_s")

    def __init__(self, mode: str = "rdb", rdb_interval_s: float | None = None, save_rules=DEFAULT_SAVE_RULES):
        if mode not in MODES:
            raise ValueError(f"persistence must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.save_rules = tuple(save_rules) if mode == "rdb" and rdb_interval_s is None else ()
        """The ``save`` rules in force (empty: durable points come on a fixed clock, or never)."""
        if self.save_rules:
            self.interval_s = SAVE_CHECK_INTERVAL_S
        else:
            self.interval_s = {"rdb": rdb_interval_s, "aof-everysec": FSYNC_INTERVAL_S, "aof-no": OS_FLUSH_INTERVAL_S}.get(mode)
        """Seconds between durable points, or between checks of the ``save`` rules (``None``: there
        are none, or every write is one)."""
        self.logging = self.interval_s is not None
        self.changes = 0
        """Writes since the last durable point (Redis's ``dirty`` counter)."""
        self.durable_s = 0.0
        self.durable_seq = 0
        self.durable_pending_seq = 0
        self.taken: list = []
        self.removed: list = []
        self.saved: dict = {}

    @property
    def loses_everything(self) -> bool:
        return self.mode == "none"

    @property
    def loses_nothing(self) -> bool:
        return self.mode == "aof-always"

    def written(self) -> None:
        """A write that changes the data set (a push, a pop or move, an LREM or XACK)."""
        self.changes += 1

    def due(self, now: float) -> bool:
        """Whether a durable point is due at this tick: always on a fixed clock, or when a ``save``
        rule is met (enough seconds and enough changes since the last snapshot)."""
        if not self.save_rules:
            return True
        elapsed = now - self.durable_s
        return any(elapsed >= seconds and self.changes >= changes for seconds, changes in self.save_rules)

    def entry_taken(self, entry) -> None:
        """An entry left the list (a pop, a move, a read by the group)."""
        self.changes += 1
        if self.logging and entry.seq <= self.durable_seq:
            self.taken.append(entry)

    def pending_removed(self, pending) -> None:
        """A pending entry left the processing list or the PEL."""
        self.changes += 1
        if self.logging and pending.pseq <= self.durable_pending_seq:
            self.removed.append(pending)

    def pending_changed(self, pending) -> None:
        """A pending entry is about to change (a claim): keep its durable state once."""
        if self.logging and pending.pseq <= self.durable_pending_seq and pending not in self.saved:
            self.saved[pending] = pending.state()

    def durable(self, seq: int, pending_seq: int, now: float) -> None:
        """Everything up to ``now`` is on disk: a new durable point, an empty log."""
        self.durable_s = now
        self.changes = 0
        self.durable_seq = seq
        self.durable_pending_seq = pending_seq
        self.taken.clear()
        self.removed.clear()
        self.saved.clear()
