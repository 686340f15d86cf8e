// misuan console: polls /console/api/* and streams chats through /v1/chat/completions.
// Same origin only; every value is put in the page as text (never as HTML).
"use strict";

const state = { apiKey: "", models: [], chat: null };

// ------------------------------------------------------------------ helpers

function $(id) { return document.getElementById(id); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return (s * 1000).toFixed(0) + " ms";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function fmtTime(ts) {
  return new Date(ts * 1000).toLocaleTimeString();
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.apiKey) h.Authorization = "Bearer " + state.apiKey;
  return h;
}

async function getJSON(path) {
  const resp = await fetch(path, { headers: headers(), cache: "no-store", credentials: "same-origin" });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((body.error && body.error.message) || body.detail || body.message || resp.statusText);
  return body;
}

function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function row(cells, cls) {
  const tr = el("tr", null, cls);
  for (const c of cells) {
    if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
    else tr.appendChild(el("td", c));
  }
  return tr;
}

function badge(text, kind) { return el("span", text, "badge " + kind); }

// ------------------------------------------------------------------ cluster

function renderCluster(c) {
  $("summary").textContent = c.cluster + " · " + c.up + "/" + c.parties + " nodes up · as " + c.principal;
  $("summary").className = "summary " + (c.up === c.parties ? "good" : "bad");
  $("cluster-meta").textContent = c.protocol + " / " + c.field + " · updated " + fmtTime(c.ts);
  const rows = c.nodes.map((n) => {
    const name = n.id + " (#" + n.rank + ")";
    if (n.state !== "up") {
      const tr = row([name, badge(n.state, "bad"), n.error || "", "–", "–", "–", "–", "–", "–", "–"], "down");
      tr.dataset.state = n.state;
      tr.dataset.node = n.id;
      return tr;
    }
    const resident = n.resident.length
      ? n.resident.map((r) => r.name + "@" + r.version + " " + r.state + " (" + r.requests + " req, " + fmtBytes(r.rss_bytes) + ")").join(", ")
      : "–";
    const sessions = Object.entries(n.sessions_by_kind).map(([k, v]) => v + " " + k).join(", ") || "0";
    const tr = row([
      name, badge("up", "good"), n.protocol + "/" + n.field + (n.tls ? " TLS" : ""), fmtSeconds(n.uptime_s),
      n.rtt_ms.toFixed(1) + " ms", sessions, resident, fmtBytes(n.rss_bytes), fmtBytes(n.workers_rss_bytes), fmtBytes(n.store_bytes),
    ], "up");
    tr.dataset.state = "up";
    tr.dataset.node = n.id;
    return tr;
  });
  fillRows($("nodes").tBodies[0], rows);
}

// ------------------------------------------------------------------ models and KBs

function renderAssets(a) {
  if (a.error) { $("assets-meta").textContent = a.message; return; }
  $("assets-meta").textContent = a.source ? "as listed by " + a.source : "no node up";
  const rows = [];
  for (const [kind, info] of Object.entries(a.kinds)) {
    for (const it of info.items) {
      const latest = it.versions[0] || {};
      const grants = it.grants === null || it.grants === undefined ? "(owner only)" : (it.grants.join(", ") || "none");
      rows.push(row([kind, it[kind], it.owner, it.versions.map((v) => "v" + v.version).join(" "), fmtBytes(latest.share_bytes), grants]));
    }
  }
  if (!rows.length) rows.push(row(["", "nothing you may use yet", "", "", "", ""]));
  fillRows($("assets").tBodies[0], rows);
  const kb = a.kinds.kb;
  $("kb-note").textContent = kb && !kb.available ? "Knowledge bases: not installed on these nodes." : "";
}

// ------------------------------------------------------------------ jobs

