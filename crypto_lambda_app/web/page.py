"""The live page: one self-contained HTML document (inline CSS, JS and SVG candles; nothing from a CDN, so
it works behind a firewall and offline). It polls ``/api/bars`` per symbol every few seconds.

Stable hooks for tests and scrapers: each symbol is ``section#sym-<SYMBOL>[data-symbol]`` with
``data-updates`` (successful polls so far) and ``data-latest-ms``; the latest minute bar is
``#latest-<SYMBOL>`` and the provisional daily bar ``#daily-<SYMBOL>``, whose cells carry
``data-field`` (time, open, high, low, close, volume, ...) and ``data-value`` (the exact JSON number).
Prices are shown exactly as the stream wrote them; volumes to 12 significant digits.
Query parameters: ``refresh`` (seconds, default 5, minimum 1) and ``minutes`` (bars in the chart).
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>crypto-lambda · live</title>
<style>
  :root { --bg:#0f1419; --card:#171d24; --fg:#d8dee6; --mute:#8593a3; --up:#26a69a; --down:#ef5350;
          --grid:#26303b; --accent:#f0b90b; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg);
         color:var(--fg); }
  header { display:flex; align-items:baseline; gap:1rem; padding:.8rem 1.2rem; border-bottom:1px solid var(--grid); }
  header h1 { font-size:1.1rem; margin:0; }
  #status { color:var(--mute); font-size:.85rem; }
  #status[data-state="error"] { color:var(--down); }
  main { display:grid; grid-template-columns:repeat(auto-fit, minmax(560px, 1fr)); gap:1rem; padding:1rem; }
  section.symbol { background:var(--card); border-radius:8px; padding:.8rem 1rem; }
  section.symbol h2 { margin:0 0 .2rem; font-size:1.05rem; display:flex; gap:.8rem; align-items:baseline; }
  .age { color:var(--mute); font-size:.85rem; }
  .age[data-stale="1"] { color:var(--accent); }
  .empty { color:var(--mute); padding:2rem 0; text-align:center; }
  svg.chart { width:100%; height:280px; display:block; margin:.4rem 0; }
  svg text { fill:var(--mute); font-size:10px; }
  .tables { display:grid; grid-template-columns:1fr 1fr; gap:1rem; }
  table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
  caption { text-align:left; color:var(--mute); font-size:.8rem; padding-bottom:.2rem; }
  th { text-align:left; color:var(--mute); font-weight:normal; padding:.1rem .4rem .1rem 0; }
  td { text-align:right; padding:.1rem 0; }
</style>
</head>
<body>
<header>
  <h1>crypto-lambda · live 1-minute bars</h1>
  <span id="status" data-state="loading">loading…</span>
</header>
<main id="symbols"></main>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const REFRESH_S = Math.max(1, Number(params.get("refresh")) || 5);
const MINUTES = Math.min(1440, Math.max(1, parseInt(params.get("minutes") || "120", 10) || 120));
const NS = "http://www.w3.org/2000/svg";
const state = {};  // symbol -> {data, fetchedAt, serverNow}

const pad = n => String(n).padStart(2, "0");
function utc(ms, seconds) {
  const d = new Date(ms);
  const s = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
            `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  return (seconds ? `${s}:${pad(d.getUTCSeconds())}` : s) + " UTC";
}
const price = x => (x === null || x === undefined) ? "–" : String(x);
const volume = x => (x === null || x === undefined) ? "–" : String(Number(x.toPrecision(12)));
function duration(ms) {
  if (ms < 0) ms = 0;
  const s = Math.floor(ms / 1000), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
        m = Math.floor(s % 3600 / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function table(id, caption, fields) {
  const t = el("table", {id});
  t.appendChild(el("caption", {}, caption));
  for (const [field, label] of fields) {
    const tr = el("tr");
    tr.appendChild(el("th", {}, label));
    tr.appendChild(el("td", {"data-field": field}, "–"));
    t.appendChild(tr);
  }
  return t;
}

function card(symbol) {
  const s = el("section", {class: "symbol", id: `sym-${symbol}`, "data-symbol": symbol, "data-updates": "0"});
  const h = el("h2");
  h.appendChild(el("span", {}, symbol));
  h.appendChild(el("span", {class: "age", "data-field": "age"}, "data age –"));
  s.appendChild(h);
  s.appendChild(el("div", {class: "chart-box"}));
  const tables = el("div", {class: "tables"});
  tables.appendChild(table(`latest-${symbol}`, "latest 1-minute bar (committed)", [
    ["time", "open time"], ["open", "open"], ["high", "high"], ["low", "low"], ["close", "close"],
    ["volume", "volume"], ["trades", "trades"]]));
  tables.appendChild(table(`daily-${symbol}`, "provisional daily bar (today so far)", [
    ["date", "date"], ["open", "open"], ["high", "high"], ["low", "low"], ["close", "close"],
    ["volume", "volume"], ["minutes", "minutes"], ["as_of", "as of"]]));
  s.appendChild(tables);
  return s;
}

function setCell(tableEl, field, text, value) {
  const td = tableEl.querySelector(`[data-field="${field}"]`);
  td.textContent = text;
  if (value === null || value === undefined) td.removeAttribute("data-value");
  else td.setAttribute("data-value", String(value));
}

function svg(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function chart(bars, width) {
  // The viewBox is the box's pixel size, so labels are never stretched.
  const W = Math.max(320, Math.round(width || 900)), H = 280, L = 8, R = 70, T = 8, B = 22, VOL = 44;
  const root = svg("svg", {class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
                           "aria-label": "1-minute candles"});
  if (!bars.length) return root;
  const lo = Math.min(...bars.map(b => b.l)), hi = Math.max(...bars.map(b => b.h));
  const span = (hi - lo) || Math.abs(hi) * 1e-6 || 1;
  const top = hi + span * 0.05, bottom = lo - span * 0.05;
  const plotH = H - T - B - VOL;
  const y = p => T + (top - p) / (top - bottom) * plotH;
  const slot = (W - L - R) / bars.length;
  const x = i => L + slot * (i + 0.5);
  const vmax = Math.max(...bars.map(b => b.v || 0)) || 1;
  for (let k = 0; k <= 4; k++) {
    const p = bottom + (top - bottom) * k / 4;
    root.appendChild(svg("line", {x1: L, x2: W - R, y1: y(p), y2: y(p), stroke: "var(--grid)"}));
    const label = svg("text", {x: W - R + 4, y: y(p) + 3});
    label.textContent = p.toPrecision(7).replace(/\.?0+$/, "");
    root.appendChild(label);
  }
  const every = Math.max(1, Math.ceil(bars.length / 6));
  bars.forEach((b, i) => {
    const color = b.c >= b.o ? "var(--up)" : "var(--down)";
    const w = Math.max(1, slot * 0.7);
    root.appendChild(svg("line", {x1: x(i), x2: x(i), y1: y(b.h), y2: y(b.l), stroke: color}));
    const y0 = y(Math.max(b.o, b.c)), h = Math.max(1, Math.abs(y(b.o) - y(b.c)));
    root.appendChild(svg("rect", {x: x(i) - w / 2, y: y0, width: w, height: h, fill: color}));
    const vh = (b.v || 0) / vmax * (VOL - 6);
    root.appendChild(svg("rect", {x: x(i) - w / 2, y: H - B - vh, width: w, height: vh, fill: color,
                                  opacity: 0.45}));
    if (i % every === 0) {
      const t = svg("text", {x: x(i), y: H - 6, "text-anchor": "middle"});
      t.textContent = utc(b.t).slice(11, 16);
      root.appendChild(t);
    }
  });
  const last = bars[bars.length - 1];
  root.appendChild(svg("line", {x1: L, x2: W - R, y1: y(last.c), y2: y(last.c), stroke: "var(--accent)",
                                "stroke-dasharray": "3 3"}));
  return root;
}

function render(symbol) {
  const {data} = state[symbol];
  const s = document.getElementById(`sym-${symbol}`);
  const box = s.querySelector(".chart-box");
  box.replaceChildren(data.bars.length ? chart(data.bars, box.clientWidth)
                                       : el("div", {class: "empty"}, "no committed 1-minute bars yet"));
  const latest = document.getElementById(`latest-${symbol}`), b = data.latest;
  setCell(latest, "time", b ? utc(b.t) : "–", b ? b.t : null);
  for (const [f, k] of [["open", "o"], ["high", "h"], ["low", "l"], ["close", "c"]])
    setCell(latest, f, price(b && b[k]), b && b[k]);
  setCell(latest, "volume", volume(b && b.v), b && b.v);
  setCell(latest, "trades", b && b.n !== null ? String(b.n) : "–", b && b.n);
  const daily = document.getElementById(`daily-${symbol}`), d = data.daily;
  setCell(daily, "date", d ? d.date : "–", d && d.date);
  for (const [f, k] of [["open", "o"], ["high", "h"], ["low", "l"], ["close", "c"]])
    setCell(daily, f, price(d && d[k]), d && d[k]);
  setCell(daily, "volume", volume(d && d.v), d && d.v);
  setCell(daily, "minutes", d ? `${d.minutes} (${d.committed_minutes} committed + ${d.provisional_minutes} ` +
          "in progress)" : "–", d && d.minutes);
  setCell(daily, "as_of", d && d.as_of_ms ? utc(d.as_of_ms, true) : "–", d && d.as_of_ms);
  s.setAttribute("data-latest-ms", b ? String(b.t) : "");
  s.setAttribute("data-updates", String(Number(s.getAttribute("data-updates")) + 1));
  tickAge(symbol);
}

function tickAge(symbol) {
  const st = state[symbol];
  if (!st) return;
  const age = document.querySelector(`#sym-${symbol} .age`);
  const t = st.data.data_time_ms;
  if (t === null || t === undefined) { age.textContent = "no data yet"; age.removeAttribute("data-value"); return; }
  const ms = st.serverNow - t + (Date.now() - st.fetchedAt);  // server clock: browser clocks may be off
  age.textContent = `data age ${duration(ms)}`;
  age.setAttribute("data-value", String(Math.round(ms)));
  age.setAttribute("data-stale", ms > 5 * 60 * 1000 ? "1" : "0");
}

async function poll(symbols) {
  const status = document.getElementById("status");
  try {
    await Promise.all(symbols.map(async symbol => {
      const r = await fetch(`api/bars?symbol=${encodeURIComponent(symbol)}&minutes=${MINUTES}`,
                            {cache: "no-store"});
      if (!r.ok) throw new Error(`${symbol}: HTTP ${r.status}`);
      const data = await r.json();
      state[symbol] = {data, fetchedAt: Date.now(), serverNow: data.now_ms};
      render(symbol);
    }));
    status.dataset.state = "ok";
    status.textContent = `updated ${utc(Date.now(), true)} · refreshes every ${REFRESH_S} s`;
  } catch (err) {
    status.dataset.state = "error";
    status.textContent = `update failed (${err.message}); showing the last good data, retrying`;
  }
}

async function main() {
  const status = document.getElementById("status");
  let symbols;
  while (!symbols) {
    try {
      symbols = (await (await fetch("api/symbols", {cache: "no-store"})).json()).symbols;
    } catch (err) {
      status.dataset.state = "error";
      status.textContent = `cannot reach the server (${err.message}); retrying`;
      await new Promise(done => setTimeout(done, REFRESH_S * 1000));
    }
  }
  const container = document.getElementById("symbols");
  symbols.forEach(symbol => container.appendChild(card(symbol)));
  const again = async () => {  // chained, not setInterval: a slow poll never overlaps the next one
    await poll(symbols);
    setTimeout(again, REFRESH_S * 1000);
  };
  setInterval(() => symbols.forEach(tickAge), 1000);
  await again();
}
main();
</script>
</body>
</html>
"""
