#!/usr/bin/env python3
"""demo.py: why PHP sessions make parallel AJAX slow, in one page.

The page fires 10 parallel requests at slow.py (500 ms of work each) on this
session, in three modes, and draws when each one started, got the session and
finished, and what each saved:

* hold  -- PHP's default: the session lock is held during the work, the 10 requests
           run one after the other (about 5 s); all their writes are saved;
* close -- session_write_close() before the work: about 0.5 s, but what the
           requests write after the close is lost;
* merge -- phpsess's merge mode: about 0.5 s, and every request's own key is saved
           (the one key all ten change, ``hits``, keeps the last write).

After each mode the page reads the session back (state.py) and shows what was kept.

First look: the page runs the three modes on load, and keeps the last run in the
browser (localStorage) to show it at once next time; ?autorun=1 runs again anyway,
?autorun=0 never runs by itself.  Totals end up in <span id="total-hold"> etc.,
and <span id="status"> reads "done" (or "last run ...").

Browsers open at most 6 HTTP/1.1 connections per host:port.  Under
``phpsess serve`` the page spreads its requests over the server's extra ports
($_SERVER["PHPSESS_SERVE_PORTS"]) so that all 10 really run at once; cookies
ignore ports, so they all carry this session.  When those ports cannot be reached
from the browser (a port forward of one port), or there are none (nginx), the page
asks fanout.py to send the 10 requests from the server; ?via=origin sends them from
the browser over this one origin instead (the browser then runs 6 at a time).

Sessions are kept in the demo's private directory (mode 0700) unless
session.save_path is configured; the page says which.
"""

import html
import json
import os

import phpsess
from phpsess import SERVER, SESSION
from phpsess.tools.demo import save_path_note, use_private_save_path

own = not phpsess.ini_get("session.save_path")
save_path = use_private_save_path()
phpsess.session_start()
SESSION["demo_views"] = SESSION.get("demo_views", 0) + 1
views = SESSION["demo_views"]
phpsess.session_write_close()  # the page itself must not hold the lock

