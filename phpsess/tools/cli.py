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
    p.add_argument("--save-handler", metavar="NAME",
                   help="override session.save_handler (files, redis, rediscluster, memcached)")


def build_parser() -> argparse.ArgumentParser:
    """The ``phpsess`` argument parser (all subcommands)."""
    from ..version import __version__

    parser = argparse.ArgumentParser(
        prog="phpsess", description="PHP's session runtime for Python scripts: serve them, inspect sessions."
    )
    parser.add_argument("--version", action="version", version=f"phpsess {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "fpm",
        help="FastCGI worker pool behind nginx (like php-fpm)",
        description="Run scripts under --root for a FastCGI web server (nginx fastcgi_pass), "
        "in a pool of pre-forked worker processes.",
    )
    p.add_argument(
        "--listen", required=True, metavar="ADDR", help="unix socket path, or HOST:PORT (e.g. 127.0.0.1:9000)"
    )
    p.add_argument("--root", required=True, metavar="DIR", help="document root; only scripts under it run")
    p.add_argument("--workers", type=_positive, default=4, metavar="N", help="worker processes (default 4)")
    p.add_argument(
        "--max-requests",
        type=_non_negative,
        default=0,
        metavar="M",
        help="recycle a worker after M requests (default 0: never)",
    )
    p.add_argument(
        "--listen-mode", type=_octal, default=0o660, metavar="MODE", help="unix socket permissions (default 0660)"
    )
    _add_ini(p)
    p.set_defaults(func=_cmd_fpm)

    p = sub.add_parser(
        "serve",
        help="a small HTTP server running the scripts (development)",
        description="Serve the scripts under --root over HTTP, without nginx.",
    )
    p.add_argument("--root", default="cgi-bin", metavar="DIR", help="document root (default cgi-bin)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--workers", type=_positive, default=16, metavar="N", help="worker processes (default 16)")
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


def _cmd_fpm(args: argparse.Namespace) -> int:
    _load_ini(args.ini)
    from ..runtime.fpm import serve_fpm

    return serve_fpm(
        args.listen,
        args.root,
        workers=args.workers,
        max_requests=args.max_requests,
        listen_mode=args.listen_mode,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..runtime import server

    server.serve(root=args.root, port=args.port, host=args.host, workers=args.workers, ini=args.ini)
    return 0


def _cmd_tool(args: argparse.Namespace) -> int:
    from . import admin as tools

    config = _load_ini(args.ini)
    kwargs = {
        k: v for k, v in vars(args).items() if k not in ("func", "tool", "command", "verbose", "ini")
    }
    result = getattr(tools, args.tool)(config=config, **kwargs)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``phpsess`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
