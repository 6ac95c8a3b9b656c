"""models/database.py: a pool of connections lent for a transaction's commit time; crashes that
roll back what was open and refuse connections while the server restarts."""

import simpy

from models.crashes import Crashes
from models.database import Database


def database(open_counts, level, connections, crashes=None):
    env = simpy.Environment()
    lent, waiting = level(), level()
    return env, Database(env, "db", connections, lent, waiting, open_counts(), crashes), lent, waiting


def transaction(env, db, name, start_s, hold_s, log):
    """A client that asks for a connection at ``start_s``, holds it ``hold_s`` and commits,
    logging ``(name, what, time)`` of each step."""
    yield env.timeout(start_s)
    ready = env.event()
    if db.connect("request", ready.succeed) is None:
        log.append((name, "refused", env.now))
        return
    connection = yield ready
    if connection is None:
        log.append((name, "dropped", env.now))
        return
    log.append((name, "connected", env.now))
    connection.on_lost = lambda: log.append((name, "lost", env.now))
    yield env.timeout(hold_s)
    log.append((name, "committed" if db.release(connection) else "rolled back", env.now))


def test_a_transaction_waits_for_a_free_connection_and_holds_it_for_its_commit_time(open_counts, level):
    env, db, lent, waiting = database(open_counts, level, 2)
    log = []
    for name in "abc":
        env.process(transaction(env, db, name, 0.0, 1.0, log))
    env.run()
    assert log == [("a", "connected", 0.0), ("b", "connected", 0.0), ("a", "committed", 1.0), ("b", "committed", 1.0),
                   ("c", "connected", 1.0), ("c", "committed", 2.0)]
    assert lent.area == 3.0 and waiting.area == 1.0  # c waited 0..1
    assert db.immediate_in_window == 2 and db.free == 2 and not db.in_use


def test_waiting_clients_are_served_first_come_first_served_and_a_cancelled_one_leaves_the_queue(open_counts, level):
    env, db, _, waiting = database(open_counts, level, 1)
    got = []
    held = []
    db.connect("request", held.append)
    first = db.connect("request", lambda c: got.append("first"))
    db.connect("relay", lambda c: got.append(("second", c.purpose)))
    db.cancel(first)
    assert waiting.n == 1
    db.release(held[0])
    assert got == [("second", "relay")] and db.counts["transactions_relay"] == 1 and db.free == 0


def test_a_rollback_gives_the_connection_back_and_is_counted(open_counts, level):
    env, db, lent, _ = database(open_counts, level, 1)
    held = []
    db.connect("request", held.append)
    assert db.release(held[0], committed=False)
    assert db.counts["rollbacks"] == 1 and db.free == 1 and lent.n == 0


def test_a_crash_rolls_back_open_transactions_drops_waiters_and_refuses_until_restarted(open_counts, level):
    crashes = Crashes(iter([1.5, 1000.0]).__next__, iter([2.0]).__next__)
    env, db, lent, waiting = database(open_counts, level, 1, crashes)
    log = []
    heard = []
    db.on_crash(lambda: heard.append(env.now))
    env.process(transaction(env, db, "a", 1.0, 1.0, log))  # holds the connection 1..2
    env.process(transaction(env, db, "b", 1.0, 1.0, log))  # waits behind a
    env.process(transaction(env, db, "c", 2.0, 1.0, log))  # asks while the database is down
    env.process(transaction(env, db, "d", 4.0, 1.0, log))  # asks once it is back (at 3.5)
    restarts = []
    env.timeout(2.5).callbacks.append(lambda _: db.restarted().callbacks.append(lambda _: restarts.append(env.now)))
    env.run(until=10)
    assert log == [("a", "connected", 1.0), ("a", "lost", 1.5), ("b", "dropped", 1.5), ("c", "refused", 2.0),
                   ("a", "rolled back", 2.0), ("d", "connected", 4.0), ("d", "committed", 5.0)]
    assert heard == [1.5] and restarts == [3.5]
    assert (db.counts["crashes"], db.counts["rolled_back"], db.counts["refused_connections"]) == (1, 1, 1)
    assert lent.area == 1.5 and waiting.area == 0.5 and db.free == 1  # a held 1..1.5 and d 4..5