function renderJobs(j) {
  if (j.error) { $("jobs-meta").textContent = j.message; return; }
  if (!j.source) { $("jobs-meta").textContent = "no node up"; return; }
  const live = Object.entries(j.live_sessions || {}).map(([k, v]) => v + " " + k).join(", ") || "none";
  $("jobs-meta").textContent = "from " + j.source + "'s audit log (" + j.rows_read + " rows) · live sessions: " + live;
  fillRows($("job-totals").tBodies[0], Object.entries(j.totals).map(([kind, t]) =>
    row([kind, t.count, t.failed, t.steps, fmtSeconds(t.mpc_s), fmtBytes(t.bytes)])));
  const recent = j.recent.map((x) => row([
    x.kind, x.asset, fmtTime(x.start), fmtSeconds(x.wall_s), fmtSeconds(x.mpc_s), x.steps, fmtBytes(x.bytes),
    badge(x.status, x.status === "ok" || x.status === "done" ? "good" : "bad"),
  ]));
  if (!recent.length) recent.push(row(["", "no jobs yet", "", "", "", "", "", ""]));
  fillRows($("job-recent").tBodies[0], recent);
}

// ------------------------------------------------------------------ audit

function renderAudit(a) {
  if (a.error && !a.nodes) { $("audit-mode").textContent = a.message; return; }
  const s = $("audit-state");
  s.textContent = a.ok ? "verified" : "NOT verified";
  s.className = "badge " + (a.ok ? "good" : "bad");
  $("audit-mode").textContent = a.mode === "chains"
    ? "Every node's chain recomputed and checked against its peers' records and this machine's receipts."
    : "Remote nodes: each node's signed head checked against the audit key in cluster.toml (run `misuan audit verify` with the nodes' state for the full check).";
  if (a.error) $("audit-mode").textContent += " " + a.error;
  fillRows($("audit").tBodies[0], (a.nodes || []).map((n) => row([
    n.party, n.rows === undefined ? "–" : n.rows, n.peer_heads === undefined ? "–" : n.peer_heads,
    n.receipts === undefined ? "–" : n.receipts,
    n.ok === null ? badge(n.reason || "unknown", "warn") : badge(n.ok ? "ok" : "BROKEN " + (n.reason || ""), n.ok ? "good" : "bad"),
  ])));
}

// ------------------------------------------------------------------ polling

function poll(path, render, every) {
  const tick = async () => {
    try { render(await getJSON(path)); }
    catch (e) { $("summary").textContent = path + ": " + e.message; $("summary").className = "summary bad"; }
    setTimeout(tick, every);
  };
  tick();
}

async function loadModels() {
  const sel = $("model");
  let ids = [];
  try {
    const m = await getJSON("/v1/models");
    ids = (m.data || []).map((x) => x.id);
  } catch (e) {
    $("chat-state").textContent = "models: " + e.message;
  }
  if (!ids.length) { setTimeout(loadModels, 3000); return; }
  const current = sel.value;
  sel.replaceChildren(...ids.map((id) => { const o = el("option", id); o.value = id; return o; }));
  if (ids.includes(current)) sel.value = current;
}

// ------------------------------------------------------------------ playground

function setStat(id, text) { $(id).textContent = text; }

function updateStats(c) {
  const now = performance.now();
  setStat("stat-tokens", String(c.tokens));
  if (c.firstAt !== null) setStat("stat-ttft", fmtSeconds((c.firstAt - c.startAt) / 1000));
  if (c.tokens > 1 && c.lastAt > c.firstAt) {
    setStat("stat-tps", ((c.tokens - 1) / ((c.lastAt - c.firstAt) / 1000)).toFixed(2));
  } else if (c.tokens === 1) {
    setStat("stat-tps", (1 / ((now - c.startAt) / 1000)).toFixed(2));
  }
  if (c.bytes !== null && c.tokens > 0) setStat("stat-bpt", fmtBytes(c.bytes / c.tokens));
  if (c.mpc !== null) setStat("stat-mpc", fmtSeconds(c.mpc));
  if (c.protocol) setStat("stat-protocol", c.protocol);
}

