"""The checks every replication runs: Little's law on each boundary, and conservation of messages.

Little's law, L = λW, holds on any boundary of a stable system in long-run averages. Over a finite
window it holds up to the items that straddle the window's edges: those inside at the start
contribute to L (the time-average number inside, integrated over the window only) but not to λ
(entries in the window) nor to W (sojourns of items that entered in the window and left before its
end); those inside at the end contribute to L and λ with sojourns that W cannot see yet.

Exactly, with T the window, A its entries of which A_c have left, S_c the sum of their sojourns:

    L·T − λT·W = carry-in + censored − (A − A_c)·W

where carry-in is the part inside the window of the stays of the N(start) items already inside
when it opened, and censored the time so far of the items still inside at its end. Each straddling
item contributes at most one stay, and no healthy stay is longer than the longest one seen in the
run, so the check allows

    |L − λW| ≤ (N(start) + N(end)) · longest sojourn / T

and no more. A leak, a double count or a mistimed stamp grows with the window while this bound
does not (a leaked item adds its whole time inside, the bound one longest sojourn), so the check is
meaningful for long and short windows alike, and heavy tails widen it only as much as they must.
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
    applies: bool = True

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
            "applies": self.applies,
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
    if boundary.completed == 0:
        # nothing that entered in the window has left it (a sink, such as a dead-letter queue that
        # keeps what it receives): W is unknown, and the law says nothing about a growing pile
        return LittleCheck(boundary.name, boundary.kind, L, lam, W, 0.0, 0.0, True, straddling, applies=False)
    tolerance = straddling * boundary.max_sojourn / window_s / scale + 1e-12
    rel_error = abs(L - lam * W) / scale
    return LittleCheck(boundary.name, boundary.kind, L, lam, W, rel_error, tolerance, rel_error <= tolerance, straddling)


@dataclass(frozen=True)
class Conservation:
    """produced = processed + lost + rejected + dead_lettered + in_flight holds by construction
    (each message is in the Recorder's table of messages in flight or tallied under one outcome,
    moved when a later copy changes it); what is checked is that it is true: every message without
    an outcome at the end is really held by some component — waiting in a broker, in a worker's
    hands, unacknowledged, in a client's backoff — and none was silently dropped.

    With clients, each attempt is accounted too: an attempt admitted and not yet ended
    (processed, shed, lost...) must be held by a broker or a worker (``attempts_open`` of them at
    the end, ``attempts_unaccounted`` held nowhere)."""

    counts: dict
    in_flight_total: int
    unaccounted: int
    unaccounted_examples: tuple = ()
    attempts_open: int = 0
    attempts_unaccounted: int = 0
    attempts_unaccounted_examples: tuple = ()

    @property
    def ok(self) -> bool:
        return self.unaccounted == 0 and self.attempts_unaccounted == 0

    def problem(self) -> str | None:
        if self.unaccounted:
            examples = ", ".join(str(i) for i in self.unaccounted_examples)
            return (
                f"{self.unaccounted} of the {self.in_flight_total} messages with no outcome are held by no "
                f"component: lost silently (message ids {examples})"
            )
        if self.attempts_unaccounted:
            examples = ", ".join(str(i) for i in self.attempts_unaccounted_examples)
            return (
                f"{self.attempts_unaccounted} of the {self.attempts_open} attempts admitted and not ended are held by no "
                f"broker or worker: lost silently (request ids {examples})"
            )
        return None
