// modelport's status page: polls ui/status.json (cumulative counters) and draws rates, percentiles,
// batch sizes and failures of the last few minutes as plain SVG. Read-only: it only ever sends GETs.
"use strict";

const POLL_MS = 2000;
const KEEP_NS = 5 * 60 * 1e9;
const KEY_STORE = "modelport-status-keys";
const REASONS = ["REJECTED", "CANCELED", "BACKEND", "OTHER"];
const COLORS = { rps: "#1570ef", p50: "#12b76a", p99: "#f79009", mean: "#12b76a",
  REJECTED: "#f04438", CANCELED: "#98a2b3", BACKEND: "#7a5af8", OTHER: "#ee46bc", bar: "#1570ef" };
const SVG = "http://www.w3.org/2000/svg";

const state = { polls: 0, previous: null, history: new Map(), busy: new Map() };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function keys() {
  try { return JSON.parse(sessionStorage.getItem(KEY_STORE) || "{}"); } catch (e) { return {}; }
}

async function poll() {
  let doc = null;
  try {
    const response = await fetch("ui/status.json", { headers: keys(), cache: "no-store" });
    if (response.status === 403) {
      askForKey((await response.json()).error || "This API is restricted");
      return; // polling resumes when the key is entered
    }
    if (!response.ok) throw new Error(`ui/status.json answered ${response.status}`);
    doc = await response.json();
  } catch (error) {
    showError(String(error.message || error));
  }
  if (doc) {
    document.getElementById("error").hidden = true;
    document.getElementById("key").hidden = true;
    update(doc);
  }
  setTimeout(poll, POLL_MS);
}

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = `Cannot read the server's status: ${text}`;
  box.hidden = false;
  document.body.dataset.status = "error";
}

function askForKey(message) {
  // The refusal names the header(s) the server expects; ask for each one's value.
  const names = [...message.matchAll(/'([^']+)'/g)].map((m) => m[1]);
  const form = document.getElementById("key");
  const fields = document.getElementById("key-fields");
  document.getElementById("key-message").textContent =
    `${message}. The statistics API is restricted: enter the key to see the status.`;
  fields.replaceChildren(...names.map((name) => el("label", {}, name,
    el("input", { type: "password", name, autocomplete: "off", "data-header": name }))));
  form.hidden = false;
  document.body.dataset.status = "key-needed";
}

document.getElementById("key").addEventListener("submit", (event) => {
  event.preventDefault();
  const stored = keys();
  for (const input of event.target.querySelectorAll("input[data-header]")) stored[input.name] = input.value;
  sessionStorage.setItem(KEY_STORE, JSON.stringify(stored));
  event.target.hidden = true;
  poll();
});

function update(doc) {
  state.polls += 1;
  document.body.dataset.polls = String(state.polls);
  document.body.dataset.status = "ok";
  document.getElementById("server").textContent =
    `version ${doc.server.version} · ${doc.server.ready ? "ready" : "not ready"} · ${doc.server.inflight} in flight`;
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  if (state.previous) record(state.previous, doc);
  state.previous = doc;
  document.getElementById("models").replaceChildren(...doc.models.map((model) => renderModel(model, doc)));
}

// --- from two snapshots to one sample per model ----------------------------------------------
function record(before, now) {
  const seconds = (now.time_ns - before.time_ns) / 1e9;
  if (seconds <= 0) return;
  const old = new Map(before.models.map((m) => [m.name, m]));
  for (const model of now.models) {
    const sample = modelSample(old.get(model.name), model, seconds, now.latency_bounds_ns);
    const history = state.history.get(model.name) || [];
    history.push({ t: now.time_ns, ...sample });
    while (history.length && now.time_ns - history[0].t > KEEP_NS) history.shift();
    state.history.set(model.name, history);
  }
}

function delta(now, before) {
  // A version reloaded under the same number starts its counters again.
  return before === undefined || now < before ? now : now - before;
}