function misuanMeta(obj) {
  // cost metadata the proxy adds: usage.x_misuan on the final chunk, x_misuan on a chunk
  if (!obj) return null;
  return obj.x_misuan || (obj.usage && obj.usage.x_misuan) || null;
}

function takeMeta(c, meta) {
  if (!meta) return;
  const bytes = meta.bytes_sent !== undefined ? meta.bytes_sent : meta.bytes;
  if (bytes !== undefined && bytes !== null) c.bytes = Number(bytes);
  if (meta.mpc_seconds !== undefined && meta.mpc_seconds !== null) c.mpc = Number(meta.mpc_seconds);
  if (meta.protocol) c.protocol = meta.protocol;
}

function handleEvent(c, data) {
  if (data === "[DONE]") { c.done = true; return; }
  const chunk = JSON.parse(data);
  if (chunk.error) throw new Error(chunk.error.message || "the proxy reported an error");
  takeMeta(c, misuanMeta(chunk));
  for (const choice of chunk.choices || []) {
    const text = choice.delta && choice.delta.content;
    if (text) {
      const now = performance.now();
      if (c.firstAt === null) c.firstAt = now;
      c.lastAt = now;
      c.tokens += 1;
      $("output").appendChild(el("span", text, "tok"));
    }
    if (choice.finish_reason) setStat("stat-finish", choice.finish_reason);
  }
  if (chunk.usage) {
    c.tokens = chunk.usage.completion_tokens;
    c.usage = chunk.usage;
  }
  updateStats(c);
}

function readHeaders(c, resp) {
  const p = resp.headers.get("x-misuan-protocol");
  if (p) c.protocol = p;
  const b = resp.headers.get("x-misuan-bytes-sent");
  if (b !== null) c.bytes = Number(b);
}

async function sendChat(ev) {
  ev.preventDefault();
  if (state.chat) return;
  const c = { tokens: 0, bytes: null, mpc: null, protocol: null, startAt: performance.now(), firstAt: null, lastAt: null, done: false, usage: null };
  c.abort = new AbortController();
  state.chat = c;
  $("output").replaceChildren();
  for (const id of ["stat-tokens", "stat-tps", "stat-bpt", "stat-ttft", "stat-mpc", "stat-protocol", "stat-finish"]) setStat(id, "–");
  $("send").disabled = true;
  $("stop").disabled = false;
  $("chat-state").textContent = "waiting for the first token (prefill under MPC)…";
  const body = {
    model: $("model").value,
    messages: [{ role: "user", content: $("prompt").value }],
    max_tokens: Number($("max-tokens").value),
    temperature: Number($("temperature").value),
    stream: true,
    stream_options: { include_usage: true },
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
      signal: c.abort.signal, credentials: "same-origin",
    });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || resp.statusText);
    }
    readHeaders(c, resp);
    $("chat-state").textContent = "streaming…";
    await readSSE(resp.body, (data) => handleEvent(c, data));
    $("chat-state").textContent = "done";
  } catch (e) {
    $("chat-state").textContent = e.name === "AbortError" ? "stopped" : "error: " + e.message;
  } finally {
    updateStats(c);
    state.chat = null;
    $("send").disabled = false;
    $("stop").disabled = true;
    $("playground").dataset.done = "1";
  }
}

async function readSSE(stream, onData) {
  // Server-sent events: frames end with a blank line; `data:` lines carry JSON, `:` lines are comments.
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) onData(data);
    }
  }
}

// ------------------------------------------------------------------ start

function start() {
  $("api-key").addEventListener("change", (e) => { state.apiKey = e.target.value.trim(); loadModels(); });
  $("chat-form").addEventListener("submit", sendChat);
  $("stop").addEventListener("click", () => { if (state.chat) state.chat.abort.abort(); });
  poll("/console/api/cluster", renderCluster, 2000);
  poll("/console/api/assets", renderAssets, 5000);
  poll("/console/api/jobs", renderJobs, 5000);
  poll("/console/api/audit", renderAudit, 10000);
  loadModels();
}

document.addEventListener("DOMContentLoaded", start);
