"""Outbox relays: the polling publisher and log tailing (change data capture, as Debezium does).

Both publish at least once: a relay that dies after publishing and before its progress is
durable (the mark-as-sent, the connector's offset) publishes the same events again after its
restart. Consumers are made idempotent for that (:mod:`models.idempotency`).
"""

from __future__ import annotations

from array import array
from collections import deque

from simpy import Interrupt

from .crashes import Crashes, crash_loop


class RelayStats:
    """What the relays of one outbox share: their boundary (rows in a relay's hands), their
    counters, and the delays from commit to first publication of the rows committed in the
    window."""

    def __init__(self, boundary, counts, window_start_s: float):
        self.boundary = boundary
        self.counts = counts
        self.window_start_s = window_start_s
        self.publish_delays_s = array("d")

    def published(self, row, now: float) -> None:
        row.publications += 1
        in_window = row.message.created_s >= self.window_start_s
        if row.publications == 1:
            if row.committed_s >= self.window_start_s:
                self.publish_delays_s.append(now - row.committed_s)
        elif in_window:
            self.counts.add("republished")
        self.counts.add("published")


class PollingRelay:
    """A polling publisher (microservices.io's "polling publisher"): every ``poll_interval_s``
    it opens a transaction on a pooled connection, reads up to ``batch_size`` of the oldest
    unsent rows (``query_time``), publishes them one after another to ``target``
    (``publish_time`` each, then ``target.put``), marks the published ones sent with one
    UPDATE (``mark_time``) and commits.

    - Polls run at a fixed rate (``phase_s`` + k·interval, as ``scheduleAtFixedRate`` does; a
      cycle that overruns makes the next poll start at once). The query sees the rows committed
      before it starts (a snapshot), so at light load a row waits on average half an interval
      for the next poll, then the query and its publication.
    - ``skip_locked``: the query takes row locks with ``FOR UPDATE SKIP LOCKED``, held until
      the commit, so several relays share the rows out. Without it several relays can read, and
      publish, the same rows (duplicates).
    - A publication the broker refuses ends the batch there (the next rows would overtake it):
      the refused row and those after it stay pending for the next poll.
    - Failures, each abandoning the cycle (the transaction rolls back, the locks go, rows not yet
      marked stay pending and are published again by a later poll):
      ``crashes`` (the relay process dies at any moment and restarts, then
      polls at once); ``crash_before_mark`` (probability per batch that it dies right after
      publishing and before marking, down for ``crash_before_mark_restart``); a database crash
      (the relay learns it at its next statement).

    Simplifications: the query and mark times do not depend on the table's size or the batch
    size (give them distributions that cover it); publishing is synchronous per message (no
    pipelined sends); the database's crash does not stop a publication already under way.
    """

    def __init__(
        self,
        env,
        name,
        table,
        database,
        target,
        stats,
        poll_interval_s,
        batch_size,
        query_time,
        publish_time,
        mark_time,
        skip_locked=True,
        phase_s=0.0,
        crashes: Crashes | None = None,
        crash_before_mark=0.0,
        crash_draw=None,
        crash_before_mark_restart=None,
    ):
        self.env = env
        self.name = name
        self.table = table
        self.database = database
        self.target = target
        self.stats = stats
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.query_time = query_time
        self.publish_time = publish_time
        self.mark_time = mark_time
        self.skip_locked = skip_locked
        self.phase_s = phase_s
        self.crash_before_mark = crash_before_mark
        self.crash_draw = crash_draw
        self.crash_before_mark_restart = crash_before_mark_restart
        self._waiter = None
        self._connection_event = None
        self._connection = None
        self._batch: list = []
        self._holding_since_s = None
        self.process = env.process(self._run())
        if crashes is not None:
            env.process(crash_loop(env, crashes, self.process.interrupt))

    def _run(self):
        env = self.env
        next_poll = self.phase_s
        while True:
            try:
                if next_poll > env.now:
                    yield env.timeout(next_poll - env.now)
                next_poll += self.poll_interval_s
                down_for = yield from self._cycle()
                if down_for is not None:
                    yield env.timeout(down_for)
                    next_poll = env.now
            except Interrupt as crash:
                self.stats.counts.add("crashes")
                self._abandon()
                yield env.timeout(crash.cause)
                next_poll = env.now

    def _cycle(self):
        """One poll; returns a down time if the relay crashed before marking."""
        env = self.env
        counts = self.stats.counts
        event = self._connection_event = env.event()
        self._waiter = self.database.connect("relay", event.succeed)
        if self._waiter is None:
            self._connection_event = None
            counts.add("failed_polls")
            return None
        connection = yield event
        self._waiter = self._connection_event = None
        if connection is None:
            counts.add("failed_polls")
            return None
        self._connection = connection
        counts.add("polls")
        batch = self._batch = self.table.select(self.batch_size, self, self.skip_locked)
        yield env.timeout(self.query_time())
        if not connection.alive:
            counts.add("failed_polls")
            self._end(connection)
            return None
        if not batch:
            counts.add("empty_polls")
            self._end(connection)
            return None
        now = env.now
        boundary = self.stats.boundary
        for _ in batch:
            boundary.enter(now)
        self._holding_since_s = now
        put = self.target.put
        published = []
        for row in batch:
            yield env.timeout(self.publish_time())
            if not put(row.message):
                counts.add("refused_publishes")
                break
            self.stats.published(row, env.now)
            published.append(row)
        if self.crash_before_mark and self.crash_draw() < self.crash_before_mark:
            counts.add("crashes")
            self._abandon()
            return self.crash_before_mark_restart()
        yield env.timeout(self.mark_time())
        if not connection.alive:
            counts.add("failed_marks")
            self._end(connection)
            return None
        counts.add("marks")
        self.table.mark_sent(published, env.now)
        self._end(connection)
        return None

    def _end(self, connection) -> None:
        """Commit (or find the connection dead): locks released, rows out of the relay's hands."""
        self.database.release(connection)
        self._connection = None
        self._let_go()

    def _let_go(self) -> None:
        batch, self._batch = self._batch, []
        self.table.unlock(batch, self)
        since = self._holding_since_s
        if since is not None:
            now = self.env.now
            for _ in batch:
                self.stats.boundary.leave(now, since)
            self._holding_since_s = None

    def _abandon(self) -> None:
        """The relay died: its open transaction rolls back, a connection it waited for is not taken."""
        if self._waiter is not None:
            event = self._connection_event
            if event.triggered:
                if event.value is not None:
                    self.database.abandon(event.value)
            else:
                self.database.cancel(self._waiter)
            self._waiter = self._connection_event = None
        if self._connection is not None:
            self.database.abandon(self._connection)
            self._connection = None
        self._let_go()

    def held_ids(self):
        return ()


