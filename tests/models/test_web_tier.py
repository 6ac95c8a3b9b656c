"""models/web_tier.py: a handler is held for the whole call; a synchronous answer comes after the
work, an asynchronous one after the publication alone; a full backlog or a refused publication
is a 503; a completion signal is timed for the user's notification."""

import pytest
import simpy

from models.delay import DelayStation
from models.link import Link
from models.web_tier import WebOptions, WebTier
from tests.models.drive import constant


class Times:
    """Arrivals at set times."""

    def __init__(self, *times):
        self.times = list(times)

    def next_arrival(self, now):
        return self.times.pop(0) if self.times else None


class Broker:
    def __init__(self, accepts=True):
        self.got, self.accepts = [], accepts

    def put(self, message):
        self.got.append(message)
        return self.accepts


def tier(fates, counts, level, arrivals, handlers=1, **options):
    env = simpy.Environment()
    links = {hop: options.pop(hop) for hop in ("request", "respond", "publish") if hop in options}
    options.update({hop: Link(env, hop, constant(latency), level()) for hop, latency in links.items()})
    busy, queue = level(), level()
    web = WebTier(env, "api", arrivals, handlers, fates, busy, queue, counts(), WebOptions(**options))
    return env, web, busy, queue


def test_a_synchronous_handler_is_held_for_the_whole_call(fates, observer, counts, level):
    env, web, busy, queue = tier(fates, counts, level, Times(0.0, 0.5), work=constant(1.0), request=0.1, respond=0.2)
    web.options.calls = [DelayStation(web.env, "db", constant(0.3), level(), fates)]
    web.env.run()
    # request 0: link 0.1, handler 0.1–1.4 (work 1 + call 0.3), answer at 1.6; request 1 waits from 0.6 to 1.4
    assert observer.fates("processed") == [(0, pytest.approx(1.4)), (1, pytest.approx(2.7))]
    assert list(web.response_s) == [pytest.approx(1.6), pytest.approx(2.4)]
    assert list(web.perceived_s) == list(web.response_s) == list(web.notified_s)
    assert list(web.completed_s) == [pytest.approx(1.4), pytest.approx(2.2)]
    assert busy.area == pytest.approx(2.6) and queue.area == pytest.approx(0.8)
    assert not web.holding


def test_the_asynchronous_answer_is_the_publication_alone(fates, observer, counts, level):
    broker = Broker()
    env, web, busy, _ = tier(fates, counts, level, Times(0.0, 0.0, 0.0), handlers=3, publish=0.004, publish_to=broker, client_step=constant(0.01))
    env.run()
    assert list(web.response_s) == [pytest.approx(0.004)] * 3
    assert list(web.perceived_s) == [pytest.approx(0.014)] * 3
    assert [m.id for m in broker.got] == [0, 1, 2] and observer.fates("processed") == []
    assert web.counts["accepted"] == 3 and not web.holding  # the broker holds them now


def test_a_refused_publication_is_a_503_and_a_full_backlog_too(fates, observer, counts, level):
    env, web, _, _ = tier(fates, counts, level, Times(0.0), publish_to=Broker(accepts=False))
    env.run()
    assert observer.fates("rejected") == [(0, 0.0)] and list(web.response_s) == []
    env, web, _, _ = tier(fates, counts, level, Times(0.0, 0.0, 0.0), work=constant(1.0), backlog=1)
    env.run()
    assert web.counts["refused"] == 1 and web.counts["requests"] == 3
    assert sorted(t for _, t in observer.fates("processed"))[-2:] == [1.0, 2.0]


def test_the_tier_holds_a_request_until_it_is_processed_or_published(fates, counts, level):
    env, web, _, _ = tier(fates, counts, level, Times(0.0, 0.0), work=constant(1.0))
    env.run(until=0.5)
    assert sorted(web.held_ids()) == [0, 1]
    env.run(until=1.5)
    assert sorted(web.held_ids()) == [1]


def test_only_the_first_signal_of_a_job_the_tier_published_counts_as_its_completion(fates, observer, counts, level):
    broker = Broker()
    env, web, _, _ = tier(fates, counts, level, Times(0.0), publish_to=broker, signalled=True)
    env.run()
    foreign = fates.new_message(0.5)  # a message of another source reaching the completion signal
    env.timeout(1.0).callbacks.append(lambda _: web.put(foreign))
    env.timeout(2.0).callbacks.append(lambda _: web.put(broker.got[0]))
    env.timeout(3.0).callbacks.append(lambda _: web.put(broker.got[0]))  # redelivered and signalled again
    env.run()
    assert observer.fates("processed") == [(foreign.id, 1.0), (0, 2.0), (0, 3.0)]  # each reaches the end of its path
    assert list(web.completed_s) == [2.0] and list(web.notified_s) == [2.0] and not web.published
