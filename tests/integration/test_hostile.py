"""Hostile input, the short versions of tests/soak/ (seconds each): session cookies fuzzed
through nginx + ``phpsess fpm``, straight to the pool's FastCGI socket and through a CGI
environment (compared with php-cgi); the decoders fed 20,000 generated inputs; garbage
planted as stored sessions.  Starts nginx, pools, redis-server and CGI processes on
loopback; every fixture stops what it started.  Long runs: docs/reliability.md.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Iterator

import pytest

from tests.soak.soak_cookies import CANARY, hostile_cookies, run_cgi_compare, run_stack
from tests.soak.soak_fuzz import fuzz, inputs
from tests.soak.soak_kill import PREFIX, redis_ini
from tests.soak.stack import Http, Stack, fpm_stack, pool_workers

pytestmark = pytest.mark.slow

__all__: list[str] = []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fpm_stack(tmp_path_factory.mktemp("hostile"), workers=4) as st:
        yield st


def cookies(random_count: int = 40) -> list[tuple[str, str]]:
    """The fixed hostile cookies plus ``random_count`` random ones (always the same)."""
    return hostile_cookies(random.Random(7), random_count=random_count)


# -- cookies ---------------------------------------------------------------------------------
def test_hostile_cookies_through_nginx_and_fastcgi(stack: Stack) -> None:
    jar = cookies()
    assert len(jar) > 600
    r = run_stack(stack, jar)
    assert r["problems"] == []
    assert r["statuses"].get("fastcgi 200") == 2 * len(jar)  # the pool answered every one
    assert set(r["statuses"]) <= {"nginx 200", "nginx 400", "fastcgi 200"}  # 400: nginx refused the header
    assert all(CANARY not in p.name for p in stack.base.rglob("*"))


def test_hostile_cookies_through_cgi_behave_as_php_cgi(tmp_path: Path) -> None:
    jar = cookies(10)
    picked = [c for i, c in enumerate(jar) if i % 12 == 0 or c[0].startswith(("repeat", "name", "traversal"))]
    r = run_cgi_compare(tmp_path, picked[:70], threads=4)
    assert r["problems"] == [] and r["differences_from_php"] == 0


def test_cookie_id_with_a_nul_byte_is_cut_there_as_php_cgi_does(tmp_path: Path) -> None:
    r = run_cgi_compare(tmp_path, [("nul", "PHPSESSID=zzz%00def")], threads=1)
    assert r["differences_from_php"] == 0, r["problems"]


def test_first_of_many_session_cookies_wins_as_in_php(stack: Stack) -> None:
    h = Http(stack.port)
    first = "0123456789abcdef0123456789abcdef"
    # 151 cookies of one name: 6.7 KB, under nginx's 8 KB header line limit
    header = "; ".join([f"PHPSESSID={first}"] + [f"PHPSESSID=other{i:027d}" for i in range(150)])
    status, body, _ = h.get("/whoami.py", cookie=header)
    h.close()
    assert status == 200 and json.loads(body)["sid"] == first


def test_hostile_cookies_with_the_redis_handler(tmp_path: Path, redis_server: object) -> None:
    import redis

    port = redis_server.port  # type: ignore[attr-defined]
    with fpm_stack(tmp_path, workers=2, ini=redis_ini(port)) as st:
        r = run_stack(st, [c for i, c in enumerate(cookies(20)) if i % 4 == 0])
        assert len(pool_workers(st.master.pid)) == 2
    assert r["problems"] == []
    client = redis.Redis(port=port)
    keys = [k.decode("latin-1") for k in client.scan_iter(match=PREFIX + "*")]
    client.close()
    assert keys and all(re.fullmatch(re.escape(PREFIX) + r"[A-Za-z0-9,\-]{1,256}(_LOCK)?", k) for k in keys)


# -- stored data -------------------------------------------------------------------------------
def test_garbage_stored_as_a_session_never_breaks_a_request(stack: Stack) -> None:
    h = Http(stack.port)
    planted = 0
    for i, (_gen, data) in enumerate(inputs(400, seed=11, max_shape_bytes=65536)):
        if i % 4:
            continue
        sid = f"garbage{i:025d}"
        (stack.save_dir / f"sess_{sid}").write_bytes(data)
        status, body, _ = h.get("/whoami.py", cookie=f"PHPSESSID={sid}")
        assert status == 200, body
        d = json.loads(body)
        if not d["ok"]:
            # PHP's behaviour: the session is destroyed and the request goes on without it
            assert d["warnings"] == ["session_start(): Failed to decode session object. "
                                     "Session has been destroyed"], d
            assert not (stack.save_dir / f"sess_{sid}").exists()
        planted += 1
    h.close()
    assert planted == 100
    assert len(pool_workers(stack.master.pid)) == stack.workers
    assert "Traceback" not in stack.fpm_log()


# -- the decoders ------------------------------------------------------------------------------
def test_decoders_refuse_20000_generated_inputs_cleanly_in_bounded_time_and_memory() -> None:
    r = fuzz(20000, seed=3, max_ms=100, max_mb=4, max_shape_bytes=65536)
    assert r["problems"] == [], r["problems"][:3]
    assert r["decoder_calls"] == 80000
    # the generators reach both outcomes in every decoder
    assert all(r["outcomes"].get(f"{d} {o}", 0) > 100 for d in ("loads", "php", "php_binary", "php_serialize")
               for o in ("ok", "refused"))


# the session-scoped redis-server fixture
from tests.integration.redis_server import redis_server  # noqa: E402,F401
