#!/usr/bin/env python3
"""demo.py: why PHP sessions make parallel AJAX slow, in one page.

The page fires 10 parallel requests at slow.py (500 ms of work each) on this
session, in three modes, and draws when each one started, got the session and
finished:

* hold  -- PHP's default: the session lock is held during the work, the 10 requests
           run one after the other (about 5 s);
* close -- session_write_close() before the work: about 0.5 s, but the requests
           cannot save anything;
* merge -- phpsess's merge mode: about 0.5 s, and every request saves its own key.

Open it with ?autorun=1 to run the three modes on load (the totals end up in
<span id="total-hold"> etc., and <span id="status"> reads "done").

Browsers open at most 6 HTTP/1.1 connections per host:port.  Under
``phpsess serve`` the page spreads its requests over the server's extra ports
($_SERVER["PHPSESS_SERVE_PORTS"]) so that all 10 really run at once; cookies
ignore ports, so they all carry this session.  Elsewhere (nginx) they share one
origin and the browser queues the 7th onwards.
"""

import html
import json
import os

import phpsess
from phpsess import SERVER, SESSION

phpsess.session_start()
SESSION["demo_views"] = SESSION.get("demo_views", 0) + 1
views = SESSION["demo_views"]
hits = SESSION.get("hits", 0)
merged = sorted(k for k in SESSION if str(k).startswith("slow_"))
phpsess.session_write_close()  # the page itself must not hold the lock

