"""Where in-line wins: two designs (a synchronous and an asynchronous one, say) compared on a grid
of what varies — the work's service time, the load, the overheads (a broker round trip, a
polling interval) — each point a paired comparison on common random numbers (:mod:`sim.compare`).

A :class:`Knob` is one quantity varied in both designs, each setting it at its own paths (the
in-line work is ``web.api.work.mean`` in one design and ``workers.pool.service_time.mean`` in the
other; the load is ``web.api.arrivals.rate`` in both). At each point of the grid both scenarios
are loaded with their overrides and run, every replication of every point as one job on one
executor; a design that cannot keep up at a point (refused as unstable) loses it, and any other
problem with a point (a mistyped path) is raised as the :class:`~sim.problems.ScenarioError` it is. The verdict
per point says which design gives the lower value of the metric with confidence (the paired 95%
interval of B − A excludes 0), or ``tie``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .axes import Value, parse_values
from .compare import Difference, paired_difference, run_pairs
from .executors import Executor
from .loading import load_scenario
from .problems import ScenarioError


@dataclass(frozen=True)
class Knob:
    """A quantity ``name`` taking ``values`` (as ``--vary`` writes them: ``1ms,10ms,100ms``,
    ``50/s..200/s:50/s``), set at ``paths_a`` in design A and ``paths_b`` in design B."""

    name: str
    values: tuple[Value, ...]
    paths_a: tuple[str, ...]
    paths_b: tuple[str, ...]


def knob(name: str, values, a: str | Sequence[str] = (), b: str | Sequence[str] | None = None) -> Knob:
    """A :class:`Knob`; ``a`` and ``b`` are a path or paths (``b`` defaults to ``a``; an empty
    side leaves that design alone, as a polling interval only the asynchronous design has)."""
    paths_a = (a,) if isinstance(a, str) else tuple(a)
    paths_b = paths_a if b is None else ((b,) if isinstance(b, str) else tuple(b))
    return Knob(name, tuple(parse_values(values)), paths_a, paths_b)


@dataclass
class Point:
    """One point of the grid: the knobs' values, the paired difference of the metric (None when a
    design was refused: ``error`` says which and why), and the verdict."""

    values: dict[str, Value]
    difference: Difference | None = None
    error: str | None = None
    refused: str | None = None  # "a", "b" or "both": the design(s) refused at this point

    def verdict(self, lower_is_better: bool = True) -> str:
        """``a`` or ``b`` (the better design with confidence), ``tie``, or ``neither`` (both refused)."""
        if self.refused is not None:
            return {"a": "b", "b": "a"}.get(self.refused, "neither")
        d = self.difference
        if not d.significant:
            return "tie"
        return "a" if (d.paired.mean > 0) == lower_is_better else "b"


@dataclass
class BreakEven:
    """The grid of paired comparisons of ``metric`` between A and B."""

    metric: str
    knobs: list[Knob]
    points: list[Point] = field(default_factory=list)
    lower_is_better: bool = True

    @property
    def table(self):
        """pandas: one row per point: the knobs (in seconds, per second or plain), A, B, B − A and
        its interval, the verdict, and the error of a refused design."""
        import pandas as pd

        rows = []
        for point in self.points:
            row = {k.name: point.values[k.name].number for k in self.knobs}
            d = point.difference
            row.update({"a": d.a.mean if d else None, "b": d.b.mean if d else None, "difference": d.paired.mean if d else None,
                        "ci95_low": d.paired.low if d else None, "ci95_high": d.paired.high if d else None,
                        "verdict": point.verdict(self.lower_is_better), "error": point.error})
            rows.append(row)
        return pd.DataFrame(rows)


def _load(path: Path, overrides: list[str]):
    """The scenario, or None and why when it is refused as unstable (it cannot keep up at this
    point); any other problem (a mistyped path, a bad value) is raised."""
    try:
        return load_scenario(path, overrides), None
    except ScenarioError as exc:
        if not all("unstable" in p.message for p in exc.problems):
            raise
        return None, "; ".join(p.message for p in exc.problems)


def break_even(path_a: str | Path, path_b: str | Path, knobs: Sequence[Knob], metric: str, replications: int, seed: int,
               executor: Executor, overrides: Sequence[str] = (), lower_is_better: bool = True) -> BreakEven:
    """Compare designs A and B at every point of the grid of ``knobs`` (the first varying slowest)
    on ``metric``, ``overrides`` applied to both (a knob with one value sets a path of one design
    only); every replication of every point runs on ``executor``."""
    study = BreakEven(metric, list(knobs), lower_is_better=lower_is_better)
    pairs = []
    for values in itertools.product(*(k.values for k in knobs)):
        point = Point({k.name: v for k, v in zip(knobs, values)})
        sets_a = [*overrides, *(f"{p}={v.text}" for k, v in zip(knobs, values) for p in k.paths_a)]
        sets_b = [*overrides, *(f"{p}={v.text}" for k, v in zip(knobs, values) for p in k.paths_b)]
        (a, error_a), (b, error_b) = _load(Path(path_a), sets_a), _load(Path(path_b), sets_b)
        if a is None or b is None:
            point.refused = "both" if a is None and b is None else "a" if a is None else "b"
            point.error = "; ".join(f"{side}: {e}" for side, e in (("A", error_a), ("B", error_b)) if e)
        else:
            pairs.append((point, (a, b)))
        study.points.append(point)
    for (point, _), (result_a, result_b) in zip(pairs, run_pairs([pair for _, pair in pairs], replications, seed, executor)):
        point.difference = paired_difference(metric, result_a, result_b)
    return study