ports = [int(p) for p in str(SERVER.get("PHPSESS_SERVE_PORTS", "")).split(",") if p.strip().isdigit()]
base = os.path.dirname(str(SERVER.get("SCRIPT_NAME", "/demo.py"))).rstrip("/") + "/"
where = (
    f"Sessions of this demo are kept in {save_path_note(save_path)}, a directory of its own: "
    "PHP's default, the system's temporary directory, can be listed by every local user."
    if own else f"Sessions are kept in session.save_path = {save_path_note(save_path)}."
)

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>phpsess demo: 10 parallel requests on one session</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 62em; padding: 0 1em; color: #222; }
  h1 { font-size: 1.5em; margin-bottom: .2em; }
  code, pre { font: 13px ui-monospace, monospace; background: #f4f4f4; padding: 0 .25em; }
  pre { padding: .4em .5em; margin: .3em 0; white-space: pre-wrap; overflow-wrap: anywhere; }
  .mode { border: 1px solid #ddd; border-radius: 6px; padding: .5em 1em; margin: .8em 0; }
  .mode h2 { font-size: 1.1em; margin: .2em 0; }
  .total { font-size: 1.4em; font-weight: bold; }
  .outcome { margin-left: 1.2em; }
  .good { color: #1d7a43; font-weight: bold; } .bad { color: #c0392b; font-weight: bold; }
  button { font: inherit; padding: .3em .9em; margin-right: .4em; }
  svg { display: block; width: 100%; height: auto; margin-top: .3em; }
  .wait { fill: #ccc; } .work { fill: #3a7bd5; } .mode-close .work { fill: #e08a1e; } .mode-merge .work { fill: #2e9d5b; }
  .kept { fill: #2e9d5b; } .lost { fill: #c0392b; } .empty { fill: #fff; stroke: #c0392b; }
  .axis { stroke: #999; stroke-width: 1; } .grid { stroke: #eee; stroke-width: 1; }
  svg text { font: 11px system-ui, sans-serif; fill: #555; } svg text.mark { fill: #fff; font-weight: bold; }
  #status { font-weight: bold; }
  .note { color: #666; font-size: .9em; }
</style>
</head>
<body data-ports="%%PORTS%%" data-base="%%BASE%%">
<h1>10 parallel requests, one session</h1>
<p>Each request below runs <code>slow.py</code>: 500 ms of work inside a session, then two writes:
<code>hits</code> + 1 (a key all ten change) and <code>slow_<i>i</i></code> (a key of its own).
PHP locks the session from <code>session_start()</code> to the end of the request, so a page
that fires AJAX calls in parallel gets them answered <em>one at a time</em>.
The same 10 requests, three ways; after each, the page reads the session back and marks what was
<span class="good">saved</span> and what was <span class="bad">lost</span>.</p>
<p><button id="run-all">Run all three</button>
<button data-mode="hold">hold</button><button data-mode="close">close</button><button data-mode="merge">merge</button>
Status: <span id="status">starting</span></p>

<div class="mode mode-hold"><h2>hold &mdash; PHP's default</h2>
<pre>session_start(); sleep(0.5); $_SESSION['hits']++; $_SESSION["slow_$i"] = ...;   // lock held throughout</pre>
Total: <span class="total"><span id="total-hold">&ndash;</span> s</span>
<span class="outcome">hits counted: <span id="hits-hold">&ndash;</span> of 10,
keys kept: <span id="keys-hold">&ndash;</span> of 10</span>
<span class="note">(browser: <span id="wall-hold">&ndash;</span> s, <span id="pids-hold">&ndash;</span> worker processes)</span>
<div id="chart-hold"></div></div>

<div class="mode mode-close"><h2>close &mdash; <code>session_write_close()</code> early</h2>
<pre>session_start(); session_write_close(); sleep(0.5); $_SESSION['hits']++; $_SESSION["slow_$i"] = ...;   // after the close: not saved</pre>
Total: <span class="total"><span id="total-close">&ndash;</span> s</span>
<span class="outcome">hits counted: <span id="hits-close">&ndash;</span> of 10,
keys kept: <span id="keys-close">&ndash;</span> of 10</span>
<span class="note">(browser: <span id="wall-close">&ndash;</span> s, <span id="pids-close">&ndash;</span> worker processes)</span>
<div id="chart-close"></div></div>

<div class="mode mode-merge"><h2>merge &mdash; phpsess's <code>session_start({"concurrency": "merge"})</code></h2>
<pre>session_start({"concurrency": "merge"}); sleep(0.5); SESSION["hits"] += 1; SESSION[f"slow_{i}"] = ...   # no lock while working; changed keys merged at the end</pre>
Total: <span class="total"><span id="total-merge">&ndash;</span> s</span>
<span class="outcome">hits counted: <span id="hits-merge">&ndash;</span> of 10,
keys kept: <span id="keys-merge">&ndash;</span> of 10</span>
<span class="note">(browser: <span id="wall-merge">&ndash;</span> s, <span id="pids-merge">&ndash;</span> worker processes)</span>
<div id="chart-merge"></div>
<div class="note">Every request's own key is kept; <code>hits</code>, which all ten change from the same value,
keeps the last write: merging is per top-level key (count with a key per request, or hold the lock for that one).</div></div>

<p class="note">Bars: grey = waiting for the session lock, colour = working with the session,
times from the server's clock relative to the first request's start.  Right: request <i>i</i>'s own key
<code>slow_<i>i</i></code>, found (&check;) or not (&cross;) in the session afterwards; below: the
<code>hits</code> counter as stored, one square per hit out of 10.  Browser: the time the browser
measured for the whole run (Resource Timing, so a headless browser's virtual clock does not shorten it).
<span id="via"></span></p>
<p class="note" id="session-now">This session: view %%VIEWS%%.</p>
<p class="note" id="save-path">%%WHERE%%</p>

<script>
"use strict";
const N = 10;
const MODES = ["hold", "close", "merge"];
const PORTS = JSON.parse(document.body.dataset.ports);
const BASE = document.body.dataset.base;
const STORE = "phpsess-demo:last-run:" + location.pathname;
const params = new URLSearchParams(location.search);
const here = location.port || (location.protocol === "https:" ? "443" : "80");
let via = null;   // {kind: "ports" | "fanout" | "origin", origins: [...], note: "..."}

function $(id) { return document.getElementById(id); }

async function fetchJSON(url, options = {}, timeout = 0) {
  const ctl = new AbortController();
  const timer = timeout ? setTimeout(() => ctl.abort(), timeout) : null;
  try {
    const r = await fetch(url, {credentials: "include", cache: "no-store", signal: ctl.signal, ...options});
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    return await r.json();
  } finally {
    if (timer) clearTimeout(timer);
  }
}

// How the 10 requests travel: over the server's extra ports when this browser reaches
// them (and they are this same server), else fanned out by the server itself.
async function chooseVia() {
  const others = PORTS.map(String).filter(p => p !== here);
  if (params.get("via") === "origin") {
    return {kind: "origin", origins: [""], note: "All requests from the browser over this one origin "
      + "(?via=origin): the browser runs at most 6 at once, so the 7th and later queue in the browser."};
  }
  if (PORTS.length > 1 && PORTS.map(String).includes(here)) {
    const origins = PORTS.map(p => `${location.protocol}//${location.hostname}:${p}`);
    const answers = await Promise.all(others.map(p =>
      fetchJSON(`${location.protocol}//${location.hostname}:${p}${BASE}state.py?probe=1`, {}, 3000)
        .then(j => j.ports === PORTS.join(","), () => false)));
    if (answers.every(Boolean)) {
      return {kind: "ports", origins, note: `Requests sent by the browser over ports ${PORTS.join(", ")} `
        + "(browsers open at most 6 connections per host:port)."};
    }
    const missing = others.filter((p, k) => !answers[k]);
    return {kind: "fanout", origins: [""], note: `Port${missing.length > 1 ? "s" : ""} ${missing.join(", ")} `
      + "cannot be reached from this browser (a port forward of one port?), so the server sent the 10 "
      + "requests to itself (fanout.py) and the browser made one request per mode; choose reachable "
      + "ports with phpsess serve --extra-ports."};
  }
  const why = PORTS.length > 1
    ? `This page came through port ${here}, not one of the server's (${PORTS.join(", ")}): a proxy or a port forward`
    : "This server has no extra ports";
  return {kind: "fanout", origins: [""], note: `${why}, so the server sent the 10 requests to itself `
    + "(fanout.py) and the browser made one request per mode; the browser alone would run at most 6 at once."};
}

function entryOf(url) {
  const list = performance.getEntriesByName(new URL(url, location.href).href);
  return list.length ? list[list.length - 1] : null;
}

// The browser's time for a run: from the first request sent to the last response's first
// byte, from the network stack's timestamps (real even when a headless browser runs on
// virtual time, which stops its performance.now() while requests are pending).
function browserSeconds(urls, fallback) {
  const es = urls.map(entryOf);
  if (es.some(e => !e || !e.requestStart || !e.responseStart)) return fallback;
  return (Math.max(...es.map(e => e.responseStart)) - Math.min(...es.map(e => e.requestStart))) / 1000;
}

async function run(mode, onProgress) {
  $("total-" + mode).textContent = "…";
  for (const k of ["hits", "keys", "wall", "pids"]) $(k + "-" + mode).textContent = "–";
  performance.clearResourceTimings();
  await fetchJSON(`${BASE}state.py?reset=1`, {method: "POST"});
  const t0 = performance.now();
  let res, urls;
  if (via.kind === "fanout") {
    urls = [`${BASE}fanout.py?mode=${mode}&n=${N}&t=${Date.now()}`];
    const j = await fetchJSON(urls[0]);
    if (!Array.isArray(j)) throw new Error("fanout.py: " + (j.error || "no results"));
    res = j;
  } else {
    urls = [...Array(N).keys()].map(i =>
      `${via.origins[i % via.origins.length]}${BASE}slow.py?mode=${mode}&i=${i}&t=${Date.now()}`);
    const got = [];
    res = await Promise.all(urls.map(u => fetchJSON(u).then(j => { got.push(j); onProgress(got); return j; })));
  }
  const wall = browserSeconds(urls, (performance.now() - t0) / 1000);
  const state = await fetchJSON(`${BASE}state.py?t=${Date.now()}`);
  const first = Math.min(...res.map(r => r.start));
  const total = Math.max(...res.map(r => r.end)) - first;
  return {res, wall, total, hits: state.hits, keys: Object.keys(state.keys).map(Number), views: state.views};
}

function show(mode, r) {
  $("total-" + mode).textContent = r.total.toFixed(2);
  $("wall-" + mode).textContent = r.wall.toFixed(2);
  $("pids-" + mode).textContent = new Set(r.res.map(x => x.pid)).size;
  $("hits-" + mode).textContent = r.hits;
  $("keys-" + mode).textContent = r.keys.length;
  $("hits-" + mode).className = r.hits === N ? "good" : "bad";
  $("keys-" + mode).className = r.keys.length === N ? "good" : "bad";
  draw(mode, r.res, r);
}

function draw(mode, res, outcome) {
  const first = Math.min(...res.map(r => r.start));
  const scale = Math.max(6, ...res.map(r => r.end - first));
  const W = 800, left = 40, right = 120, row = 18, top = 6, rows = N;
  const axisY = top + row * rows, H = axisY + 22 + 26;
  const x = t => left + (W - left - right) * t / scale;
  let s = `<svg viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${mode} waterfall">`;
  for (let t = 0; t <= scale + 1e-9; t += 1) {
    s += `<line class="grid" x1="${x(t)}" x2="${x(t)}" y1="${top}" y2="${axisY}"/>`;
    s += `<text x="${x(t)}" y="${axisY + 14}" text-anchor="middle">${t} s</text>`;
  }
  // in the order they got the session: the lock's queue reads top to bottom
  [...res].sort((a, b) => a.session - b.session || a.start - b.start).forEach((r, k) => {
    const y = top + k * row;
    const a = r.start - first, b = r.session - first, c = r.end - first;
    s += `<text x="${left - 6}" y="${y + 12}" text-anchor="end">#${r.i}</text>`;
    s += `<rect class="wait" x="${x(a)}" y="${y + 2}" width="${Math.max(x(b) - x(a), 0)}" height="${row - 5}"><title>#${r.i} waited ${(b - a).toFixed(3)} s for the session</title></rect>`;
    s += `<rect class="work" x="${x(b)}" y="${y + 2}" width="${Math.max(x(c) - x(b), 1)}" height="${row - 5}"><title>#${r.i} pid ${r.pid}: ${a.toFixed(3)} → ${c.toFixed(3)} s</title></rect>`;
    if (outcome) {
      const kept = outcome.keys.includes(Number(r.i));
      const mx = W - right + 12;
      s += `<rect class="${kept ? "kept" : "lost"} key-mark" x="${mx}" y="${y + 1}" width="${row - 3}" height="${row - 3}" rx="3"><title>slow_${r.i} ${kept ? "saved" : "lost"}</title></rect>`;
      s += `<text class="mark" x="${mx + (row - 3) / 2}" y="${y + 13}" text-anchor="middle">${kept ? "✓" : "✗"}</text>`;
      s += `<text x="${mx + row + 2}" y="${y + 12}">slow_${r.i} ${kept ? "saved" : "lost"}</text>`;
    }
  });
  s += `<line class="axis" x1="${left}" x2="${left}" y1="${top}" y2="${axisY}"/>`;
  if (outcome) {
    const y = axisY + 26, size = 14;
    s += `<text x="${left - 6}" y="${y + 11}" text-anchor="end">hits</text>`;
    for (let k = 0; k < N; k++) {
      s += `<rect class="${k < outcome.hits ? "kept" : "empty"} hit-mark" x="${left + k * (size + 3)}" y="${y}" width="${size}" height="${size}" rx="2"/>`;
    }
    const lost = N - Math.min(outcome.hits, N);
    s += `<text x="${left + N * (size + 3) + 6}" y="${y + 11}">${outcome.hits} of ${N} increments stored`
      + (lost ? `, ${lost} lost` : "") + `; ${outcome.keys.length} of ${N} own keys kept</text>`;
  }
  $("chart-" + mode).innerHTML = s + "</svg>";
}

function keep(results) {
  try {
    localStorage.setItem(STORE, JSON.stringify({at: new Date().toISOString(), via: via && via.note, results}));
  } catch (e) { /* private mode: nothing kept */ }
}

function kept() {
  try { return JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { return null; }
}

let busy = false;
async function runModes(modes) {
  if (busy) return;
  busy = true;
  document.querySelectorAll("button").forEach(b => b.disabled = true);
  const results = (kept() || {}).results || {};
  modes.forEach(m => { $("total-" + m).textContent = "…"; });  // queued
  try {
    if (!via) {
      $("status").textContent = "checking the ports";
      via = await chooseVia();
      $("via").textContent = via.note;
    }
    for (const [k, m] of modes.entries()) {
      $("status").textContent = `running ${m}` + (modes.length > 1 ? ` (${k + 1} of ${modes.length})` : "");
      $("chart-" + m).innerHTML = "";
      const r = await run(m, got => draw(m, got, null));
      show(m, r);
      results[m] = r;
      $("session-now").textContent = `This session: view ${r.views}; stored now: hits = ${r.hits}, `
        + `${r.keys.length} slow_i keys (read back from the session after the ${m} run).`;
    }
    keep(results);
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

const last = kept();
const complete = last && last.results && MODES.every(m => last.results[m]);
if (complete) {
  MODES.forEach(m => show(m, last.results[m]));
  $("via").textContent = last.via || "";
}
if (params.get("autorun") === "1" || (params.get("autorun") !== "0" && !complete)) {
  runModes(MODES);
} else if (complete) {
  $("status").textContent = `last run ${new Date(last.at).toLocaleString()} (kept by this browser); press Run to run again`;
} else {
  $("status").textContent = "idle";
}
</script>
</body>
</html>
"""

print(
    PAGE.replace("%%PORTS%%", html.escape(json.dumps(ports)))
    .replace("%%BASE%%", html.escape(base))
    .replace("%%VIEWS%%", str(views))
    .replace("%%WHERE%%", html.escape(where)),
    end="",
)
