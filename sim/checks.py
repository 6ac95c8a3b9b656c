"""The checks every replication runs: Little's law on each boundary, and conservation of messages.

Little's law, L = λW, holds on any boundary of a stable system in long-run averages. Over a finite
window of T seconds it holds up to the items that straddle the window's edges. With N_s items
inside when the window opens and N_e when it closes, A entries in the window of which A_c have left
(their mean stay W), P = N_e − (A − A_c) items inside for the whole window, and M the longest stay
that ended in the run, the time integral of the number inside, L·T, is exactly

    L·T = P·T + carry-in + A_c·W + in-progress

where carry-in is the time inside the window of the N_s − P items already inside at its start that
left in it (each at most min(T, M)), and in-progress the time so far of the A − A_c entrants still
inside at its end (the boundary keeps it exactly: the sum of their entry times, see
:class:`~sim.recorder.Boundary`). So E = L·T − λT·W lies in the band

    P·T + in-progress − (A − A_c)·W  ≤  E  ≤  the same + (N_s − P)·min(T, M)

whatever the stays were. The boundary's sums keep to it by construction — a wrong stamp or an item
let out twice moves time between the stays that ended and those in progress without changing their
sum — so it is no test of them; it is the tolerance short windows need. What the check **fails** is
a count below zero at the end (more items left than entered, or more of the window's entrants), and
stays in progress that are not *healthy*. A healthy stay in progress is credited at most min(T, M), like the
stays that ended:

    E  ≤  N_s·min(T, M) + min(in-progress, (A − A_c)·min(T, M)) − (A − A_c)·W

Beyond that, stays in progress are longer than every stay that ended. Each such stay adds at most
T − min(T, M) beyond its share, so the excess tells how many there are at least; of S straddling
items, about S / (A_c + 1) outlast the longest of A_c stays that ended by chance alone. When there
are more than ``OVERLONG`` times that (and at least ``OVERLONG``) on a window at least
``LONG_WINDOW`` longest stays long, that is a count that never comes down — a leak — and the check
**fails**; with fewer, or on a shorter window (a 2-second window, a run that starts empty and is
still filling), it may be a transient or a long stay still running: the check is **inconclusive**. It is
inconclusive too when its tolerance (the healthy band's half-width over max(L, λW)) is 1 or more:
the relative error |L − λW| / max(L, λW) is never above 1, so such a check passes anything. ``ok``
means "not failed" (as before); ``verdict`` says which of ok, failed, inconclusive.
"""

from __future__ import annotations

from dataclasses import dataclass

from .recorder import Boundary

LONG_WINDOW = 10  # a window this many longest stays long, or more, can tell a leak from a long stay
OVERLONG = 3  # how many times more stays beyond the longest that ended than chance gives make a leak
ROUNDING = 1e-9  # relative slack for the floating-point sums (area, entry times) the band compares


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
    verdict: str = "ok"
    reason: str = ""

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
            "verdict": self.verdict,
            "reason": self.reason,
            "applies": self.applies,
        }


def littles_law(boundary: Boundary, window_s: float) -> LittleCheck:
    """Check L = λW for ``boundary`` over a measurement window of ``window_s`` seconds (see the
    module's docstring for the band and the verdicts)."""
    L = boundary.area / window_s
    lam = boundary.entries / window_s
    W = boundary.sojourn_sum / boundary.completed if boundary.completed else 0.0
    straddling = boundary.n_at_start + boundary.n_at_end
    scale = max(L, lam * W)
    checked = (boundary.name, boundary.kind, L, lam, W)
    if scale == 0:
        return LittleCheck(*checked, 0.0, 0.0, True, straddling)
    if boundary.completed == 0:
        # nothing that entered in the window has left it (a sink, such as a dead-letter queue that
        # keeps what it receives): W is unknown, and the law says nothing about a growing pile
        return LittleCheck(*checked, 0.0, 0.0, True, straddling, applies=False, verdict="inconclusive",
                           reason="nothing that entered in the window left it")
    inside = boundary.entries - boundary.completed  # A − A_c
    whole = boundary.n_at_end - inside  # P
    stay_cap = min(window_s, boundary.max_sojourn)
    error = boundary.area - lam * window_s * W  # E
    low = whole * window_s + boundary.in_progress_s - inside * W
    high = low + (boundary.n_at_start - whole) * stay_cap  # the band any stays keep to
    healthy = boundary.n_at_start * stay_cap + min(boundary.in_progress_s, inside * stay_cap) - inside * W
    slack = ROUNDING * (boundary.area + boundary.sojourn_sum + abs(boundary.in_progress_s) + whole * window_s) + 1e-12
    tolerance = (max(-low, min(high, healthy), 0.0) + slack) / window_s / scale
    rel_error = abs(error) / window_s / scale
    if boundary.n_at_end < 0 or inside < 0:
        verdict, reason = "failed", f"more items left it than entered ({min(boundary.n_at_end, inside)} inside at the end)"
    elif error > healthy + slack:
        long_window = window_s >= LONG_WINDOW * boundary.max_sojourn  # so stay_cap < window_s
        overlong = long_window and (error - healthy) / (window_s - stay_cap)  # at least this many stays exceed M
        verdict = "failed" if long_window and overlong > max(OVERLONG, OVERLONG * straddling / (boundary.completed + 1)) else "inconclusive"
        reason = (f"{inside + whole} items still inside at the end have stayed {boundary.in_progress_s + whole * window_s:.4g} s "
                  f"in the window, longer than any stay that ended ({boundary.max_sojourn:.4g} s)")
    elif tolerance >= 1:
        verdict, reason = "inconclusive", "the window is too short for the stays: the tolerance passes anything"
    else:
        verdict, reason = "ok", ""
    return LittleCheck(*checked, rel_error, tolerance, verdict != "failed", straddling, verdict=verdict, reason=reason)


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
