"""Sweeps: one scenario run at every point of a grid of values, with confidence intervals.

A sweep varies one or more ``--set`` paths (``--vary workers.renderer.count=8..32:4``, or the
scenario's ``sweep:`` section). Each point is the scenario file loaded with the point's overrides
through :func:`sim.load_scenario`, so a point whose scenario is invalid or unstable is refused the
same way a bad file is, and its error goes into the table while the sweep goes on.

Every point runs with the same seed and the same replication indices, and random streams are keyed
by (seed, replication, component name), so the points share their random numbers (common random
numbers): the differences between points come from the values varied, not from noise. The unit of
work is one replication of one point, on any :mod:`executor <sim.executors>`; results are the same
whichever executor runs them and however many workers it has.

With an output folder, each finished point is appended to ``points.jsonl`` as it finishes; a later
sweep into the same folder skips the points already there with the same scenario (a hash of the
point's validated scenario and its data files), seed and number of replications.

The value syntax is :mod:`sim.axes`'s; the plots are :mod:`sim.sweep_plots`'.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from pydantic import ValidationError

from .axes import Axis, SweepError, Value, axes_from, parse_axis
from .executors import Executor, make_executor
from .jobs import Job, results_to_precision
from .loading import load_scenario
from .overrides import parse_yaml
from .plots import FIGURE_SIZE
from .problems import Problem, ScenarioError
from .result import Result, check_metric, nest
from .schema import Scenario, SweepSpec
from .stats import is_nan, json_safe
from .sweep_plots import plot_hockey_stick, plot_sweep_metric
from .theory import theory_of
from .topology import broker_flows

DEFAULT_METRIC = "system.latency_s.p99"
ROW_FORMAT = 1
POINTS_FILE = "points.jsonl"


def axes_of_file(path: str | Path, overrides: Sequence[str] = ()) -> tuple[list[Axis], str | None]:
    """The axes of the file's ``sweep:`` section and its metric (([], None) without a section).

    The base scenario need not be valid (it may be unstable at the file's own values); only the
    ``sweep:`` section must be."""
    try:
        scenario = load_scenario(path, overrides)
        spec = scenario.sweep
    except ScenarioError as exc:
        try:
            raw = parse_yaml(Path(path).read_text(), str(path)).get("sweep")
            spec = SweepSpec.model_validate(raw) if raw is not None else None
        except (OSError, ScenarioError, ValidationError):
            raise exc from None
    if spec is None:
        return [], None
    return [parse_axis(p, v) for p, v in spec.vary.items()], spec.metric


# --- points -------------------------------------------------------------------------------------


@dataclass
class Point:
    """One point of a sweep: its values, overrides, and scenario (or why it has none)."""

    index: int
    values: tuple[Value, ...]
    overrides: tuple[str, ...]
    scenario: Scenario | None
    error: str | None
    seed: int | None
    replications: int | None
    key: str

    @property
    def setting(self) -> str:
        return ", ".join(o for o in self.overrides[len(self.overrides) - len(self.values):])


def _file_digest(path: str) -> str:
    try:
        return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return path


def _with_file_digests(node: Any) -> Any:
    """A scenario dump with each data file replaced by a digest of its contents."""
    if isinstance(node, dict):
        return {k: (_file_digest(v) if k == "file" and isinstance(v, str) else _with_file_digests(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_file_digests(v) for v in node]
    return node


def scenario_key(scenario: Scenario, seed: int, replications: int) -> str:
    """A digest of what a point's results depend on: the validated scenario (with its data files'
    contents, without its ``sweep:`` section), the seed and the number of replications."""
    dump = _with_file_digests(scenario.model_dump(mode="json", exclude={"sweep"}))
    payload = json.dumps({"format": ROW_FORMAT, "scenario": dump, "seed": seed, "replications": replications}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _problems_text(exc: ScenarioError) -> str:
    return "; ".join(p.format(exc.source) for p in exc.problems)


def plan(
    source: str | Path,
    axes: Sequence[Axis],
    overrides: Sequence[str] = (),
    seed: int | None = None,
    replications: int | None = None,
) -> list[Point]:
    """Every point of the grid (the first axis varies slowest), each loaded and validated.

    Raises :class:`ScenarioError` when no point at all is a valid scenario (a mistyped path, a
    broken file): that is a problem with the input, not a finding of the sweep."""
    source = Path(source)
    points: list[Point] = []
    first_error: ScenarioError | None = None
    for index, combo in enumerate(itertools.product(*(a.values for a in axes))):
        point_overrides = tuple(overrides) + tuple(f"{a.path}={v.text}" for a, v in zip(axes, combo))
        try:
            scenario = load_scenario(source, point_overrides)
        except ScenarioError as exc:
            first_error = first_error or exc
            digest = hashlib.sha256(json.dumps([point_overrides, _problems_text(exc)]).encode()).hexdigest()[:24]
            points.append(Point(index, combo, point_overrides, None, _problems_text(exc), seed, replications, "invalid:" + digest))
            continue
        s = scenario.seed if seed is None else seed
        n = scenario.replications if replications is None else replications
        points.append(Point(index, combo, point_overrides, scenario, None, s, n, scenario_key(scenario, s, n)))
    if points and all(p.scenario is None for p in points):
        note = Problem(f"no point of the sweep is a valid scenario; the first ({points[0].setting}) fails with:")
        raise ScenarioError(first_error.source, [note, *first_error.problems])
    return points

# --- rows ---------------------------------------------------------------------------------------

CHECKS = ("littles_law_ok", "conservation_ok", "slo_met", "ok", "error", "wall_s")


def point_row(point: Point, axes: Sequence[Axis], result: Result | None) -> dict:
    """The flat row of a point: values varied, every metric's mean and 95% CI, counts, checks, SLO."""
    row: dict[str, Any] = {"point": point.index, "setting": point.setting}
    for axis, value in zip(axes, point.values):
        row[axis.path] = value.number
    row.update(seed=point.seed, replications=point.replications, key=point.key)
    if result is None:
        row.update(replications_done=0, replications_failed=0, littles_law_ok=None, conservation_ok=None, slo_met=None, ok=False, error=point.error, wall_s=0.0)
        return row
    row["replications_done"] = len(result.results)
    row["replications_failed"] = len(result.failures)
    for metric in result.metric_names():
        est = result.estimate(metric)
        row[metric] = est.mean
        row[f"{metric}.ci95_low"] = est.low
        row[f"{metric}.ci95_high"] = est.high
    for key, value in result.counts().items():
        row[f"counts.{key}"] = value
    slo = result.slo_report()
    if slo is not None:
        for key, verdict in slo.items():
            row[f"slo.{key}"] = verdict["status"]
    errors = [f"replication {f.replication} failed: {f.error}" for f in result.failures]
    row.update(
        littles_law_ok=bool(result.results) and all(c.ok for r in result.results for c in r.littles_law),
        conservation_ok=bool(result.results) and all(r.conservation.ok for r in result.results),
        slo_met=None if slo is None else all(v["status"] == "met" for v in slo.values()),
        ok=result.ok,
        error="; ".join(errors) or None,
        wall_s=float(sum(r.wall_s for r in result.results)),
    )
    return row


