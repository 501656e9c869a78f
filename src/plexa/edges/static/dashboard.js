// plexa dashboard: plain JS, no dependencies. It reads the bearer token once from the
// URL fragment (#token=...), keeps it in sessionStorage, and talks to the same server's
// HTTP API: the SSE stream (read with fetch, so the token goes in a header) for the
// snapshot, status ("metrics" events), logs, states and failures; POSTs for commands.
"use strict";

const KEEP_S = 300;            // seconds of history in the link plots
const LEVELS = {10: "DEBUG", 20: "INFO", 25: "STDOUT", 30: "WARNING", 35: "STDERR", 40: "ERROR", 50: "CRITICAL"};
const ACTOR_CMDS = ["pause", "resume", "stop", "run", "abort", "kill", "revive"];
const MAX_LOG = 1000;

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

const state = { run: null, status: null, history: {}, logs: [], failures: {}, lastMetrics: 0, gen: 0 };

window.plexaHistory = (link) => state.history[link];  // for tests and the console

function token() { return sessionStorage.getItem("plexa.token"); }
function takeTokenFromUrl() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("plexa.token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);  // off the URL bar
  }
}
function needLogin(why) {
  sessionStorage.removeItem("plexa.token");
  $("#main").hidden = true;
  $("#login").hidden = false;
  say(why || "");
}
function say(text) { $("#message").textContent = text; }

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401) { needLogin("the token was refused"); throw new Error("unauthorized"); }
  const data = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const d = data && data.detail !== undefined ? data.detail : data;
    throw new Error(typeof d === "string" ? d : (d.error || JSON.stringify(d)));
  }
  return data;
}

async function command(path, body) {
  say("");
  try { return await api("POST", `runs/${encodeURIComponent(state.run)}/${path}`, body); }
  catch (e) { say(`${path}: ${e.message}`); return undefined; }
}

// ---- events ----------------------------------------------------------------------------

async function stream(gen) {
  let backoff = 500;
  while (gen === state.gen) {
    try {
      const r = await fetch(`runs/${encodeURIComponent(state.run)}/events`,
                            { headers: { Authorization: "Bearer " + token() } });
      if (r.status === 401) { needLogin("the token was refused"); return; }
      if (!r.ok) throw new Error(`events: HTTP ${r.status}`);
      setConn("live");
      backoff = 500;
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      while (gen === state.gen) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = parseEvent(block);
          if (ev) onEvent(ev.kind, ev.data);
        }
      }
      reader.cancel().catch(() => {});
    } catch (e) {
      setConn("reconnecting: " + e.message);
    }
    await new Promise((ok) => setTimeout(ok, backoff));
    backoff = Math.min(backoff * 2, 5000);
  }
}

function parseEvent(block) {
  let kind = "", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) kind = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  return kind ? { kind, data: JSON.parse(data) } : null;
}

function setConn(text) { $("#conn").textContent = text; }

function onEvent(kind, data) {
  if (kind === "snapshot") {
    state.logs = (data.logs || []).slice(-MAX_LOG);
    state.failures = {};
    onStatus(data.status);
    renderLog();
  } else if (kind === "metrics") {
    onStatus(data);
  } else if (kind === "log") {
    state.logs.push(data);
    if (state.logs.length > MAX_LOG) state.logs.splice(0, state.logs.length - MAX_LOG);
    renderLog();
  } else if (kind === "failure") {
    state.failures[data.actor] = data;
    renderFailures();
  } else if (kind === "job") {
    refreshSide(state.gen);
  } else if (kind === "state" && state.status && state.status.actors[data.actor]) {
    state.status.actors[data.actor].state = data.state;
    renderActors();
  }
}

function onStatus(status) {
  state.status = status;
  state.lastMetrics = Date.now();
  const now = Date.now() / 1000;
  for (const [name, l] of Object.entries(status.links || {})) {
    const h = (state.history[name] ||= []);
    h.push([now, l.rate || 0, l.latency_p50_us, l.latency_p99_us]);
    while (h.length && h[0][0] < now - KEEP_S) h.shift();
  }
  for (const [name, a] of Object.entries(status.actors || {})) {
    if (a.failure) state.failures[name] = { actor: name, ...a.failure };
  }
  render();
}

// ---- rendering ---------------------------------------------------------------------------

