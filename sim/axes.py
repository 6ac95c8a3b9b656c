"""The value syntax of ``--vary`` and of a scenario's ``sweep:`` section: axes and their values.

Values
    ``8..32:4`` (8, 12, ... 32: START..END[:STEP], END included when reached; integers step by 1
    unless told), ``10/s..50/s:10/s`` (units: rates and durations as in scenario files, values in
    the unit of START), ``100/s..1600/s:*2`` (a geometric range), ``8,12,16`` or
    ``100/s,200/s,400/s`` (a list), or one value.

An :class:`Axis` is a ``--set`` path and its values; each :class:`Value` keeps the text that goes
into the override and its number in seconds, per second or plain.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable

from ruamel.yaml import YAML

from .units import DURATION_RE, RATE_RE, unit_seconds

MAX_VALUES = 10_000


class SweepError(ValueError):
    """A malformed ``--vary`` or ``sweep:`` value."""


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
            return str(si) if isinstance(si, int) else format_float(si)
        value = format_float(si / self.per_unit)
        return f"{value}/{self.unit}" if self.kind == "rate" else f"{value}{self.unit}"


def format_float(x: float) -> str:
    """A float as short as it can be written to ten significant digits."""
    return f"{x:.10g}"


def quantity(text: str) -> Quantity | None:
    """``text`` as a number, a rate (``200/s``) or a duration (``80ms``); None if it is none of them.

    Raises :class:`SweepError` for a number with an unknown unit (``10x``)."""
    if _INTEGER.match(text):
        return Quantity(int(text), "number")
    if _NUMBER.match(text):
        return Quantity(float(text), "number")
    for pattern, kind in ((RATE_RE, "rate"), (DURATION_RE, "duration")):
        match = pattern.match(text)
        if match:
            try:
                seconds = unit_seconds(match.group(2), text)
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
        return Value(format_float(item), item)
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
        return [Value(format_float(x), x) for x in numbers]
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
    """Axes from ``PATH=VALUES`` strings (or Axis objects); a path varied twice is an error."""
    axes = [v if isinstance(v, Axis) else parse_vary(v) for v in vary]
    paths = [a.path for a in axes]
    for path in paths:
        if paths.count(path) > 1:
            raise SweepError(f"{path} is varied twice")
    return axes
