"""``phpsess fpm``: a FastCGI pool that runs script files per request, as php-fpm runs ``.php``
files, with php-fpm's configuration, controls and logs.  Does socket and file I/O (the
listening socket, the pid file, the logs); the processes are :mod:`phpsess.runtime.prefork`'s,
one connection :mod:`phpsess.runtime.fcgi_conn`'s.

What a worker does with a request, in order:

* ``pm.status_path`` and ``ping.path`` are answered by the worker itself (php-fpm's
  status page, from the pool's scoreboard; ``ping.response``);
* anything else runs the script ``SCRIPT_FILENAME`` names under the root, in a fresh
  request (:func:`phpsess.runtime.sapi.handle_request`), with PHP's limits: a body over
  ``post_max_size`` is dropped (PHP's warning, an empty ``$_POST``), the script gets
  ``max_execution_time`` seconds of CPU (then PHP's fatal error, a 500, the session
  written), and the request's time, CPU and memory go to the scoreboard, the access
  log (``access.format``) and, past ``request_slowlog_timeout``, its Python stack to the
  slow log.

:class:`FpmOptions` holds everything a pool is told; :func:`load_config` reads it from a
php-fpm configuration file (``--config``), and the command line overrides it.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import grp
import logging
import os
import pwd
import signal
import socket
import _socket
import stat
import struct
import subprocess
import sys
import time
from types import FrameType
from typing import Callable, Mapping

from ..core import fpmconf, fpmlog
from ..core.config import SessionConfig
from ..session.settings import default_config, set_default_config
from .cgi import disarm as _disarm_cgi
from .fcgi import FCGIRequest, ProtocolError, RequestReader
from .fcgi_conn import FlatResponse, ReadTimeout, serve_connection
from .prefork import Arbiter, PoolSettings, WorkerContext, inherited_listeners
from .scoreboard import WorkerState
from .script_worker import DEFAULT_MAX_EXECUTION_TIME, DEFAULT_POST_MAX_SIZE, RequestTimes, ScriptWorker, preload

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()

__all__ = ["FpmOptions", "FastCGIWorker", "load_config", "parse_listen", "open_listener", "serve_fpm", "ListenError"]

log = logging.getLogger("phpsess.fpm")


@dataclasses.dataclass
class FpmOptions:
    """Everything one pool is told: where it listens, what it runs, its limits and logs."""

    root: str
    listen: str
    pool: PoolSettings = dataclasses.field(default_factory=PoolSettings)
    listen_mode: int = 0o660
    listen_owner: str | None = None
    listen_group: str | None = None
    listen_backlog: int = 511
    status_path: str | None = None
    ping_path: str | None = None
    ping_response: str = "pong"
    access_log: str | None = None
    access_format: str = '%R - %u %t "%m %r" %s'
    slowlog: str | None = None
    #: PHP's max_execution_time: seconds of CPU per script (0: none)
    max_execution_time: float = DEFAULT_MAX_EXECUTION_TIME
    #: PHP's post_max_size: a bigger body is dropped (0: no bound)
    post_max_size: int = DEFAULT_POST_MAX_SIZE
    #: bytes of FastCGI params one request may have; more drops the connection
    max_params: int = 1 << 20
    #: seconds a connection may stay silent before a request, and for a whole request
    idle_timeout: float = 3.0
    read_timeout: float = 30.0
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    clear_env: bool = False
    chdir: str | None = None
    pid_file: str | None = None
    error_log: str | None = None
    config_file: str | None = None


# -- configuration ---------------------------------------------------------------------------


def load_config(path: str, pool_name: str | None = None, *, environ: Mapping[str, str] | None = None,
                warn: Callable[[str], None] | None = None) -> tuple[FpmOptions, SessionConfig]:
    """Read a php-fpm configuration file (``include`` resolved as php-fpm does) and return
    the pool's options and its session settings (``php_value[session.*]`` over the
    process-wide ones).  ``root`` comes from ``chdir`` or stays empty for ``--root``.

    :raises fpmconf.FpmConfigError: file, line and reason, for anything php-fpm would refuse.
    """
    env = os.environ if environ is None else environ
    warn = warn or (lambda m: log.warning("%s", m))
    entries = _read_file(path, env)
    base = os.path.dirname(os.path.abspath(path))
    seen = {os.path.abspath(path)}
    queue = [e for e in entries if e.section == "global" and e.key == "include"]
    while queue:
        inc = queue.pop(0)
        pattern = inc.value if os.path.isabs(inc.value) else os.path.join(base, inc.value)
        matches = sorted(glob.glob(pattern))
        if not matches and not glob.has_magic(pattern):
            raise fpmconf.FpmConfigError(inc.source, inc.line, f"unable to include {pattern}: no such file")
        for name in matches:
            if os.path.abspath(name) in seen:
                continue
            seen.add(os.path.abspath(name))
            more = _read_file(name, env)
            entries.extend(more)
            queue.extend(e for e in more if e.section == "global" and e.key == "include")
    conf = fpmconf.build_config(entries, warn, default_source=path)
    pool = conf.pool(pool_name)
    settings = PoolSettings(
        name=pool.name, pm=pool.pm, max_children=pool.pm_max_children, start_servers=pool.pm_start_servers,
        min_spare_servers=pool.pm_min_spare_servers, max_spare_servers=pool.pm_max_spare_servers,
        process_idle_timeout=pool.pm_process_idle_timeout, max_requests=pool.pm_max_requests,
        request_terminate_timeout=pool.request_terminate_timeout,
        request_slowlog_timeout=pool.request_slowlog_timeout if pool.slowlog else 0.0,
        user=pool.user, group=pool.group,
        graceful_timeout=conf.global_.process_control_timeout or 30.0,
    )
    if pool.access_format:
        problem = fpmlog.check_access_format(pool.access_format)
        if problem:
            e = pool.where.get("access.format")
            raise fpmconf.FpmConfigError(e.source if e else path, e.line if e else 0, f"[pool {pool.name}] wrong format for access.format: {problem}")
    opts = FpmOptions(
        root=pool.chdir or "", listen=pool.listen, pool=settings, listen_mode=pool.listen_mode,
        listen_owner=pool.listen_owner, listen_group=pool.listen_group, listen_backlog=pool.listen_backlog,
        status_path=pool.pm_status_path, ping_path=pool.ping_path, ping_response=pool.ping_response,
        access_log=pool.access_log, access_format=pool.access_format, slowlog=pool.slowlog,
        env=dict(pool.env), clear_env=pool.clear_env, chdir=pool.chdir,
        pid_file=conf.global_.pid, error_log=conf.global_.error_log, config_file=os.path.abspath(path),
    )
    session = default_config().copy()
    for admin, values in ((False, pool.php_values), (True, pool.php_admin_values)):
        kind = "php_admin_value" if admin else "php_value"
        for name, value in values.items():
            e = pool.where.get(f"{kind}[{name}]") or pool.where.get(f"{kind.replace('value', 'flag')}[{name}]")
            _apply_php_value(opts, session, name, value, e, warn)
    return opts, session


def _read_file(path: str, env: Mapping[str, str]) -> list[fpmconf.Located]:
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8", "surrogateescape")
    except OSError as exc:
        raise fpmconf.FpmConfigError(path, 0, f"cannot read the configuration file: {exc.strerror or exc}") from None
    return fpmconf.read_entries(text, path, env)


def _apply_php_value(opts: FpmOptions, session: SessionConfig, name: str, value: str,
                     where: fpmconf.Located | None, warn: Callable[[str], None]) -> None:
    source, line = (where.source, where.line) if where else (opts.config_file or "config", 0)
    if name.startswith("session."):
        try:
            session.set(name, value, startup=True, warn=warn)
        except Exception as exc:  # ConfigError: PHP refuses the value
            raise fpmconf.FpmConfigError(source, line, f"invalid value for {name}: {exc}") from None
        return
    if name == "max_execution_time":
        seconds = fpmconf.parse_duration(value)
        if seconds is None:
            raise fpmconf.FpmConfigError(source, line, f"invalid value for max_execution_time (\"{value}\")")
        opts.max_execution_time = seconds
    elif name == "post_max_size":
        size = fpmconf.parse_size(value)
        if size is None:
            raise fpmconf.FpmConfigError(source, line, f"invalid value for post_max_size (\"{value}\")")
        opts.post_max_size = size
    else:
        warn(f"[{source}:{line}] php_value {name} has no effect in phpsess fpm; ignored")


# -- the listening socket ------------------------------------------------------------------------


class ListenError(OSError):
    """The pool cannot listen where it is told; the message says where and what to do."""


def parse_listen(listen: str) -> str | tuple[str, int]:
    """``--listen``: a unix socket path (contains ``/``), ``HOST:PORT``, ``[V6]:PORT`` or a port.

    >>> parse_listen("127.0.0.1:9000")
    ('127.0.0.1', 9000)
    >>> parse_listen("/run/phpsess/fpm.sock")
    '/run/phpsess/fpm.sock'
    """
    if listen.startswith("unix:"):
        return listen[5:]
    if "/" in listen:
        return listen
    if listen.isdigit():
        return ("127.0.0.1", int(listen))
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen: expected a socket path or HOST:PORT, got {listen!r}")
    return (host.strip("[]") or "127.0.0.1", int(port))


def open_listener(opts: FpmOptions) -> socket.socket:
    """Bind and listen where ``opts.listen`` says; a unix socket gets ``listen.mode`` and,
    as root, ``listen.owner``/``listen.group``.

    :raises ListenError: with the address and what to do about it.
    """
    try:
        address = parse_listen(opts.listen)
    except ValueError as exc:
        raise ListenError(errno.EINVAL, str(exc)) from None
    backlog = socket.SOMAXCONN if opts.listen_backlog < 0 else max(1, opts.listen_backlog)
    if isinstance(address, str):
        directory = os.path.dirname(os.path.abspath(address)) or "/"
        if not os.path.isdir(directory):
            raise ListenError(errno.ENOENT, f"cannot listen on {address}: the directory {directory} does not exist "
                              f"(create it, e.g. mkdir -p {directory}, or choose another listen address)")
        if _unix_socket_in_use(address):
            raise ListenError(errno.EADDRINUSE, f"cannot listen on {address}: another process is listening there "
                              "(stop it, or choose another listen address)")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                if stat.S_ISSOCK(os.lstat(address).st_mode):
                    os.unlink(address)  # left behind by a pool that was killed
            except FileNotFoundError:
                pass
            sock.bind(address)
            os.chmod(address, opts.listen_mode)
            if os.geteuid() == 0 and (opts.listen_owner or opts.listen_group):
                uid = pwd.getpwnam(opts.listen_owner).pw_uid if opts.listen_owner else -1
                gid = grp.getgrnam(opts.listen_group).gr_gid if opts.listen_group else -1
                os.chown(address, uid, gid)
            sock.listen(backlog)
        except KeyError as exc:
            sock.close()
            raise ListenError(errno.EINVAL, f"cannot set the owner of {address}: no such user or group {exc}") from None
        except OSError as exc:
            sock.close()
            hint = " (check the directory's permissions, or run as a user who may write there)" \
                if exc.errno in (errno.EACCES, errno.EPERM) else ""
            raise ListenError(exc.errno, f"cannot listen on {address}: {exc.strerror}{hint}") from None
        return sock
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(exc.errno, f"cannot listen on {where}: the address is already in use by another "
                              "process (stop it, or choose another listen address)") from None
        if exc.errno == errno.EACCES:
            raise ListenError(exc.errno, f"cannot listen on {where}: permission denied (ports below 1024 need root)") from None
        raise ListenError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
    return sock


def _unix_socket_in_use(path: str) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
        except OSError:
            return False
        return True


def _listen_queue(sock: socket.socket) -> tuple[int, int]:
    """(queue now, queue length) of a TCP listening socket (TCP_INFO); (0, 0) otherwise."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0, 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0, 0
    # struct tcp_info: tcpi_unacked (the queue) and tcpi_sacked (its length) for a listener
    unacked, sacked = struct.unpack_from("II", info, 24)
    return unacked, sacked