function render() {
  const s = state.status;
  if (!s) return;
  const rs = $("#run-state");
  rs.textContent = s.run.state + (s.run.busy ? ` (${s.run.busy})` : "");
  rs.className = "state s-" + s.run.state;
  $("#uptime").textContent = `up ${fmt(s.run.uptime_s, 0)} s`;
  renderGraph();
  renderActors();
  renderLinks();
  renderFailures();
}

function fmt(x, digits = 1) { return x === null || x === undefined ? "–" : Number(x).toFixed(digits); }
function us(x) { return x === null || x === undefined ? "–" : x >= 1000 ? (x / 1000).toFixed(1) + " ms" : x.toFixed(0) + " µs"; }
function bytes(x) { return x === null || x === undefined ? "–" : (x / 1048576).toFixed(1) + " MB"; }

function renderActors() {
  const s = state.status;
  const body = $("#actors tbody");
  const names = Object.keys(s.actors);
  const steer = $("#steer-actor");
  if (steer.options.length !== names.length) {
    steer.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
  }
  for (const name of names) {
    const a = s.actors[name];
    let row = body.querySelector(`tr[data-actor="${CSS.escape(name)}"]`);
    if (!row) {
      row = el("tr", { "data-actor": name });
      for (const c of ["name", "state", "where", "restarts num", "in num", "out num", "handler num", "cpu num", "rss num", "progress", "cmds"]) {
        row.append(el("td", { class: c }));
      }
      row.querySelector(".name").textContent = name;
      const cmds = row.querySelector(".cmds");
      for (const c of ACTOR_CMDS) {
        const b = el("button", { "data-cmd": c, text: c });
        b.onclick = () => command(`actors/${encodeURIComponent(name)}/${c}`);
        cmds.append(b);
      }
      body.append(row);
    }
    const st = row.querySelector(".state");
    st.replaceChildren(el("span", { class: "state s-" + a.state, text: a.state }));
    row.querySelector(".where").textContent = a.node ? `Ray node ${a.node}` : a.host || "this host";
    row.querySelector(".restarts").textContent = a.restarts;
    row.querySelector(".in").textContent = fmt(a.rate_in);
    row.querySelector(".out").textContent = fmt(a.rate_out);
    row.querySelector(".handler").textContent = `${us(a.handler_p50_us)} / ${us(a.handler_p99_us)}`;
    row.querySelector(".cpu").textContent = a.cpu_percent === null || a.cpu_percent === undefined ? "–" : fmt(a.cpu_percent) + " %";
    row.querySelector(".rss").textContent = bytes(a.rss_bytes);
    const p = row.querySelector(".progress");
    if (a.progress) {
      const bar = el("progress", { max: a.progress.total || 1, value: a.progress.done || 0 });
      p.replaceChildren(bar, " " + (a.progress.message || `${a.progress.done}/${a.progress.total}`));
    } else p.textContent = "";
  }
}

function renderLinks() {
  const body = $("#links tbody");
  for (const [name, l] of Object.entries(state.status.links)) {
    let row = body.querySelector(`tr[data-link="${CSS.escape(name)}"]`);
    if (!row) {
      row = el("tr", { "data-link": name });
      for (const c of ["name", "policy", "rate num", "depth num", "dropped num", "lost num", "latency num", "plot"]) {
        row.append(el("td", { class: c }));
      }
      row.querySelector(".name").textContent = name;
      row.querySelector(".plot").append(el("canvas", { class: "plot", width: 640, height: 112 }));
      body.append(row);
    }
    row.querySelector(".policy").textContent = `${l.policy}/${l.capacity}`;
    row.querySelector(".rate").textContent = fmt(l.rate) + "/s";
    row.querySelector(".depth").textContent = l.depth;
    row.querySelector(".dropped").textContent = l.dropped;
    row.querySelector(".lost").textContent = l.lost;
    row.querySelector(".latency").textContent = `${us(l.latency_p50_us)} / ${us(l.latency_p99_us)}`;
    plot(row.querySelector("canvas"), state.history[name] || []);
  }
}

