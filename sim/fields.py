"""Field types and distribution specs that every section of a scenario file shares.

Durations are seconds (``80ms`` → 0.08), rates are per second (``12000/min`` → 200.0); every
model forbids unknown keys; a distribution is a tagged union on ``dist``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationInfo, WithJsonSchema
from pydantic import model_validator

from . import distributions as d
from .datafiles import read_column, resolve_data_file
from .problems import short_repr
from .units import DURATION_PATTERN, RATE_PATTERN, parse_duration, parse_rate


def _positive(value: float) -> float:
    if not value > 0 or math.isinf(value):
        raise ValueError(f"must be a positive finite amount, got {value:g}")
    return value


def non_negative(value: float) -> float:
    if value < 0 or math.isinf(value) or math.isnan(value):
        raise ValueError(f"must be zero or more, got {value:g}")
    return value


def not_a_bool(value: object) -> object:
    """Refuse ``true``/``false`` where a number is meant (pydantic would read them as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, got {short_repr(value)}")
    return value


NOT_A_BOOL = BeforeValidator(not_a_bool)
"""Put after a number field's constraints: ``Annotated[float, Field(gt=0), NOT_A_BOOL]``."""

_DURATION_SCHEMA = {
    "anyOf": [{"type": "number"}, {"type": "string", "pattern": DURATION_PATTERN}],
    "description": "seconds, or a number with a unit: 250us, 80ms, 1.5s, 10m (or 10min), 2h, 1d",
}
RATE_SCHEMA = {
    "anyOf": [{"type": "number"}, {"type": "string", "pattern": RATE_PATTERN}],
    "description": "per second, or COUNT/UNIT: 200/s, 12000/min, 3/h",
}

Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(non_negative), WithJsonSchema(_DURATION_SCHEMA)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive), WithJsonSchema(_DURATION_SCHEMA)]
Rate = Annotated[float, BeforeValidator(parse_rate), AfterValidator(_positive), WithJsonSchema(RATE_SCHEMA)]
NonNegativeRate = Annotated[float, BeforeValidator(parse_rate), AfterValidator(non_negative), WithJsonSchema(RATE_SCHEMA)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")]
Price = Annotated[float, Field(ge=0), NOT_A_BOOL]
"""A price in US dollars (``price_per_hour``, ``price_per_million_requests``); 0 is free."""
HOUR_S = 3600.0


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_path(value: str, info: ValidationInfo) -> str:
    """A data file, relative to the scenario's folder and inside an allowed folder (:mod:`sim.datafiles`)."""
    return str(resolve_data_file(value, (info.context or {}).get("base_dir")))


DataFile = Annotated[str, AfterValidator(_resolve_path)]


# --- distributions ------------------------------------------------------------------------------


def _exactly_one_form(spec: BaseModel, *forms: tuple[str, ...]) -> None:
    given = {k for k, v in spec.__dict__.items() if v is not None and k != "dist"}
    for form in forms:
        if given == set(form):
            return
    wanted = " or ".join("{" + ", ".join(form) + "}" for form in forms)
    raise ValueError(f"{spec.dist} takes {wanted}; got {{{', '.join(sorted(given))}}}")


def representable(spec: BaseModel) -> None:
    """Refuse a ``cv`` too large for its distribution to be computed in floating point: the
    distribution built from it must have finite parameters, a finite variance, and draw finite
    non-negative values (a gamma's shape 1/cv² underflows, a hyperexponential's phases split
    into a probability of 0, squares overflow)."""
    try:
        distribution = spec.build()
        parameters = [v for v in distribution.__dict__.values() if isinstance(v, float)]
        draws = distribution.draw(np.random.default_rng(0), 16)
        fine = (all(math.isfinite(v) and v > 0 for v in parameters) and math.isfinite((spec.mean * spec.cv) ** 2)
                and bool(np.isfinite(draws).all() and (draws >= 0).all()))
    except (ArithmeticError, ValueError):
        fine = False
    if not fine:
        raise ValueError(f"cv {spec.cv:g} is too large for a {spec.dist} distribution: "
                         f"its parameters, variance or draws are not finite positive numbers in floating point")


class ExponentialSpec(Strict):
    dist: Literal["exponential"]
    mean: Optional[PositiveDuration] = None
    rate: Optional[Rate] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("mean",), ("rate",))
        return self

    def build(self) -> d.Distribution:
        return d.Exponential(self.mean if self.mean is not None else 1.0 / self.rate)


