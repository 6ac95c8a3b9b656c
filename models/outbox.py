"""The transactional outbox: the business row and the event row commit in one local transaction,
and the outbox table keeps the event until a relay has published it."""

from __future__ import annotations

from array import array
from collections import deque

from .crashes import Crashes, crash_loop


class OutboxRow:
    """One event row: its message, its position in commit order, when it committed, the relay
    whose open transaction has it locked (SELECT ... FOR UPDATE SKIP LOCKED), how many times
    it has been published, and whether it is marked sent."""

    __slots__ = ("message", "seq", "committed_s", "locked_by", "publications", "sent")

    def __init__(self, message, seq: int, committed_s: float):
        self.message = message
        self.seq = seq
        self.committed_s = committed_s
        self.locked_by = None
        self.publications = 0
        self.sent = False


class OutboxTable:
    """The outbox table's pending rows (committed, not yet marked sent), oldest first.

    Rows wait in a ``deque`` in commit order; a row marked sent out of order (by another relay)
    is flagged and dropped when it reaches the head, so a query for the oldest unsent rows
    reads from the head. Its boundary counts pending rows: from the
    commit to the mark-as-sent (a polling relay) or to the first publication (log tailing, which
    marks nothing). Rows marked sent are gone: the table's growth and its clean-up job are not
    modelled.
    """

    def __init__(self, boundary):
        self.boundary = boundary
        self.rows: deque[OutboxRow] = deque()
        self.pending = 0
        self._seq = 0

    def insert(self, message, now: float) -> OutboxRow:
        self._seq += 1
        row = OutboxRow(message, self._seq, now)
        self.rows.append(row)
        self.pending += 1
        self.boundary.enter(now)
        return row

    def select(self, limit: int, relay, skip_locked: bool) -> list[OutboxRow]:
        """``SELECT ... WHERE NOT sent ORDER BY id LIMIT n`` — with ``FOR UPDATE SKIP LOCKED``
        when ``skip_locked``: rows another relay has locked are skipped, and the rows returned
        are locked by ``relay`` until it ends its transaction (:meth:`unlock`). Without it,
        nothing is locked and two relays can read the same rows."""
        rows = self.rows
        while rows and rows[0].sent:
            rows.popleft()
        batch: list[OutboxRow] = []
        if limit <= 0:
            return batch
        for row in rows:
            if row.sent:
                continue
            if skip_locked:
                if row.locked_by is not None:
                    continue
                row.locked_by = relay
            batch.append(row)
            if len(batch) == limit:
                break
        return batch

    def mark_sent(self, batch, now: float) -> int:
        """``UPDATE ... SET sent`` for the rows of ``batch`` still pending; returns how many."""
        marked = 0
        for row in batch:
            if not row.sent:
                row.sent = True
                marked += 1
                self.boundary.leave(now, row.committed_s)
        self.pending -= marked
        return marked

    @staticmethod
    def unlock(batch, relay) -> None:
        """The relay's transaction ended (commit or rollback): its row locks are released."""
        for row in batch:
            if row.locked_by is relay:
                row.locked_by = None

    def unlock_all(self) -> None:
        """The database crashed: every lock went with the transactions that held it."""
        for row in self.rows:
            row.locked_by = None

    def held_ids(self):
        return (row.message.id for row in self.rows if not row.sent)


class OutboxTransaction:
    """One application request's transaction: wait for a connection, run for the commit time."""

    __slots__ = ("outbox", "message", "started_s", "waiter", "connection", "ended")

    def __init__(self, outbox, message, started_s: float):
        self.outbox = outbox
        self.message = message
        self.started_s = started_s
        self.waiter = None
        self.connection = None
        self.ended = False

    def connected(self, connection) -> None:
        self.outbox._connected(self, connection)

    def done(self, _event) -> None:
        self.outbox._done(self)

    def lost(self) -> None:
        self.outbox._failed(self)


