"""A relational database as an application and an outbox relay see it: a pool of connections,
transactions that hold a connection while they run, and crashes that roll back what was open."""

from __future__ import annotations

from collections import deque

from .crashes import Crashes, crash_loop


class Connection:
    """One connection lent by the pool to a client for one transaction.

    ``alive`` turns false when the database crashes while the connection is lent: the transaction
    on it is rolled back, and the client learns it at its next statement (``on_lost``, if the
    client set it, is called at once — an application thread blocked on its COMMIT sees the
    socket close immediately)."""

    __slots__ = ("database", "epoch", "purpose", "acquired_s", "on_lost")

    def __init__(self, database, purpose: str, acquired_s: float):
        self.database = database
        self.epoch = database.epoch
        self.purpose = purpose
        self.acquired_s = acquired_s
        self.on_lost = None

    @property
    def alive(self) -> bool:
        return self.database.up and self.epoch == self.database.epoch


class Waiter:
    """A client waiting for a connection; ``on_ready(connection)`` is called when one is lent,
    ``on_ready(None)`` if the database crashes first."""

    __slots__ = ("purpose", "since_s", "on_ready", "settled")

    def __init__(self, purpose: str, since_s: float, on_ready):
        self.purpose = purpose
        self.since_s = since_s
        self.on_ready = on_ready
        self.settled = False  # lent a connection, cancelled, or dropped by a crash


