#!/usr/bin/env python3
"""fanout.py: the demo's parallel requests, sent by the server to itself.

A browser opens at most 6 HTTP/1.1 connections per host:port; the demo page gets
past that with the server's extra ports.  When the browser cannot reach them (a port
forward that carries one port: ``docker run -p 8080:8080``, ``ssh -L 8080:...``), the
page asks this script instead: it sends ``slow.py?mode=M&i=0..n-1`` all at once to the
address the request came in on, with the browser's cookie (so the same session), and
answers the n JSON results in a list.  Their times come from the server's clock, as
in the browser's case.  No session of its own (it must not hold the lock).

    ?mode=hold|close|merge  &n=10 (1..16)  &ms=500
"""

import http.client
import json
import os
import threading

import phpsess
from phpsess import GET, SERVER

mode = GET.get("mode", "hold")
if mode not in ("hold", "close", "merge"):
    mode = "hold"
try:
    n = min(max(int(GET.get("n", 10)), 1), 16)
    ms = min(max(int(GET.get("ms", 500)), 0), 10000)
except ValueError:
    n, ms = 10, 500

address = str(SERVER.get("SERVER_ADDR", "127.0.0.1"))
port = int(SERVER.get("SERVER_PORT", 80))
base = os.path.dirname(str(SERVER.get("SCRIPT_NAME", "/fanout.py"))).rstrip("/") + "/"
headers = {"Host": str(SERVER.get("HTTP_HOST", f"{address}:{port}"))}
if SERVER.get("HTTP_COOKIE"):
    headers["Cookie"] = str(SERVER["HTTP_COOKIE"])

results: list = [None] * n
errors: list = []
ready = threading.Barrier(n)


def one(i: int) -> None:
    conn = http.client.HTTPConnection(address, port, timeout=60)
    try:
        conn.connect()
        ready.wait(10)  # all connected first, then all sent at once
        conn.request("GET", f"{base}slow.py?mode={mode}&i={i}&ms={ms}", headers=headers)
        r = conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise OSError(f"slow.py #{i}: HTTP {r.status}")
        results[i] = json.loads(body)
    except (OSError, ValueError, threading.BrokenBarrierError) as exc:
        errors.append(f"{exc}")
    finally:
        conn.close()


threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()

phpsess.header("Content-Type: application/json")
phpsess.header("Cache-Control: no-store")
if errors:
    phpsess.http_response_code(502)
    print(json.dumps({"error": "; ".join(errors[:3])}))
else:
    print(json.dumps(results))
