"""Running a script file for one request, as php-fpm runs a ``.php`` file.  Reads script
files (stat + read, compiled code cached), and, with ``process_state``, sets the
process-wide CGI view of the request (``os.environ``, ``sys.stdin``, ``sys.argv``, cwd).

A script is a plain Python file that reads like the PHP page it replaces::

    import phpsess
    phpsess.session_start()
    phpsess.SESSION["n"] = phpsess.SESSION.get("n", 0) + 1
    print("n =", phpsess.SESSION["n"])

:func:`run_script` executes it in a fresh globals dict (``__name__ ==
"__main__"``); :func:`handle_request` does a whole request (find the script
under the document root or answer 404, make the :class:`~phpsess.session.request.Request`,
run it, PHP's request shutdown, PHP's default ``Content-type``).  Both the
FastCGI pool (``phpsess fpm``) and ``phpsess serve`` use it.
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import _signal
import signal
import stat
import sys
import types
import warnings
from types import FrameType
from typing import Any, Callable, Final, Iterator, Mapping

from ..errors import MemoryLimitExceeded
from ..core.config import SessionConfig
from ..core.engine import EngineConfig
from ..core.http import reason_phrase
from ..session.context import active_request, request_context
from ..session.request import HeadersSink, LockMonitor, Request
from ..storage import registry
from . import envwatch
from .diagnostics import install_warning_display, report_fatal, report_uncaught, show_php_warning
from .output import OutputProxy, install_output_proxy

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "NOT_FOUND_BODY",
    "compile_script",
    "clear_cache",
    "run_script",
    "resolve_script",
    "finalize_headers",
    "cgi_head",
    "handle_request",
    "process_state",
    "set_request_environ",
    "reset_environ",
    "end_request_environ",
]

log: Final = logging.getLogger(__name__)

#: PHP's ``default_mimetype`` + ``default_charset``, sent when the script set no Content-type
#: (``main/SAPI.c: sapi_send_headers`` adds it last, spelled ``Content-type``) [obs php-cgi]
DEFAULT_CONTENT_TYPE: Final[tuple[str, str]] = ("Content-type", "text/html; charset=UTF-8")

#: the body php-fpm answers when SCRIPT_FILENAME names no script ("Primary script unknown")
NOT_FOUND_BODY: Final = b"File not found.\n"

# path -> (st_mtime_ns, st_size, code)
_code_cache: Final[dict[str, tuple[int, int, types.CodeType]]] = {}
_root_cache: Final[dict[str, str]] = {}


_resolved: Final[dict[tuple[str, str], tuple[str, tuple[int, int, int, int]]]] = {}
_stat_of: Final[dict[str, os.stat_result]] = {}


def compile_script(path: str) -> types.CodeType:
    """Return the compiled code of the script at ``path``.

    Cached by (path, mtime_ns, size): a changed file is read and compiled again,
    as opcache does with ``validate_timestamps=1``.

    :raises OSError: the file cannot be read.
    :raises SyntaxError: the file is not valid Python.
    """
    st = _stat_of.pop(path, None) or os.stat(path)  # resolve_script's stat of this request, if any
    hit = _code_cache.get(path)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
        return hit[2]
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        source = f.read()
    code = compile(source, path, "exec", dont_inherit=True)
    _code_cache[path] = (st.st_mtime_ns, st.st_size, code)
    return code


def clear_cache() -> None:
    """Forget every compiled script (the next request of each re-reads its file)."""
    _code_cache.clear()
    _root_cache.clear()


#: phpsess's own code: where the time limit does not strike
_PKG_PREFIX: Final = os.path.dirname(os.path.dirname(__file__))

#: the file names this module's frames carry (compiled by mypyc: the relative source path)
_OWN_FILES: Final = frozenset({__file__, os.path.join("phpsess", "runtime", "sapi.py")})


def _fatal_error_status(request: Request) -> None:
    """PHP's fatal error with ``display_errors=0``: 500, but only if headers are not sent
    yet and the status is still 200 (``main/main.c: php_error_cb``) [obs php-cgi]."""
    if not request.headers_sent and request.status == 200:
        request.status = 500


class _MainModule:
    """``with _MainModule(path) as module:`` a fresh ``__main__`` module for one script.

    On exit the previous ``__main__`` comes back and, with ``clear``, the script's
    globals are dropped (they form reference cycles with its functions).  Exit only
    after the request shutdown: shutdown functions defined by the script still use
    its globals.
    """

    def __init__(self, path: str, clear: bool = True) -> None:
        self.module = types.ModuleType("__main__")
        g = self.module.__dict__
        g["__file__"] = path
        g["__builtins__"] = builtins
        g["__cached__"] = None
        self.clear = clear

    def __enter__(self) -> types.ModuleType:
        self._before = sys.modules.get("__main__")
        sys.modules["__main__"] = self.module
        return self.module

    def __exit__(self, *exc: object) -> None:
        if sys.modules.get("__main__") is self.module:
            if self._before is not None:
                sys.modules["__main__"] = self._before
            else:
                del sys.modules["__main__"]
        if self.clear:
            self.module.__dict__.clear()


class ExecutionTimeExceeded(BaseException):
    """PHP's fatal error ``Maximum execution time of N seconds exceeded``: raised in the
    script when it has used ``max_execution_time`` seconds of CPU (a BaseException, so
    that the script's own ``except Exception`` cannot swallow it, as PHP's cannot)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Maximum execution time of {seconds:g} second{'s' if seconds != 1 else ''} exceeded")
        self.seconds = seconds


