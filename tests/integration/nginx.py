"""Start a real nginx (and the FastCGI backends behind it) for integration tests. Runs
processes, writes a config, logs and temp files into one temp directory.

nginx runs in the foreground (``daemon off``) with its master process, listens on
127.0.0.1 only, and keeps its pid file, logs and temp paths inside the directory
it was given.  Everything here is stopped by the fixtures that start it; a
missing binary fails the test loudly (:func:`tests.phptools.require`).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from tests.phptools import require

__all__ = [
    "REPO",
    "SHIPPED_CONF",
    "PYTHONPATH",
    "Nginx",
    "Response",
    "free_port",
    "wait_for",
    "wait_for_socket",
    "http_get",
    "shipped_conf",
    "stop_process",
    "start_fpm",
    "start_php_fpm",
    "start_fcgiwrap",
    "fcgi_request",
]

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONF = REPO / "conf" / "nginx.conf"
#: where the scripts and servers under test import phpsess from (default: this checkout)
PYTHONPATH = os.environ.get("PHPSESS_TEST_PYTHONPATH") or str(REPO)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def _can_connect(address: str | tuple[str, int]) -> bool:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(0.5)
        try:
            s.connect(address)
        except OSError:
            return False
        return True


def wait_for_socket(address: str | tuple[str, int], timeout: float = 10.0) -> None:
    """Wait until something accepts connections on ``address`` (a unix path or (host, port))."""
    wait_for(lambda: _can_connect(address), timeout, f"a listener on {address}")


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Send ``sig`` to ``proc`` and wait; SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Response:
    """A finished HTTP response: status, headers (in order, repeated ones kept), body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes, elapsed: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        low = name.lower()
        for n, v in self.headers:
            if n.lower() == low:
                return v
        return None

    def all(self, name: str) -> list[str]:
        """Every value of the header ``name``."""
        low = name.lower()
        return [v for n, v in self.headers if n.lower() == low]

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}>"


def http_get(
    port: int,
    path: str,
    *,
    cookie: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP/1.1 request to 127.0.0.1:``port`` on a new connection."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = cookie
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, list(r.getheaders()), data, time.monotonic() - started)
    finally:
        conn.close()