function modelSample(before, model, seconds, bounds) {
  const previous = new Map(((before && before.served) || []).map((v) => [v.version, v]));
  const sample = { success: 0, successNs: 0, fail: 0, failures: {}, batches: {}, latency: null,
    computeNs: 0, instances: 0 };
  for (const version of model.served || []) {
    const was = previous.get(version.version) || {};
    const success = delta(version.success, was.success);
    sample.success += success;
    sample.successNs += success ? delta(version.success_ns, was.success_ns) : 0;
    sample.fail += delta(version.fail, was.fail);
    for (const reason of REASONS) {
      const count = delta(version.failures[reason] || 0, (was.failures || {})[reason]);
      sample.failures[reason] = (sample.failures[reason] || 0) + count;
    }
    for (const [size, count] of Object.entries(version.batches)) {
      const added = delta(count, (was.batches || {})[size]);
      if (added) sample.batches[size] = (sample.batches[size] || 0) + added;
    }
    if (version.request_latency) {
      const counts = version.request_latency.map((c, i) => delta(c, (was.request_latency || [])[i]));
      sample.latency = sample.latency ? sample.latency.map((c, i) => c + counts[i]) : counts;
    }
    const computeNs = delta(version.compute_ns, was.compute_ns);
    sample.computeNs += computeNs;
    sample.instances += version.instances;
    state.busy.set(`${model.name}/${version.version}`, computeNs / (seconds * 1e9 * Math.max(version.instances, 1)));
  }
  sample.rps = sample.success / seconds;
  sample.failRates = Object.fromEntries(REASONS.map((r) => [r, sample.failures[r] / seconds]));
  sample.p50 = sample.latency ? percentileMs(sample.latency, bounds, 0.5) : null;
  sample.p99 = sample.latency ? percentileMs(sample.latency, bounds, 0.99) : null;
  sample.mean = sample.success ? sample.successNs / sample.success / 1e6 : null;
  return sample;
}

function percentileMs(counts, bounds, q) {
  // Linear inside the bucket that holds the q-th request; the open last bucket reports its floor.
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i += 1) {
    if (seen + counts[i] >= rank && counts[i] > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1] / 1e6;
      const low = i ? bounds[i - 1] : 0;
      return (low + ((rank - seen) / counts[i]) * (bounds[i] - low)) / 1e6;
    }
    seen += counts[i];
  }
  return bounds[bounds.length - 1] / 1e6;
}

// --- rendering ------------------------------------------------------------------------------
function renderModel(model, doc) {
  const history = state.history.get(model.name) || [];
  const last = history[history.length - 1];
  const section = el("section", {
    class: "model",
    "data-model": model.name,
    "data-samples": String(history.length),
    "data-requests": String(history.reduce((sum, s) => sum + s.success, 0)),
    "data-failures": String(history.reduce((sum, s) => sum + s.fail, 0)),
    "data-max-rps": fixed(Math.max(0, ...history.map((s) => s.rps))),
    "data-last-rps": last ? fixed(last.rps) : "",
    "data-p99-ms": last && last.p99 !== null ? fixed(last.p99) : "",
  });
  const served = model.served || [];
  section.append(el("h2", {}, model.name,
    el("small", {}, served.length ? `${served.length} version(s) serving` : "not serving")));
  section.append(versionTable(model));
  if (model.traffic) section.append(el("p", { class: "traffic" }, `Traffic: ${describeTraffic(model.traffic)}`));
  if (served.length) {
    section.append(servedTable(model));
    section.append(charts(history, doc));
  }
  return section;
}

function versionTable(model) {
  const rows = model.versions.map((v) => el("tr", { "data-version": v.version, "data-state": v.state },
    el("td", {}, v.version || "—"), el("td", { class: `state-${v.state}` }, v.state || "unknown"),
    el("td", { class: "reason" }, v.reason || "")));
  return el("table", { class: "versions" },
    el("tr", {}, el("th", {}, "version"), el("th", {}, "state"), el("th", {}, "reason")), ...rows);
}

function describeTraffic(traffic) {
  const weights = Object.entries(traffic.weights || {});
  let text = "latest version (default)";
  if (traffic.pin !== null && traffic.pin !== undefined) text = `pinned to version ${traffic.pin}`;
  else if (weights.length) text = `split ${weights.map(([v, w]) => `v${v}: ${w}`).join(", ")}`;
  return traffic.source && traffic.source !== "default" ? `${text} (set by ${traffic.source})` : text;
}

function servedTable(model) {
  const head = ["version", "platform", "instances", "busy", "in flight", "queued", "max batch", "requests"];
  const rows = model.served.map((v) => {
    const busy = state.busy.get(`${model.name}/${v.version}`);
    return el("tr", { "data-served": v.version, "data-pending": String(v.pending) },
      el("td", {}, v.version), el("td", {}, v.platform), el("td", {}, v.instances),
      el("td", {}, busy === undefined ? "—" : `${Math.round(Math.min(busy, 1) * 100)}%`),
      el("td", {}, v.inflight), el("td", {}, v.pending), el("td", {}, v.max_batch_size), el("td", {}, v.success));
  });
  return el("table", { class: "served" }, el("tr", {}, ...head.map((h) => el("th", {}, h))), ...rows);
}

