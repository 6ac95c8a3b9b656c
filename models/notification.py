"""How the user of an asynchronous request learns that the work is done: polling or a push."""

from __future__ import annotations


class Push:
    """The server pushes a notification when the work completes (a WebSocket message, a mobile
    push): the user knows ``latency`` (a sampler of seconds) after the completion.
    Simplification: every push arrives; its latency is drawn independently of load."""

    polls = False

    def __init__(self, latency):
        self.latency = latency

    def notified_s(self, completed_s: float, answered_s: float) -> float:
        return max(completed_s + self.latency(), answered_s)


class Poll:
    """The client polls a status endpoint every ``interval_s`` seconds after each answer (the 202
    Accepted, then each status answer: an HTTP client following a ``Location`` header with
    ``Retry-After``) and learns of the completion from the first status answer after it. Each
    status request is a request to the web tier: it crosses the links, waits for a handler and
    holds it for its ``status`` lookup (a sampler of seconds; None: no time, but it still needs a
    free handler), so polling costs handler time (:class:`~models.web_tier.WebTier` runs the polls).
    Simplification: the client polls until it learns the result, however long that takes."""

    polls = True

    def __init__(self, interval_s: float, status=None):
        self.interval_s = interval_s
        self.status = status
