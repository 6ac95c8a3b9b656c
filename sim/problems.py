"""What can be wrong with the input: a scenario that cannot be run, a question that cannot be asked.

A :class:`ScenarioError` carries every :class:`Problem` found in a scenario at once, each located
by line, field path, or the ``--set`` that caused it. A :class:`CapacityError` is a capacity
question that cannot be asked as given (no SLO, a bad ``--slo``, a ``--rate`` that is no rate).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any, Iterable

SHOWN_CHARS = 80
"""The most characters of an offending value that a message quotes."""

SHOWN_PROBLEMS = 50
"""The most problems a :class:`ScenarioError` lists; the rest are counted."""


class _ShortRepr(reprlib.Repr):
    """reprlib's abbreviations, also for the list and dict subclasses the YAML reader gives
    (reprlib would otherwise print those whole)."""

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, dict):
            return self.repr_dict(x, level)
        if isinstance(x, list):
            return self.repr_list(x, level)
        return super().repr1(x, level)


_REPR = _ShortRepr()
_REPR.maxstring = _REPR.maxother = SHOWN_CHARS
_REPR.maxlevel = 3


def shorten(text: str) -> str:
    """``text``, cut to :data:`SHOWN_CHARS` with an ellipsis."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def short_repr(value: Any) -> str:
    """The repr of a value as a message quotes it: nested lists, long strings and deep mappings
    abbreviated with ``...``, never more than :data:`SHOWN_CHARS` characters, whatever the value's size."""
    return shorten(_REPR.repr(value))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario: where (line, field path, or the command-line override that
    caused it: --set, --slo, --precision, compare's --vs) and what."""

    message: str
    path: str = ""
    line: int | None = None
    override: str | None = None

    def format(self, source: str) -> str:
        if self.override:
            where = f"{source} (command line: {shorten(self.override)})"
        else:
            where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ScenarioError(Exception):
    """A scenario that cannot be run, with the problems found in it: all of them, or the first
    :data:`SHOWN_PROBLEMS` and a last one that counts the rest."""

    def __init__(self, source: str, problems: Iterable[Problem]):
        self.source = source
        self.problems = list(problems)
        if len(self.problems) > SHOWN_PROBLEMS:
            more = len(self.problems) - SHOWN_PROBLEMS
            self.problems[SHOWN_PROBLEMS:] = [Problem(f"... and {more} more problems of the same kinds or others, not shown")]
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.format(self.source) for p in self.problems)


class CapacityError(ValueError):
    """A capacity question that cannot be asked as given (no SLO, a bad --slo, a bad path)."""
