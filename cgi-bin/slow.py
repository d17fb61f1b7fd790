#!/usr/bin/env python3
"""slow.py: a slow AJAX endpoint -- 500 ms of work on the session, in one of three modes.

Every request does the same two writes after its work: ``hits += 1`` (one key that
all of them change) and ``slow_<i>`` (a key of its own).  What the modes differ in is
when the lock is held, and so what is saved:

    ?mode=hold   PHP's default: session_start(), work, write at the end. The session
                 lock is held during the work, so requests of one session run one at a
                 time; both writes of every request are saved (hits: 10 of 10).
    ?mode=close  read what is needed, session_write_close() at once, then work: no lock
                 during the work, and the writes after the close are lost, silently,
                 as in PHP ($_SESSION is only a local array by then).
    ?mode=merge  phpsess's merge mode: session_start({"concurrency": "merge"}); no lock
                 during the work, and the keys this request changed are merged into the
                 stored session at the end: every slow_<i> is kept, while ``hits``,
                 changed by all ten from the same value, keeps the last write (1).
    &i=N         the request's number (its key slow_<i>); &ms=500 the work time.

Answers JSON: when the request started, got its session, and ended (server clock,
seconds since the epoch), its pid, and ``hits``: the count it saw (plus its own
increment in hold and merge mode).  Sessions are kept in the demo's private
directory unless session.save_path is configured (phpsess.tools.demo).
"""

import json
import os
import time

import phpsess
from phpsess import GET, SESSION
from phpsess.tools.demo import use_private_save_path

use_private_save_path()

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

SESSION["hits"] = hits + 1  # read-modify-write: safe only while the lock is held (hold)
SESSION[f"slow_{i}"] = {"mode": mode, "at": round(time.time(), 3), "pid": os.getpid()}
if mode != "close":
    hits += 1

phpsess.header("Content-Type: application/json")
# the page measures each request with the Resource Timing API, across its ports too
phpsess.header("Timing-Allow-Origin: *")
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
