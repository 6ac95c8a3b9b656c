"""models/outbox.py: the business row and the event row commit in one transaction, or neither does."""

import simpy

from models.crashes import Crashes
from models.database import Database
from models.outbox import Outbox, OutboxTable


def outbox(fates, open_counts, level, connections=2, database_crashes=None, **options):
    env = simpy.Environment()
    lent = level()
    db = Database(env, "db", connections, lent, level(), open_counts(), database_crashes)
    table = OutboxTable(level())
    box = Outbox(env, "orders", db, table, lambda: 1.0, fates, open_counts(), 0.0, **options)
    return env, box, table, lent


def requests_at(env, box, fates, times):
    """A user's request at each of ``times``; returns what ``put`` answered, in order."""
    answers = []

    def send(t):
        answers.append(box.put(fates.new_message(t)))

    for t in times:
        env.timeout(t).callbacks.append(lambda _, t=t: send(t))
    return answers


def pending_ids(table):
    return [row.message.id for row in table.rows if not row.sent]


def test_the_business_row_and_the_event_row_commit_together_after_the_commit_time(fates, observer, open_counts, level):
    env, box, table, lent = outbox(fates, open_counts, level, connections=1)
    heard = []
    box.listeners.append(lambda row, now: heard.append((row.message.id, row.seq, now)))
    answers = requests_at(env, box, fates, [0.0, 0.0, 0.5])
    env.run(until=1.0)
    assert sorted(box.held_ids()) == [0, 1, 2] and table.pending == 0  # in progress: nothing written yet
    env.run()
    assert answers == [True, True, True]
    assert observer.fates("committed") == [(0, 1.0), (1, 2.0), (2, 3.0)]  # one connection: one at a time
    assert heard == [(0, 1, 1.0), (1, 2, 2.0), (2, 3, 3.0)]
    assert pending_ids(table) == [0, 1, 2] and [row.committed_s for row in table.rows] == [1.0, 2.0, 3.0]
    assert table.pending == 3 and table.boundary.integral(4.0) == 3.0 + 2.0 + 1.0  # pending from each commit
    assert list(box.request_latencies_s) == [1.0, 2.0, 2.5] and lent.area == 3.0


def test_a_handler_that_dies_inside_the_transaction_writes_neither_row(fates, observer, open_counts, level):
    env, box, table, lent = outbox(fates, open_counts, level, crash_probability=0.5, crash_draw=iter([0.9, 0.1]).__next__)
    requests_at(env, box, fates, [0.0, 0.0])
    env.run()
    assert observer.fates("committed") == [(0, 1.0)]
    assert observer.fates("not_committed") == [(1, 1.0)] and observer.fates("rejected") == [(1, 1.0)]
    assert pending_ids(table) == [0] and list(box.held_ids()) == [0]
    assert box.counts["died_in_transaction"] == 1 and box.database.counts["rollbacks"] == 1 and lent.n == 0


def test_a_database_crash_rolls_the_transaction_back_and_refuses_requests_until_restarted(fates, observer, open_counts, level):
    crashes = Crashes(iter([0.5, 1000.0]).__next__, lambda: 1.0)
    env, box, table, _ = outbox(fates, open_counts, level, database_crashes=crashes)
    answers = requests_at(env, box, fates, [0.0, 1.0, 2.0])
    env.run(until=5.0)
    # request 0 is rolled back at 0.5; request 1 finds the database down (0.5..1.5); request 2 commits at 3
    assert answers == [True, False, True]
    assert observer.fates("not_committed") == [(0, 0.5), (1, 1.0)]
    assert observer.fates("rejected") == [(0, 0.5)]  # a refused put is the producer's to reject
    assert observer.fates("committed") == [(2, 3.0)] and pending_ids(table) == [2]
    assert (box.counts["rolled_back"], box.counts["refused"]) == (1, 1)


def test_an_application_crash_fails_every_transaction_in_progress_and_refuses_while_down(fates, observer, open_counts, level):
    crashes = Crashes(iter([0.5, 1000.0]).__next__, lambda: 1.0)
    env, box, table, lent = outbox(fates, open_counts, level, connections=1, crashes=crashes)
    answers = requests_at(env, box, fates, [0.0, 0.0, 1.0, 2.0])
    env.run(until=5.0)
    # at 0.5 request 0 holds the connection and request 1 waits for it: both fail, neither writes;
    # down 0.5..1.5
    assert answers == [True, True, False, True]
    assert observer.fates("rejected") == [(0, 0.5), (1, 0.5)]  # in order of arrival
    assert box.database.counts["rollbacks"] == 1  # the waiter died too: it was not lent the freed connection
    assert observer.fates("committed") == [(3, 3.0)] and pending_ids(table) == [3]
    assert box.database.waiting_boundary.area == 0.5 and box.database.free == 1
    assert lent.area == 1.5 and not box.in_progress


def test_the_table_hands_out_the_oldest_unsent_rows_and_skips_those_another_relay_locked(fates, level):
    table = OutboxTable(level())
    rows = [table.insert(fates.new_message(0.0), t) for t in (1.0, 2.0, 3.0, 4.0)]
    a, b = object(), object()
    assert table.select(2, a, skip_locked=True) == rows[:2]
    assert table.select(3, b, skip_locked=True) == rows[2:]  # the first two are a's
    assert table.select(2, b, skip_locked=False) == rows[:2]  # without SKIP LOCKED locks are not looked at
    assert table.mark_sent([rows[1], rows[1]], 5.0) == 1
    table.unlock(rows, a)
    assert table.select(3, a, skip_locked=True) == [rows[0]]  # b still holds rows 2 and 3; row 1 is sent
    assert table.pending == 3 and table.boundary.n == 3 and pending_ids(table) == [0, 2, 3]
