"""The demo's helper pages over HTTP, without a browser: state.py (read back, reset, probe)
and fanout.py (the 10 requests sent by the server to itself, for a browser that reaches
one port only).  Starts ``phpsess serve`` on free ports, sessions in tmp_path."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from tests.integration.nginx import http_get
from tests.integration.serve_process import CGI_BIN, ServeProcess, cookie_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(CGI_BIN, tmp_path_factory.mktemp("demo-pages")) as s:
        yield s


def _json(r: Any) -> Any:
    assert r.status == 200, (r.status, r.body)
    return json.loads(r.body)


def _fresh_session(srv: ServeProcess) -> str:
    return cookie_of(http_get(srv.port, "/counter.py").header("Set-Cookie") or "")


def test_fanout_runs_the_requests_at_once_and_the_session_tells_what_each_mode_kept(srv: ServeProcess) -> None:
    cookie = _fresh_session(srv)
    kept: dict[str, Any] = {}
    for mode in ("hold", "close", "merge"):
        assert _json(http_get(srv.port, "/state.py?reset=1", method="POST", cookie=cookie))["keys"] == {}
        results = _json(http_get(srv.port, f"/fanout.py?mode={mode}&n=10&ms=200", cookie=cookie))
        assert sorted(int(r["i"]) for r in results) == list(range(10))
        assert {r["mode"] for r in results} == {mode} and len({r["pid"] for r in results}) == 10
        span = max(r["end"] for r in results) - min(r["start"] for r in results)
        assert (span >= 1.9) if mode == "hold" else (span < 1.0), (mode, span)  # 10 × 0.2 s in turn, or at once
        kept[mode] = _json(http_get(srv.port, "/state.py", cookie=cookie))
    assert kept["hold"]["hits"] == 10 and sorted(kept["hold"]["keys"]) == [str(i) for i in range(10)]
    assert kept["close"]["hits"] == 0 and kept["close"]["keys"] == {}  # written after the close: lost
    assert kept["merge"]["hits"] == 1 and set(kept["merge"]["keys"].values()) == {"merge"}
    assert len(kept["merge"]["keys"]) == 10
    stored = srv.session_file(cookie).read_bytes()
    assert b"hits|i:1;" in stored and b"n|i:1;" in stored  # reset leaves the page's other keys alone


def test_state_probe_names_the_servers_ports_and_starts_no_session(srv: ServeProcess) -> None:
    r = http_get(srv.port, "/state.py?probe=1")
    ports = _json(r)["ports"].split(",")
    assert ports[0] == str(srv.port) and len(ports) == 3
    assert r.header("Set-Cookie") is None


def test_state_reads_without_holding_the_lock(srv: ServeProcess) -> None:
    cookie = _fresh_session(srv)
    r = http_get(srv.port, "/state.py", cookie=cookie)
    assert _json(r)["sid"] == cookie.split("=", 1)[1] and _json(r)["hits"] == 0
    assert r.header("Set-Cookie") is None  # read_and_close on an existing session: no new cookie


def test_fanout_bounds_its_arguments(srv: ServeProcess) -> None:
    cookie = _fresh_session(srv)
    results = _json(http_get(srv.port, "/fanout.py?mode=evil&n=99&ms=0", cookie=cookie))
    assert len(results) == 16 and {r["mode"] for r in results} == {"hold"}  # at most 16; unknown mode: hold


def test_demo_page_says_where_its_sessions_are(srv: ServeProcess) -> None:
    body = http_get(srv.port, "/").body.decode()
    assert f"session.save_path = {srv.sessions}" in body
