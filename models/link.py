"""Network links with a latency distribution: request, publish, deliver, respond."""

from __future__ import annotations


class Link:
    """One network hop that a caller crosses and waits for: each crossing takes a ``latency``
    draw (a sampler of seconds), and any number cross at once (no bandwidth limit).

    It imitates the time a request, a publication or a response spends between two machines
    (a round trip to a broker with its serialisation, a response travelling back to the user):
    time that a waiting caller, such as a request handler, pays in full. ``boundary`` counts the
    crossings in progress (Little's law: mean crossings = rate × mean latency).

    Simplification: no loss, no bandwidth, no congestion; latency draws are independent.
    """

    def __init__(self, env, name, latency, boundary):
        self.env = env
        self.name = name
        self.latency = latency
        self.boundary = boundary

    def cross(self, latency_s: float | None = None):
        """Cross the link (``yield from link.cross()``); ``latency_s``: a latency already drawn."""
        env = self.env
        started = env.now
        self.boundary.enter(started)
        yield env.timeout(self.latency() if latency_s is None else latency_s)
        self.boundary.leave(env.now, started)
