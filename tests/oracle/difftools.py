"""Differential harness: run one scenario as PHP (real ``php-cgi``) and as phpsess (``python3
script.py`` under the same CGI environment), normalise, compare. Runs subprocesses, writes
scripts and session files under a temporary directory.

A :class:`Scenario` is a short sequence of :class:`Step` requests.  Each step has a PHP body and
a Python body (a tiny prelude giving ``out()`` and a warning printer is added to both); the
session cookie returned by one step is sent with the next, as a browser would.  After every step
the harness records the response (status, headers, body) and the session directory (names,
bytes, and whether each file was created, rewritten, only touched or left alone).

Normalisation makes the two sides comparable:

* session ids: the first id seen becomes ``ID1``, the next ``ID2``... (headers, then body, then
  file names, step by step), so each side is numbered by its own order of events;
* dates in ``expires=`` and ``Expires:`` become ``DATE`` (their values are returned separately and
  checked for form and closeness); ``Last-Modified`` stays literal: both scripts get the same
  mtime (:data:`SCRIPT_MTIME`);
* warnings: PHP's ``\\nWarning: f(): msg in FILE on line N\\n`` and the Python prelude's
  ``\\nWarning: f(): msg\\n`` both become ``Warning: f(): msg``; warnings PHP raises at request
  shutdown (``PHP Request Shutdown: msg in Unknown on line 0``) and those phpsess logs at
  shutdown (``PHP Warning: msg`` on stderr) are compared as a separate list;
* the side's work directory becomes ``WORK``.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

try:
    from tests.phptools import require
except ImportError:  # pragma: no cover - run from inside tests/
    from phptools import require  # type: ignore[no-redef]

__all__ = [
    "Step",
    "Scenario",
    "FileState",
    "StepResult",
    "SideResult",
    "IdMap",
    "Normalized",
    "run_side",
    "run_scenario",
    "normalize",
    "compare",
    "php_script",
    "py_script",
    "SCRIPT_MTIME",
    "PHP_PRELUDE",
    "PY_PRELUDE",
    "SESSION_HEADERS",
    "REPO",
]

REPO = Path(__file__).resolve().parents[2]

#: the mtime both sides' scripts get, so Last-Modified is the same literal date
SCRIPT_MTIME = 1_600_000_000  # Sun, 13 Sep 2020 12:26:40 GMT

#: the response headers the session module is responsible for
SESSION_HEADERS = ("set-cookie", "expires", "cache-control", "pragma", "last-modified")

#: out($x) buffers one JSON line; diagnostics are buffered too (an error handler), so that
#: printing never sends the headers early; the harness ends every step with flush_out()
PHP_PRELUDE = """<?php
$__out = [];
function out($x) { global $__out; $__out[] = json_encode($x, JSON_UNESCAPED_SLASHES|JSON_UNESCAPED_UNICODE|JSON_PRESERVE_ZERO_FRACTION); }
function flush_out(bool $final = false) {
    global $__out; foreach ($__out as $l) { echo $l, "\\n"; } $__out = [];
    if ($final) { restore_error_handler(); }  // request-shutdown diagnostics are displayed by PHP
}
set_error_handler(function (int $no, string $msg): bool {
    global $__out;
    if (!(error_reporting() & $no)) { return false; }  // @-silenced
    $kind = [E_WARNING => 'Warning', E_NOTICE => 'Notice', E_DEPRECATED => 'Deprecated',
             E_USER_WARNING => 'Warning', E_USER_NOTICE => 'Notice', E_USER_DEPRECATED => 'Deprecated'][$no] ?? "E$no";
    $__out[] = "$kind: $msg";
    return true;
});
"""

PY_PRELUDE = '''import json, sys, warnings
import phpsess
from phpsess.php import *  # noqa: F401,F403 - the PHP-named API, as a ported page uses it

_out = []


def _show(message, category, filename, lineno, file=None, line=None):
    kind = ("Deprecated" if issubclass(category, phpsess.PHPDeprecated)
            else "Notice" if issubclass(category, phpsess.PHPNotice)
            else "Warning" if issubclass(category, phpsess.PHPWarning)
            else "Python " + category.__name__)
    _out.append(f"{kind}: {message}")


warnings.showwarning = _show
warnings.simplefilter("always")


def _php_float(x):
    # json_encode(JSON_PRESERVE_ZERO_FRACTION) with serialize_precision=-1: serialize()'s
    # digits, lower-case "e", ".0" added to integral values (1.0e+17, 100.0, -0.0)
    t = phpsess.serialize(x)[2:-1].decode().replace("E", "e")
    return "\ue000" + (t if ("." in t or "e" in t) else t + ".0") + "\ue000"


def _php(x):
    if isinstance(x, float):
        return _php_float(x)
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    if hasattr(x, "class_name"):  # a PHP object: json_encode shows its public properties
        d = {"__PHP_Incomplete_Class_Name": x.class_name} if getattr(x, "incomplete", False) else {}
        d.update({k: _php(v) for k, v in getattr(x, "properties", {}).items()
                  if not (isinstance(k, str) and k.startswith("\\0"))})
        return d
    if hasattr(x, "items"):
        d = {k: _php(v) for k, v in x.items()}
        if list(d) == list(range(len(d))):
            return list(d.values())  # json_encode writes a PHP list as a JSON array
        return {str(k): v for k, v in d.items()}
    if isinstance(x, (list, tuple)):
        return [_php(v) for v in x]
    return x


def out(x):
    text = json.dumps(_php(x), separators=(",", ":"), ensure_ascii=False)
    _out.append(text.replace('"\ue000', "").replace('\ue000"', ""))


def flush_out(final=False):
    for line in _out:
        print(line)
    _out.clear()

'''


@dataclass
class Step:
    """One request of a scenario: the same page written in PHP and in Python.

    :param php: PHP statements (without ``<?php``; the prelude is added).
    :param py: Python statements (the prelude with ``from phpsess.php import *`` is added).
    :param query: ``QUERY_STRING``; ``{ID1}``-style placeholders name ids seen so far.
    :param cookie: ``None``: send the cookie jar; a string: send exactly this ``HTTP_COOKIE``
        (placeholders allowed), e.g. a malformed cookie.
    :param before: called with (session dir, {"ID1": id, ...}) before the request, to plant files.
    :param post: a request body (sent as ``application/x-www-form-urlencoded``).
    """

    php: str
    py: str
    query: str = ""
    cookie: str | None = None
    before: Callable[[Path, Mapping[str, str]], None] | None = None
    post: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Scenario:
    """A named sequence of steps run with the given ``session.*`` ini settings on both sides."""

    name: str
    steps: Sequence[Step]
    ini: Mapping[str, str] = field(default_factory=dict)
    #: re-stamp session files before each step (mtime now-20 s, atime now-10 s) so that the
    #: harness can tell a rewrite from a utime() touch; files older than 1000 s are left alone
    restamp: bool = True
    #: a callable run on the save dir before the first step
    setup: Callable[[Path], None] | None = None
    #: save_path relative to the side's work dir ("save"), or a function of the work dir
    save_path: str | Callable[[Path], str] = "save"
    #: extra assertions on each side's results (e.g. nothing created outside save_path)
    check: Callable[[SideResult], None] | None = None


@dataclass
class FileState:
    """A file of the session directory after a step."""

    data: bytes
    change: str  # created | written | rewritten-same | touched | untouched
    mode: int


@dataclass
class StepResult:
    """What one request produced on one side."""

    status: int
    headers: list[tuple[str, str]]
    body: str
    stderr: str
    files: dict[str, FileState]
    deleted: list[str]
    returncode: int
    started: float
    elapsed: float


@dataclass
class SideResult:
    """All steps of a scenario on one side."""

    side: str
    work: Path
    steps: list[StepResult]
    ids: IdMap | None = None


# ---------------------------------------------------------------------------------------------
# scripts
def php_script(body: str) -> str:
    """The full PHP file for a step body."""
    return PHP_PRELUDE + body.strip("\n") + "\nflush_out(true);\n"


def py_script(body: str) -> str:
    """The full Python file for a step body."""
    return PY_PRELUDE + body.strip("\n") + "\nflush_out(True)\n"


#: php-cgi -n's output_buffering and the -d settings of the PHP side, outside session.*
PHP_ENGINE_INI = {"output_buffering": "0", "display_errors": "1", "html_errors": "0", "error_reporting": "-1",
                  "log_errors": "0"}


def _ini_lines(ini: Mapping[str, str]) -> str:
    lines = []
    for k, v in ini.items():
        lines.append(f'{k} = "{v}"')
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# ids
def _id_alphabet(ini: Mapping[str, str]) -> str:
    bits = int(ini.get("session.sid_bits_per_character", "4"))
    return {4: "0-9a-f", 5: "0-9a-v", 6: "0-9a-zA-Z,\\-"}[bits]


class IdMap:
    """Numbers the session ids one side produced, in order of first appearance."""

    def __init__(self, ini: Mapping[str, str]) -> None:
        length = int(ini.get("session.sid_length", "32"))
        alpha = _id_alphabet(ini)
        self.pattern = re.compile(f"(?<![{alpha}])[{alpha}]{{{length}}}(?![{alpha}])")
        self.ids: dict[str, str] = {}  # real id -> "IDn"

    def scan(self, text: str) -> None:
        """Number every id-shaped token of ``text`` not seen before."""
        for m in self.pattern.finditer(text):
            tok = m.group(0)
            if tok not in self.ids:
                self.ids[tok] = f"ID{len(self.ids) + 1}"

    def add(self, real: str) -> None:
        """Number ``real`` (a file's id) if not seen before."""
        if real not in self.ids:
            self.ids[real] = f"ID{len(self.ids) + 1}"

    def sub(self, text: str) -> str:
        """Replace every numbered id (raw or url-encoded) in ``text``."""
        for real in sorted(self.ids, key=len, reverse=True):
            text = text.replace(real, self.ids[real])
            quoted = urllib.parse.quote(real, safe="-_.")
            if quoted != real:
                text = text.replace(quoted, self.ids[real])
        return text

    def placeholders(self) -> dict[str, str]:
        """``{"ID1": real, ...}`` for formatting queries and cookies."""
        return {v: k for k, v in self.ids.items()}


# ---------------------------------------------------------------------------------------------
# running
def _snapshot(save: Path) -> dict[str, os.stat_result]:
    out: dict[str, os.stat_result] = {}
    if not save.is_dir():
        return out
    for p in sorted(save.rglob("*")):
        try:
            st = p.lstat()
        except OSError:
            continue
        if p.is_dir() and not p.is_symlink():
            continue
        out[str(p.relative_to(save))] = st
    return out


def _read(save: Path, rel: str) -> bytes:
    p = save / rel
    if p.is_symlink():
        return b"SYMLINK->" + os.readlink(p).encode()
    try:
        return p.read_bytes()
    except OSError as exc:
        return f"UNREADABLE({exc.errno})".encode()


def _restamp(save: Path, now: float) -> None:
    for rel, st in _snapshot(save).items():
        p = save / rel
        if p.is_symlink() or now - st.st_mtime > 1000:
            continue
        os.utime(p, ns=(int((now - 10) * 1e9), int((now - 20) * 1e9)))


def _classify(before: os.stat_result | None, old: bytes | None, after: os.stat_result, new: bytes) -> str:
    if before is None:
        return "created"
    # (no inode comparison: a file deleted and created again in one request, e.g. destroy
    # then start, may or may not get its old inode number back)
    if new != old:
        return "written"
    if after.st_mtime_ns == before.st_mtime_ns:
        return "untouched"
    # utime(path, NULL) sets atime == mtime == now; a write moves only mtime (atime was planted
    # 10 s after mtime, so relatime or noatime does not refresh it on read; a strictatime
    # mount could make a read and a write in one clock tick look like a touch)
    return "touched" if after.st_atime_ns == after.st_mtime_ns else "rewritten-same"


def _parse_cgi(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    cuts = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := raw.find(sep)) >= 0]
    if not cuts:
        return 0, [], raw
    i, n = min(cuts)
    head, body = raw[:i], raw[i + n:]
    status = 200
    hdrs: list[tuple[str, str]] = []
    for line in head.decode("latin-1").replace("\r\n", "\n").split("\n"):
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
            continue
        hdrs.append((name.strip(), value.strip()))
    return status, hdrs, body


