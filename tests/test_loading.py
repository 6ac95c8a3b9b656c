"""Loading scenario files: validation, error messages that say where, and --set overrides (sim.loading)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sim import ScenarioError, load_scenario, load_scenario_text, scenario_from_dict
from sim.fields import EmpiricalSpec, LognormalSpec
from sim.components.producers import TraceArrivals

DATA = Path(__file__).resolve().parent / "data"

BASE = """\
name: shop
duration: 10m
warmup: 1m
producers:
  - name: web
    arrivals: {process: poisson, rate: 30/s}
    sends_to: jobs
brokers:
  - name: jobs
    kind: fifo
workers:
  - name: pool
    consumes: jobs
    count: 8
    service_time: {dist: lognormal, mean: 200ms, cv: 0.8}
"""

CYCLE = """\
name: loop
duration: 10m
producers:
  - name: web
    arrivals: {process: poisson, rate: 1/s}
    sends_to: a
brokers:
  - name: a
    kind: fifo
  - name: b
    kind: fifo
workers:
  - name: first
    consumes: a
    count: 2
    service_time: {dist: exponential, mean: 100ms}
    sends_to: b
  - name: second
    consumes: b
    count: 2
    service_time: {dist: exponential, mean: 100ms}
    sends_to: a
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based number of the line holding the ``occurrence``-th appearance of ``needle``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in the text")


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.fixture
def write(tmp_path):
    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


def load_error(path, overrides=()) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path, list(overrides))
    return info.value


def single(error: ScenarioError) -> str:
    assert len(error.problems) == 1, str(error)
    text = str(error)
    assert "\n" not in text
    return text


# --- valid files --------------------------------------------------------------------------------


def test_a_valid_minimal_file_loads_with_units_parsed_and_defaults_filled(write):
    scenario = load_scenario(write(BASE))
    assert scenario.name == "shop"
    assert scenario.duration == 600.0
    assert scenario.warmup == 60.0
    assert scenario.window_s == 540.0
    assert scenario.seed == 1 and scenario.replications == 10 and scenario.slo is None
    (producer,) = scenario.producers
    assert (producer.name, producer.sends_to, producer.arrivals.process, producer.arrivals.rate) == ("web", "jobs", "poisson", 30.0)
    (broker,) = scenario.brokers
    assert (broker.name, broker.kind, broker.capacity) == ("jobs", "fifo", None)
    (pool,) = scenario.workers
    assert (pool.name, pool.consumes, pool.count, pool.sends_to) == ("pool", "jobs", 8, None)
    assert isinstance(pool.service_time, LognormalSpec)
    assert pool.service_time.mean == pytest.approx(0.2) and pool.service_time.cv == 0.8


def test_load_scenario_text_gives_the_same_scenario_as_the_file(write):
    assert load_scenario_text(BASE) == load_scenario(write(BASE))


def test_scenario_from_dict_validates_a_python_dict():
    data = {
        "name": "d",
        "duration": "2h",
        "producers": [{"name": "p", "arrivals": {"process": "deterministic", "rate": "12000/min"}, "sends_to": "q"}],
        "brokers": [{"name": "q", "kind": "fifo", "capacity": 10}],
        "workers": [{"name": "w", "consumes": "q", "count": 3, "service_time": {"dist": "exponential", "rate": "100/s"}}],
    }
    scenario = scenario_from_dict(data)
    assert scenario.duration == 7200.0
    assert scenario.producers[0].arrivals.rate == 200.0
    assert scenario.workers[0].service_time.build().mean == pytest.approx(0.01)
    data["workers"][0]["count"] = 0
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, source="inline")
    assert str(info.value).startswith("inline:")
    assert "workers.w.count: must be ≥ 1, got 0" in str(info.value)


def test_the_sample_scenario_shipped_with_the_project_is_valid(root):
    scenario = load_scenario(root / "scenarios" / "quickstart.yaml")
    assert scenario.name == "quickstart" and scenario.workers[0].count == 8


# --- one problem at a time: file, line, field path and what is wrong ---------------------------


def test_an_unknown_key_is_located_and_a_close_valid_key_suggested(write):
    text = edit("    count: 8\n", "    count: 8\n    servce_time: 1s\n")
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, 'servce_time')}: workers.pool.servce_time: ")
    assert "unknown key 'servce_time'" in message
    assert "did you mean 'service_time'?" in message
    assert "valid keys: name, consumes, count, service_time, sends_to" in message


