"""phpsess.runtime.prefork: the worker loop of the pool's supervisor, with a worker that
only notes what it is asked to do (a real Arbiter in a child process, a unix listener)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

DRIVER = textwrap.dedent("""
    import os, socket, sys
    from phpsess.runtime.prefork import Arbiter, PoolSettings, Worker

    events = sys.argv[2]

    def note(what):
        fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(fd, (what + "\\n").encode())
        os.close(fd)

    class Noting(Worker):
        def idle(self):
            note("idle")

        def handle(self, conn):
            data = conn.recv(16)
            note("handle " + data.decode())
            conn.sendall(b"ok")

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sys.argv[1])
    listener.listen(64)
    sys.exit(Arbiter([listener], Noting, PoolSettings(max_children=1, stop_timeout=1.0)).run())
""")


def _wait_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_busy_worker_takes_the_queued_connections_before_it_waits(tmp_path: Path) -> None:
    """Connections already queued when a request ends are taken one after another,
    without the worker going back to wait (no ``epoll_wait``, no idle title in between);
    once none is left, it waits (and says so: ``Worker.idle``)."""
    sock, events = str(tmp_path / "p.sock"), tmp_path / "events"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, sock, str(events)],
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clients: list[socket.socket] = []
    try:
        _wait_for(lambda: events.exists() and events.read_text() == "idle\n", 20, "the worker waiting")
        for _ in range(5):  # five connections queued before the first sends anything
            c = socket.socket(socket.AF_UNIX)
            c.connect(sock)
            clients.append(c)
        for i in reversed(range(5)):
            clients[i].sendall(str(i).encode())
        for c in clients:
            c.settimeout(10)
            assert c.recv(16) == b"ok"
        _wait_for(lambda: events.read_text().count("idle") == 2, 10, "the worker waiting again")
        assert events.read_text().split("\n") == [
            "idle", "handle 0", "handle 1", "handle 2", "handle 3", "handle 4", "idle", ""]
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()
