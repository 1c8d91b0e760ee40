// The edgestate dashboard: polls GET /v1/admin/overview and redraws.
// Plain script, no framework, no external URL. Every value from the node is put
// in the page with textContent, never as HTML: node ids, documents and error
// texts come from other nodes and must not become markup.
"use strict";

const TOKEN_KEY = "edgestate.admin-token";
const POLL_MS = 2000;         // the overview is cheap; 2 s keeps a 50-node page calm
const FETCH_TIMEOUT_MS = 8000;
const MAX_ROWS = 200;         // per table: more is noise on a screen; filter to find one

const $ = (id) => document.getElementById(id);
const state = { timer: null, paused: false, docOffset: 0, docLimit: 25, last: null };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function badge(value) { return el("span", value, "badge state-" + value); }
function shortId(id) { return id ? (id.length > 14 ? id.slice(0, 12) + "…" : id) : "?"; }
function ago(ts) {
  if (ts === null || ts === undefined) return "never";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 1 ? "now" : s < 120 ? s.toFixed(0) + " s ago" : (s / 60).toFixed(0) + " min ago";
}
function secs(s) { return s === null || s === undefined ? "—" : s.toFixed(1) + " s"; }
function ms(v) { return v === null || v === undefined ? "—" : v.toFixed(v < 1 ? 3 : 1) + " ms"; }
function bound(v) { return v >= 1000 ? v / 1000 + " s" : v + " ms"; }
function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}
function row(cells, attrs) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs || {})) tr.setAttribute(k, v);
  for (const c of cells) {
    if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
    else if (c && typeof c === "object") {
      const td = el("td", c.text, c.cls); if (c.title) td.title = c.title;
      if (c.node) td.appendChild(c.node); tr.appendChild(td);
    } else tr.appendChild(el("td", c));
  }
  return tr;
}
function fill(tbody, rows, moreEl, total) {
  tbody.replaceChildren(...rows.slice(0, MAX_ROWS));
  if (moreEl) {
    const hidden = (total ?? rows.length) - Math.min(rows.length, MAX_ROWS);
    moreEl.textContent = hidden > 0 ? hidden + " more not shown: filter to find them" : "";
  }
}
function matches(filterId, ...texts) {
  const f = $(filterId).value.trim().toLowerCase();
  return !f || texts.some((t) => t && String(t).toLowerCase().includes(f));
}

// --- auth ----------------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY); }
function showLogin(message) {
  $("board").hidden = true; $("logout").hidden = true; $("pause").hidden = true;
  $("login").hidden = false; $("login-error").textContent = message || "";
  stop();
}
function showBoard() {
  $("login").hidden = true; $("board").hidden = false;
  $("logout").hidden = false; $("pause").hidden = false;
}

async function fetchOverview() {
  const q = new URLSearchParams({
    filter: $("doc-filter").value.trim(), sort: $("doc-sort").value,
    offset: String(state.docOffset), limit: String(state.docLimit),
  });
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const headers = {};
    const tok = token();
    if (tok) headers.Authorization = "Bearer " + tok;
    // same-origin, no cookies: the bearer header is the only credential sent
    return await fetch("/v1/admin/overview?" + q, {
      headers, signal: ctl.signal, credentials: "same-origin", cache: "no-store",
    });
  } finally { clearTimeout(t); }
}

async function poll() {
  state.timer = null;
  try {
    const resp = await fetchOverview();
    if (resp.status === 401 || resp.status === 403) {
      const sent = token() !== null;
      sessionStorage.removeItem(TOKEN_KEY);
      const body = await resp.json().catch(() => null);
      // No token sent yet (a first visit): just the form, not an error.
      showLogin(!sent ? "" : body && body.error ? body.error.code + ": " + body.error.message
                                                : "the node refused the token");
      return;
    }
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error ? body.error.code + ": " + body.error.message
                                             : "HTTP " + resp.status);
    showBoard();
    $("fetch-error").textContent = "";
    state.last = body;
    render(body);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    const text = "cannot reach the node: " + err.message;
    $("fetch-error").textContent = text + " (showing the last answer; retrying)";
    if ($("board").hidden) $("login-error").textContent = text;
  }
  schedule();
}
function schedule() {
  if (!state.paused && state.timer === null && !$("board").hidden) {
    state.timer = setTimeout(poll, POLL_MS);
  }
}
function stop() { if (state.timer !== null) { clearTimeout(state.timer); state.timer = null; } }
function refresh() { stop(); poll(); }

