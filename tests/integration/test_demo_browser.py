"""The demo page in a real browser: headless Chromium opens ``/`` of ``phpsess serve``,
the page runs its 10 parallel requests in each mode by itself, and the test reads the
totals, the browser's timings and what each mode saved or lost back from the DOM (and
the session file), with screenshots at first load and after the run.  Also: the page
through a forward of the main port only (extra ports out of reach), and under a
headless browser's virtual clock.  Starts phpsess serve, a small TCP forwarder and
Chromium, driven through the DevTools protocol (a small stdlib websocket client);
stops all of them.  ``PHPSESS_SCREENSHOTS=DIR`` keeps the screenshots in DIR too.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import threading
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
    "--disable-extensions", "--mute-audio", "--window-size=1280,1700",
]
DEVTOOLS_FLAGS = ["--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]
MODES = ("hold", "close", "merge")
FIGURES = ("total", "wall", "pids", "hits", "keys")


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
        proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, *DEVTOOLS_FLAGS, f"--user-data-dir={profile}", url],
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


def screenshot(page: DevTools, path: Path) -> None:
    """Save what the page shows now as a PNG (and in $PHPSESS_SCREENSHOTS, when set)."""
    path.write_bytes(base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"]))
    keep = os.environ.get("PHPSESS_SCREENSHOTS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copyfile(path, os.path.join(keep, path.name))


def status_of(page: DevTools) -> str:
    return str(page.evaluate("(document.getElementById('status') || {}).textContent || ''"))


def wait_until_done(page: DevTools, log: Any, timeout: float = 60) -> None:
    """Wait for the page's run to end; fail with the status and the server's log otherwise."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = status_of(page)
        if status == "done" or status.startswith("error"):
            break
        time.sleep(0.2)
    assert status == "done", f"{status}\n{log()}"


def figures(page: DevTools) -> dict[str, float]:
    """Every mode's figures as shown: total-hold, wall-hold, pids-hold, hits-hold, keys-hold, ..."""
    shown = page.evaluate(
        f"JSON.stringify(Object.fromEntries({json.dumps(list(MODES))}.flatMap(m => "
        f"{json.dumps(list(FIGURES))}.map(k => [k + '-' + m, document.getElementById(k + '-' + m).textContent]))))"
    )
    return {k: float(v) for k, v in json.loads(shown).items()}


def marks(page: DevTools, mode: str, css: str) -> int:
    return int(page.evaluate(f"document.querySelectorAll('#chart-{mode} {css}').length"))


def assert_the_story(page: DevTools, values: dict[str, float]) -> None:
    """The three totals, the browser's own timings, and what each mode saved or lost."""
    assert 4.5 <= values["total-hold"] < 8, values
    assert values["total-close"] < 1.5 and values["total-merge"] < 1.5, values
    # the browser's own clock agrees with the server's
    assert values["wall-hold"] >= 4.5 and values["wall-close"] < 1.5 and values["wall-merge"] < 1.5, values
    # read back from the session after each mode: hold keeps all, close nothing, merge every own key
    assert values["hits-hold"] == 10 and values["keys-hold"] == 10, values
    assert values["hits-close"] == 0 and values["keys-close"] == 0, values
    assert values["keys-merge"] == 10 and values["hits-merge"] < 10, values
    # ... and drawn: a bar per request, a kept/lost mark per own key, a square per stored hit
    for mode in MODES:
        assert marks(page, mode, "rect.work") == 10, mode
    assert marks(page, "hold", "rect.key-mark.kept") == 10
    assert marks(page, "close", "rect.key-mark.lost") == 10
    assert marks(page, "merge", "rect.key-mark.kept") == 10
    assert marks(page, "hold", "rect.hit-mark.kept") == 10
    assert marks(page, "close", "rect.hit-mark.kept") == 0
    assert marks(page, "merge", "rect.hit-mark.kept") == values["hits-merge"]
    # nothing cut off at 1280 px (the code lines wrap)
    assert page.evaluate("[...document.querySelectorAll('pre')].every(p => p.scrollWidth <= p.clientWidth)")


