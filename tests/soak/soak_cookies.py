"""Hostile session cookies through the real stack: nginx + ``phpsess fpm``, the pool's FastCGI
socket directly (bytes nginx would refuse, NUL included), and a CGI host's environment
(``python script.py`` with ``HTTP_COOKIE``), the last compared with ``php-cgi``.  Starts
nginx and the pool on loopback in a temporary directory and stops them; runs processes.

The cookies: path traversal (canary names that must never appear on disk), every byte
0x00-0xff inside an id (percent-encoded, and raw where HTTP allows it), NUL bytes,
ids of 257 bytes to 7 KB, the session name repeated up to 1,000 times (first wins, as in
PHP), array and look-alike names, and random mixtures.  Each cookie is sent with
``session.use_strict_mode`` off and on.  Checked:

* no response is a 5xx (nginx may refuse a header it cannot parse with a 400);
* nothing is created outside save_path, and save_path holds only regular
  ``sess_[A-Za-z0-9,-]{1,256}`` files;
* with strict mode, no id taken from the cookie is ever adopted (the ids were never
  issued by the server);
* without strict mode, an id is adopted only if it is a valid id;
* under CGI, PHP 8.2 (php-cgi) adopts exactly the same ids and fails the same starts.

    python -m tests.soak.soak_cookies            # every cookie (about 1,300 x 2 modes x 3 paths)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote_to_bytes

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from phpsess.core import ids  # noqa: E402
from tests.integration.nginx import PYTHONPATH, fcgi_request  # noqa: E402
from tests.phptools import require  # noqa: E402
from tests.soak.stack import SCRIPTS, Stack, fpm_stack, pool_workers, stop_on_signals  # noqa: E402

__all__ = [
    "CANARY", "WHOAMI_PHP", "hostile_cookies", "candidates", "check_outcome", "run_stack", "run_cgi_compare", "main",
]

#: part of every traversal target; no file with this in its name may ever exist
CANARY = "pwned-phpsess-canary"
_VALID_FILE = re.compile(r"sess_[A-Za-z0-9,\-]{1,256}\Z")
_HEX = "0123456789abcdef"

WHOAMI_PHP = """<?php
$warnings = [];
set_error_handler(function ($no, $str) use (&$warnings) { $warnings[] = $str; return true; });
$ok = session_start(["use_strict_mode" => $_GET["strict"] ?? "0"]);
$sid = session_id();
session_write_close();
header("Content-Type: application/json");
echo json_encode(["ok" => $ok, "sid" => $sid, "warnings" => $warnings],
                 JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
"""


def hostile_cookies(rng: random.Random, *, random_count: int = 200) -> list[tuple[str, str]]:
    """(kind, Cookie header) pairs; headers may hold any byte except CR/LF (latin-1 text)."""
    out: list[tuple[str, str]] = []
    valid = "".join(rng.choice(_HEX) for _ in range(32))
    for t in ("../", "..%2F", "..%2f", "%2E%2E%2F", "....//", "..\\", "..%5C", "%2e%2e/", "..%c0%af", "..%252F"):
        for depth in (1, 2, 3, 8):
            out.append(("traversal", f"PHPSESSID={t * depth}{CANARY}"))
    for target in ("/tmp/" + CANARY, "/etc/" + CANARY, "sess_../" + CANARY, "./" + CANARY, CANARY + "/.."):
        out.append(("traversal", f"PHPSESSID={target}"))
        out.append(("traversal", "PHPSESSID=" + "".join(f"%{b:02X}" for b in target.encode())))
    for b in range(256):
        out.append(("byte %02x" % b, f"PHPSESSID=abc%{b:02X}def"))
        ch = chr(b)
        if ch not in "\r\n;" and b >= 0x20 and b != 0x7F:
            out.append(("raw byte %02x" % b, f"PHPSESSID=abc{ch}def"))
    out.append(("nul", "PHPSESSID=abc\x00def"))
    out.append(("nul", f"PHPSESSID={valid}\x00../../{CANARY}"))
    out.append(("nul", f"PHPSESSID={valid}%00../../{CANARY}"))
    out.append(("nul", "PHPSESSID=\x00"))
    for n in (256, 257, 300, 1024, 4096, 7000):
        out.append((f"long {n}", "PHPSESSID=" + "a" * n))
    out.append(("long", "PHPSESSID=" + valid * 8))
    for n in (2, 10, 100, 1000):
        out.append((f"repeat {n}", "; ".join(f"PHPSESSID=attacker{i:024d}" for i in range(n))))
    out.append(("repeat", f"PHPSESSID=../{CANARY}; PHPSESSID={valid}"))
    out.append(("repeat", f"PHPSESSID={valid}; PHPSESSID=../{CANARY}"))
    out.append(("repeat", f"PHPSESSID=; PHPSESSID={valid}"))
    for name in ("PHPSESSID[]", "PHPSESSID[a]", "PHPSESSID[", "phpsessid", " PHPSESSID", "PHPSESSID ", "PHPSESSID.x",
                 "PHP SESSID", "PHPSESSID%00", "%50HPSESSID", "PHPSESSID[][]", "PHPSESSID]"):
        out.append(("name", f"{name}={valid}"))
    out.append(("name", f"PHPSESSID[]={valid}; PHPSESSID=other{valid[5:]}"))
    for v in ("", "=", "==", ",", "-", ",-,-", "a", "0", "-1", "%", "%%", "%zz", "%4", '"quoted"', f'"{valid}"',
              "$(touch /tmp/" + CANARY + ")", "`id`", "{}", "[]", "a=b=c", " " + valid, valid + " "):
        out.append(("value", f"PHPSESSID={v}"))
    out.append(("separators", f";;;PHPSESSID={valid};;;"))
    out.append(("separators", f"a=1;PHPSESSID={valid},b=2"))
    out.append(("separators", f"a=1, PHPSESSID={valid}"))
    alphabet = [chr(b) for b in range(1, 256) if chr(b) not in "\r\n"] + ["%", "/", ".", "=", ";", " "] * 10
    for _ in range(random_count):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80)))
        out.append(("random", f"PHPSESSID={body}"))
    return out


def candidates(cookie: str) -> set[str]:
    """Every value the attacker put in the header, raw and percent-decoded (as text)."""
    vals: set[str] = set()
    for part in re.split(r"[;,]", cookie):
        _, _, v = part.partition("=")
        for x in (v, v.strip()):
            raw = x.encode("latin-1", "replace")
            vals.add(x)
            vals.add(raw.decode("utf-8", "surrogateescape"))
            vals.add(unquote_to_bytes(raw).decode("utf-8", "surrogateescape"))
    vals |= {v.split("\0", 1)[0] for v in vals}  # PHP's files handler reads an id as a C string
    vals.discard("")
    return vals


def check_outcome(cookie: str, strict: bool, out: dict[str, Any]) -> str | None:
    """Judge one response body (whoami's JSON); returns a problem or None."""
    sid = out.get("sid") or ""
    supplied = candidates(cookie)
    if strict:
        if sid in supplied:
            return f"strict mode adopted the attacker's id {sid!r}"
        if out.get("ok") and not (sid and ids.is_valid_id(sid)):
            return f"strict mode started a session with id {sid!r}"
    elif sid in supplied and not ids.is_valid_id(sid):
        return f"an invalid id was adopted: {sid!r}"
    return None


def _sanity(base: Path, save_dir: Path, before: set[str], *, skip: tuple[Path, ...] = ()) -> list[str]:
    """Files outside save_path and odd entries inside it."""
    problems = []
    for entry in os.scandir(save_dir):
        if not (_VALID_FILE.match(entry.name) and entry.is_file(follow_symlinks=False)):
            problems.append(f"unexpected entry in save_path: {entry.name!r}")
    now = _tree(base, skip=(save_dir, *skip))
    for extra in sorted(now - before)[:20]:
        problems.append(f"created outside save_path: {extra}")
    for d in ("/tmp", "/etc", "/", str(base.parent)):
        try:
            for name in os.listdir(d):
                if CANARY in name:
                    problems.append(f"canary file created: {os.path.join(d, name)}")
        except OSError:
            pass
    return problems


def _tree(base: Path, *, skip: tuple[Path, ...]) -> set[str]:
    """Every path under ``base`` except save_path, nginx's and the pool's own files."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(base):
        d = Path(dirpath)
        if d in skip:
            dirnames[:] = []
            continue
        dirnames[:] = [n for n in dirnames if not (d == base and n in ("nginx", "lock-registry"))]
        for n in filenames:
            if d == base and n.startswith("fpm."):
                continue
            out.add(str(d / n))
    return out


def _http(port: int, cookie: str, strict: int) -> tuple[int, bytes]:
    """One request with a raw Cookie header (http.client refuses some bytes; send it ourselves)."""
    import socket

    head = (f"GET /whoami.py?strict={strict} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Cookie: {cookie}\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        chunks = []
        while True:
            more = s.recv(65536)
            if not more:
                break
            chunks.append(more)
    resp = http.client.HTTPResponse(_Sock(b"".join(chunks)))  # type: ignore[arg-type]
    resp.begin()
    return resp.status, resp.read()


class _Sock:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> Any:
        import io

        return io.BytesIO(self.data)


def run_stack(stack: Stack, cookies: list[tuple[str, str]], *, threads: int = 4) -> dict[str, Any]:
    """Send every cookie through nginx and straight to the pool, strict mode off and on."""
    before = _tree(stack.base, skip=(stack.save_dir,))
    problems: list[str] = []
    statuses: dict[str, int] = {}

    def one(job: tuple[str, str, str, int]) -> tuple[str, str, str | None]:
        path, kind, cookie, strict = job
        try:
            if path == "nginx":
                status, body = _http(stack.port, cookie, strict)
            else:
                # the header's bytes, as nginx would pass them on
                as_bytes = cookie.encode("latin-1").decode("utf-8", "surrogateescape")
                params = {"SCRIPT_FILENAME": str(stack.root / "whoami.py"), "REQUEST_METHOD": "GET",
                          "QUERY_STRING": f"strict={strict}", "HTTP_COOKIE": as_bytes,
                          "GATEWAY_INTERFACE": "CGI/1.1"}
                out, _ = fcgi_request(stack.socket, params)
                head, _, body = out.partition(b"\r\n\r\n")
                status = int(head.split(b"\r\n", 1)[0].split()[1])
        except (OSError, ValueError, http.client.HTTPException) as exc:
            return path, "exception", f"{kind}: {type(exc).__name__}: {exc}"
        if status >= 500:
            return path, str(status), f"{kind}: {status} for {cookie[:80]!r}"
        if status != 200:
            return path, str(status), None
        try:
            d = json.loads(body)
        except ValueError:
            return path, "200", f"{kind}: not JSON: {body[:200]!r}"
        bad = check_outcome(cookie, bool(strict), d)
        return path, "200", (f"{kind}, strict={strict}: {bad} (cookie {cookie[:80]!r})" if bad else None)

    # strict mode first: a valid id adopted by a non-strict request exists afterwards, and
    # strict mode then rightly accepts it
    for strict in (1, 0):
        jobs = [(path, kind, cookie, strict) for path in ("nginx", "fastcgi") for kind, cookie in cookies]
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            for path, status, problem in ex.map(one, jobs):
                statuses[f"{path} {status}"] = statuses.get(f"{path} {status}", 0) + 1
                if problem:
                    problems.append(f"{path}: {problem}")
    problems += _sanity(stack.base, stack.save_dir, before)
    if len(pool_workers(stack.master.pid)) != stack.workers:
        problems.append("the pool lost workers")
    if "Traceback" in stack.fpm_log():
        problems.append("the pool logged a traceback: " + stack.fpm_log()[-800:])
    return {"requests": 4 * len(cookies), "statuses": statuses, "session_files": len(os.listdir(stack.save_dir)),
            "problems": problems}


def _cgi_env(script: Path, cookie: str, strict: int, ini: Path, phprc: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "GET", "SCRIPT_FILENAME": str(script),
        "SCRIPT_NAME": "/" + script.name, "QUERY_STRING": f"strict={strict}", "SERVER_PROTOCOL": "HTTP/1.1",
        "REDIRECT_STATUS": "200", "HTTP_COOKIE": cookie, "PYTHONPATH": PYTHONPATH, "PHPSESS_INI": str(ini),
        "PHPRC": str(phprc), "PHP_INI_SCAN_DIR": "",
    }


def _outcome(cookie: str, d: dict[str, Any]) -> tuple[bool, str]:
    """(ok, the adopted id, or "<new>" for an id the server made, "" for none)."""
    sid = d.get("sid") or ""
    return bool(d.get("ok")), sid if sid in candidates(cookie) else ("<new>" if sid else "")


def run_cgi_compare(base: Path, cookies: list[tuple[str, str]], *, threads: int = 4) -> dict[str, Any]:
    """Each cookie through a CGI environment, phpsess (python) and PHP (php-cgi) side by side."""
    php_cgi = require("php-cgi")
    base.mkdir(parents=True, exist_ok=True)
    www = base / "cgi-www"
    www.mkdir(exist_ok=True)
    py_save, php_save = base / "cgi-py-sessions", base / "cgi-php-sessions"
    py_save.mkdir(exist_ok=True)
    php_save.mkdir(exist_ok=True)
    (www / "whoami.py").write_text(textwrap.dedent(SCRIPTS["whoami.py"]).lstrip())
    (www / "whoami.php").write_text(WHOAMI_PHP)
    ini = base / "cgi-phpsess.ini"
    ini.write_text(f'session.save_path = "{py_save}"\nsession.gc_probability = 0\n')
    (base / "php.ini").write_text(f'session.save_path = "{php_save}"\nsession.gc_probability = 0\n'
                                  "display_errors = 0\nlog_errors = 0\nhtml_errors = 0\n")
    before = _tree(base, skip=(py_save, php_save))
    usable = [(k, c) for k, c in cookies if "\x00" not in c]  # an environment cannot hold NUL
    problems: list[str] = []
    differences: list[str] = []

    def one(job: tuple[str, str, int]) -> None:
        kind, cookie, strict = job
        outs = []
        for cmd, script in (([sys.executable, str(www / "whoami.py")], www / "whoami.py"),
                            ([php_cgi], www / "whoami.php")):
            env = _cgi_env(script, cookie, strict, ini, base)
            env_b = {k.encode(): v.encode("latin-1" if k == "HTTP_COOKIE" else "utf-8") for k, v in env.items()}
            r = subprocess.run(cmd, env=env_b, capture_output=True, timeout=60, cwd=str(www))
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            if r.returncode != 0 or b"500" in head.split(b"\r\n", 1)[0]:
                problems.append(f"{script.name} failed for {cookie[:60]!r}: {r.stdout[:200]!r} {r.stderr[-300:]!r}")
                return
            try:
                outs.append(json.loads(body))
            except ValueError:
                problems.append(f"{script.name}: not JSON for {cookie[:60]!r}: {body[:200]!r}")
                return
        py, php_ = outs
        bad = check_outcome(cookie, bool(strict), py)
        if bad:
            problems.append(f"cgi {kind}, strict={strict}: {bad}")
        if _outcome(cookie, py) != _outcome(cookie, php_):
            differences.append(f"{kind}, strict={strict}, cookie {cookie[:60]!r}: phpsess {_outcome(cookie, py)} "
                               f"PHP {_outcome(cookie, php_)}")

    for strict in (1, 0):  # strict first (see run_stack)
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(one, [(k, c, strict) for k, c in usable]))
    problems += _sanity(base, py_save, before, skip=(php_save,))
    problems += [f"differs from PHP: {d}" for d in differences]
    return {"requests": 2 * len(usable), "differences_from_php": len(differences), "problems": problems}


def main(argv: list[str] | None = None) -> int:
    """Command line: run every path, print the figures as JSON, exit 1 on a problem."""
    stop_on_signals()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random", type=int, default=1000, help="random cookies besides the fixed list")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-cgi", action="store_true", help="nginx and FastCGI only (the CGI path is slow)")
    args = ap.parse_args(argv)
    cookies = hostile_cookies(random.Random(args.seed), random_count=args.random)
    report: dict[str, Any] = {"cookies": len(cookies)}
    with tempfile.TemporaryDirectory(prefix="phpsess-soak-cookies-") as tmp:
        with fpm_stack(Path(tmp) / "stack", workers=4) as st:
            report["stack"] = run_stack(st, cookies)
        if not args.skip_cgi:
            report["cgi"] = run_cgi_compare(Path(tmp) / "cgi", cookies)
    print(json.dumps(report, indent=2))
    bad = report["stack"]["problems"] + (report.get("cgi") or {}).get("problems", [])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