_time_limit: Final = [0.0]  # the limit in force for the script now running (0: none)


def _on_time_limit(signum: int, frame: FrameType | None) -> None:
    """SIGPROF (ITIMER_PROF, CPU time, as PHP's on Linux): the script's time is up.

    Raised only in the script's own code: if phpsess's code is running (writing a
    session...), the timer fires again 10 ms of CPU later, as PHP waits for a safe point.
    """
    seconds = _time_limit[0]
    if not seconds:
        return
    if frame is not None and frame.f_code.co_filename.startswith(_PKG_PREFIX):
        signal.setitimer(signal.ITIMER_PROF, 0.01)
        return
    _time_limit[0] = 0.0
    raise ExecutionTimeExceeded(seconds)


# bound once, as Final names (phpsess.compiled: "module-level names"): every request uses them
_SIGPROF: Final = signal.SIGPROF
_ITIMER_PROF: Final = signal.ITIMER_PROF
_getsignal: Final = _signal.getsignal  # (signal.getsignal makes an enum)
_setitimer: Final = signal.setitimer


def _arm_time_limit(seconds: float) -> None:
    if _getsignal(_SIGPROF) is not _on_time_limit:
        signal.signal(_SIGPROF, _on_time_limit)
    _time_limit[0] = seconds
    _setitimer(_ITIMER_PROF, seconds)


def _disarm_time_limit() -> None:
    # the timer is left running (one system call less per request): the next request's
    # arming replaces it, and should it fire first, the handler sees no limit in force
    _time_limit[0] = 0.0


def _exec(path: str, request: Request, module: types.ModuleType, time_limit: float = 0.0) -> None:
    """Run the script in ``module``'s globals; PHP's exit and fatal-error semantics, and
    PHP's ``max_execution_time`` (``time_limit`` seconds of CPU, 0: none)."""
    try:
        code = compile_script(path)
        if time_limit > 0:
            _arm_time_limit(time_limit)
        try:
            exec(code, module.__dict__)
        finally:
            if time_limit > 0:
                _disarm_time_limit()
    except SystemExit as exited:
        script_exit(request, exited)  # PHP's exit: a normal end of the script
    except (ExecutionTimeExceeded, MemoryLimitExceeded) as exceeded:
        # PHP's fatal error: 500, the message in the log; the request shutdown still runs
        # (shutdown functions, the session written), as PHP's does.  (Each clause its own
        # name: mypyc gives a name one type per function, so a shared "exc" would make
        # the other clauses raise TypeError.)
        where = _script_line(exceeded)
        report_fatal(request, str(exceeded), where[0], where[1])
    except Exception as exc:
        report_uncaught(request, exc)
    except BaseException:
        _fatal_error_status(request)
        raise


def script_exit(request: Request, exc: SystemExit) -> None:
    """PHP's ``exit``/``die`` as ``sys.exit()`` or ``raise SystemExit`` spell it: a string is
    printed (``die("Access denied")``), a number is the exit status; the script ends normally."""
    code = exc.code
    if isinstance(code, str):
        request.write(code.encode("utf-8", "surrogateescape"))


