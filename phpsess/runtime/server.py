"""``phpsess serve``: a pre-forked HTTP/1.1 server that runs cgi-bin scripts. Does socket,
process and signal I/O.

The shape is php-fpm's: one master process binds the listening sockets, forks
``workers`` processes and supervises them; each worker accepts one connection,
serves one request (running the script through :func:`phpsess.runtime.sapi.handle_request`
in a fresh request context), answers with ``Content-Length`` and
``Connection: close``, and only then accepts the next.  Because a worker is busy
for the whole request, a script blocked on a session lock really blocks, as a
PHP request does.

URLs map to files under the root only: ``/counter.py?x=1`` runs
``ROOT/counter.py`` (``/counter.py/more`` too, with ``PATH_INFO=/more``); a
directory runs its ``index.py``, else its ``demo.py``, else lists its scripts;
anything else, dot files and ``..`` included, is 404.

Besides the main port, the server listens on ``extra_ports`` more (ephemeral)
ports of the same host.  Browsers open at most 6 HTTP/1.1 connections per
host:port, so a page that wants 10 requests in flight at once spreads them over
these ports; cookies ignore ports, so all of them carry the same session.  The
ports are given to scripts as ``$_SERVER["PHPSESS_SERVE_PORTS"]`` (main port
first), and the server answers CORS requests between its own ports.
"""

from __future__ import annotations

import ctypes
import errno
import html
import http
import logging
import os
import select
import signal
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import formatdate
from typing import Callable, Sequence

from ..version import __version__
from ..storage import registry
from ..core.http import reason_phrase
from .cgi import disarm as _disarm_cgi

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = [
    "serve",
    "Server",
    "HTTPError",
    "Route",
    "route",
    "parse_request_head",
    "build_environ",
    "cors_headers",
    "format_response",
    "listing_page",
]

log = logging.getLogger(__name__)

#: largest request head (request line + headers) accepted
MAX_HEAD = 64 * 1024
#: largest request body accepted (PHP's post_max_size is 8M; uploads may be bigger)
MAX_BODY = 64 * 1024 * 1024
#: seconds a client may take to send its request, or to take our response
IO_TIMEOUT = 60.0

SERVER_SOFTWARE = f"phpsess/{__version__}"

#: (status, headers, body) that one request produces
Response = tuple[int, list[tuple[str, str]], bytes]


