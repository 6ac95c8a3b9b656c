"""What a Redis crash takes back: the durable point of the data set and the log since it.

Redis keeps its data set in memory and makes it durable in one of four ways:

- ``none``: nothing is written; a restart comes back empty.
- ``rdb``: a snapshot every ``rdb_interval`` (Redis's default ``save`` rules snapshot a queue with
  at least 100 writes every 5 minutes, hence the 300 s default); a crash falls back on the last one.
- ``aof-everysec`` (Redis's AOF default): every write command is appended to a file that is
  fsynced once a second; a crash loses the writes since the last fsync, about the last second.
- ``aof-always``: the file is fsynced before a command is answered; what a client was told is done
  stays done.

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
one-second clock (a slow disk can stretch the loss to two seconds in real Redis).
"""

from __future__ import annotations

MODES = ("none", "rdb", "aof-everysec", "aof-always")
FSYNC_INTERVAL_S = 1.0


class Persistence:
    """The durable point of one Redis data set, and the log of what changed since."""

    __slots__ = ("mode", "interval_s", "logging", "durable_seq", "durable_pending_seq", "taken", "removed", "saved")

    def __init__(self, mode: str = "rdb", rdb_interval_s: float = 300.0):
        if mode not in MODES:
            raise ValueError(f"persistence must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.interval_s = {"rdb": rdb_interval_s, "aof-everysec": FSYNC_INTERVAL_S}.get(mode)
        """Seconds between durable points (``None``: there are none, or every write is one)."""
        self.logging = self.interval_s is not None
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

    def entry_taken(self, entry) -> None:
        """An entry left the list (a pop, a move, a read by the group)."""
        if self.logging and entry.seq <= self.durable_seq:
            self.taken.append(entry)

    def pending_removed(self, pending) -> None:
        """A pending entry left the processing list or the PEL."""
        if self.logging and pending.pseq <= self.durable_pending_seq:
            self.removed.append(pending)

    def pending_changed(self, pending) -> None:
        """A pending entry is about to change (a claim): keep its durable state once."""
        if self.logging and pending.pseq <= self.durable_pending_seq and pending not in self.saved:
            self.saved[pending] = pending.state()

    def durable(self, seq: int, pending_seq: int) -> None:
        """Everything up to now is on disk: a new durable point, an empty log."""
        self.durable_seq = seq
        self.durable_pending_seq = pending_seq
        self.taken.clear()
        self.removed.clear()
        self.saved.clear()