// Throughput (blue, left scale) and latency p50 / p99 (green / red, log scale on the right).
function plot(canvas, h) {
  const g = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  g.clearRect(0, 0, W, H);
  g.fillStyle = "#fafbfc"; g.fillRect(0, 0, W, H);
  if (!h.length) return;
  const now = Date.now() / 1000;
  const span = Math.min(KEEP_S, Math.max(30, now - h[0][0]));  // grows to KEEP_S
  const x = (t) => W - ((now - t) / span) * W;
  const maxRate = Math.max(1, ...h.map((p) => p[1]));
  const lat = h.flatMap((p) => [p[2], p[3]]).filter((v) => v > 0);
  const lo = Math.log10(Math.max(1, Math.min(...lat, 1e9)));
  const hi = Math.max(lo + 1, Math.log10(Math.max(...lat, 10)));
  const ly = (v) => H - 4 - ((Math.log10(v) - lo) / (hi - lo)) * (H - 8);
  const line = (color, pick, yf) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    let on = false;
    for (const p of h) {
      const v = pick(p);
      if (v === null || v === undefined || (yf === ly && v <= 0)) { on = false; continue; }
      const px = x(p[0]), py = yf(v);
      if (on) g.lineTo(px, py); else g.moveTo(px, py);
      on = true;
    }
    g.stroke();
  };
  line("#2a5bd7", (p) => p[1], (v) => H - 4 - (v / maxRate) * (H - 8));
  if (lat.length) { line("#2e9d4a", (p) => p[2], ly); line("#d64541", (p) => p[3], ly); }
  g.fillStyle = "#333"; g.font = "20px system-ui";
  g.fillText(`${maxRate.toFixed(0)}/s`, 4, 20);
  g.fillText(`${Math.round(span)} s`, 4, H - 6);
  if (lat.length) g.fillText(`p50 / p99 up to ${us(10 ** hi)}`, W - 250, 20);
}

