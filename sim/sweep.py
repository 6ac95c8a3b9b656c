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

Values
    ``8..32:4`` (8, 12, ... 32: START..END[:STEP], END included when reached; integers step by 1
    unless told), ``10/s..50/s:10/s`` (units: rates and durations as in scenario files, values in
    the unit of START), ``100/s..1600/s:*2`` (a geometric range), ``8,12,16`` or
    ``100/s,200/s,400/s`` (a list), or one value.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .executors import Executor, make_executor
from .loading import Problem, ScenarioError, load_scenario
from .result import SLO_METRICS, Result, _nest
from .runner import ReplicationFailure, ReplicationResult, _safe_replication
from .schema import Scenario
from .units import _DURATION, _RATE, _unit_seconds

DEFAULT_METRIC = "system.latency_s.p99"
MAX_VALUES = 10_000
ROW_FORMAT = 1
POINTS_FILE = "points.jsonl"


class SweepError(ValueError):
    """A malformed ``--vary`` or ``sweep:`` value."""


# --- values -------------------------------------------------------------------------------------

_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")
_NUMBER = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$")


@dataclass(frozen=True)
class Quantity:
    """A number as written: its value in seconds / per second / plain, and its unit."""

    si: float | int
    kind: str  # "number", "rate" or "duration"
    unit: str = ""  # "s", "min"... for a rate or a duration
    per_unit: float = 1.0  # SI value of one unit

    def label(self, si: float | int) -> str:
        if self.kind == "number":
            return str(si) if isinstance(si, int) else _format_float(si)
        value = _format_float(si / self.per_unit)
        return f"{value}/{self.unit}" if self.kind == "rate" else f"{value}{self.unit}"


def _format_float(x: float) -> str:
    text = f"{x:.10g}"
    return text


def quantity(text: str) -> Quantity | None:
    """``text`` as a number, a rate (``200/s``) or a duration (``80ms``); None if it is none of them.

    Raises :class:`SweepError` for a number with an unknown unit (``10x``)."""
    if _INTEGER.match(text):
        return Quantity(int(text), "number")
    if _NUMBER.match(text):
        return Quantity(float(text), "number")
    for pattern, kind in ((_RATE, "rate"), (_DURATION, "duration")):
        match = pattern.match(text)
        if match:
            try:
                seconds = _unit_seconds(match.group(2), text)
            except ValueError as exc:
                raise SweepError(str(exc)) from None
            number = float(match.group(1))
            if kind == "rate":
                return Quantity(number / seconds, "rate", match.group(2), 1.0 / seconds)
            return Quantity(number * seconds, "duration", match.group(2), seconds)
    return None


@dataclass(frozen=True)
class Value:
    """One value of an axis: ``text`` goes into the override (``path=text``) and labels the point;
    ``number`` is its value in seconds, per second or plain (``text`` itself when not a number)."""

    text: str
    number: Any

    def __str__(self) -> str:
        return self.text


def _split_list(text: str) -> list[str]:
    """Split at commas outside brackets and braces."""
    items, depth, current = [], 0, []
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [item.strip() for item in items]


def _value_of(item: Any) -> Value:
    if isinstance(item, bool):
        return Value(str(item).lower(), item)
    if isinstance(item, int):
        return Value(str(item), item)
    if isinstance(item, float):
        if not math.isfinite(item):
            raise SweepError(f"{item} is not a finite number")
        return Value(_format_float(item), item)
    if isinstance(item, (dict, list)):
        text = json.dumps(item)
        return Value(text, text)
    text = str(item).strip()
    if not text:
        raise SweepError("an empty value")
    q = quantity(text)
    return Value(text, q.si if q is not None else text)


