"""Record the JSON summary of every scenario in scenarios/ (2 replications, seed 7, shortened
runs) into tests/golden/, for tests/test_outputs_unchanged.py.

Run it only when a change is meant to alter results, and say in the commit which keys changed
and why:  python tests/golden/record.py  (every scenario), or name some:
python tests/golden/record.py quickstart retry-storm
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
SEED = 7
REPLICATIONS = 2
SHORTER = {
    "daily-traffic": ["duration=3h", "warmup=30m"],
    "image-pipeline": ["duration=20m", "warmup=2m"],
    "queue-spill": ["duration=10m", "warmup=2m"],
    "quickstart": ["duration=10m", "warmup=1m"],
    "rabbitmq-consumer-crashes": ["duration=20m", "warmup=2m"],
    "redis-eviction": ["duration=8m", "warmup=2m"],
    "redis-reliable-duplicates": ["duration=20m", "warmup=2m"],
    "redis-worker-crashes": ["duration=20m", "warmup=2m"],
    "sqs-short-visibility-timeout": ["duration=20m", "warmup=2m"],
    "webhook-capacity": ["duration=10m", "warmup=1m"],
}


def scenarios() -> list[Path]:
    return sorted((ROOT / "scenarios").glob("*.yaml"))


def summary_of(path: Path) -> dict:
    """The summary ``asyncsim run PATH --json -r 2 --seed 7`` prints, with the shorter run."""
    from sim import load_scenario, run

    result = run(load_scenario(path, SHORTER.get(path.stem, [])), replications=REPLICATIONS, seed=SEED, jobs=1)
    return json.loads(json.dumps(result.summary()))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    wanted = set(sys.argv[1:])
    for path in scenarios():
        if wanted and path.stem not in wanted:
            continue
        (GOLDEN / f"{path.stem}.json").write_text(json.dumps(summary_of(path), indent=1, sort_keys=True) + "\n")
        print("recorded", path.stem)
