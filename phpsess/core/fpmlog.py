"""php-fpm's texts for a pool: the status page, the access log line, the slow log entry. No I/O:
each takes the figures (and the clock) and returns text.

Formats and field names are php-fpm 8.2's (``fpm_status.c``, ``fpm_log.c``,
``fpm_php_trace.c``), compared with a real php-fpm in the tests, so that a monitoring
set up for php-fpm reads phpsess's pool unchanged.  phpsess adds two fields of its own
to each process of the full status: the session the request holds or waits for, and how
long it waited for its lock.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
import time
from typing import Iterable, Sequence

__all__ = [
    "PoolFigures",
    "ProcessFigures",
    "AccessRecord",
    "status_page",
    "access_line",
    "check_access_format",
    "slowlog_entry",
    "fpm_time",
    "log_time",
]


def fpm_time(ts: float) -> str:
    """php-fpm's date in the status page and access log: ``06/Dec/2026:01:39:20 +0000``."""
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(ts))


def log_time(ts: float) -> str:
    """php-fpm's date in its error and slow logs: ``06-Dec-2026 01:39:30``."""
    return time.strftime("%d-%b-%Y %H:%M:%S", time.localtime(ts))


@dataclasses.dataclass
class ProcessFigures:
    """One worker, as the full status lists it."""

    pid: int
    state: str
    start_time: float
    requests: int
    request_duration_us: int
    request_method: str
    request_uri: str
    content_length: int
    user: str
    script: str
    last_request_cpu: float  # percent of one CPU during the last request
    last_request_memory: int
    session: str = ""  # phpsess: the session held or waited for
    lock_wait_us: int = 0  # phpsess: how long the request waited for its session lock


@dataclasses.dataclass
class PoolFigures:
    """The pool, as the status page shows it."""

    pool: str
    process_manager: str
    start_time: float
    accepted_conn: int
    listen_queue: int
    max_listen_queue: int
    listen_queue_len: int
    idle_processes: int
    active_processes: int
    max_active_processes: int
    max_children_reached: int
    slow_requests: int
    processes: list[ProcessFigures] = dataclasses.field(default_factory=list)


_STATUS_HEADERS = [
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"),
]


def _pool_fields(p: PoolFigures, now: float, *, text_time: bool) -> list[tuple[str, object]]:
    return [
        ("pool", p.pool),
        ("process manager", p.process_manager),
        ("start time", fpm_time(p.start_time) if text_time else int(p.start_time)),
        ("start since", int(now - p.start_time)),
        ("accepted conn", p.accepted_conn),
        ("listen queue", p.listen_queue),
        ("max listen queue", p.max_listen_queue),
        ("listen queue len", p.listen_queue_len),
        ("idle processes", p.idle_processes),
        ("active processes", p.active_processes),
        ("total processes", p.idle_processes + p.active_processes),
        ("max active processes", p.max_active_processes),
        ("max children reached", p.max_children_reached),
        ("slow requests", p.slow_requests),
    ]


def _process_fields(w: ProcessFigures, now: float, *, text_time: bool) -> list[tuple[str, object]]:
    return [
        ("pid", w.pid),
        ("state", w.state),
        ("start time", fpm_time(w.start_time) if text_time else int(w.start_time)),
        ("start since", int(now - w.start_time)),
        ("requests", w.requests),
        ("request duration", w.request_duration_us),
        ("request method", w.request_method or "-"),
        ("request URI", w.request_uri or "-"),
        ("content length", w.content_length),
        ("user", w.user or "-"),
        ("script", w.script or "-"),
        ("last request cpu", f"{w.last_request_cpu:.2f}"),
        ("last request memory", w.last_request_memory),
        ("session", w.session or "-"),
        ("session lock wait", w.lock_wait_us),
    ]


def status_page(p: PoolFigures, query: str, *, now: float) -> tuple[list[tuple[str, str]], bytes]:
    """The status page for ``?query`` (``json``, ``xml``, ``html``, ``openmetrics``; ``full``
    adds the processes): (headers, body), as php-fpm answers it."""
    words = set(query.split("&"))
    full = "full" in words
    if "json" in words:
        return _status_json(p, now, full)
    if "xml" in words:
        return _status_xml(p, now, full)
    if "html" in words:
        return _status_html(p, now, full)
    if "openmetrics" in words:
        return _status_openmetrics(p, now)
    lines = [f"{k + ':':<22}{v}" for k, v in _pool_fields(p, now, text_time=True)]
    out = "\n".join(lines) + "\n"
    if full:
        for w in p.processes:
            out += "\n************************\n"
            out += "\n".join(f"{k + ':':<22}{v}" for k, v in _process_fields(w, now, text_time=True)) + "\n"
    return [*_STATUS_HEADERS, ("Content-type", "text/plain;charset=UTF-8")], out.encode()