def _range(text: str) -> list[Value]:
    parts = text.split("..")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise SweepError(f"bad range '{text}': expected START..END[:STEP] (e.g. 8..32:4, 10/s..50/s:10/s or 100/s..1600/s:*2)")
    start_text, rest = parts[0].strip(), parts[1]
    end_text, colon, step_text = (s.strip() for s in rest.partition(":"))
    if colon and not step_text:
        raise SweepError(f"bad range '{text}': nothing after ':' (write the step, e.g. 8..32:4)")
    geometric = step_text.startswith("*")
    if geometric:
        step_text = step_text[1:].strip()

    def endpoint(part: str, what: str) -> Quantity:
        q = quantity(part)
        if q is None:
            raise SweepError(f"bad range '{text}': {what} '{part}' is not a number, a rate (200/s) or a duration (80ms)")
        return q

    start, end = endpoint(start_text, "START"), endpoint(end_text, "END")
    kinds = {start.kind, end.kind} - {"number"}
    step = None
    if step_text:
        step = endpoint(step_text, "factor" if geometric else "STEP")
        if geometric and step.kind != "number":
            raise SweepError(f"bad range '{text}': the factor after ':*' is a plain number (e.g. :*2)")
        if not geometric:
            kinds |= {step.kind} - {"number"}
    if len(kinds) > 1:
        raise SweepError(f"bad range '{text}': mixes a rate and a duration")
    unit_of = next((q for q in (start, end, step) if q is not None and q.kind != "number" and not (q is step and geometric)), start)
    lo, hi = start.si, end.si
    if hi < lo:
        raise SweepError(f"bad range '{text}': END is below START")
    integers = all(isinstance(q.si, int) for q in (start, end)) and (step is None or geometric or isinstance(step.si, int))
    if geometric:
        factor = float(step.si)
        if not factor > 1:
            raise SweepError(f"bad range '{text}': the factor must be above 1")
        if lo <= 0:
            raise SweepError(f"bad range '{text}': a geometric range starts above 0")
        count = int(math.floor(math.log(hi / lo) / math.log(factor) + 1e-9)) + 1
        numbers = [lo * factor**i for i in range(count)] if count <= MAX_VALUES else []
        if integers:
            numbers = sorted({int(round(x)) for x in numbers})
    else:
        if step is None:
            if not integers:
                raise SweepError(f"bad range '{text}': a range of non-whole numbers needs a step (e.g. {start_text}..{end_text}:STEP)")
            width = 1
        else:
            width = step.si
        if not width > 0:
            raise SweepError(f"bad range '{text}': the step must be above 0")
        count = int(math.floor((hi - lo) / width + 1e-9)) + 1
        if count <= MAX_VALUES:
            numbers = [lo + i * width for i in range(count)] if integers else [float(f"{lo + i * width:.12g}") for i in range(count)]
        else:
            numbers = []
    if count > MAX_VALUES:
        raise SweepError(f"range '{text}' gives {count:,} values; at most {MAX_VALUES:,}")
    if unit_of.kind == "number" and not integers:
        return [Value(_format_float(x), x) for x in numbers]
    return [Value(unit_of.label(x), x) for x in numbers]


def parse_values(values: Any) -> list[Value]:
    """The values an axis takes: a range, a comma list, a list, or a single value."""
    if isinstance(values, (list, tuple)):
        if not values:
            raise SweepError("an empty list of values")
        return [_value_of(item) for item in values]
    if isinstance(values, (int, float, bool)):
        return [_value_of(values)]
    text = str(values).strip()
    if not text:
        raise SweepError("no values (expected a range START..END[:STEP] or a list A,B,C)")
    if text.startswith("["):
        from ruamel.yaml import YAML

        try:
            items = YAML(typ="safe").load(text)
        except Exception as exc:
            raise SweepError(f"'{text}' is not a valid list: {exc}") from None
        return parse_values(list(items))
    items = _split_list(text)
    if len(items) > 1:
        if any(not item for item in items):
            raise SweepError(f"'{text}' has an empty item between commas")
        out: list[Value] = []
        for item in items:
            out.extend(_range(item) if ".." in item else [_value_of(item)])
        return out
    if ".." in text:
        return _range(text)
    return [_value_of(text)]


@dataclass(frozen=True)
class Axis:
    """A varied path and its values."""

    path: str
    values: tuple[Value, ...]

    @property
    def numeric(self) -> bool:
        return all(isinstance(v.number, (int, float)) and not isinstance(v.number, bool) for v in self.values)

    @property
    def integer(self) -> bool:
        return all(isinstance(v.number, int) and not isinstance(v.number, bool) for v in self.values)

    @property
    def unit(self) -> str:
        """'per second', 's' or '' from how the values were written."""
        kinds = set()
        for v in self.values:
            try:
                q = quantity(v.text)
            except SweepError:
                q = None
            kinds.add(q.kind if q else "")
        if kinds == {"rate"}:
            return "per second"
        if kinds == {"duration"}:
            return "s"
        return ""

    def describe(self) -> str:
        return f"{self.path} = {', '.join(v.text for v in self.values)}"