def _script_line(exc: BaseException) -> tuple[str, int]:
    """The script's file and line that was running when ``exc`` was raised."""
    where = ("Unknown", 0)
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        # (compiled modules' frames carry their relative path, "phpsess/...")
        if not filename.startswith((_PKG_PREFIX, "phpsess" + os.sep)) and filename not in _OWN_FILES:
            where = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return where


def run_script(path: str, request: Request) -> None:
    """Execute the script file at ``path`` for ``request``.

    The script runs with ``__name__ == "__main__"`` and ``__file__`` set, in a
    fresh globals dict (a temporary ``__main__`` module), with ``request`` as the
    current request.  ``sys.exit()`` ends the script normally (exit code
    ignored, status unchanged, like PHP's ``exit``).  An exception is PHP's fatal
    error: status 500 if headers are not sent yet (and the script did not set
    another status), the traceback on stderr.  It does not run the request
    shutdown; the caller's :class:`~phpsess.session.request.request_context` does (so the
    session is written after an exception too, as PHP does).

    :raises KeyboardInterrupt: and other non-``Exception`` errors, after setting 500.
    """
    with _MainModule(path, clear=False) as module:
        if _current_or_none() is request:
            _exec(path, request, module)
        else:
            with request_context(request, shutdown=False):
                _exec(path, request, module)


def _current_or_none() -> Request | None:
    return active_request()


def resolve_script(environ: Mapping[str, str], root: str) -> str | None:
    """The real path of the script a request names, or None when it must not run.

    The script is ``SCRIPT_FILENAME`` (nginx: ``$document_root$fastcgi_script_name``),
    else ``root`` + ``SCRIPT_NAME``.  It runs only if its real path (symlinks
    resolved) is a regular ``.py`` file inside the real path of ``root``.
    """
    name = environ.get("SCRIPT_FILENAME") or ""
    if not name:
        script_name = environ.get("SCRIPT_NAME") or ""
        if not script_name:
            return None
        name = os.path.join(root, script_name.lstrip("/"))
    if "\0" in name:
        return None
    try:
        st = os.stat(name)
    except (OSError, ValueError):
        return None
    key = (name, root)
    hit = _resolved.get(key)
    sig = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    if hit is not None and hit[1] == sig:
        _stat_of[hit[0]] = st
        return hit[0]
    real_root = _root_cache.get(root)
    if real_root is None:
        real_root = _root_cache[root] = os.path.realpath(root).rstrip(os.sep) + os.sep
    real = _real_file(name)
    if real is None or not real.startswith(real_root) or not real.endswith(".py"):
        return None
    # the same file (dev, inode, mtime, size) as last time: the same real path
    _resolved[key] = (real, sig)
    _stat_of[real] = st
    return real


_PROC_FD: Final = "/proc/self/fd/"
_use_proc: Final = os.path.isdir(_PROC_FD)


def _real_file(name: str) -> str | None:
    """The real path of the regular file ``name`` (None: missing, unreadable, not a file).

    On Linux: open it and ask /proc which file that is (4 system calls, and the
    kernel's answer); elsewhere :func:`os.path.realpath`.
    """
    if _use_proc:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            real = os.readlink(_PROC_FD + str(fd))
        except OSError:
            return None
        finally:
            os.close(fd)
        return real if real.startswith("/") and not real.endswith(" (deleted)") else None
    real = os.path.realpath(name)
    return real if os.path.isfile(real) else None


def finalize_headers(status: int, headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]]]:
    """The status and header list as PHP's SAPI sends them.

    A ``Status:`` header line (``header("Status: 404 Not Found")``) sets the status
    and is removed; PHP's default ``Content-type: text/html; charset=UTF-8`` is
    appended when no Content-Type was set.  ``X-Powered-By`` is not sent
    (as with ``expose_php=0``).
    """
    out: list[tuple[str, str]] = []
    has_type = False
    for name, value in headers:
        low = name.lower()
        if low == "status":
            code = value.strip()[:3]
            if code.isdigit():
                status = int(code)
            continue
        if low == "content-type":
            has_type = True
        out.append((name, value))
    if not has_type:
        out.append(DEFAULT_CONTENT_TYPE)
    return status, out


def cgi_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    """The CGI response head: ``Status: 200 OK``, the header lines, a blank line (CRLF).

    Header text is encoded as UTF-8 (with surrogateescape), the bytes PHP would send.
    """
    reason = reason_phrase(status)
    lines = [f"Status: {status} {reason}" if reason else f"Status: {status}"]
    lines.extend(f"{n}: {v}" for n, v in headers)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


