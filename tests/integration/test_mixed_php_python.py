"""PHP and phpsess processes sharing one save_path: data written by one is read and re-saved by
the other, the flock taken by one blocks the other, and concurrent increments from both lose
nothing. Runs real ``php -n`` and ``python3`` CLI processes on a temporary save directory.

In a plain Python process (no CGI environment) ``session_id("x")`` then ``session_start()``
works as in PHP's CLI, which is what the loops below rely on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.phptools import require

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def php_cli(save: Path, code: str, *, popen: bool = False, **ini: str) -> "subprocess.Popen[str] | str":
    """Run ``code`` (PHP statements) with ``php -n`` on ``save``; return stdout (or the Popen)."""
    args = [require("php"), "-n", "-d", f"session.save_path={save}", "-d", "session.gc_probability=0",
            "-d", "display_errors=stderr", "-d", "error_reporting=-1", "-d", "serialize_precision=-1"]
    for k, v in ini.items():
        args += ["-d", f"session.{k}={v}"]
    args += ["-r", code]
    if popen:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


def py_cli(save: Path, code: str, *, popen: bool = False) -> "subprocess.Popen[str] | str":
    """Run ``code`` (Python statements, ``phpsess`` imported) as a CLI process on ``save``."""
    ini = save.parent / "phpsess.ini"
    ini.write_text(f'session.save_path = "{save}"\nsession.gc_probability = 0\n')
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_INTERFACE"}
    env.update(PYTHONPATH=str(REPO), PHPSESS_INI=str(ini), PYTHONDONTWRITEBYTECODE="1")
    src = "import json, sys, time, warnings\nwarnings.simplefilter('error')\nimport phpsess\n" \
          "from phpsess import SESSION\n" + textwrap.dedent(code)
    args = [sys.executable, "-c", src]
    if popen:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


@pytest.fixture
def save(tmp_path: Path) -> Path:
    d = tmp_path / "sessions"
    d.mkdir(mode=0o700)  # private, as a save_path should be (phpsess warns about a listable one)
    return d


def test_php_writes_python_reads_and_writes_back_php_reads(save: Path) -> None:
    php_cli(save, r"""
        session_id('mixed1'); session_start();
        $_SESSION = ['n' => 1, 'f' => 0.1, 'big' => 1e17, 's' => "héllo|x", 'list' => [1, 2, [true, null]],
                     'map' => ['k' => 'v', 7 => -1], 'o' => new DateTime('2020-01-02 03:04:05', new DateTimeZone('UTC'))];
    """)
    php_bytes = (save / "sess_mixed1").read_bytes()
    assert php_bytes.startswith(b"n|i:1;f|d:0.1;big|d:1.0E+17;")

    # Python reads what PHP wrote, and re-saving it unchanged gives the same bytes
    out = py_cli(save, """
        phpsess.session_id("mixed1"); phpsess.session_start()
        # arrays in SESSION are phpsess.PHPArray (docs/types.md): to_python() for json
        print(json.dumps({k: SESSION[k] for k in ("n", "f", "big", "s", "list")}, ensure_ascii=False,
                         default=phpsess.PHPArray.to_python))
        print(type(SESSION["list"]).__name__, SESSION["list"][2] == [True, None])
        print(SESSION["map"] == {"k": "v", 7: -1})
        phpsess.session_write_close()
    """)
    first, types, second = out.splitlines()
    assert json.loads(first) == {"n": 1, "f": 0.1, "big": 1e17, "s": "héllo|x", "list": [1, 2, [True, None]]}
    assert types == "PHPArray True"
    assert second == "True"
    assert (save / "sess_mixed1").read_bytes() == php_bytes

    # Python changes it, PHP reads the change and keeps everything else
    py_cli(save, """
        phpsess.session_id("mixed1"); phpsess.session_start()
        SESSION["n"] += 1
        SESSION["by"] = "python"
    """)
    out = php_cli(save, r"""
        session_id('mixed1'); session_start();
        echo json_encode([$_SESSION['n'], $_SESSION['by'], $_SESSION['map'], $_SESSION['o']->format('c')]), "\n";
        $_SESSION['n']++;
    """)
    assert json.loads(out) == [2, "python", {"k": "v", "7": -1}, "2020-01-02T03:04:05+00:00"]
    assert (save / "sess_mixed1").read_bytes() == php_bytes.replace(b"n|i:1;", b"n|i:3;") + b'by|s:6:"python";'


def test_python_resaves_php_builtin_objects_unchanged(save: Path) -> None:
    """Objects of PHP classes Python does not know (ArrayObject's __serialize() uses integer
    keys) are written back byte for byte, so PHP can still load them."""
    php_cli(save, r"""session_id('mixed2'); session_start(); $_SESSION['o'] = new ArrayObject([1, 2]);""")
    php_bytes = (save / "sess_mixed2").read_bytes()
    py_cli(save, """
        phpsess.session_id("mixed2"); phpsess.session_start(); SESSION["x"] = 1
    """)
    assert (save / "sess_mixed2").read_bytes() == php_bytes + b"x|i:1;"
    out = php_cli(save, r"""session_id('mixed2'); session_start(); echo count($_SESSION['o']), "\n";""")
    assert out == "2\n"


def _wait_line(proc: "subprocess.Popen[str]", expected: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != expected:
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"expected {expected!r}, got {line!r}\n{out}\n{err}")


HOLD = 1.0


def test_php_holding_the_lock_blocks_python_start(save: Path) -> None:
    holder = php_cli(save, rf"""
        session_id('lock1'); session_start(); $_SESSION['by'] = 'php';
        echo "locked\n"; usleep({int(HOLD * 1e6)}); session_write_close(); echo "released\n";
    """, popen=True)
    assert isinstance(holder, subprocess.Popen)
    _wait_line(holder, "locked")
    t0 = time.monotonic()
    out = py_cli(save, """
        t = time.monotonic(); phpsess.session_id("lock1"); phpsess.session_start()
        print(round(time.monotonic() - t, 3), SESSION.get("by"))
    """)
    total = time.monotonic() - t0
    waited, by = out.split()
    rest, err = holder.communicate(timeout=10)
    assert holder.returncode == 0 and rest == "released\n", err
    # the Python start waited for PHP's write_close and then saw PHP's data
    assert by == "php"
    assert float(waited) >= HOLD * 0.6, (waited, total)
    print(f"python session_start waited {waited} s for a PHP lock held {HOLD} s")


def test_python_holding_the_lock_blocks_php_start(save: Path) -> None:
    holder = py_cli(save, f"""
        phpsess.session_id("lock2"); phpsess.session_start(); SESSION["by"] = "python"
        print("locked", flush=True); time.sleep({HOLD}); phpsess.session_write_close()
        print("released", flush=True)
    """, popen=True)
    assert isinstance(holder, subprocess.Popen)
    _wait_line(holder, "locked")
    out = php_cli(save, r"""
        $t = microtime(true); session_id('lock2'); session_start();
        echo round(microtime(true) - $t, 3), " ", $_SESSION['by'] ?? 'none', "\n";
    """)
    waited, by = out.split()
    rest, err = holder.communicate(timeout=10)
    assert holder.returncode == 0 and rest == "released\n", err
    assert by == "python"
    assert float(waited) >= HOLD * 0.6, waited
    print(f"php session_start waited {waited} s for a Python lock held {HOLD} s")


CYCLES = 250


def test_concurrent_increments_from_php_and_python_lose_nothing(save: Path) -> None:
    go = time.time() + 1.0  # all four loops start together, after their start-up
    php_loop = rf"""
        while (microtime(true) < {go}) {{ usleep(1000); }}
        $t0 = microtime(true);
        for ($i = 0; $i < {CYCLES}; $i++) {{
            session_id('counter1'); session_start();
            $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1; $_SESSION['php'] = ($_SESSION['php'] ?? 0) + 1;
            $_SESSION['trail'] = ($_SESSION['trail'] ?? '') . 'p';
            session_write_close();
        }}
        echo $t0, " ", microtime(true), "\n";
    """
    py_loop = f"""
        while time.time() < {go}:
            time.sleep(0.001)
        t0 = time.time()
        for i in range({CYCLES}):
            phpsess.session_id("counter1"); phpsess.session_start()
            SESSION["n"] = SESSION.get("n", 0) + 1; SESSION["py"] = SESSION.get("py", 0) + 1
            SESSION["trail"] = SESSION.get("trail", "") + "y"
            phpsess.session_write_close()
        print(t0, time.time())
    """
    procs = [php_cli(save, php_loop, popen=True), py_cli(save, py_loop, popen=True),
             php_cli(save, php_loop, popen=True), py_cli(save, py_loop, popen=True)]
    spans = []
    for p in procs:
        assert isinstance(p, subprocess.Popen)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and not err, (out, err)
        spans.append(tuple(float(x) for x in out.split()))
    out = php_cli(save, r"""session_id('counter1'); session_start(); echo json_encode($_SESSION), "\n";""")
    final = json.loads(out)
    trail = final.pop("trail")
    assert final == {"n": 4 * CYCLES, "php": 2 * CYCLES, "py": 2 * CYCLES}
    assert len(trail) == 4 * CYCLES
    switches = sum(1 for a, b in zip(trail, trail[1:]) if a != b)
    start, end = min(s[0] for s in spans), max(s[1] for s in spans)
    print(f"{4 * CYCLES} mixed increments in {end - start:.2f} s, PHP<->Python hand-overs: {switches}")
    # the loops really ran at the same time: a PHP and a Python loop overlapped, and the
    # lock passed between PHP and Python (flock is not fair: how often varies with load)
    php_spans, py_spans = spans[0::2], spans[1::2]
    assert any(a[0] < b[1] and b[0] < a[1] for a in php_spans for b in py_spans), spans
    assert switches >= 2, trail
