"""models/fates.py: an attempt's fate goes to its client, any other message's to the observer."""

import math

from models.clients import Attempt, Request


class FakeClient:
    def __init__(self):
        self.told = []

    def attempt_processed(self, attempt, now):
        self.told.append(("processed", attempt.number, now))

    def attempt_failed(self, attempt, now, outcome):
        self.told.append((outcome, attempt.number, now))

    def attempt_shed(self, attempt, now):
        self.told.append(("shed", attempt.number, now))

    def attempt_suppressed(self, attempt, now):
        self.told.append(("suppressed", attempt.number, now))


def attempt_of(fates, client, number, now):
    message = fates.new_message(now)
    return Attempt(Request(message.id, now, client), number, now, math.inf)


def test_new_messages_get_the_observers_ids_in_order(fates, observer):
    messages = [fates.new_message(t) for t in (0.0, 1.5, 2.0)]
    assert [(m.id, m.created_s) for m in messages] == [(0, 0.0), (1, 1.5), (2, 2.0)]
    assert observer.created_s == [0.0, 1.5, 2.0]


def test_the_fates_of_plain_messages_reach_the_observer(fates, observer):
    a, b, c, d, e = (fates.new_message(0.0) for _ in range(5))
    fates.admitted(a, 0.5)
    fates.processed(a, 1.0)
    fates.lost(b, 2.0)
    fates.dead_lettered(c, 3.0)
    fates.rejected(d, 4.0, admitted=False)
    fates.suppressed(a, 5.0)
    fates.shed(e, 6.0)  # a plain message has no deadline: nobody is told
    fates.committed(e, 7.0)
    assert observer.log == [
        ("admitted", 0, 0.5), ("processed", 0, 1.0), ("lost", 1, 2.0), ("dead_lettered", 2, 3.0),
        ("rejected", 3, 4.0), ("suppressed", 0, 5.0), ("committed", 4, 7.0),
    ]
    assert [fates.settled(m) for m in (a, b, c, d, e)] == [True, True, True, True, False]


def test_an_attempts_fate_reaches_its_client_and_not_the_observer(fates, observer):
    client = FakeClient()
    first, second, third, fourth, fifth = (attempt_of(fates, client, n, 0.0) for n in range(1, 6))
    fates.processed(first, 1.0)
    fates.lost(second, 2.0)
    fates.dead_lettered(third, 3.0)
    fates.rejected(fourth, 4.0, admitted=True)
    fates.shed(fifth, 5.0)
    assert client.told == [("processed", 1, 1.0), ("lost", 2, 2.0), ("dead_lettered", 3, 3.0), ("rejected", 4, 4.0),
                           ("shed", 5, 5.0)]
    assert observer.log == []


def test_a_suppressed_attempt_is_flagged_and_answered(fates, observer):
    client = FakeClient()
    attempt = attempt_of(fates, client, 2, 0.0)
    fates.suppressed(attempt, 3.0)
    assert observer.log == [("suppressed", attempt.id, 3.0)]
    assert client.told == [("suppressed", 2, 3.0)]