def test_an_unknown_key_with_nothing_close_gets_no_suggestion(write):
    text = edit("warmup: 1m\n", "warmup: 1m\nzzz: 3\n")
    message = single(load_error(write(text)))
    assert f":{line_of(text, 'zzz')}: zzz: unknown key 'zzz'" in message
    assert "did you mean" not in message


def test_a_negative_rate_is_refused(write):
    text = edit("rate: 30/s", "rate: -5/s")
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, 'rate: -5/s')}: producers.web.arrivals.rate: must be a positive finite amount, got -5"


@pytest.mark.parametrize("count", [0, -3])
def test_a_worker_count_below_one_is_refused(write, count):
    text = edit("count: 8", f"count: {count}")
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, 'count:')}: workers.pool.count: must be ≥ 1, got {count}"


def test_a_count_that_is_not_a_whole_number_is_refused(write):
    text = edit("count: 8", "count: 2.5")
    message = single(load_error(write(text)))
    assert f":{line_of(text, 'count:')}: workers.pool.count: must be a whole number, got 2.5" in message


def test_an_unknown_broker_kind_is_refused_listing_the_kinds(write):
    text = edit("kind: fifo", "kind: kafka")
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:")
    assert "brokers.jobs" in message
    assert "unknown kind 'kafka'" in message
    assert "expected one of: 'fifo'" in message


def test_an_unknown_distribution_is_refused_listing_the_distributions(write):
    text = edit("dist: lognormal", "dist: lognormall")
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, 'lognormall')}: workers.pool.service_time")
    assert "unknown dist 'lognormall'" in message
    for name in ("exponential", "deterministic", "uniform", "normal", "lognormal", "gamma", "erlang", "hyperexponential", "pareto", "weibull", "empirical"):
        assert f"'{name}'" in message


@pytest.mark.parametrize(
    "old, new, needle, field",
    [
        ("    kind: fifo\n", "    capacity: 5\n    kind: kafka\n", "kind: kafka", "brokers.jobs.kind"),
        (
            "    service_time: {dist: lognormal, mean: 200ms, cv: 0.8}\n",
            "    service_time:\n      mean: 200ms\n      dist: lognormall\n      cv: 0.8\n",
            "dist: lognormall",
            "workers.pool.service_time.dist",
        ),
    ],
    ids=["broker-kind", "dist"],
)
def test_an_unknown_tag_is_located_at_its_own_key(write, old, new, needle, field):
    text = edit(old, new)
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, needle)}: {field}: unknown ")


def test_a_missing_required_key_is_named(write):
    text = edit("duration: 10m\n", "")
    path = write(text)
    assert single(load_error(path)) == f"{path}:1: duration: is required but missing"


def test_a_missing_broker_kind_is_named_at_the_broker(write):
    text = edit("    kind: fifo\n", "")
    path = write(text)
    assert single(load_error(path)) == f"{path}:{line_of(text, '- name: jobs')}: brokers.jobs.kind: is required but missing"


def test_a_distribution_given_in_the_wrong_form_names_the_missing_parameter(write):
    text = edit("{dist: lognormal, mean: 200ms, cv: 0.8}", "{dist: lognormal, mean: 1s}")
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, 'service_time')}: workers.pool.service_time.cv: is required but missing"


def test_a_distribution_given_two_forms_at_once_lists_the_forms(write):
    text = edit("{dist: lognormal, mean: 200ms, cv: 0.8}", "{dist: exponential, mean: 200ms, rate: 5/s}")
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, 'service_time')}: workers.pool.service_time: ")
    assert "exponential takes {mean} or {rate}; got {mean, rate}" in message


def test_sends_to_a_missing_broker_suggests_the_near_miss(write):
    text = edit("sends_to: jobs", "sends_to: job")
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, 'sends_to: job')}: producers.web.sends_to: 'job' is not a broker; did you mean 'jobs'? (brokers: jobs)"


def test_consumes_a_missing_broker_without_a_near_miss_gets_no_suggestion(write):
    text = edit("consumes: jobs", "consumes: zzzz")
    text = edit("brokers:\n", "brokers:\n  - name: spare\n    kind: fifo\n", text)
    path = write(text)
    error = load_error(path)
    messages = [p.format(str(path)) for p in error.problems]
    expected = f"{path}:{line_of(text, 'consumes: zzzz')}: workers.pool.consumes: 'zzzz' is not a broker (brokers: spare, jobs)"
    assert expected in messages


