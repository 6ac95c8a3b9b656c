"""The scenario file's schema: the top-level settings, the SLO, the sweep, and one list for each
kind of part in :data:`sim.components.registry.SECTIONS` (each kind's spec lives in its module).

Every model forbids unknown keys. Durations are seconds (``80ms`` → 0.08), rates are per second
(``12000/min`` → 200.0). Cross-references between sections (``sends_to``, ``consumes``) are
checked by :mod:`sim.loading`, which knows the file's lines.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, WithJsonSchema, ValidationInfo, create_model, field_validator, model_validator

from .axes import parse_axis
from .components.base import Source
from .components.registry import SECTIONS
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


class ScenarioSettings(Strict):
    """A whole scenario file's settings; :data:`Scenario` adds a list for each section of the
    registry (producers, brokers, workers, clients, admission, outbox, dual_write), the ``slo``
    and the ``sweep``."""

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
                isinstance(flow, Source) for section, kind in SECTIONS.items() for spec in getattr(self, section) for flow in kind.flows(spec)):
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


Scenario = create_model(
    "Scenario",
    __base__=ScenarioSettings,
    __doc__="A whole scenario file.",
    **{section: (list[kind.Spec], ... if kind.required else []) for section, kind in SECTIONS.items()},
    slo=(Optional[Slo], None),
    sweep=(Optional[SweepSpec], None),
)
