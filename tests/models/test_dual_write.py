"""models/dual_write.py: the database write and the publication as two steps; a failure between
them loses the event (commit-then-publish) or leaves a phantom (publish-then-commit)."""

import simpy

from models.crashes import Crashes
from models.database import Database
from models.dual_write import DualWrite, DualWriteOptions


class Broker:
    """A target that logs ``(message id, time)`` of what it takes and answers from ``answers``."""

    def __init__(self, env, answers=None):
        self.env = env
        self.answers = iter(answers) if answers is not None else None
        self.took = []

    def put(self, message):
        if self.answers is not None and not next(self.answers):
            return False
        self.took.append((message.id, self.env.now))
        return True


def dual_write(fates, open_counts, level, commit_first, database_crashes=None, answers=None, **options):
    """Commit 1 s, publication 0.5 s."""
    env = simpy.Environment()
    db = Database(env, "db", 2, level(), level(), open_counts(), database_crashes)
    broker = Broker(env, answers)
    boundary = level()
    app = DualWrite(env, "app", db, broker, fates, boundary, open_counts(),
                    DualWriteOptions(lambda: 1.0, lambda: 0.5, commit_first=commit_first, **options))
    return env, app, broker, boundary


def requests_at(env, app, fates, times):
    answers = []
    for t in times:
        env.timeout(t).callbacks.append(lambda _, t=t: answers.append(app.put(fates.new_message(t))))
    return answers


def test_commit_then_publish_publishes_after_the_commit_and_answers_after_both(fates, observer, open_counts, level):
    env, app, broker, boundary = dual_write(fates, open_counts, level, commit_first=True)
    requests_at(env, app, fates, [0.0, 0.5])
    env.run()
    assert observer.fates("committed") == [(0, 1.0), (1, 1.5)] and broker.took == [(0, 1.5), (1, 2.0)]
    assert list(app.request_latencies_s) == [1.5, 1.5] and boundary.area == 3.0 and not app.requests
    assert observer.fates("lost") == observer.fates("rejected") == []  # the broker has them: its fate


def test_commit_then_publish_loses_the_event_when_the_handler_dies_between_the_writes(fates, observer, open_counts, level):
    env, app, broker, _ = dual_write(fates, open_counts, level, commit_first=True, crash_probability=0.5,
                                     crash_draw=iter([0.9, 0.1]).__next__)
    requests_at(env, app, fates, [0.0, 0.0])
    env.run()
    assert observer.fates("committed") == [(0, 1.0), (1, 1.0)]
    assert broker.took == [(0, 1.5)] and observer.fates("lost") == [(1, 1.0)]
    assert (app.counts["died_between_writes"], app.counts["never_published"], app.counts["answered_error"]) == (1, 1, 1)


def test_commit_then_publish_loses_the_event_when_the_process_dies_before_it_lands(fates, observer, open_counts, level):
    crashes = Crashes(iter([1.25, 1000.0]).__next__, lambda: 1.0)
    env, app, broker, _ = dual_write(fates, open_counts, level, commit_first=True, crashes=crashes)
    answers = requests_at(env, app, fates, [0.0, 2.0, 2.5])
    env.run(until=10)
    # committed at 1, publication due at 1.5; the process dies at 1.25 and is back at 2.25
    assert answers == [True, False, True]
    assert observer.fates("committed") == [(0, 1.0), (2, 3.5)] and observer.fates("lost") == [(0, 1.25)]
    assert broker.took == [(2, 4.0)] and observer.fates("not_committed") == [(1, 2.0)]


def test_commit_then_publish_publishes_nothing_when_the_commit_fails(fates, observer, open_counts, level):
    crashes = Crashes(iter([0.5, 1000.0]).__next__, lambda: 1.0)
    env, app, broker, _ = dual_write(fates, open_counts, level, commit_first=True, database_crashes=crashes)
    answers = requests_at(env, app, fates, [0.0, 1.0])
    env.run(until=10)
    # rolled back at 0.5; at 1.0 the database is down: refused at the door
    assert answers == [True, False] and broker.took == []
    assert observer.fates("not_committed") == [(0, 0.5), (1, 1.0)] and observer.fates("rejected") == [(0, 0.5)]
    assert observer.fates("lost") == []


def test_publish_then_commit_leaves_a_phantom_when_the_handler_dies_between_the_writes(fates, observer, open_counts, level):
    env, app, broker, _ = dual_write(fates, open_counts, level, commit_first=False, crash_probability=0.5,
                                     crash_draw=iter([0.9, 0.1]).__next__)
    requests_at(env, app, fates, [0.0, 0.0])
    env.run()
    # both land at 0.5; request 0 commits at 1.5, request 1 dies: its event is in the broker, its row nowhere
    assert broker.took == [(0, 0.5), (1, 0.5)]
    assert observer.fates("committed") == [(0, 1.5)] and observer.fates("not_committed") == [(1, 0.5)]
    assert observer.fates("rejected") == observer.fates("lost") == []  # the phantom's fate is the broker's
    assert list(app.request_latencies_s) == [1.5]


def test_publish_then_commit_leaves_a_phantom_when_the_process_dies_in_the_transaction(fates, observer, open_counts, level):
    crashes = Crashes(iter([1.0, 1000.0]).__next__, lambda: 1.0)
    env, app, broker, _ = dual_write(fates, open_counts, level, commit_first=False, crashes=crashes)
    requests_at(env, app, fates, [0.0])
    env.run(until=10)
    assert broker.took == [(0, 0.5)] and observer.fates("not_committed") == [(0, 1.0)]
    assert observer.fates("committed") == [] and app.database.counts["rollbacks"] == 1


def test_publish_then_commit_does_not_commit_when_the_broker_refuses(fates, observer, open_counts, level):
    env, app, broker, _ = dual_write(fates, open_counts, level, commit_first=False, answers=[False, False, True],
                                     publish_retries=1)
    requests_at(env, app, fates, [0.0])
    env.run()
    # refused at 0.5, retried at once and refused at 1.0: no commit, the user gets an error
    assert observer.fates("not_committed") == [(0, 1.0)] and observer.fates("rejected") == [(0, 1.0)]
    assert app.counts["publish_retries"] == 1 and app.counts["refused_publishes"] == 2


def test_a_publication_that_times_out_and_is_retried_lands_twice(fates, observer, open_counts, level):
    env = simpy.Environment()
    db = Database(env, "db", 2, level(), level(), open_counts())
    broker = Broker(env)
    app = DualWrite(env, "app", db, broker, fates, level(), open_counts(),
                    DualWriteOptions(lambda: 1.0, iter([2.0, 0.5]).__next__, publish_timeout_s=1.0, publish_retries=1))
    app.put(fates.new_message(0.0))
    env.run()
    # committed at 1; the first publication takes 2 s (times out at 2, lands at 3); the retry lands at 2.5
    assert broker.took == [(0, 2.5), (0, 3.0)]
    assert app.counts["publish_timeouts"] == 1 and list(app.request_latencies_s) == [2.5] and not app.requests
