"""The checks every replication runs: Little's law on each boundary, and conservation of messages.

Little's law, L = λW, holds on any boundary of a stable system in long-run averages. Over a finite
window it holds up to the items that straddle the window's edges: those inside at the start
contribute to L (the time-average number inside, integrated over the window only) but not to λ
(entries in the window) nor to W (sojourns of items that entered in the window and left before its
end); those inside at the end contribute to L and λ with sojourns that W cannot see yet.

So the check allows a discrepancy of the size those straddlers can explain and no more: each of the
N(start) + N(end) straddling items covers on average a residual sojourn E[W²] / (2 E[W]) of the
window (the inspection paradox: a straddler is caught in a long stay more often than not). The
tolerance is three times that, plus one item, as a fraction of λW:

    |L − λW| ≤ 3 · (N(start) + N(end) + 1) · E[W²] / (2 E[W]) / T

A leak, a double count or a mistimed stamp grows with the window while this bound does not, and
the bound shrinks as the window grows, so the check is meaningful for long and short runs alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from .recorder import Boundary


@dataclass(frozen=True)
class LittleCheck:
    boundary: str
    kind: str
    L: float
    lambda_per_s: float
    W_s: float
    rel_error: float
    tolerance: float
    ok: bool
    straddling: int

    def as_dict(self) -> dict:
        return {
            "boundary": self.boundary,
            "kind": self.kind,
            "L": self.L,
            "lambda_per_s": self.lambda_per_s,
            "W_s": self.W_s,
            "rel_error": self.rel_error,
            "tolerance": self.tolerance,
            "ok": self.ok,
        }


def littles_law(boundary: Boundary, window_s: float) -> LittleCheck:
    """Check L = λW for ``boundary`` over a measurement window of ``window_s`` seconds."""
    L = boundary.area / window_s
    lam = boundary.entries / window_s
    W = boundary.sojourn_sum / boundary.completed if boundary.completed else 0.0
    straddling = boundary.n_at_start + boundary.n_at_end
    scale = max(L, lam * W)
    if scale == 0:
        return LittleCheck(boundary.name, boundary.kind, L, lam, W, 0.0, 0.0, True, straddling)
    if boundary.sojourn_sum > 0:
        residual = boundary.sojourn_sq_sum / (2 * boundary.sojourn_sum)
    else:
        residual = window_s
    tolerance = 3 * (straddling + 1) * residual / window_s / scale
    rel_error = abs(L - lam * W) / scale
    return LittleCheck(boundary.name, boundary.kind, L, lam, W, rel_error, tolerance, rel_error <= tolerance, straddling)


@dataclass(frozen=True)
class Conservation:
    """produced = processed + lost + rejected + dead_lettered + in_flight holds by construction
    (each message has one outcome slot); what is checked is that it is true: every message without
    an outcome is really held by some component (none silently dropped, none held twice), and no
    message was given two outcomes."""

    counts: dict
    in_flight_total: int
    held_by_components: int
    double_outcomes: int

    @property
    def ok(self) -> bool:
        return self.in_flight_total == self.held_by_components and self.double_outcomes == 0

    def problem(self) -> str | None:
        if self.in_flight_total != self.held_by_components:
            return (
                f"{self.in_flight_total} messages have no outcome but components hold "
                f"{self.held_by_components}: {abs(self.in_flight_total - self.held_by_components)} unaccounted for"
            )
        if self.double_outcomes:
            return f"{self.double_outcomes} messages were given a second outcome"
        return None
