"""PHP's error display and logging (main/main.c: php_error_cb) for the request being served.
Writes to the response (display_errors), to stderr or the ``error_log`` file (log_errors).

A diagnostic of PHP's API (:class:`~phpsess.errors.PHPWarning` and its subclasses, raised
as Python warnings by :mod:`phpsess.php`) is shown as PHP shows it, every time, attributed
to the script's file and line, and only if ``error_reporting`` includes its level:

* ``display_errors = On``: into the output (``<br />\\n<b>Warning</b>:  msg in <b>f</b> on
  line <b>n</b><br />`` with ``html_errors``, else ``\\nWarning: msg in f on line n\\n``);
* ``log_errors = On``: ``PHP Warning:  msg in f on line n`` on stderr, or appended to the
  ``error_log`` file with PHP's ``[06-Dec-2026 02:19:44 UTC]`` time stamp.  In the pools
  (``phpsess fpm``, ``phpsess serve``) every logged line carries the time, the request
  and the session id.

An uncaught exception is PHP's fatal error ``Uncaught ValueError: msg in f:n`` with a
PHP-style stack trace; logged, it is followed by the Python traceback.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from types import TracebackType
from typing import IO, Any, TextIO

from ..core.engine import E_DEPRECATED, E_ERROR, E_NOTICE, E_WARNING, LEVEL_NAMES
from ..errors import PHPDeprecated, PHPNotice, PHPWarning
from ..session.context import active_request
from ..session.request import Request

__all__ = [
    "report",
    "report_uncaught",
    "report_fatal",
    "uncaught_text",
    "install_warning_display",
    "show_php_warning",
    "level_of",
]

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PKG_RELATIVE = "phpsess" + os.sep


def level_of(category: type[Warning]) -> int:
    """The PHP error level of a diagnostic category."""
    if issubclass(category, PHPDeprecated):
        return E_DEPRECATED
    if issubclass(category, PHPNotice):
        return E_NOTICE
    return E_WARNING


def _timestamp(now: float) -> str:
    # main.c php_log_err_with_severity: "[%d-%b-%Y %H:%M:%S %Z]", date.timezone (UTC by default)
    return time.strftime("[%d-%b-%Y %H:%M:%S UTC]", time.gmtime(now))


def _context(req: Request) -> str:
    env = req.environ
    uri = env.get("REQUEST_URI") or env.get("SCRIPT_NAME") or ""
    parts = [f'request "{env.get("REQUEST_METHOD", "GET")} {uri}"']
    if req.has_session:
        sid = req.session.id
        if sid:
            parts.append(f"session {sid}")
    return " (" + ", ".join(parts) + ")"


def _log(req: Request, text: str, extra: str = "") -> None:
    """log_errors: one entry on stderr or in ``error_log``."""
    target = str(req.engine.value("error_log") or "")
    context = req.log_context
    line = f"PHP {text}"
    if context:
        line = f"{_timestamp(req.clock())} {line}{_context(req)}"
    if extra:
        line = f"{line}\n{extra.rstrip()}"
    if target and target != "syslog":
        if not context:
            line = f"{_timestamp(req.clock())} {line}"
        try:
            with open(target, "a", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(line + "\n")
            return
        except OSError:
            pass  # PHP falls back to the SAPI's log (stderr)
    out: IO[str] | None = sys.stderr
    if out is None:
        return
    try:
        out.write(line + "\n")
        out.flush()
    except (OSError, ValueError):
        pass


def _display(req: Request, kind: str, message: str, where: str, line: int) -> None:
    mode = req.engine.value("display_errors")
    if mode == 2:  # display_errors = stderr
        try:
            sys.stderr.write(f"{kind}: {message} in {where} on line {line}\n")
        except (OSError, ValueError, AttributeError):
            pass
        return
    if req.engine.value("html_errors"):
        # the message as it is: PHP 8.2 does not escape it [obs php-cgi]
        text = (f"<br />\n<b>{kind}</b>:  {message} in <b>{where}</b> "
                f"on line <b>{line}</b><br />\n")
    else:
        text = f"\n{kind}: {message} in {where} on line {line}\n"
    req.write(text.encode("utf-8", "surrogateescape"))


def report(req: Request, level: int, message: str, filename: str, lineno: int) -> None:
    """One PHP diagnostic of ``level`` for ``req``: displayed and/or logged as its settings say."""
    if not req.engine.value("error_reporting") & level:
        return
    kind = LEVEL_NAMES.get(level, "Warning")
    if req.engine.value("display_errors"):
        _display(req, kind, message, filename, lineno)
    if req.engine.value("log_errors"):
        _log(req, f"{kind}:  {message} in {filename} on line {lineno}")


def _own(filename: str) -> bool:
    return filename.startswith(_PKG_DIR) or filename.startswith(_PKG_RELATIVE) or filename.startswith("<frozen")


def _frames(tb: TracebackType | None) -> list[tuple[str, int, str]]:
    """(file, line, function) of the script's frames, outermost first."""
    out = []
    while tb is not None:
        code = tb.tb_frame.f_code
        if not _own(code.co_filename):
            out.append((code.co_filename, tb.tb_lineno, code.co_name))
        tb = tb.tb_next
    return out


