"""Quantiles that merge across replications, in memory that does not grow with the messages.

A :class:`Sketch` folds values (latencies, waits) into logarithmic buckets with DDSketch's mapping
(Masson, Rim & Lee, "DDSketch: a fast and fully-mergeable quantile sketch with relative-error
guarantees", VLDB 2019): with γ = (1 + α)/(1 − α), a value x > 0 goes to bucket k = ⌈log_γ x⌉,
and bucket k answers 2γᵏ/(γ + 1), which is within a relative error α of every value in it. Any
quantile read from the buckets is therefore within α of the same order statistic of the values
themselves; α is :data:`RELATIVE_ACCURACY` (0.5%). Values at or below :data:`SMALLEST` (a wait
of zero: a worker was free) are counted apart and answer 0.

Buckets of different replications add up, so the quantile of all the replications' values
together is read from the summed buckets: the pooled estimate, free of the bias of averaging
per-replication percentiles. Each sketch also keeps its values in time *sections* of the
measurement window (:data:`SECTIONS` of them, by the time each value was recorded), so that one
long replication can be cut into batches (:mod:`sim.estimates`).

The maintained ``ddsketch`` package maps one value at a time in Python; here values wait in a
small buffer and are bucketed by numpy a block at a time, so that recording stays one append on
the simulation's hot path.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

import numpy as np

RELATIVE_ACCURACY = 0.005
SECTIONS = 20
SMALLEST = 1e-9
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_BLOCK = 4096


def bucket_value(key: np.ndarray | int) -> np.ndarray | float:
    """The value bucket ``key`` answers: within :data:`RELATIVE_ACCURACY` of all its values."""
    return 2 * np.power(_GAMMA, key) / (_GAMMA + 1)


@dataclass(frozen=True)
class Distribution:
    """The values one sketch saw, by section: ``counts[s, j]`` values of section ``s`` in bucket
    ``offset + j``, ``zeros[s]`` values at or below :data:`SMALLEST`, ``sums[s]`` their exact sum."""

    offset: int
    counts: np.ndarray
    zeros: np.ndarray
    sums: np.ndarray

    @property
    def sections(self) -> int:
        return int(self.zeros.size)

    @property
    def count(self) -> int:
        return int(self.counts.sum() + self.zeros.sum())

    @property
    def mean(self) -> float:
        n = self.count
        return float(self.sums.sum()) / n if n else math.nan

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 ≤ q ≤ 1) of all the values as numpy's default (linear) method
        defines it — between the values of ranks ⌊h⌋ and ⌈h⌉ in increasing order, h = q·(n − 1)
        — each within the relative accuracy; NaN with no values."""
        n = self.count
        if n == 0:
            return math.nan
        h = q * (n - 1)
        low, high = self.order_statistic(math.floor(h)), self.order_statistic(math.ceil(h))
        return low + (h - math.floor(h)) * (high - low)

    def order_statistic(self, rank: int) -> float:
        """The value of rank ``rank`` (from 0) in increasing order, as its bucket answers it."""
        zeros = int(self.zeros.sum())
        if rank < zeros:
            return 0.0
        cumulative = np.cumsum(self.counts.sum(axis=0))
        return float(bucket_value(self.offset + int(np.searchsorted(cumulative, rank - zeros, side="right"))))

    def quantile_within_buckets(self, q: float) -> float:
        """The ``q`` quantile read by rank *within* its bucket: the c values of bucket k are taken
        as spread evenly, by rank, on a log scale between its edges γᵏ⁻¹ and γᵏ (the j-th at
        γ^(k − 1 + (j + ½)/c)), so that the value moves with q inside a bucket instead of
        jumping from one bucket's value to the next. For the bounds of an interval: read with
        :meth:`quantile`, an interval narrower than a bucket would collapse onto the point.
        Within 2α of the order statistic (the width of a bucket), rather than α; NaN with no values."""
        n = self.count
        if n == 0:
            return math.nan
        rank = q * (n - 1)
        zeros = int(self.zeros.sum())
        if rank < zeros:
            return 0.0
        counts = self.counts.sum(axis=0)
        cumulative = np.cumsum(counts) + zeros
        j = min(int(np.searchsorted(cumulative, rank + 0.5, side="left")), counts.size - 1)
        share = min(max((rank - (cumulative[j] - counts[j]) + 0.5) / counts[j], 0.0), 1.0)
        return float(_GAMMA ** (self.offset + j - 1 + share))

    def count_at_or_below(self, value: float) -> int:
        """How many values lie in the buckets at or below the one ``value`` falls in."""
        zeros = int(self.zeros.sum())
        if value <= SMALLEST:
            return zeros
        last = math.ceil(math.log(value) / _LOG_GAMMA) - self.offset
        return zeros + int(self.counts[:, :max(last + 1, 0)].sum())

    def section(self, s: int) -> Distribution:
        return Distribution(self.offset, self.counts[s:s + 1], self.zeros[s:s + 1], self.sums[s:s + 1])

    def batched(self, batches: int) -> Distribution:
        """The same values in ``batches`` sections, each joining adjacent sections (the last
        batches take one more when the sections do not divide evenly)."""
        edges = np.linspace(0, self.sections, batches + 1).round().astype(int)
        return Distribution(self.offset, np.add.reduceat(self.counts, edges[:-1], axis=0),
                            np.add.reduceat(self.zeros, edges[:-1]), np.add.reduceat(self.sums, edges[:-1]))

    def whole(self) -> Distribution:
        return self.batched(1)

    @staticmethod
    def merged(parts: list[Distribution]) -> Distribution:
        """One section holding every value of ``parts`` (the pooled distribution)."""
        low = min(p.offset for p in parts)
        high = max(p.offset + p.counts.shape[1] for p in parts)
        counts = np.zeros((1, high - low), dtype=np.int64)
        for p in parts:
            counts[0, p.offset - low:p.offset - low + p.counts.shape[1]] += p.counts.sum(axis=0)
        return Distribution(low, counts, np.array([sum(int(p.zeros.sum()) for p in parts)]),
                            np.array([sum(float(p.sums.sum()) for p in parts)]))

    @staticmethod
    def of(values, sections: int = 1) -> Distribution:
        """The distribution of ``values`` recorded without times, in equal sections by order."""
        sketch = Sketch(0.0, float(sections), sections)
        values = np.asarray(values, dtype=np.float64)
        times = np.floor(np.arange(values.size) * sections / max(values.size, 1))
        sketch.add_block(values, times)
        return sketch.distribution()