# os.environ keeps its values encoded in a private dict (``_data``); updating that dict
# directly (not the C environment: see _put) is several times cheaper than going through
# os.environ's mapping methods.  Most CGI variables are the same from one request to the
# next (SERVER_*, DOCUMENT_ROOT, HTTP_HOST...), so they are not taken out after each
# request: the next request changes only what differs and removes what it lacks.
# Snapshots tell who changed the environment: a script (between the start and the end
# of its request: everything goes back to the worker's own environment) or the worker
# itself (between requests: that becomes the worker's own environment).
_environ_data: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)
if not isinstance(_environ_data, dict) or any(not isinstance(k, bytes) for k in list(_environ_data)[:1]):
    _environ_data = None
_base_env: dict[bytes, bytes] | None = None  # the worker's own environment
_applied: Final[dict[str, str]] = {}  # the request variables in the environment now
_at_start: dict[bytes, bytes] = {}  # the environment as a request started
_at_end: dict[bytes, bytes] | None = None  # the environment as the last request ended
#: os.environ notes its own changes (envwatch): the snapshots above are not needed
_watched = False


def _encode_var(k: str, v: str) -> tuple[bytes, bytes] | None:
    if not k or "=" in k or "\0" in k or "\0" in v:
        return None  # (the same test on the str: UTF-8 encodes "=" and NUL as themselves only)
    return k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape")


def _env_now() -> Mapping[bytes, bytes]:
    """The environment as it is, to compare with a snapshot (no copy where possible)."""
    return _environ_data if _environ_data is not None else _env_bytes()


def _env_bytes() -> dict[bytes, bytes]:
    if _environ_data is not None:
        return dict(_environ_data)
    return {k.encode("utf-8", "surrogateescape"): v.encode("utf-8", "surrogateescape") for k, v in os.environ.items()}


def _put(kb: bytes, vb: bytes | None) -> None:
    data = _environ_data
    if data is not None:
        # os.environ only, not the C environment: glibc never frees a replaced putenv()
        # value (a leak per distinct cookie), and php-fpm's child processes do not see
        # the request's variables either
        if vb is None:
            data.pop(kb, None)
        else:
            data[kb] = vb
        return
    k = kb.decode("utf-8", "surrogateescape")
    if vb is None:
        os.environ.pop(k, None)
    else:
        os.environ[k] = vb.decode("utf-8", "surrogateescape")


def reset_environ() -> None:
    """Give ``os.environ`` back the worker's own variables."""
    global _at_end
    _applied.clear()
    base = _base_env
    if base is None:
        return
    now = _env_bytes()
    for kb in now:
        if kb not in base:
            _put(kb, None)
    for kb, vb in base.items():
        if now.get(kb) != vb:
            _put(kb, vb)
    _at_end = _env_bytes()


_ENV_CHANGED: Final = envwatch.CHANGED


def _take_env_changed() -> bool:
    """:func:`envwatch.take_changed`, compiled (it runs twice a request)."""
    changed = _ENV_CHANGED[0]
    _ENV_CHANGED[0] = False
    return changed


def set_request_environ(environ: Mapping[str, str]) -> None:
    """Make ``os.environ`` the worker's own environment with ``environ`` on top.

    Variables an earlier request set and this one lacks get the worker's value
    back (or disappear).  Only ``os.environ`` changes: as under php-fpm, child
    processes see the worker's own environment.
    Pair each call with :func:`end_request_environ`.
    """
    global _base_env, _at_start, _watched
    data = _environ_data
    if data is not None and _watched:
        # os.environ notes its changes (envwatch): no snapshots to compare
        if _base_env is None:
            _base_env = _env_bytes()
            _take_env_changed()
        elif _take_env_changed():
            # changed between requests, by the worker itself: its own environment now
            _fold_into_base(_env_bytes(), _expected_env())
    elif _base_env is None:
        _base_env = _env_bytes()
        _watched = data is not None and envwatch.watch()
        _take_env_changed()
    elif _at_end is not None and _env_now() != _at_end:
        _fold_into_base(_env_bytes(), _at_end)
    if data is None:  # not CPython: the plain way
        reset_environ()
        for k, v in environ.items():
            if isinstance(v, str) and _encode_var(k, v) is not None:
                os.environ[k] = v
        _at_start = _env_bytes()
        return
    _apply_request_vars(environ if isinstance(environ, dict) else dict(environ), data, _base_env)
    if not _watched:
        _at_start = dict(data)