class Database:
    """A database server behind a client-side connection pool of ``connections`` (HikariCP's
    ``maximumPoolSize``, pgbouncer's ``default_pool_size``).

    A transaction first borrows a connection — at once if one is free, otherwise in a FIFO queue
    of waiting clients — holds it for as long as it runs (statements and COMMIT), and gives it
    back (:meth:`release`). While the database is down, :meth:`connect` is refused (connection
    refused: the client fails fast).

    ``crashes`` (:class:`~models.crashes.Crashes`): the server crashes, every open transaction is
    rolled back (its client learns it through ``Connection.on_lost`` or at its next statement),
    every waiting client is told there is no connection, and after the restart time the pool
    fills again. Committed data is durable (write-ahead log): a crash loses nothing committed.

    Simplifications: a transaction's duration is drawn by its client (one number for the
    statements and the commit); the pool never times out a waiting client (HikariCP's
    ``connectionTimeout`` is left out: a saturated pool queues); lock waits between transactions
    are not modelled (the outbox relays' row locks are the outbox table's business); listeners
    registered with :meth:`on_crash` hear of each crash.

    Boundaries: ``connections`` counts connections lent (its time average over the pool size is
    the pool's utilisation; its sojourn is how long a transaction holds one), ``waiting`` counts
    clients waiting for one (only those that find the pool empty enter it;
    ``immediate_in_window`` counts the others, so the waits of all can be told, zeros included).
    """

    def __init__(self, env, name, connections, connections_boundary, waiting_boundary, counts, crashes: Crashes | None = None):
        self.env = env
        self.name = name
        self.connections = connections
        self.lent = connections_boundary
        self.waiting_boundary = waiting_boundary
        self.counts = counts
        self.free = connections
        self.immediate_in_window = 0
        self.waiting: deque[Waiter] = deque()
        self.in_use: dict[Connection, None] = {}  # in order of lending: a crash takes them back in that order
        self.up = True
        self.epoch = 0
        self.crashes = crashes
        self._crash_listeners = []
        self._back = env.event()
        self._back.succeed()
        if crashes is not None:
            env.process(crash_loop(env, crashes, self._crash, self._restart))

    # --- clients --------------------------------------------------------------------------------

    def connect(self, purpose: str, on_ready) -> Waiter | None:
        """Ask for a connection for a transaction of kind ``purpose`` (``request``, ``relay``);
        ``on_ready`` gets it (possibly before this returns). None: the database is down."""
        now = self.env.now
        if not self.up:
            self.counts.add("refused_connections")
            return None
        waiter = Waiter(purpose, now, on_ready)
        if self.free > 0:
            self.free -= 1
            waiter.settled = True
            if self.counts.open:
                self.immediate_in_window += 1
            self._lend(waiter, now)
        else:
            self.waiting_boundary.enter(now)
            self.waiting.append(waiter)
        return waiter

    def cancel(self, waiter: Waiter) -> None:
        """The client gave up waiting (it died): it leaves the queue."""
        if not waiter.settled:
            waiter.settled = True
            self.waiting_boundary.leave(self.env.now, waiter.since_s)

    def release(self, connection: Connection, committed: bool = True) -> bool:
        """End the transaction on ``connection`` (COMMIT, or ROLLBACK when ``committed`` is false)
        and give the connection back. False if the connection died in a crash: nothing of the
        transaction happened."""
        if not connection.alive:
            return False
        now = self.env.now
        self._return(connection, now)
        if not committed:
            self.counts.add("rollbacks")
        self._lend_next(now)
        return True

    def abandon(self, connection: Connection) -> None:
        """The client died holding ``connection``: the server sees the socket close and rolls
        the transaction back."""
        self.release(connection, committed=False)

    def on_crash(self, listener) -> None:
        """Call ``listener()`` each time the database crashes."""
        self._crash_listeners.append(listener)

    def restarted(self):
        """An event that fires when the database is next up (already fired if it is up)."""
        return self._back

    # --- inside ---------------------------------------------------------------------------------

    def _lend(self, waiter: Waiter, now: float) -> None:
        connection = Connection(self, waiter.purpose, now)
        self.in_use[connection] = None
        self.lent.enter(now)
        if waiter.purpose != "request":
            self.counts.add(f"transactions_{waiter.purpose}")
        waiter.on_ready(connection)

    def _lend_next(self, now: float) -> None:
        waiting = self.waiting
        while waiting:
            waiter = waiting.popleft()
            if not waiter.settled:
                waiter.settled = True
                self.waiting_boundary.leave(now, waiter.since_s)
                self._lend(waiter, now)
                return
        self.free += 1

    def _restart(self) -> None:
        """The server is back: every connection is free."""
        self.up = True
        self.free = self.connections
        self._back.succeed()

    def _return(self, connection: Connection, now: float) -> None:
        del self.in_use[connection]
        self.lent.leave(now, connection.acquired_s)
        if connection.purpose != "request":
            self.counts.add(f"held_s_{connection.purpose}", now - connection.acquired_s)

    def _crash(self, down_s: float) -> None:
        """The server dies for ``down_s``: open transactions roll back, waiting clients are dropped."""
        now = self.env.now
        self.up = False
        self._back = self.env.event()
        self.counts.add("crashes")
        lost = list(self.in_use)
        for connection in lost:
            self._return(connection, now)
            self.counts.add("rolled_back")
        self.epoch += 1
        dropped = [waiter for waiter in self.waiting if not waiter.settled]
        self.waiting = deque()
        for waiter in dropped:
            waiter.settled = True
            self.waiting_boundary.leave(now, waiter.since_s)
        for listener in self._crash_listeners:
            listener()
        for connection in lost:
            if connection.on_lost is not None:
                connection.on_lost()
        for waiter in dropped:
            waiter.on_ready(None)

    def metrics(self, window_s: float) -> dict[str, float]:
        """Connection utilisation and transactions per second, over the window."""
        counts = self.counts
        lent = self.lent
        held = lent.sojourn_sum  # connection-seconds of the transactions begun in the window
        return {
            "connections": float(self.connections),
            "utilization": lent.area / (self.connections * window_s),
            "connections_in_use_mean": lent.area / window_s,
            "waiting_mean": self.waiting_boundary.area / window_s,
            "transactions_per_s": lent.entries / window_s,
            "request_transactions_per_s": (lent.entries - counts["transactions_relay"]) / window_s,
            "relay_transactions_per_s": counts["transactions_relay"] / window_s,
            "relay_connection_share": min(1.0, counts["held_s_relay"] / held) if held else 0.0,
            "crashes": float(counts["crashes"]),
            "rolled_back": float(counts["rolled_back"]),
            "refused_connections": float(counts["refused_connections"]),
        }
