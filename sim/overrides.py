"""Dotted paths into scenario data: ``--set PATH=VALUE`` and the value found at a path.

A path names a key at each level (``workers.renderer.count``); in a list, an item is named by
its ``name`` or, failing that, by its index (``arrivals.steps.0.rate``). The data is what the
YAML reader gives (:func:`parse_yaml`) or a scenario's ``model_dump()``.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from .problems import Problem, ScenarioError, short_repr, shorten


MAX_FILE_BYTES = 1_000_000
"""The largest scenario file read (1 MB): four hundred times the largest example."""

MAX_VALUES = 20_000
"""The most values (mappings, lists and scalars, each alias counted as all it repeats) a scenario
file may hold: a few lines of nested aliases (a "billion laughs") would otherwise expand to
billions of values when validated."""

MAX_DEPTH = 50
"""The deepest nesting of mappings and lists a scenario file may have (a real one has under 10)."""


def check_size(size_bytes: int, source: str) -> None:
    """Refuse a file larger than :data:`MAX_FILE_BYTES` before reading it."""
    if size_bytes > MAX_FILE_BYTES:
        raise ScenarioError(source, [Problem(f"the file is {size_bytes / 1e6:.1f} MB; scenario files are limited to {MAX_FILE_BYTES / 1e6:g} MB")])


def parse_yaml(text: str, source: str) -> Any:
    """The mapping of a scenario file, with line numbers (ruamel's round-trip reader).

    The file's shape is checked first, from the reader's stream of events (which needs no
    recursion): at most :data:`MAX_VALUES` values and :data:`MAX_DEPTH` levels of nesting."""
    check_size(len(text.encode()), source)
    try:
        problem = shape_problem(text)
        if problem is not None:
            raise ScenarioError(source, [problem])
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise ScenarioError(source, [Problem(f"not valid YAML: {shorten(what)}", line=line)]) from None
    except ReaderError as exc:  # a character YAML does not allow: located by its position
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ScenarioError(source, [Problem(f"not valid YAML: the character #x{code:04x} is not allowed", line=line)]) from None
    if data is None:
        raise ScenarioError(source, [Problem("the file is empty (or only comments); a scenario file is a mapping of keys (name, duration, producers, ...)", line=1)])
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"the single value {short_repr(data)}"
        raise ScenarioError(source, [Problem(f"a scenario file is a mapping of keys (name, duration, producers, ...), got {what}", line=1)])
    return data


def shape_problem(text: str) -> Problem | None:
    """What is wrong with the size or depth of the YAML ``text``: the values it holds (an alias
    counted as all it repeats) and how deep it nests, counted from the reader's events (no
    recursion, nothing built) up to the first line past a limit; None if nothing."""
    open_frames: list[list] = []  # per open mapping or list: [values inside, levels below, anchor]
    anchored: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of what it names
    total = 0
    for event in YAML(typ="rt").parse(text):
        kind = type(event).__name__
        values, levels, anchor = 0, 0, None  # what the event adds to the mapping or list it is in
        if kind in ("MappingStartEvent", "SequenceStartEvent"):
            total += 1
            open_frames.append([1, 0, event.anchor])
        elif kind in ("MappingEndEvent", "SequenceEndEvent"):
            values, levels, anchor = open_frames.pop()
            levels += 1
        elif kind == "ScalarEvent":
            total += 1
            values, anchor = 1, event.anchor
        elif kind == "AliasEvent":
            if any(frame[2] == event.anchor for frame in open_frames):
                return _at(event, f"the alias *{shorten(event.anchor)} repeats a mapping or list that contains it")
            values, levels = anchored.get(event.anchor, (1, 0))
            total += values
        if anchor is not None:
            anchored[anchor] = (values, levels)
        if open_frames and kind not in ("MappingStartEvent", "SequenceStartEvent"):
            open_frames[-1][0] += values
            open_frames[-1][1] = max(open_frames[-1][1], levels)
        if len(open_frames) + levels > MAX_DEPTH:
            return _at(event, f"nested more than {MAX_DEPTH} levels deep (the limit for a scenario file)")
        if total > MAX_VALUES:
            return _at(event, f"more than {MAX_VALUES:,} values (an alias counts as all it repeats); that is the limit for a scenario file")
    return None


def _at(event: Any, message: str) -> Problem:
    return Problem(message, line=event.start_mark.line + 1)


def list_index(items: list, part: str) -> int | None:
    """The index of the item named ``part`` (or of index ``part``) in ``items``; None if none."""
    for index, item in enumerate(items):
        if isinstance(item, dict) and str(item.get("name")) == part:
            return index
    if part.isdigit() and int(part) < len(items):
        return int(part)
    return None


def apply_override(data: Any, spec: str, source: str) -> tuple[str, ...]:
    """Set ``a.b.c=value`` in ``data`` (the value read as YAML); returns the path's parts.

    A missing key is added at the last level only; anything else that does not exist is a
    :class:`ScenarioError` blamed on the ``--set``."""
    key_path, sep, raw = spec.partition("=")
    if not sep or not key_path.strip():
        raise ScenarioError(source, [Problem(f"--set takes PATH=VALUE (e.g. workers.pool.count=12), got '{shorten(spec)}'")])
    parts = key_path.strip().split(".")
    try:
        problem = shape_problem(raw)
        value = YAML(typ="safe").load(raw) if raw.strip() else None
    except YAMLError as exc:
        raise ScenarioError(source, [Problem(f"not valid YAML: {shorten(str(getattr(exc, 'problem', None) or exc))}", override=spec)]) from None
    if problem is not None:
        raise ScenarioError(source, [Problem(problem.message, override=spec)])
    node = data
    walked: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            index = list_index(node, part)
            if index is None:
                names = [str(item.get("name")) for item in node if isinstance(item, dict)]
                raise ScenarioError(source, [Problem(f"no item named '{part}' in {'.'.join(walked) or 'the file'} (have: {', '.join(names) or 'none'})", override=spec)])
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            elif part not in node:
                raise ScenarioError(source, [Problem(f"no key '{part}' under {'.'.join(walked) or 'the top level'}", override=spec)])
            else:
                node = node[part]
        else:
            raise ScenarioError(source, [Problem(f"'{'.'.join(walked)}' is a value, not a section", override=spec)])
        walked.append(part)
    return tuple(parts)


def value_at(data: Any, path: str) -> Any:
    """The value at ``path`` in ``data``; :class:`LookupError` names the first part not found."""
    node = data
    for part in path.split("."):
        if isinstance(node, list):
            index = list_index(node, part)
            if index is None:
                raise LookupError(f"no item named '{part}'")
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise LookupError(f"no key '{part}'")
    return node
