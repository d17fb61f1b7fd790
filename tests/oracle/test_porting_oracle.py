"""What a page ported from PHP relies on beyond sessions, against real php-cgi 8.2: output
buffering (``output_buffering = 4096`` as Debian's php.ini), ``exit``/``die``, includes,
diagnostics (display_errors, log_errors, html_errors), ``$_REQUEST``, ``$_FILES`` and
``$_SERVER['PHP_SELF']``.  Each case is a PHP page and its port; php-cgi runs one with
``-n`` and the case's settings, phpsess runs the other as a CGI script with the same
settings in ``$PHPSESS_INI``; status, headers, body and the error log must be the same
(paths replaced by ``SCRIPT``/``DIR``). Runs php-cgi and python.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    from tests.phptools import require
except ImportError:  # tests/ itself on sys.path
    from phptools import require  # type: ignore[no-redef]

__all__: list[str] = []

REPO = Path(__file__).resolve().parent.parent.parent

#: Debian's php.ini (php.ini-production) for what these cases touch: what php-cgi and
#: php-fpm run with on Debian, and phpsess's defaults
DEBIAN = {
    "output_buffering": "4096",
    "display_errors": "0",
    "html_errors": "1",
    "log_errors": "1",
    "error_reporting": "22527",
    "request_order": "GP",
    "variables_order": "GPCS",
    "session.save_path": "",
    "session.gc_probability": "0",
    "zend.exception_ignore_args": "1",  # stack traces without argument values
}
DISPLAY = {**DEBIAN, "display_errors": "1", "html_errors": "0", "log_errors": "0"}


@dataclass
class Case:
    php: str
    py: str
    ini: dict[str, str] = field(default_factory=lambda: dict(DEBIAN))
    env: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (php, py) included files
    exit_code: bool = True


MULTIPART_BOUNDARY = "XyZ"


def multipart(parts: list[tuple[str, str | None, str, bytes]]) -> bytes:
    out = b""
    for name, filename, ctype, content in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        head = f"Content-Disposition: {disp}\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
        out += f"--{MULTIPART_BOUNDARY}\r\n{head}\r\n".encode() + content + b"\r\n"
    return out + f"--{MULTIPART_BOUNDARY}--\r\n".encode()


UPLOAD = multipart([
    ("a", None, "", b"post-a"),
    ("doc", "hello.txt", "text/plain", b"hello world"),
    ("f[]", "one.txt", "text/plain", b"1"),
    ("f[]", "", "application/octet-stream", b""),
    ("f[x]", "dir/sub/two.bin", "application/octet-stream", b"22"),
    ("big", "big.txt", "text/plain", b"x" * 3000),
    ("MAX_FILE_SIZE", None, "", b"10"),
    ("after", "after.txt", "text/plain", b"01234567890123"),
])

PHP_FILES_DUMP = """
$out = [];
foreach ($_FILES as $k => $f) {
    $out[$k] = $f;
    $out[$k]['tmp_name'] = is_array($f['tmp_name'])
        ? array_map(fn($t) => $t === '' ? '' : file_get_contents($t), $f['tmp_name'])
        : ($f['tmp_name'] === '' ? '' : file_get_contents($f['tmp_name']));
}
echo json_encode(['FILES' => $out, 'REQUEST' => $_REQUEST, 'SELF' => $_SERVER['PHP_SELF']]);
"""
PY_FILES_DUMP = """
import json
out = {}
for k, f in phpsess.FILES.items():
    out[k] = dict(f)
    t = f["tmp_name"]
    read = lambda t: open(t).read() if t else ""
    out[k]["tmp_name"] = {i: read(x) for i, x in t.items()} if isinstance(t, dict) else read(t)
print(json.dumps({"FILES": out, "REQUEST": dict(phpsess.REQUEST), "SELF": phpsess.SERVER["PHP_SELF"]},
                 separators=(",", ":")), end="")
