"""models/notification.py: the user learns of a completion at the first poll after it (polls
every interval from the 202), or by a push its latency after it (never before the 202)."""

import pytest

from models.notification import Poll, Push
from tests.models.drive import constant
from tests.models.test_web_tier import Broker, Times, tier


@pytest.mark.parametrize("notification, notified", [(Poll(1.0), 3.0), (Push(constant(0.25)), 2.75)])
def test_the_user_learns_of_a_completion_at_the_next_poll_or_by_a_push(fates, observer, counts, level, notification, notified):
    broker = Broker()
    env, web, _, _ = tier(fates, counts, level, Times(0.0), publish_to=broker, notification=notification, signalled=True)
    env.run()
    env.timeout(2.5).callbacks.append(lambda _: web.put(broker.got[0]))  # a worker signals the job is complete
    env.run()
    assert observer.fates("processed") == [(0, 2.5)]
    assert list(web.completed_s) == [2.5] and list(web.notified_s) == [notified]


def test_polls_start_at_the_answer_and_a_push_never_beats_it():
    assert Poll(1.0).notified_s(completed_s=0.2, answered_s=0.1) == 1.1  # the first poll, one interval after the 202
    assert Push(constant(0.01)).notified_s(completed_s=0.05, answered_s=0.3) == 0.3