class DeterministicSpec(Strict):
    dist: Literal["deterministic"]
    value: Optional[Duration] = None
    mean: Optional[Duration] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("value",), ("mean",))
        return self

    def build(self):
        return d.Deterministic(self.value if self.value is not None else self.mean)


class UniformSpec(Strict):
    dist: Literal["uniform"]
    low: Optional[Duration] = None
    high: Optional[Duration] = None
    mean: Optional[PositiveDuration] = None
    cv: Optional[Annotated[float, Field(ge=0), NOT_A_BOOL]] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("low", "high"), ("mean", "cv"))
        if self.low is not None and self.high < self.low:
            raise ValueError(f"high ({self.high:g}s) must not be below low ({self.low:g}s)")
        if self.cv is not None and self.cv > 1 / math.sqrt(3):
            raise ValueError(f"a uniform distribution on [0, ∞) has cv ≤ 0.577; got cv {self.cv:g}")
        return self

    def build(self):
        if self.low is not None:
            return d.Uniform(self.low, self.high)
        half_width = self.mean * self.cv * math.sqrt(3)
        return d.Uniform(self.mean - half_width, self.mean + half_width)


class NormalSpec(Strict):
    """Normal truncated at zero; ``mean`` and ``cv``/``sd`` are those of the normal before truncation."""

    dist: Literal["normal"]
    mean: PositiveDuration
    cv: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None
    sd: Optional[PositiveDuration] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("mean", "cv"), ("mean", "sd"))
        if self.cv is not None:
            representable(self)
        return self

    def build(self):
        return d.TruncatedNormal(self.mean, self.sd if self.sd is not None else self.mean * self.cv)


class LognormalSpec(Strict):
    dist: Literal["lognormal"]
    mean: PositiveDuration
    cv: Annotated[float, Field(gt=0), NOT_A_BOOL]

    @model_validator(mode="after")
    def _representable(self):
        representable(self)
        return self

    def build(self):
        return d.Lognormal(self.mean, self.cv)


class GammaSpec(Strict):
    dist: Literal["gamma"]
    mean: Optional[PositiveDuration] = None
    cv: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None
    shape: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None
    scale: Optional[PositiveDuration] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("mean", "cv"), ("shape", "scale"))
        if self.cv is not None:
            representable(self)
        return self

    def build(self):
        if self.shape is not None:
            return d.Gamma(self.shape, self.scale)
        return d.Gamma(1 / self.cv**2, self.mean * self.cv**2)


class ErlangSpec(Strict):
    dist: Literal["erlang"]
    mean: PositiveDuration
    k: Optional[Annotated[int, Field(ge=1), NOT_A_BOOL]] = None
    cv: Optional[Annotated[float, Field(gt=0, le=1), NOT_A_BOOL]] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("mean", "k"), ("mean", "cv"))
        if self.cv is not None:
            k = 1 / self.cv**2
            if abs(k - round(k)) > 1e-6:
                raise ValueError(f"an Erlang cv is 1/√k for a whole k; cv {self.cv:g} gives k = {k:.4g}")
        return self

    def build(self):
        k = self.k if self.k is not None else round(1 / self.cv**2)
        return d.Erlang(float(k), self.mean / k)


class HyperexponentialSpec(Strict):
    dist: Literal["hyperexponential"]
    mean: PositiveDuration
    cv: Annotated[float, Field(gt=1), NOT_A_BOOL]

    @model_validator(mode="after")
    def _representable(self):
        representable(self)
        return self

    def build(self):
        return d.Hyperexponential(self.mean, self.cv)


