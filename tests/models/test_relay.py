"""models/relay.py: the polling relay (poll, publish a batch, mark it sent) and log tailing (publish
each commit a lag later), both at least once: a crash before their progress is durable publishes
again."""

import simpy

from models.crashes import Crashes
from models.database import Database
from models.outbox import OutboxTable
from models.relay import CdcRelay, PollingRelay, RelayStats


class Broker:
    """A publication target that logs ``(message id, time)`` of what it takes and refuses the
    publications at the times in ``refuse_at``."""

    def __init__(self, env, refuse_at=()):
        self.env = env
        self.refuse_at = set(refuse_at)
        self.took = []

    def put(self, message):
        if self.env.now in self.refuse_at:
            return False
        self.took.append((message.id, self.env.now))
        return True


def outbox_table(fates, open_counts, level, rows, connections=2, database_crashes=None):
    """A database and an outbox table holding ``rows`` rows committed at 0; shared relay stats."""
    env = simpy.Environment()
    db = Database(env, "db", connections, level(), level(), open_counts(), database_crashes)
    table = OutboxTable(level())
    for _ in range(rows):
        table.insert(fates.new_message(0.0), 0.0)
    return env, db, table, RelayStats(level(), open_counts(), 0.0), Broker(env)


def polling(env, table, db, target, stats, **options):
    times = dict(poll_interval_s=1.0, batch_size=2, query_time=lambda: 0.125, publish_time=lambda: 0.25,
                 mark_time=lambda: 0.125, phase_s=0.5)
    return PollingRelay(env, "relay", table, db, target, stats, **{**times, **options})


def test_a_polling_relay_publishes_a_batch_each_poll_and_marks_it_sent(fates, open_counts, level):
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 3)
    polling(env, table, db, broker, stats)
    env.run(until=3.0)
    # poll at 0.5: query until 0.625, publish rows 0 and 1, mark at 1.25; poll at 1.5: row 2, marked
    # at 2.0; poll at 2.5 finds nothing
    assert broker.took == [(0, 0.875), (1, 1.125), (2, 1.875)]
    assert table.pending == 0 and table.boundary.area == 2 * 1.25 + 2.0
    assert stats.boundary.area == 2 * (1.25 - 0.625) + (2.0 - 1.625)  # rows in the relay's hands
    assert list(stats.publish_delays_s) == [0.875, 1.125, 1.875]
    assert {k: stats.counts[k] for k in ("polls", "empty_polls", "marks", "published")} == {
        "polls": 3, "empty_polls": 1, "marks": 2, "published": 3}
    assert db.counts["transactions_relay"] == 3 and db.counts["held_s_relay"] == 0.75 + 0.5 + 0.125


def test_a_refused_publication_ends_the_batch_and_its_row_waits_for_the_next_poll(fates, open_counts, level):
    env, db, table, stats, _ = outbox_table(fates, open_counts, level, 2)
    broker = Broker(env, refuse_at=[0.875])
    polling(env, table, db, broker, stats)
    env.run(until=1.5)
    assert broker.took == [] and table.pending == 2 and stats.counts["marks"] == 1  # the refusal at 0.875 ended it
    env.run(until=3.0)
    assert broker.took == [(0, 1.875), (1, 2.125)]
    assert stats.counts["refused_publishes"] == 1 and table.pending == 0


def test_a_cycle_that_overruns_its_interval_makes_the_next_poll_start_at_once(fates, open_counts, level):
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 3)
    polling(env, table, db, broker, stats, poll_interval_s=0.25)
    env.run(until=2.0)
    # the first cycle runs 0.5..1.25, past the polls due at 0.75 and 1.0: the next starts at 1.25
    assert broker.took == [(0, 0.875), (1, 1.125), (2, 1.625)]


def test_a_database_crash_during_the_publications_fails_the_mark_and_the_rows_are_published_again(fates, open_counts, level):
    crashes = Crashes(iter([1.0, 1000.0]).__next__, lambda: 0.125)
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 2, database_crashes=crashes)
    polling(env, table, db, broker, stats)
    env.run(until=3.0)
    # the crash at 1.0 does not stop the publication under way; the relay learns it at its mark (1.25)
    assert broker.took == [(0, 0.875), (1, 1.125), (0, 1.875), (1, 2.125)]
    assert stats.counts["failed_marks"] == 1 and stats.counts["marks"] == 1 and stats.counts["republished"] == 2
    assert table.pending == 0 and stats.boundary.n == 0 and not db.in_use


def test_with_skip_locked_two_relays_share_the_rows_out(fates, open_counts, level):
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 2)
    for _ in range(2):
        polling(env, table, db, broker, stats, batch_size=1)
    env.run(until=1.5)
    assert broker.took == [(0, 0.875), (1, 0.875)]
    assert stats.counts["published"] == 2 and stats.counts["republished"] == 0 and table.pending == 0