def test_duplicate_names_are_refused_at_the_second_one(write):
    text = BASE + "  - name: pool\n    consumes: jobs\n    count: 2\n    service_time: {dist: exponential, mean: 1s}\n"
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, '- name: pool', 2)}: workers.pool.name: the name 'pool' is already used in workers; names must be unique"


def test_a_name_shared_across_sections_is_refused(write):
    text = edit("- name: web", "- name: jobs")
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, '- name: jobs', 2)}: brokers.jobs.name: the name 'jobs' is already used in producers; names must be unique"


@pytest.mark.parametrize("warmup, seconds", [("10m", 600), ("11m", 660)])
def test_a_warmup_that_does_not_end_before_the_run_is_refused(write, warmup, seconds):
    text = edit("warmup: 1m", f"warmup: {warmup}")
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:3: warmup: the warm-up ({seconds}s) must end before the run does (600s)"


def test_a_loop_of_pipeline_stages_is_refused_naming_the_loop(write):
    path = write(CYCLE)
    message = single(load_error(path))
    assert message.startswith(str(path))
    assert ": workers" in message
    assert message.endswith("messages would go round a loop: a → b → a")


def test_a_loop_of_pipeline_stages_is_located_at_a_sends_to_in_the_loop(write):
    path = write(CYCLE)
    message = single(load_error(path))
    located = {
        f"{path}:{line_of(CYCLE, 'sends_to: b')}: workers.first.sends_to: ",
        f"{path}:{line_of(CYCLE, 'sends_to: a', 2)}: workers.second.sends_to: ",
    }
    assert any(message.startswith(prefix) for prefix in located), message
    assert "a → b → a" in message


def test_a_broker_nobody_consumes_is_refused(write):
    text = edit("brokers:\n", "brokers:\n  - name: spare\n    kind: fifo\n")
    path = write(text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, '- name: spare')}: brokers.spare: no worker pool consumes this broker: its messages would never leave"


@pytest.mark.parametrize("count, capacity, load", [(5, "25", "1.2"), (6, "30", "1")])
def test_an_unstable_system_is_refused_with_the_figures(write, count, capacity, load):
    text = edit("count: 8", f"count: {count}")
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, '- name: jobs')}: brokers.jobs: unstable: ")
    assert f"offered load 30/s ≥ capacity {capacity}/s" in message
    assert f"{count} workers of pool at a mean service time of 200ms" in message
    assert f"utilisation would be {load})" in message
    assert "'capacity'" in message


def test_the_same_unstable_system_is_valid_with_a_bounded_queue(write):
    text = edit("count: 8", "count: 5")
    text = edit("    kind: fifo\n", "    kind: fifo\n    capacity: 50\n", text)
    scenario = load_scenario(write(text))
    assert scenario.brokers[0].capacity == 50
    assert scenario.workers[0].count == 5


def test_a_pipeline_stage_is_unstable_from_the_load_the_first_stage_passes_on(write):
    text = edit("    kind: fifo\n", "    kind: fifo\n  - name: next\n    kind: fifo\n")
    text += "    sends_to: next\n  - name: slow\n    consumes: next\n    count: 1\n    service_time: {dist: deterministic, value: 50ms}\n"
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, '- name: next')}: brokers.next: unstable: offered load 30/s ≥ capacity 20/s")


def test_invalid_yaml_is_reported_at_its_line(write):
    text = edit("    count: 8\n", "    count: 8: 9\n")
    path = write(text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, 'count: 8: 9')}: not valid YAML: ")
    assert "mapping values are not allowed here" in message


def test_a_duplicate_yaml_key_is_reported(write):
    text = edit("duration: 10m\n", "duration: 10m\nduration: 5m\n")
    message = single(load_error(write(text)))
    assert "not valid YAML" in message and 'duplicate key "duration"' in message


