"""Instructions per request of one pool worker, php-fpm 8.2 against ``phpsess fpm``.

Runs each server with one worker under valgrind's callgrind (``--trace-children``),
sends it FastCGI requests of the session counter page (``bench/http_scripts``) straight
on its unix socket, one at a time, and counts the instructions of every process.  Each
server runs twice, with 0 and with N requests after the same warm-up, so that the
difference divided by N is what one request costs a worker: its accept, FastCGI
reading, script, session and answer, and nothing of start-up.  Unlike requests per
second, the count does not move with the machine's load: it is the figure to compare
two checkouts by (``$PHPSESS_TEST_PYTHONPATH``), or phpsess's worker with php-fpm's.

    python3 bench/worker_cost.py [--requests 1000] [--cases pool,new,shared] [--build plain]

Needs valgrind (installed with apt-get when missing, as root), php-fpm8.2 with opcache.
Sessions live on /dev/shm.  Cases as bench/http.py's: (a) new: no cookie; (b) pool:
one of 1,000 pre-created sessions at random; (c) shared: always the same session.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))


def _bench_http() -> ModuleType:
    """bench/http.py as a module (its config writers and FastCGI request builder)."""
    spec = importlib.util.spec_from_file_location("bench_http", HERE / "http.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_http"] = module
    spec.loader.exec_module(module)
    return module


B = _bench_http()
WARM_UP = 20
CASES = {"new": "(a) new session", "pool": "(b) pool of 1,000", "shared": "(c) one shared session"}


def require_valgrind() -> str:
    """The valgrind binary (apt-get install when missing and root)."""
    path = shutil.which("valgrind")
    if path is None and os.geteuid() == 0:
        print("installing valgrind with apt-get ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
        path = shutil.which("valgrind")
    if path is None:
        raise SystemExit("valgrind is needed (apt-get install valgrind)")
    return path


def request_maker(case: str, ids: Sequence[str], root: str, script: str) -> Callable[[], bytes]:
    """The FastCGI bytes of the next request of ``case``."""
    rng = random.Random(7)
    if case == "new":
        return lambda: B.fcgi_request_bytes(root, script, None)
    if case == "shared":
        return lambda: B.fcgi_request_bytes(root, script, f"PHPSESSID={ids[0]}")
    return lambda: B.fcgi_request_bytes(root, script, f"PHPSESSID={rng.choice(ids)}")


def send(sock_path: str, data: bytes) -> bytes:
    """One FastCGI request on a new connection; the whole answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def instructions(out_dir: Path) -> dict[int, int]:
    """Instructions counted per process (callgrind's file per pid)."""
    counts = {}
    for f in out_dir.glob("cg.*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                counts[int(f.name.split(".")[1])] = int(line.split()[1])
                break
    return counts


def run_once(server: str, case: str, count: int, work: Path, valgrind: str) -> tuple[int, int]:
    """Start ``server`` (one worker) under callgrind, send warm-up + ``count`` requests,
    stop it; (master's instructions, worker's instructions)."""
    run = Path(tempfile.mkdtemp(dir=work))
    save = run / "sessions"
    save.mkdir(mode=0o700)
    ids = B.make_ids(1000)
    B.precreate_sessions(str(save), ids)
    sock = str(run / "fpm.sock")
    cg = [valgrind, "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={run}/cg.%p"]
    env = dict(os.environ, PYTHONHASHSEED="0")
    if server == "php-fpm":
        from tests.phptools import require

        conf = run / "php-fpm.conf"
        conf.write_text(B.php_fpm_config(run, sock, 1, str(save)))
        args = [*cg, require(B.PHP_FPM), "-n", "-F", "-y", str(conf), "-d", "zend_extension=opcache.so"]
        if os.geteuid() == 0:
            args.append("-R")
        script = "counter.php"
    else:
        ini = run / "phpsess.ini"
        ini.write_text(B.phpsess_ini(str(save)))
        pkg = os.environ.get("PHPSESS_TEST_PYTHONPATH", str(REPO))
        env.update(PYTHONPATH=pkg, PHPSESS_LOCK_REGISTRY="off")
        args = [*cg, sys.executable, "-m", "phpsess", "fpm", "--listen", sock, "--root", str(B.SCRIPTS),
                "--workers", "1", "--ini", str(ini)]
        script = "counter.py"
    log = open(run / "server.out", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(run))
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{server} did not start:\n" + (run / "server.out").read_text(errors="replace"))
            time.sleep(0.1)
        time.sleep(1.0)  # the worker forked and waiting
        make = request_maker(case, ids, str(B.SCRIPTS.resolve()), script)
        for _ in range(WARM_UP + count):
            answer = send(sock, make())
            if b"n = " not in answer:
                raise SystemExit(f"{server}: unexpected answer {answer[:300]!r}")
    finally:
        proc.send_signal(signal.SIGQUIT)  # a graceful stop: every process ends normally, callgrind writes
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    counts = instructions(run)
    master = counts.pop(proc.pid, 0)
    if len(counts) != 1:
        raise SystemExit(f"{server}: expected one worker's count, got {counts}")
    return master, next(iter(counts.values()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests counted per run (default 1000)")
    parser.add_argument("--cases", default="pool", help="comma-separated: new,pool,shared (default pool)")
    parser.add_argument("--build", choices=("compiled", "plain"), default="compiled",
                        help="phpsess's build: compiled (scripts/compile.sh into build/compiled) or this "
                             "checkout as plain Python; $PHPSESS_TEST_PYTHONPATH overrides both")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            parser.error(f"unknown case {c!r} (new, pool, shared)")
    valgrind = require_valgrind()
    B.use_build(args.build)
    work = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="phpsess-cost-"))
    print(f"instructions per request of one worker (callgrind; {args.requests} requests, one at a time, "
          f"sessions in /dev/shm); phpsess from {os.environ.get('PHPSESS_TEST_PYTHONPATH', str(REPO))}")
    print(f"{'case':<26} {'php-fpm':>9} {'phpsess':>9} {'ratio':>7}   (masters: php-fpm, phpsess)")
    try:
        for case in cases:
            per: dict[str, tuple[float, float]] = {}
            for server in ("php-fpm", "phpsess"):
                m0, w0 = run_once(server, case, 0, work, valgrind)
                m1, w1 = run_once(server, case, args.requests, work, valgrind)
                per[server] = ((w1 - w0) / args.requests, (m1 - m0) / args.requests)
            php, ours = per["php-fpm"][0], per["phpsess"][0]
            print(f"{CASES[case]:<26} {php / 1000:8.0f}k {ours / 1000:8.0f}k {ours / php:6.2f}x"
                  f"   ({per['php-fpm'][1] / 1000:.1f}k, {per['phpsess'][1] / 1000:.1f}k)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
