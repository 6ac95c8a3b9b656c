"""Loading scenario files: YAML with line numbers, ``--set`` overrides, and errors that say where.

Every problem found is reported at once, each as ``FILE:LINE: field.path: what is wrong``. Items
of a list are named by their ``name`` (``workers.payment-service.count``), the same path that
``--set`` takes. A value that came from ``--set`` is blamed on the ``--set``, not on a line.
"""

from __future__ import annotations

import difflib
import types
import typing
from io import StringIO
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML

from .components.base import Reference, references
from .components.brokers import dead_letter_queues
from .components.registry import SECTIONS, kind_of, kinds_in, kinds_used, parts_in
from .overrides import apply_override, check_size, parse_yaml
from .problems import Problem, ScenarioError, short_repr, shorten
from .schema import Scenario, scenario_model
from .topology import PipelineLoop, broker_order, flows, relayed_to, servers, sources
from .units import format_duration


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    """Read, override and validate a scenario file; raise :class:`ScenarioError` on any problem."""
    path = Path(path)
    source = str(path)
    try:
        check_size(path.stat().st_size, source)
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(source, [Problem(f"cannot read the file: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(source, [Problem(f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}")]) from None
    return load_scenario_text(text, source=source, base_dir=path.parent, overrides=overrides)


def load_scenario_text(text: str, source: str = "<scenario>", base_dir: str | Path = ".", overrides: Iterable[str] = ()) -> Scenario:
    """Validate a scenario given as YAML text; file references resolve against ``base_dir``."""
    data = parse_yaml(text, source)
    applied = [apply_override(data, spec, source) for spec in overrides]
    model = scenario_model(kinds_used(data))
    try:
        scenario = model.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        problems = [_problem_from_error(err, data, applied, model) for err in exc.errors()]
        raise ScenarioError(source, problems) from None
    problems = _wiring_problems(scenario, data, applied)
    if not problems:
        problems = _stability_problems(scenario, data, applied)
    if problems:
        raise ScenarioError(source, problems)
    return scenario


def scenario_from_dict(data: dict, source: str = "<dict>", base_dir: str | Path = ".") -> Scenario:
    """Validate a scenario given as a Python dict (the notebooks' and tests' way in)."""
    yaml = YAML()
    buffer = StringIO()
    yaml.dump(data, buffer)
    return load_scenario_text(buffer.getvalue(), source=source, base_dir=base_dir)


# --- locating and wording problems --------------------------------------------------------------


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _union_members(tp: Any) -> list[Any]:
    """The members of a union, flattened (an optional tagged union is Optional[Annotated[Union]])."""
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) in (typing.Union, getattr(types, "UnionType", None)):
        return [m for a in typing.get_args(tp) if a is not type(None) for m in _union_members(a)]
    return [tp]


def _tag_member(tp: Any, part: Any) -> Any | None:
    """The member of a tagged union whose tag (a Literal field) equals ``part``."""
    for member in _union_members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for field in member.model_fields.values():
                if typing.get_origin(field.annotation) is typing.Literal and part in typing.get_args(field.annotation):
                    return member
    return None


def _step_type(tp: Any, part: Any) -> tuple[Any, bool]:
    """The type one step down ``part`` from ``tp``, and whether ``part`` was a union tag."""
    members = _union_members(tp)
    if len(members) > 1 or (members and _tag_member(tp, part) is not None and not _has_field(members[0], part)):
        member = _tag_member(tp, part)
        if member is not None:
            return member, True
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel) and _field_named(member, part) is not None:
            return _field_named(member, part).annotation, False
        if typing.get_origin(member) is list and isinstance(part, int):
            return typing.get_args(member)[0], False
    return None, False


def _field_named(model: Any, key: Any):
    """The field of ``model`` that the file's ``key`` sets (by its name, or by its alias: ``from``)."""
    for name, field in model.model_fields.items():
        if key == (field.alias or name):
            return field
    return model.model_fields.get(key)


def _has_field(tp: Any, part: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel) and _field_named(tp, part) is not None


def _model_fields(tp: Any) -> list[str]:
    for member in _union_members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return [field.alias or name for name, field in member.model_fields.items()]
    return []


def _locate(loc: tuple, data: Any, model: type[Scenario]) -> tuple[str, int | None, Any, tuple]:
    """Walk ``loc`` through the data and ``model``, the data's scenario model: (display path,
    line, type of parent, raw parts)."""
    node: Any = data
    tp: Any = model
    parent_tp: Any = model
    line = None
    shown: list[str] = []
    raw: list[str] = []
    for part in loc:
        next_tp, is_tag = _step_type(tp, part)
        if is_tag:
            tp = next_tp
            continue
        parent_tp = tp
        tp = next_tp
        if isinstance(node, dict) and part in node:
            line = _key_line(node, part, line)
            node = node[part]
            shown.append(str(part))
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1 if hasattr(node, "lc") else line
            item = node[part]
            name = item.get("name") if isinstance(item, dict) else None
            shown.append(shorten(str(name)) if name is not None else str(part))
            node = item
        else:
            if line is None and hasattr(node, "lc"):
                line = node.lc.line + 1
            shown.append(str(part))
            node = None
        raw.append(shown[-1])
    return ".".join(shown), line, parent_tp, tuple(raw)