def _json_value(v: object) -> str:
    if isinstance(v, str) and re.fullmatch(r"-?\d+\.\d\d", v):
        return v  # "last request cpu" is a number written with two decimals
    return json.dumps(v, ensure_ascii=False).replace("/", "\\/")


def _status_json(p: PoolFigures, now: float, full: bool) -> tuple[list[tuple[str, str]], bytes]:
    body = "{" + ",".join(f'"{k}":{_json_value(v)}' for k, v in _pool_fields(p, now, text_time=False))
    if full:
        procs = []
        for w in p.processes:
            fields = [(k.replace("request URI", "request uri"), v) for k, v in _process_fields(w, now, text_time=False)]
            procs.append("{" + ",".join(f'"{k}":{_json_value(v)}' for k, v in fields) + "}")
        body += ', "processes":[' + ",".join(procs) + "]"
    body += "}"
    return [*_STATUS_HEADERS, ("Content-Type", "application/json")], body.encode()


def _xml_name(k: str) -> str:
    return k.lower().replace(" ", "-")


def _status_xml(p: PoolFigures, now: float, full: bool) -> tuple[list[tuple[str, str]], bytes]:
    lines = ['<?xml version="1.0" ?>', "<status>"]
    lines += [f"<{_xml_name(k)}>{html.escape(str(v), quote=False)}</{_xml_name(k)}>"
              for k, v in _pool_fields(p, now, text_time=False)]
    if full:
        lines.append("<processes>")
        for w in p.processes:
            lines.append("<process>")
            lines += [f"<{_xml_name(k)}>{html.escape(str(v), quote=False)}</{_xml_name(k)}>"
                      for k, v in _process_fields(w, now, text_time=False)]
            lines.append("</process>")
        lines.append("</processes>")
    lines.append("</status>")
    return [*_STATUS_HEADERS, ("Content-type", "text/xml;charset=UTF-8")], ("\n".join(lines) + "\n").encode()


def _status_html(p: PoolFigures, now: float, full: bool) -> tuple[list[tuple[str, str]], bytes]:
    out = [
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">',
        "<head><title>PHP-FPM Status Page</title></head>",
        "<body>",
        "<table>",
    ]
    out += [f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in _pool_fields(p, now, text_time=True)]
    out.append("</table>")
    if full:
        keys = [k.replace("request URI", "request uri") for k, _ in _process_fields(ProcessFigures(0, "", 0, 0, 0, "", "", 0, "", "", 0, 0), now, text_time=True)]
        out.append('<table border="1">')
        out.append("<tr>" + "".join(f"<th>{k}</th>" for k in keys) + "</tr>")
        for w in p.processes:
            out.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for _k, v in _process_fields(w, now, text_time=True)) + "</tr>")
        out.append("</table>")
    out.append("</body></html>")
    return [*_STATUS_HEADERS, ("Content-type", "text/html;charset=UTF-8")], ("\n".join(out) + "\n").encode()


_OPENMETRICS = [
    ("up", "gauge", "Could pool {pool} using a {pm} PM on PHP-FPM be reached?", lambda p, now: 1),
    ("start_since", "counter", "The number of seconds since FPM has started.", lambda p, now: int(now - p.start_time)),
    ("accepted_connections", "counter", "The number of requests accepted by the pool.", lambda p, now: p.accepted_conn),
    ("listen_queue", "gauge", "The number of requests in the queue of pending connections.", lambda p, now: p.listen_queue),
    ("max_listen_queue", "counter", "The maximum number of requests in the queue of pending connections since FPM has started.", lambda p, now: p.max_listen_queue),
    ("listen_queue_length", "gauge", "The size of the socket queue of pending connections.", lambda p, now: p.listen_queue_len),
    ("idle_processes", "gauge", "The number of idle processes.", lambda p, now: p.idle_processes),
    ("active_processes", "gauge", "The number of active processes.", lambda p, now: p.active_processes),
    ("total_processes", "gauge", "The number of idle + active processes.", lambda p, now: p.idle_processes + p.active_processes),
    ("max_active_processes", "counter", "The maximum number of active processes since FPM has started.", lambda p, now: p.max_active_processes),
    ("max_children_reached", "counter", "The number of times, the process limit has been reached, when pm tries to start more children (works only for pm 'dynamic' and 'ondemand').", lambda p, now: p.max_children_reached),
    ("slow_requests", "counter", "The number of requests that exceeded your 'request_slowlog_timeout' value.", lambda p, now: p.slow_requests),
]