def test_demo_page_runs_on_load_and_shows_what_each_mode_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # no session.save_path configured: the demo keeps its sessions in a 0700 directory of its
    # own under phpsess's runtime directory (here a private one of this test)
    (tmp_path / "run").mkdir()
    monkeypatch.setenv("PHPSESS_RUNTIME_DIR", str(tmp_path / "run"))
    own = tmp_path / "run" / f"phpsess-{os.geteuid()}" / "demo-sessions"
    with ServeProcess(CGI_BIN, tmp_path, ini={"session.save_path": ""}) as srv, chromium(srv.url, tmp_path) as page:
        wait_for(lambda: status_of(page) not in ("", "starting"), 30, "the page to start")
        screenshot(page, tmp_path / "demo-first-load.png")
        assert status_of(page) != "idle"  # the first look is a run, not three empty boxes
        wait_until_done(page, srv.log)
        screenshot(page, tmp_path / "demo-after-run.png")
        values = figures(page)
        assert_the_story(page, values)
        # 10 requests really were in flight at once, over the server's ports
        assert values["pids-close"] == 10 and values["pids-merge"] == 10, values
        assert "over ports" in page.evaluate("document.getElementById('via').textContent")
        # the figures are the session's: after the merge run it holds every slow_i and merge's count
        cookie = page.evaluate("document.cookie")
        assert cookie.startswith("PHPSESSID=")
        stored = (own / f"sess_{cookie.split(';')[0].split('=', 1)[1]}").read_bytes()
        assert f"hits|i:{int(values['hits-merge'])};".encode() in stored, stored
        assert all(f'slow_{i}|a:3:{{s:4:"mode";s:5:"merge";'.encode() in stored for i in range(10)), stored
        assert own.stat().st_mode & 0o777 == 0o700
        assert f"kept in {own} (mode 0700)" in page.evaluate("document.getElementById('save-path').textContent")
        # the next look shows the last run at once, without running it again
        page.call("Page.reload")
        wait_for(lambda: status_of(page).startswith("last run"), 30, "the kept run")
        assert figures(page) == values
        screenshot(page, tmp_path / "demo-next-load.png")
    assert "can be listed by other users" not in srv.log()  # no warning about its own default


class Forwarder:
    """A TCP port forward that keeps the port, as ``docker run -p 8080:8080`` or ``ssh -L``
    do: listens on ``listen_host:port`` and relays every connection to ``target:port``;
    nothing else of the target is reachable through it."""

    def __init__(self, listen_host: str, target_host: str, port: int) -> None:
        self.target = (target_host, port)
        self.sock = socket.create_server((listen_host, port))
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.stopping.set()
        self.sock.close()
        self.thread.join(5)
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()


def test_demo_page_runs_through_a_forward_of_its_one_port(tmp_path: Path) -> None:
    with ServeProcess(CGI_BIN, tmp_path) as srv:
        forward = Forwarder("127.0.0.2", "127.0.0.1", srv.port)  # same port, another address
        try:
            with chromium(f"http://127.0.0.2:{srv.port}/", tmp_path) as page:
                wait_until_done(page, srv.log)
                screenshot(page, tmp_path / "demo-port-forward.png")
                values = figures(page)
                assert_the_story(page, values)
                via = page.evaluate("document.getElementById('via').textContent")
                assert "cannot be reached from this browser" in via and "fanout.py" in via, via
                assert values["pids-close"] == 10, values  # the server's fan-out had 10 in flight
        finally:
            forward.close()


def test_demo_page_under_a_virtual_clock_reports_real_times(tmp_path: Path) -> None:
    """What ``chromium --headless --virtual-time-budget=... --dump-dom`` sees: the page as
    first opened runs by itself, and the browser's times are real ones, not the virtual
    clock's (which stands still while requests are pending)."""
    binary = require("chromium")
    with ServeProcess(CGI_BIN, tmp_path) as srv:
        out = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=40000",
             "--dump-dom", srv.url], capture_output=True, timeout=120, start_new_session=True,
        ).stdout.decode()
    shown = dict(re.findall(r'<span id="([a-z]+-[a-z]+)"[^>]*>([^<]*)</span>', out))
    assert re.search(r'<span id="status">done</span>', out), out[-3000:]
    assert 4.5 <= float(shown["total-hold"]) < 8 and float(shown["wall-hold"]) >= 4.5, shown
    assert float(shown["wall-close"]) >= 0.45 and float(shown["wall-merge"]) >= 0.45, shown