def _key_line(node: Any, key: Any, default: int | None) -> int | None:
    """The line of ``key`` in a mapping read from the file; ``default`` for one added by --set."""
    try:
        return node.lc.key(key)[0] + 1
    except (AttributeError, KeyError, TypeError):
        return default


def _override_for(raw_path: tuple, applied: list[tuple[str, ...]]) -> str | None:
    for path in applied:
        if raw_path[: len(path)] == path or path[: len(raw_path)] == raw_path:
            return ".".join(path)
    return None


def _problem_from_error(err: dict, data: Any, applied: list[tuple[str, ...]], model: type[Scenario]) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = loc + (str(ctx.get("discriminator", "")).strip("'"),)
    path, line, parent_tp, raw = _locate(loc, data, model)
    message = _wording(err, kind, ctx, loc, parent_tp)
    if not loc:  # the whole scenario's check (no source at all): blamed on the file's first line
        line = 1
    return Problem(message, path=path, line=line, override=_override_for(raw, applied))


def _wording(err: dict, kind: str, ctx: dict, loc: tuple, parent_tp: Any) -> str:
    value = err.get("input")
    if kind == "extra_forbidden":
        key = shorten(str(loc[-1]))
        valid = _model_fields(parent_tp)
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key '{key}'{hint} (valid keys: {', '.join(valid)})"
    if kind == "missing":
        return "is required but missing"
    if kind == "union_tag_invalid":
        expected = ctx.get("expected_tags", "")
        field = str(ctx.get("discriminator", "")).strip("'")
        return f"unknown {field} '{shorten(str(ctx.get('tag')))}' (expected one of: {expected})"
    if kind == "union_tag_not_found":
        return "is required but missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    comparisons = {"greater_than": "> {gt}", "greater_than_equal": "≥ {ge}", "less_than": "< {lt}", "less_than_equal": "≤ {le}"}
    if kind in comparisons:
        return f"must be {comparisons[kind].format(**ctx)}, got {short_repr(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {short_repr(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {short_repr(value)}"
    if kind == "list_type":
        return f"must be a list (items starting with '- '), got {type(value).__name__}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys, got {short_repr(value)}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{short_repr(value)} is not a valid name (letters, digits, _ and - only: a dot would clash with --set paths)"
    return f"{err['msg']}, got {short_repr(value)}"


def _bounded_by_back_pressure(scenario: Scenario, flows: dict) -> set[str]:
    """Brokers whose queue cannot grow without bound although more is offered than the workers
    can do: a part keeps it bounded (an admission gate: max_queue, max_wait, or a rate limit below
    the capacity), or every server consuming it sheds expired work and every source whose messages
    reach it gives up after a timeout (nothing older than the timeout is worked on)."""
    bounded = {broker for _, kind, spec in parts_in(scenario) if (broker := kind.keeps_bounded(spec, scenario, flows)) is not None}
    reaches: dict[str, set] = {name: set() for name in flows}
    through = relayed_to(scenario)
    senders = sources(scenario)
    for source in senders:
        target = through.get(source.sends_to, source.sends_to)
        if target in reaches:
            reaches[target].add(source.name)
    consumers = servers(scenario)
    for name in flows:  # upstream first
        for server in consumers:
            target = through.get(server.sends_to, server.sends_to)
            if server.consumes == name and target in reaches:
                reaches[target] |= reaches[name]
    timed = {source.name for source in senders if source.timeout}
    for name, reached_by in reaches.items():
        shedders = [s for s in consumers if s.consumes == name]
        if reached_by and reached_by <= timed and shedders and all(s.sheds_expired for s in shedders):
            bounded.add(name)
    return bounded


# --- wiring and stability -----------------------------------------------------------------------


def _line_of(data: Any, section: str, index: int, key: str | None = None) -> int | None:
    try:
        items = data[section]
        item = items[index]
        if key is not None and key in item:
            return item.lc.key(key)[0] + 1
        return items.lc.item(index)[0] + 1
    except (KeyError, IndexError, AttributeError, TypeError):
        return None