def _status_openmetrics(p: PoolFigures, now: float) -> tuple[list[tuple[str, str]], bytes]:
    out = []
    for name, kind, helptext, value in _OPENMETRICS:
        out.append(f"# HELP phpfpm_{name} {helptext.format(pool=p.pool, pm=p.process_manager)}")
        out.append(f"# TYPE phpfpm_{name} {kind}")
        out.append(f"phpfpm_{name} {value(p, now)}")  # type: ignore[no-untyped-call]
    out.append("# EOF")
    return (
        [*_STATUS_HEADERS, ("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        ("\n".join(out) + "\n").encode(),
    )


# -- the access log -------------------------------------------------------------------------


@dataclasses.dataclass
class AccessRecord:
    """What the access log can say of one request."""

    pool: str
    pid: int
    master_pid: int
    params: dict[str, str]  # the FastCGI params (CGI environment)
    status: int
    headers: Sequence[tuple[str, str]]
    started: float  # epoch
    duration: float  # seconds
    cpu_percent: float
    cpu_user: float
    cpu_system: float
    memory: int  # peak bytes
    content_length: int
    script: str
    client_ip: str = ""  # the FastCGI client's (nginx's) IP; empty on a unix socket


#: the head's default Content-type (not one the script set): php-fpm's ``%o`` does not see it
DEFAULT_CONTENT_TYPE = ("Content-type", "text/html; charset=UTF-8")

_SPEC = re.compile(r"%(?:\{([^}]*)\})?(.)", re.S)
_KNOWN = set("CdefflmMnopPqQrRstTu%")


def check_access_format(fmt: str) -> str | None:
    """What is wrong with an ``access.format`` (as php-fpm refuses it), or None."""
    for m in _SPEC.finditer(fmt):
        arg, spec = m.group(1), m.group(2)
        if spec not in _KNOWN:
            return f"'%{spec}' is not a known format specifier"
        if spec in ("e", "o") and not arg:
            return f"the name of the {'environment variable' if spec == 'e' else 'header'} must be set between embraces for %{spec}"
    return None


def access_line(fmt: str, r: AccessRecord, *, now: float) -> str:
    """One line of the access log, php-fpm's ``access.format`` filled in for ``r``."""

    def one(m: re.Match[str]) -> str:
        arg, spec = m.group(1), m.group(2)
        p = r.params
        if spec == "%":
            return "%"
        if spec == "C":
            if arg == "user":
                return f"{r.cpu_user:.2f}"
            if arg == "system":
                return f"{r.cpu_system:.2f}"
            return f"{r.cpu_percent:.2f}"
        if spec == "d":
            if arg in ("milliseconds", "milli", "mili"):
                return f"{r.duration * 1e3:.3f}"
            if arg in ("microseconds", "micro"):
                return f"{r.duration * 1e6:.0f}"
            return f"{r.duration:.3f}"
        if spec == "e":
            return p.get(arg or "", "-") or "-"
        if spec == "f":
            return r.script or "-"
        if spec == "l":
            return str(r.content_length)
        if spec == "m":
            return p.get("REQUEST_METHOD", "-") or "-"
        if spec == "M":
            div = {"kilobytes": 1 << 10, "kilo": 1 << 10, "megabytes": 1 << 20, "mega": 1 << 20}.get(arg or "", 1)
            return str(r.memory // div)
        if spec == "n":
            return r.pool
        if spec == "o":  # a header the script sent (case-sensitive name, as php-fpm's)
            for name, value in r.headers:
                if name == arg and (name, value) != DEFAULT_CONTENT_TYPE:
                    return value or "-"
            return "-"
        if spec == "p":
            return str(r.pid)
        if spec == "P":
            return str(r.master_pid)
        if spec == "q":
            return p.get("QUERY_STRING", "")
        if spec == "Q":
            return "?" if p.get("QUERY_STRING") else ""
        if spec == "r":
            uri = p.get("REQUEST_URI") or p.get("SCRIPT_NAME") or "-"
            return uri.split("?", 1)[0] or "-"
        if spec == "R":  # the FastCGI client, not REMOTE_ADDR
            return r.client_ip or "-"
        if spec == "s":
            return str(r.status)
        if spec == "t":
            return time.strftime(arg, time.localtime(r.started)) if arg else fpm_time(r.started)
        if spec == "T":
            return time.strftime(arg, time.localtime(now)) if arg else fpm_time(now)
        if spec == "u":
            return p.get("REMOTE_USER", "")
        return m.group(0)

    return _SPEC.sub(one, fmt)


# -- the slow log -------------------------------------------------------------------------------


def slowlog_entry(
    *,
    now: float,
    pool: str,
    pid: int,
    script: str,
    frames: Iterable[tuple[int, str, str, int]],
    session: str = "",
    lock: str = "",
    waiting: bool = False,
) -> str:
    """One slow log entry, as php-fpm writes it: the date, the pool, the pid, the script,
    then one line per frame, innermost first (``[0x…] func() file:line``).  phpsess adds a
    line on the session lock the request waits for (or holds)."""
    lines = ["", f"[{log_time(now)}]  [pool {pool}] pid {pid}", f"script_filename = {script or '-'}"]
    if session:
        what = "waiting for the lock of" if waiting else "holding the lock of"
        lines.append(f"session = {what} session {session}" + (f" ({lock})" if lock else ""))
    for address, function, filename, line in frames:
        lines.append(f"[0x{address:016x}] {function}() {filename}:{line}")
    return "\n".join(lines) + "\n"
