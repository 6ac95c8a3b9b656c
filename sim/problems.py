"""What can be wrong with the input: a scenario that cannot be run, a question that cannot be asked.

A :class:`ScenarioError` carries every :class:`Problem` found in a scenario at once, each located
by line, field path, or the ``--set`` that caused it. A :class:`CapacityError` is a capacity
question that cannot be asked as given (no SLO, a bad ``--slo``, a ``--rate`` that is no rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario: where (line, field path, or the --set that caused it) and what."""

    message: str
    path: str = ""
    line: int | None = None
    override: str | None = None

    def format(self, source: str) -> str:
        if self.override:
            where = f"{source} (--set {self.override})"
        else:
            where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(Exception):
    """A scenario that cannot be run, with every problem found in it."""

    def __init__(self, source: str, problems: Iterable[Problem]):
        self.source = source
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.format(self.source) for p in self.problems)


class CapacityError(ValueError):
    """A capacity question that cannot be asked as given (no SLO, a bad --slo, a bad path)."""