def metric_columns(row: dict) -> list[str]:
    return [k for k in row if f"{k}.ci95_low" in row]


def nested_row(row: dict, axes: Sequence[Axis]) -> dict:
    """A row as the JSON summary gives it: estimates as ``{"mean": x, "ci95": [lo, hi]}``."""
    out: dict[str, Any] = {"point": row["point"], "setting": row["setting"], "values": {a.path: json_safe(row.get(a.path)) for a in axes}}
    for key in ("seed", "replications", "replications_done", "replications_failed"):
        out[key] = row.get(key)
    estimates = {m: {"mean": json_safe(row[m]), "ci95": [json_safe(row[f"{m}.ci95_low"]), json_safe(row[f"{m}.ci95_high"])]} for m in metric_columns(row)}
    out.update(nest(estimates))
    counts = {k.split(".", 1)[1]: row[k] for k in row if k.startswith("counts.")}
    if counts:
        out["counts"] = {k: int(v) for k, v in counts.items() if v is not None and not is_nan(v)}
    slo = {k.split(".", 1)[1]: row[k] for k in row if k.startswith("slo.") and row[k] is not None and not is_nan(row[k])}
    if slo:
        out["slo"] = slo
    for key in CHECKS:
        out[key] = json_safe(row.get(key))
    return out