class CdcRelay:
    """Log tailing (change data capture, as Debezium's outbox event router does): the connector
    reads each committed event row from the database's write-ahead log and publishes it to
    ``target`` ``lag`` seconds after its commit (a draw per event: log read, processing, send),
    in commit order — an event never overtakes the one committed before it. It touches no
    connection of the pool and runs no query: the database load of polling is gone.

    - A publication the broker refuses is retried every ``retry_interval_s``, holding back the
      events behind it (order is kept).
    - The connector records how far it has published (its offset) every
      ``offset_flush_interval_s`` (Kafka Connect's ``offset.flush.interval.ms``, 60 s by
      default). ``crashes``: when it dies, it restarts from the last
      recorded offset, so the events published since are read and published again.
    - While the database is down the connector waits (it cannot read the log) and resumes
      where it was.

    Simplifications: the lag is independent from event to event (order then delays an event
    behind a slower one); the replication slot never runs out; the row, written and read from
    the log, is never deleted (Debezium's outbox router deletes it or not: either way the log has
    it).
    """

    def __init__(self, env, name, table, database, target, stats, lag, offset_flush_interval_s=60.0, retry_interval_s=0.1,
                 crashes: Crashes | None = None, phase_s=0.0):
        self.env = env
        self.name = name
        self.table = table
        self.database = database
        self.target = target
        self.stats = stats
        self.lag = lag
        self.offset_flush_interval_s = offset_flush_interval_s
        self.retry_interval_s = retry_interval_s
        self.phase_s = phase_s
        self.log: deque = deque()  # [row, due_s, entered_s], in commit order
        self.unflushed: deque = deque()  # (row, published_s) since the last offset flush
        self.last_due_s = 0.0
        self._wake = None
        self.process = env.process(self._run())
        if crashes is not None:
            env.process(crash_loop(env, crashes, self.process.interrupt))

    def on_commit(self, row, now: float) -> None:
        """The commit reached the write-ahead log: the connector will read it."""
        due = max(now + self.lag(), self.last_due_s)
        self.last_due_s = due
        self.log.append([row, due, now])
        self.stats.boundary.enter(now)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _run(self):
        env = self.env
        while True:
            try:
                yield from self._publish_log()
            except Interrupt as crash:
                self.stats.counts.add("crashes")
                self._reread(env.now)
                yield env.timeout(crash.cause)
                self._resume(env.now)

    def _publish_log(self):
        env = self.env
        log = self.log
        counts = self.stats.counts
        while True:
            if not log:
                self._wake = env.event()
                yield self._wake
                self._wake = None
                continue
            entry = log[0]
            if entry[1] > env.now:
                yield env.timeout(entry[1] - env.now)
                continue
            if not self.database.up:
                yield self.database.restarted()
                continue
            row = entry[0]
            if not self.target.put(row.message):
                counts.add("refused_publishes")
                yield env.timeout(self.retry_interval_s)
                continue
            now = env.now
            log.popleft()
            self.stats.boundary.leave(now, entry[2])
            self.stats.published(row, now)
            if row.publications == 1:
                self.table.mark_sent((row,), now)
            self._remember(row, now)

    def _last_flush_s(self, now: float) -> float:
        interval = self.offset_flush_interval_s
        return self.phase_s + interval * ((now - self.phase_s) // interval) if now >= self.phase_s else 0.0

    def _remember(self, row, now: float) -> None:
        unflushed = self.unflushed
        unflushed.append((row, now))
        flushed = self._last_flush_s(now)
        while unflushed and unflushed[0][1] <= flushed:
            unflushed.popleft()

    def _reread(self, now: float) -> None:
        """The connector died: on restart it reads again from its last recorded offset."""
        flushed = self._last_flush_s(now)
        again = [row for row, published_s in self.unflushed if published_s > flushed]
        self.unflushed.clear()
        boundary = self.stats.boundary
        for row in reversed(again):
            boundary.enter(now)
            self.log.appendleft([row, None, now])

    def _resume(self, now: float) -> None:
        """Back up: events read again are due a lag after the restart; nothing is due before the
        restart, and the commit order holds."""
        due = now
        for entry in self.log:
            if entry[1] is None:
                entry[1] = now + self.lag()
            entry[1] = max(entry[1], due)
            due = entry[1]
        self.last_due_s = max(self.last_due_s, due)

    def held_ids(self):
        return (entry[0].message.id for entry in self.log)
