"""Harness for php-src's session tests (ext/session/tests/*.phpt) ported to phpsess. Runs
subprocesses, writes scripts and session files under a temporary directory.

Each :class:`Phpt` is one php-src test written twice: a PHP script run by real PHP 8.2's
CLI (``php -n`` plus the test's ini), and its Python port run by ``python3 script.py``
with the same ini (``$PHPSESS_INI``).  Both print with PHP's ``var_dump``/``echo``
formats (the Python prelude has ``var_dump()`` and ``echo()``, and shows PHP's
diagnostics as PHP's CLI does: ``\\nWarning: f(): msg in FILE on line N\\n`` on stdout),
so the two outputs must be equal after :func:`normalize`: file names and line numbers,
session ids (each side numbered by first appearance) and the temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

try:
    from tests.phptools import PHP_BASE_INI, require
except ImportError:  # pragma: no cover - run from inside tests/
    from phptools import PHP_BASE_INI, require  # type: ignore[no-redef]

__all__ = ["Phpt", "Outcome", "run_all", "normalize", "PY_PRELUDE", "PHP_PRELUDE"]

REPO = Path(__file__).resolve().parents[2]

#: the Python side's var_dump()/echo() and PHP's CLI display of diagnostics
PY_PRELUDE = r'''import logging, sys, warnings
import phpsess
from phpsess import *  # noqa: F401,F403 - PHP's names, as a ported script uses them
from phpsess.core.zend import float_to_string as _fts

_PKG = __import__("os").path.dirname(phpsess.__file__)


def _show(message, category, filename, lineno, file=None, line=None):
    kind = ("Deprecated" if issubclass(category, phpsess.PHPDeprecated)
            else "Notice" if issubclass(category, phpsess.PHPNotice)
            else "Warning" if issubclass(category, phpsess.PHPWarning)
            else "Python " + category.__name__)
    # no script frame (phpsess's own, at the request's end): PHP's "Unknown on line 0"
    # (or the zygote's, which runs the exit functions where the interpreter would)
    where = "Unknown on line 0" if filename.startswith(_PKG) or filename.endswith("phpt_zygote.py") else "%s on line %d"
    sys.stdout.write(f"\n{kind}: {message} in {where}\n")


warnings.showwarning = _show
warnings.simplefilter("always")


class _Shutdown(logging.Handler):
    """Diagnostics of the request's end, which PHP's CLI displays 'in Unknown on line 0'."""

    def emit(self, record):
        text = record.getMessage()
        if text.startswith("PHP Startup: "):  # (while the settings load: no request yet)
            sys.__stdout__.write(f"\nStartup: {text[13:]} in Unknown on line 0\n")
            sys.__stdout__.flush()
        for level in ("Warning", "Notice", "Deprecated"):
            if text.startswith(f"PHP {level}: "):
                sys.stdout.write(f"\n{level}: {text[len(level) + 5:]} in Unknown on line 0\n")


logging.getLogger("phpsess").addHandler(_Shutdown())
logging.getLogger("phpsess").propagate = False


def _dump(x, ind):
    pad = " " * ind
    if x is None:
        return pad + "NULL\n"
    if x is True or x is False:
        return pad + ("bool(true)\n" if x else "bool(false)\n")
    if isinstance(x, int):
        return f"{pad}int({x})\n"
    if isinstance(x, float):
        return f"{pad}float({_fts(x, -1)})\n"
    if isinstance(x, str):
        x = x.encode("utf-8", "surrogateescape")
    if isinstance(x, (bytes, bytearray)):
        return f'{pad}string({len(x)}) "' + x.decode("utf-8", "surrogateescape") + '"\n'
    if isinstance(x, (list, tuple)):
        x = dict(enumerate(x))
    if type(x).__name__ == "PHPReference":  # a PHP reference: "&" before the value's type
        inner = _dump(x.value, ind)
        return inner[:ind] + "&" + inner[ind:]
    if hasattr(x, "class_name"):  # a PHP object (phpsess.core.codec.PHPObject)
        props = x.properties
        out = f"{pad}object({x.class_name})#%d ({len(props)}) {{\n"
        for k, v in props.items():
            key = k if isinstance(k, int) else '"' + str(k) + '"'
            out += f"{pad}  [{key}]=>\n" + _dump(v, ind + 2)
        return out + pad + "}\n"
    if hasattr(x, "items"):
        out = f"{pad}array({len(x)}) {{\n"
        for k, v in x.items():
            key = k if isinstance(k, int) else '"' + str(k) + '"'
            out += f"{pad}  [{key}]=>\n" + _dump(v, ind + 2)
        return out + pad + "}\n"
    return f"{pad}object({type(x).__name__})\n"


def var_dump(*values):
    for v in values:
        if type(v).__name__ == "PHPReference":  # (passed by value: PHP shows no "&" at the top)
            v = v.value
        sys.stdout.write(_dump(v, 0))


def echo(*parts):
    for p in parts:
        if p is True:
            p = "1"
        elif p is False or p is None:
            p = ""
        elif isinstance(p, float):
            p = _fts(p, 14)
        elif isinstance(p, (bytes, bytearray)):
            p = bytes(p).decode("utf-8", "surrogateescape")
        sys.stdout.write(str(p))


def error(exc):
    """What the port prints for a PHP exception the test catches: "Class: message"."""
    echo(f"{type(exc).__name__}: {exc}\n")


SAVE = __import__("os").environ["PHPT_SAVE"]
'''

#: the PHP side's small helpers
PHP_PRELUDE = r"""<?php
$SAVE = getenv('PHPT_SAVE');
function error(Throwable $e) { echo get_class($e), ': ', $e->getMessage(), "\n"; }
"""


#: PHP core settings a test may set (not ``session.*``)
_CORE = ("serialize_precision", "error_reporting")


@dataclass
class Phpt:
    """One php-src session test and its port.

    :param name: the php-src file it ports (``ext/session/tests/`` + name + ``.phpt``).
    :param php: the PHP script's statements (the prelude gives ``$SAVE``, the save path).
    :param py: the Python port's statements (``SAVE``, ``var_dump``, ``echo``, ``error``).
    :param ini: its ``--INI--`` section (both sides); ``session.`` may be omitted.
    :param errors: PHP exception class names -> the Python class the port prints in their
        place (``error(exc)`` prints the Python class name), compared as equal.
    """

    name: str
    php: str
    py: str
    ini: Mapping[str, str] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    #: run as a CGI request (php-cgi, and the port under a CGI environment), with the
    #: test's ``--COOKIE--``, ``--GET--`` and ``--POST--``; the response headers are compared
    cgi: bool = False
    cookie: str = ""
    get: str = ""
    post: str = ""

    def settings(self, save: str) -> dict[str, str]:
        """The ini both sides run with."""
        out = {"session.save_path": save, "session.gc_probability": "0"}
        for k, v in self.ini.items():
            out[k if "." in k or k in _CORE else "session." + k] = str(v)
        out["session.save_path"] = out["session.save_path"].replace("{SAVE}", save)
        return out


@dataclass
class Outcome:
    """Both sides' normalised output."""

    test: Phpt
    php: str
    py: str
    py_stderr: str

    @property
    def same(self) -> bool:
        """True when the port printed what PHP printed."""
        return self.php == self.py


