"""Run ``phpsess serve`` in a subprocess for integration tests. Runs processes, writes an
ini file and a log into one temp directory.

``with ServeProcess(CGI_BIN, tmp_path) as srv: http_get(srv.port, "/counter.py")``.
The server listens on a free port of 127.0.0.1 (``--port 0``; the port is read
from its start line), stores sessions under ``tmp_path/sessions``, and is
stopped (SIGTERM, then SIGKILL) on exit, workers included.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Mapping, Sequence

import psutil

from tests.integration.nginx import REPO, stop_process

__all__ = ["CGI_BIN", "ServeProcess", "cookie_of"]

CGI_BIN = REPO / "cgi-bin"

_BANNER = re.compile(r"^phpsess serve: (http://127\.0\.0\.1:(\d+)/) \(root (.+), (\d+) workers\)$")


def cookie_of(set_cookie: str) -> str:
    """``"PHPSESSID=abc; path=/"`` -> ``"PHPSESSID=abc"``."""
    return set_cookie.split(";", 1)[0]


class ServeProcess:
    """``phpsess serve`` (``python -m phpsess serve``) over ``root`` in a subprocess.

    :param ini: extra ``session.*`` settings for the ``--ini`` file.
    """

    def __init__(
        self, root: Path, workdir: Path, *, workers: int = 16, ini: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.root = Path(root)
        self.dir = Path(workdir)
        self.workers = workers
        self.args = list(args)
        self.sessions = self.dir / "sessions"
        self.settings = {"session.save_path": str(self.sessions), **(ini or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""
        self.banner = ""
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 20.0) -> "ServeProcess":
        """Start the server and wait for its start line."""
        self.sessions.mkdir(parents=True, exist_ok=True)
        ini = self.dir / "phpsess.ini"
        ini.write_text("".join(f'{k} = "{v}"\n' for k, v in self.settings.items()))
        env = {k: v for k, v in os.environ.items() if k != "PHPSESS_INI"}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(self.dir / "serve.log", "wb")
        cmd = [sys.executable, "-m", "phpsess", "serve", "--port", "0", "--root", str(self.root),
               "--workers", str(self.workers), "--ini", str(ini), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=env, cwd=self.dir)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"phpsess serve did not start: {line!r}\n{self.log()}")
            if select.select([self.proc.stdout], [], [], left)[0]:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        self.banner = line.decode().strip().splitlines()[0]
        m = _BANNER.match(self.banner)
        if m is None:
            self.stop()
            raise AssertionError(f"unexpected start line {self.banner!r}")
        self.url, self.port = m.group(1), int(m.group(2))
        return self

    def log(self) -> str:
        """What the server wrote to stderr so far (access log, tracebacks)."""
        try:
            return (self.dir / "serve.log").read_text(errors="replace")
        except OSError:
            return ""

    def processes(self) -> list[psutil.Process]:
        """The master and all its descendants."""
        assert self.proc is not None
        master = psutil.Process(self.proc.pid)
        return [master, *master.children(recursive=True)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> list[psutil.Process]:
        """Send ``sig`` to the master, wait for it; return the processes still alive after
        another ``timeout`` (none, if the server stops its workers), killing them."""
        if self.proc is None:
            return []
        try:
            family = self.processes()
        except psutil.NoSuchProcess:
            family = []
        stop_process(self.proc, sig, timeout)
        _, alive = psutil.wait_procs(family, timeout=timeout)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None
        return alive

    def session_file(self, cookie: str) -> Path:
        """The ``sess_<id>`` file of a ``PHPSESSID=<id>`` cookie."""
        return self.sessions / f"sess_{cookie.split('=', 1)[1]}"

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
