"""phpsess.core.zend: PHP's conversions and C's number parsing (expectations recorded from
PHP 8.2; tests/oracle/test_zend_oracle.py checks them against PHP live)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from phpsess.core.zend import (
    LONG_MAX,
    LONG_MIN,
    c_str,
    float_to_string,
    floatval,
    intval,
    is_numeric_string,
    strtod,
    strtol,
    strval,
    to_int32,
    to_signed64,
    truthy,
    type_name,
)


@pytest.mark.parametrize(("text", "base", "result"), [
    ("12abc", 10, (12, 2, False)), ("  -7", 10, (-7, 4, False)), ("x", 10, (0, 0, False)),
    ("", 10, (0, 0, False)), ("+", 10, (0, 0, False)), ("0777", 8, (511, 4, False)),
    ("0999", 8, (0, 1, False)), ("99999999999999999999", 10, (LONG_MAX, 20, True)),
    ("-99999999999999999999", 10, (LONG_MIN, 21, True)), ("ff", 16, (255, 2, False)),
    ("\t\n 5;", 10, (5, 4, False)), ("9223372036854775807", 10, (LONG_MAX, 19, False)),
    ("9223372036854775808", 10, (LONG_MAX, 19, True)),
])
def test_strtol(text: str, base: int, result: tuple[int, int, bool]) -> None:
    assert strtol(text, base) == result


def test_strtod_reads_the_leading_decimal() -> None:
    assert [strtod(s) for s in ("1.5", " 2e1x", "abc", ".5", "-1.", "0x10")] == [1.5, 20.0, 0.0, 0.5, -1.0, 0.0]


def test_wraparound() -> None:
    assert to_signed64(1 << 63) == LONG_MIN
    assert to_signed64(-1) == -1
    assert to_int32(1 << 31) == -(1 << 31)
    assert to_int32(1 << 32) == 0


def test_c_str_stops_at_nul() -> None:
    assert c_str("ab\0cd") == "ab"
    assert c_str("abc") == "abc"


#: (value, (int), (float), (bool)) as PHP 8.2 converts them
CASTS: list[tuple[Any, int, float, bool]] = [
    ("12abc", 12, 12.0, True), ("1e3", 1000, 1000.0, True), (" 12", 12, 12.0, True),
    ("12 ", 12, 12.0, True), ("1.9e1", 19, 19.0, True), ("1e100", LONG_MAX, 1e100, True),
    ("-1e100", LONG_MIN, -1e100, True), ("9223372036854775808", LONG_MAX, 9.223372036854776e18, True),
    ("-9223372036854775809", LONG_MIN, -9.223372036854776e18, True), ("0x1A", 0, 0.0, True),
    ("  +5", 5, 5.0, True), ("abc", 0, 0.0, True), ("", 0, 0.0, False), ("0", 0, 0.0, False),
    (".5", 0, 0.5, True), ("5.", 5, 5.0, True), ("1e", 1, 1.0, True), ("-0", 0, -0.0, True),
    ("NAN", 0, 0.0, True), ("1e400", 0, math.inf, True), ("1.5e19", LONG_MAX, 1.5e19, True),
    ("9223372036854775807.0", LONG_MAX, 9.223372036854776e18, True), (" \v7", 7, 7.0, True),
    (1.9, 1, 1.9, True), (-1.9, -1, -1.9, True), (1e100, 0, 1e100, True),
    (1.5e19, -3446744073709551616, 1.5e19, True), (math.nan, 0, math.nan, True), (0.0, 0, 0.0, False),
    (True, 1, 1.0, True), (False, 0, 0.0, False), (None, 0, 0.0, False), ([], 0, 0.0, False),
    ([1], 1, 1.0, True), (b"7x", 7, 7.0, True), (b"0", 0, 0.0, False),
]


@pytest.mark.parametrize(("value", "as_int", "as_float", "as_bool"), CASTS)
def test_casts(value: Any, as_int: int, as_float: float, as_bool: bool) -> None:
    assert intval(value) == as_int
    f = floatval(value)
    assert f == as_float and math.copysign(1, f) == math.copysign(1, as_float) or (math.isnan(f) and math.isnan(as_float))
    assert truthy(value) is as_bool


@pytest.mark.parametrize(("value", "name"), [
    (None, "null"), (True, "bool"), (1, "int"), (1.0, "float"), ("", "string"), (b"", "string"),
    ([], "array"), ({}, "array"), (object(), "object"),
])
def test_type_name(value: Any, name: str) -> None:
    assert type_name(value) == name


@pytest.mark.parametrize(("value", "text"), [
    (True, "1"), (False, ""), (None, ""), (0, "0"), (-3, "-3"), ("x", "x"), (b"\xff", "\udcff"),
    (1.5, "1.5"), (100.0, "100"), (-0.0, "-0"), (0.1, "0.1"), (0.1 + 0.2, "0.3"), (1 / 3, "0.33333333333333"),
    (1e14, "1.0E+14"), (1e15, "1.0E+15"), (999999999999999.0, "1.0E+15"), (12345678901234.5, "12345678901234"),
    (1e-4, "0.0001"), (1e-5, "1.0E-5"), (-1.5e-7, "-1.5E-7"), (5e-324, "4.9406564584125E-324"),
    (math.inf, "INF"), (-math.inf, "-INF"), (math.nan, "NAN"),
])
def test_strval(value: Any, text: str) -> None:
    assert strval(value) == text


def test_float_to_string_precision_17() -> None:
    assert float_to_string(0.1, 17) == "0.10000000000000001"


@pytest.mark.parametrize(("s", "numeric"), [
    ("1", True), (" 1", True), ("1 ", True), ("\v5", True), ("1.5", True), (".5", True), ("5.", True),
    ("1e3", True), ("-1", True), ("+1", True), ("1e", False), ("0x1A", False), ("", False), (" ", False),
    ("INF", False), ("1 2", False), ("--1", False), ("1_0", False),
])
def test_is_numeric_string(s: str, numeric: bool) -> None:
    assert is_numeric_string(s) is numeric