class Sketch:
    """Values recorded during a replication, with the time each was recorded: :meth:`add` is
    what the hot path calls; :meth:`distribution` is what is measured at the end. Sections cut
    the window from ``start_s`` to ``end_s`` into equal parts (values recorded before ``start_s``
    go to the first, after ``end_s`` to the last)."""

    __slots__ = ("_values", "_times", "_start", "_section_s", "_sections", "_offset", "_counts", "_zeros", "_sums")

    def __init__(self, start_s: float = 0.0, end_s: float = 1.0, sections: int = SECTIONS):
        self._values = array("d")
        self._times = array("d")
        self._start = start_s
        self._sections = sections if end_s > start_s else 1
        self._section_s = (end_s - start_s) / self._sections if end_s > start_s else 1.0
        self._offset = 0
        self._counts = np.zeros((self._sections, 0), dtype=np.int64)
        self._zeros = np.zeros(self._sections, dtype=np.int64)
        self._sums = np.zeros(self._sections)

    def add(self, value: float, now: float) -> None:
        """Record ``value`` at time ``now``."""
        self._values.append(value)
        self._times.append(now)
        if len(self._values) >= _BLOCK:
            self._flush()

    def _flush(self) -> None:
        if self._values:
            self.add_block(np.frombuffer(self._values, dtype=np.float64), np.frombuffer(self._times, dtype=np.float64))
            self._values = array("d")
            self._times = array("d")

    def add_block(self, values: np.ndarray, times: np.ndarray) -> None:
        """Record many values at once (``times`` as :meth:`add` takes them)."""
        if values.size == 0:
            return
        section = np.clip(((times - self._start) // self._section_s).astype(np.int64), 0, self._sections - 1)
        small = values <= SMALLEST
        np.add.at(self._zeros, section[small], 1)
        self._sums += np.bincount(section, weights=values, minlength=self._sections)
        keys = np.ceil(np.log(values[~small]) / _LOG_GAMMA).astype(np.int64)
        if keys.size == 0:
            return
        self._cover(int(keys.min()), int(keys.max()))
        width = self._counts.shape[1]
        cells = section[~small] * width + (keys - self._offset)
        self._counts += np.bincount(cells, minlength=self._sections * width).reshape(self._sections, width)

    def _cover(self, low: int, high: int) -> None:
        """Widen the bucket range to hold keys ``low`` to ``high``."""
        width = self._counts.shape[1]
        if width and self._offset <= low and high < self._offset + width:
            return
        new_low = min(low, self._offset) if width else low
        new_high = max(high + 1, self._offset + width) if width else high + 1
        counts = np.zeros((self._sections, new_high - new_low), dtype=np.int64)
        counts[:, self._offset - new_low:self._offset - new_low + width] = self._counts
        self._offset, self._counts = new_low, counts

    def distribution(self) -> Distribution:
        """What was recorded, compact: only the range of buckets that hold values."""
        self._flush()
        used = np.flatnonzero(self._counts.sum(axis=0))
        if used.size == 0:
            return Distribution(0, np.zeros((self._sections, 0), dtype=np.int64), self._zeros.copy(), self._sums.copy())
        return Distribution(self._offset + int(used[0]), self._counts[:, used[0]:used[-1] + 1].copy(),
                            self._zeros.copy(), self._sums.copy())
