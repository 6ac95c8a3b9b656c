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

from .overrides import apply_override, parse_yaml
from .problems import Problem, ScenarioError
from .schema import Scenario
from .topology import PipelineLoop, broker_flows, broker_order, delivers_to, writer_flows
from .units import format_duration


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    """Read, override and validate a scenario file; raise :class:`ScenarioError` on any problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(source, [Problem(f"cannot read the file: {exc.strerror or exc}")]) from None
    return load_scenario_text(text, source=source, base_dir=path.parent, overrides=overrides)


def load_scenario_text(text: str, source: str = "<scenario>", base_dir: str | Path = ".", overrides: Iterable[str] = ()) -> Scenario:
    """Validate a scenario given as YAML text; file references resolve against ``base_dir``."""
    data = parse_yaml(text, source)
    applied = [apply_override(data, spec, source) for spec in overrides]
    try:
        scenario = Scenario.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        problems = [_problem_from_error(err, data, applied) for err in exc.errors()]
        raise ScenarioError(source, problems) from None
    problems = _wiring_problems(scenario, data, applied) + _back_pressure_problems(scenario, data, applied)
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


def _locate(loc: tuple, data: Any) -> tuple[str, int | None, Any, tuple]:
    """Walk ``loc`` through the data and the schema: (display path, line, type of parent, raw parts)."""
    node: Any = data
    tp: Any = Scenario
    parent_tp: Any = Scenario
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
            shown.append(str(name) if name is not None else str(part))
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


def _problem_from_error(err: dict, data: Any, applied: list[tuple[str, ...]]) -> Problem:
    loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc = loc + (str(ctx.get("discriminator", "")).strip("'"),)
    path, line, parent_tp, raw = _locate(loc, data)
    message = _wording(err, kind, ctx, loc, parent_tp)
    return Problem(message, path=path, line=line, override=_override_for(raw, applied))


def _wording(err: dict, kind: str, ctx: dict, loc: tuple, parent_tp: Any) -> str:
    value = err.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        valid = _model_fields(parent_tp)
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key '{key}'{hint} (valid keys: {', '.join(valid)})"
    if kind == "missing":
        return "is required but missing"
    if kind == "union_tag_invalid":
        expected = ctx.get("expected_tags", "")
        field = str(ctx.get("discriminator", "")).strip("'")
        return f"unknown {field} '{ctx.get('tag')}' (expected one of: {expected})"
    if kind == "union_tag_not_found":
        return "is required but missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    comparisons = {"greater_than": "> {gt}", "greater_than_equal": "≥ {ge}", "less_than": "< {lt}", "less_than_equal": "≤ {le}"}
    if kind in comparisons:
        return f"must be {comparisons[kind].format(**ctx)}, got {value!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {value!r}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, got {value!r}"
    if kind == "list_type":
        return f"must be a list (items starting with '- '), got {type(value).__name__}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys, got {value!r}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not a valid name (letters, digits, _ and - only: a dot would clash with --set paths)"
    return f"{err['msg']}, got {value!r}"


# --- clients, admission gates and triggers --------------------------------------------------------


def _back_pressure_problems(scenario: Scenario, data: Any, applied: list) -> list[Problem]:
    """Wiring of clients and admission gates, and triggers that start within the run."""
    problems: list[Problem] = []

    def report(section: str, index: int, name: str, key: str | None, message: str) -> None:
        path = f"{section}.{name}" + (f".{key}" if key else "")
        raw = (section, name) + tuple(key.split(".") if key else ())
        problems.append(Problem(message, path=path, line=_line_of(data, section, index, key and key.split(".")[0]), override=_override_for(raw, applied)))

    names: dict[str, str] = {}
    for section in ("producers", "brokers", "workers", "outbox", "dual_write"):
        for item in getattr(scenario, section, []):
            names.setdefault(item.name, section)
    for section in ("clients", "admission"):
        for index, item in enumerate(getattr(scenario, section)):
            if item.name in names:
                report(section, index, item.name, "name", f"the name '{item.name}' is already used in {names[item.name]}; names must be unique")
            names.setdefault(item.name, section)
    brokers = [b.name for b in scenario.brokers]
    pools = [p.name for p in scenario.workers]

    def must_be_broker(section, index, name, key, wanted, also=()):
        allowed = brokers + list(also)
        if wanted not in allowed:
            close = difflib.get_close_matches(wanted, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            what = "a broker or a worker pool" if also else "a broker"
            report(section, index, name, key, f"'{wanted}' is not {what}{hint} (have: {', '.join(allowed) or 'none'})")

    for index, group in enumerate(scenario.clients):
        must_be_broker("clients", index, group.name, "sends_to", group.sends_to)
    for index, producer in enumerate(scenario.producers):
        if producer.is_client and producer.sends_to not in brokers and producer.sends_to in names:
            report("producers", index, producer.name, "sends_to", f"a producer with a timeout or a retry policy is a client and sends to a broker; '{producer.sends_to}' is not one")
        if producer.spike is not None and producer.spike.at >= scenario.duration:
            report("producers", index, producer.name, "spike.at", f"the spike starts at {producer.spike.at:g}s, after the run ends ({scenario.duration:g}s)")
    for index, gate in enumerate(scenario.admission):
        must_be_broker("admission", index, gate.name, "in_front_of", gate.in_front_of, also=pools)
    for index, pool in enumerate(scenario.workers):
        for key in ("capacity_loss", "slowdown"):
            spec = getattr(pool, key)
            if spec is not None and spec.from_ is not None and spec.from_ >= scenario.duration:
                report("workers", index, pool.name, f"{key}.from", f"starts at {spec.from_:g}s, after the run ends ({scenario.duration:g}s)")
    return problems


def _bounded_by_back_pressure(scenario: Scenario) -> set[str]:
    """Brokers whose queue cannot grow without bound although more is offered than the workers
    can do: an admission gate bounds it (max_queue, max_wait, or a rate limit below the
    capacity), or every pool consuming it sheds expired work and everything that reaches it comes
    from clients with a timeout (nothing older than the timeout is worked on)."""
    flows = broker_flows(scenario)
    pools = {p.name: p for p in scenario.workers}
    bounded = set()
    for gate in scenario.admission:
        broker = pools[gate.in_front_of].consumes if gate.in_front_of in pools else gate.in_front_of
        capacity = flows[broker].service_capacity_per_s if broker in flows else 0.0
        if gate.bounds_queue() or (gate.rate_limit is not None and gate.rate_limit.rate < capacity):
            bounded.add(broker)
    reaches: dict[str, set] = {name: set() for name in flows}
    for source in (*scenario.producers, *scenario.clients):
        if source.sends_to in reaches:
            reaches[source.sends_to].add(source.name)
    for name in flows:  # upstream first
        for pool in scenario.workers:
            if pool.consumes == name and pool.sends_to in reaches:
                reaches[pool.sends_to] |= reaches[name]
    timed = {s.name for s in (*scenario.producers, *scenario.clients) if s.timeout is not None}
    for name, sources in reaches.items():
        consumers = [p for p in scenario.workers if p.consumes == name]
        if sources and sources <= timed and consumers and all(p.shed_expired for p in consumers):
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


def _wiring_problems(scenario: Scenario, data: Any, applied: list) -> list[Problem]:
    problems: list[Problem] = []

    def report(section: str, index: int, name: str, key: str | None, message: str) -> None:
        path = f"{section}.{name}" + (f".{key}" if key else "")
        raw = (section, name) + ((key,) if key else ())
        override = _override_for(raw, applied)
        problems.append(Problem(message, path=path, line=_line_of(data, section, index, key), override=override))

    seen: dict[str, str] = {}
    for section in ("producers", "brokers", "workers", "outbox", "dual_write"):
        for index, item in enumerate(getattr(scenario, section)):
            if item.name in seen:
                report(section, index, item.name, "name", f"the name '{item.name}' is already used in {seen[item.name]}; names must be unique")
            seen.setdefault(item.name, section)
    brokers = [b.name for b in scenario.brokers]
    writers = [w.name for w in (*scenario.outbox, *scenario.dual_write)]

    def target(section, index, name, key, wanted, or_writer=False):
        allowed = brokers + writers if or_writer else brokers
        if wanted not in allowed:
            close = difflib.get_close_matches(wanted, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            if or_writer and writers:
                report(section, index, name, key, f"'{wanted}' is not a broker, an outbox or a dual write{hint} (have: {', '.join(allowed)})")
            else:
                report(section, index, name, key, f"'{wanted}' is not a broker{hint} (brokers: {', '.join(brokers) or 'none'})")

    for index, producer in enumerate(scenario.producers):
        target("producers", index, producer.name, "sends_to", producer.sends_to, or_writer=True)
    for index, pool in enumerate(scenario.workers):
        target("workers", index, pool.name, "consumes", pool.consumes)
        if pool.sends_to is not None:
            target("workers", index, pool.name, "sends_to", pool.sends_to, or_writer=True)
    senders = {p.sends_to for p in scenario.producers} | {p.sends_to for p in scenario.workers}
    for section in ("outbox", "dual_write"):
        for index, writer in enumerate(getattr(scenario, section)):
            target(section, index, writer.name, "publishes_to", writer.publishes_to)
            if writer.name not in senders:
                report(section, index, writer.name, None, "nothing sends to it: give a producer (or a worker pool) 'sends_to: " + writer.name + "'")

    consumed = {p.consumes for p in scenario.workers}
    dead_letter_queues = {}
    for index, broker in enumerate(scenario.brokers):
        for target in broker.dead_letter_targets():
            dead_letter_queues[target] = broker.name
            if target not in brokers:
                report("brokers", index, broker.name, None, f"dead-letter target '{target}' is not a broker (brokers: {', '.join(brokers)})")
    for index, broker in enumerate(scenario.brokers):
        if broker.name in dead_letter_queues:
            if broker.name in consumed:
                report("brokers", index, broker.name, None, f"is the dead-letter queue of '{dead_letter_queues[broker.name]}': "
                       "dead-lettered messages stay there for inspection, so no worker pool may consume it")
        elif broker.name not in consumed:
            report("brokers", index, broker.name, None, "no worker pool consumes this broker: its messages would never leave")
    if not problems:
        try:
            broker_order(scenario)
        except PipelineLoop as loop:
            index, pool = next((i, p) for i, p in enumerate(scenario.workers)
                               if p.consumes == loop.brokers[-2] and delivers_to(scenario, p.sends_to) == loop.brokers[-1])
            report("workers", index, pool.name, "sends_to", str(loop))
    return problems


def _stability_problems(scenario: Scenario, data: Any, applied: list) -> list[Problem]:
    problems = []
    index = {b.name: i for i, b in enumerate(scenario.brokers)}
    held_back = _bounded_by_back_pressure(scenario)
    dead_letter_queues = {target for b in scenario.brokers for target in b.dead_letter_targets()}
    for name, flow in broker_flows(scenario).items():
        if name in dead_letter_queues:
            continue  # a dead-letter queue is a sink by design: nothing consumes it
        if flow.bounded or flow.offered_load < 1 or name in held_back:
            continue
        pools = [p for p in scenario.workers if p.consumes == name]
        services = ", ".join(f"{p.max_count} workers of {p.name}" + (" (autoscaling max)" if p.autoscaling is not None else "")
                             + f" at a mean service time of {format_duration(p.service_time.build().mean)}"
                             + (" up part of the time (crashes)" if p.crashes is not None else "") for p in pools)
        message = (
            f"unstable: offered load {flow.arrival_rate_per_s:.4g}/s ≥ capacity {flow.service_capacity_per_s:.4g}/s "
            f"({services}; utilisation would be {flow.offered_load:.3g}); the queue grows without bound. "
            f"Add workers, shorten the service time, or bound the queue with 'capacity' (or an admission gate: max_queue, max_wait, "
            f"rate_limit; or deadline shedding: shed_expired, with client timeouts)"
        )
        raw = ("brokers", name)
        problems.append(Problem(message, path=f"brokers.{name}", line=_line_of(data, "brokers", index[name]), override=_override_for(raw, applied)))
    for name, flow in writer_flows(scenario).items():
        position = [w.name for w in getattr(scenario, flow.section)].index(name)

        def unstable(key, message):
            raw = (flow.section, name, key)
            problems.append(Problem(message, path=f"{flow.section}.{name}.{key}", line=_line_of(data, flow.section, position, key),
                                    override=_override_for(raw, applied)))

        if flow.database_load >= 1:
            unstable("database", f"unstable: the connection pool would be busy {flow.database_load:.3g} of the time "
                     f"({flow.arrival_rate_per_s:.4g} requests/s, relays' queries and crash downtime included); transactions would "
                     "queue for connections without bound. Add connections or shorten the commit time")
        if flow.relay_load >= 1:
            unstable("relay", f"unstable: {flow.arrival_rate_per_s:.4g} events/s committed, but the relays publish at most "
                     f"{flow.relay_capacity_per_s:.4g}/s (batch_size × relays per poll interval, or per cycle when a full batch "
                     "takes longer); the outbox backlog would grow without bound. Raise batch_size or relays, or poll more often")
    return problems