_PATH = re.compile(r"^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$")


def parse_axis(path: str, values: Any) -> Axis:
    """An axis from a path and its values; :class:`SweepError` names the path on a problem."""
    path = str(path).strip()
    if not _PATH.match(path):
        raise SweepError(f"'{path}' is not a path such as workers.renderer.count")
    try:
        parsed = parse_values(values)
    except SweepError as exc:
        raise SweepError(f"{path}: {exc}") from None
    texts = [v.text for v in parsed]
    if len(set(texts)) != len(texts):
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        raise SweepError(f"{path}: value(s) {', '.join(repeated)} given twice")
    return Axis(path, tuple(parsed))


def parse_vary(spec: str) -> Axis:
    """``PATH=VALUES`` as ``--vary`` takes it."""
    path, sep, values = spec.partition("=")
    if not sep or not path.strip():
        raise SweepError(f"expected PATH=VALUES (e.g. workers.renderer.count=8..32:4), got '{spec}'")
    return parse_axis(path, values)


def axes_from(vary: Iterable[str | Axis]) -> list[Axis]:
    axes = [v if isinstance(v, Axis) else parse_vary(v) for v in vary]
    paths = [a.path for a in axes]
    for path in paths:
        if paths.count(path) > 1:
            raise SweepError(f"{path} is varied twice")
    return axes


def axes_of_file(path: str | Path, overrides: Sequence[str] = ()) -> tuple[list[Axis], str | None]:
    """The axes of the file's ``sweep:`` section and its metric (([], None) without a section).

    The base scenario need not be valid (it may be unstable at the file's own values); only the
    ``sweep:`` section must be."""
    try:
        scenario = load_scenario(path, overrides)
        spec = scenario.sweep
    except ScenarioError as exc:
        from ruamel.yaml import YAML

        from .schema import SweepSpec

        try:
            data = YAML(typ="safe").load(Path(path).read_text())
        except Exception:
            raise exc from None
        raw = data.get("sweep") if isinstance(data, dict) else None
        if raw is None:
            return [], None
        try:
            spec = SweepSpec.model_validate(raw)
        except Exception:
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


# --- running ------------------------------------------------------------------------------------


@dataclass
class Job:
    """Replications ``replications`` (indices) of ``scenario`` with ``seed``."""

    scenario: Scenario
    seed: int
    replications: range


def run_jobs(
    jobs: Sequence[Job],
    executor: Executor,
    on_replication: Callable[[int, object], None] | None = None,
) -> Iterator[tuple[int, list[ReplicationResult], list[ReplicationFailure]]]:
    """Run every replication of every job on ``executor``, one task per (job, replication); yield
    ``(job index, results in replication order, failures)`` as each job's last replication ends.

    Tasks are queued job by job, so jobs tend to finish in order (and a sweep can persist them)."""
    tasks, owner = [], []
    for j, job in enumerate(jobs):
        for r in job.replications:
            tasks.append((job.scenario, r, job.seed))
            owner.append(j)
    remaining = [len(job.replications) for job in jobs]
    collected: list[list | None] = [[] for _ in jobs]
    for j, n in enumerate(remaining):
        if n == 0:
            yield j, [], []
    for index, outcome in executor.map_unordered(_safe_replication, tasks):
        j = owner[index]
        collected[j].append(outcome)
        remaining[j] -= 1
        if on_replication is not None:
            on_replication(j, outcome)
        if remaining[j] == 0:
            outcomes, collected[j] = collected[j], None
            results = sorted((o for o in outcomes if isinstance(o, ReplicationResult)), key=lambda r: r.replication)
            failures = sorted((o for o in outcomes if isinstance(o, ReplicationFailure)), key=lambda f: f.replication)
            yield j, results, failures


# --- rows ---------------------------------------------------------------------------------------

BOOKKEEPING = ("point", "setting", "seed", "replications", "replications_done", "key")
CHECKS = ("littles_law_ok", "conservation_ok", "slo_met", "ok", "error", "wall_s")