function charts(history, doc) {
  const end = doc.time_ns;
  const line = (key) => history.filter((s) => s[key] !== null).map((s) => [s.t, s[key]]);
  const latency = doc.histograms
    ? [{ name: "p50", points: line("p50") }, { name: "p99", points: line("p99") }]
    : [{ name: "mean", points: line("mean") }];
  const failures = REASONS.map((r) => ({ name: r, points: history.map((s) => [s.t, s.failRates[r]]) }));
  return el("div", { class: "charts" },
    lineChart("requests/s", [{ name: "rps", points: line("rps") }], end, "rps"),
    lineChart(doc.histograms ? "latency p50 / p99 (ms)" : "mean latency (ms)", latency, end, "latency"),
    batchChart(history),
    lineChart("failures/s by reason", failures, end, "failures"));
}

const W = 320, H = 110, PAD = 26;

function lineChart(title, series, end, kind) {
  const top = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p[1])));
  const scale = top > 0 ? niceCeiling(top) : 1;
  // The axis spans what the page has seen, up to the last 5 minutes.
  const first = Math.min(end, ...series.flatMap((s) => s.points.map((p) => p[0])));
  const span = Math.max(end - Math.max(first, end - KEEP_NS), 1);
  const x = (t) => PAD + ((t - (end - span)) / span) * (W - PAD - 4);
  const y = (v) => H - 14 - (v / scale) * (H - 24);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  chart.append(svg("line", { x1: PAD, y1: H - 14, x2: W - 4, y2: H - 14, stroke: "#d0d5dd" }));
  chart.append(svg("text", { x: 2, y: 12 }, fixed(scale)), svg("text", { x: 2, y: H - 14 }, "0"),
    svg("text", { x: PAD, y: H - 2 }, `−${ago(span)}`), svg("text", { x: W - 28, y: H - 2 }, "now"));
  const legend = el("div", { class: "legend" });
  for (const s of series) {
    const color = COLORS[s.name] || "#475467";
    if (s.points.length) {
      chart.append(svg("polyline", { fill: "none", stroke: color, "stroke-width": 1.5,
        points: s.points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ") }));
    }
    const latest = s.points.length ? fixed(s.points[s.points.length - 1][1]) : "—";
    legend.append(el("span", {}, el("i", { style: `background:${color}` }), `${s.name} ${latest}`));
  }
  return el("figure", { class: "chart", "data-chart": kind, "data-points": String(series[0].points.length) },
    el("h3", {}, title), chart, legend);
}

function batchChart(history) {
  const totals = {};
  for (const sample of history) {
    for (const [size, count] of Object.entries(sample.batches)) totals[size] = (totals[size] || 0) + count;
  }
  const sizes = Object.keys(totals).map(Number).sort((a, b) => a - b);
  const top = Math.max(1, ...sizes.map((s) => totals[s]));
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "batch sizes" });
  const width = sizes.length ? Math.min(40, (W - PAD - 4) / sizes.length) : 0;
  sizes.forEach((size, i) => {
    const height = (totals[size] / top) * (H - 30);
    const left = PAD + i * width;
    chart.append(svg("rect", { x: left + 1, y: H - 14 - height, width: width - 2, height, fill: COLORS.bar }),
      svg("text", { x: left + 2, y: H - 2 }, String(size)),
      svg("text", { x: left + 2, y: H - 16 - height }, String(totals[size])));
  });
  if (!sizes.length) chart.append(svg("text", { x: PAD, y: H / 2 }, "no executions yet"));
  const executions = sizes.reduce((sum, s) => sum + totals[s], 0);
  return el("figure", { class: "chart", "data-chart": "batch", "data-executions": String(executions),
    "data-sizes": sizes.join(",") },
  el("h3", {}, "executions by batch size"), chart,
  el("div", { class: "legend" }, `${executions} executions in the window`));
}

function ago(ns) {
  const seconds = Math.round(ns / 1e9);
  return seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`;
}

function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((c) => c >= value);
}

function fixed(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "";
  if (value === 0) return "0";
  return value >= 100 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(3);
}

poll();
