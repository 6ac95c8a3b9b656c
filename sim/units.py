"""Durations and rates with units, as scenario files write them.

A duration is a number of seconds or a string with a unit: ``80ms``, ``1.5s``, ``10m``, ``2h``,
``1d``, ``250us``. A rate is a number per second or a string ``COUNT/UNIT``: ``200/s``,
``12000/min``, ``3/h``. Both parse to plain floats in seconds and per second.
"""

from __future__ import annotations

import re

from .problems import short_repr

SECONDS_PER_UNIT = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
DURATION_RE = re.compile(rf"^\s*({_NUMBER})\s*([a-zµ]+)\s*$")
RATE_RE = re.compile(rf"^\s*({_NUMBER})\s*/\s*([a-zµ]+)\s*$")

DURATION_PATTERN = rf"^\s*{_NUMBER}\s*(us|µs|ms|s|sec|m|min|h|d)\s*$"
RATE_PATTERN = rf"^\s*{_NUMBER}\s*/\s*(us|µs|ms|s|sec|m|min|h|d)\s*$"


def unit_seconds(unit: str, text: str) -> float:
    """Seconds in one ``unit`` (``ms``, ``min``...); ``text`` names the value in the error."""
    try:
        return SECONDS_PER_UNIT[unit]
    except KeyError:
        known = ", ".join(k for k in SECONDS_PER_UNIT if k != "µs")
        raise ValueError(f"unknown time unit '{unit}' in '{text}' (use one of: {known})") from None


def parse_duration(value: object) -> float:
    """Seconds in ``value``: a number (seconds) or a string such as ``80ms`` or ``2h``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 80ms or 2h, got {short_repr(value)}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * unit_seconds(match.group(2), value)
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a duration such as 80ms, 1.5s, 10m or 2h, got {short_repr(value)}")


def parse_rate(value: object) -> float:
    """Events per second in ``value``: a number (per second) or a string such as ``200/s``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a rate such as 200/s, got {short_repr(value)}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = RATE_RE.match(value)
        if match:
            return float(match.group(1)) / unit_seconds(match.group(2), value)
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a rate such as 200/s or 12000/min, got {short_repr(value)}")


def format_duration(seconds: float) -> str:
    """A short human reading of a duration: ``850ms``, ``12.3s``, ``4.5min``, ``2.0h``."""
    magnitude = abs(seconds)
    if magnitude == 0:
        return "0s"
    if magnitude < 1e-3:
        return f"{seconds * 1e6:.3g}us"
    if magnitude < 1:
        return f"{seconds * 1e3:.3g}ms"
    if magnitude < 120:
        return f"{seconds:.3g}s"
    if magnitude < 7200:
        return f"{seconds / 60:.3g}min"
    return f"{seconds / 3600:.3g}h"