def test_without_skip_locked_two_relays_publish_the_same_rows(fates, open_counts, level):
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 2)
    for _ in range(2):
        polling(env, table, db, broker, stats, skip_locked=False)
    env.run(until=1.5)
    assert broker.took == [(0, 0.875), (0, 0.875), (1, 1.125), (1, 1.125)]
    assert stats.counts["published"] == 4 and stats.counts["republished"] == 2
    assert table.pending == 0 and table.boundary.n == 0  # the second mark finds the rows sent


def test_a_crash_between_publishing_and_marking_publishes_the_batch_again_after_the_restart(fates, open_counts, level):
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 2)
    polling(env, table, db, broker, stats, crash_before_mark=0.5, crash_draw=iter([0.1, 0.9]).__next__,
            crash_before_mark_restart=lambda: 0.25)
    env.run(until=3.0)
    # published at 0.875 and 1.125, dies, back at 1.375 and polls at once: again at 1.75 and 2.0,
    # marked at 2.125; the next poll (2.375) finds nothing
    assert broker.took == [(0, 0.875), (1, 1.125), (0, 1.75), (1, 2.0)]
    assert stats.counts["republished"] == 2 and stats.counts["crashes"] == 1 and stats.counts["marks"] == 1
    assert db.counts["rollbacks"] == 1 and table.pending == 0 and not db.in_use
    assert stats.boundary.n == 0 and list(stats.publish_delays_s) == [0.875, 1.125]


def test_a_relay_process_crash_abandons_the_cycle_and_polls_at_once_after_its_restart(fates, open_counts, level):
    crashes = Crashes(iter([1.0, 1000.0]).__next__, lambda: 0.5)
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 2)
    polling(env, table, db, broker, stats, crashes=crashes)
    env.run(until=3.0)
    # dies at 1.0 after publishing row 0 (0.875), before row 1; back at 1.5: polls both again
    assert broker.took == [(0, 0.875), (0, 1.875), (1, 2.125)]
    assert stats.counts["crashes"] == 1 and stats.counts["republished"] == 1 and table.pending == 0
    assert db.counts["rollbacks"] == 1 and stats.boundary.n == 0


def commit_at(env, fates, table, relay, times):
    """The outbox's commits, each reaching the relay as it happens."""

    def commit(t):
        relay.on_commit(table.insert(fates.new_message(t), t), t)

    for t in times:
        env.timeout(t).callbacks.append(lambda _, t=t: commit(t))


def test_log_tailing_publishes_each_commit_a_lag_later_and_never_out_of_order(fates, open_counts, level):
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 0)
    relay = CdcRelay(env, "cdc", table, db, broker, stats, iter([0.5, 2.0, 0.25, 0.5]).__next__)
    commit_at(env, fates, table, relay, [1.0, 2.0, 2.5, 5.0])
    env.run(until=10)
    # due 1.5, 4.0, max(2.75, 4.0) = 4.0 (it may not overtake), 5.5
    assert broker.took == [(0, 1.5), (1, 4.0), (2, 4.0), (3, 5.5)]
    assert table.pending == 0 and stats.boundary.n == 0 and stats.boundary.area == 0.5 + 2.0 + 1.5 + 0.5
    assert db.counts["transactions_relay"] == 0  # no connection, no query


def test_log_tailing_retries_a_refused_publication_holding_back_those_behind_it(fates, open_counts, level):
    env, db, table, stats, _ = outbox_table(fates, open_counts, level, 0)
    broker = Broker(env, refuse_at=[1.5])
    relay = CdcRelay(env, "cdc", table, db, broker, stats, lambda: 0.5, retry_interval_s=0.25)
    commit_at(env, fates, table, relay, [1.0, 1.25])
    env.run(until=5)
    assert broker.took == [(0, 1.75), (1, 1.75)] and stats.counts["refused_publishes"] == 1


def test_log_tailing_republishes_after_a_crash_what_it_published_since_its_last_offset_flush(fates, open_counts, level):
    crashes = Crashes(iter([12.0, 1000.0]).__next__, lambda: 1.0)
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 0)
    relay = CdcRelay(env, "cdc", table, db, broker, stats, lambda: 0.5, offset_flush_interval_s=10.0, crashes=crashes)
    commit_at(env, fates, table, relay, [1.0, 9.0, 11.0])
    env.run(until=20)
    # offsets flushed at 0, 10, 20: the crash at 12 rereads from 10 (row 2); back at 13, due 13.5
    assert broker.took == [(0, 1.5), (1, 9.5), (2, 11.5), (2, 13.5)]
    assert stats.counts["crashes"] == 1 and stats.counts["republished"] == 1 and stats.counts["published"] == 4
    assert list(relay.held_ids()) == [] and stats.boundary.n == 0


def test_log_tailing_waits_while_the_database_is_down_and_resumes_where_it_was(fates, open_counts, level):
    crashes = Crashes(iter([1.25, 1000.0]).__next__, lambda: 2.0)
    env, db, table, stats, broker = outbox_table(fates, open_counts, level, 0, database_crashes=crashes)
    relay = CdcRelay(env, "cdc", table, db, broker, stats, lambda: 0.5)
    commit_at(env, fates, table, relay, [1.0])
    env.run(until=10)
    assert broker.took == [(0, 3.25)]  # due 1.5, database down 1.25..3.25