class HTTPError(Exception):
    """A request the server answers itself, without running a script."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message or _reason(status))
        self.status = status


# -- pure helpers ----------------------------------------------------------------------------


def parse_request_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    """Split an HTTP/1.x request head (without the blank line) into its parts.

    :returns: ``(method, target, version, headers)``; header names as sent,
        values stripped; bytes decoded as UTF-8 with surrogateescape (what a CGI
        script sees in ``os.environ``).
    :raises HTTPError: 400 for anything malformed, 505 for a version other than 1.x.
    """
    lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise HTTPError(505 if version.startswith("HTTP/") else 400, "unsupported HTTP version")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise HTTPError(400, "obsolete header folding")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise HTTPError(400, "malformed header line")
        headers.append((name, value.strip(" \t")))
    return method.upper(), target, version, headers


@dataclass(frozen=True)
class Route:
    """Where a URL path leads: a script to run, or a directory to list."""

    kind: str  # "script" | "listing" | "redirect"
    filename: str  # absolute path of the script (or the directory listed)
    script_name: str  # URL path of the script (or of the directory, or the redirect target)
    path_info: str = ""


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def route(root: str, url_path: str) -> Route | None:
    """Map a URL path (still %-encoded, no query) to a script under ``root``; None means 404.

    Refuses ``..``, NUL bytes, dot files and ``__pycache__``, non-``.py`` files and
    anything whose real path (symlinks resolved) leaves ``root``.
    """
    root = os.path.realpath(root)
    path = urllib.parse.unquote(url_path, errors="surrogateescape")
    if not path.startswith("/") or "\0" in path:
        return None
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if any(s == ".." or s.startswith(".") or s == "__pycache__" for s in segments):
        return None
    current = root
    for index, segment in enumerate(segments):
        current = os.path.join(current, segment)
        if os.path.isfile(current):
            if not segment.endswith(".py"):
                return None
            rest = segments[index + 1 :]
            path_info = "/" + "/".join(rest) if rest else ""
            if path_info and path.endswith("/"):
                path_info += "/"
            script_name = "/" + "/".join(segments[: index + 1])
            return _checked(root, Route("script", current, script_name, path_info))
        if not os.path.isdir(current):
            return None
    url_dir = "/" + "".join(s + "/" for s in segments)
    if not path.endswith("/"):
        return Route("redirect", current, url_dir)
    for index_name in ("index.py", "demo.py"):
        candidate = os.path.join(current, index_name)
        if os.path.isfile(candidate):
            return _checked(root, Route("script", candidate, url_dir + index_name))
    return _checked(root, Route("listing", current, url_dir))


def _checked(root: str, r: Route) -> Route | None:
    return r if _is_under(os.path.realpath(r.filename), root) else None


def build_environ(
    *,
    method: str,
    target: str,
    version: str,
    headers: Sequence[tuple[str, str]],
    route: Route,
    root: str,
    client: tuple[str, int],
    server: tuple[str, int],
    ports: Sequence[int],
    body_length: int,
) -> dict[str, str]:
    """The CGI/1.1 environment a script sees, as nginx + php-fpm would pass it.

    ``HTTP_*`` for every header (repeats joined with ``", "``, ``Cookie`` with
    ``"; "``); headers whose name holds ``_`` are dropped (nginx's default, so
    ``X_Forwarded`` cannot pass for ``X-Forwarded``).
    """
    path, _, query = target.partition("?")
    host_header = ""
    env: dict[str, str] = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": SERVER_SOFTWARE,
        "SERVER_PROTOCOL": version,
        "REQUEST_SCHEME": "http",
        "REQUEST_METHOD": method,
        "REQUEST_URI": target,
        "DOCUMENT_URI": route.script_name + route.path_info,
        "DOCUMENT_ROOT": os.path.realpath(root),
        "SCRIPT_NAME": route.script_name,
        "SCRIPT_FILENAME": route.filename,
        "QUERY_STRING": query,
        "REMOTE_ADDR": client[0],
        "REMOTE_PORT": str(client[1]),
        "SERVER_ADDR": server[0],
        "SERVER_PORT": str(server[1]),
        "PHPSESS_SERVE_PORTS": ",".join(str(p) for p in ports),
    }
    if route.path_info:
        env["PATH_INFO"] = route.path_info
        env["PATH_TRANSLATED"] = os.path.realpath(root) + route.path_info
    for name, value in headers:
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            env["CONTENT_TYPE"] = value
            continue
        if key == "CONTENT_LENGTH":
            continue
        key = "HTTP_" + key
        if key in env:
            env[key] += ("; " if key == "HTTP_COOKIE" else ", ") + value
        else:
            env[key] = value
        if key == "HTTP_HOST":
            host_header = value
    if body_length or method in ("POST", "PUT", "PATCH"):
        env["CONTENT_LENGTH"] = str(body_length)
    env["SERVER_NAME"] = _hostname(host_header) or server[0]
    return env


def _hostname(host_header: str) -> str:
    """``"example.com:8080"`` -> ``"example.com"``; ``"[::1]:80"`` -> ``"::1"``."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else ""
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def cors_headers(
    origin: str | None, host_header: str, ports: Sequence[int], *, preflight: bool = False
) -> list[tuple[str, str]]:
    """CORS headers letting a page served by one of our ports call another of our ports.

    Only an ``Origin`` of ``http://<same host name>:<one of ports>`` is allowed,
    with credentials (the session cookie); any other origin gets nothing.
    """
    if not origin:
        return []
    parsed = urllib.parse.urlsplit(origin)
    try:
        origin_port = parsed.port or 80
    except ValueError:
        return []
    if parsed.scheme != "http" or origin_port not in ports or parsed.hostname is None:
        return []
    if parsed.hostname.lower() != _hostname(host_header).lower():
        return []
    out = [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]
    if preflight:
        out += [
            ("Access-Control-Allow-Methods", "GET, POST, HEAD"),
            ("Access-Control-Allow-Headers", "Content-Type"),
            ("Access-Control-Max-Age", "600"),
        ]
    return out


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def format_response(
    status: int, headers: Sequence[tuple[str, str]], body: bytes, *, head_only: bool = False
) -> bytes:
    """Serialize a complete HTTP/1.1 response with ``Content-Length`` and ``Connection: close``.

    ``Content-Length``/``Connection``/``Transfer-Encoding``/``Date``/``Server`` given by
    the script are replaced by the server's own.
    """
    lines: list[str] = []
    for name, value in headers:
        low = name.lower()
        if low in ("content-length", "connection", "transfer-encoding", "date", "server"):
            continue
        lines.append(f"{name}: {value}")
    reason = _reason(status)
    head = [f"HTTP/1.1 {status} {reason}", f"Date: {formatdate(usegmt=True)}", f"Server: {SERVER_SOFTWARE}"]
    head += lines
    head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    data = _encode("\r\n".join(head))
    return data if head_only else data + body