def _load_done(path: Path) -> tuple[dict[str, dict], int]:
    """Rows already in ``points.jsonl`` by key (the last row of a key wins), and unreadable lines."""
    done: dict[str, dict] = {}
    bad = 0
    if not path.exists():
        return done, bad
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            done[row["key"]] = row
        except (json.JSONDecodeError, KeyError, TypeError):
            bad += 1  # a line cut short by an interruption
    return done, bad


# --- the result ---------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """The points of a sweep, their rows, and the Results of the points run in this session."""

    source: Path
    axes: list[Axis]
    overrides: tuple[str, ...]
    points: list[Point]
    rows: dict[int, dict]
    results: dict[int, Result] = field(default_factory=dict)
    resumed: list[int] = field(default_factory=list)
    replications_run: int = 0
    interrupted: bool = False
    executor: str = ""
    metric: str = DEFAULT_METRIC
    wall_s: float = 0.0
    _dense: dict = field(default_factory=dict, repr=False)

    @property
    def table(self) -> pd.DataFrame:
        """One row per point (finished or refused), in grid order, indexed by ``point``."""
        rows = [self.rows[p.index] for p in self.points if p.index in self.rows]
        if not rows:
            return pd.DataFrame()
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        front = [c for c in ("point", "setting", *[a.path for a in self.axes]) if c in columns]
        tail = [c for c in CHECKS if c in columns]
        middle = [c for c in columns if c not in front and c not in tail]
        frame = pd.DataFrame(rows).reindex(columns=front + tail + middle)
        return frame.set_index("point")

    @property
    def complete(self) -> bool:
        return not self.interrupted and len(self.rows) == len(self.points)

    @property
    def invalid_points(self) -> list[int]:
        """Points whose scenario was refused (invalid, unstable): findings of the sweep."""
        return [p.index for p in self.points if p.scenario is None]

    @property
    def failed_points(self) -> list[int]:
        """Points run in which a replication failed (raised): a problem with the model or the
        scenario, not a finding. A sweep with any is not a success."""
        return [p.index for p in self.points if p.index in self.rows and self.rows[p.index].get("replications_failed")]

    def summary(self) -> dict:
        """The JSON form: the sweep's settings and one nested row per point."""
        return {
            "source": str(self.source),
            "scenario": next((p.scenario.name for p in self.points if p.scenario is not None), None),
            "overrides": list(self.overrides),
            "axes": [{"path": a.path, "values": [v.text for v in a.values]} for a in self.axes],
            "metric": self.metric,
            "points_total": len(self.points),
            "points_done": len(self.rows),
            "points_resumed": len(self.resumed),
            "points_invalid": len(self.invalid_points),
            "points_failed": len(self.failed_points),
            "replications_run": self.replications_run,
            "executor": self.executor,
            "interrupted": self.interrupted,
            "wall_s": self.wall_s,
            "points": [nested_row(self.rows[p.index], self.axes) for p in self.points if p.index in self.rows],
        }

    # --- plots ------------------------------------------------------------------------------------

    def plot(self, metric: str | None = None, x: str | None = None, ax=None, theory: bool = True):
        """``metric`` (mean and 95% CI) against the varied path ``x`` (the first numeric axis by
        default), one line per combination of the other axes; the analytic value where the system
        has a queueing model, and the SLO's target when the metric has one."""
        return plot_sweep_metric(self, metric or self.metric, x, ax, theory)

    def plot_hockey_stick(self, ax=None, metrics: Sequence[str] = ("system.latency_s.mean", "system.latency_s.p99"), theory: bool = True):
        """Latency against the offered load per worker (λ·E[S]/c of the busiest stage): the
        hockey stick, with queueing theory where it applies."""
        return plot_hockey_stick(self, metrics, ax, theory)

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write sweep.csv, sweep.parquet, sweep.json and the plots into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        table = self.table.reset_index()
        written = []
        if not table.empty:
            table.to_csv(out / "sweep.csv", index=False)
            written.append(out / "sweep.csv")
            for column in table.columns:
                if table[column].dtype == object:
                    kinds = {type(v) for v in table[column] if v is not None and not is_nan(v)}
                    if len(kinds) > 1:
                        table[column] = table[column].map(lambda v: None if v is None or is_nan(v) else str(v))
            table.to_parquet(out / "sweep.parquet", index=False)
            written.append(out / "sweep.parquet")
        (out / "sweep.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        written.append(out / "sweep.json")
        written += self.save_plots(out)
        return written

    def save_plots(self, out: Path) -> list[Path]:
        from matplotlib.figure import Figure

        written = []
        table = self.table
        if table.empty or not any(a.numeric for a in self.axes):
            return written
        jobs = []
        if self.metric in table.columns:
            jobs.append((f"{self.metric}.png", lambda ax: self.plot(ax=ax)))
        if "system.latency_s.mean" in table.columns and self.offered_loads():
            jobs.append(("hockey_stick.png", lambda ax: self.plot_hockey_stick(ax=ax)))
        for filename, draw in jobs:
            figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
            draw(figure.subplots())
            figure.savefig(out / filename, dpi=110, metadata={"Software": None})
            written.append(out / filename)
        return written

    # --- helpers for plots --------------------------------------------------------------------------

    def offered_loads(self) -> dict[int, float]:
        """λ·E[S]/c of the busiest broker of each valid point."""
        loads = {}
        for p in self.points:
            if p.scenario is not None:
                flows = broker_flows(p.scenario)
                if flows:
                    loads[p.index] = max(f.offered_load for f in flows.values())
        return loads

    def dense_theory(self, axis_path: str, fixed: dict[str, Value]) -> list[tuple[float, float, Any]]:
        """(value of ``axis_path``, offered load, Theory) on a fine grid between the axis's
        smallest and largest values, the other axes at ``fixed``; points without a model skipped."""
        key = (axis_path, tuple(sorted((k, v.text) for k, v in fixed.items())))
        if key in self._dense:
            return self._dense[key]
        axis = next(a for a in self.axes if a.path == axis_path)
        numbers = [v.number for v in axis.values]
        lo, hi = min(numbers), max(numbers)
        if axis.integer:
            grid = list(range(lo, hi + 1)) if hi - lo <= 120 else sorted({int(round(x)) for x in np.linspace(lo, hi, 120)})
        else:
            grid = sorted(set(np.linspace(lo, hi, 80).tolist()) | set(float(n) for n in numbers))
        out = []
        fixed_overrides = [f"{path}={value.text}" for path, value in fixed.items()]
        for value in grid:
            text = str(value) if isinstance(value, int) else repr(float(value))
            try:
                scenario = load_scenario(self.source, [*self.overrides, *fixed_overrides, f"{axis_path}={text}"])
            except ScenarioError:
                continue
            model = theory_of(scenario)
            if model is None:
                continue
            flows = broker_flows(scenario)
            load = max(f.offered_load for f in flows.values()) if flows else float("nan")
            out.append((float(value), load, model))
        self._dense[key] = out
        return out


# --- the sweep ----------------------------------------------------------------------------------


def run_sweep(
    source: str | Path,
    vary: Iterable[str | Axis] | None = None,
    overrides: Sequence[str] = (),
    replications: int | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    cluster: str | None = None,
    executor: Executor | None = None,
    out_dir: str | Path | None = None,
    resume: bool = True,
    metric: str | None = None,
    on_plan: Callable[[list[Point]], None] | None = None,
    on_start: Callable[[SweepResult, int], None] | None = None,
    on_replication: Callable[[int, int], None] | None = None,
    on_point: Callable[[dict], None] | None = None,
) -> SweepResult:
    """Run a sweep of the scenario file ``source``.

    ``vary`` lists ``PATH=VALUES`` strings (or :class:`Axis` objects); without it, the file's
    ``sweep:`` section. ``overrides`` apply to every point (``--set``). Replications and seed
    default to each point's scenario's. Runs on ``executor`` if given, else on a Dask cluster
    (``cluster``) or ``jobs`` local processes. With ``out_dir``, finished points are appended to
    ``out_dir/points.jsonl`` as they finish and, with ``resume``, points already there are not run
    again; the tables and plots are written at the end (also after Ctrl-C, for what finished).

    Callbacks: ``on_plan(points)`` once every point is loaded, before anything runs (the command
    line refuses a grid too big for the memory there), ``on_start(sweep, replications to run)``, ``on_replication(done, total)`` and
    ``on_point(row)``. Ctrl-C (KeyboardInterrupt) stops the sweep and returns what finished, with
    ``interrupted`` set. A ``metric`` no point produces is an ``UnknownMetricError`` before any
    point runs. A point whose scenario has a ``precision`` (the file's, or ``--precision``) gets
    replications by the precision rule, as ``run`` does (:func:`sim.jobs.results_to_precision`)."""
    started = time.perf_counter()
    source = Path(source)
    file_metric = None
    if vary is None:
        axes, file_metric = axes_of_file(source, overrides)
        if not axes:
            raise ScenarioError(str(source), [Problem("nothing to sweep: give --vary PATH=VALUES, or add a sweep: section with vary: to the file")])
    else:
        axes = axes_from(vary)
        if not axes:
            raise SweepError("nothing to sweep: give at least one PATH=VALUES")
    if metric is not None:
        check_metric(metric)
    points = plan(source, axes, overrides, seed, replications)
    if on_plan is not None:
        on_plan(points)
    sweep = SweepResult(source, axes, tuple(overrides), points, rows={}, metric=metric or file_metric or DEFAULT_METRIC)
    check_metric(sweep.metric, (p.scenario for p in points if p.scenario is not None))

    for p in points:
        if p.scenario is None:
            sweep.rows[p.index] = point_row(p, axes, None)
    jsonl = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        jsonl = out / POINTS_FILE
        if resume:
            done, _ = _load_done(jsonl)
            for p in points:
                row = done.get(p.key)
                if p.scenario is not None and row is not None:
                    row = dict(row, point=p.index, setting=p.setting)
                    sweep.rows[p.index] = row
                    sweep.resumed.append(p.index)
        elif jsonl.exists():
            jsonl.unlink()
    todo = [p for p in points if p.index not in sweep.rows]
    job_list = [Job(p.scenario, p.seed, range(p.replications)) for p in todo]
    total = sum(len(j.replications) for j in job_list)
    if on_start is not None:
        on_start(sweep, total)
    for p in points:
        if p.index in sweep.rows and on_point is not None:
            on_point(sweep.rows[p.index])

    owned = executor is None
    runner = make_executor(jobs, cluster) if owned else executor
    sweep.executor = runner.describe()
    done_replications = 0

    def counted(_j, _outcome):
        nonlocal done_replications, total
        done_replications += 1
        total = max(total, done_replications)  # a precision's further rounds were not counted at the start
        if on_replication is not None:
            on_replication(done_replications, total)

    try:
        for j, result in results_to_precision(job_list, runner, counted):
            p, failures = todo[j], result.failures
            row = point_row(p, axes, result)
            sweep.rows[p.index] = row
            sweep.results[p.index] = result
            if jsonl is not None and not failures:
                with jsonl.open("a") as f:
                    f.write(json.dumps({k: json_safe(v) for k, v in row.items()}) + "\n")
            if on_point is not None:
                on_point(row)
    except KeyboardInterrupt:
        sweep.interrupted = True
    finally:
        sweep.replications_run = done_replications
        if owned:
            runner.close()
    sweep.wall_s = time.perf_counter() - started
    if out_dir is not None:
        sweep.save(out_dir)
    return sweep
