"""Runs the Python ports of php-src's tests (tests/oracle/phpttools.py) as if each were
``python3 t.py`` in a fresh interpreter, at a fraction of the cost: phpsess is imported
once, and every script runs in a forked child.  Runs subprocesses (forks), writes the
child's output to files.

Protocol: one JSON object per line on stdin (``dir``, ``env``, ``stdin``: the script's
directory, environment and standard input file); one line back per script, its exit
status.  The child does what a fresh ``python3 t.py`` does that matters here:
``import phpsess`` by the script arms the CGI request (under ``GATEWAY_INTERFACE``) or
the CLI output (:func:`phpsess.runtime.cgi.arm_cli`), an uncaught exception goes to
``sys.excepthook``, and the ``atexit`` functions run at the end.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import sys

os.environ["PHPSESS_CLI"] = "0"  # the zygote's own import arms nothing
import phpsess  # noqa: E402,F401 - imported once, before forking
from phpsess.runtime import cgi  # noqa: E402


def _child(job: dict[str, str | dict[str, str]]) -> None:
    work = str(job["dir"])
    env = job["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(work)
    for fd, name, mode in ((0, str(job["stdin"]), os.O_RDONLY), (1, "py.out", os.O_WRONLY | os.O_CREAT),
                           (2, "py.err", os.O_WRONLY | os.O_CREAT)):
        f = os.open(name, mode, 0o600)
        os.dup2(f, fd)
        os.close(f)
    sys.argv = [os.path.join(work, "t.py")]
    sys.path[0] = work
    # what `import phpsess` by the script (__main__) does in a fresh interpreter
    if cgi.is_cgi():
        cgi.arm()
    else:
        cgi.arm_cli()
    code = 0
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - as the interpreter: report, then exit handlers
        sys.excepthook(*sys.exc_info())
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def main() -> None:
    """Serve scripts until stdin ends."""
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(job)
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