_ID = re.compile(r"(?<![0-9a-zA-Z,-])[0-9a-zA-Z,-]{22,256}(?![0-9a-zA-Z,-])")


def normalize(text: str, work: str, errors: Mapping[str, str] | None = None) -> str:
    """Make one side's output comparable: locations, the work directory, session ids."""
    text = re.sub(r" in (?:/\S+|Standard input code|Command line code) on line \d+", " in %s on line %d", text)
    text = text.replace(work, "WORK")
    # CGI: PHP's own header and phpsess's explicit status line are not the session's
    text = re.sub(r"^(?:X-Powered-By: .*|Status: 200 OK)\r?\n", "", text, flags=re.M)
    text = text.replace("\r\n", "\n")
    text = re.sub(r"(?!Thu, 19 Nov 1981)\w{3}, \d\d[ -]\w{3}[ -]\d{4} \d\d:\d\d:\d\d GMT", "DATE", text)
    text = re.sub(r"output started at \S+:\d+", "output started at %s:%d", text)
    # php.ini problems: PHP displays them at startup, phpsess logs them at first use
    text = re.sub(r"^(?:Warning|Fatal error): PHP Startup: ", "Startup: ", text, flags=re.M)
    text = re.sub(r"(object\(\w+\))#\d+ \(", r"\1#%d (", text)
    # PHP names the function that ran at shutdown (session_write_close()...); phpsess does not
    text = re.sub(r"^(Warning|Notice|Deprecated): [\w:]+\(\): (.* in Unknown on line 0)$", r"\1: \2", text, flags=re.M)
    for php_name, py_name in (errors or {}).items():
        text = text.replace(py_name + ": ", php_name + ": ")
    ids: dict[str, str] = {}

    def one(m: re.Match[str]) -> str:
        return ids.setdefault(m.group(0), f"ID{len(ids) + 1}")

    return _ID.sub(one, text)