// --- rendering -----------------------------------------------------------------

function render(o) {
  const n = o.node;
  $("identity").textContent = "node " + shortId(n.node_id) + " · cluster " +
    (n.cluster_id || "dev") + (n.insecure ? " · insecure" : "") + " · v" + n.version;
  $("identity").title = n.node_id;
  renderNodes(o);
  renderLinks(o);
  renderPeers(o);
  renderMatrix(o);
  renderDocs(o);
  renderLive(o);
}

const STATE_ORDER = { down: 0, stale: 1, up: 2, self: 3 };

function renderNodes(o) {
  const nodes = [...o.nodes].sort((a, b) =>
    (STATE_ORDER[a.state] - STATE_ORDER[b.state]) || a.node_id.localeCompare(b.node_id));
  const up = o.nodes.filter((x) => x.state === "up" || x.state === "self").length;
  $("cluster-summary").textContent = up + " of " + o.nodes.length + " nodes up";
  const rows = nodes.filter((x) => matches("node-filter", x.node_id, x.api, x.state)).map((x) =>
    row([{ text: shortId(x.node_id), title: x.node_id }, badge(x.state),
         x.link ? badge(x.link) : (x.self ? "this node" : "—"),
         x.self ? "—" : secs(x.last_heard_s), ms(x.write_to_visible_ms), x.version || "?",
         x.api || "?"],
        { "data-node-id": x.node_id, "data-state": x.state }));
  fill($("nodes").tBodies[0], rows, $("nodes-more"));
}

function renderLinks(o) {
  const links = o.links.filter((l) => matches("node-filter", l.from, l.to, l.state));
  const bad = o.links.filter((l) => l.state !== "connected").length;
  $("links-summary").textContent = o.links.length + " known, " + bad + " not connected";
  links.sort((a, b) => (a.state === "connected") - (b.state === "connected") || b.lag - a.lag);
  fill($("links").tBodies[0], links.map((l) =>
    row([{ text: shortId(l.from), title: l.from }, { text: shortId(l.to), title: l.to || "" },
         badge(l.state), { text: l.lag, cls: "num" }, ago(l.last_sync)])), $("links-more"));
}

function renderPeers(o) {
  fill($("peers").tBodies[0], o.peers.map((p) =>
    row([{ text: shortId(p.node_id), title: p.node_id || "" }, p.address || "inbound",
         badge(p.state), ago(p.last_sync), { text: p.lag, cls: "num" },
         { text: p.queued, cls: "num" },
         { text: bytes(p.bytes_in) + " / " + p.updates_in + " upd", cls: "num" },
         { text: bytes(p.bytes_out) + " / " + p.updates_out + " upd", cls: "num" },
         { text: p.failures, cls: "num" }, { text: p.last_error || "", cls: "err" }],
        { "data-peer": p.node_id || p.address || "" })));
}

function renderMatrix(o) {
  const m = o.modules;
  const head = el("tr");
  head.appendChild(el("th", "module"));
  for (const id of m.nodes) { const th = el("th", shortId(id)); th.title = id; head.appendChild(th); }
  $("matrix").tHead.replaceChildren(head);
  const notDone = m.rows.filter((r) => !r.converged).length;
  $("rollout-summary").textContent = m.rows.length + " modules on " + m.nodes.length +
    " nodes" + (notDone ? ", " + notDone + " not converged" : ", all converged");
  const rows = m.rows.filter((r) => matches("module-filter", r.name))
    .sort((a, b) => (a.converged - b.converged) || a.name.localeCompare(b.name))
    .map((r) => {
      const tr = row([r.name], { "data-module": r.name, class: r.converged ? "" : "not-converged" });
      for (const id of m.nodes) {
        const c = r.cells[id];
        const td = el("td");
        td.setAttribute("data-node-id", id);
        if (!c) { td.textContent = "—"; td.title = "no record of this module on that node"; }
        else {
          td.setAttribute("data-state", c.state);
          td.appendChild(badge(c.state));
          td.appendChild(document.createTextNode(" " + (c.version || "")));
          if (c.state === "refused") {
            // what it refused, and what it keeps running instead (if anything)
            td.appendChild(el("span", " " + (c.error_code || "refused") + " " +
              (c.offered_version || "?") + (c.version ? "" : ", runs nothing"), "muted"));
            td.title = "refused version " + (c.offered_version || "?") + ": " +
              (c.error_code || "") + (c.version ? "; still runs " + c.version : "");
          }
        }
        tr.appendChild(td);
      }
      return tr;
    });
  fill($("matrix").tBodies[0], rows);
}