def listing_page(directory: str, url_dir: str) -> bytes:
    """A small HTML index of the ``.py`` scripts and subdirectories of ``directory``."""
    names = sorted(
        n + ("/" if os.path.isdir(os.path.join(directory, n)) else "")
        for n in os.listdir(directory)
        if not n.startswith(".") and n != "__pycache__"
        and (n.endswith(".py") or os.path.isdir(os.path.join(directory, n)))
    )
    items = "".join(
        f'<li><a href="{html.escape(urllib.parse.quote(url_dir + n))}">{html.escape(n)}</a></li>\n'
        for n in names
    )
    title = html.escape(f"Index of {url_dir}")
    return _encode(
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n"
        f"<body><h1>{title}</h1>\n<ul>\n{items}</ul></body></html>\n"
    )


def _reason(status: int) -> str:
    """The reason phrase of ``status``: PHP's table, then the standard one."""
    phrase = reason_phrase(status)
    if not phrase:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
    return phrase


def _error_body(status: int, message: str) -> bytes:
    title = f"{status} {_reason(status)}"
    return _encode(
        f"<!DOCTYPE html>\n<html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>\n"
    )


def _error_response(status: int, message: str = "") -> Response:
    return status, [("Content-Type", "text/html; charset=UTF-8")], _error_body(status, message)


# -- processes --------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _set_parent_death_signal(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:  # not Linux
        log.warning("prctl(PR_SET_PDEATHSIG) unavailable: %s", exc)