function renderGraph() {
  const svg = $("#graph");
  const actors = Object.keys(state.status.actors);
  const links = Object.entries(state.status.links).map(([name, l]) => {
    const [a, b] = name.split("->");
    return { name, l, src: a.slice(0, a.lastIndexOf(".")), dst: b.slice(0, b.lastIndexOf(".")) };
  });
  const layer = Object.fromEntries(actors.map((a) => [a, 0]));
  for (let i = 0; i < actors.length; i++) {   // longest path from a source, cycles bounded
    for (const k of links) if (k.src !== k.dst) layer[k.dst] = Math.max(layer[k.dst], Math.min(layer[k.src] + 1, actors.length - 1));
  }
  const rows = {};
  const pos = {};
  for (const a of actors) { const r = (rows[layer[a]] ||= []); pos[a] = [layer[a], r.length]; r.push(a); }
  const NW = 120, NH = 34, GX = 110, GY = 24;
  const xy = (a) => [10 + pos[a][0] * (NW + GX), 10 + pos[a][1] * (NH + GY)];
  const height = 20 + Math.max(...Object.values(rows).map((r) => r.length)) * (NH + GY);
  svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
  svg.setAttribute("viewBox", `0 0 ${20 + (Object.keys(rows).length) * (NW + GX)} ${height}`);
  svg.style.height = Math.min(height, 400) + "px";
  const ns = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const parts = [s("defs", {})];
  parts[0].append(s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" }));
  parts[0].firstChild.append(s("path", { d: "M0,0 L10,5 L0,10 z", class: "head" }));
  for (const k of links) {
    const [x1, y1] = xy(k.src), [x2, y2] = xy(k.dst);
    const a = [x1 + NW, y1 + NH / 2], b = [x2, y2 + NH / 2];
    const mx = (a[0] + b[0]) / 2;
    const g = s("g", { class: "edge", "data-link": k.name });
    g.append(s("path", { d: `M${a[0]},${a[1]} C${mx},${a[1]} ${mx},${b[1]} ${b[0]},${b[1]}` }));
    const extra = (k.l.dropped ? ` drop ${k.l.dropped}` : "") + (k.l.lost ? ` lost ${k.l.lost}` : "");
    g.append(s("text", { class: "rate", x: mx, y: (a[1] + b[1]) / 2 - 4, "text-anchor": "middle" }, `${fmt(k.l.rate)}/s${extra}`));
    parts.push(g);
  }
  for (const a of actors) {
    const [x, y] = xy(a);
    const st = state.status.actors[a].state;
    const g = s("g", { class: `node s-${st}`, "data-actor": a });
    g.append(s("rect", { x, y, width: NW, height: NH }));
    g.append(s("text", { x: x + 8, y: y + 14 }, a));
    g.append(s("text", { x: x + 8, y: y + 28, class: "sub" }, st));
    parts.push(g);
  }
  svg.replaceChildren(...parts);
}

function renderLog() {
  const min = Number($("#level").value);
  const pre = $("#log");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.replaceChildren(...state.logs.filter((r) => r.level >= min).map((r) => {
    const t = new Date(r.t * 1000).toISOString().slice(11, 23);
    return el("div", { class: "l" + r.level, text: `${t} ${r.actor} ${LEVELS[r.level] || r.level} ${r.logger}: ${r.message}` });
  }));
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

function renderFailures() {
  const list = Object.values(state.failures);
  $("#failures").hidden = list.length === 0;
  $("#failure-list").replaceChildren(...list.map((f) => el("div", { "data-actor": f.actor },
    el("strong", { text: `${f.actor}: ${f.kind} in ${f.phase}` }), " ", f.error || "",
    el("pre", { text: f.traceback || "(no traceback)" }))));
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  takeTokenFromUrl();
  if (!token()) { needLogin(""); return; }
  $("#login").hidden = true;
  let runs;
  try { runs = await api("GET", "runs"); } catch (e) { say(e.message); return; }
  $("#main").hidden = false;
  const pick = $("#run");
  pick.replaceChildren(...runs.map((r) => el("option", { value: r, text: r })));
  pick.onchange = () => open(pick.value);
  open(runs[0]);
}

function open(run) {
  state.run = run;
  state.status = null;
  state.history = {};
  $("#actors tbody").replaceChildren();
  $("#links tbody").replaceChildren();
  const gen = ++state.gen;
  stream(gen);
  poll(gen);
}

// Jobs and web-hooks (their counters) are polled every 2 s, and at once on a "job" event.
async function refreshSide(gen) {
  if (gen !== state.gen || !token()) return;
  const run = encodeURIComponent(state.run);
  try {
    const [jobs, hooks] = await Promise.all([api("GET", `runs/${run}/jobs`), api("GET", `runs/${run}/webhooks`)]);
    if (gen !== state.gen) return;
    fillTable("#jobs", jobs, "name", ["name", "state", "port", "module", "pid", "restarts", "guid", "reason"]);
    $("#hooks-section").hidden = hooks.length === 0;
    fillTable("#hooks", hooks, "id", ["source", "url", "events", "delivered", "retries", "failed", "dropped", "queued", "last_error"]);
  } catch (e) { setConn(e.message); }
}

function fillTable(sel, rows, key, cols) {
  $(sel + " tbody").replaceChildren(...rows.map((r) => {
    const tr = el("tr", { "data-key": String(r[key]) });
    for (const c of cols) {
      const v = r[c] === null || r[c] === undefined ? "–" : Array.isArray(r[c]) ? r[c].join(", ") : String(r[c]);
      tr.append(c === "state" ? el("td", { class: c }, el("span", { class: "state s-" + v, text: v })) : el("td", { class: c, text: v }));
    }
    return tr;
  }));
}

// The status also comes by polling when no "metrics" event arrived for a while (a stream
// that lost events at its high-water mark, or a run that is not publishing).
async function poll(gen) {
  let ticks = 1;
  refreshSide(gen);
  while (gen === state.gen) {
    await new Promise((ok) => setTimeout(ok, 1000));
    if (++ticks % 2 === 0) refreshSide(gen);
    if (Date.now() - state.lastMetrics > 2000 && token()) {
      try { onStatus(await api("GET", `runs/${encodeURIComponent(state.run)}/status`)); } catch (e) { setConn(e.message); }
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#run-buttons button")) b.onclick = () => command(b.dataset.cmd);
  $("#level").onchange = renderLog;
  $("#login-form").onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem("plexa.token", $("#token").value.trim());
    start();
  };
  const parse = (text, fallback) => { try { return text.trim() ? JSON.parse(text) : fallback; } catch { return text; } };
  $("#set-btn").onclick = async () => {
    const v = await command(`actors/${encodeURIComponent($("#steer-actor").value)}/set`,
      { key: $("#set-key").value, value: parse($("#set-value").value, null) });
    if (v !== undefined) $("#steer-out").textContent = "set: " + JSON.stringify(v);
  };
  $("#inv-btn").onclick = async () => {
    const v = await command(`actors/${encodeURIComponent($("#steer-actor").value)}/invoke`,
      { method: $("#inv-method").value, args: parse($("#inv-args").value, []) });
    if (v !== undefined) $("#steer-out").textContent = "→ " + JSON.stringify(v);
  };
  $("#launch-btn").onclick = async () => {
    const v = await command("jobs", { module: $("#job-module").value.trim(),
      name: $("#job-name").value.trim(), config: parse($("#job-config").value, null) });
    if (v !== undefined) refreshSide(state.gen);
  };
  window.addEventListener("hashchange", start);
  start();
});
