// bragg-service web page: submit, follow and inspect jobs over the REST API (/v1). No build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const FILE_FLAGS = {"-hkl": "hkl", "-mat": "matrix", "-sourcefile": "sources", "-mask": "mask", "-img": "mask"};
const TERMINAL = ["finished", "failed", "canceled"];
const state = {examples: [], jobs: [], selected: null, selectedVersion: null, blobs: [], extra: {}};

// -- the API ----------------------------------------------------------------------------------------
function authHeaders() {
  const token = $("#token").value.trim();
  return token ? {"Authorization": "Bearer " + token} : {};
}

async function api(method, path, body) {
  const opts = {method, headers: authHeaders()};
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, opts);
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const err = new Error(describeError(r.status, data));
    err.status = r.status;
    err.body = data;
    throw err;
  }
  return data;
}

function describeError(status, data) {
  if (typeof data !== "object" || data === null) return `${status}: ${data}`;
  let msg = `${status}: ${typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)}`;
  for (const e of data.errors || []) msg += `\n  ${e.field}: ${e.message}`;
  if (data.hint) msg += `\n  hint: ${data.hint}`;
  return msg;
}

async function binaryOf(url) {
  const r = await fetch(url, {headers: authHeaders()});
  if (!r.ok) {
    const type = r.headers.get("content-type") || "";
    throw new Error(describeError(r.status, type.includes("json") ? await r.json() : await r.text()));
  }
  return r.arrayBuffer();
}

async function blobOf(url) {
  const r = await fetch(url, {headers: authHeaders()});
  if (!r.ok) throw new Error(`${r.status} for ${url}`);
  return r.blob();
}

// -- submitting -----------------------------------------------------------------------------------
async function loadExamples() {
  state.examples = await (await fetch("/examples.json")).json();
  const sel = $("#example");
  for (const ex of state.examples) {
    const o = document.createElement("option");
    o.value = ex.name;
    o.textContent = ex.title;
    sel.appendChild(o);
  }
}

function chooseExample() {
  const ex = state.examples.find((e) => e.name === $("#example").value);
  $("#example-description").textContent = ex ? ex.description : "";
  state.extra = {};
  if (!ex) return;
  const sub = ex.submission;
  if (sub.nanobragg_args && !sub.files) {
    // the arguments as text; the submission's other fields (trace pixels, label) go along
    $("#mode-args").checked = true;
    $("#submission").value = sub.nanobragg_args.join(" ");
    for (const [k, v] of Object.entries(sub)) if (k !== "nanobragg_args") state.extra[k] = v;
    if (Object.keys(state.extra).length) {
      $("#example-description").textContent += "  Sent with: " + JSON.stringify(state.extra);
    }
  } else {
    $("#mode-json").checked = true;
    $("#submission").value = JSON.stringify(sub, null, 2);
  }
}

async function uploadFiles(args) {
  const files = {};
  for (const f of $("#files").files) {
    const i = args.indexOf(f.name);
    const kind = i > 0 ? FILE_FLAGS[args[i - 1]] : undefined;
    if (!kind) throw new Error(`${f.name}: no -hkl, -mat, -sourcefile, -mask or -img argument names it`);
    const form = new FormData();
    form.append("kind", kind);
    form.append("file", f, f.name);
    files[f.name] = (await api("POST", "/v1/files", form)).id;
  }
  return files;
}

function buildSubmission() {
  const text = $("#submission").value.trim();
  if (!text) throw new Error("write a config, a submission or nanoBragg arguments first");
  if ($("#mode-args").checked) {
    const args = text.split(/\s+/).filter((a) => a && a !== "nanoBragg" && a !== "nanobragg");
    return Object.assign({}, state.extra || {}, {nanobragg_args: args});
  }
  let doc;
  try { doc = JSON.parse(text); } catch (e) { throw new Error("not JSON: " + e.message); }
  return ("config" in doc || "nanobragg_args" in doc) ? doc : {config: doc};
}

async function submit() {
  const out = $("#submit-result");
  out.className = "";
  out.textContent = "submitting…";
  try {
    const body = buildSubmission();
    if (body.nanobragg_args && $("#files").files.length) {
      body.files = Object.assign(body.files || {}, await uploadFiles(body.nanobragg_args));
    }
    const rec = await api("POST", "/v1/jobs", body);
    out.textContent = `queued job ${rec.id}`;
    out.dataset.jobId = rec.id;
    state.selected = rec.id;
    state.selectedVersion = null;
    await refreshJobs();
  } catch (e) {
    out.className = "error";
    out.textContent = e.message;
  }
}

