"""The registry imports a kind of part only when a scenario has parts of it, and a scenario made
of some kinds still travels to another process (its model is made there from its kinds)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

from sim.components.registry import EVERY, SECTIONS, KindsUsed, kinds_used
from sim.loading import load_scenario
from sim.runner import run_replication
from sim.schema import Scenario, scenario_model

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["duration=1m", "warmup=5s"]
UNUSED_BY_QUICKSTART = {"admission", "outbox", "dual_write", "database", "delays", "web", "task_queues", "task_queue_load",
                        "brokers.redis", "brokers.sqs", "brokers.rabbitmq"}


def run_fresh(code: str) -> list:
    """What ``code``, run in a fresh interpreter at the repository's root, prints last (as JSON)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fifo_scenario_imports_only_its_kinds_and_others_are_imported_when_a_scenario_uses_them():
    code = f"""
import json, sys, sim
from sim.problems import ScenarioError

def kinds_loaded():
    return sorted(m.removeprefix("sim.components.") for m in sys.modules if m.startswith("sim.components."))

quickstart = sim.run(sim.load_scenario("scenarios/quickstart.yaml", {SHORT!r}), replications=1, jobs=1)
try:
    sim.load_scenario("scenarios/quickstart.yaml", ["web.0.rate=5"])
except ScenarioError as exc:
    no_web = str(exc)
after_quickstart = kinds_loaded()
web = sim.run(sim.load_scenario("scenarios/image-upload-async.yaml", {SHORT!r}), replications=1, jobs=1)
celery = sim.run(sim.load_scenario("scenarios/celery-one-queue.yaml", {SHORT!r}), replications=1, jobs=1)
try:
    sim.load_scenario("scenarios/quickstart.yaml", ["brokers.thumbnails.kind=kafka"])
except ScenarioError as exc:
    kafka = str(exc)
print(json.dumps([after_quickstart, kinds_loaded(), [r.results[0].messages for r in (quickstart, web, celery)], no_web, kafka]))
"""
    after_quickstart, after_all, messages, no_web, kafka = run_fresh(code)
    assert {"producers", "brokers", "brokers.fifo", "workers"} <= set(after_quickstart)
    assert UNUSED_BY_QUICKSTART.isdisjoint(after_quickstart)
    assert {"web", "delays", "task_queues", "brokers.redis"} <= set(after_all)
    assert all(count > 0 for count in messages), messages
    assert no_web.endswith("(command line: web.0.rate=5): no key 'web' under the top level")
    assert "brokers.thumbnails.kind: unknown kind 'kafka' (expected one of: 'fifo', 'redis', 'sqs', 'rabbitmq')" in kafka


def test_a_scenario_unpickled_in_a_fresh_interpreter_is_the_same_and_runs_the_same(tmp_path):
    for name in ("rabbitmq-consumer-crashes", "image-upload-async"):
        scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml", SHORT)
        pickled = tmp_path / f"{name}.pickle"
        pickled.write_bytes(pickle.dumps(scenario))
        code = f"""
import json, pickle
from sim.runner import run_replication
scenario = pickle.loads(open({str(pickled)!r}, "rb").read())
used = type(scenario).used
metrics = json.dumps(run_replication(scenario, 0, 7).metrics, sort_keys=True)
print(json.dumps([sorted(used.sections), sorted(used.broker_kinds), scenario.model_dump_json(), metrics]))
"""
        sections, broker_kinds, dump, metrics = run_fresh(code)
        assert KindsUsed(frozenset(sections), frozenset(broker_kinds)) == type(scenario).used
        assert dump == scenario.model_dump_json()
        assert metrics == json.dumps(run_replication(scenario, 0, 7).metrics, sort_keys=True)


def test_a_file_gets_the_model_of_the_kinds_it_uses_and_every_section_is_a_list():
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    assert type(scenario) is scenario_model(KindsUsed(frozenset({"producers", "brokers", "workers"}), frozenset({"fifo"})))
    assert isinstance(scenario, Scenario)
    assert scenario.web == [] and scenario.task_queues == [] and len(scenario.workers) == 1
    assert pickle.loads(pickle.dumps(scenario)) == scenario


def test_a_file_uses_the_sections_it_fills_and_every_broker_kind_when_one_it_names_is_unknown():
    data = {"name": "x", "brokers": [{"name": "a", "kind": "fifo"}, {"name": "b", "kind": "kafka"}]}
    assert kinds_used(data).broker_kinds == EVERY.broker_kinds
    assert kinds_used({"name": "x", "brokers": [{"name": "a"}]}).broker_kinds == EVERY.broker_kinds
    assert kinds_used({"name": "x", "brokers": [{"name": "a", "kind": "sqs"}], "web": []}) == KindsUsed(frozenset({"brokers"}), frozenset({"sqs"}))


def test_the_whole_schema_names_every_section_and_every_kind_of_broker():
    schema = Scenario.model_json_schema()
    settings = ["name", "description", "seed", "duration", "warmup", "replications", "precision", "max_replications"]
    assert list(schema["properties"]) == [*settings, *SECTIONS, "slo", "sweep"]
    brokers = schema["properties"]["brokers"]["items"]
    assert brokers["oneOf"] == [{"$ref": f"#/$defs/{kind}Spec"} for kind in ("Fifo", "Redis", "Sqs", "Rabbitmq")]