def point_row(point: Point, axes: Sequence[Axis], result: Result | None) -> dict:
    """The flat row of a point: values varied, every metric's mean and 95% CI, counts, checks, SLO."""
    row: dict[str, Any] = {"point": point.index, "setting": point.setting}
    for axis, value in zip(axes, point.values):
        row[axis.path] = value.number
    row.update(seed=point.seed, replications=point.replications, key=point.key)
    if result is None:
        row.update(replications_done=0, littles_law_ok=None, conservation_ok=None, slo_met=None, ok=False, error=point.error, wall_s=0.0)
        return row
    row["replications_done"] = len(result.results)
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
    out: dict[str, Any] = {"point": row["point"], "setting": row["setting"], "values": {a.path: _json_safe(row.get(a.path)) for a in axes}}
    for key in ("seed", "replications", "replications_done"):
        out[key] = row.get(key)
    estimates = {m: {"mean": _json_safe(row[m]), "ci95": [_json_safe(row[f"{m}.ci95_low"]), _json_safe(row[f"{m}.ci95_high"])]} for m in metric_columns(row)}
    out.update(_nest(estimates))
    counts = {k.split(".", 1)[1]: row[k] for k in row if k.startswith("counts.")}
    if counts:
        out["counts"] = {k: int(v) for k, v in counts.items() if v is not None and not _isnan(v)}
    slo = {k.split(".", 1)[1]: row[k] for k in row if k.startswith("slo.") and row[k] is not None and not _isnan(row[k])}
    if slo:
        out["slo"] = slo
    for key in CHECKS:
        out[key] = _json_safe(row.get(key))
    return out


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _json_safe(x: Any) -> Any:
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


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
    def failed_points(self) -> list[int]:
        """Points whose scenario was refused or one of whose replications failed."""
        return [i for i, row in self.rows.items() if row.get("error")]

    def summary(self) -> dict:
        """The JSON form: the sweep's settings and one nested row per point."""
        invalid = [p.index for p in self.points if p.scenario is None]
        crashed = [i for i in self.failed_points if i not in invalid]
        return {
            "source": str(self.source),
            "scenario": next((p.scenario.name for p in self.points if p.scenario is not None), None),
            "overrides": list(self.overrides),
            "axes": [{"path": a.path, "values": [v.text for v in a.values]} for a in self.axes],
            "metric": self.metric,
            "points_total": len(self.points),
            "points_done": len(self.rows),
            "points_resumed": len(self.resumed),
            "points_invalid": len(invalid),
            "points_with_failed_replications": len(crashed),
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
                    kinds = {type(v) for v in table[column] if v is not None and not _isnan(v)}
                    if len(kinds) > 1:
                        table[column] = table[column].map(lambda v: None if v is None or _isnan(v) else str(v))
            table.to_parquet(out / "sweep.parquet", index=False)
            written.append(out / "sweep.parquet")
        (out / "sweep.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        written.append(out / "sweep.json")
        written += self.save_plots(out)
        return written

    def save_plots(self, out: Path) -> list[Path]:
        from matplotlib.figure import Figure

        from .plots import FIGURE_SIZE

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
        from .topology import broker_flows

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
        from .capacity import theory_of
        from .topology import broker_flows

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

    Callbacks: ``on_start(sweep, replications to run)``, ``on_replication(done, total)`` and
    ``on_point(row)``. Ctrl-C (KeyboardInterrupt) stops the sweep and returns what finished, with
    ``interrupted`` set."""
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
    points = plan(source, axes, overrides, seed, replications)
    sweep = SweepResult(source, axes, tuple(overrides), points, rows={}, metric=metric or file_metric or DEFAULT_METRIC)

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
        nonlocal done_replications
        done_replications += 1
        if on_replication is not None:
            on_replication(done_replications, total)

    try:
        for j, results, failures in run_jobs(job_list, runner, counted):
            p = todo[j]
            result = Result(p.scenario, p.seed, p.replications, results, failures)
            row = point_row(p, axes, result)
            sweep.rows[p.index] = row
            sweep.results[p.index] = result
            if jsonl is not None and not failures:
                with jsonl.open("a") as f:
                    f.write(json.dumps({k: _json_safe(v) for k, v in row.items()}) + "\n")
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


# --- plots --------------------------------------------------------------------------------------

LATENCY_LABELS = {"mean": "mean", "p50": "p50", "p95": "p95", "p99": "p99", "p999": "p99.9"}


def metric_label(metric: str) -> str:
    """A readable name for a flat metric: ``system.latency_s.p99`` → ``p99 latency (s)``."""
    parts = metric.split(".")
    if parts[0] == "system" and len(parts) == 3 and parts[1] == "latency_s":
        return f"{LATENCY_LABELS.get(parts[2], parts[2])} end-to-end latency (s)"
    if metric == "system.throughput_per_s":
        return "throughput (per second)"
    return metric


def _axes(ax, title):
    if ax is None:
        import matplotlib.pyplot as plt

        from .plots import FIGURE_SIZE

        _, ax = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
    ax.set_title(title)
    return ax


def _groups(sweep: SweepResult, x_path: str) -> list[tuple[dict[str, Value], list[Point]]]:
    """Points grouped by the values of the axes other than ``x_path``, in grid order."""
    others = [a for a in sweep.axes if a.path != x_path]
    groups: dict[tuple, tuple[dict, list]] = {}
    for p in sweep.points:
        fixed = {a.path: v for a, v in zip(sweep.axes, p.values) if a.path != x_path}
        key = tuple(fixed[a.path].text for a in others)
        groups.setdefault(key, (fixed, []))[1].append(p)
    return list(groups.values())


def _slo_target(sweep: SweepResult, metric: str) -> tuple[str, float] | None:
    scenario = next((p.scenario for p in sweep.points if p.scenario is not None), None)
    if scenario is None or scenario.slo is None:
        return None
    for key, (slo_metric, _sense) in SLO_METRICS.items():
        target = getattr(scenario.slo, key, None)
        if slo_metric == metric and target is not None:
            return key, float(target)
    return None


def _target_label(key: str, target: float) -> str:
    from .units import format_duration

    return f"SLO {key} {format_duration(target) if key.startswith('latency') else f'{target:g}'}"


def _errorbars(ax, xs, rows, metric, label, marker="o", color=None):
    means = np.array([_nan(r.get(metric)) for r in rows])
    lows = np.array([_nan(r.get(f"{metric}.ci95_low")) for r in rows])
    highs = np.array([_nan(r.get(f"{metric}.ci95_high")) for r in rows])
    lows = np.where(np.isnan(lows), means, lows)
    highs = np.where(np.isnan(highs), means, highs)
    order = np.argsort(xs)
    xs, means, lows, highs = np.asarray(xs)[order], means[order], lows[order], highs[order]
    bars = ax.errorbar(xs, means, yerr=[means - lows, highs - means], fmt=f"{marker}-", capsize=3, label=label, color=color)
    return bars.lines[0].get_color(), np.nanmax(highs) if np.isfinite(highs).any() else np.nan


def _nan(x) -> float:
    return float("nan") if x is None else float(x)


def _mark_failed(ax, xs, labels):
    if xs:
        ax.plot(xs, [0.02] * len(xs), "x", color="tab:red", transform=ax.get_xaxis_transform(), clip_on=False,
                label="no result (" + ", ".join(sorted(set(labels))) + ")")


def _failure_kind(row: dict) -> str:
    error = row.get("error") or ""
    if "unstable" in error:
        return "unstable"
    if row.get("replications_done", 0) == 0:
        return "invalid"
    return "failed replications"


def plot_sweep_metric(sweep: SweepResult, metric: str, x: str | None = None, ax=None, theory: bool = True):
    """``metric`` against the varied path ``x`` with 95% CI error bars; queueing theory (dashed)
    where the system has a model; the SLO's target (red) if the metric has one."""
    numeric = [a for a in sweep.axes if a.numeric]
    axis = next((a for a in sweep.axes if a.path == x), None) if x else (numeric[0] if numeric else None)
    if axis is None or not axis.numeric:
        raise ValueError(f"cannot plot against {x or 'a varied path'}: plots need a numeric axis (have {', '.join(a.path for a in sweep.axes)})")
    ax = _axes(ax, f"{_scenario_name(sweep)}: {metric_label(metric)}")
    top = 0.0
    failed_x, failed_kind = [], []
    for fixed, points in _groups(sweep, axis.path):
        label = ", ".join(f"{k}={v.text}" for k, v in fixed.items()) or "simulation (95% CI)"
        good = [(p.values[sweep.axes.index(axis)].number, sweep.rows[p.index]) for p in points
                if p.index in sweep.rows and sweep.rows[p.index].get(metric) is not None and not _isnan(sweep.rows[p.index].get(metric))]
        for p in points:
            row = sweep.rows.get(p.index)
            if row is not None and (row.get(metric) is None or _isnan(row.get(metric))):
                failed_x.append(p.values[sweep.axes.index(axis)].number)
                failed_kind.append(_failure_kind(row))
        color = None
        if good:
            color, high = _errorbars(ax, [g[0] for g in good], [g[1] for g in good], metric, label)
            top = max(top, high if np.isfinite(high) else 0.0)
        if theory:
            curve = [(v, model.values[metric]) for v, _load, model in sweep.dense_theory(axis.path, fixed) if metric in model.values]
            if curve:
                models = {model.model for _v, _l, model in sweep.dense_theory(axis.path, fixed) if metric in model.values}
                exact = all(model.values[metric][1] for _v, _l, model in sweep.dense_theory(axis.path, fixed) if metric in model.values)
                kind = "exact" if exact else "approximation"
                ax.plot([c[0] for c in curve], [c[1][0] for c in curve], "--", color=color, alpha=0.8,
                        label=f"{' / '.join(sorted(models))} ({kind})" + (f", {label}" if fixed else ""))
    target = _slo_target(sweep, metric)
    if target is not None:
        ax.axhline(target[1], color="tab:red", linestyle=":", label=_target_label(*target))
        top = max(top, target[1])
    _mark_failed(ax, failed_x, failed_kind)
    if top > 0:
        ax.set_ylim(bottom=0, top=top * 1.25)
    ax.set_xlabel(axis.path + (f" ({axis.unit})" if axis.unit else ""))
    ax.set_ylabel(metric_label(metric))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def plot_hockey_stick(sweep: SweepResult, metrics: Sequence[str] = ("system.latency_s.mean", "system.latency_s.p99"), ax=None, theory: bool = True):
    """Latency against offered load per worker with 95% CIs, and queueing theory where it applies."""
    ax = _axes(ax, f"{_scenario_name(sweep)}: latency against load")
    loads = sweep.offered_loads()
    numeric = [a for a in sweep.axes if a.numeric]
    axis = numeric[0] if numeric else None
    top = 0.0
    colours = {}
    for metric in metrics:
        for fixed, points in (_groups(sweep, axis.path) if axis else [({}, sweep.points)]):
            rows = [(loads[p.index], sweep.rows[p.index]) for p in points
                    if p.index in loads and p.index in sweep.rows and sweep.rows[p.index].get(metric) is not None]
            suffix = (" " + ", ".join(f"{k}={v.text}" for k, v in fixed.items())) if fixed else ""
            if not rows:
                continue
            short = metric.rsplit(".", 1)[-1]
            color, high = _errorbars(ax, [r[0] for r in rows], [r[1] for r in rows], metric, f"{LATENCY_LABELS.get(short, short)} simulated{suffix}")
            colours.setdefault(metric, color)
            top = max(top, high if np.isfinite(high) else 0.0)
            if theory and axis is not None:
                curve = sorted((load, model.values[metric][0], model) for _v, load, model in sweep.dense_theory(axis.path, fixed) if metric in model.values)
                if curve:
                    exact = all(m.values[metric][1] for _l, _y, m in curve)
                    names = " / ".join(sorted({m.model for _l, _y, m in curve}))
                    ax.plot([c[0] for c in curve], [c[1] for c in curve], "--", color=color, alpha=0.8,
                            label=f"{LATENCY_LABELS.get(short, short)} {names} ({'exact' if exact else 'approximation'}){suffix}")
    for metric in metrics:
        target = _slo_target(sweep, metric)
        if target is not None:
            ax.axhline(target[1], color=colours.get(metric, "tab:red"), linestyle=":", label=_target_label(*target))
            top = max(top, target[1])
    if top > 0:
        ax.set_ylim(bottom=0, top=top * 1.25)
    ax.set_xlabel("offered load per worker, λ·E[S]/c (busiest stage)")
    ax.set_ylabel("end-to-end latency (s)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return ax


def _scenario_name(sweep: SweepResult) -> str:
    return next((p.scenario.name for p in sweep.points if p.scenario is not None), sweep.source.stem)