def _unknown_name(ref: Reference, names: dict[str, list[str]]) -> str:
    """What is wrong with a reference to a name no section it accepts has."""
    sections = ref.refers.sections
    allowed = [name for section in sections for name in names[section]]
    close = difflib.get_close_matches(ref.name, allowed, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    label = f"{ref.refers.label} " if ref.refers.label else ""
    if any(names[section] for section in sections[1:]):
        nouns = [kind_of(section).noun for section in sections]
        return f"{label}'{ref.name}' is not {', '.join(nouns[:-1])} or {nouns[-1]}{hint} (have: {', '.join(allowed)})"
    return f"{label}'{ref.name}' is not {kind_of(sections[0]).noun}{hint} ({sections[0]}: {', '.join(allowed) or 'none'})"


def _wiring_problems(scenario: Scenario, data: Any, applied: list) -> list[Problem]:
    """The same checks for every kind of part: names unique across sections, every name a field
    gives (``sends_to``, ``consumes`` …) that of a part of a section it accepts, each kind's own
    checks (:meth:`~sim.components.base.Kind.problems`); then that stages form no loop."""
    problems: list[Problem] = []

    def report(section: str, index: int, name: str, key: str | None, message: str) -> None:
        parts = tuple(key.split(".")) if key else ()
        path = ".".join((section, name, *parts))
        line = _line_of(data, section, index, parts[0] if parts else None)
        problems.append(Problem(message, path=path, line=line, override=_override_for((section, name, *parts), applied)))

    items = [(section, index, spec) for section in SECTIONS for index, spec in enumerate(getattr(scenario, section))]
    names = {section: [spec.name for spec in getattr(scenario, section)] for section in SECTIONS}
    owner: dict[str, str] = {}
    for section, index, spec in items:
        if spec.name in owner:
            report(section, index, spec.name, "name", f"the name '{spec.name}' is already used in {owner[spec.name]}; names must be unique")
        owner.setdefault(spec.name, section)
    for section, index, spec in items:
        for ref in references(spec):
            if not any(ref.name in names[accepted] for accepted in ref.refers.sections):
                report(section, index, spec.name, ref.key, _unknown_name(ref, names))
    for section, index, spec in items:
        for finding in kind_of(section).problems(spec, scenario):
            report(section, index, spec.name, finding.key, finding.message)
    if not problems:
        try:
            broker_order(scenario)
        except PipelineLoop as loop:
            through = relayed_to(scenario)
            index, pool = next((i, p) for i, p in enumerate(scenario.workers)
                               if p.consumes == loop.brokers[-2] and through.get(p.sends_to, p.sends_to) == loop.brokers[-1])
            report("workers", index, pool.name, "sends_to", str(loop))
    return problems


def _stability_problems(scenario: Scenario, data: Any, applied: list) -> list[Problem]:
    """Every broker whose queue would grow without bound, and every part that could not keep up
    with what reaches it (:meth:`~sim.components.base.Kind.overload`)."""
    problems = []
    index = {b.name: i for i, b in enumerate(scenario.brokers)}
    broker_flows, relay_inflows = flows(scenario)
    held_back = _bounded_by_back_pressure(scenario, broker_flows)
    sinks = dead_letter_queues(scenario)
    for name, flow in broker_flows.items():
        if name in sinks:
            continue  # a dead-letter queue is a sink by design: nothing consumes it
        if flow.bounded or flow.offered_load < 1 or name in held_back:
            continue
        pools = [p for p in scenario.workers if p.consumes == name]
        services = ", ".join(f"{p.max_count} workers of {p.name}" + (" (autoscaling max)" if p.autoscaling is not None else "")
                             + f" at a mean service time of {format_duration(p.service_time.build().mean)}"
                             + (" up part of the time (crashes)" if p.crashes is not None else "") for p in pools)
        others = [s for s in servers(scenario) if s.consumes == name and s.name not in {p.name for p in pools}]
        services = ", ".join([services] * bool(pools) + [f"{s.servers} servers of {s.name} ({s.capacity_per_s:.4g}/s)" for s in others])
        message = (
            f"unstable: offered load {flow.arrival_rate_per_s:.4g}/s ≥ capacity {flow.service_capacity_per_s:.4g}/s "
            f"({services}{''.join('; ' + note for note in flow.overheads)}; utilisation would be {flow.offered_load:.3g}); "
            f"the queue grows without bound. "
            f"Add workers, shorten the service time, or bound the queue with 'capacity' (or an admission gate: max_queue, max_wait, "
            f"rate_limit; or deadline shedding: shed_expired, with client timeouts)"
        )
        raw = ("brokers", name)
        problems.append(Problem(message, path=f"brokers.{name}", line=_line_of(data, "brokers", index[name]), override=_override_for(raw, applied)))
    for section, kind in kinds_in(scenario):
        for position, spec in enumerate(getattr(scenario, section)):
            for finding in kind.overload(spec, relay_inflows.get(spec.name, 0.0)):
                raw = (section, spec.name, *([finding.key] if finding.key else []))
                problems.append(Problem(finding.message, path=".".join(raw), line=_line_of(data, section, position, finding.key),
                                        override=_override_for(raw, applied)))
    return problems