def _cgi_env(script: Path, step: Step, cookie: str, query: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "REDIRECT_STATUS": "200",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "phpsess-difftest",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost",
        "REMOTE_ADDR": "127.0.0.1",
        "SCRIPT_FILENAME": str(script),
        "SCRIPT_NAME": "/" + script.name,
        "REQUEST_URI": "/" + script.name + ("?" + query if query else ""),
        "DOCUMENT_ROOT": str(script.parent),
        "REQUEST_METHOD": "POST" if step.post is not None else "GET",
        "QUERY_STRING": query,
    }
    if cookie:
        env["HTTP_COOKIE"] = cookie
    if step.post is not None:
        env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        env["CONTENT_LENGTH"] = str(len(step.post))
    env.update(step.env)
    return env


def _php_ini(sc: Scenario, save_path: str) -> dict[str, str]:
    ini = {
        "session.save_path": save_path,
        "session.gc_probability": "0",
    }
    ini.update(sc.ini)
    if "session.save_path" in sc.ini:
        ini["session.save_path"] = sc.ini["session.save_path"].replace("{save}", save_path)
    return ini


def run_side(sc: Scenario, side: str, root: Path, *, timeout: float = 30) -> SideResult:
    """Run every step of ``sc`` on one side (``"php"`` or ``"py"``) under ``root/side``."""
    work = root / side
    work.mkdir(parents=True, exist_ok=True)
    save = work / "save"
    save.mkdir(exist_ok=True)
    save_path = sc.save_path(work) if callable(sc.save_path) else str(work / sc.save_path)
    ini = _php_ini(sc, save_path)
    if sc.setup is not None:
        sc.setup(save)
    ids = IdMap(sc.ini)
    jar: dict[str, str] = {}
    results: list[StepResult] = []
    if side == "php":
        exe = [require("php-cgi"), "-n", "-d", "display_errors=1", "-d", "html_errors=0",
               "-d", "error_reporting=-1", "-d", "log_errors=0", "-d", "serialize_precision=-1",
               "-d", "expose_php=0"]
        for k, v in ini.items():
            exe += ["-d", f'{k}="{v}"' if ";" in v else f"{k}={v}"]  # ";" starts an ini comment
    else:
        # the engine settings php-cgi runs with here (-n and the -d above), for phpsess too
        (work / "php.ini").write_text(_ini_lines({**PHP_ENGINE_INI, **ini}))
        exe = [sys.executable]
    for n, step in enumerate(sc.steps, 1):
        script = work / f"s{n}.{side}"
        script.write_text(php_script(step.php) if side == "php" else py_script(step.py))
        os.utime(script, (SCRIPT_MTIME, SCRIPT_MTIME))
        ph = ids.placeholders()
        if step.before is not None:
            step.before(save, ph)
        if sc.restamp:
            _restamp(save, time.time())
        before = _snapshot(save)
        old = {rel: _read(save, rel) for rel in before}
        cookie = step.cookie.format(**ph) if step.cookie is not None else "; ".join(
            f"{k}={v}" for k, v in jar.items())
        env = _cgi_env(script, step, cookie, step.query.format(**ph))
        if side == "py":
            env["PYTHONPATH"] = str(REPO)
            env["PHPSESS_INI"] = str(work / "php.ini")
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            cmd = exe + [str(script)]
        else:
            cmd = exe
        t0 = time.time()
        proc = subprocess.run(cmd, input=step.post or b"", capture_output=True, env=env,
                              cwd=str(work), timeout=timeout)
        elapsed = time.time() - t0
        status, hdrs, body = _parse_cgi(proc.stdout)
        after = _snapshot(save)
        files = {}
        for rel, st in after.items():
            data = _read(save, rel)
            files[rel] = FileState(data, _classify(before.get(rel), old.get(rel), st, data),
                                   st.st_mode & 0o7777)
        deleted = [rel for rel in before if rel not in after]
        text_body = body.decode("utf-8", "surrogateescape")
        res = StepResult(status, hdrs, text_body, proc.stderr.decode("utf-8", "replace"), files,
                         deleted, proc.returncode, t0, elapsed)
        # number ids in a fixed order: headers, body, then ids only seen in file names
        for _, v in hdrs:
            ids.scan(urllib.parse.unquote(v))
        ids.scan(text_body)
        fresh = [rel for rel in sorted(files, key=lambda r: (after[r].st_ctime_ns, r))]
        for rel in fresh:
            base = rel.rsplit("/", 1)[-1]
            if base.startswith("sess_") and ids.pattern.fullmatch(base[5:]):
                ids.add(base[5:])
        for name, value in hdrs:
            if name.lower() == "set-cookie":
                cname, _, rest = value.partition("=")
                jar[cname] = rest.split(";", 1)[0]
        results.append(res)
    return SideResult(side, work, results, ids)


