"""``phpsess serve`` against bad HTTP (issue: hostile input, round two): malformed framing is
refused with 400/413/431/501 and no traceback, every request is bounded in time and size,
silent clients never stop the server, big responses are streamed, and the pool keeps its
workers.  Starts ``phpsess serve`` over a scripts directory of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.integration.serve_process import ServeProcess

pytestmark = pytest.mark.slow

SCRIPTS = {
    "echo.py": "import sys\nbody = sys.stdin.buffer.read()\nprint(len(body), body[:20].decode('latin-1'))\n",
    "big.py": "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n",
    "spin.py": "import phpsess\nphpsess.session_start()\nphpsess.SESSION['spun'] = 1\nwhile True:\n    pass\n",
    "hello.py": "print('hello')\n",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    base = tmp_path_factory.mktemp("strict")
    root = base / "root"
    root.mkdir()
    for name, text in SCRIPTS.items():
        (root / name).write_text(text)
    (root / "outside").symlink_to(base)
    with ServeProcess(root, base, workers=2, args=["--idle-timeout", "2", "--read-timeout", "4",
                                                    "--max-execution-time", "1", "--max-body", "1M"]) as s:
        yield s


def raw(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data``, read until the server closes; what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out: list[bytes] = []
        while True:
            try:
                more = s.recv(1 << 20)
            except ConnectionResetError:
                break
            if not more:
                break
            out.append(more)
        return b"".join(out)


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


POST = b"POST /echo.py HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (POST + b"Transfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n", 400),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", 400),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n0_3\r\nabc\r\n0\r\n\r\n", 400),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n", 400),
        (POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 400),  # no CRLF after the data
        (POST + b"Transfer-Encoding: xchunkedx\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
        (POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 501),
        (POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (POST + "Content-Length: ٣\r\n\r\nabc".encode(), 400),
        (POST + "Content-Length: ²\r\n\r\nabc".encode(), 400),
        (POST + b"Content-Length: " + b"9" * 4300 + b"\r\n\r\nabc", 400),
        (POST + b"Content-Length: 2000000\r\n\r\nabc", 413),
        (b"GET /hello.py HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"GET /hello.py HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /hello.py HTTP/1.1\r\nHost: x\r\nA: 1\r\n folded\r\n\r\n", 400),
    ],
    ids=lambda v: repr(v)[-40:] if isinstance(v, bytes) else str(v),
)
def test_malformed_requests_are_refused_cleanly(srv: ServeProcess, request_bytes: bytes, expected: int) -> None:
    answer = raw(srv.port, request_bytes)
    assert status(answer) == expected, answer[:100]
    assert b"Traceback" not in answer
    assert "Traceback" not in srv.log()


def test_chunked_and_bare_lf_requests_that_are_valid_are_served(srv: ServeProcess) -> None:
    answer = raw(srv.port, POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n")
    assert status(answer) == 200 and answer.endswith(b"\r\n\r\n5 abcde\n")
    answer = raw(srv.port, b"GET /hello.py HTTP/1.1\nHost: x\n\n")
    assert status(answer) == 200 and answer.endswith(b"hello\n")


def test_one_byte_chunks_are_bounded(srv: ServeProcess) -> None:
    body = b"1\r\nx\r\n" * 70000 + b"0\r\n\r\n"
    t0 = time.monotonic()
    answer = raw(srv.port, POST + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status(answer) == 413
    assert time.monotonic() - t0 < 5


def test_silent_and_trickling_clients_never_stop_the_server(srv: ServeProcess) -> None:
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(16)]
    trickle = socket.create_connection(("127.0.0.1", srv.port))
    stop = threading.Event()

    def drip() -> None:
        for byte in b"GET /hello.py HTTP/1.1\r\nHost: x\r\n":
            if stop.wait(0.5):
                return
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return

    t = threading.Thread(target=drip)
    t.start()
    try:
        t0 = time.monotonic()
        answer = raw(srv.port, b"GET /hello.py HTTP/1.1\r\nHost: x\r\n\r\n", timeout=30)
        assert status(answer) == 200
        assert time.monotonic() - t0 < 10  # idle connections are dropped after 2 s
        # the trickling client is dropped at the request's deadline (4 s), not after each byte
        trickle.settimeout(15)
        t1 = time.monotonic()
        assert trickle.recv(100) == b""
        assert time.monotonic() - t1 < 8
    finally:
        stop.set()
        t.join()
        for s in idle + [trickle]:
            s.close()


def test_big_response_is_streamed_in_bounded_memory(srv: ServeProcess) -> None:
    answer = raw(srv.port, b"GET /big.py HTTP/1.1\r\nHost: x\r\n\r\n", timeout=60)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert len(body) > 100 << 20
    for p in srv.processes()[1:]:
        peak_kib = int(next(ln for ln in Path(f"/proc/{p.pid}/status").read_text().splitlines()
                            if ln.startswith("VmHWM")).split()[1])
        assert peak_kib < 80 << 10, f"worker {p.pid} peaked at {peak_kib >> 10} MiB"


def test_runaway_script_gets_php_fatal_error_and_its_session_is_written(srv: ServeProcess) -> None:
    t0 = time.monotonic()
    answer = raw(srv.port, b"GET /spin.py HTTP/1.1\r\nHost: x\r\n\r\n", timeout=30)
    assert status(answer) == 500
    assert time.monotonic() - t0 < 10
    assert "Maximum execution time of 1 second exceeded" in srv.log()
    cookie = next(ln for ln in answer.decode().split("\r\n") if ln.startswith("Set-Cookie:"))
    sid = cookie.split("=", 1)[1].split(";", 1)[0]
    assert (srv.sessions / f"sess_{sid}").read_bytes() == b"spun|i:1;"


def test_symlink_to_a_directory_outside_root_is_404(srv: ServeProcess) -> None:
    assert status(raw(srv.port, b"GET /outside HTTP/1.1\r\nHost: x\r\n\r\n")) == 404
    assert status(raw(srv.port, b"GET /outside/ HTTP/1.1\r\nHost: x\r\n\r\n")) == 404


def test_workers_are_the_same_after_all_of_it(srv: ServeProcess) -> None:
    workers = srv.processes()[1:]
    assert len(workers) == 2
    assert all(p.status() != psutil.STATUS_ZOMBIE for p in workers)


def test_sigusr2_reloads_serve_without_refusing_a_request(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.py").write_text("print('hello')\n")
    with ServeProcess(root, tmp_path, workers=2) as s:
        before = {p.pid for p in s.processes()[1:]}
        failures = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    if status(raw(s.port, b"GET /hello.py HTTP/1.1\r\nHost: x\r\n\r\n")) != 200:
                        failures.append("status")
                except OSError as exc:
                    failures.append(str(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert s.proc is not None
        os.kill(s.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 15
        after: set[int] = set()
        while time.monotonic() < deadline:
            after = {p.pid for p in s.processes()[1:] if p.status() != psutil.STATUS_ZOMBIE}
            if len(after) == 2 and not after & before:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        assert failures == []
        assert len(after) == 2 and not after & before, (before, after)
        assert s.proc.poll() is None  # the same master pid, re-executed