def _apply_request_vars(environ: dict[str, str], data: dict[bytes, bytes], base: dict[bytes, bytes]) -> None:
    """Put ``environ`` into ``os.environ``'s dict ``data``: only what differs from what is
    applied already (most CGI variables stay the same from one request to the next); the
    variables of the last request that this one lacks get the worker's value back."""
    applied = _applied
    for k in [k for k in applied if k not in environ]:
        del applied[k]
        kb = k.encode("utf-8", "surrogateescape")
        _put(kb, base.get(kb))
    for k, v in environ.items():
        if applied.get(k) == v or not isinstance(v, str):
            continue
        enc = _encode_var(k, v)
        if enc is None:
            continue
        kb, vb = enc
        if data.get(kb) != vb:
            data[kb] = vb  # os.environ only (see _put)
        applied[k] = v


def end_request_environ() -> None:
    """A request ended: undo whatever its script did to ``os.environ``.

    The request's own variables stay until the next :func:`set_request_environ`
    (or :func:`reset_environ`).
    """
    global _at_end
    if _watched:
        if _take_env_changed():
            reset_environ()  # the script changed the environment: start from the worker's own
            _take_env_changed()
        return
    if _env_now() != _at_start:
        reset_environ()  # the script changed the environment: start from the worker's own
        _at_end = _env_bytes()
    else:
        _at_end = _at_start  # unchanged: the same snapshot (nothing mutates it)


def _expected_env() -> dict[bytes, bytes]:
    """The environment as :func:`set_request_environ` left it: the worker's own with the
    request's variables on top."""
    assert _base_env is not None
    out = dict(_base_env)
    for k, v in _applied.items():
        enc = _encode_var(k, v)
        if enc is not None:
            out[enc[0]] = enc[1]
    return out


def _fold_into_base(now: Mapping[bytes, bytes], before: Mapping[bytes, bytes]) -> None:
    """The worker changed its environment between requests (``before`` -> ``now``): those
    changes are its own environment from now on."""
    base = _base_env
    assert base is not None
    for kb in set(now) | set(before):
        if now.get(kb) != before.get(kb):
            if kb in now:
                base[kb] = now[kb]
            else:
                base.pop(kb, None)


class _LazyStdin:
    """The request body as ``sys.stdin``, its text wrapper built on first use."""

    __slots__ = ("_body", "_io")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._io: io.TextIOWrapper | None = None

    def _wrapper(self) -> io.TextIOWrapper:
        if self._io is None:
            self._io = io.TextIOWrapper(io.BytesIO(self._body), encoding="utf-8", errors="surrogateescape")
        return self._io

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapper(), name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._wrapper())


def _dirname(path: str) -> str:
    """:func:`os.path.dirname` (POSIX) of ``path``, without its Python-level call."""
    head = path[: path.rfind("/") + 1]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head


class process_state:
    """``with process_state(environ, body, script):`` the CGI view of one request.

    Sets ``sys.stdin`` (the body), ``sys.argv`` (``[script]``) and ``sys.path[0]``
    (the script's directory, as ``python script.py`` has it), all restored on
    exit; ``os.environ`` (the request's CGI variables over the worker's own, see
    :func:`set_request_environ`) and the working directory (the script's
    directory, as php-cgi and php-fpm ``chdir``) are left as they are: the next
    request sets its own, and :func:`reset_environ` puts the environment back.
    Process-wide: only for runtimes that serve one request per process at a
    time (the FastCGI pool, a pre-forked server), never from threads.
    """

    def __init__(self, environ: Mapping[str, str], body: bytes, script: str) -> None:
        self.environ = environ
        self.body = body
        self.script = script

    def __enter__(self) -> None:
        set_request_environ(self.environ)
        self._stdin = sys.stdin
        sys.stdin = _LazyStdin(self.body)
        self._argv = sys.argv
        sys.argv = [self.script]
        d = self._dir = _dirname(self.script)
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = ""
        if d and d != cwd:
            try:
                os.chdir(d)
            except OSError:
                pass
        sys.path.insert(0, d)

    def __exit__(self, *exc: object) -> None:
        end_request_environ()
        sys.stdin = self._stdin
        sys.argv = self._argv
        d = self._dir
        if sys.path and sys.path[0] == d:
            del sys.path[0]
        else:
            try:
                sys.path.remove(d)
            except ValueError:
                pass


