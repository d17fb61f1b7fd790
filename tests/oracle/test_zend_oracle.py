"""phpsess.core.zend against PHP 8.2 itself: (int), (float), (bool), (string) and is_numeric()
of the same values, compared live. Runs php."""

from __future__ import annotations

import json
import math

from phpsess.core.zend import floatval, intval, is_numeric_string, strval, truthy
from tests.phptools import run_php
from tests.test_zend import CASTS

#: strings worth a look beyond the unit table: blanks, signs, exponents, overflow, junk
STRINGS = [
    s for s in (v for v, *_ in CASTS) if isinstance(s, str)
] + [
    "", " ", "+", "-", "+-1", "1 2", "\n3", "3\n", "0b11", "1_000", "+.5e1", "1e-400", ".e1", "1.e1",
    "00012", "-00", "9223372036854775807", "-9223372036854775808", "18446744073709551616",
    "1e308", "1e309", "-1e309", "0.99999999999999999", "\x007", "7\x00", "１２", "1e+", "1e+5x",
]


def test_string_casts_match_php() -> None:
    code = r"""<?php $o = [];
    foreach (json_decode(file_get_contents("php://stdin")) as $s) {
        $f = (float)$s;
        $o[] = [(int)$s, is_nan($f) ? "nan" : (is_infinite($f) ? ($f > 0 ? "inf" : "-inf") : $f),
                (bool)$s, is_numeric($s)];
    }
    echo json_encode($o);"""
    proc = run_php(code, stdin=json.dumps(STRINGS).encode())
    assert proc.returncode == 0, proc.stderr
    php = json.loads(proc.stdout)
    mine = []
    for s in STRINGS:
        f = floatval(s)
        fj = "nan" if math.isnan(f) else ("inf" if f == math.inf else "-inf" if f == -math.inf else f)
        mine.append([intval(s), fj, truthy(s), is_numeric_string(s)])
    assert mine == php


def test_float_to_int_matches_php() -> None:
    floats = [1.9, -1.9, 1e100, -1e100, 1.5e19, -1.5e19, 2.0**63, -(2.0**63), 2.0**64 + 4096.0,
              9.2233720368547758e18, 0.5, -0.0, 123456789.987, 1e-300]
    code = r"""<?php $o = [];
    foreach (json_decode(file_get_contents("php://stdin")) as $f) { $o[] = (int)$f; }
    echo json_encode($o);"""
    proc = run_php(code, stdin=json.dumps(floats).encode())
    assert [intval(f) for f in floats] == json.loads(proc.stdout)


def test_strval_of_floats_matches_php() -> None:
    floats = [1e15, 1e14, 123456789012345678.0, 0.1 + 0.2, 1 / 3, -1.5e-7, 1e-5, 0.0001, 1.234e-5,
              float("inf"), float("-inf"), float("nan"), 999999999999999.0, 1e100, 2.5e-300,
              123456.789, 5e-324, 1.7976931348623157e308, 0.5, -0.0, 1e21, 12345678901234.5,
              123456789012345.6, 99999999999999.99, 0.0, 3.0, -2.5, 1e-4, 0.00011]
    code = r"""<?php ob_start(); $o = [];
    foreach (json_decode(file_get_contents("php://stdin")) as $s) {
        $f = ["inf" => INF, "-inf" => -INF, "nan" => NAN][$s] ?? (float)$s;
        ini_set("session.cookie_path", $f); $o[] = ini_get("session.cookie_path"); }
    ob_end_clean(); echo json_encode($o);"""
    proc = run_php(code, stdin=json.dumps([repr(f) for f in floats]).encode())
    assert [strval(f) for f in floats] == json.loads(proc.stdout)


