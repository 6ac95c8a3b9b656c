"""Synchronous and asynchronous web tiers, and delay stations, against derived values.

- a synchronous tier is an M/G/c queue on its handler pool whose service time is the whole call
  (here exponential: M/M/c, Erlang C);
- an asynchronous tier answers after the publication alone; the job's completion is the broker's
  wait plus the worker's service (an M/M/c on the worker pool);
- a delay station holds λ·E[delay] messages on average, and each stay is the delay itself;
- the share of missed deadlines of an M/M/1 tier is exp(−(μ − λ)·d);
- Little's law and conservation hold on every new boundary (links, stations, handlers).
"""

import math

import pytest

from sim import run, scenario_from_dict
from sim.analytic import mmc
from sim.problems import ScenarioError
from sim.sketch import RELATIVE_ACCURACY


def web_scenario(web, duration=4000, warmup=200, **sections):
    return scenario_from_dict({"name": "web", "seed": 3, "duration": duration, "warmup": warmup, "producers": [],
                               "web": [{"name": "api", **web}], **sections})


@pytest.mark.slow
def test_the_synchronous_tier_is_an_mmc_queue_with_the_whole_call_as_service():
    # 4 handlers, 15 requests/s, each holding its handler 100 ms of work + a 100 ms downstream call
    # (both exponential would not be exponential together: so one exponential call of mean 200 ms)
    scenario = web_scenario({"arrivals": {"process": "poisson", "rate": 15}, "handlers": 4, "calls": ["db"]},
                            delays=[{"name": "db", "delay": {"dist": "exponential", "mean": "200ms"}}])
    result = run(scenario, replications=8, jobs=1)
    theory = mmc(15, 5, 4)
    response = result.estimate("web.api.response_s.mean")
    assert response.contains(theory.sojourn_s), (theory.sojourn_s, response)
    assert result.estimate("web.api.handlers.wait_s.mean").contains(theory.wait_s)
    assert result.estimate("web.api.handlers.utilization").contains(0.75)
    assert result.estimate("system.latency_s.mean").contains(theory.sojourn_s)  # completion: the work is done when answered
    assert result.ok


@pytest.mark.slow
def test_the_asynchronous_answer_is_the_publication_and_completion_is_broker_wait_plus_service():
    scenario = web_scenario(
        {"arrivals": {"process": "poisson", "rate": 15}, "handlers": 50, "links": {"publish": "3ms"}, "publishes_to": "jobs"},
        brokers=[{"name": "jobs", "kind": "fifo"}],
        workers=[{"name": "pool", "consumes": "jobs", "count": 4, "service_time": {"dist": "exponential", "mean": "200ms"}, "sends_to": "api"}],
    )
    result = run(scenario, replications=8, jobs=1)
    for key in ("mean", "p50", "p99"):
        assert result.estimate(f"web.api.response_s.{key}").mean == pytest.approx(0.003, rel=RELATIVE_ACCURACY)
    theory = mmc(15, 5, 4)
    completed = result.estimate("web.api.completed_s.mean")
    assert completed.contains(0.003 + theory.sojourn_s), (0.003 + theory.sojourn_s, completed)
    for r in result.results:  # per replication, the same requests: publication + broker wait + service
        parts = 0.003 + r.metrics["brokers.jobs.wait_s.mean"] + r.metrics["workers.pool.service_s.mean"]
        assert r.metrics["web.api.completed_s.mean"] == pytest.approx(parts, rel=0.01)
    assert result.estimate("web.api.notified_s.mean").mean == completed.mean  # no notification: known at once
    assert result.ok


