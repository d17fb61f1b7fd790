"""The ``phpsess`` command: ``fpm``, ``serve``, ``show``, ``gc``, ``locks``, ``destroy``.
Parses arguments, sets up logging and the process-wide settings (``--ini``), then hands
over to the runtime (:mod:`phpsess.runtime.fpm`, :mod:`phpsess.runtime.server`) or the tools.

Each command imports its implementation only when it runs, so ``phpsess gc`` does
not load flup and ``phpsess fpm`` does not load the tools.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Sequence

from ..runtime.cgi import disarm as _disarm_cgi

__all__ = ["main", "build_parser"]

log = logging.getLogger("phpsess")

# an entry point of its own: a CGI host does not make this process its request
_disarm_cgi()


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an octal mode such as 0660, got {text!r}") from None


def _port_list(text: str) -> list[int]:
    """An argparse type: ``"8081,8082"`` -> [8081, 8082]; ``"none"`` -> []."""
    if text.strip().lower() in ("none", ""):
        return []
    try:
        ports = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ports such as 8081,8082 (or none), got {text!r}") from None
    if any(not 0 <= p <= 65535 for p in ports):
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, got {text!r}")
    return ports


def _at_least(minimum: int) -> Any:
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected a number of at least {minimum}, got {n}")
        return n

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a duration as php-fpm writes them (``30``, ``30s``, ``5m``, ``1h``)."""
    from ..core.fpmconf import parse_duration

    value = parse_duration(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30, 30s, 5m or 1h, got {text!r}")
    return value


def _size(text: str) -> int:
    """An argparse type: a size as PHP writes them (``8M``, ``512K``, ``1G``, bytes)."""
    from ..core.fpmconf import parse_size

    value = parse_size(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 8M, 512K or 1G, got {text!r}")
    return value


_positive = _at_least(1)
_non_negative = _at_least(0)


def _add_ini(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ini",
        metavar="FILE",
        help="php.ini-syntax file with session.* settings (default: $PHPSESS_INI, else PHP's defaults)",
    )


def _add_save_path(p: argparse.ArgumentParser) -> None:
    p.add_argument("--save-path", metavar="PATH", help="override session.save_path")


class _VersionAction(argparse._VersionAction):
    """``--version``: the version and the build (compiled or plain), found only when asked
    (it imports the compiled modules)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from ..compiled import build_name

        self.version = f"{self.version}, {build_name()}"
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> argparse.ArgumentParser:
    """The ``phpsess`` argument parser (all subcommands)."""
    from ..version import __version__

    parser = argparse.ArgumentParser(
        prog="phpsess", description="PHP's session runtime for Python scripts: serve them, inspect sessions."
    )
    parser.add_argument("--version", action=_VersionAction, version=f"phpsess {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "fpm",
        help="FastCGI worker pool behind nginx (like php-fpm)",
        description="Run scripts under --root for a FastCGI web server (nginx fastcgi_pass), "
        "in a pool of pre-forked worker processes.  --config reads a php-fpm configuration "
        "(a pool file such as pool.d/www.conf, or a whole php-fpm.conf); the options below "
        "override it.",
    )
    p.add_argument("-y", "--config", metavar="FILE", help="php-fpm configuration file (pool file or php-fpm.conf)")
    p.add_argument("--pool", metavar="NAME", help="which pool of --config to run (default: its only pool)")
    p.add_argument("-t", "--test", action="store_true",
                   help="check the configuration (and that the code imports), then exit")
    p.add_argument("--listen", metavar="ADDR", help="unix socket path, or HOST:PORT (e.g. 127.0.0.1:9000)")
    p.add_argument("--root", metavar="DIR", help="document root; only scripts under it run")
    p.add_argument("--workers", type=_positive, metavar="N",
                   help="a static pool of N worker processes (pm = static, pm.max_children = N; default 4)")
    p.add_argument("--pm", choices=("static", "dynamic", "ondemand"), help="process manager")
    p.add_argument("--max-children", type=_positive, metavar="N", help="pm.max_children")
    p.add_argument("--start-servers", type=_positive, metavar="N", help="pm.start_servers (dynamic)")
    p.add_argument("--min-spare-servers", type=_positive, metavar="N", help="pm.min_spare_servers (dynamic)")
    p.add_argument("--max-spare-servers", type=_positive, metavar="N", help="pm.max_spare_servers (dynamic)")
    p.add_argument("--process-idle-timeout", type=_seconds, metavar="SECONDS",
                   help="pm.process_idle_timeout (ondemand; default 10s)")
    p.add_argument("--max-requests", type=_non_negative, metavar="M",
                   help="pm.max_requests: recycle a worker after M requests (default 0: never)")
    p.add_argument("--max-memory", type=_size, metavar="SIZE",
                   help="recycle a worker after a request that took its memory past SIZE (e.g. 256M)")
    p.add_argument("--max-execution-time", type=_seconds, metavar="SECONDS",
                   help="PHP's max_execution_time: CPU seconds per script (default 30, 0: none)")
    p.add_argument("--post-max-size", type=_size, metavar="SIZE", help="PHP's post_max_size (default 8M)")
    p.add_argument("--terminate-timeout", type=_seconds, metavar="SECONDS",
                   help="request_terminate_timeout: kill a worker whose request runs longer (default 0: never)")
    p.add_argument("--idle-timeout", type=_seconds, metavar="SECONDS",
                   help="drop a FastCGI connection silent this long before its request (default 3)")
    p.add_argument("--read-timeout", type=_seconds, metavar="SECONDS",
                   help="drop a FastCGI connection whose request is not whole after this long (default 30)")
    p.add_argument("--slowlog", metavar="FILE", help="slowlog: where slow requests' stacks are written")
    p.add_argument("--slowlog-timeout", type=_seconds, metavar="SECONDS", help="request_slowlog_timeout")
    p.add_argument("--status-path", metavar="URI", help="pm.status_path, e.g. /status")
    p.add_argument("--ping-path", metavar="URI", help="ping.path, e.g. /ping")
    p.add_argument("--access-log", metavar="FILE", help="access.log")
    p.add_argument("--access-format", metavar="FORMAT", help="access.format (php-fpm's syntax)")
    p.add_argument("--user", metavar="USER", help="run the workers as USER (when started as root)")
    p.add_argument("--group", metavar="GROUP", help="run the workers as GROUP (when started as root)")
    p.add_argument("--listen-owner", metavar="USER", help="listen.owner of the unix socket (as root)")
    p.add_argument("--listen-group", metavar="GROUP", help="listen.group of the unix socket (as root)")
    p.add_argument("--listen-mode", type=_octal, metavar="MODE", help="listen.mode of the unix socket (default 0660)")
    p.add_argument("--pid", metavar="FILE", help="write the master's pid to FILE")
    p.add_argument("--error-log", metavar="FILE", help="write the pool's log to FILE (default: stderr)")
    _add_ini(p)
    p.set_defaults(func=_cmd_fpm)

    p = sub.add_parser(
        "serve",
        help="a small HTTP server running the scripts (development)",
        description="Serve the scripts under --root over HTTP, without nginx.",
    )
    p.add_argument("--root", metavar="DIR",
                   help="document root (default: ./cgi-bin if there is one, else the demo shipped with phpsess)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--extra-ports", type=_port_list, metavar="LIST",
                   help="more ports for pages that want over 6 requests in flight, e.g. 8081,8082, or "
                        "'none' (default: the two after --port, when free)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--workers", type=_positive, default=16, metavar="N", help="worker processes (default 16)")
    p.add_argument("--max-requests", type=_non_negative, default=0, metavar="M",
                   help="recycle a worker after M requests (default 0: never)")
    p.add_argument("--max-execution-time", type=_seconds, metavar="SECONDS",
                   help="PHP's max_execution_time: CPU seconds per script (default 30, 0: none)")
    p.add_argument("--post-max-size", type=_size, metavar="SIZE", help="PHP's post_max_size (default 8M)")
    p.add_argument("--idle-timeout", type=_seconds, metavar="SECONDS",
                   help="drop a connection that sends nothing for SECONDS (default 5)")
    p.add_argument("--read-timeout", type=_seconds, metavar="SECONDS",
                   help="drop a client that has not sent its whole request after SECONDS (default 30)")
    p.add_argument("--max-body", type=_size, metavar="SIZE",
                   help="answer 413 to a request body over SIZE (default 64M)")
    _add_ini(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("show", help="print a stored session", description="Print a stored session's data.")
    p.add_argument("sid", metavar="SID", help="session id, or the path of a sess_* file")
    p.add_argument("--raw", action="store_true", help="print the stored bytes as they are")
    p.add_argument("--json", action="store_true", help="print the decoded data as JSON")
    p.add_argument("--serialize-handler", metavar="NAME", help="override session.serialize_handler")
    _add_save_path(p)
    _add_ini(p)
    p.set_defaults(func=_cmd_tool, tool="show")

    p = sub.add_parser(
        "gc",
        help="delete expired sessions",
        description="Delete sessions older than session.gc_maxlifetime (as PHP's gc does).",
    )
    p.add_argument(
        "--maxlifetime", type=_non_negative, metavar="SECONDS", help="override session.gc_maxlifetime"
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    _add_save_path(p)
    _add_ini(p)
    p.set_defaults(func=_cmd_tool, tool="gc")

    p = sub.add_parser(
        "locks", help="list locked sessions", description="List sessions whose lock is held, and by whom."
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_save_path(p)
    _add_ini(p)
    p.set_defaults(func=_cmd_tool, tool="locks")

    p = sub.add_parser("destroy", help="delete sessions", description="Delete the given sessions.")
    p.add_argument("sids", nargs="+", metavar="SID", help="session ids")
    _add_save_path(p)
    _add_ini(p)
    p.set_defaults(func=_cmd_tool, tool="destroy")
    return parser


def _load_ini(path: str | None) -> Any:
    """Apply ``--ini`` process-wide (and for child processes through ``$PHPSESS_INI``)."""
    from ..session.settings import from_ini_file
    from ..session.settings import default_config, set_default_config

    if path:
        path = os.path.abspath(path)
        cfg = from_ini_file(path)
        set_default_config(cfg)
        os.environ["PHPSESS_INI"] = path
        return cfg
    return default_config()


def fpm_options(args: argparse.Namespace) -> tuple[Any, Any]:
    """The pool ``phpsess fpm`` was asked for: ``--config`` (when given), then the options.

    :raises fpmconf.FpmConfigError: a configuration php-fpm would refuse (file, line, why).
    :raises ValueError: options that do not make a pool (the message says which).
    """
    from ..runtime.fpm import FpmOptions, load_config
    from ..session.settings import default_config

    if args.config:
        opts, session = load_config(args.config, args.pool)
    else:
        if args.pool:
            raise ValueError("--pool needs --config")
        opts, session = FpmOptions(root="", listen=""), default_config().copy()
        opts.pool.pm = "static"
        opts.pool.max_children = 4
    pool = opts.pool
    if args.workers is not None:
        pool.pm, pool.max_children = "static", args.workers
    for flag, attr in (("pm", "pm"), ("max_children", "max_children"), ("start_servers", "start_servers"),
                       ("min_spare_servers", "min_spare_servers"), ("max_spare_servers", "max_spare_servers"),
                       ("process_idle_timeout", "process_idle_timeout"), ("max_requests", "max_requests"),
                       ("max_memory", "max_memory"), ("terminate_timeout", "request_terminate_timeout"),
                       ("user", "user"), ("group", "group")):
        value = getattr(args, flag)
        if value is not None:
            setattr(pool, attr, value)
    for flag, attr in (("listen", "listen"), ("root", "root"), ("listen_owner", "listen_owner"),
                       ("listen_group", "listen_group"), ("listen_mode", "listen_mode"),
                       ("status_path", "status_path"), ("ping_path", "ping_path"), ("access_log", "access_log"),
                       ("access_format", "access_format"), ("slowlog", "slowlog"),
                       ("max_execution_time", "max_execution_time"), ("post_max_size", "post_max_size"),
                       ("pid", "pid_file"), ("error_log", "error_log"), ("idle_timeout", "idle_timeout"),
                       ("read_timeout", "read_timeout")):
        value = getattr(args, flag)
        if value is not None:
            setattr(opts, attr, value)
    if args.slowlog_timeout is not None:
        pool.request_slowlog_timeout = args.slowlog_timeout
    if pool.request_slowlog_timeout and not opts.slowlog:
        pool.request_slowlog_timeout = 0.0  # php-fpm: no slowlog file, no slow log
    if args.access_format is not None:
        from ..core.fpmlog import check_access_format

        problem = check_access_format(args.access_format)
        if problem:
            raise ValueError(f"--access-format: {problem}")
    if not opts.listen:
        raise ValueError("no listen address: give --listen ADDR (or listen = ... in the pool's configuration)")
    if not opts.root:
        raise ValueError("no document root: give --root DIR (or chdir = ... in the pool's configuration)")
    if pool.pm == "dynamic":
        if pool.min_spare_servers > pool.max_spare_servers:
            raise ValueError(f"pm.min_spare_servers ({pool.min_spare_servers}) must not be greater than "
                             f"pm.max_spare_servers ({pool.max_spare_servers})")
        if not pool.min_spare_servers <= pool.start_servers <= pool.max_spare_servers:
            raise ValueError(f"pm.start_servers ({pool.start_servers}) must be between pm.min_spare_servers "
                             f"({pool.min_spare_servers}) and pm.max_spare_servers ({pool.max_spare_servers})")
        if pool.max_spare_servers > pool.max_children:
            raise ValueError(f"pm.max_spare_servers ({pool.max_spare_servers}) must not be greater than "
                             f"pm.max_children ({pool.max_children})")
    return opts, session


def _cmd_fpm(args: argparse.Namespace) -> int:
    _load_ini(args.ini)
    from ..core.fpmconf import FpmConfigError
    from ..runtime import fpm

    try:
        opts, session = fpm_options(args)
    except FpmConfigError as exc:
        log.error("%s", exc)
        return 78  # EX_CONFIG, as php-fpm
    except ValueError as exc:
        log.error("%s", exc)
        return 78
    if opts.error_log:
        _log_to_file(opts.error_log)
    if args.test:
        problem = fpm.test_config(opts, session)
        if problem:
            log.error("%s", problem)
            print(f"phpsess fpm: {problem}", file=sys.stderr)
            return 78
        where = args.config or "the command line"
        print(f"phpsess fpm: configuration of {where} test is successful", file=sys.stderr)
        return 0
    argv = [a for a in args.argv if a not in ("-t", "--test")]
    reexec = [sys.executable, "-m", "phpsess", *argv]
    return fpm.serve_fpm(opts, session=session, reexec=reexec, check=fpm.self_check(argv))


def _log_to_file(path: str) -> None:
    """Send the pool's log to ``path`` (``error_log``), reopened on SIGUSR1."""
    root = logging.getLogger()
    try:
        handler = logging.FileHandler(path, delay=False)
    except OSError as exc:
        log.error("cannot open the error log %s: %s (logging to stderr)", path, exc.strerror)
        return
    for old in list(root.handlers):
        if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
            handler.setFormatter(old.formatter)
            root.removeHandler(old)
    root.addHandler(handler)


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..runtime import server

    from .demo import default_root

    opts = server.ServeOptions(root=args.root or default_root(), port=args.port, host=args.host,
                               workers=args.workers, max_requests=args.max_requests, extra_ports=args.extra_ports)
    if args.max_execution_time is not None:
        opts.max_execution_time = args.max_execution_time
    if args.post_max_size is not None:
        opts.post_max_size = args.post_max_size
    for flag, attr in (("idle_timeout", "idle_timeout"), ("read_timeout", "read_timeout"), ("max_body", "max_body")):
        if getattr(args, flag) is not None:
            setattr(opts.limits, attr, getattr(args, flag))
    server.serve(ini=args.ini, options=opts, reexec=[sys.executable, "-m", "phpsess", *args.argv])
    return 0


def _cmd_tool(args: argparse.Namespace) -> int:
    from . import admin as tools

    config = _load_ini(args.ini)
    kwargs = {
        k: v for k, v in vars(args).items() if k not in ("func", "tool", "command", "verbose", "ini", "argv")
    }
    result = getattr(tools, args.tool)(config=config, **kwargs)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phpsess`` console script; returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    level = logging.WARNING - 10 * min(int(args.verbose), 2)
    if args.command in ("fpm", "serve"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from ..errors import SessionError

        if isinstance(exc, (SessionError, OSError)):
            print(f"phpsess {args.command}: {exc}", file=sys.stderr)
            return 1
        raise
