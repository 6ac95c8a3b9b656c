"""Durations and rates with units, as scenario files write them (sim.units)."""

import math

import pytest

from sim.units import format_duration, parse_duration, parse_rate


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("80ms", 0.08),
        ("1.5s", 1.5),
        ("10m", 600.0),
        ("10min", 600.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("250us", 250e-6),
        ("10µs", 10e-6),
        ("10sec", 10.0),
        (" 80 ms ", 0.08),
        ("1e3ms", 1.0),
        (".5s", 0.5),
    ],
)
def test_durations_with_units_parse_to_seconds(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("value, seconds", [(5, 5.0), (2.5, 2.5), (0, 0.0), ("3", 3.0), ("0.25", 0.25)])
def test_a_bare_number_is_seconds(value, seconds):
    parsed = parse_duration(value)
    assert parsed == seconds
    assert isinstance(parsed, float)


@pytest.mark.parametrize(
    "text, per_second",
    [
        ("200/s", 200.0),
        ("12000/min", 200.0),
        ("3/h", 3 / 3600),
        ("1/ms", 1000.0),
        ("86400/d", 1.0),
        ("30 / s", 30.0),
    ],
)
def test_rates_with_units_parse_to_per_second(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second, rel=1e-12)


def test_12000_per_minute_is_exactly_200_per_second():
    assert parse_rate("12000/min") == parse_rate("200/s") == 200.0


@pytest.mark.parametrize("value, per_second", [(7, 7.0), (0.5, 0.5), ("200", 200.0)])
def test_a_bare_number_is_per_second(value, per_second):
    parsed = parse_rate(value)
    assert parsed == per_second
    assert isinstance(parsed, float)


def test_an_unknown_duration_unit_is_named_with_the_units_that_exist():
    with pytest.raises(ValueError) as info:
        parse_duration("5 parsecs")
    message = str(info.value)
    assert "unknown time unit 'parsecs'" in message
    assert "'5 parsecs'" in message
    for unit in ("us", "ms", "s", "min", "h", "d"):
        assert unit in message.split("use one of:")[1]


def test_an_unknown_rate_unit_is_named():
    with pytest.raises(ValueError) as info:
        parse_rate("5/parsec")
    assert "unknown time unit 'parsec'" in str(info.value)


@pytest.mark.parametrize("text", ["5 parsecs", "abc", "10/s", "", "s"])
def test_text_that_is_not_a_duration_is_refused_quoting_it(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    message = str(info.value)
    assert repr(text) in message
    assert "duration" in message or "time unit" in message


@pytest.mark.parametrize("text", ["abc", "5 parsecs", "10s", "/s"])
def test_text_that_is_not_a_rate_is_refused_quoting_it(text):
    with pytest.raises(ValueError) as info:
        parse_rate(text)
    message = str(info.value)
    assert repr(text) in message
    assert "rate such as 200/s" in message


@pytest.mark.parametrize("flag", [True, False])
def test_booleans_are_neither_durations_nor_rates(flag):
    # bool is an int in Python: without a special case `true` would silently mean 1 second
    with pytest.raises(ValueError) as info:
        parse_duration(flag)
    assert "duration" in str(info.value) and repr(flag) in str(info.value)
    with pytest.raises(ValueError) as info:
        parse_rate(flag)
    assert "rate" in str(info.value) and repr(flag) in str(info.value)


@pytest.mark.parametrize("value", [None, [1], {"s": 1}])
def test_other_types_are_refused(value):
    with pytest.raises(ValueError):
        parse_duration(value)
    with pytest.raises(ValueError):
        parse_rate(value)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0s"), (250e-6, "250us"), (0.85, "850ms"), (12.3, "12.3s"), (270, "4.5min"), (7200, "2h")],
)
def test_format_duration_reads_back(seconds, text):
    assert format_duration(seconds) == text
    assert math.isclose(parse_duration(text), seconds, rel_tol=1e-9, abs_tol=1e-12)
