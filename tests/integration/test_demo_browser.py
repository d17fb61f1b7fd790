"""The demo page in a real browser: headless Chromium loads ``/?autorun=1`` from
``phpsess serve``, the page fires its 10 parallel requests in each mode, and the
test reads the totals back from the DOM.  Starts phpsess serve and Chromium, driven
through the DevTools protocol (a small stdlib websocket client); stops both.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import psutil
import pytest

from tests.integration.nginx import wait_for
from tests.integration.serve_process import CGI_BIN, ServeProcess
from tests.phptools import require

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--mute-audio", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]


class DevTools:
    """A minimal Chrome DevTools protocol client over one websocket (RFC 6455, client side)."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        u = urllib.parse.urlsplit(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the websocket handshake")
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"websocket handshake refused: {head!r}")
        self.last_id = 0

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools closed the websocket")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def _message(self) -> dict[str, Any]:
        parts: list[bytes] = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)  # the server never masks
            opcode = b0 & 0x0F
            if opcode == 9:
                self._send_frame(10, payload)
                continue
            if opcode == 8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0, 1, 2):
                parts.append(payload)
                if b0 & 0x80:
                    return dict(json.loads(b"".join(parts)))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are dropped)."""
        self.last_id += 1
        self._send_frame(1, json.dumps({"id": self.last_id, "method": method, "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == self.last_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def chromium(url: str, workdir: Path) -> Iterator[DevTools]:
    """Headless Chromium showing ``url``, with a fresh profile; killed (whole group) on exit."""
    binary = require("chromium")
    profile = workdir / "profile"
    profile.mkdir()
    with open(workdir / "chromium.log", "wb") as log:
        proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                                stdout=log, stderr=log, start_new_session=True)
    family: list[psutil.Process] = []
    devtools: DevTools | None = None
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and len(port_file.read_text().split()) >= 2, 30,
                 "Chromium's DevTools port")
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t.get("type") == "page"]
        assert pages, "Chromium opened no page"
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        devtools = DevTools(pages[0]["webSocketDebuggerUrl"])
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        _, alive = psutil.wait_procs(family, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def test_demo_page_shows_the_lock_and_the_two_ways_out(tmp_path: Path) -> None:
    with ServeProcess(CGI_BIN, tmp_path) as srv, chromium(srv.url + "?autorun=1", tmp_path) as page:
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline:
            status = page.evaluate("(document.getElementById('status') || {}).textContent || ''")
            if status == "done" or status.startswith("error"):
                break
            time.sleep(0.2)
        assert status == "done", f"{status}\n{srv.log()}"
        shown = page.evaluate(
            "JSON.stringify(Object.fromEntries(['hold', 'close', 'merge'].flatMap(m => "
            "['total', 'wall', 'pids'].map(k => [k + '-' + m, document.getElementById(k + '-' + m).textContent]))))"
        )
        values = {k: float(v) for k, v in json.loads(shown).items()}
        assert values["total-hold"] >= 4.5, values
        assert values["total-hold"] < 8, values
        assert values["total-close"] < 1.5, values
        assert values["total-merge"] < 1.5, values
        # the browser really had 10 requests in flight: 10 workers served them at once
        assert values["pids-close"] == 10 and values["pids-merge"] == 10, values
        assert values["wall-close"] < 1.5 and values["wall-merge"] < 1.5, values
        # the page drew a waterfall per mode: 10 work bars each
        assert page.evaluate("document.querySelectorAll('#chart-hold rect.work').length") == 10
        cookie = page.evaluate("document.cookie")
        assert cookie.startswith("PHPSESSID=")
        stored = srv.session_file(cookie.split(";")[0]).read_bytes()
        assert b"hits|i:10;" in stored
        assert all(f"slow_{i}|".encode() in stored for i in range(10)), stored
