"""phpsess.core.igbinary against real php-igbinary. Runs ``php`` with the igbinary extension.

The corpus round trips (PHP writes, phpsess reads and writes back the same bytes; phpsess
writes, PHP reads the same value) are in tests/oracle/test_codec_oracle.py, beside the
other serializers'; here: the table of tests/test_igbinary.py, value by value, and the
session serializer's view of typed properties.
"""

from __future__ import annotations

import base64

from phpsess.core import igbinary

try:
    from tests.phptools import run_php
    from tests.test_igbinary import CASES
except ImportError:  # pragma: no cover
    from phptools import run_php  # type: ignore[no-redef]
    from test_igbinary import CASES  # type: ignore[no-redef]

__all__: list[str] = []

PRELUDE = r"""
enum Suit: string { case H = 'h'; case S = 's'; }
class Ser implements Serializable { public $d = 'abc';
  function serialize() { return $this->d; } function unserialize($s) { $this->d = $s; } }
class Typed { public int $i; public ?string $s = null; }
"""


def test_the_table_is_what_php_igbinary_writes() -> None:
    exprs = [expr for expr, _, _ in CASES]
    code = "<?php error_reporting(E_ALL & ~E_DEPRECATED);" + PRELUDE + "".join(
        f"echo bin2hex(igbinary_serialize({e})), \"\\n\";\n" for e in exprs)
    proc = run_php(code, {"extension": "igbinary.so"})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    got = proc.stdout.decode().split()
    want = [wire for _, _, wire in CASES]
    assert [(e, g) for e, g, w in zip(exprs, got, want) if g != w] == []


def test_typed_properties_and_session_encode_match_php() -> None:
    code = "<?php error_reporting(E_ALL & ~E_DEPRECATED);" + PRELUDE + r"""
ini_set('session.serialize_handler', 'igbinary');
ini_set('session.save_path', sys_get_temp_dir());
ini_set('session.use_cookies', '0');
session_start();
$_SESSION = ['t' => new Typed, 'n' => 1, 7 => 'x'];
echo base64_encode(session_encode());
"""
    proc = run_php(code, {"extension": "igbinary.so"})
    assert proc.returncode == 0, proc.stderr
    wire = base64.b64decode(proc.stdout)
    data = igbinary.decode_session(wire)
    assert data["t"].skipped == (0,) and data["n"] == 1 and 7 not in data
    assert igbinary.encode_session({**data, 7: "x"}) == wire