// -- the job list -----------------------------------------------------------------------------------
function pct(p) { return `${Math.round(100 * p)}%`; }

function renderJobs() {
  const tbody = $("#jobs tbody");
  tbody.replaceChildren();
  for (const j of state.jobs) {
    const tr = document.createElement("tr");
    tr.dataset.id = j.id;
    tr.dataset.status = j.status;
    if (j.id === state.selected) tr.className = "selected";
    const bar = `<progress max="1" value="${j.progress}"></progress> ${pct(j.progress)}`;
    tr.innerHTML = `<td><code>${j.id.slice(0, 8)}</code></td><td class="label"></td>` +
      `<td><span class="badge ${j.status}">${j.status}</span></td><td>${bar}</td>` +
      `<td>${(j.shape || []).slice().reverse().join("×")}</td>` +
      `<td>${(j.created_at || "").slice(11, 19)}</td>`;
    tr.querySelector(".label").textContent = j.kind === "trace" && j.parent
      ? `traces of ${j.parent.slice(0, 8)}` : (j.label || "");
    tr.addEventListener("click", () => { state.selected = j.id; state.selectedVersion = null; renderJobs(); showDetail(); });
    tbody.appendChild(tr);
  }
  $("#jobs-count").textContent = state.jobs.length ? `(${state.jobs.length})` : "(none yet)";
}

async function refreshJobs() {
  try {
    state.jobs = (await api("GET", "/v1/jobs?limit=50")).jobs;
    $("#jobs-error").textContent = "";
  } catch (e) {
    $("#jobs-error").textContent = e.status === 401 ? "type your token above to see your jobs" : e.message;
    state.jobs = [];
  }
  renderJobs();
  const sel = state.jobs.find((j) => j.id === state.selected);
  if (sel && `${sel.status}/${sel.progress}` !== state.selectedVersion) await showDetail(sel);
}

// -- one job --------------------------------------------------------------------------------------
async function showDetail(rec) {
  if (!state.selected) return;
  if (!rec) rec = await api("GET", `/v1/jobs/${state.selected}`);
  const changedStatus = !state.selectedVersion || !state.selectedVersion.startsWith(rec.status + "/");
  state.selectedVersion = `${rec.status}/${rec.progress}`;
  $("#detail").hidden = false;
  $("#detail-id").textContent = rec.id;
  const badge = $("#detail-status");
  badge.textContent = rec.status === "running" ? `running ${pct(rec.progress)}` : rec.status;
  badge.className = `badge ${rec.status}`;
  $("#cancel").hidden = TERMINAL.includes(rec.status);
  const fields = {label: rec.label, device: rec.device, dtype: rec.dtype,
    size: (rec.shape || []).slice().reverse().join(" × ") + " pixels",
    evaluations: rec.evaluations.toLocaleString(), created: rec.created_at, finished: rec.finished_at,
    config_sha256: rec.config_sha256, warnings: (rec.warnings || []).join("; ")};
  const dl = $("#detail-fields");
  dl.replaceChildren();
  for (const [k, v] of Object.entries(fields)) {
    if (!v) continue;
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
  $("#detail-error").textContent = rec.error ? `${rec.error.type}: ${rec.error.message}` : "";
  if (changedStatus) await showArtifacts(rec);
}

async function showArtifacts(rec) {
  for (const u of state.blobs) URL.revokeObjectURL(u);
  state.blobs = [];
  const list = $("#artifacts"), traces = $("#traces");
  list.replaceChildren();
  traces.replaceChildren();
  $("#trace-view").replaceChildren();
  $("#trace-raw-box").hidden = true;
  $("#preview-box").hidden = true;
  $("#preview").removeAttribute("src");
  for (const a of rec.artifacts) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = a.url;
    link.textContent = a.name;
    link.addEventListener("click", (ev) => { ev.preventDefault(); download(a); });
    li.append(link, ` ${a.size.toLocaleString()} bytes`);
    if (a.name.startsWith("trace_")) {
      const show = document.createElement("button");
      show.textContent = "show";
      show.addEventListener("click", () => showTrace(a.url, a.name));
      li.append(" ", show);
      traces.appendChild(li);
    } else list.appendChild(li);
  }
  const viewable = rec.status === "finished" && rec.kind !== "trace" &&
    rec.artifacts.some((a) => /^floatimage(_\d+)?\.bin$/.test(a.name));
  if (viewable) {
    try { await state.viewer.open(rec.id); } catch (e) { $("#detail-error").textContent = e.message; }
  } else state.viewer.close();
  const png = rec.artifacts.find((a) => a.name === "preview.png");
  if (png && !viewable) {
    const url = URL.createObjectURL(await blobOf(png.url));
    state.blobs.push(url);
    $("#preview").src = url;
    $("#preview-box").hidden = false;
  }
  if (rec.shape && rec.shape.length) {
    $("#trace-s").max = rec.shape[0] - 1;
    $("#trace-f").max = rec.shape[1] - 1;
  }
}

