"""How the user of an asynchronous request learns that the work is done: polling or a push."""

from __future__ import annotations

import math


class Push:
    """The server pushes a notification when the work completes (a WebSocket message, a mobile
    push): the user knows ``latency`` (a sampler of seconds) after the completion.
    Simplification: every push arrives; its latency is drawn independently of load."""

    def __init__(self, latency):
        self.latency = latency

    def notified_s(self, completed_s: float, answered_s: float) -> float:
        return max(completed_s + self.latency(), answered_s)


class Poll:
    """The client polls a status endpoint every ``interval_s`` seconds from the moment it got the
    202 Accepted (as an HTTP client following a ``Location`` header with ``Retry-After``), and
    learns of the completion at the first poll after it: at ``answered + k·interval``, k ≥ 1.
    Simplification: a poll is answered at once and costs no handler time."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s

    def notified_s(self, completed_s: float, answered_s: float) -> float:
        polls = max(1, math.ceil((completed_s - answered_s) / self.interval_s))
        return answered_s + polls * self.interval_s
