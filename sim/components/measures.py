"""What one replication measured, assembled part by part: flat metric keys (``brokers.q.wait_s.p99``)
and time series of the run's time bins."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..sketch import Distribution, Sketch

PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


@dataclass
class Measures:
    """Metrics and series as they are added; ``window_s`` is the measurement window's length,
    ``bin_width_s`` a time bin's. ``distributions`` keeps, by prefix, the sketch behind each
    distribution's metrics, and ``proportions`` the (part, whole) counts behind each proportion,
    so that estimates over replications pool them rather than average the ratios."""

    window_s: float
    bin_width_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, np.ndarray] = field(default_factory=dict)
    distributions: dict[str, Distribution] = field(default_factory=dict)
    proportions: dict[str, tuple[int, int]] = field(default_factory=dict)
    ratios: dict[str, tuple[float, float]] = field(default_factory=dict)

    def distribution(self, prefix: str, values) -> None:
        """``prefix.mean`` and ``prefix.p50`` … ``prefix.p999`` of ``values``: a :class:`Sketch`
        (sectioned in time), a :class:`Distribution`, or the values themselves (NaN when none)."""
        if isinstance(values, Sketch):
            values = values.distribution()
        elif not isinstance(values, Distribution):
            values = Distribution.of(values)
        self.distributions[prefix] = values
        self.metrics[f"{prefix}.mean"] = values.mean
        for key, q in PERCENTILES.items():
            self.metrics[f"{prefix}.{key}"] = values.quantile(q / 100)

    def proportion(self, key: str, part: int, whole: int) -> None:
        """``key`` = part / whole (NaN when the whole is 0), a fraction of messages or requests."""
        self.metrics[key] = part / whole if whole else float("nan")
        self.proportions[key] = (int(part), int(whole))

    def ratio(self, key: str, numerator: float, denominator: float) -> None:
        """``key`` = numerator / denominator (NaN when the denominator is 0), a ratio of two totals of
        the window that is not a fraction (dollars per million messages): pooled over replications
        as Σ numerators / Σ denominators, with the ratio estimator's interval."""
        self.metrics[key] = numerator / denominator if denominator else float("nan")
        self.ratios[key] = (float(numerator), float(denominator))

    def counts(self, prefix: str, counter, events) -> None:
        """``prefix.EVENT`` for each of ``events``, from a window counter."""
        for event in events:
            self.metrics[f"{prefix}.{event}"] = float(counter[event])

    def level(self, boundary) -> np.ndarray:
        """The mean number inside ``boundary`` in each time bin."""
        return np.asarray(boundary.bin_area) / self.bin_width_s