function renderDocs(o) {
  const d = o.documents;
  $("docs-summary").textContent = d.total + " of " + d.all + " · showing " +
    (d.total ? d.offset + 1 : 0) + "–" + (d.offset + d.rows.length);
  $("doc-prev").disabled = d.offset === 0;
  $("doc-next").disabled = d.offset + d.rows.length >= d.total;
  fill($("docs").tBodies[0], d.rows.map((r) =>
    row([r.name, { text: r.keys, cls: "num" }, { text: bytes(r.bytes), cls: "num" },
         { text: r.log_entries, cls: "num" }, { text: r.collected_items, cls: "num" },
         { text: r.frontier_ops ?? "none yet", cls: "num" },
         r.held_back_by.map((h) => shortId(h.node_id || String(h.replica)) + " (" +
           h.reason + ")").join(", ") || "—"],
        { "data-doc": r.name })));
}

function renderLive(o) {
  fill($("invocations").tBodies[0], o.live.modules.map((m) => {
    const errs = Object.entries(m.errors).map(([k, v]) => k + " " + v).join(", ");
    const flag = m.instantiate_exceeds_execute
      ? { text: "⚠ instantiate > execute", cls: "flag",
          title: "a module that takes longer to instantiate than to run misses the point" }
      : "";
    return row([m.name, { text: m.invocations, cls: "num" }, { text: m.ok, cls: "num" },
                errs || "—", { text: ms(m.instantiate_ms), cls: "num" },
                { text: ms(m.execute_ms), cls: "num" }, flag],
               { "data-module": m.name, "data-flagged": String(m.instantiate_exceeds_execute) });
  }));
  const w = o.live.write_to_visible;
  $("wtv-summary").textContent = w.count
    ? w.count + " heartbeats from peers · p50 ≤ " + ms(w.p50_ms) + " · p99 ≤ " + ms(w.p99_ms) +
      (w.skewed ? " · " + w.skewed + " skewed clocks" : "")
    : "no peer heartbeat seen yet";
  const max = Math.max(1, ...w.buckets.map((b) => b.count));
  const cells = [];
  for (const b of w.buckets) {
    cells.push(el("span", b.le_ms === null ? "> " + bound(w.buckets.at(-2).le_ms)
                                           : "≤ " + bound(b.le_ms)));
    const bar = el("div", null, "bar");
    bar.style.width = (100 * b.count / max) + "%";
    cells.push(bar);
    cells.push(el("span", b.count, "muted"));
  }
  $("wtv").replaceChildren(...cells);
}

// --- wiring --------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("login-error").textContent = "";
    refresh();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("pause").textContent = state.paused ? "resume" : "pause";
    if (state.paused) stop(); else refresh();
  });
  for (const id of ["node-filter", "module-filter"]) {
    $(id).addEventListener("input", () => { if (state.last) render(state.last); });
  }
  $("doc-filter").addEventListener("input", () => { state.docOffset = 0; refresh(); });
  $("doc-sort").addEventListener("change", () => { state.docOffset = 0; refresh(); });
  $("doc-prev").addEventListener("click", () => {
    state.docOffset = Math.max(0, state.docOffset - state.docLimit); refresh();
  });
  $("doc-next").addEventListener("click", () => {
    state.docOffset += state.docLimit; refresh();
  });
  // A cluster certificate (mTLS) admits without a token: try once either way.
  refresh();
});
