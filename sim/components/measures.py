"""What one replication measured, assembled part by part: flat metric keys (``brokers.q.wait_s.p99``)
and time series of the run's time bins."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


@dataclass
class Measures:
    """Metrics and series as they are added; ``window_s`` is the measurement window's length,
    ``bin_width_s`` a time bin's."""

    window_s: float
    bin_width_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, np.ndarray] = field(default_factory=dict)

    def distribution(self, prefix: str, values) -> None:
        """``prefix.mean`` and ``prefix.p50`` … ``prefix.p999`` of ``values`` (NaN when there are none)."""
        values = np.asarray(values, dtype=np.float64)
        self.metrics[f"{prefix}.mean"] = float(values.mean()) if values.size else float("nan")
        quantiles = np.percentile(values, list(PERCENTILES.values())) if values.size else [float("nan")] * len(PERCENTILES)
        for key, q in zip(PERCENTILES, quantiles):
            self.metrics[f"{prefix}.{key}"] = float(q)

    def counts(self, prefix: str, counter, events) -> None:
        """``prefix.EVENT`` for each of ``events``, from a window counter."""
        for event in events:
            self.metrics[f"{prefix}.{event}"] = float(counter[event])

    def level(self, boundary) -> np.ndarray:
        """The mean number inside ``boundary`` in each time bin."""
        return np.asarray(boundary.bin_area) / self.bin_width_s
