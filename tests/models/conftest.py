"""Fakes for driving models in a bare ``simpy.Environment``: an observer that logs every fate,
window counters that always count, and levels (boundaries, gauges) that integrate over time."""

from __future__ import annotations

from collections import Counter

import pytest

from models.fates import Fates


class FakeObserver:
    """Logs every fate it is told as ``(fate, message id, time)`` in ``log``; a message's outcome
    is its first processed / lost / dead_lettered / rejected fate."""

    def __init__(self):
        self.created_s: list[float] = []
        self.log: list[tuple] = []
        self.outcome: dict[int, str] = {}

    def created(self, now):
        self.created_s.append(now)
        return len(self.created_s) - 1

    def settled(self, message):
        return message.id in self.outcome

    def fates(self, fate: str) -> list[tuple[int, float]]:
        """(id, time) of each ``fate`` told, in order."""
        return [(i, t) for f, i, t in self.log if f == fate]

    def _told(self, fate, message, now, outcome=False):
        self.log.append((fate, message.id, now))
        if outcome:
            self.outcome.setdefault(message.id, fate)

    def admitted(self, message, now):
        self._told("admitted", message, now)

    def processed(self, message, now):
        self._told("processed", message, now, outcome=True)

    def lost(self, message, now):
        self._told("lost", message, now, outcome=True)

    def dead_lettered(self, message, now):
        self._told("dead_lettered", message, now, outcome=True)

    def rejected(self, message, now, admitted):
        self._told("rejected", message, now, outcome=True)

    def suppressed(self, message, now):
        self._told("suppressed", message, now)

    def committed(self, message, now):
        self._told("committed", message, now)

    def not_committed(self, message, now):
        self._told("not_committed", message, now)

    def request_admitted(self, request, now):
        self.log.append(("request_admitted", request.id, now))

    def request_settled(self, request, now, outcome):
        self.log.append((f"request_{outcome}", request.id, now))
        self.outcome.setdefault(request.id, outcome)

    def duplicate(self, request):
        self.log.append(("duplicate", request.id, None))

    def retry_sent(self, now):
        self.log.append(("retry_sent", None, now))

    def wasted(self, now):
        self.log.append(("wasted", None, now))


class Counts(Counter):
    """A window counter whose window is always open."""

    def add(self, event, n=1):
        self[event] += n


class Level:
    """A boundary or a gauge: the number inside (``n``) and its integral over time."""

    def __init__(self, n=0):
        self.n = n
        self.area = 0.0
        self.last = 0.0

    def _advance(self, now):
        self.area += self.n * (now - self.last)
        self.last = now

    def enter(self, now):
        self._advance(now)
        self.n += 1

    def leave(self, now, entered_s):
        self._advance(now)
        self.n -= 1

    def set(self, now, value):
        self._advance(now)
        self.n = value

    def integral(self, now):
        return self.area + self.n * (now - self.last)


@pytest.fixture
def observer() -> FakeObserver:
    return FakeObserver()


@pytest.fixture
def fates(observer) -> Fates:
    """A fates router telling the fake ``observer``."""
    return Fates(observer)


@pytest.fixture
def counts():
    """Makes window counters that always count."""
    return Counts


@pytest.fixture
def level():
    """Makes levels (boundaries, gauges): ``level()`` or ``level(n)``."""
    return Level


@pytest.fixture
def open_counts():
    """Makes window counters that always count and say their window is ``open`` (the database
    reads it to count the connections lent at once)."""
    return type("OpenCounts", (Counts,), {"open": True})
