"""The kinds that say what they show (web tiers, delay stations): `asyncsim run`'s table,
`asyncsim check`, the report's table, diagram, list of models and theory, with the numbers the
summary holds and the values derived from the scenario (λ·E[stay], λ·E[held]/c, Erlang C)."""

import json
import re

import pytest
from rich.console import Console

from sim import run, scenario_from_dict
from sim.analytic import mmc
from sim.cli.summary import print_summary, seconds_text
from sim.diagram import _columns, draw_diagram
from sim.loading import load_scenario
from sim.report_content import docstring_models, fmt_value, summary_rows, theory_section
from sim.theory import theory_of

from .conftest import ROOT

UPLOAD = ROOT / "scenarios" / "image-upload-async.yaml"


@pytest.fixture(scope="module")
def upload():
    scenario = load_scenario(UPLOAD, ["duration=60s", "warmup=5s"])
    return scenario, run(scenario, replications=2, jobs=1)


def test_the_run_table_shows_the_web_tier_and_the_delay_station_with_the_summary_numbers(upload):
    _, result = upload
    summary = result.summary()
    console = Console(record=True, width=240)
    print_summary(summary, console)
    text = console.export_text()
    web, storage = summary["web"]["upload"], summary["delays"]["storage"]
    assert re.search(rf"web upload +handlers' utilisation +{100 * web['handlers']['utilization']['mean']:.3g}%", text)
    for label, estimate in (("response p99", web["response_s"]["p99"]), (r"perceived p99 \(202 \+ client step\)", web["perceived_s"]["p99"]),
                            (r"completed mean \(the work done\)", web["completed_s"]["mean"]), (r"notified p99 \(the user knows\)", web["notified_s"]["p99"])):
        assert re.search(rf"{label} +{re.escape(seconds_text(estimate)[0])}", text), label
    assert re.search(rf"deadline missed \(completed\) +{100 * web['deadline']['completed_missed_rate']['mean']:.3g}%", text)
    assert re.search(rf"delays storage +inside, mean \(λ·E\[stay\]\) +{storage['occupancy_mean']['mean']:.4g}", text)


def test_the_values_shown_agree_with_the_derived_ones(upload):
    scenario, result = upload
    theory = theory_of(scenario)
    occupancy, exact = theory.values["delays.storage.occupancy_mean"]
    assert exact and occupancy == pytest.approx(30 * 0.020)  # λ·E[stay]
    utilization, exact = theory.values["web.upload.handlers.utilization"]
    assert exact and utilization == pytest.approx(30 * (0.020 + 0.003) / 12)  # λ·E[held]/c: the storage call and the publication
    for metric in ("delays.storage.occupancy_mean", "delays.storage.stay_s.mean", "web.upload.handlers.utilization"):
        assert result.estimate(metric).contains(theory.values[metric][0]), metric
    section = theory_section(scenario, result)
    assert section["applies"] and {"delays.storage.occupancy_mean", "web.upload.handlers.busy_mean"} <= {r["metric"] for r in section["rows"]}


def test_a_synchronous_tier_has_the_erlang_c_theory_of_its_whole_call():
    scenario = scenario_from_dict({"name": "web", "duration": 100, "producers": [],
                                   "delays": [{"name": "db", "delay": {"dist": "exponential", "mean": "200ms"}}],
                                   "web": [{"name": "api", "arrivals": {"process": "poisson", "rate": 15}, "handlers": 6, "calls": ["db"],
                                            "links": {"request": "30ms", "respond": "20ms"}}]})
    values = theory_of(scenario).values
    expected = mmc(15, 5, 6)
    assert values["web.api.handlers.wait_s.mean"] == (pytest.approx(expected.wait_s), True)
    assert values["web.api.response_s.mean"] == (pytest.approx(0.05 + expected.sojourn_s), True)
    assert values["delays.db.occupancy_mean"] == (pytest.approx(15 * 0.2), True)
    fan_out = scenario.delays[0].model_copy(update={"fan_out": 3})
    approximate = theory_of(scenario.model_copy(update={"delays": [fan_out]})).values
    assert approximate["web.api.handlers.hold_s.mean"] == (pytest.approx(0.2 * (1 + 1 / 2 + 1 / 3), rel=0.02), True)  # E[max of 3]
    assert approximate["web.api.handlers.wait_s.mean"][1] is False  # the largest of 3 is not exponential: Allen–Cunneen