class Nginx:
    """A real nginx serving ``server_body`` (the inside of a ``server {}`` block) on
    127.0.0.1, or a whole config given with :meth:`from_config`.

    ``with Nginx(tmp_path / "nginx", body) as ng: http_get(ng.port, "/x.py")``.
    """

    def __init__(self, workdir: Path, server_body: str = "", *, port: int | None = None) -> None:
        self.binary = require("nginx")
        self.dir = Path(workdir)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.config: str | None = None
        if server_body:
            self.config = self._wrap(server_body)

    def _prologue(self) -> str:
        user = "user root root;\n" if os.geteuid() == 0 else ""
        return (
            f"daemon off;\nmaster_process on;\nworker_processes 2;\n{user}"
            f"pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log info;\n"
        )

    def _temp_paths(self) -> str:
        return "".join(
            f"    {name}_temp_path {self.dir}/tmp_{name};\n"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )

    def _wrap(self, server_body: str) -> str:
        return (
            self._prologue()
            + "events { worker_connections 1024; }\n"
            + "http {\n"
            + f"    access_log {self.dir}/access.log;\n"
            + self._temp_paths()
            + "    server {\n"
            + f"        listen 127.0.0.1:{self.port};\n"
            + "        server_name localhost;\n"
            + server_body
            + "\n    }\n}\n"
        )

    @classmethod
    def from_config(
        cls, workdir: Path, text: str, replacements: Mapping[str, str], *, port: int | None = None
    ) -> "Nginx":
        """Run a whole nginx.conf (e.g. the shipped ``conf/nginx.conf``).

        Each key of ``replacements`` must occur in ``text`` (so a changed
        config fails loudly); ``{port}`` and ``{dir}`` in the values are filled
        in.  The top-level ``user``, ``pid``, ``error_log`` and ``access_log``
        lines are rewritten to stay inside ``workdir``.
        """
        ng = cls(workdir, port=port)
        for old, new in replacements.items():
            if old not in text:
                raise AssertionError(f"{old!r} not found in the nginx config")
            text = text.replace(old, new.format(port=ng.port, dir=ng.dir))
        kept = []
        for line in text.splitlines():
            word = line.strip().split(" ", 1)[0]
            if word in ("user", "pid", "error_log", "daemon", "master_process", "worker_processes") and not line.startswith((" ", "\t")):
                continue
            if word == "access_log":
                line = line.split("access_log")[0] + f"access_log {ng.dir}/access.log;"
            kept.append(line)
        text = "\n".join(kept) + "\n"
        text = text.replace("http {", "http {\n" + ng._temp_paths(), 1)
        ng.config = ng._prologue() + text
        return ng

    def start(self, timeout: float = 10.0) -> "Nginx":
        """Write the config, start nginx, wait until it accepts connections."""
        assert self.config is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in ("fastcgi_params", "mime.types"):
            src = Path("/etc/nginx") / name
            if src.exists() and not (self.dir / name).exists():
                shutil.copy(src, self.dir / name)
        conf = self.dir / "nginx.conf"
        conf.write_text(self.config)
        test = subprocess.run(
            [self.binary, "-t", "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            capture_output=True,
        )
        if test.returncode != 0:
            raise AssertionError(f"nginx -t failed:\n{test.stderr.decode()}\n{self.config}")
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.dir), "-c", str(conf), "-e", str(self.dir / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_socket(("127.0.0.1", self.port), timeout)
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGTERM to the master); waits for it."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None

    def error_log(self) -> str:
        """nginx's error log so far."""
        p = self.dir / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def get(self, path: str, **kw: object) -> Response:
        """:func:`http_get` on this nginx."""
        return http_get(self.port, path, **kw)  # type: ignore[arg-type]

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def shipped_conf(workdir: Path, *, root: Path, fpm_socket: str) -> Nginx:
    """The shipped ``conf/nginx.conf``, pointed at ``root`` and ``fpm_socket``."""
    return Nginx.from_config(
        workdir,
        SHIPPED_CONF.read_text(),
        {
            "listen 80;": "listen 127.0.0.1:{port};",
            "/srv/phpsess/cgi-bin": str(root),
            "unix:/run/phpsess/fpm.sock": f"unix:{fpm_socket}",
        },
    )


def _pythonpath_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PYTHONPATH, env.get("PYTHONPATH", "")) if p)
    env.pop("PHPSESS_INI", None)
    env.update(extra or {})
    return env


