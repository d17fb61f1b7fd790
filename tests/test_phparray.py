"""PHPArray: PHP's array semantics in Python, checked against real PHP 8.2.

PHP writes, Python changes, PHP reads: a cart of products 0 and 1 decoded as a list lost
product 0's key on ``del cart[0]`` (product 1 was stored under 0); ``cart["1"]`` missed
the key PHP stored as ``i:1``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phpsess.core import codec, formats
from phpsess.core.codec import dumps, loads, to_php_arrays
from phpsess.core.config import SessionConfig
from phpsess.core.phparray import PHPArray, php_key
from phpsess.runtime.sapi import handle_request, reset_environ
from tests.phptools import run_php
from tests.test_codec import CASES

SID = "cart0123456789abcdef0123456789"


@pytest.fixture(autouse=True)
def _restore_environ() -> Any:
    yield
    reset_environ()


# -- keys ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "canonical"), [
    (1, 1), ("1", 1), (True, 1), (False, 0), (1.0, 1), (1.7, 1), (-2.5, -2), (None, ""),
    ("01", "01"), ("-0", "-0"), ("1 ", "1 "), (" 1", " 1"), ("+1", "+1"), ("-1", -1),
    ("9223372036854775807", 9223372036854775807), ("9223372036854775808", "9223372036854775808"),
    (b"a", "a"), (b"12", 12), (b"\xff", b"\xff"), ("é", "é"),
])
def test_keys_are_canonicalised_as_php_does(key: Any, canonical: Any) -> None:
    assert php_key(key) == canonical and type(php_key(key)) is type(canonical)


def test_keys_php_refuses() -> None:
    for key in ([], {}, object(), PHPArray()):
        with pytest.raises(TypeError, match="Illegal offset type"):
            php_key(key)
    for key in (2**63, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            php_key(key)


def test_one_key_for_every_spelling() -> None:
    a = PHPArray()
    a["1"] = "x"
    a[1] = "y"
    a[True] = "z"
    assert list(a.items()) == [(1, "z")] and a["1"] == a[1.0] == "z" and "1" in a and b"1" in a
    del a["1"]
    assert len(a) == 0 and a.get(1) is None


# -- PHP's operations, compared with PHP -----------------------------------------------------
def _php_literal(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


#: (initial array as PHP serializes it, operations): ("set", k, v), ("del", k), ("append", v)
OPS: list[tuple[bytes, list[tuple[Any, ...]]]] = [
    (b'a:2:{i:0;s:1:"a";i:1;s:1:"b";}', [("del", 0), ("append", "c")]),
    (b'a:2:{i:0;s:1:"a";i:1;s:1:"b";}', [("del", 1), ("append", "c"), ("set", "1", "d")]),
    (b"a:0:{}", [("append", "a"), ("set", -5, "n"), ("append", "b")]),
    (b'a:1:{i:-5;s:1:"x";}', [("append", "y")]),
    (b'a:1:{i:3;s:1:"x";}', [("del", 3), ("append", "y")]),
    (b'a:1:{s:1:"k";i:1;}', [("append", 0), ("set", "7", 1), ("set", True, 2), ("set", None, 3),
                             ("set", 1.5, 4), ("set", "07", 5), ("append", 6)]),
    (b'a:3:{i:5;i:1;i:2;i:2;s:1:"5";i:3;}', [("del", "5"), ("append", 4)]),
]


def _ours(initial: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    a = to_php_arrays(loads(initial))
    for op in ops:
        if op[0] == "set":
            a[op[1]] = op[2]
        elif op[0] == "del":
            del a[op[1]]
        else:
            a.append(op[1])
    return dumps(a)


def test_operations_match_php() -> None:
    lines = ["<?php", "$out = [];"]
    for initial, ops in OPS:
        lines.append(f"$a = unserialize(base64_decode('{__import__('base64').b64encode(initial).decode()}'));")
        for op in ops:
            if op[0] == "set":
                lines.append(f"$a[{_php_literal(op[1])}] = {_php_literal(op[2])};")
            elif op[0] == "del":
                lines.append(f"unset($a[{_php_literal(op[1])}]);")
            else:
                lines.append(f"$a[] = {_php_literal(op[1])};")
        lines.append("$out[] = base64_encode(serialize($a));")
    lines.append("echo json_encode($out);")
    proc = run_php("\n".join(lines), {"error_reporting": "E_ALL & ~E_DEPRECATED"})
    assert proc.returncode == 0, proc
    php = [__import__("base64").b64decode(x) for x in json.loads(proc.stdout)]
    assert [_ours(initial, ops) for initial, ops in OPS] == php


def test_append_past_php_int_max_fails_as_php() -> None:
    a = PHPArray({codec.PHP_INT_MAX: 1})
    with pytest.raises(ValueError, match="next element is already occupied"):
        a.append(2)


# -- round trips -----------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "wire"), CASES)
def test_decoded_arrays_write_back_byte_for_byte(value: Any, wire: bytes) -> None:
    converted = to_php_arrays(loads(wire))
    assert dumps(converted) == wire
    assert converted == value  # == compares as PHP does, also with lists and dicts


def test_deep_and_shared_values_convert_once_without_recursion() -> None:
    deep = b"a:1:{i:0;" * 4000 + b"a:0:{}" + b"}" * 4000
    v = to_php_arrays(loads(deep))
    assert type(v) is PHPArray and dumps(v) == deep
    shared = b'a:2:{i:0;O:8:"stdClass":1:{s:1:"a";a:1:{i:0;i:1;}}i:1;r:2;}'
    v = to_php_arrays(loads(shared))
    assert v[0] is v[1] and type(v[0].properties["a"]) is PHPArray and dumps(v) == shared
    ref = b'a:2:{i:0;a:1:{i:0;i:1;}i:1;R:2;}'
    v = to_php_arrays(loads(ref))
    assert type(v[0].value) is PHPArray and v[0] is v[1] and dumps(v) == ref


# -- sessions: PHP writes, Python changes, PHP reads -----------------------------------------
def _serve(www: Path, save: Path, script: str, **ini: str) -> str:
    cfg = SessionConfig({"save_path": str(save), "gc_probability": "0", **ini})
    body: list[bytes] = []
    env = {"SCRIPT_FILENAME": str(www / script), "REQUEST_METHOD": "GET", "HTTP_COOKIE": f"PHPSESSID={SID}"}
    handle_request(env, b"", str(www), lambda s, h: None, body.append, config=cfg)
    return b"".join(body).decode()


CART = ('$_SESSION["cart"] = [["id" => "p0", "qty" => 1], ["id" => "p1", "qty" => 2]];'
        '$_SESSION["tags"] = [5 => "x", "k" => "y"];')
PHP_CHANGES = ('unset($_SESSION["cart"][0]); $_SESSION["cart"]["1"]["qty"] += 1; '
               '$_SESSION["cart"][] = ["id" => "p2", "qty" => 1]; $_SESSION["tags"][] = "z";')
PY_CHANGES = ('cart = phpsess.SESSION["cart"]\ndel cart[0]\ncart["1"]["qty"] += 1\n'
              'cart.append({"id": "p2", "qty": 1})\nphpsess.SESSION["tags"].append("z")\n')


@pytest.mark.parametrize("handler", ["php", "php_serialize", "php_binary"])
def test_cart_removal_keeps_php_keys(tmp_path: Path, handler: str) -> None:
    save, www = tmp_path / "s", tmp_path / "www"
    save.mkdir(mode=0o700)
    www.mkdir()
    ini = {"session.save_path": str(save), "session.serialize_handler": handler}
    start = f'session_id("{SID}"); session_start();'
    # PHP alone: the bytes to expect
    assert run_php(f"<?php {start} {CART}", ini).returncode == 0
    assert run_php(f"<?php {start} {PHP_CHANGES}", ini).returncode == 0
    expected = (save / f"sess_{SID}").read_bytes()
    # PHP writes, Python changes, PHP reads
    (save / f"sess_{SID}").unlink()
    assert run_php(f"<?php {start} {CART}", ini).returncode == 0
    (www / "cart.py").write_text("import phpsess\nphpsess.session_start()\n" + PY_CHANGES)
    _serve(www, save, "cart.py", serialize_handler=handler)
    assert (save / f"sess_{SID}").read_bytes() == expected
    out = run_php(f'<?php {start} echo json_encode($_SESSION["cart"]);', ini)
    assert json.loads(out.stdout) == {"1": {"id": "p1", "qty": 3}, "2": {"id": "p2", "qty": 1}}


def test_plain_lists_and_dicts_on_request(tmp_path: Path) -> None:
    """session.php_arrays = 0: today's list/dict (the cart's keys renumber on del)."""
    save, www = tmp_path / "s", tmp_path / "www"
    save.mkdir(mode=0o700)
    www.mkdir()
    (save / f"sess_{SID}").write_bytes(b'cart|a:2:{i:0;s:2:"p0";i:1;s:2:"p1";}')
    (www / "t.py").write_text(
        "import phpsess\nphpsess.session_start()\nprint(type(phpsess.SESSION['cart']).__name__)\n")
    assert _serve(www, save, "t.py") == "PHPArray\n"
    assert _serve(www, save, "t.py", php_arrays="0") == "list\n"
    assert formats.decode(b'c|a:1:{i:0;i:1;}', "php") == {"c": [1]}  # the codec alone: unchanged