def handle_request(
    environ: Mapping[str, str],
    body: bytes,
    root: str,
    send_headers: HeadersSink,
    write_body: Callable[[bytes], None],
    *,
    process_globals: bool = True,
    config: SessionConfig | None = None,
    time_limit: float = 0.0,
    lock_monitor: LockMonitor | None = None,
    engine: EngineConfig | None = None,
) -> Request | None:
    """Serve one request: run the script ``environ`` names under ``root``, as php-fpm does;
    return the finished :class:`~phpsess.session.request.Request` (None for a 404).

    ``send_headers(status, headers)`` is called exactly once, before the first
    ``write_body(bytes)``; the headers are final (:func:`finalize_headers`:
    ``Status:`` lines applied, default Content-type added).  A script that is
    missing, outside ``root`` (after resolving symlinks) or not a ``.py`` file is
    never executed: 404 ``File not found.``, like php-fpm.  The session is
    written and unlocked on every exit path of the script.  ``sys.stdout`` becomes
    an :class:`~phpsess.session.request.OutputProxy` (once), so ``print()`` reaches the request.

    :param environ: the CGI variables (FastCGI params, or a WSGI environ).
    :param body: the request body (``$_POST``, and ``sys.stdin`` for CGI-style scripts).
    :param process_globals: also set ``os.environ``/``sys.stdin``/``sys.argv``/cwd for the
        request (:class:`process_state`); pass False from a threaded server.
    :param config: the settings the request starts from (default: the process-wide
        :func:`~phpsess.session.settings.default_config`).
    :param time_limit: PHP's ``max_execution_time``: seconds of CPU the script may use
        (0: no limit); past it, PHP's fatal error, a 500, and the session written.
    :param lock_monitor: told when the request waits for or holds a session lock
        (the pool's status page and slow log).
    :param engine: the PHP settings outside ``session.*`` (default: the process-wide
        :func:`~phpsess.session.settings.default_engine`).
    """
    # print() goes to the current request, PHP's diagnostics shown as PHP shows them
    # (both idempotent: looked at here first, one Python call less each per request)
    if type(sys.stdout) is not OutputProxy:
        install_output_proxy()
    if warnings.showwarning is not show_php_warning:
        install_warning_display()
    path = resolve_script(environ, root)
    if path is None:
        # php-fpm: "Primary script unknown"
        log.warning("primary script unknown: %r (root %s)", environ.get("SCRIPT_FILENAME", ""), root)
        send_headers(404, [DEFAULT_CONTENT_TYPE])
        write_body(NOT_FOUND_BODY)
        return None

    def sink(status: int, headers: list[tuple[str, str]]) -> None:
        send_headers(*finalize_headers(status, headers))

    env = environ  # Request copies it
    if not env.get("SCRIPT_FILENAME"):
        env = {**environ, "SCRIPT_FILENAME": path}  # found through SCRIPT_NAME
    request = Request(environ=env, config=config, body=body, send_headers=sink, write_body=write_body,
                      engine=engine)
    request.lock_monitor = lock_monitor
    request.log_context = True  # a pool's log: each error says when, which request, which session
    request.on_fatal = lambda exc: report_uncaught(request, exc)
    request.included_files.append(path)
    # phpsess locks names this request beside the locks it takes
    registry.set_request(env.get("REQUEST_METHOD", ""), env.get("REQUEST_URI", "") or env.get("SCRIPT_NAME", ""), path)
    state = process_state(env, body, path) if process_globals else None
    if state is not None:
        state.__enter__()
    try:
        with _MainModule(path) as module:
            with request_context(request):
                _exec(path, request, module, time_limit)
    except SystemExit:
        pass  # exit() in a shutdown function: the rest of the shutdown already ran
    except Exception as exc:
        # a shutdown function (or the session write) failed: PHP's fatal error at shutdown
        report_uncaught(request, exc)
    finally:
        if not request.headers_sent:
            request.send_headers()
        if state is not None:
            state.__exit__(None, None, None)
        request.end_response()  # no reference cycle outlives the request
    return request

