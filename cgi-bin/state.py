#!/usr/bin/env python3
"""state.py: what the demo's session holds now, read back from the store, as JSON.

    GET               session_start({"read_and_close": True}): reads, never locks past the read
    POST ?reset=1     session_start(); unset hits and every slow_<i>; write (before a run)
    GET ?probe=1      no session: the server's ports, so the demo page can tell whether an
                      extra port it was given reaches this same server

Answers {"sid", "hits", "keys": {"<i>": "<mode of the request that saved it>"},
"views", "save_path"}.
"""

import json
from collections.abc import Mapping

import phpsess
from phpsess import GET, SERVER, SESSION
from phpsess.tools.demo import use_private_save_path

phpsess.header("Content-Type: application/json")
phpsess.header("Cache-Control: no-store")
if GET.get("probe"):
    print(json.dumps({"ports": str(SERVER.get("PHPSESS_SERVE_PORTS", ""))}))
    raise SystemExit

save_path = use_private_save_path()
if SERVER.get("REQUEST_METHOD") == "POST" and GET.get("reset"):
    phpsess.session_start()
    for key in [k for k in SESSION if k == "hits" or str(k).startswith("slow_")]:
        del SESSION[key]
    phpsess.session_write_close()
else:
    phpsess.session_start({"read_and_close": True})

keys = {}
for key, value in SESSION.items():
    if str(key).startswith("slow_"):
        # a PHP array is a phpsess.PHPArray (a Mapping, docs/types.md), or a dict
        keys[str(key)[5:]] = value.get("mode", "") if isinstance(value, Mapping) else ""
print(json.dumps({
    "sid": phpsess.session_id(),
    "hits": SESSION.get("hits", 0),
    "keys": keys,
    "views": SESSION.get("demo_views", 0),
    "save_path": save_path,
}))