async function download(a) {
  const url = URL.createObjectURL(await blobOf(a.url));
  const link = document.createElement("a");
  link.href = url;
  link.download = a.name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function showTraceText(text, name) {
  $("#trace-text").textContent = text;
  $("#trace-raw-box").hidden = false;
  renderTrace($("#trace-view"), text, name);
}

function traceMessage(text, isError) {
  const p = document.createElement("p");
  p.className = isError ? "error" : "muted";
  p.textContent = text;
  $("#trace-view").replaceChildren(p);
}

async function showTrace(url, name) {
  showTraceText(await (await blobOf(url)).text(), name);
}

// a pixel's trace: shown at once when it exists, else traced by a small job and shown when done
async function tracePixel() {
  const id = state.selected, s = +$("#trace-s").value, f = +$("#trace-f").value;
  const path = `/v1/jobs/${id}/trace?pixel=${s},${f}`, name = `trace_${s}_${f}.log`;
  const ticket = state.traceTicket = (state.traceTicket || 0) + 1;
  const current = () => ticket === state.traceTicket && id === state.selected;
  try {
    showTraceText(await api("GET", path), name);
    return;
  } catch (e) {
    if (e.status !== 404) { traceMessage(e.message, true); return; }
  }
  try {
    await api("POST", `/v1/jobs/${id}/traces`, {pixels: [[s, f]]});
    traceMessage(`tracing pixel (${s}, ${f})…`);
    for (let i = 0; i < 600 && current(); i++) {
      await new Promise((ok) => setTimeout(ok, 500));
      if (!current()) return;
      try { showTraceText(await api("GET", path), name); return; } catch (e) {
        if (e.status !== 404 || (e.body && /ended/.test(e.body.hint || ""))) { traceMessage(e.message, true); return; }
      }
    }
  } catch (e) { if (current()) traceMessage(e.message, true); }
}

async function cancelSelected() {
  try { await api("POST", `/v1/jobs/${state.selected}/cancel`); } catch (e) { $("#detail-error").textContent = e.message; }
  await refreshJobs();
}

async function health() {
  const b = $("#health");
  try {
    const r = await fetch("/readyz");
    const data = await r.json();
    b.textContent = r.ok ? `ready · ${data.workers.length} worker${data.workers.length === 1 ? "" : "s"}` : `not ready: ${data.reason}`;
    b.className = "badge " + (r.ok ? "finished" : "failed");
  } catch (e) { b.textContent = "unreachable"; b.className = "badge failed"; }
}

// -- start ------------------------------------------------------------------------------------------
window.addEventListener("DOMContentLoaded", async () => {
  $("#token").value = localStorage.getItem("bragg.token") || "";
  $("#token").addEventListener("change", () => { localStorage.setItem("bragg.token", $("#token").value.trim()); refreshJobs(); });
  $("#example").addEventListener("change", chooseExample);
  $("#submission").addEventListener("input", () => { if (!$("#submission").value.trim()) state.extra = {}; });
  $("#submit").addEventListener("click", submit);
  $("#trace-form").addEventListener("submit", (ev) => { ev.preventDefault(); tracePixel(); });
  state.viewer = new ImageViewer($("#viewer"), {binary: binaryOf, json: (url) => api("GET", url)},
    (s, f) => { $("#trace-s").value = s; $("#trace-f").value = f; tracePixel(); });
  window.viewer = state.viewer;
  $("#cancel").addEventListener("click", cancelSelected);
  await loadExamples();
  await Promise.all([refreshJobs(), health()]);
  setInterval(() => { if (!document.hidden) refreshJobs(); }, 1000);
  setInterval(() => { if (!document.hidden) health(); }, 5000);
  document.body.dataset.ready = "1";
});