def test_a_tier_that_holds_its_handler_no_time_has_no_load_on_it():
    scenario = scenario_from_dict({"name": "web", "duration": 100, "producers": [], "brokers": [{"name": "q", "kind": "fifo"}],
                                   "workers": [{"name": "w", "consumes": "q", "count": 1, "service_time": {"dist": "exponential", "mean": "10ms"}}],
                                   "web": [{"name": "api", "arrivals": {"process": "poisson", "rate": 15}, "handlers": 1, "publishes_to": "q"}]})
    values = theory_of(scenario).values
    assert values["web.api.handlers.hold_s.mean"] == (0.0, True) and values["web.api.handlers.utilization"] == (0.0, True)


def test_check_lists_the_load_on_handlers_and_stations(call):
    code, text, _ = call("check", UPLOAD, "--json")
    parts = json.loads(text)["parts"]
    assert code == 0 and parts["upload"]["section"] == "web" and parts["upload"]["servers"] == 12
    assert parts["upload"]["held_mean_s"] == pytest.approx(0.023) and parts["upload"]["offered_load"] == pytest.approx(30 * 0.023 / 12)
    assert parts["storage"]["arrival_rate_per_s"] == pytest.approx(30) and parts["storage"]["servers"] is None
    code, text, _ = call("check", ROOT / "scenarios" / "tweet-fanout-async.yaml", "--json")
    assert json.loads(text)["parts"]["timelines"]["arrival_rate_per_s"] == pytest.approx(50)  # what the fan-out workers pass on
    code, text, _ = call("check", UPLOAD)
    assert re.search(r"web upload +30/s +23ms +12 +0\.69 +0\.0575", text)
    assert re.search(r"delays storage +30/s +20ms +∞ +0\.6 +–", text)


def test_the_report_table_list_of_models_and_diagram_show_them(upload):
    scenario, result = upload
    summary = result.summary()
    rows = {(r["section"], r["label"]): r["mean"] for r in summary_rows(summary)}
    assert rows["web upload", "response p99"] == fmt_value("latency_s", summary["web"]["upload"]["response_s"]["p99"]["mean"])
    assert rows["delays storage", "stay mean"] == fmt_value("latency_s", summary["delays"]["storage"]["stay_s"]["mean"]["mean"])
    models = {m["name"]: m["used_by"] for m in docstring_models(scenario, 0)}
    assert models["WebTier"] == ["web tier upload"] and models["DelayStation"] == ["delay station storage"]
    assert models["Link"] == ["link request of upload", "link respond of upload", "link publish of upload"]
    assert models["Push"] == ["notification of upload"] and "arrivals of upload" in models["PoissonArrivals"]

    import matplotlib
    matplotlib.use("Agg")
    ax = draw_diagram(scenario, result)
    texts = [t.get_text() for t in ax.texts]
    assert "web tier" in texts and "delay station" in texts
    busy = 100 * summary["web"]["upload"]["handlers"]["utilization"]["mean"]
    assert any(t.startswith("12 handlers, answers 202") and f"busy {busy:.3g}%" in t for t in texts)
    assert {"calls (waits)", "publishes", "completion"} <= set(texts)
    assert _columns(scenario) == {"upload": 0, "storage": 1, "thumbnails": 1, "thumbnailer": 2}


@pytest.mark.slow
def test_a_sweep_of_a_web_tier_overlays_its_erlang_c_curve():
    from sim.executors import SerialExecutor
    from sim.sweep import run_sweep

    sync = ROOT / "scenarios" / "tweet-fanout-sync.yaml"
    sweep = run_sweep(sync, ["web.post.arrivals.rate=20/s,60/s"], executor=SerialExecutor(), replications=2,
                      overrides=["duration=20s", "warmup=2s"])
    curve = sweep.dense_theory("web.post.arrivals.rate", {})
    assert [v for v, _, _ in curve][:2] == [20.0, pytest.approx(20 + 40 / 79)] and curve[-1][0] == 60.0
    for rate, _, model in curve:  # λ·E[held], held 50 ms of work + the last of 100 deliveries (30.5 ms): exact
        assert model.values["web.post.handlers.busy_mean"] == (pytest.approx(rate * 0.0805, rel=0.01), True)
        assert model.values["web.post.response_s.mean"][0] == pytest.approx(0.06 + model.values["web.post.handlers.hold_s.mean"][0] + model.values["web.post.handlers.wait_s.mean"][0])