def test_a_file_that_does_not_exist_is_reported(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = single(load_error(path))
    assert message == f"{path}: cannot read the file: No such file or directory"


@pytest.mark.parametrize("text, got", [
    ("- name: a\n- name: b\n", ", got a list"),
    ("just words\n", ", got the single value 'just words'"),
])
def test_a_scenario_that_is_not_a_mapping_is_refused(write, text, got):
    path = write(text)
    assert single(load_error(path)) == f"{path}:1: a scenario file is a mapping of keys (name, duration, producers, ...){got}"


@pytest.mark.parametrize("text", ["", "# a scenario cut inside its comments\n# name: sho"])
def test_an_empty_scenario_says_it_is_empty(write, text):
    path = write(text)
    assert single(load_error(path)) == (f"{path}:1: the file is empty (or only comments); "
                                        "a scenario file is a mapping of keys (name, duration, producers, ...)")


def test_several_problems_in_one_file_are_all_reported(write):
    text = edit("rate: 30/s", "rate: -5/s")
    text = edit("kind: fifo", "kind: kafka", text)
    text = edit("count: 8", "count: 0", text)
    text = edit("duration: 10m\n", "duration: 10 parsecs\n", text)
    path = write(text)
    error = load_error(path)
    lines = str(error).splitlines()
    assert len(lines) == len(error.problems) == 4
    assert f"{path}:{line_of(text, 'parsecs')}: duration: unknown time unit 'parsecs'" in lines[0]
    assert any(line.startswith(f"{path}:{line_of(text, 'rate: -5/s')}: producers.web.arrivals.rate: must be a positive") for line in lines)
    assert any("unknown kind 'kafka'" in line for line in lines)
    assert any(line == f"{path}:{line_of(text, 'count: 0')}: workers.pool.count: must be ≥ 1, got 0" for line in lines)


def test_several_wiring_problems_are_all_reported(write):
    text = edit("sends_to: jobs", "sends_to: job")
    text = edit("brokers:\n", "brokers:\n  - name: spare\n    kind: fifo\n", text)
    path = write(text)
    error = load_error(path)
    assert [(p.path, p.line) for p in error.problems] == [
        ("producers.web.sends_to", line_of(text, "sends_to: job")),
        ("brokers.spare", line_of(text, "- name: spare")),
    ]


# --- --set overrides ----------------------------------------------------------------------------


def test_set_addresses_list_items_by_name(write):
    assert load_scenario(write(BASE), ["workers.pool.count=12"]).workers[0].count == 12


def test_set_addresses_list_items_by_index(write):
    scenario = load_scenario(write(BASE), ["workers.0.count=12", "producers.0.arrivals.rate=20/s"])
    assert scenario.workers[0].count == 12
    assert scenario.producers[0].arrivals.rate == 20.0


def test_set_parses_values_with_units_and_whole_sections(write):
    scenario = load_scenario(
        write(BASE),
        ["duration=5m", "warmup=30s", "workers.pool.service_time={dist: exponential, mean: 100ms}"],
    )
    assert scenario.duration == 300.0 and scenario.warmup == 30.0
    assert scenario.workers[0].service_time.build().mean == pytest.approx(0.1)
    assert scenario.workers[0].service_time.dist == "exponential"


def test_set_can_add_a_key(write):
    scenario = load_scenario(write(BASE), ["brokers.jobs.capacity=50", "seed=7", "slo={latency_p99: 1s}"])
    assert scenario.brokers[0].capacity == 50
    assert scenario.seed == 7
    assert scenario.slo.latency_p99 == 1.0


def test_set_does_not_touch_the_file(write):
    path = write(BASE)
    load_scenario(path, ["workers.pool.count=12"])
    assert path.read_text() == BASE
    assert load_scenario(path).workers[0].count == 8


def test_set_with_an_unknown_item_names_the_items_there_are(write):
    path = write(BASE)
    message = single(load_error(path, ["workers.nosuch.count=1"]))
    assert message == f"{path} (command line: workers.nosuch.count=1): no item named 'nosuch' in workers (have: pool)"


def test_set_with_an_index_out_of_range_is_refused(write):
    message = single(load_error(write(BASE), ["workers.1.count=1"]))
    assert "no item named '1' in workers (have: pool)" in message


def test_set_with_an_unknown_section_is_refused(write):
    message = single(load_error(write(BASE), ["nosuch.count=1"]))
    assert "(command line: nosuch.count=1): no key 'nosuch' under the top level" in message


def test_set_below_a_plain_value_is_refused(write):
    message = single(load_error(write(BASE), ["workers.pool.count.x=1"]))
    assert "'workers.pool.count' is a value, not a section" in message


def test_set_without_a_value_is_refused(write):
    message = single(load_error(write(BASE), ["duration"]))
    assert "--set takes PATH=VALUE" in message and "'duration'" in message


def test_an_invalid_value_from_set_is_blamed_on_the_set(write):
    path = write(BASE)
    message = single(load_error(path, ["workers.pool.count=0"]))
    assert message == f"{path} (command line: workers.pool.count): workers.pool.count: must be ≥ 1, got 0"
    assert f"{path}:" not in message


def test_a_wiring_problem_from_set_is_blamed_on_the_set(write):
    path = write(BASE)
    message = single(load_error(path, ["workers.pool.sends_to=nowhere"]))
    assert message == f"{path} (command line: workers.pool.sends_to): workers.pool.sends_to: 'nowhere' is not a broker (brokers: jobs)"


def test_a_warmup_from_set_past_the_end_is_blamed_on_the_set(write):
    path = write(BASE)
    message = single(load_error(path, ["warmup=20m"]))
    assert message == f"{path} (command line: warmup): warmup: the warm-up (1200s) must end before the run does (600s)"


@pytest.mark.parametrize(
    "override, field, problem",
    [
        ("brokers.jobs.capacity=-1", "brokers.jobs.capacity", "must be ≥ 0, got -1"),
        ("workers.pool.servce_time=1s", "workers.pool.servce_time", "unknown key 'servce_time'; did you mean 'service_time'?"),
    ],
    ids=["bad-value", "unknown-key"],
)
def test_an_invalid_key_added_by_set_is_blamed_on_the_set(write, override, field, problem):
    path = write(BASE)
    message = single(load_error(path, [override]))
    assert message.startswith(f"{path} (command line: {field}): {field}: {problem}")


# --- data files next to the scenario ------------------------------------------------------------


def _with_data_files(write, tmp_path, monkeypatch, text):
    """The scenario and its CSV files in their own folder, loaded from a different working directory."""
    folder = tmp_path / "project" / "scenarios"
    folder.mkdir(parents=True)
    shutil.copy(DATA / "service_times_ms.csv", folder / "service_times_ms.csv")
    shutil.copy(DATA / "arrivals_ms.csv", folder / "arrivals_ms.csv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return write(text, "project/scenarios/scenario.yaml"), folder


EMPIRICAL = edit(
    "{dist: lognormal, mean: 200ms, cv: 0.8}",
    "{dist: empirical, file: service_times_ms.csv, column: service_ms, unit: 1ms}",
)
TRACE = edit("{process: poisson, rate: 30/s}", "{process: trace, file: arrivals_ms.csv, column: t_ms, unit: 1ms}")


def test_an_empirical_distribution_reads_its_csv_next_to_the_scenario(write, tmp_path, monkeypatch):
    path, folder = _with_data_files(write, tmp_path, monkeypatch, EMPIRICAL)
    spec = load_scenario(path).workers[0].service_time
    assert isinstance(spec, EmpiricalSpec)
    assert Path(spec.file) == folder / "service_times_ms.csv"
    values = sorted(spec.build().values_s.tolist())  # the non-numeric row is dropped
    assert values == pytest.approx([0.06, 0.08, 0.08, 0.095, 0.12, 0.15, 0.21, 0.25, 0.4])


def test_trace_arrivals_read_their_csv_next_to_the_scenario(write, tmp_path, monkeypatch):
    path, folder = _with_data_files(write, tmp_path, monkeypatch, TRACE)
    arrivals = load_scenario(path).producers[0].arrivals
    assert isinstance(arrivals, TraceArrivals)
    assert Path(arrivals.file) == folder / "arrivals_ms.csv"
    assert arrivals.times_s().tolist() == pytest.approx([0.04, 0.1, 0.1, 1.2505, 2.5, 3.99975, 7.0])


@pytest.mark.parametrize(
    "text, needle, field",
    [
        (EMPIRICAL.replace("service_times_ms.csv", "missing.csv"), "missing.csv", "workers.pool.service_time.file"),
        (TRACE.replace("arrivals_ms.csv", "missing.csv"), "missing.csv", "producers.web.arrivals.file"),
    ],
    ids=["empirical", "trace"],
)
def test_a_missing_data_file_is_reported_with_where_it_was_looked_for(write, tmp_path, monkeypatch, text, needle, field):
    path, folder = _with_data_files(write, tmp_path, monkeypatch, text)
    message = single(load_error(path))
    assert message == f"{path}:{line_of(text, needle)}: {field}: file not found: {folder / 'missing.csv'}"


@pytest.mark.parametrize(
    "text, field",
    [
        (EMPIRICAL.replace("column: service_ms", "column: nope"), "workers.pool.service_time"),
        (TRACE.replace("column: t_ms", "column: nope"), "producers.web.arrivals"),
    ],
    ids=["empirical", "trace"],
)
def test_a_missing_csv_column_is_reported_as_a_scenario_error(write, tmp_path, monkeypatch, text, field):
    path, _ = _with_data_files(write, tmp_path, monkeypatch, text)
    message = single(load_error(path))
    assert message.startswith(f"{path}:{line_of(text, 'column: nope')}: {field}")
    assert "no column 'nope'" in message