"""

CASES: dict[str, Case] = {
    # the cart's redirect: output, then header(), then die -- 302 under output_buffering
    "redirect_after_echo": Case(
        'echo "some output"; header("Location: cart.php"); die("Access denied");',
        'print("some output", end=""); phpsess.header("Location: cart.php"); sys.exit("Access denied")',
    ),
    "redirect_after_echo_unbuffered": Case(
        'echo "some output"; header("Location: cart.php"); echo "|after";',
        'print("some output", end=""); phpsess.header("Location: cart.php"); print("|after", end="")',
        ini={**DISPLAY, "output_buffering": "0"},
    ),
    "output_past_the_buffer_sends_headers": Case(
        'echo str_repeat("x", 4096); header("X-Late: 1"); echo "|", headers_sent() ? "sent" : "not";',
        'print("x" * 4096, end=""); phpsess.header("X-Late: 1"); print("|", "sent" if phpsess.headers_sent() else "not", sep="", end="")',
        ini=DISPLAY,
    ),
    "die_message_and_exit_status": Case(
        'echo "x"; exit(3);',
        'print("x", end=""); phpsess.exit(3)',
    ),
    "die_function": Case(
        'echo "a"; die("Access denied"); echo "never";',
        'print("a", end=""); phpsess.die("Access denied"); print("never")',
    ),
    "shutdown_function_runs_after_die": Case(
        'register_shutdown_function(function () { echo "|shutdown"; }); die("bye");',
        'phpsess.register_shutdown_function(lambda: phpsess.echo("|shutdown")); sys.exit("bye")',
    ),
    "ob_callback_phases_and_chunks": Case(
        """ob_start(function ($buf, $phase) { return strtoupper($buf) . "[$phase]"; });
echo "hello"; ob_flush(); echo "x"; $s = ob_get_clean(); echo "got:$s;";
ob_start(fn($b) => "<$b>", 4);
echo "ab"; echo "cdef"; echo "g"; echo ob_get_level(); die("Access denied");""",
        """phpsess.ob_start(lambda buf, phase: buf.upper() + f"[{phase}]")
phpsess.echo("hello"); phpsess.ob_flush(); phpsess.echo("x"); s = phpsess.ob_get_clean(); phpsess.echo(f"got:{s};")
phpsess.ob_start(lambda b, p: f"<{b}>", 4)
phpsess.echo("ab"); phpsess.echo("cdef"); phpsess.echo("g"); phpsess.echo(phpsess.ob_get_level()); phpsess.die("Access denied")""",
    ),
    "ob_functions_without_buffer": Case(
        """echo ob_get_level(), "|"; ob_end_clean(); ob_end_clean();
var_dump(ob_get_clean()); ob_end_flush(); var_dump(ob_get_contents()); ob_clean(); ob_flush(); ob_get_flush();
var_dump(ob_get_level(), ob_get_length());""",
        """phpsess.echo(phpsess.ob_get_level(), "|"); phpsess.ob_end_clean(); phpsess.ob_end_clean()
print("bool(false)" if phpsess.ob_get_clean() is False else "?"); phpsess.ob_end_flush(); print("bool(false)" if phpsess.ob_get_contents() is False else "?"); phpsess.ob_clean(); phpsess.ob_flush(); phpsess.ob_get_flush()
print(f"int({phpsess.ob_get_level()})"); print("bool(false)" if phpsess.ob_get_length() is False else "?")""",
        ini=DISPLAY,
    ),
    "ob_nested_levels_and_contents": Case(
        """ob_start(); echo "a"; ob_start(); echo "b"; $inner = ob_get_contents(); ob_end_flush();
$outer = ob_get_contents(); ob_end_clean(); echo "inner=$inner outer=$outer level=", ob_get_level(),
" ", implode(",", ob_list_handlers());""",
        """phpsess.ob_start(); phpsess.echo("a"); phpsess.ob_start(); phpsess.echo("b"); inner = phpsess.ob_get_contents(); phpsess.ob_end_flush()
