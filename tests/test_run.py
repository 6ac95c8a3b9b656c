"""End-to-end runs of the quickstart scenario through the Python API."""

import numpy as np

from sim import load_scenario, run


def test_quickstart_summary_has_the_contract_keys_and_passes_its_checks(root):
    scenario = load_scenario(root / "scenarios" / "quickstart.yaml", ["duration=20m", "warmup=2m"])
    result = run(scenario, replications=3, jobs=1)
    summary = result.summary()
    assert summary["replications"] == 3
    for key in ("mean", "p50", "p95", "p99", "p999"):
        estimate = summary["system"]["latency_s"][key]
        assert estimate["ci95"][0] <= estimate["mean"] <= estimate["ci95"][1]
    assert set(summary["counts"]) == {"produced", "processed", "rejected", "lost", "duplicates", "dead_lettered", "in_flight"}
    counts = summary["counts"]
    assert counts["produced"] == counts["processed"] + counts["in_flight"]
    # 30/s over an 18-minute window, three times: within 1% of 97,200
    assert abs(counts["produced"] - 3 * 30 * 18 * 60) < 0.01 * 97_200
    assert {c["boundary"] for c in summary["littles_law"]} == {"system", "thumbnails", "renderer"}
    assert all(c["ok"] for c in summary["littles_law"])
    assert summary["conservation"]["ok"]
    utilisation = summary["workers"]["renderer"]["utilization"]
    # offered load 30/s × 0.2 s / 8 workers = 0.75
    assert utilisation["ci95"][0] - 0.01 <= 0.75 <= utilisation["ci95"][1] + 0.01


def test_same_seed_same_numbers_whatever_the_number_of_processes(root):
    scenario = load_scenario(root / "scenarios" / "quickstart.yaml", ["duration=5m", "warmup=30s"])
    one = run(scenario, replications=3, jobs=1).replications
    two = run(scenario, replications=3, jobs=2).replications
    metrics = [c for c in one.columns if c != "wall_s"]
    assert np.array_equal(one[metrics].to_numpy(dtype=float), two[metrics].to_numpy(dtype=float), equal_nan=True)


def test_changing_one_component_leaves_the_others_random_numbers_alone(root):
    path = root / "scenarios" / "quickstart.yaml"
    base = run(load_scenario(path, ["duration=5m", "warmup=0"]), replications=1, jobs=1)
    slower = run(load_scenario(path, ["duration=5m", "warmup=0", "workers.renderer.count=9"]), replications=1, jobs=1)
    # the producer's stream is keyed by its name: the same arrivals whatever the workers
    assert base.counts()["produced"] == slower.counts()["produced"]
    assert base.estimate("system.latency_s.mean").mean != slower.estimate("system.latency_s.mean").mean
