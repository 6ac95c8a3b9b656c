"""Every scenario's JSON summary is the one recorded in tests/golden/ (2 replications, seed 7,
shortened runs): a restructuring must not change a single result. A change meant to alter
results re-records them (``python tests/golden/record.py``) and says which keys changed."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_record", GOLDEN / "record.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)


def differences(expected, actual, path="") -> list[str]:
    """Where ``actual`` differs from ``expected``: keys missing or added, values not equal
    (floats to 1e-9 relative, NaN equal to NaN)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{path}.{k}: missing" for k in expected.keys() - actual.keys()]
        found += [f"{path}.{k}: added" for k in actual.keys() - expected.keys()]
        for k in expected.keys() & actual.keys():
            found += differences(expected[k], actual[k], f"{path}.{k}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: {len(expected)} items became {len(actual)}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{path}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        if math.isnan(expected) and math.isnan(actual) or math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12):
            return []
    elif expected == actual and type(expected) is type(actual):
        return []
    return [f"{path}: {expected!r} became {actual!r}"]


@pytest.mark.parametrize("path", record.scenarios(), ids=lambda p: p.stem)
def test_summary_unchanged(path):
    expected = json.loads((GOLDEN / f"{path.stem}.json").read_text())
    found = differences(expected, record.summary_of(path))
    assert not found, f"{len(found)} differences, first: " + "; ".join(sorted(found)[:8])


def test_differences_are_found():
    assert differences({"a": 1.0, "b": [1, 2]}, {"a": 1.0, "b": [1, 2]}) == []
    assert differences({"a": 1.0}, {"a": 1.0 + 1e-6}) == [".a: 1.0 became 1.000001"]
    assert differences({"a": float("nan")}, {"a": float("nan")}) == []
    assert sorted(differences({"a": 1}, {"b": 1})) == [".a: missing", ".b: added"]
    assert differences({"n": 3}, {"n": 3.0}) == [".n: 3 became 3.0"]