def run_scenario(sc: Scenario, root: Path) -> tuple[SideResult, SideResult]:
    """Run the PHP and the Python side of ``sc`` in parallel; return (php, py)."""
    out: dict[str, SideResult | BaseException] = {}

    def go(side: str) -> None:
        try:
            out[side] = run_side(sc, side, root)
        except BaseException as exc:  # reported in the main thread
            out[side] = exc

    threads = [threading.Thread(target=go, args=(s,)) for s in ("php", "py")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for side in ("php", "py"):
        r = out[side]
        if isinstance(r, BaseException):
            raise r
    return out["php"], out["py"]  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# normalising
_PHP_DIAG = re.compile(
    r"\n(?:PHP )?(Warning|Notice|Deprecated|Fatal error|Parse error): +(.*?) in (\S+) on line (\d+)\n"
)
_PY_DIAG = re.compile(r"\n(Warning|Notice|Deprecated|Python \w+): (.*?)\n")
_SHUTDOWN_PREFIXES = ("PHP Request Shutdown: ", "Unknown: ")
_LOGGED = re.compile(r"^PHP (Warning|Notice|Deprecated): +(.*)$", re.M)
_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_SCRIPT_LINE = re.compile(r"WORK/s(\d+)\.(php|py):(\d+)")
_SCRIPT = re.compile(r"WORK/s(\d+)\.(php|py)\b")


@dataclass
class Normalized:
    """One side's steps, normalised for comparison (see the module docstring)."""

    steps: list[dict[str, Any]]
    dates: list[list[float]]

    def as_text(self) -> str:
        """A readable dump (used in assertion messages)."""
        return json.dumps(self.steps, indent=1, ensure_ascii=False)


def _norm_body(body: str, side: str) -> tuple[list[str], list[str]]:
    lines: list[str] = []
    shutdown: list[str] = []
    text = "\n" + body
    rx = _PHP_DIAG if side == "php" else _PY_DIAG
    pos = 0
    chunks: list[str] = []
    while True:
        m = rx.search(text, pos)
        if m is None:
            chunks.append(text[pos:])
            break
        chunks.append(text[pos:m.start()] + "\n")
        kind, msg = m.group(1), m.group(2)
        if msg.startswith(_SHUTDOWN_PREFIXES):
            for p in _SHUTDOWN_PREFIXES:
                msg = msg.removeprefix(p)
            shutdown.append(f"{kind}: {msg}")
        else:
            chunks.append(f"{kind}: {msg}\n")
        pos = m.end() - 1  # keep the newline: diagnostics may follow each other
    joined = "".join(chunks)
    lines = [ln for ln in joined.split("\n") if ln != ""]
    return lines, shutdown


def _dates(text: str) -> tuple[str, list[float]]:
    found = [email.utils.parsedate_to_datetime(d).timestamp() for d in _DATE.findall(text)]
    return _DATE.sub("DATE", text), found


def normalize(res: SideResult, *, keep_expires_1981: bool = True) -> Normalized:
    """Normalise one side's results (ids, dates, paths, diagnostics)."""
    ids = res.ids if res.ids is not None else IdMap({})
    work = str(res.work)
    steps: list[dict[str, Any]] = []
    all_dates: list[list[float]] = []

    offset = (PHP_PRELUDE if res.side == "php" else PY_PRELUDE).count("\n")

    def clean(text: str) -> str:
        text = text.replace(work, "WORK")
        # "(output started at WORK/s1.php:16)": same statement of the step on both sides
        text = _SCRIPT_LINE.sub(lambda m: f"WORK/s{m.group(1)}.SCRIPT:body+{int(m.group(3)) - offset}", text)
        text = _SCRIPT.sub(lambda m: f"WORK/s{m.group(1)}.SCRIPT", text)
        return ids.sub(text)

    for st in res.steps:
        dates: list[float] = []
        hdrs = []
        for name, value in st.headers:
            if name.lower() not in SESSION_HEADERS:
                continue
            value = clean(value)
            if name.lower() in ("set-cookie", "expires"):
                if not (keep_expires_1981 and value == "Thu, 19 Nov 1981 08:52:00 GMT"):
                    value, found = _dates(value)
                    dates += found
            hdrs.append(f"{name}: {value}")
        body_lines, shutdown = _norm_body(st.body, res.side)
        if res.side == "py":
            shutdown += [f"{k}: {m}" for k, m in _LOGGED.findall(st.stderr)]
        files = {
            clean(rel): {"data": clean(fs.data.decode("utf-8", "surrogateescape")),
                         "change": fs.change, "mode": oct(fs.mode)}
            for rel, fs in st.files.items()
        }
        steps.append({
            "status": st.status,
            "headers": hdrs,
            "body": [clean(ln) for ln in body_lines],
            "shutdown": [clean(s) for s in shutdown],
            "files": dict(sorted(files.items())),
            "deleted": sorted(clean(d) for d in st.deleted),
        })
        all_dates.append(dates)
    return Normalized(steps, all_dates)


def compare(php: SideResult, py: SideResult, *, date_tolerance: float = 5.0,
            ignore: Sequence[str] = ()) -> tuple[Normalized, Normalized]:
    """Assert that both sides are equal after normalisation; return the normalised forms.

    :param ignore: step keys not compared (e.g. ``"files"`` when they cannot agree).
    """
    a, b = normalize(php), normalize(py)
    for n, (sa, sb) in enumerate(zip(a.steps, b.steps), 1):
        for key in ignore:
            sa.pop(key, None)
            sb.pop(key, None)
    assert len(a.steps) == len(b.steps)
    if a.steps != b.steps:
        diff = []
        for n, (sa, sb) in enumerate(zip(a.steps, b.steps), 1):
            for key in sa:
                if sa[key] != sb.get(key):
                    diff.append(f"step {n} {key}:\n  php: {sa[key]!r}\n  py:  {sb.get(key)!r}")
        raise AssertionError("PHP and phpsess differ:\n" + "\n".join(diff))
    for n, (da, db) in enumerate(zip(a.dates, b.dates), 1):
        assert len(da) == len(db), f"step {n}: dates {da} vs {db}"
        for x, y in zip(da, db):
            assert abs(x - y) <= date_tolerance + abs(php.steps[n - 1].started - py.steps[n - 1].started), (
                f"step {n}: dates too far apart: {x} vs {y}")
    return a, b