@pytest.mark.slow
def test_a_delay_station_holds_lambda_times_the_mean_delay_and_each_stay_is_the_delay():
    scenario = scenario_from_dict({
        "name": "transit", "seed": 5, "duration": 3000, "warmup": 100,
        "producers": [{"name": "users", "arrivals": {"process": "poisson", "rate": 40}, "sends_to": "network"}],
        "delays": [{"name": "network", "delay": {"dist": "lognormal", "mean": "250ms", "cv": 1.5}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo"}],
        "workers": [{"name": "pool", "consumes": "q", "count": 2, "service_time": {"dist": "deterministic", "value": "10ms"}}],
    })
    result = run(scenario, replications=8, jobs=1)
    assert result.estimate("delays.network.occupancy_mean").contains(40 * 0.25)
    assert result.estimate("delays.network.stay_s.mean").contains(0.25)
    # the whole path: transit + 10 ms of service, and (2 workers at 20% load) little waiting
    assert result.estimate("system.latency_s.mean").mean == pytest.approx(0.26, abs=0.01)
    assert result.ok


@pytest.mark.slow
def test_the_share_of_missed_deadlines_is_that_of_mm1_sojourns_beyond_it():
    # M/M/1, λ = 6/s, μ = 10/s: P(sojourn > d) = exp(−(μ − λ)·d) = exp(−2) at d = 0.5 s
    scenario = web_scenario({"arrivals": {"process": "poisson", "rate": 6}, "handlers": 1,
                             "work": {"dist": "exponential", "mean": "100ms"}, "deadline": "500ms"})
    result = run(scenario, replications=8, jobs=1)
    missed = result.estimate("web.api.deadline.completed_missed_rate")
    assert missed.contains(math.exp(-2.0)), (math.exp(-2.0), missed)


def test_little_and_conservation_hold_on_links_stations_and_handlers():
    result = run(web_scenario(
        {"arrivals": {"process": "poisson", "rate": 20}, "handlers": 6, "work": {"dist": "gamma", "mean": "50ms", "cv": 2},
         "calls": ["fan"], "links": {"request": {"dist": "lognormal", "mean": "30ms", "cv": 1}, "respond": "20ms", "publish": "2ms"},
         "publishes_to": "jobs", "notify": {"poll": "1s"}, "client_step": "5ms"},
        duration=600, warmup=60,
        delays=[{"name": "fan", "delay": {"dist": "exponential", "mean": "10ms"}, "fan_out": 20}],
        brokers=[{"name": "jobs", "kind": "fifo"}],
        workers=[{"name": "pool", "consumes": "jobs", "count": 4, "service_time": {"dist": "exponential", "mean": "150ms"}, "sends_to": "api"}],
    ), replications=2, jobs=1)
    kinds = {c.kind for r in result.results for c in r.littles_law}
    assert {"link", "delay", "handlers"} <= kinds
    assert all(c.ok for r in result.results for c in r.littles_law)
    assert all(r.conservation.ok for r in result.results)
    notified, completed = result.estimate("web.api.notified_s.mean").mean, result.estimate("web.api.completed_s.mean").mean
    assert completed < notified < completed + 1.0  # the next poll comes within an interval
    assert result.estimate("web.api.perceived_s.mean").mean == pytest.approx(result.estimate("web.api.response_s.mean").mean + 0.005)


def test_a_synchronous_tier_that_cannot_keep_up_is_refused_with_its_figures():
    with pytest.raises(ScenarioError) as refused:
        web_scenario({"arrivals": {"process": "poisson", "rate": 30}, "handlers": 4, "work": "200ms"})
    assert "web.api.handlers" in str(refused.value.problems[0].path) and "need 6 handlers" in str(refused.value.problems[0])
    with pytest.raises(ScenarioError) as wrong:
        web_scenario({"arrivals": {"process": "poisson", "rate": 1}, "handlers": 1, "calls": ["nowhere"], "client_step": "1ms"})
    assert "client_step belongs to an asynchronous tier" in str(wrong.value)


BAD_WEB = """\
name: bad
duration: 1m
producers: []
web:
  - name: api
    arrivals: {process: poisson, rate: 10/s}
    handlers: 2
    calls: [dbb]
    notify: {poll: 1s}
    publishes_to: q
brokers:
  - {name: q, kind: fifo}
workers:
  - {name: w, consumes: q, count: 1, service_time: {dist: exponential, mean: 10ms}}
delays:
  - {name: db, delay: 5ms, fan_out: 0}
"""


def test_bad_web_input_is_named_by_file_line_and_field():
    from sim.loading import load_scenario_text

    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(BAD_WEB, source="web.yaml")
    assert "web.yaml:16: delays.db.fan_out: " in str(caught.value)
    with pytest.raises(ScenarioError) as caught:
        load_scenario_text(BAD_WEB.replace("fan_out: 0", "fan_out: 3"), source="web.yaml")
    problems = str(caught.value)
    assert "web.yaml:8: web.api.calls: 'dbb' is not a delay station; did you mean 'db'?" in problems
    assert "web.yaml:9: web.api.notify: no worker pool or delay station signals this tier's completions (sends_to: api)" in problems


def test_a_fan_out_station_signals_completion_at_the_last_delivery_and_other_messages_do_not_count():
    """The tweet's asynchronous path: publish (500 ms, so that a message without it stands out),
    broker wait, the fan-out worker's service, then the last of 10 deliveries, which signals the
    tier. A producer feeding the same queue sends messages that reach the same signal: they are
    processed there but are not the tier's completions."""
    scenario = web_scenario(
        {"arrivals": {"process": "poisson", "rate": 10}, "handlers": 20, "links": {"publish": "500ms"}, "publishes_to": "fanout"},
        duration=400, warmup=20,
        producers=[{"name": "other", "arrivals": {"process": "poisson", "rate": 5}, "sends_to": "fanout"}],
        brokers=[{"name": "fanout", "kind": "fifo"}],
        workers=[{"name": "pool", "consumes": "fanout", "count": 3, "service_time": {"dist": "exponential", "mean": "100ms"}, "sends_to": "followers"}],
        delays=[{"name": "followers", "delay": {"dist": "exponential", "mean": "20ms"}, "fan_out": 10, "sends_to": "api"}],
    )
    result = run(scenario, replications=2, jobs=1)
    for r in result.results:  # per replication: publication + broker wait + service + the last of 10 deliveries
        parts = 0.5 + r.metrics["brokers.fanout.wait_s.mean"] + r.metrics["workers.pool.service_s.mean"] + r.metrics["delays.followers.stay_s.mean"]
        assert r.metrics["web.api.completed_s.mean"] == pytest.approx(parts, rel=0.02)
    stay = result.estimate("delays.followers.stay_s.mean")
    assert stay.contains(0.02 * sum(1 / k for k in range(1, 11)))  # E[max of 10 exponentials] = E[D]·H(10)
    processed, accepted = result.summary()["counts"]["processed"], 2 * result.estimate("web.api.accepted").mean
    assert processed == pytest.approx(1.5 * accepted, rel=0.1)  # the producer's messages (5/s beside 10/s) end there too
    assert result.ok


def test_polls_hold_handlers_and_the_user_learns_at_the_first_status_answer_after_the_completion():
    """A 202 at once, the job done 1 s later (a deterministic worker, never waited for); the client
    polls 300 ms after each answer and each status lookup holds a handler 10 ms. Polls look at
    0.31, 0.62, 0.93 and 1.24 s: 4 polls, the user knows at 1.24 s, and the handlers are busy
    λ·4·10 ms on average: polling costs handler time."""
    scenario = web_scenario(
        {"arrivals": {"process": "poisson", "rate": 2}, "handlers": 50, "publishes_to": "jobs", "notify": {"poll": "300ms", "status": "10ms"}},
        duration=600, warmup=20,
        brokers=[{"name": "jobs", "kind": "fifo"}],
        workers=[{"name": "pool", "consumes": "jobs", "count": 50, "service_time": {"dist": "deterministic", "value": "1s"}, "sends_to": "api"}],
    )
    result = run(scenario, replications=2, jobs=1)
    assert result.estimate("web.api.completed_s.mean").mean == pytest.approx(1.0)
    for key in ("mean", "p50", "p99"):
        assert result.estimate(f"web.api.notified_s.{key}").mean == pytest.approx(1.24, rel=RELATIVE_ACCURACY)
    assert result.estimate("web.api.polls_per_request").mean == pytest.approx(4, rel=0.01)
    busy = result.estimate("web.api.handlers.busy_mean")
    assert busy.contains(2 * 4 * 0.010), busy
    assert result.ok
