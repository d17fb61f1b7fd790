"""``phpsess serve``: a pre-forked HTTP/1.1 server that runs cgi-bin scripts, on the same
supervisor as ``phpsess fpm`` (:mod:`phpsess.runtime.prefork`).  Does socket I/O and file
lookups; HTTP itself is :mod:`phpsess.runtime.http_conn`'s (h11), the scripts
:mod:`phpsess.runtime.sapi`'s.

Each worker accepts one connection, reads one request (strictly, bounded in size and
time), runs the script in a fresh request context and answers with ``Connection:
close`` -- with a ``Content-Length`` when the response fits in 64 KiB, streamed
beyond -- and only then accepts the next.  Because a worker is busy for the whole
request, a script blocked on a session lock really blocks, as a PHP request does.
The pool has what ``phpsess fpm``'s has: graceful stop (SIGQUIT) and reload (SIGUSR2),
``max_requests``, ``max_execution_time``, ``post_max_size``, crash-loop back-off.

URLs map to files under the root only: ``/counter.py?x=1`` runs
``ROOT/counter.py`` (``/counter.py/more`` too, with ``PATH_INFO=/more``); a
directory runs its ``index.py``, else its ``demo.py``, else lists its scripts;
anything else, dot files, ``..`` and symlinks leading out of the root included, is 404.

Besides the main port, the server can listen on ``extra_ports`` more ports of the same
host (by default the two after the main port, each skipped when taken; free ones with
``--port 0``).  Browsers open at most 6 HTTP/1.1 connections per host:port, so a page that
wants 10 requests in flight at once spreads them over these ports; cookies ignore
ports, so all of them carry the same session.  The ports are given to scripts as
``$_SERVER["PHPSESS_SERVE_PORTS"]`` (main port first), and the server answers CORS
requests between its own ports.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import os
import socket
import _socket
import sys
import time
import urllib.parse
from dataclasses import dataclass
from email.utils import formatdate
from typing import Callable, Sequence

import h11

from ..version import __version__
from .cgi import disarm as _disarm_cgi
from .http_conn import HTTPError, HTTPLimits, HTTPRequest, ReadTimeout, ResponseWriter, parse_request_head, read_request, reason
from .prefork import Arbiter, PoolSettings, WorkerContext, inherited_listeners
from .script_worker import DEFAULT_MAX_EXECUTION_TIME, DEFAULT_POST_MAX_SIZE, ScriptWorker, preload

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = [
    "serve",
    "ServeOptions",
    "HTTPWorker",
    "HTTPError",
    "Route",
    "route",
    "parse_request_head",
    "build_environ",
    "cors_headers",
    "listing_page",
    "bind_listeners",
]

log = logging.getLogger(__name__)

SERVER_SOFTWARE = f"phpsess/{__version__}"

#: (status, headers, body) that the server produces itself
Response = tuple[int, list[tuple[str, str]], bytes]


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
        return _checked(root, Route("redirect", current, url_dir))  # a link out of root: 404
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


def _error_body(status: int, message: str) -> bytes:
    title = f"{status} {reason(status)}"
    return _encode(
        f"<!DOCTYPE html>\n<html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>\n"
    )


def _error_response(status: int, message: str = "") -> Response:
    return status, [("Content-Type", "text/html; charset=UTF-8")], _error_body(status, message)


# -- the pool ---------------------------------------------------------------------------------


@dataclasses.dataclass
class ServeOptions:
    """What ``phpsess serve`` is told."""

    root: str = "cgi-bin"
    port: int = 8080
    host: str = "127.0.0.1"
    workers: int = 16
    #: more ports of ``host`` for pages that need more than 6 requests in flight; None:
    #: ``port + 1`` and ``port + 2`` when free (two free ports when ``port`` is 0)
    extra_ports: Sequence[int] | None = None
    access_log: bool = True
    max_requests: int = 0
    max_execution_time: float = DEFAULT_MAX_EXECUTION_TIME
    post_max_size: int = DEFAULT_POST_MAX_SIZE
    limits: HTTPLimits = dataclasses.field(default_factory=HTTPLimits)


def _defer_accept(sock: socket.socket, seconds: float) -> None:
    """Linux's TCP_DEFER_ACCEPT: a connection reaches accept() only once it has sent data
    (or after about ``seconds``), so silent clients do not take workers from real ones."""
    if seconds > 0 and hasattr(socket, "TCP_DEFER_ACCEPT"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, max(1, int(seconds)))
        except OSError:
            pass


def bind_listeners(host: str, ports: Sequence[int], *, defer: float = 0.0) -> list[socket.socket]:
    """Bind and listen on ``ports`` of ``host`` (0: a free port); with ``defer``, silent
    connections wait in the kernel about that many seconds (TCP_DEFER_ACCEPT).

    :raises OSError: with the address in its message (and the ones bound are closed).
    """
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    family, address = infos[0][0], str(infos[0][4][0])
    out: list[socket.socket] = []
    for wanted in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, wanted))
            _defer_accept(sock, defer)
            sock.listen(511)
        except OSError as exc:
            sock.close()
            for s in out:
                s.close()
            where = f"[{address}]:{wanted}" if ":" in address else f"{address}:{wanted}"
            hint = " (another process uses it: stop it, or choose another --port)" if exc.errno == 98 else ""
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}{hint}") from None
        out.append(sock)
    return out


def _bind_all(opts: ServeOptions) -> list[socket.socket]:
    """The main port and the extra ports: the ones asked for (each must be free), or by
    default the two after the main port, each skipped when it cannot be bound."""
    defer = opts.limits.idle_timeout
    if opts.extra_ports is not None:
        return bind_listeners(opts.host, [opts.port, *opts.extra_ports], defer=defer)
    listeners = bind_listeners(opts.host, [opts.port], defer=defer)
    main = listeners[0].getsockname()[1]
    for wanted in ([0, 0] if opts.port == 0 else [main + 1, main + 2]):
        try:
            listeners += bind_listeners(opts.host, [wanted], defer=defer)
        except OSError as exc:
            log.info("phpsess serve: no extra port %d (%s); pages fall back to one origin", wanted, exc.strerror)
    return listeners


class HTTPWorker(ScriptWorker):
    """A worker of ``phpsess serve``: one HTTP request per connection."""

    def __init__(self, ctx: WorkerContext, opts: ServeOptions, ports: Sequence[int]) -> None:
        super().__init__(ctx, opts.root, max_execution_time=opts.max_execution_time,
                         post_max_size=opts.post_max_size)
        self.opts = opts
        self.ports = list(ports)
        self.limits = dataclasses.replace(opts.limits, keep_body=opts.post_max_size or opts.limits.max_body)

    def handle(self, conn: _socket.socket) -> None:
        started = time.monotonic()
        try:
            client = conn.getpeername()
            server = conn.getsockname()
        except OSError:
            return
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head)
        request_line = "-"
        try:
            req = read_request(conn, h, self.limits)
            if req is None:
                return
        except HTTPError as exc:
            log.info('%s bad request: %d %s', client[0], exc.status, exc)
            self._answer(conn, h, _error_response(exc.status, str(exc)), head_only=False)
            return
        except ReadTimeout:
            log.info("%s dropped: no complete request within %.0f s", client[0], self.limits.read_timeout)
            return
        except OSError:
            return
        request_line = f"{req.method} {req.target} {req.version}"
        writer = ResponseWriter(conn, h, head_only=req.method == "HEAD", server=SERVER_SOFTWARE,
                                date=formatdate(usegmt=True), write_timeout=self.limits.write_timeout)
        times = self.begin()
        try:
            self._respond(req, writer, (client[0], client[1]), (server[0], server[1]))
            if not writer.started:
                writer.send_headers(500, [("Content-Type", "text/html; charset=UTF-8")])
            writer.finish()
        except HTTPError as exc:
            if not writer.sent_head:
                self._answer(conn, h, _error_response(exc.status, str(exc)), head_only=req.method == "HEAD")
        finally:
            self.end(times)
        if writer.broken:
            return
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if self.opts.access_log:
            log.info('%s "%s" %d %d %.3fs [pid %d]', client[0], _printable(request_line), writer.status,
                     writer.body_bytes, time.monotonic() - started, os.getpid())

    def _answer(self, conn: _socket.socket, h: h11.Connection, response: Response, *, head_only: bool) -> None:
        """A response the server makes itself (an error, a redirect, a listing)."""
        status, headers, body = response
        writer = ResponseWriter(conn, h, head_only=head_only, server=SERVER_SOFTWARE,
                                date=formatdate(usegmt=True), write_timeout=self.limits.write_timeout)
        try:
            writer.send_headers(status, headers)
            writer.write(body)
            writer.finish()
        except h11.LocalProtocolError:
            return
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _respond(self, req: HTTPRequest, writer: ResponseWriter, client: tuple[str, int],
                 server: tuple[str, int]) -> None:
        """Route one request: run the script, list, redirect, answer CORS, or 404."""
        target = req.target
        if target.startswith(("http://", "https://")):  # absolute-form
            parts = urllib.parse.urlsplit(target)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not target.startswith("/"):
            raise HTTPError(400, "bad request target")
        lowered = {n.lower(): v for n, v in req.headers}
        preflight = req.method == "OPTIONS" and "access-control-request-method" in lowered
        cors = cors_headers(lowered.get("origin"), lowered.get("host", ""), self.ports, preflight=preflight)
        if preflight:
            writer.send_headers(204, cors)
            return
        path = target.split("?", 1)[0]
        found = route(self.root, path)
        if found is None:
            raise HTTPError(404, "The requested URL was not found on this server.")
        if found.kind == "redirect":
            writer.send_headers(301, [("Location", found.script_name + target[len(path):]), *cors])
            return
        if found.kind == "listing":
            writer.send_headers(200, [("Content-Type", "text/html; charset=UTF-8"), *cors])
            writer.write(listing_page(found.filename, found.script_name))
            return
        environ = build_environ(
            method=req.method, target=target, version=req.version, headers=req.headers, route=found,
            root=self.root, client=client, server=server, ports=self.ports, body_length=req.body_length,
        )
        writer.extra = cors
        self.run_script(environ, req.body, req.body_length, writer.send_headers, writer.write)


def _printable(text: str) -> str:
    """``text`` with control characters escaped (it comes from a client)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def serve(
    root: str = "cgi-bin",
    port: int = 8080,
    host: str = "127.0.0.1",
    workers: int = 16,
    ini: str | None = None,
    *,
    extra_ports: Sequence[int] | None = None,
    access_log: bool = True,
    announce: Callable[[str], None] | None = None,
    options: ServeOptions | None = None,
    reexec: list[str] | None = None,
) -> None:
    """Run ``phpsess serve`` in the foreground until SIGTERM, SIGINT or SIGQUIT.

    Prints ``phpsess serve: http://127.0.0.1:8080/ (root /abs/root, 16 workers)``
    once listening.  Every worker is stopped before this returns.

    :param root: directory of the scripts (``cgi-bin``).
    :param port: main port; 0 picks a free one (printed).
    :param ini: a php.ini-syntax file whose ``session.*`` settings every request starts from.
    :param extra_ports: extra listening ports for pages that need more than 6 parallel requests
        (None: the two after ``port`` when free; ``[]``: none).
    :param announce: where the start line goes (default: stdout, flushed).
    :param options: everything at once (then ``root`` to ``extra_ports`` are ignored).
    :param reexec: the command line that starts this server again (SIGUSR2 reload).
    :raises OSError: the port cannot be bound, or ``root`` is not a directory.
    :raises ConfigError: ``ini`` holds a setting PHP would refuse.
    """
    opts = options or ServeOptions(root=root, port=port, host=host, workers=workers, extra_ports=extra_ports,
                                   access_log=access_log)
    if opts.workers < 1:
        raise ValueError("workers must be at least 1")
    if not os.path.isdir(opts.root):
        raise FileNotFoundError(2, f"the document root {opts.root!r} is not a directory (give --root DIR)")
    if ini is not None:
        from ..session.settings import from_ini_file, set_default_config

        set_default_config(from_ini_file(ini))
        os.environ["PHPSESS_INI"] = os.path.abspath(ini)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    listeners = inherited_listeners() or _bind_all(opts)
    ports = [s.getsockname()[1] for s in listeners]
    settings = PoolSettings(name="serve", pm="static", max_children=opts.workers, max_requests=opts.max_requests)
    arbiter = Arbiter(listeners, lambda ctx: HTTPWorker(ctx, opts, ports), settings,
                      title=f"phpsess: serve master process (port {ports[0]})", reexec=reexec, preload=preload)
    shown = f"[{opts.host}]" if ":" in opts.host else opts.host
    line = f"phpsess serve: http://{shown}:{ports[0]}/ (root {os.path.realpath(opts.root)}, {opts.workers} workers)"
    if announce is None:
        print(line, flush=True)
    else:
        announce(line)
    if len(ports) > 1:
        log.info("phpsess serve: parallel-request ports %s", ", ".join(map(str, ports[1:])))
    try:
        arbiter.run()
    finally:
        if os.getpid() == arbiter.master_pid:
            for sock in listeners:
                sock.close()