outer = phpsess.ob_get_contents(); phpsess.ob_end_clean(); phpsess.echo(f"inner={inner} outer={outer} level=", phpsess.ob_get_level(),
" ", ",".join(phpsess.ob_list_handlers()))""",
    ),
    "include_missing_warns_twice_and_returns_false": Case(
        'echo "a"; var_dump(include "missing"); var_dump(include_once "missing"); echo "b";',
        'phpsess.echo("a"); print("bool(false)" if phpsess.include("missing") is False else "?"); '
        'print("bool(false)" if phpsess.include_once("missing") is False else "?"); phpsess.echo("b")',
        ini=DISPLAY,
    ),
    "include_missing_is_logged": Case(
        'echo "a"; include "missing"; echo "b";',
        'phpsess.echo("a"); phpsess.include("missing"); phpsess.echo("b")',
    ),
    "require_missing_is_fatal": Case(
        'echo "a"; require "missing2"; echo "never";',
        'phpsess.echo("a"); phpsess.require("missing2"); phpsess.echo("never")',
        ini=DISPLAY,
        exit_code=False,
    ),
    "require_missing_is_a_500_in_production": Case(
        'echo "a"; require "missing2"; echo "never";',
        'phpsess.echo("a"); phpsess.require("missing2"); phpsess.echo("never")',
        exit_code=False,
    ),
    "include_runs_in_the_including_scope_each_time": Case(
        '$n = 1; include "inc"; include "inc"; include_once "inc"; echo "n=$n ", count(get_included_files());',
        'n = 1\nphpsess.include("inc"); phpsess.include("inc"); phpsess.include_once("inc")\n'
        'phpsess.echo(f"n={n} ", len(phpsess.get_included_files()))',
        files={"inc": ('<?php $n = $n * 10; echo "[inc $n]";', 'n = n * 10\nphpsess.echo(f"[inc {n}]")\n')},
    ),
    "require_once_from_a_subdirectory_resolves_against_the_includer": Case(
        'require_once "lib/a"; echo "|", $fromb;',
        'phpsess.require_once("lib/a"); phpsess.echo("|", fromb)',
        files={"lib/a": ('<?php require_once "b"; echo "a";', 'phpsess.require_once("b"); phpsess.echo("a")\n'),
               "lib/b": ('<?php $fromb = "B"; echo "b";', 'fromb = "B"\nphpsess.echo("b")\n')},
    ),
    "uncaught_exception_displayed": Case(
        '// RuntimeException\nfunction f($a) { throw new RuntimeException("boom"); }\necho "before";\nf(1);',
        'class RuntimeException(Exception): pass\ndef f(a): raise RuntimeException("boom")\nphpsess.echo("before")\nf(1)',
        ini={**DISPLAY, "html_errors": "1"},
        exit_code=False,
    ),
    "uncaught_exception_logged_is_a_500": Case(
        '// RuntimeException\nfunction f($a) { throw new RuntimeException("boom"); }\necho "before";\nf(1);',
        'class RuntimeException(Exception): pass\ndef f(a): raise RuntimeException("boom")\nphpsess.echo("before")\nf(1)',
        exit_code=False,
    ),
    "warnings_every_time_with_error_reporting": Case(
        'for ($i = 0; $i < 3; $i++) { session_regenerate_id(); }\n'
        'error_reporting(E_ALL & ~E_WARNING); session_regenerate_id(); echo error_reporting();',
        'for i in range(3): phpsess.session_regenerate_id()\n'
        'phpsess.error_reporting(phpsess.E_ALL & ~phpsess.E_WARNING); phpsess.session_regenerate_id(); phpsess.echo(phpsess.error_reporting())',
        ini=DISPLAY,
    ),
    "warnings_html_when_displayed": Case(
        'session_regenerate_id(); echo "x";',
        'phpsess.session_regenerate_id(); phpsess.echo("x")',
        ini={**DISPLAY, "html_errors": "1"},
    ),
    "trigger_error_escaped_in_html": Case(
        """trigger_error('a "b" <c> \\'d\\' & e', E_USER_WARNING); trigger_error("n"); echo "x";""",
        """phpsess.trigger_error('a "b" <c> \\'d\\' & e', phpsess.E_USER_WARNING); phpsess.trigger_error("n"); phpsess.echo("x")""",
        ini={**DISPLAY, "html_errors": "1"},
    ),
    "request_files_php_self": Case(
        PHP_FILES_DUMP,
        PY_FILES_DUMP,
        ini={**DEBIAN, "upload_max_filesize": "2K"},
        env={"REQUEST_METHOD": "POST", "CONTENT_TYPE": f"multipart/form-data; boundary={MULTIPART_BOUNDARY}",
             "QUERY_STRING": "a=get-a&b=2", "PATH_INFO": "/extra", "HTTP_COOKIE": "a=cookie-a; c=3"},
        body=UPLOAD,
    ),
    "request_order_merges_arrays": Case(
        'echo json_encode($_REQUEST);',
        'import json\nprint(json.dumps(dict(phpsess.REQUEST), separators=(",", ":")), end="")',
        env={"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/x-www-form-urlencoded",
             "QUERY_STRING": "a[x]=1&a[y]=2&b=g&c[]=1", "HTTP_COOKIE": "b=cookie"},
        body=b"a[y]=P&a[z]=3&b=p&c[]=2",
    ),
    "request_order_with_cookies": Case(
        'echo json_encode($_REQUEST);',
        'import json\nprint(json.dumps(dict(phpsess.REQUEST), separators=(",", ":")), end="")',
        ini={**DEBIAN, "request_order": "GPC"},
        env={"QUERY_STRING": "b=g&q=1", "HTTP_COOKIE": "b=cookie; k=2"},
    ),
}

PY_HEAD = "import sys, phpsess\n"  # one line, as PHP's "<?php": the line numbers agree


def _ini_file(ini: dict[str, str]) -> str:
    return "".join(f'{k} = "{v}"\n' for k, v in ini.items())


def _run(binary: str, kind: str, case: Case, work: Path) -> tuple[int, list[str], str, str, int]:
    work.mkdir(parents=True)
    ext = ".php" if kind == "php" else ".py"
    script = work / f"page{ext}"
    if kind == "php":
        script.write_text("<?php\n" + textwrap.dedent(case.php) + "\n")
    else:
        script.write_text(PY_HEAD + textwrap.dedent(case.py) + "\n")
    for name, (php, py) in case.files.items():
        p = work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(php if kind == "php" else py)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GATEWAY_INTERFACE": "CGI/1.1", "REDIRECT_STATUS": "200",
        "REQUEST_METHOD": "GET", "SCRIPT_FILENAME": str(script), "SCRIPT_NAME": "/page",
        "REQUEST_URI": "/page", "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(case.body)),
        **case.env,
    }
    if kind == "php":
        cmd = [binary, "-n"] + [a for k, v in case.ini.items() for a in ("-d", f"{k}={v}")]
    else:
        (work / "php.ini").write_text(_ini_file(case.ini))
        env.update(PYTHONPATH=str(REPO), PHPSESS_INI=str(work / "php.ini"), PYTHONDONTWRITEBYTECODE="1")
        cmd = [sys.executable, str(script)]
    proc = subprocess.run(cmd, input=case.body, capture_output=True, env=env, cwd=str(work), timeout=60)
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = 200
    headers = []
    for line in lines:
        name, _, value = line.partition(": ")
        if name.lower() == "status":
            status = int(value[:3])
        elif name.lower() != "x-powered-by":
            headers.append(f"{name}: {value}")
    text = body.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    return status, headers, _norm(text, work, ext), _norm(err, work, ext), proc.returncode


def _norm(text: str, work: Path, ext: str) -> str:
    text = text.replace(str(work / f"page{ext}"), "SCRIPT").replace(str(work), "DIR")
    text = text.replace("(include_path='.:/usr/share/php')", "(include_path=...)")
    return text


def _log_lines(err: str) -> list[str]:
    # the PHP part of the log: phpsess adds the Python traceback after a fatal error
    out = []
    for line in err.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            break
        out.append(line)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[tuple[object, ...], tuple[object, ...]]]:
    php = require("php-cgi")
    root = tmp_path_factory.mktemp("porting")
    with ThreadPoolExecutor(4) as pool:
        futs = {
            name: (pool.submit(_run, php, "php", c, root / name / "php"),
                   pool.submit(_run, php, "py", c, root / name / "py"))
            for name, c in CASES.items()
        }
        return {name: (a.result(), b.result()) for name, (a, b) in futs.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_port_behaves_as_php_cgi(name: str, results: dict[str, tuple[tuple[object, ...], tuple[object, ...]]]) -> None:
    (pst, phd, pbody, perr, prc), (yst, yhd, ybody, yerr, yrc) = results[name]
    case = CASES[name]
    if name == "request_files_php_self":
        # temporary file names differ: the contents were read instead
        pbody_d, ybody_d = json.loads(str(pbody)), json.loads(str(ybody))
        assert ybody_d["FILES"] == pbody_d["FILES"]
        assert ybody_d == pbody_d
    else:
        assert ybody == pbody
    assert (yst, yhd) == (pst, phd)
    assert _log_lines(str(yerr)) == _log_lines(str(perr))
    if case.exit_code:
        assert yrc == prc


def test_uncaught_error_log_ends_with_the_python_traceback(
        results: dict[str, tuple[tuple[object, ...], tuple[object, ...]]]) -> None:
    yerr = str(results["uncaught_exception_logged_is_a_500"][1][3])
    assert re.search(r"Traceback \(most recent call last\):\n.*\n    f\(1\)\n", yerr), yerr