class Server:
    """The master process: listening sockets, the worker pool and its supervision.

    :param root: directory whose ``.py`` scripts are served.
    :param port: main port (0: let the kernel choose; see :attr:`port`).
    :param host: address to bind (IPv4 or IPv6 literal, or a name).
    :param workers: worker processes, each serving one request at a time.
    :param extra_ports: additional ephemeral ports on ``host`` (see the module doc).
    :param access_log: log one line per request (logger ``phpsess.runtime.server``).
    """

    def __init__(
        self,
        root: str,
        port: int = 8080,
        host: str = "127.0.0.1",
        workers: int = 16,
        *,
        extra_ports: int = 2,
        access_log: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not os.path.isdir(root):
            raise FileNotFoundError(errno.ENOENT, "document root is not a directory", root)
        self.root = os.path.realpath(root)
        self.host = host
        self.workers = workers
        self.access_log = access_log
        self._requested = [port] + [0] * extra_ports
        self.listeners: list[socket.socket] = []
        self.ports: list[int] = []
        self.pids: dict[int, float] = {}  # worker pid -> spawn time
        self._master_pid = os.getpid()
        self._stopping = False
        self._respawn_after = 0.0
        self._wakeup: tuple[int, int] | None = None

    @property
    def port(self) -> int:
        """The main port actually bound."""
        return self.ports[0]

    @property
    def url(self) -> str:
        """``http://host:port/`` of the main port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # -- master ------------------------------------------------------------------------------
    def bind(self) -> None:
        """Create, bind and listen on all sockets (before forking, so workers share them)."""
        infos = socket.getaddrinfo(self.host, None, type=socket.SOCK_STREAM)
        family = infos[0][0]
        address = infos[0][4][0]
        for wanted in self._requested:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, wanted))
            except OSError:
                sock.close()
                self.close()
                raise
            sock.listen(128)
            self.listeners.append(sock)
            self.ports.append(sock.getsockname()[1])

    def close(self) -> None:
        """Close the listening sockets."""
        for sock in self.listeners:
            sock.close()
        self.listeners = []

    def run(self) -> None:
        """Fork the workers and supervise them until SIGTERM, SIGINT or SIGHUP; then stop them all.

        A worker that dies is replaced at once, or after a second when one died
        within a second of its start (a crash loop).  Returns after every worker has exited.
        """
        if not self.listeners:
            self.bind()
        self._master_pid = os.getpid()
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wakeup = (r, w)
        previous = {s: signal.getsignal(s) for s in (*_STOP_SIGNALS, signal.SIGCHLD)}
        old_wakeup = signal.set_wakeup_fd(w)
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        try:
            for _ in range(self.workers):
                self._spawn()
            while not self._stopping:
                select.select([r], [], [], 1.0)
                self._drain(r)
                self._reap()
                while (not self._stopping and len(self.pids) < self.workers
                       and time.monotonic() >= self._respawn_after):
                    self._spawn()
        finally:
            self._stop_workers()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(r)
            os.close(w)
            self._wakeup = None
            self.close()

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    @staticmethod
    def _drain(fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            born = self.pids.pop(pid, None)
            registry.forget_registry(pid)
            if born is not None and not self._stopping:
                log.warning("worker %d exited (%s); starting another", pid, _describe(status))
                if time.monotonic() - born < 1.0:
                    self._respawn_after = time.monotonic() + 1.0

    def _spawn(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # block the stop signals across fork, so a child cannot catch one with the master's
        # handler before it has installed its own
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            raise
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            self.pids[pid] = time.monotonic()
            return
        code = 0
        try:
            self._become_worker()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            self._worker_loop()
        except BaseException:  # noqa: B036 - a worker must never return into the master's code
            log.exception("worker %d crashed", os.getpid())
            code = 1
        finally:
            os._exit(code)

    def _stop_workers(self, grace: float = 5.0) -> None:
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while self.pids and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.pids.clear()
                break
            if pid:
                self.pids.pop(pid, None)
                registry.forget_registry(pid)
            else:
                time.sleep(0.01)
        for pid in list(self.pids):
            log.warning("worker %d ignored SIGTERM; killing it", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pids.pop(pid, None)
            registry.forget_registry(pid)

    # -- worker ------------------------------------------------------------------------------
    def _become_worker(self) -> None:
        signal.set_wakeup_fd(-1)
        if self._wakeup is not None:
            os.close(self._wakeup[0])
            os.close(self._wakeup[1])
            self._wakeup = None
        # SIGTERM ends a worker at once, as php-fpm's does; the kernel releases its flocks.
        # Ctrl-C reaches the whole process group: the master alone decides.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != self._master_pid:  # the master died before prctl
            os._exit(0)
        self.pids = {}
        from .output import install_output_proxy

        install_output_proxy()

    def _worker_loop(self) -> None:
        poller = select.epoll()
        by_fd: dict[int, socket.socket] = {}
        flags = select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0)
        for sock in self.listeners:
            sock.setblocking(False)
            poller.register(sock.fileno(), flags)
            by_fd[sock.fileno()] = sock
        while True:
            for fd, _ in poller.poll():
                try:
                    conn, client = by_fd[fd].accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                try:
                    self.serve_connection(conn, client)
                except Exception:  # noqa: BLE001 - one bad connection must not end the worker
                    log.exception("error serving %s", client)
                finally:
                    conn.close()

    def serve_connection(self, conn: socket.socket, client: tuple[str, int]) -> None:
        """Read one request from ``conn``, answer it, and shut the connection down."""
        started = time.monotonic()
        conn.setblocking(True)
        conn.settimeout(IO_TIMEOUT)
        server_addr = conn.getsockname()
        request_line = "-"
        method = "GET"
        try:
            head, rest = _read_head(conn)
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, version, headers = parse_request_head(head)
            body = _read_body(conn, headers, rest, version)
            status, out_headers, out_body = self.respond(
                method, target, version, headers, body, (client[0], client[1]), (server_addr[0], server_addr[1])
            )
        except HTTPError as exc:
            status, out_headers, out_body = _error_response(exc.status, str(exc))
        except (socket.timeout, ConnectionError):
            return
        except Exception:  # noqa: BLE001 - a bug of ours: answer 500, keep the worker
            log.exception("error serving %r", request_line)
            status, out_headers, out_body = _error_response(500)
        data = format_response(status, out_headers, out_body, head_only=method == "HEAD")
        try:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            return
        if self.access_log:
            log.info(
                '%s "%s" %d %d %.3fs [pid %d]',
                client[0], request_line, status, len(out_body), time.monotonic() - started, os.getpid(),
            )

    def respond(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[str, str]],
        body: bytes,
        client: tuple[str, int],
        server: tuple[str, int],
    ) -> Response:
        """Produce the response to one parsed request: run the script, list, redirect or 404."""
        if target.startswith(("http://", "https://")):  # absolute-form
            parts = urllib.parse.urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not target.startswith("/"):
            raise HTTPError(400, "bad request target")
        lowered = {n.lower(): v for n, v in headers}
        cors = cors_headers(
            lowered.get("origin"), lowered.get("host", ""), self.ports,
            preflight=method == "OPTIONS" and "access-control-request-method" in lowered,
        )
        if method == "OPTIONS" and "access-control-request-method" in lowered:
            return 204, cors, b""
        path = target.split("?", 1)[0]
        found = route(self.root, path)
        if found is None:
            return _error_response(404, "The requested URL was not found on this server.")
        if found.kind == "redirect":
            query = target[len(path):]
            return 301, [("Location", found.script_name + query), *cors], b""
        if found.kind == "listing":
            return 200, [("Content-Type", "text/html; charset=UTF-8"), *cors], listing_page(
                found.filename, found.script_name
            )
        environ = build_environ(
            method=method, target=target, version=version, headers=headers, route=found,
            root=self.root, client=client, server=server, ports=self.ports, body_length=len(body),
        )
        status, out_headers, out_body = _buffered_request(environ, body, self.root)
        return status, out_headers + cors, out_body


def _buffered_request(environ: dict[str, str], body: bytes, root: str) -> Response:
    """Run the script named by ``environ["SCRIPT_FILENAME"]``; return its buffered response.

    The status and headers are those the request had at its first body byte (or at
    its end, with no body), as PHP sends them.
    """
    from .sapi import handle_request

    sent: list[tuple[int, list[tuple[str, str]]]] = []
    chunks: list[bytes] = []

    def send_headers(status: int, headers: list[tuple[str, str]]) -> None:
        sent.append((status, list(headers)))

    handle_request(environ, body, root, send_headers, chunks.append)
    status, headers = sent[0] if sent else (200, [])
    return status, headers, b"".join(chunks)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return buf[:end], buf[end + 4 :]
        if len(buf) > MAX_HEAD:
            raise HTTPError(431, "request header too large")
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionResetError("client closed before sending a request")
        buf += chunk
        if buf.startswith(b"\r\n"):  # stray CRLF before a request line (RFC 9112 2.2)
            buf = buf.lstrip(b"\r\n")


def _recv_exactly(conn: socket.socket, buf: bytes, n: int) -> tuple[bytes, bytes]:
    """``n`` bytes from ``buf`` then ``conn``; returns (those bytes, what is left of buf)."""
    parts = [buf[:n]]
    have = len(parts[0])
    rest = buf[n:]
    while have < n:
        chunk = conn.recv(min(65536, n - have))
        if not chunk:
            raise HTTPError(400, "request body shorter than announced")
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts), rest


def _read_line(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    while b"\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise HTTPError(400, "chunk header too long")
        chunk = conn.recv(65536)
        if not chunk:
            raise HTTPError(400, "truncated chunked body")
        buf += chunk
    line, _, rest = buf.partition(b"\r\n")
    return line, rest


def _read_body(conn: socket.socket, headers: list[tuple[str, str]], buf: bytes, version: str) -> bytes:
    lowered: dict[str, str] = {}
    for name, value in headers:
        lowered.setdefault(name.lower(), value)
    if lowered.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            line, buf = _read_line(conn, buf)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HTTPError(400, "bad chunk size") from None
            if size == 0:
                while True:  # trailers
                    line, buf = _read_line(conn, buf)
                    if not line:
                        return bytes(body)
            if len(body) + size > MAX_BODY:
                raise HTTPError(413, "request body too large")
            data, buf = _recv_exactly(conn, buf, size + 2)
            body += data[:-2]
    raw = lowered.get("content-length")
    if raw is None:
        return b""
    if not raw.isdigit():
        raise HTTPError(400, "bad Content-Length")
    length = int(raw)
    if length > MAX_BODY:
        raise HTTPError(413, "request body too large")
    data, _ = _recv_exactly(conn, buf, length)
    return data


# -- entry points -----------------------------------------------------------------------------


def serve(
    root: str,
    port: int = 8080,
    host: str = "127.0.0.1",
    workers: int = 16,
    ini: str | None = None,
    *,
    extra_ports: int = 2,
    access_log: bool = True,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run ``phpsess serve`` in the foreground until SIGTERM or SIGINT.

    Prints ``phpsess serve: http://127.0.0.1:8080/ (root /abs/root, 16 workers)``
    once listening.  Every worker is stopped before this returns.

    :param root: directory of the scripts (``cgi-bin``).
    :param port: main port; 0 picks a free one (printed).
    :param ini: a php.ini-syntax file whose ``session.*`` settings every request starts from.
    :param extra_ports: extra listening ports for pages that need more than 6 parallel requests.
    :param announce: where the start line goes (default: stdout, flushed).
    :raises OSError: the port cannot be bound.
    :raises ConfigError: ``ini`` holds a setting PHP would refuse.
    """
    if ini is not None:
        from ..session.settings import from_ini_file
        from ..session.settings import set_default_config

        set_default_config(from_ini_file(ini))
        os.environ["PHPSESS_INI"] = os.path.abspath(ini)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    # load the runtime once in the master, so every forked worker starts warm
    from .. import php  # noqa: F401
    from . import sapi  # noqa: F401

    server = Server(root, port, host, workers, extra_ports=extra_ports, access_log=access_log)
    server.bind()
    line = f"phpsess serve: {server.url} (root {server.root}, {workers} workers)"
    if announce is None:
        print(line, flush=True)
    else:
        announce(line)
    if len(server.ports) > 1:
        log.info("phpsess serve: parallel-request ports %s", ", ".join(map(str, server.ports[1:])))
    server.run()

