"""models/notification.py: the user learns of a completion from the first status poll after it
(a poll every interval after each answer, each a request holding a handler for its lookup), or by
a push its latency after it (never before the 202)."""

import pytest

from models.notification import Poll, Push
from tests.models.drive import constant
from tests.models.test_web_tier import Broker, Times, tier


@pytest.mark.parametrize("notification, notified", [(Poll(1.0), 3.0), (Push(constant(0.25)), 2.75)])
def test_the_user_learns_of_a_completion_at_the_next_poll_or_by_a_push(fates, observer, counts, level, notification, notified):
    broker = Broker()
    env, web, _, _ = tier(fates, counts, level, Times(0.0), publish_to=broker, notification=notification, signalled=True)
    env.timeout(2.5).callbacks.append(lambda _: web.put(broker.got[0]))  # a worker signals the job is complete
    env.run(until=10)
    assert observer.fates("processed") == [(0, 2.5)]
    assert list(web.completed_s) == [2.5] and list(web.notified_s) == [notified]


def test_a_push_never_beats_the_answer():
    assert Push(constant(0.01)).notified_s(completed_s=0.05, answered_s=0.3) == 0.3


def test_a_poll_is_a_request_that_crosses_the_links_and_holds_a_handler_for_its_lookup(fates, counts, level):
    broker = Broker()
    env, web, busy, queue = tier(fates, counts, level, Times(0.0, 1.3), handlers=1, publish_to=broker, signalled=True,
                                 notification=Poll(1.0, constant(0.25)), request=0.1, respond=0.2, work=constant(0.05))
    env.timeout(1.0).callbacks.append(lambda _: web.put(broker.got[0]))
    env.run(until=10)
    # request 0: handler 0.1–0.15, the user has the 202 at 0.35; its first poll leaves at 1.35, reaches the tier at 1.45,
    # where request 1 (arrived 1.3, at the tier 1.4) holds the handler until 1.45; the poll holds it 1.45–1.70, finds the
    # job done (signalled at 1.0), and its answer reaches the user at 1.90
    assert list(web.completed_s) == [pytest.approx(1.0)] and list(web.notified_s) == [pytest.approx(1.9)]
    # request 1 (handler 1.40–1.45, the 202 at 1.65) is never signalled: its client polls on, one lookup every
    # 1 + 0.1 + 0.25 + 0.2 = 1.55 s from 2.75: 5 by t = 10
    assert web.counts["polls"] == 1 + 5
    assert busy.area == pytest.approx(2 * 0.05 + 6 * 0.25)
