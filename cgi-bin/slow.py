#!/usr/bin/env python3
"""slow.py: a slow AJAX endpoint -- 500 ms of work on the session, in one of three modes.

    ?mode=hold   PHP's default: session_start(), work, write at the end. The session
                 lock is held during the work, so requests of one session run one at a time.
    ?mode=close  read what is needed, session_write_close() at once, then work: no lock
                 during the work, but nothing can be saved afterwards.
    ?mode=merge  phpsess's merge mode: session_start({"concurrency": "merge"}); no lock
                 during the work, and what this request writes (its own key) is merged
                 into the stored session at the end.
    &i=N         the request's number (its key in merge/hold mode); &ms=500 the work time.

Answers JSON: when the request started, got its session, and ended (server clock,
seconds since the epoch), its pid, and how many hits the session had counted.
"""

import json
import os
import time

import phpsess
from phpsess import GET, SESSION

started = time.time()
mode = GET.get("mode", "hold")
i = str(GET.get("i", "0"))
try:
    work = min(max(int(GET.get("ms", 500)), 0), 10000) / 1000
except ValueError:
    work = 0.5

if mode == "merge":
    phpsess.session_start({"concurrency": "merge"})
else:
    phpsess.session_start()
locked = time.time()
hits = SESSION.get("hits", 0)
if mode == "close":
    phpsess.session_write_close()  # from here on, other requests of this session may run

time.sleep(work)  # the slow part: an API call, a report, a big query...

if mode == "hold":
    hits += 1
    SESSION["hits"] = hits  # read-modify-write: safe, the lock is held
if mode in ("hold", "merge"):
    SESSION[f"slow_{i}"] = {"mode": mode, "at": round(time.time(), 3), "pid": os.getpid()}

phpsess.header("Content-Type: application/json")
print(json.dumps({
    "i": i,
    "mode": mode,
    "pid": os.getpid(),
    "start": started,
    "session": locked,
    "end": time.time(),
    "hits": hits,
    "sid": phpsess.session_id(),
}))
