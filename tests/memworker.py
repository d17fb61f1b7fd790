"""A pool worker's memory across hostile workloads, in a process of its own.

``python -m tests.memworker SAVE_PATH ROOT`` serves requests in-process with
``sapi.handle_request`` (as a pool worker does), and prints one JSON line: the
resident size (MiB) when idle after a warm-up, and after each workload.  Used by
tests/test_memory.py.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import urllib.parse

from phpsess.core.config import SessionConfig
from phpsess.runtime import sapi

__all__ = ["main"]

PAGES = {
    "store.py": "import phpsess\nfrom phpsess import POST, SESSION\nphpsess.session_start()\nSESSION['data'] = POST.get('data', '')\nprint('ok')\n",
    "old_input.py": "import phpsess\nfrom phpsess import POST, SESSION\nphpsess.session_start()\nSESSION['old_input'] = dict(POST)\nprint('ok')\n",
    "counter.py": "import phpsess\nfrom phpsess import SESSION\nphpsess.session_start()\nSESSION['n'] = SESSION.get('n', 0) + 1\nprint(SESSION['n'])\n",
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _serve(root: str, cfg: SessionConfig, script: str, body: bytes = b"", cookie: str = "") -> None:
    environ = {
        "REQUEST_METHOD": "POST" if body else "GET",
        "SCRIPT_NAME": "/" + script,
        "SCRIPT_FILENAME": os.path.join(root, script),
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_COOKIE": cookie,
    }
    sapi.handle_request(environ, body, root, lambda s, h: None, lambda b: None, config=cfg)


def main(argv: list[str]) -> int:
    """Run the workloads; print the figures as JSON."""
    save_path, root, login_root = argv
    for name, text in PAGES.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    cfg = SessionConfig({"save_path": save_path, "gc_probability": "0"})
    out: dict[str, float] = {}
    for i in range(300):  # warm-up: small sessions, the caches of a normal day
        _serve(root, cfg, "counter.py", cookie=f"PHPSESSID=warm{i % 30:04d}")
    gc.collect()
    out["idle"] = _rss_mib()
    # 1. POSTs of 200 KB into fresh sessions
    for i in range(150):
        _serve(root, cfg, "store.py", b"data=" + b"%d" % i + b"x" * 200_000, cookie=f"PHPSESSID=post{i:05d}")
    gc.collect()
    out["fresh sessions of 200 KB"] = _rss_mib()
    # 2. the shipped login page, with a 1 MB user name
    for i in range(30):
        body = urllib.parse.urlencode({"user": f"{i}" + "u" * 1_000_000, "password": "secret"}).encode()
        _serve(login_root, cfg, "login.py", body, cookie=f"PHPSESSID=login{i:05d}")
    gc.collect()
    out["logins with a 1 MB user name"] = _rss_mib()
    # 3. $_SESSION['old_input'] = $_POST, field names of 2 MB
    for i in range(20):
        body = urllib.parse.urlencode({f"{i}" + "f" * 2_000_000: "v", "g": "w"}).encode()
        _serve(root, cfg, "old_input.py", body, cookie=f"PHPSESSID=old{i:05d}")
    gc.collect()
    out["old_input with 2 MB field names"] = _rss_mib()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