@contextlib.contextmanager
def start_fpm(
    root: Path,
    socket_path: str,
    *,
    workers: int = 4,
    max_requests: int = 0,
    ini: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m phpsess fpm`` on a unix socket; yields the master's Popen; stops it (SIGTERM)."""
    args = [
        sys.executable, "-m", "phpsess", "fpm",
        "--listen", socket_path, "--root", str(root), "--workers", str(workers),
    ]
    if max_requests:
        args += ["--max-requests", str(max_requests)]
    if ini:
        args += ["--ini", ini]
    log = open(Path(socket_path).with_suffix(".log"), "wb")
    proc = subprocess.Popen(args, env=_pythonpath_env(env), stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        try:
            wait_for_socket(socket_path, timeout)
        except TimeoutError:
            log.flush()
            raise AssertionError(
                "phpsess fpm did not start:\n" + Path(socket_path).with_suffix(".log").read_text(errors="replace")
            ) from None
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM)
        log.close()


@contextlib.contextmanager
def start_php_fpm(
    workdir: Path,
    socket_path: str,
    *,
    workers: int = 4,
    ini: Mapping[str, str] | None = None,
    extensions: Sequence[str] = (),
    timeout: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """PHP's own php-fpm 8.2 (Debian's) in the foreground: one ``pm = static`` pool of
    ``workers`` children on the unix socket ``socket_path``, with ``ini`` as its
    ``php_admin_value`` settings (e.g. ``session.save_path``) and the PHP ``extensions``
    loaded in that order (``-n`` loads none: e.g. ``igbinary.so``, ``redis.so``); its
    config and logs in ``workdir``.  Yields the master's Popen; stops it (SIGTERM)."""
    binary = require("/usr/sbin/php-fpm8.2")
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "[global]", f"pid = {workdir}/php-fpm.pid", f"error_log = {workdir}/php-fpm.log", "daemonize = no", "",
        "[www]", f"listen = {socket_path}", "listen.mode = 0666", "pm = static", f"pm.max_children = {workers}",
        "catch_workers_output = yes", "php_admin_value[log_errors] = 1", "php_admin_value[display_errors] = 0",
    ]
    lines += [f"php_admin_value[{k}] = {v}" for k, v in (ini or {}).items()]
    conf = workdir / "php-fpm.conf"
    conf.write_text("\n".join(lines) + "\n")
    loads = [arg for ext in extensions for arg in ("-d", f"extension={ext}")]
    args = [binary, "-n", *loads, "-F", "-y", str(conf)] + (["-R"] if os.geteuid() == 0 else [])
    log = open(workdir / "php-fpm.out", "wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_socket(socket_path, timeout)
        except TimeoutError:
            log.flush()
            raise AssertionError("php-fpm did not start:\n" + (workdir / "php-fpm.out").read_text(errors="replace")) from None
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM)
        log.close()


@contextlib.contextmanager
def start_fcgiwrap(socket_path: str, *, children: int = 4) -> Iterator[subprocess.Popen[bytes]]:
    """Debian's fcgiwrap (runs CGI scripts for nginx) on a unix socket; stops it on exit.

    ``-f``: the scripts' stderr goes to nginx's error log.
    """
    binary = require("fcgiwrap")
    proc = subprocess.Popen(
        [binary, "-f", "-c", str(children), "-s", f"unix:{socket_path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_socket(socket_path, 10.0)
        yield proc
    finally:
        # fcgiwrap's children share its session; stop them all
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        with contextlib.suppress(OSError):
            os.unlink(socket_path)


def _fcgi_pair(name: bytes, value: bytes) -> bytes:
    out = b""
    for n in (len(name), len(value)):
        out += bytes([n]) if n < 128 else (n | 0x80000000).to_bytes(4, "big")
    return out + name + value


def _fcgi_record(rtype: int, rid: int, content: bytes) -> bytes:
    pad = -len(content) & 7
    return bytes([1, rtype]) + rid.to_bytes(2, "big") + len(content).to_bytes(2, "big") + bytes([pad, 0]) + content + b"\0" * pad


def fcgi_request(
    address: str | tuple[str, int], params: Mapping[str, str], body: bytes = b"", timeout: float = 30.0
) -> tuple[bytes, bytes]:
    """Send one FastCGI responder request straight to a backend (no nginx).

    :returns: (stdout bytes: the CGI head and body, stderr bytes).
    """
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(timeout)
        s.connect(address)
        rid = 1
        data = _fcgi_record(1, rid, (1).to_bytes(2, "big") + bytes(6))  # BEGIN_REQUEST, responder
        pairs = b"".join(_fcgi_pair(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in params.items())
        data += _fcgi_record(4, rid, pairs) + _fcgi_record(4, rid, b"")
        for i in range(0, len(body), 32768):
            data += _fcgi_record(5, rid, body[i : i + 32768])
        data += _fcgi_record(5, rid, b"")
        s.sendall(data)
        out, err, buf = [], [], b""
        while True:
            while len(buf) < 8:
                more = s.recv(65536)
                if not more:
                    raise ConnectionError("backend closed the connection before FCGI_END_REQUEST")
                buf += more
            rtype = buf[1]
            clen = int.from_bytes(buf[4:6], "big")
            end = 8 + clen + buf[6]
            while len(buf) < end:
                more = s.recv(65536)
                if not more:
                    raise ConnectionError("truncated FastCGI record")
                buf += more
            content, buf = buf[8 : 8 + clen], buf[end:]
            if rtype == 6:
                out.append(content)
            elif rtype == 7:
                err.append(content)
            elif rtype == 3:
                return b"".join(out), b"".join(err)
