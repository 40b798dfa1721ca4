// The prx console. Everything a plugin can influence (names, errors, log
// lines, describe() stats, RPC answers) is untrusted: it reaches the page
// through textContent and SVG attributes only, never as markup.
"use strict";

const POLL_MS = 1000;
const TOKEN_KEY = "prx-api-token";
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : String(child ?? ""));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

// The token: from the fragment (`#token=...`, then removed from the
// address bar) or typed in; kept for this tab only.
function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function takeTokenFromFragment() {
  const match = location.hash.match(/^#token=([^&]+)(?:&(.*))?$/);
  if (!match) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", match[2] ? "#" + match[2] : "#/");
}

function showTokenState() {
  $("token-state").textContent = token() ? "token set" : "no token: read only";
}

async function api(path, options) {
  const headers = { Accept: "application/json" };
  if (options && options.method && options.method !== "GET") {
    headers.Authorization = "Bearer " + token();
  }
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { error: text };
  }
  if (!response.ok) {
    const error = new Error((body && body.error) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function setConnection(state, text) {
  const node = $("connection");
  node.dataset.state = state;
  node.textContent = text;
}

function fmtMs(value) {
  if (value === null || value === undefined) return "";
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}

function fmtCount(value) {
  return (value || 0).toLocaleString("en-US");
}

function stateBadge(state) {
  return el("span", { class: "state", "data-state": state }, state);
}

// ---- the plugins table ----

const lastRestarts = new Map();

// The cluster as this node sees it, or null when it runs alone.
async function clusterView() {
  try {
    return await api("/v1/cluster");
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

// Plugins only other nodes run: a row each, with their node and state.
function remoteRows(cluster, local) {
  if (!cluster) return [];
  const rows = [];
  for (const node of cluster.nodes) {
    if (node.local) continue;
    for (const p of node.plugins) {
      const state = node.alive ? p.state : "silent";
      rows.push(
        el(
          "tr",
          { "data-plugin": p.name, "data-node": node.node, "data-state": state, class: "remote" },
          el("td", { "data-col": "name" }, p.name),
          el("td", { "data-col": "node" }, node.node),
          el("td", { "data-col": "version" }, p.version),
          el("td", { "data-col": "capabilities" }, [...p.tools, ...p.providers, ...p.rpcs].join(", ")),
          el("td", { "data-col": "state" }, stateBadge(state)),
          el("td", { colspan: "8", class: "note" }, local.has(p.name) ? "also on this node" : ""),
        ),
      );
    }
  }
  return rows;
}

function renderPlugins(plugins, cluster) {
  const body = $("plugins").tBodies[0];
  const here = cluster ? cluster.node : "this node";
  document.body.dataset.cluster = cluster ? "yes" : "no";
  const rows = plugins.map((p) => {
    const calls = p.calls || {};
    const lastError = p.error || p.reload_error || p.last_exit || "";
    const row = el(
      "tr",
      { "data-plugin": p.name, "data-state": p.state },
      el("td", { "data-col": "name" }, el("a", { href: "#/plugin/" + encodeURIComponent(p.name) }, p.name)),
      el("td", { "data-col": "node" }, here),
      el("td", { "data-col": "version" }, p.version),
      el("td", { "data-col": "capabilities" }, (p.capabilities || []).join(", ")),
      el("td", { "data-col": "state" }, stateBadge(p.state)),
      el("td", { "data-col": "pid" }, p.pid ?? ""),
      el("td", { "data-col": "restarts", class: "num" }, p.restarts),
      el("td", { "data-col": "last-error", class: "error" }, lastError),
      el("td", { "data-col": "calls", class: "num" }, fmtCount(calls.calls)),
      el("td", { "data-col": "errors", class: "num" }, fmtCount(calls.errors)),
      el("td", { "data-col": "p50", class: "num" }, fmtMs(calls.p50_ms)),
      el("td", { "data-col": "p99", class: "num" }, fmtMs(calls.p99_ms)),
      el("td", { "data-col": "fuel", class: "num" }, fmtCount(calls.fuel_used)),
    );
    const before = lastRestarts.get(p.name);
    if (before !== undefined && before !== p.restarts) row.classList.add("flash");
    lastRestarts.set(p.name, p.restarts);
    return row;
  });
  body.replaceChildren(...rows, ...remoteRows(cluster, new Set(plugins.map((p) => p.name))));
  const running = plugins.filter((p) => p.state === "running").length;
  const calls = plugins.reduce((n, p) => n + ((p.calls && p.calls.calls) || 0), 0);
  $("totals").replaceChildren(
    el("span", {}, plugins.length + " plugins"),
    el("span", {}, running + " running"),
    el("span", {}, fmtCount(calls) + " calls"),
  );
}

// ---- one plugin's page ----

function definitions(node, pairs) {
  const items = [];
  for (const [key, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    items.push(el("dt", {}, key), el("dd", {}, value));
  }
  node.replaceChildren(...items);
}

function isCone(answer) {
  return (
    answer &&
    typeof answer === "object" &&
    ["p10", "p50", "p90"].every(
      (k) => Array.isArray(answer[k]) && answer[k].length > 0 && answer[k].every((v) => typeof v === "number" && isFinite(v)),
    ) &&
    answer.p10.length === answer.p50.length &&
    answer.p50.length === answer.p90.length
  );
}

// A cone: the p10..p90 band, its edges, and the median.
function coneChart(name, answer) {
  const width = 640;
  const height = 260;
  const pad = { left: 56, right: 16, top: 16, bottom: 28 };
  const n = answer.p50.length;
  const all = answer.p10.concat(answer.p50, answer.p90);
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const x = (i) => pad.left + (n === 1 ? 0 : (i * (width - pad.left - pad.right)) / (n - 1));
  const y = (v) => pad.top + ((hi - v) * (height - pad.top - pad.bottom)) / (hi - lo);
  const points = (series) => series.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
  const chart = svg("svg", {
    class: "cone",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "data-rpc": name,
    "data-points": String(n),
  });
  const title = svg("title", {});
  title.textContent = `${name}: p10, p50 and p90 over ${n} steps`;
  chart.append(title);
  const band = answer.p90.map((v, i) => [x(i), y(v)]).concat(
    answer.p10.map((v, i) => [x(i), y(v)]).reverse(),
  );
  chart.append(svg("polygon", { class: "band", points: band.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ") }));
  chart.append(svg("polyline", { class: "edge p90", points: points(answer.p90) }));
  chart.append(svg("polyline", { class: "edge p10", points: points(answer.p10) }));
  chart.append(svg("polyline", { class: "median p50", points: points(answer.p50) }));
  chart.append(svg("line", { class: "axis", x1: pad.left, y1: height - pad.bottom, x2: width - pad.right, y2: height - pad.bottom }));
  chart.append(svg("line", { class: "axis", x1: pad.left, y1: pad.top, x2: pad.left, y2: height - pad.bottom }));
  const label = (text, attrs) => {
    const t = svg("text", attrs);
    t.textContent = text;
    chart.append(t);
  };
  const digits = hi - lo < 10 ? 2 : 1;
  label(hi.toFixed(digits), { x: pad.left - 6, y: pad.top + 4, "text-anchor": "end" });
  label(lo.toFixed(digits), { x: pad.left - 6, y: height - pad.bottom, "text-anchor": "end" });
  label("1", { x: x(0), y: height - 8, "text-anchor": "middle" });
  label(String(n), { x: x(n - 1), y: height - 8, "text-anchor": "middle" });
  return chart;
}

function renderRpcAnswers(answers) {
  const names = Object.keys(answers || {});
  $("rpc-card").hidden = names.length === 0;
  const blocks = names.map((name) => {
    const sample = answers[name];
    const when = new Date(sample.at_ms).toLocaleTimeString();
    const head = el("p", {}, el("strong", {}, name), " ", el("span", { class: "muted" }, "at " + when));
    if (isCone(sample.answer)) {
      return el(
        "div",
        { class: "rpc", "data-rpc": name },
        head,
        coneChart(name, sample.answer),
        el("p", { class: "legend" }, "band: p10 to p90; line: p50 (median)"),
      );
    }
    return el("div", { class: "rpc", "data-rpc": name }, head, el("pre", {}, JSON.stringify(sample.answer, null, 2)));
  });
  $("rpc-answers").replaceChildren(...blocks);
}

function renderLog(lines) {
  const rows = (lines || [])
    .slice()
    .reverse()
    .map((line) =>
      el(
        "tr",
        { "data-level": line.level, "data-source": line.source },
        el("td", {}, new Date(line.at_ms).toLocaleTimeString()),
        el("td", {}, line.level),
        el("td", {}, line.source),
        el("td", {}, line.message),
      ),
    );
  $("log").tBodies[0].replaceChildren(...rows);
}

let shownPlugin = null;

function renderDetail(d) {
  const s = d.status;
  $("detail-name").textContent = s.name;
  $("detail-state").replaceWith(Object.assign(stateBadge(s.state), { id: "detail-state" }));
  $("release").disabled = s.state !== "quarantined";
  const calls = s.calls || {};
  definitions($("detail-status"), [
    ["version", s.version],
    ["capabilities", (s.capabilities || []).join(", ")],
    ["pid", s.pid],
    ["uptime", s.uptime_ms != null ? (s.uptime_ms / 1000).toFixed(0) + " s" : ""],
    ["restarts", String(s.restarts)],
    ["reloads", String(s.reloads)],
    ["calls", fmtCount(calls.calls) + " (" + fmtCount(calls.errors) + " failed)"],
    ["p50 / p99", calls.p50_ms != null ? fmtMs(calls.p50_ms) + " / " + fmtMs(calls.p99_ms) + " ms" : ""],
    ["fuel used", fmtCount(calls.fuel_used)],
    ["events handled", s.events_handled ? String(s.events_handled) : ""],
    ["error", s.error || s.reload_error],
    ["last exit", s.last_exit],
    ["build", s.digest],
    ["code", s.code],
    ["sandbox", (s.sandbox || []).map(([layer, status]) => layer + ": " + status).join("; ")],
  ]);
  const m = d.manifest;
  const declared = m ? (m.permissions.required || []).concat(m.permissions.optional || []) : [];
  definitions($("detail-permissions"), [
    ["declared", declared.join(", ") || "none"],
    ["granted", (d.granted || []).join(", ")],
    ["http allowlist", m && m.permissions.http_allowlist ? m.permissions.http_allowlist.join(", ") : ""],
  ]);
  definitions(
    $("detail-limits"),
    m ? Object.entries(m.resources).map(([k, v]) => [k, fmtCount(v)]) : [],
  );
  const mod = d.module;
  $("module-card").hidden = !mod;
  if (mod) {
    definitions(
      $("module-status"),
      [
        ["status", mod.status || ""],
        ["rpcs", (mod.rpcs || []).join(", ")],
        ["error", mod.error],
      ].concat(mod.stats || []),
    );
  }
  renderRpcAnswers(d.rpc_answers);
  renderLog(d.log);
  $("manifest").textContent = m ? JSON.stringify(m, null, 2) : "(the manifest could not be read)";
}

async function act(what) {
  const name = shownPlugin;
  const result = $("action-result");
  if (!token()) {
    result.textContent = "Set the API token first (the file api-token in the state directory).";
    return;
  }
  const path = "/v1/plugins/" + encodeURIComponent(name) + "/" + what;
  result.textContent = what + "...";
  try {
    const body = await api(path, { method: "POST" });
    result.textContent = what + ": " + JSON.stringify(body);
  } catch (e) {
    result.textContent = what + " refused (" + (e.status || "network") + "): " + e.message;
  }
  refresh();
}

// ---- navigation and polling ----

function route() {
  const match = location.hash.match(/^#\/plugin\/(.+)$/);
  shownPlugin = match ? decodeURIComponent(match[1]) : null;
  $("overview").hidden = shownPlugin !== null;
  $("detail").hidden = shownPlugin === null;
  $("action-result").textContent = "";
  refresh();
}

let inFlight = false;

async function refresh() {
  if (inFlight) return;
  inFlight = true;
  try {
    if (shownPlugin === null) {
      const [plugins, cluster] = await Promise.all([api("/v1/plugins"), clusterView()]);
      renderPlugins(plugins, cluster);
    } else {
      renderDetail(await api("/v1/plugins/" + encodeURIComponent(shownPlugin)));
    }
    setConnection("live", "live");
    document.body.dataset.updated = String(Date.now());
  } catch (e) {
    setConnection("lost", e.status ? "error " + e.status : "supervisor unreachable");
  } finally {
    inFlight = false;
  }
}

function start() {
  takeTokenFromFragment();
  showTokenState();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    showTokenState();
  });
  $("reload").addEventListener("click", () => act("reload"));
  $("release").addEventListener("click", () => act("release"));
  window.addEventListener("hashchange", route);
  route();
  setInterval(refresh, POLL_MS);
}

start();
