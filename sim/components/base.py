"""What every kind of part of a scenario declares, so that the engine needs no code per kind.

A *kind* (:class:`Kind`) is one section of a scenario file (``producers``, ``brokers``,
``workers`` …): the pydantic model of an item (``Spec``), what the item is called in messages
(``noun``), and the checks that involve the rest of the scenario (:meth:`Kind.problems`). A
field that names another part says so with :class:`Refers` in its annotation, as desmod's
components declare their connections; :func:`references` finds them, and the loader checks every
one the same way (the name exists, in a section the field accepts), with the file's line.

The registry of kinds is :data:`sim.components.registry.SECTIONS`, which names each kind's module
without importing it; :mod:`sim.schema` assembles a scenario file's model from the kinds it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Iterator


@dataclass(frozen=True)
class Refers:
    """Annotation metadata: the field holds the name of a part from one of ``sections`` (the
    first is what the field is mostly about, and names the list of candidates in messages);
    ``label`` prefixes the message when the name is unknown (``dead-letter target``)."""

    sections: tuple[str, ...]
    label: str = ""


BROKER = Refers(("brokers",))
"""A field that names a broker (``consumes``, ``publishes_to``, a client's ``sends_to``)."""

BROKER_OR_WRITER = Refers(("brokers", "outbox", "dual_write", "delays", "web"))
"""A field that names where messages are sent: a broker, an outbox, a dual write, a delay station,
or a web tier (the completion signal of its asynchronous path)."""

DEAD_LETTER = Refers(("brokers",), label="dead-letter target")
"""What a broker's dead-letter field refers to: another broker, which keeps what it is given."""


@dataclass(frozen=True)
class Reference:
    """One name a spec gives to another part: ``key`` is the field, ``name`` its value."""

    key: str
    name: str
    refers: Refers


def references(spec: Any) -> Iterator[Reference]:
    """The names ``spec`` gives to other parts, in field order (fields left empty give none)."""
    for key, info in type(spec).model_fields.items():
        refers = next((m for m in info.metadata if isinstance(m, Refers)), None)
        value = getattr(spec, key)
        if refers is not None and value is not None:
            yield Reference(info.alias or key, value, refers)


@dataclass(frozen=True)
class Finding:
    """A problem :meth:`Kind.problems` found with one item: ``key`` is the field it is about
    (a dotted path inside the item, or None for the item as a whole)."""

    key: str | None
    message: str


@dataclass(frozen=True)
class Source:
    """A part that sends ``rate_per_s`` messages a second in the long run to ``sends_to``;
    ``timeout``: it gives up on each attempt after a timeout (a client)."""

    name: str
    sends_to: str
    rate_per_s: float
    timeout: bool = False


@dataclass(frozen=True)
class Server:
    """A part that takes messages from the queue ``consumes`` with ``servers`` servers, at most
    ``capacity_per_s`` a second in the long run, and passes each on to ``sends_to`` (or is the
    last stage); ``sheds_expired``: it skips work whose deadline has passed. ``busy_s`` is the mean
    time a server spends on one message by itself (0 when unknown): the broker it consumes adds its
    own per-message overheads to it (``consumer_capacity_per_s`` of a broker's spec)."""

    name: str
    consumes: str
    capacity_per_s: float
    servers: int
    sends_to: str | None = None
    sheds_expired: bool = False
    busy_s: float = 0.0


@dataclass(frozen=True)
class Relay:
    """A part that passes on what is sent to it to ``publishes_to`` (an outbox, a dual write)."""

    name: str
    publishes_to: str


@dataclass(frozen=True)
class Shown:
    """One line a part shows in ``asyncsim run``'s table and the report's: ``label``, the dotted
    path of its estimate inside the part's branch of the summary (``handlers.utilization``), and
    how to read it: ``"s"`` a duration, ``"%"`` a share, ``"/s"`` a rate, ``""`` a number."""

    label: str
    key: str
    unit: str = ""

    def estimate(self, measured: dict) -> dict | None:
        """The estimate (``{"mean": …, "ci95": […]}``) at ``key`` in the part's branch, if there."""
        for part in self.key.split("."):
            measured = measured.get(part) if isinstance(measured, dict) else None
        return measured if isinstance(measured, dict) and "mean" in measured else None


@dataclass(frozen=True)
class Load:
    """The long-run load on a part that serves what reaches it without a broker in front (a web
    tier's handlers, a delay station): ``rate_per_s`` arrivals, each holding one of ``servers``
    (None: as many as come, an infinite-server station) for ``held_s`` on average, with squared
    coefficient of variation ``held_scv``; ``poisson``: the arrivals are a Poisson process;
    ``exponential``: the holding time is exactly exponential."""

    name: str
    rate_per_s: float
    held_s: float
    servers: int | None = None
    held_scv: float = 1.0
    poisson: bool = False
    exponential: bool = False

    @property
    def busy_mean(self) -> float:
        """Mean servers in use (Little's law: λ·E[held]), in erlangs."""
        return self.rate_per_s * self.held_s

    @property
    def offered_load(self) -> float | None:
        """λ·E[held]/c; None for an infinite-server station (it never saturates)."""
        return None if self.servers is None else self.busy_mean / self.servers


@dataclass(frozen=True)
class Box:
    """A part in the diagram: ``role`` above its name (``web tier``), ``text`` its settings and
    what was measured; ``source``: it starts the flow (the first column)."""

    role: str
    text: str
    source: bool = False


@dataclass(frozen=True)
class Arrow:
    """A message path in the diagram from the part to ``to``, with a ``label``; ``dashed``: a
    path back (a completion signal)."""

    to: str
    label: str = ""
    dashed: bool = False


class Kind:
    """One section of a scenario file: its items' model, the checks that need the scenario, how
    an item is built into a part of the simulation, and what is measured of that part.

    Parts are built kind by kind in ``build_order`` (a part can only use parts built before it:
    brokers first, sources last), each item of a kind in file order; :meth:`connect` then runs for
    each, once every part of the kind exists. A part is any object with ``held_ids()`` (the
    messages it holds, for the conservation check).
    """

    section: ClassVar[str]
    noun: ClassVar[str]
    Spec: ClassVar[Any]  # brokers have none: sim.components.brokers.broker_spec is the union of their kinds'
    build_order: ClassVar[int]

    def problems(self, spec: Any, scenario: Any) -> Iterable[Finding]:
        """What is wrong with ``spec`` in ``scenario`` beyond its own fields and references."""
        return ()

    def flow(self, spec: Any) -> Source | Server | Relay | None:
        """What the part does to the long-run flow of messages (:mod:`sim.topology`), if anything."""
        return None

    def flows(self, spec: Any) -> Iterable[Source | Server | Relay]:
        """Every role the part plays in the long-run flow: its :meth:`flow`, if any. A part that
        sends to or takes from several queues (a Celery app) gives one per queue."""
        flow = self.flow(spec)
        return () if flow is None else (flow,)

    def keeps_bounded(self, spec: Any, scenario: Any, flows: dict) -> str | None:
        """The broker whose queue the part keeps from growing without bound whatever is offered
        (an admission gate that refuses beyond a bound), if any; ``flows`` are the brokers' flows."""
        return None

    def overload(self, spec: Any, inflow_per_s: float) -> Iterable[Finding]:
        """What of the part itself could not keep up with ``inflow_per_s`` messages a second (a
        database, a relay); the queues' own stability is checked by the loader for every queue."""
        return ()

    def build(self, spec: Any, context: Any) -> Any:
        """The part ``spec`` describes, built in ``context`` (a :class:`~sim.components.context.BuildContext`)."""
        raise NotImplementedError

    def connect(self, spec: Any, part: Any, context: Any) -> None:
        """What the part needs once every part of its kind exists (e.g. a pool's autoscaler)."""

    def measure(self, spec: Any, part: Any, context: Any, measures: Any) -> None:
        """Add the part's metrics and series to ``measures`` (a :class:`~sim.components.measures.Measures`)."""

    def shown(self, measured: dict) -> Iterable[Shown]:
        """The lines of the part in ``asyncsim run``'s table and the report, given its branch of
        the summary (``summary[section][name]``). Default: none (the metrics are in ``--json``)."""
        return ()

    def load(self, spec: Any, scenario: Any, sent_per_s: dict[str, float]) -> Load | None:
        """The long-run load on the part when no broker is in front of it (``asyncsim check``),
        given the messages a second sent to each name (:func:`sim.topology.sent_per_s`)."""
        return None

    def theory(self, spec: Any, load: Load, queue: Any) -> dict[str, tuple[float, bool]]:
        """Long-run values of the part's metrics from queueing theory, ``{flat metric: (value,
        exact)}``, given its :meth:`load`; ``queue(load)`` is the multi-server queue of that load
        (:func:`sim.theory.queue_of`: an ``analytic.QueueMetrics`` and whether it is exact, or
        None when unstable). Default: none."""
        return {}

    def box(self, spec: Any, measured: dict) -> Box | None:
        """The part in the diagram, given its branch of the summary (empty before a run); None:
        not drawn by the protocol (producers, brokers and worker pools are drawn by the diagram)."""
        return None

    def arrows(self, spec: Any, scenario: Any) -> Iterable[Arrow]:
        """The message paths from the part drawn in the diagram (for parts with a :meth:`box`)."""
        return ()

    def models(self, spec: Any, part: Any) -> Iterable[tuple[type, str]]:
        """The model classes the part is made of, each with what it is used for (``broker q``),
        whose docstrings the report lists. Default: the part's own class."""
        return ((type(part), f"{self.noun.split(' ', 1)[1]} {spec.name}"),)

    def cost_usd(self, spec: Any, part: Any, context: Any, window_s: float) -> float | None:
        """What the part cost over the measurement window (``window_s`` seconds) at the prices its
        spec gives, in US dollars; None when it gives none (the part is left out of the cost)."""
        return None