# -- a worker ---------------------------------------------------------------------------------------


class LogFiles:
    """The pool's access log and slow log, opened by the master (before it forks and before
    the workers drop to ``user``), written by the workers through the inherited
    descriptors, reopened in place on SIGUSR1 (log rotation)."""

    def __init__(self, opts: FpmOptions) -> None:
        self.opts = opts
        self.access_fd = -1
        self.slow_fd = -1

    def open(self) -> None:
        """Open (or reopen, keeping the descriptor numbers) both files.

        :raises OSError: a file cannot be opened (the message names it).
        """
        self.access_fd = self._open(self.opts.access_log, self.access_fd, "access.log")
        self.slow_fd = self._open(self.opts.slowlog, self.slow_fd, "slowlog")

    @staticmethod
    def _open(path: str | None, current: int, what: str) -> int:
        if not path:
            return -1
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot open the {what} {path}: {exc.strerror}") from None
        if current < 0:
            return fd
        os.dup2(fd, current, inheritable=False)
        os.close(fd)
        return current

    def reopen(self) -> None:
        """SIGUSR1: reopen both files (a failure is logged; the old file stays in use)."""
        try:
            self.open()
        except OSError as exc:
            log.error("[pool %s] %s", self.opts.pool.name, exc.strerror)


class FastCGIWorker(ScriptWorker):
    """A worker of the pool: FastCGI connections, one at a time."""

    def __init__(self, ctx: WorkerContext, opts: FpmOptions, logs: LogFiles | None = None) -> None:
        super().__init__(ctx, opts.root, max_execution_time=opts.max_execution_time,
                         post_max_size=opts.post_max_size)
        self.opts = opts
        self.logs = logs or LogFiles(opts)
        self._pid = os.getpid()
        self._conn: _socket.socket | None = None

    # -- set-up -----------------------------------------------------------------------------------
    def setup(self) -> None:
        self._pid = os.getpid()
        opts = self.opts
        if opts.clear_env:
            for k in [k for k in os.environ if k not in ("PATH", "PYTHONPATH", "HOME", "LANG")]:
                del os.environ[k]
        os.environ.update(opts.env)
        if opts.chdir:
            os.chdir(opts.chdir)
        super().setup()
        signal.signal(signal.SIGUSR1, self._on_slow)

    # -- serving ------------------------------------------------------------------------------------
    def handle(self, conn: _socket.socket) -> None:
        opts = self.opts
        reader = RequestReader(max_params=opts.max_params, max_body=opts.post_max_size)
        self._conn = conn
        try:
            serve_connection(conn, self.respond, reader, idle_timeout=opts.idle_timeout,
                             read_timeout=opts.read_timeout, stop=self.ctx.quitting)
        except ReadTimeout:
            log.info("[pool %s] connection dropped: nothing (or not a whole request) received in time", opts.pool.name)
        except ProtocolError as exc:
            log.warning("[pool %s] connection dropped: %s", opts.pool.name, exc)

    def respond(self, req: FCGIRequest, resp: FlatResponse) -> None:
        """Answer one request: the status page, the ping, or a script."""
        opts = self.opts
        params = req.params
        script_name = params.get("SCRIPT_NAME", "")
        meter = self.meter
        times = meter.begin()
        if opts.status_path and script_name == opts.status_path:
            self._status(params.get("QUERY_STRING", ""), resp)
            script = ""
        elif opts.ping_path and script_name == opts.ping_path:
            resp.send_headers(200, [("Content-type", "text/plain;charset=UTF-8"), *_NO_CACHE])
            resp.write(opts.ping_response.encode())
            script = ""
        else:
            script = params.get("SCRIPT_FILENAME", "")
            meter.run_script(params, req.body, req.body_length, resp.send_headers, resp.write)
        meter.end(times)
        if self.logs.access_fd >= 0:
            self._access_line(req, resp, times, script)

    def _client_ip(self) -> str:
        """The FastCGI client's IP (nginx's, for a TCP listener): php-fpm's ``%R``; empty on
        a unix socket."""
        conn = self._conn
        if conn is None or conn.family not in (socket.AF_INET, socket.AF_INET6):
            return ""
        try:
            return str(conn.getpeername()[0])
        except OSError:
            return ""

    def _access_line(self, req: FCGIRequest, resp: FlatResponse, t: RequestTimes, script: str) -> None:
        d = t.duration
        record = fpmlog.AccessRecord(
            pool=self.opts.pool.name, pid=self._pid, master_pid=self.ctx.master_pid, params=req.params,
            status=resp.status, headers=resp.headers, started=t.started, duration=d,
            cpu_percent=t.cpu_percent,
            cpu_user=100.0 * t.cpu_user / d if d > 0 else 0.0,
            cpu_system=100.0 * t.cpu_system / d if d > 0 else 0.0,
            memory=t.memory, content_length=req.body_length, script=script,
            client_ip=self._client_ip() if "%R" in self.opts.access_format else "",
        )
        line = fpmlog.access_line(self.opts.access_format, record, now=time.time()) + "\n"
        try:
            os.write(self.logs.access_fd, line.encode("utf-8", "replace"))
        except OSError:
            pass

    def _status(self, query: str, resp: FlatResponse) -> None:
        board = self.ctx.board
        start, max_active, reached, slow, accepted_dead, _requests_dead = board.header()
        procs = []
        idle = active = 0
        accepted = accepted_dead
        now_mono = time.monotonic()
        for _slot, v in board.views():
            accepted += v.accepted
            if v.state == WorkerState.IDLE:
                idle += 1
            elif v.state in (WorkerState.READING, WorkerState.RUNNING, WorkerState.FINISHING):
                active += 1
            running = v.running_for(now_mono)
            duration = running if running else v.last_duration
            procs.append(fpmlog.ProcessFigures(
                pid=v.pid, state=v.state_name, start_time=v.started, requests=v.requests,
                request_duration_us=int(duration * 1e6), request_method=v.method, request_uri=v.uri,
                content_length=v.content_length, user=v.user, script=v.script,
                last_request_cpu=v.last_cpu, last_request_memory=v.last_memory,
                session=v.session, lock_wait_us=int(v.lock_wait * 1e6),
            ))
        queue, queue_len = _listen_queue(self.ctx.listeners[0]) if self.ctx.listeners else (0, 0)
        figures = fpmlog.PoolFigures(
            pool=self.opts.pool.name, process_manager=self.opts.pool.pm, start_time=start,
            accepted_conn=accepted, listen_queue=queue, max_listen_queue=queue, listen_queue_len=queue_len,
            idle_processes=idle, active_processes=active, max_active_processes=max(max_active, active),
            max_children_reached=reached, slow_requests=slow, processes=procs,
        )
        headers, body = fpmlog.status_page(figures, query, now=time.time())
        resp.send_headers(200, headers)
        resp.write(body)

    # -- the slow log -----------------------------------------------------------------------------------
    def _on_slow(self, signum: int, frame: FrameType | None) -> None:
        """SIGUSR1 from the master: this request runs past request_slowlog_timeout."""
        path = self.opts.slowlog
        if not path:
            return
        view = self.ctx.board.read(self.ctx.slot_index)
        frames = []
        f = frame
        while f is not None:
            frames.append((id(f), f.f_code.co_name, f.f_code.co_filename, f.f_lineno))
            f = f.f_back
        entry = fpmlog.slowlog_entry(
            now=time.time(), pool=self.opts.pool.name, pid=self._pid, script=view.script, frames=frames,
            session=view.session, lock=view.lock, waiting=view.waiting_lock,
        )
        if self.logs.slow_fd < 0:
            return
        try:
            os.write(self.logs.slow_fd, entry.encode("utf-8", "replace"))
        except OSError as exc:
            log.error("[pool %s] cannot write the slow log %s: %s", self.opts.pool.name, path, exc.strerror)
        self.ctx.slot.slow_logged()

