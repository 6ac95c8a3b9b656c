"""The scenario file's schema: the top-level settings, the SLO, the sweep, and one list for each
kind of part in :data:`sim.components.registry.SECTIONS` (each kind's spec lives in its module).

A file's model is made for the kinds it uses (:func:`scenario_model`, once per set of kinds):
a section the file does not have is an empty list whose kind is not imported. Every such model
is a subclass of :class:`Scenario`, has every section's field, and pickles with its set of kinds.

Every model forbids unknown keys. Durations are seconds (``80ms`` → 0.08), rates are per second
(``12000/min`` → 200.0). Cross-references between sections (``sends_to``, ``consumes``) are
checked by :mod:`sim.loading`, which knows the file's lines.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import BeforeValidator, Field, WithJsonSchema, ValidationInfo, create_model, field_validator, model_validator

from .axes import parse_axis
from .components.base import Source
from .components.brokers import broker_spec
from .components.registry import EVERY, SECTIONS, KindsUsed, kind_of, kinds_used, parts_in
from .fields import NOT_A_BOOL, PositiveDuration, Rate, Strict, non_negative
from .units import parse_duration

AUTO = "auto"
WARMUP_SCHEMA = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}],
                 "description": "a duration (80ms, 5m) excluded from the statistics, or auto (chosen per replication by MSER-5)"}


def fraction_or_percent(value: object) -> object:
    """``5%`` as 0.05; anything else as it is (then checked as a number)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected a fraction such as 0.05 or a percentage such as 5%, got {value!r}") from None
    return value


Precision = Annotated[float, BeforeValidator(fraction_or_percent), Field(gt=0, lt=1), NOT_A_BOOL]


def warmup_or_auto(value: object) -> float | str:
    """``auto`` as it is (each replication chooses its warm-up: :mod:`sim.warmup`), else a duration."""
    if isinstance(value, str) and value.strip() == AUTO:
        return AUTO
    return non_negative(parse_duration(value))


class Slo(Strict):
    """Service-level objectives the summary is checked against (all optional)."""

    latency_mean: Optional[PositiveDuration] = None
    latency_p50: Optional[PositiveDuration] = None
    latency_p95: Optional[PositiveDuration] = None
    latency_p99: Optional[PositiveDuration] = None
    latency_p999: Optional[PositiveDuration] = None
    max_loss_rate: Optional[Annotated[float, Field(ge=0, le=1), NOT_A_BOOL]] = None
    max_rejection_rate: Optional[Annotated[float, Field(ge=0, le=1), NOT_A_BOOL]] = None
    min_throughput: Optional[Rate] = None


class SweepSpec(Strict):
    """What ``asyncsim sweep`` varies when no ``--vary`` is given: each key of ``vary`` is a
    ``--set`` path, each value a range ``START..END[:STEP]`` (units allowed: ``10/s..50/s:10/s``),
    a comma list (``8,12,16``) or a list; several keys make a grid. ``metric`` is plotted."""

    vary: Annotated[dict[str, Union[int, float, str, list]], Field(min_length=1)]
    metric: str = "system.latency_s.p99"

    @field_validator("vary")
    @classmethod
    def _values(cls, vary: dict) -> dict:
        for path, values in vary.items():
            parse_axis(path, values)
        return vary


class Scenario(Strict):
    """A whole scenario file. The settings are here; a file's model (:func:`scenario_model`, a
    subclass) adds a list for each section of the registry (producers, brokers, workers …), the
    ``slo`` and the ``sweep``. ``Scenario.model_validate(data)`` validates with the model of the
    kinds ``data`` uses, and ``Scenario.model_json_schema()`` is that of every kind."""

    used: ClassVar[KindsUsed]

    name: Annotated[str, Field(min_length=1)]
    description: Optional[str] = None
    seed: Annotated[int, Field(ge=0, strict=True)] = 1
    duration: PositiveDuration
    warmup: Annotated[Union[float, Literal["auto"]], BeforeValidator(warmup_or_auto), WithJsonSchema(WARMUP_SCHEMA)] = 0.0
    replications: Annotated[int, Field(ge=1, strict=True)] = 10
    precision: Optional[Precision] = None
    max_replications: Optional[Annotated[int, Field(ge=1, strict=True)]] = None

    @field_validator("warmup")
    @classmethod
    def _warmup_before_end(cls, warmup: float | str, info: ValidationInfo) -> float | str:
        duration = info.data.get("duration")
        if warmup != AUTO and duration is not None and warmup >= duration:
            raise ValueError(f"the warm-up ({warmup:g}s) must end before the run does ({duration:g}s)")
        return warmup

    @model_validator(mode="after")
    def _some_source(self):
        if not self.producers and not self.clients and not self.web and not any(
                isinstance(flow, Source) for _, kind, spec in parts_in(self) for flow in kind.flows(spec)):
            raise ValueError("producers is empty: a scenario needs at least one producer, a group of closed-loop clients (clients:), "
                             "a web tier (web:) or a task (task_queues:)")
        return self

    @property
    def window_s(self) -> float:
        """Length of the measurement window, after the warm-up (with ``warmup: auto``, each
        replication's own: see ``ReplicationResult.warmup_s``)."""
        if self.warmup == AUTO:
            raise ValueError("warmup: auto has no window before a replication chooses its warm-up")
        return self.duration - self.warmup

    def __reduce__(self):
        """Pickled with the kinds its model is made of, so that another process (a worker of a
        process pool or a Dask cluster) makes the same model: a class made at run time cannot
        be found by its name."""
        return blank_scenario, (self.used,), self.__getstate__()

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Scenario:
        if cls is Scenario:
            return scenario_model(kinds_used(obj)).model_validate(obj, **options)
        return super().model_validate(obj, **options)

    @classmethod
    def model_json_schema(cls, *args: Any, **options: Any) -> dict[str, Any]:
        if cls is Scenario:
            return scenario_model(EVERY).model_json_schema(*args, **options)
        return super().model_json_schema(*args, **options)


NO_PARTS = Annotated[list, Field(max_length=0)]
"""A section the file does not have: always empty."""


def part_model(section: str, used: KindsUsed) -> Any:
    """The model of one part of ``section``: its kind's ``Spec``; for a broker, the union of the
    kinds of broker used."""
    return broker_spec(used.broker_kinds) if section == "brokers" else kind_of(section).Spec


@cache
def scenario_model(used: KindsUsed) -> type[Scenario]:
    """The model of a scenario file that has the sections and kinds of broker ``used``
    (:data:`~sim.components.registry.EVERY`: the whole schema); the other sections are empty."""
    sections = {section: (list[part_model(section, used)] if section in used.sections else NO_PARTS, []) for section in SECTIONS}
    model = create_model("Scenario", __base__=Scenario, __doc__="A whole scenario file.", **sections,
                         slo=(Optional[Slo], None), sweep=(Optional[SweepSpec], None))
    model.used = used
    return model


def blank_scenario(used: KindsUsed) -> Scenario:
    """An empty instance of the model of ``used``, for unpickling (its state is set next)."""
    model = scenario_model(used)
    return model.__new__(model)