def _ini_value(v: str) -> str:
    """``v`` as an ini value both PHP and phpsess read back as ``v`` (";" starts a comment)."""
    if v and not re.search(r'[;"\\ =]', v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _prepare(t: Phpt, root: Path) -> tuple[Path, dict[str, str], bytes]:
    work = Path(tempfile.mkdtemp(prefix=re.sub(r"\W", "_", t.name) + "-", dir=root))
    save = work / "save"
    save.mkdir(mode=0o700)
    env = dict(os.environ, PHPT_SAVE=str(save))
    body = t.post.encode()
    if t.cgi:
        env.update(GATEWAY_INTERFACE="CGI/1.1", REQUEST_METHOD="POST" if t.post else "GET", REDIRECT_STATUS="1",
                   HTTP_COOKIE=t.cookie, QUERY_STRING=t.get)
        if t.post:
            env.update(CONTENT_TYPE="application/x-www-form-urlencoded", CONTENT_LENGTH=str(len(body)))
    return work, env, body


def _run_php(t: Phpt, work: Path, env: dict[str, str], body: bytes) -> str:
    save = work / "save"
    php_ini = dict(PHP_BASE_INI)
    php_ini.update(t.settings(str(save)))
    (work / "t.php").write_text(PHP_PRELUDE + t.php)
    args = [require("php-cgi" if t.cgi else "php"), "-n"]
    for k, v in php_ini.items():
        args += ["-d", f"{k}={_ini_value(v)}"]
    php = subprocess.run(args + ([] if t.cgi else [str(work / "t.php")]), input=body, capture_output=True,
                         cwd=work, env=dict(env, SCRIPT_FILENAME=str(work / "t.php")), timeout=60)
    shutil.rmtree(save)  # the port starts from the same empty save path
    save.mkdir(mode=0o700)
    return php.stdout.decode("utf-8", "replace") + php.stderr.decode("utf-8", "replace")


def _py_job(t: Phpt, work: Path, env: dict[str, str], body: bytes) -> dict[str, object]:
    ini = work / "php.ini"
    ini.write_text("".join(f"{k} = {_ini_value(v)}\n" for k, v in t.settings(str(work / "save")).items()))
    (work / "t.py").write_text(PY_PRELUDE + t.py)
    (work / "stdin").write_bytes(body)
    env = dict(env, PHPSESS_INI=str(ini), PYTHONPATH=str(REPO), SCRIPT_FILENAME=str(work / "t.py"))
    return {"dir": str(work), "env": env, "stdin": str(work / "stdin")}


def run_all(tests: Sequence[Phpt], root: Path, workers: int = 3) -> list[Outcome]:
    """Run every test on both sides and return their outcomes in order.

    The PHP scripts run a few at a time; the ports run one after the other, each in a
    child forked from a process that has imported phpsess (tests/oracle/phpt_zygote.py),
    or, with ``PHPT_FRESH=1`` in the environment, each in a fresh interpreter.
    """
    prepared = [_prepare(t, root) for t in tests]
    with ThreadPoolExecutor(workers) as pool:
        php_out = list(pool.map(lambda a: _run_php(*a), [(t, *p) for t, p in zip(tests, prepared)]))
    jobs = [_py_job(t, *p) for t, p in zip(tests, prepared)]
    if os.environ.get("PHPT_FRESH") == "1":
        for job in jobs:
            with open(str(job["stdin"]), "rb") as stdin, open(Path(str(job["dir"])) / "py.out", "wb") as out, \
                    open(Path(str(job["dir"])) / "py.err", "wb") as err:
                env = job["env"]
                assert isinstance(env, dict)
                subprocess.run([sys.executable, "t.py"], stdin=stdin, stdout=out, stderr=err,
                               cwd=str(job["dir"]), env=env, timeout=60)
    else:
        with subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("phpt_zygote.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(root),
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        ) as zygote:
            assert zygote.stdin is not None and zygote.stdout is not None
            for job in jobs:
                zygote.stdin.write(json.dumps(job) + "\n")
                zygote.stdin.flush()
                if not zygote.stdout.readline():
                    raise RuntimeError("the phpt zygote died")
    outcomes = []
    for t, (work, _, _), php in zip(tests, prepared, php_out):
        py_out = (work / "py.out").read_bytes().decode("utf-8", "replace")
        py_err = (work / "py.err").read_bytes().decode("utf-8", "replace")
        outcomes.append(Outcome(t, normalize(php, str(work)), normalize(py_out, str(work), t.errors), py_err))
    return outcomes