_NO_CACHE = [("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
             ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0")]


# -- the pool --------------------------------------------------------------------------------------


def serve_fpm(opts: FpmOptions, *, session: SessionConfig | None = None, reexec: list[str] | None = None,
              check: Callable[[], str | None] | None = None,
              on_ready: Callable[[Arbiter], None] | None = None) -> int:
    """Run the pool until a stop signal (``phpsess fpm``); returns the exit code.

    :param session: the pool's session settings (default: the process-wide ones).
    :param reexec: the command line that starts this pool again (SIGUSR2 reload).
    :param check: tells, before a reload, what is wrong with the new configuration.
    """
    if not opts.root or not os.path.isdir(opts.root):
        log.error("the document root %r is not a directory (give --root DIR, or chdir in the pool)", opts.root)
        return 2
    if session is not None:
        set_default_config(session)
    inherited = inherited_listeners()
    if inherited is not None:
        listeners = inherited
    else:
        try:
            listeners = [open_listener(opts)]
        except ListenError as exc:
            log.error("%s", exc.strerror or exc)
            return 2
    if opts.pid_file:
        try:
            with open(opts.pid_file, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        except OSError as exc:
            log.error("cannot write the pid file %s: %s", opts.pid_file, exc.strerror)
            return 2
    logs = LogFiles(opts)
    try:
        logs.open()
    except OSError as exc:
        log.error("%s (create its directory, or fix the path in the configuration)", exc.strerror)
        return 2

    def reopen_logs() -> None:
        _reopen_logs()
        logs.reopen()

    arbiter = Arbiter(
        listeners, lambda ctx: FastCGIWorker(ctx, opts, logs), opts.pool,
        title=f"phpsess: master process ({opts.config_file or opts.listen})",
        reexec=reexec, check=check, preload=preload, reopen_logs=reopen_logs,
    )
    from ..compiled import build_name

    log.info("phpsess fpm: pool %s, %s, root %s, %s", opts.pool.name, opts.listen, os.path.realpath(opts.root),
             build_name())
    if on_ready is not None:
        on_ready(arbiter)
    try:
        return arbiter.run()
    finally:
        if os.getpid() == arbiter.master_pid:
            if isinstance(parse_listen(opts.listen), str) and os.environ.get("PHPSESS_LISTEN_FDS") is None:
                try:
                    os.unlink(opts.listen)
                except OSError:
                    pass
            if opts.pid_file:
                try:
                    os.unlink(opts.pid_file)
                except OSError:
                    pass


def _reopen_logs() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                handler.close()
                handler.stream = handler._open()
            finally:
                handler.release()


def test_config(opts: FpmOptions, session: SessionConfig) -> str | None:
    """What ``phpsess fpm --test`` checks beyond parsing: the root, the listen address,
    the users, the log files' directories, the save handler; a complaint or None."""
    if not os.path.isdir(opts.root):
        return f"the document root {opts.root!r} is not a directory (give --root DIR, or chdir in the pool)"
    try:
        address = parse_listen(opts.listen)
    except ValueError as exc:
        return str(exc)
    if isinstance(address, str) and not os.path.isdir(os.path.dirname(os.path.abspath(address)) or "/"):
        return f"cannot listen on {address}: the directory {os.path.dirname(os.path.abspath(address))} does not exist"
    for what, name, lookup in (("user", opts.pool.user, pwd.getpwnam), ("group", opts.pool.group, grp.getgrnam),
                               ("listen.owner", opts.listen_owner, pwd.getpwnam),
                               ("listen.group", opts.listen_group, grp.getgrnam)):
        if name:
            try:
                lookup(name)
            except KeyError:
                return f"{what}: there is no {what.split('.')[-1].replace('owner', 'user')} named {name!r}"
    for what, path in (("access.log", opts.access_log), ("slowlog", opts.slowlog), ("error_log", opts.error_log),
                       ("pid", opts.pid_file)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path)) or "/"):
            return f"{what}: the directory of {path} does not exist"
    from ..storage.base import handler_class

    try:
        handler_class(session.save_handler)
    except (KeyError, ImportError) as exc:
        return f"session.save_handler {session.save_handler!r} cannot be loaded: {exc}"
    preload()
    return None


def self_check(argv: list[str]) -> Callable[[], str | None]:
    """What the master runs before a reload: ``phpsess fpm ... --test`` in a new process
    (the new code, the new configuration); its complaint, or None when all is well."""

    def check() -> str | None:
        proc = subprocess.run([sys.executable, "-m", "phpsess", *argv, "--test"], capture_output=True,
                              text=True, timeout=60)
        if proc.returncode == 0:
            return None
        return (proc.stderr or proc.stdout).strip().splitlines()[-1] if (proc.stderr or proc.stdout).strip() else f"exit {proc.returncode}"

    return check
