"""Dotted paths into scenario data: ``--set PATH=VALUE`` and the value found at a path.

A path names a key at each level (``workers.renderer.count``); in a list, an item is named by
its ``name`` or, failing that, by its index (``arrivals.steps.0.rate``). The data is what the
YAML reader gives (:func:`parse_yaml`) or a scenario's ``model_dump()``.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from .problems import Problem, ScenarioError


def parse_yaml(text: str, source: str) -> Any:
    """The mapping of a scenario file, with line numbers (ruamel's round-trip reader)."""
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise ScenarioError(source, [Problem(f"not valid YAML: {what}", line=line)]) from None
    if not isinstance(data, dict):
        raise ScenarioError(source, [Problem("a scenario file is a mapping of keys (name, duration, producers, ...)")])
    return data


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
        raise ScenarioError(source, [Problem(f"--set takes PATH=VALUE (e.g. workers.pool.count=12), got '{spec}'")])
    parts = key_path.strip().split(".")
    value = YAML(typ="safe").load(raw) if raw.strip() else None
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