class ParetoSpec(Strict):
    dist: Literal["pareto"]
    mean: Optional[PositiveDuration] = None
    cv: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None
    alpha: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None
    scale: Optional[PositiveDuration] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("mean", "cv"), ("alpha", "scale"), ("alpha", "mean"))
        if self.mean is not None and self.alpha is not None and self.alpha <= 1:
            raise ValueError(f"a Pareto distribution with alpha ≤ 1 has no mean; got alpha {self.alpha:g}")
        if self.cv is not None:
            representable(self)
        return self

    def build(self):
        if self.scale is not None:
            return d.Pareto(self.alpha, self.scale)
        alpha = self.alpha if self.alpha is not None else d.pareto_alpha_for_cv(self.cv)
        return d.Pareto(alpha, self.mean * (alpha - 1) / alpha)


class WeibullSpec(Strict):
    dist: Literal["weibull"]
    mean: Optional[PositiveDuration] = None
    cv: Optional[Annotated[float, Field(gt=0.01, lt=20), NOT_A_BOOL]] = None
    shape: Optional[Annotated[float, Field(gt=0), NOT_A_BOOL]] = None
    scale: Optional[PositiveDuration] = None

    @model_validator(mode="after")
    def _form(self):
        _exactly_one_form(self, ("mean", "cv"), ("shape", "scale"))
        return self

    def build(self):
        if self.shape is not None:
            return d.Weibull(self.shape, self.scale)
        shape = d.weibull_shape_for_cv(self.cv)
        return d.Weibull(shape, self.mean / math.gamma(1 + 1 / shape))


class CsvColumn(Strict):
    """Numbers from one column of a CSV file (the first unless ``column`` names one), in ``unit``
    (seconds unless given: ``unit: 1ms`` reads milliseconds). The file is read once, when the
    scenario is loaded, so a missing file or column is reported with the scenario's other
    problems; its values travel inside the scenario (a private attribute, pickled with it), so a
    replication run in another process, directory or host does not need the file."""

    file: DataFile
    column: Optional[str] = None
    unit: PositiveDuration = 1.0
    _values: bytes = PrivateAttr(default=b"")

    @model_validator(mode="after")
    def _read(self):
        self._values = read_column(Path(self.file), self.column, self.unit).tobytes()
        return self

    def values_s(self) -> np.ndarray:
        """The column's values in seconds, as read when the scenario was loaded (read-only)."""
        return np.frombuffer(self._values, dtype=np.float64)


class EmpiricalSpec(CsvColumn):
    """Samples of a CSV column, drawn with replacement."""

    dist: Literal["empirical"]

    def build(self):
        return d.Empirical(self.values_s(), source=self.file)


DistributionSpec = Annotated[
    Union[
        ExponentialSpec,
        DeterministicSpec,
        UniformSpec,
        NormalSpec,
        LognormalSpec,
        GammaSpec,
        ErlangSpec,
        HyperexponentialSpec,
        ParetoSpec,
        WeibullSpec,
        EmpiricalSpec,
    ],
    Field(discriminator="dist"),
]


def _bare_duration_as_deterministic(value):
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {"dist": "deterministic", "value": value}
    return value


DurationOrDistribution = Annotated[DistributionSpec, BeforeValidator(_bare_duration_as_deterministic)]
"""A distribution, or a bare duration (``20s``) meaning that value every time."""


class Crashes(Strict):
    """A component (a worker, a broker) fails after a time to failure (exponential of mean
    ``mtbf``, or any ``time_to_failure`` distribution), stays down for ``restart_time``, and comes
    back; then the clock to the next failure starts again."""

    mtbf: Optional[PositiveDuration] = None
    time_to_failure: Optional[DistributionSpec] = None
    restart_time: DurationOrDistribution

    @model_validator(mode="after")
    def _one_law(self):
        if (self.mtbf is None) == (self.time_to_failure is None):
            raise ValueError("give either mtbf (exponential times to failure) or time_to_failure (a distribution)")
        return self

    def time_to_failure_distribution(self) -> d.Distribution:
        return d.Exponential(self.mtbf) if self.mtbf is not None else self.time_to_failure.build()


class Errors(Strict):
    """Processing that fails without a crash: each attempt fails with ``probability``, and a
    ``poison_fraction`` of messages fail on every attempt (a payload the code cannot handle)."""

    probability: Annotated[float, Field(ge=0, lt=1), NOT_A_BOOL] = 0.0
    poison_fraction: Annotated[float, Field(ge=0, le=1), NOT_A_BOOL] = 0.0