class Outbox:
    """The application's side of the outbox pattern: ``put(message)`` is a user's request, whose
    one local transaction writes the business row (the order becomes "Placed") and the event row
    (a "process payment" event) and commits both, or neither.

    The request borrows a connection from the :class:`~models.database.Database` pool (waiting
    if none is free), holds it for a ``commit_time`` draw, and commits: the event row joins the
    :class:`OutboxTable`, ``fates`` hears that the business row committed, and each relay in
    ``listeners`` (log tailing reads the commit from the write-ahead log) is told. The user's
    answer comes with the commit: ``request_latency`` (request to commit) is what the user waits.

    Failures: while the database or the application is down, ``put`` is refused (False: the
    producer records the message rejected, the user got an error); a database crash during the
    transaction — waiting for a connection or running — rolls it back: nothing was written, the
    user got an error, and the message is rejected. The application can die too, as the dual
    write's does: ``crash_probability`` per request (the handler dies between writing the
    business row and the event row, inside the transaction, which rolls back when its
    connection closes) and ``crashes`` (the process dies with every
    transaction in progress, and refuses requests until it is back). Every way, ``fates``
    learns that the business row did not commit. Nothing can be published without its business
    row, nor the reverse: that is the pattern.

    There is no SimPy process per request: a request is a callback on the pool and one timeout.
    """

    def __init__(self, env, name, database, table, commit_time, fates, counts, window_start_s,
                 crash_probability=0.0, crash_draw=None, crashes: Crashes | None = None):
        self.env = env
        self.name = name
        self.database = database
        self.table = table
        self.commit_time = commit_time
        self.fates = fates
        self.counts = counts
        self.window_start_s = window_start_s
        self.listeners = []
        self.in_progress: dict[OutboxTransaction, None] = {}  # in order of arrival: a crash abandons them in that order
        self.request_latencies_s = array("d")
        self.crash_probability = crash_probability
        self.crash_draw = crash_draw
        self.up = True
        database.on_crash(table.unlock_all)
        if crashes is not None:
            env.process(crash_loop(env, crashes, self._crash, self._restart))

    def put(self, message) -> bool:
        now = self.env.now
        transaction = OutboxTransaction(self, message, now)
        waiter = self.database.connect("request", transaction.connected) if self.up else None
        if waiter is None:
            self.counts.add("refused")
            self.fates.not_committed(message, now)
            return False
        transaction.waiter = waiter
        self.in_progress.setdefault(transaction)
        return True

    def _connected(self, transaction, connection) -> None:
        if connection is None:
            self._failed(transaction)
            return
        transaction.connection = connection
        connection.on_lost = transaction.lost
        self.env.timeout(self.commit_time()).callbacks.append(transaction.done)

    def _done(self, transaction) -> None:
        if transaction.ended:
            return
        now = self.env.now
        if self.crash_probability and self.crash_draw() < self.crash_probability:
            self.counts.add("died_in_transaction")
            self.database.abandon(transaction.connection)
            self._failed(transaction)
            return
        if not self.database.release(transaction.connection):
            self._failed(transaction)
            return
        transaction.ended = True
        self.in_progress.pop(transaction, None)
        message = transaction.message
        row = self.table.insert(message, now)
        self.fates.committed(message, now)
        if transaction.started_s >= self.window_start_s:
            self.request_latencies_s.append(now - transaction.started_s)
        for listener in self.listeners:
            listener(row, now)

    def _failed(self, transaction) -> None:
        if transaction.ended:
            return
        transaction.ended = True
        self.in_progress.pop(transaction, None)
        now = self.env.now
        self.counts.add("rolled_back")
        self.fates.not_committed(transaction.message, now)
        self.fates.rejected(transaction.message, now, admitted=True)

    def _crash(self, down_s: float) -> None:
        """The application dies for ``down_s`` with every transaction in progress."""
        self.up = False
        self.counts.add("crashes")
        in_progress = list(self.in_progress)
        for transaction in in_progress:  # the waiters die with it: none may be lent a connection freed below
            if transaction.connection is None:
                self.database.cancel(transaction.waiter)
        for transaction in in_progress:
            if transaction.connection is not None:
                self.database.abandon(transaction.connection)
            self._failed(transaction)

    def _restart(self) -> None:
        self.up = True

    def publish_gate(self):
        """The application answers every request at once (it may refuse it): never blocks."""
        return None

    def held_ids(self):
        yield from (t.message.id for t in self.in_progress)
        yield from self.table.held_ids()