ports = [int(p) for p in str(SERVER.get("PHPSESS_SERVE_PORTS", "")).split(",") if p.strip().isdigit()]
base = os.path.dirname(str(SERVER.get("SCRIPT_NAME", "/demo.py"))).rstrip("/") + "/"

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>phpsess demo: 10 parallel requests on one session</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
  h1 { font-size: 1.5em; margin-bottom: .2em; }
  code, pre { font: 13px ui-monospace, monospace; background: #f4f4f4; padding: 0 .25em; }
  pre { padding: .5em; overflow-x: auto; }
  .mode { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; margin: 1em 0; }
  .mode h2 { font-size: 1.1em; margin: .2em 0; }
  .total { font-size: 1.4em; font-weight: bold; }
  button { font: inherit; padding: .3em .9em; margin-right: .4em; }
  svg { display: block; width: 100%; height: auto; margin-top: .5em; }
  .wait { fill: #ccc; } .work { fill: #3a7bd5; } .mode-close .work { fill: #e08a1e; } .mode-merge .work { fill: #2e9d5b; }
  .axis { stroke: #999; stroke-width: 1; } .grid { stroke: #eee; stroke-width: 1; }
  svg text { font: 11px system-ui, sans-serif; fill: #555; }
  #status { font-weight: bold; }
  .note { color: #666; font-size: .9em; }
</style>
</head>
<body data-ports="%%PORTS%%" data-base="%%BASE%%">
<h1>10 parallel requests, one session</h1>
<p>Each request below runs <code>slow.py</code>: 500 ms of work inside a session.
PHP locks the session from <code>session_start()</code> to the end of the request, so a page
that fires AJAX calls in parallel gets them answered <em>one at a time</em>.
This page (view %%VIEWS%% of this session, %%HITS%% hits counted by hold mode,
%%MERGED%% keys saved by merge/hold requests) runs the same 10 requests three ways.</p>
<p><button id="run-all">Run all three</button>
<button data-mode="hold">hold</button><button data-mode="close">close</button><button data-mode="merge">merge</button>
Status: <span id="status">idle</span></p>

<div class="mode mode-hold"><h2>hold &mdash; PHP's default</h2>
<pre>session_start(); sleep(0.5); $_SESSION['hits']++;      // lock held during the work</pre>
Total: <span class="total"><span id="total-hold">&ndash;</span> s</span>
<span class="note">(browser: <span id="wall-hold">&ndash;</span> s, <span id="pids-hold">&ndash;</span> worker processes)</span>
<div id="chart-hold"></div></div>

<div class="mode mode-close"><h2>close &mdash; <code>session_write_close()</code> early</h2>
<pre>session_start(); $hits = $_SESSION['hits']; session_write_close(); sleep(0.5);   // nothing saved after</pre>
Total: <span class="total"><span id="total-close">&ndash;</span> s</span>
<span class="note">(browser: <span id="wall-close">&ndash;</span> s, <span id="pids-close">&ndash;</span> worker processes)</span>
<div id="chart-close"></div></div>

<div class="mode mode-merge"><h2>merge &mdash; phpsess's <code>session_start({"concurrency": "merge"})</code></h2>
<pre>session_start({"concurrency": "merge"}); sleep(0.5); SESSION[f"slow_{i}"] = ...   # no lock; own key merged at the end</pre>
Total: <span class="total"><span id="total-merge">&ndash;</span> s</span>
<span class="note">(browser: <span id="wall-merge">&ndash;</span> s, <span id="pids-merge">&ndash;</span> worker processes)</span>
<div id="chart-merge"></div></div>

<p class="note">Bars: grey = waiting for the session lock, colour = working with the session,
times from the server's clock relative to the first request's start.
<span id="origins"></span></p>

<script>
"use strict";
const N = 10;
const MODES = ["hold", "close", "merge"];
const PORTS = JSON.parse(document.body.dataset.ports);
const BASE = document.body.dataset.base;
const here = location.port || (location.protocol === "https:" ? "443" : "80");
// Spread the requests over the server's ports only when this page came from one of them.
const ORIGINS = PORTS.length > 1 && PORTS.map(String).includes(here)
  ? PORTS.map(p => `${location.protocol}//${location.hostname}:${p}`)
  : [""];
document.getElementById("origins").textContent = ORIGINS.length > 1
  ? `Requests spread over ports ${PORTS.join(", ")} (browsers open at most 6 connections per host:port).`
  : "All requests on this origin: the browser runs at most 6 at once.";

function $(id) { return document.getElementById(id); }

async function one(mode, i) {
  const url = `${ORIGINS[i % ORIGINS.length]}${BASE}slow.py?mode=${mode}&i=${i}&t=${Date.now()}`;
  const sent = performance.now();
  const r = await fetch(url, {credentials: "include", cache: "no-store"});
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  const j = await r.json();
  j.sent = sent; j.done = performance.now();
  return j;
}

async function run(mode) {
  $("total-" + mode).textContent = "…";
  $("status").textContent = "running " + mode;
  const t0 = performance.now();
  const res = await Promise.all([...Array(N).keys()].map(i => one(mode, i)));
  const wall = (performance.now() - t0) / 1000;
  const first = Math.min(...res.map(r => r.start));
  const total = Math.max(...res.map(r => r.end)) - first;
  $("total-" + mode).textContent = total.toFixed(2);
  $("wall-" + mode).textContent = wall.toFixed(2);
  $("pids-" + mode).textContent = new Set(res.map(r => r.pid)).size;
  draw(mode, res, first);
  return total;
}

function draw(mode, res, first) {
  const scale = Math.max(6, ...res.map(r => r.end - first));
  const W = 800, left = 40, right = 10, row = 18, top = 6, H = top + row * res.length + 22;
  const x = t => left + (W - left - right) * t / scale;
  let s = `<svg viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${mode} waterfall">`;
  for (let t = 0; t <= scale + 1e-9; t += 1) {
    s += `<line class="grid" x1="${x(t)}" x2="${x(t)}" y1="${top}" y2="${H - 18}"/>`;
    s += `<text x="${x(t)}" y="${H - 4}" text-anchor="middle">${t} s</text>`;
  }
  res.sort((a, b) => a.start - b.start).forEach((r, k) => {
    const y = top + k * row;
    const a = r.start - first, b = r.session - first, c = r.end - first;
    s += `<text x="${left - 6}" y="${y + 12}" text-anchor="end">#${r.i}</text>`;
    s += `<rect class="wait" x="${x(a)}" y="${y + 2}" width="${Math.max(x(b) - x(a), 0)}" height="${row - 5}"><title>#${r.i} waited ${(b - a).toFixed(3)} s for the session</title></rect>`;
    s += `<rect class="work" x="${x(b)}" y="${y + 2}" width="${Math.max(x(c) - x(b), 1)}" height="${row - 5}"><title>#${r.i} pid ${r.pid}: ${a.toFixed(3)} → ${c.toFixed(3)} s</title></rect>`;
  });
  s += `<line class="axis" x1="${left}" x2="${left}" y1="${top}" y2="${H - 18}"/></svg>`;
  $("chart-" + mode).innerHTML = s;
}

let busy = false;
async function runModes(modes) {
  if (busy) return;
  busy = true;
  document.querySelectorAll("button").forEach(b => b.disabled = true);
  try {
    for (const m of modes) await run(m);
    $("status").textContent = "done";
  } catch (e) {
    $("status").textContent = "error: " + e.message;
  } finally {
    busy = false;
    document.querySelectorAll("button").forEach(b => b.disabled = false);
  }
}

$("run-all").addEventListener("click", () => runModes(MODES));
document.querySelectorAll("button[data-mode]").forEach(b =>
  b.addEventListener("click", () => runModes([b.dataset.mode])));
if (new URLSearchParams(location.search).get("autorun") === "1") runModes(MODES);
</script>
</body>
</html>
"""

print(
    PAGE.replace("%%PORTS%%", html.escape(json.dumps(ports)))
    .replace("%%BASE%%", html.escape(base))
    .replace("%%VIEWS%%", str(views))
    .replace("%%HITS%%", str(hits))
    .replace("%%MERGED%%", str(len(merged))),
    end="",
)