def _class_name(exc: BaseException) -> str:
    name = getattr(exc, "php_class", None)
    return str(name) if name else type(exc).__name__


def uncaught_text(exc: BaseException) -> tuple[str, str, int]:
    """PHP's text for an uncaught exception (``Uncaught E: msg in f:n``, the stack trace,
    ``thrown in``) without the ``in f on line n`` tail; and that file and line."""
    frames = _frames(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.msg}", exc.filename, exc.lineno or 0
    if not frames:
        frames = [("Unknown", 0, "<module>")]
    where, line, _ = frames[-1]
    trace = []
    for i, j in enumerate(range(len(frames) - 1, 0, -1)):
        caller = frames[j - 1]
        trace.append(f"#{i} {caller[0]}({caller[1]}): {frames[j][2]}()")
    trace.append(f"#{len(trace)} {{main}}")
    text = f"Uncaught {_class_name(exc)}: {exc} in {where}:{line}\nStack trace:\n" + "\n".join(trace)
    return text + "\n  thrown", where, line


def report_uncaught(req: Request, exc: BaseException) -> None:
    """PHP's fatal error for an exception the script did not catch: status 500 when
    ``display_errors`` is off and headers are not sent (main.c php_error_cb), the text
    displayed and/or logged (the log entry ends with the Python traceback)."""
    text, where, line = uncaught_text(exc)
    kind = "Parse error" if isinstance(exc, SyntaxError) else LEVEL_NAMES[E_ERROR]
    display = req.engine.value("display_errors")
    if not display and not req.headers_sent and req.status == 200:
        req.status = 500
    if not req.engine.value("error_reporting") & E_ERROR:
        return
    if display:
        _display(req, kind, text, where, line)
    if req.engine.value("log_errors"):
        tb = "".join(traceback.format_exception(type(exc), exc, _script_tb(exc.__traceback__)))
        _log(req, f"{kind}:  {text} in {where} on line {line}", tb)


def report_fatal(req: Request, message: str, filename: str, lineno: int) -> None:
    """A PHP fatal error that is not an exception (``Maximum execution time of 30 seconds
    exceeded``): the 500 as for :func:`report_uncaught`, the text displayed and/or logged."""
    if not req.engine.value("display_errors") and not req.headers_sent and req.status == 200:
        req.status = 500
    report(req, E_ERROR, message, filename, lineno)


def _script_tb(tb: TracebackType | None) -> TracebackType | None:
    while tb is not None and _own(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


_previous_showwarning: Any = None


def show_php_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     file: TextIO | None = None, line: str | None = None) -> None:
    """``warnings.showwarning`` while :func:`install_warning_display` is in force: a
    warning of a served request shown as PHP shows its diagnostics, others as before."""
    req = active_request()
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    recording = impl is not None and impl is not _ORIGINAL_IMPL  # inside catch_warnings(record=True)
    if req is not None and not req.cli and not recording and issubclass(category, PHPWarning):
        report(req, level_of(category), str(message), filename, lineno)
        return
    if recording and impl is not None:
        impl(warnings.WarningMessage(message, category, filename, lineno, file, line))
        return
    _previous_showwarning(message, category, filename, lineno, file, line)


_ORIGINAL_IMPL = getattr(warnings, "_showwarnmsg_impl", None)


def install_warning_display() -> None:
    """Show PHP's diagnostics as PHP does (:func:`report`) during served requests, unless
    the program installed its own ``warnings.showwarning``.  Idempotent."""
    global _previous_showwarning
    current = warnings.showwarning
    if current is show_php_warning:
        return
    if current is not getattr(warnings, "_showwarning_orig", current):
        return  # someone else displays warnings: leave theirs
    _previous_showwarning = current
    warnings.showwarning = show_php_warning
