// bragg-service web page: submit, follow and inspect jobs over the REST API (/v1). No build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
// flag -> upload kind, from the server's table of input files (sim_core.inputs)
let FILE_FLAGS = {};
const TERMINAL = ["finished", "failed", "canceled"];
// a job's images the viewer shows (app/routes/images.py), the one it opens first
const VIEWABLE = ["floatimage.bin", "noiseimage.img", "intimage.img", "image.cbf", "image.nxs"];
// series: the selected series' numbering, its child jobs, the image shown and the latest look at
// its children ({id, first, images, children, n, ticket}), or null
const state = {examples: [], jobs: [], selected: null, selectedVersion: null, blobs: [], extra: {},
               series: null, listEtag: null, scrollTo: null};

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
  FILE_FLAGS = await (await fetch("/file_flags.json")).json();
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
    if (!kind) throw new Error(`${f.name}: no ${Object.keys(FILE_FLAGS).join(", ")} argument names it`);
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
    state.scrollTo = rec.id;  // its picture, once there, is brought into view too
    await refreshJobs();
    $("#detail").scrollIntoView({block: "start"});
  } catch (e) {
    out.className = "error";
    out.textContent = e.message;
  }
}

// -- the job list -----------------------------------------------------------------------------------
function pct(p) { return `${Math.round(100 * p)}%`; }

// "series · 36 images · 10/36 done · 1 failed"
function seriesSummary(s) {
  let text = `series · ${s.images} image${s.images === 1 ? "" : "s"} · ${s.images_done}/${s.images} done`;
  if (s.images_failed) text += ` · ${s.images_failed} failed`;
  if (s.images_canceled) text += ` · ${s.images_canceled} canceled`;
  return text;
}

// what changes a job's detail view: its status and progress, and a series' image counts
function versionOf(rec) {
  const s = rec.series;
  return `${rec.status}/${rec.progress}` + (s ? `/${s.images_done}/${s.images_failed}/${s.children_ended}` : "");
}

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
    const label = tr.querySelector(".label");
    label.textContent = j.kind === "trace" && j.parent
      ? (j.label || `traces of ${j.parent}`).replace(j.parent, j.parent.slice(0, 8)) : (j.label || "");
    if (j.series) {
      const note = document.createElement("span");
      note.className = "series-note";
      note.textContent = seriesSummary(j.series);
      if (label.textContent) label.append(document.createElement("br"));
      label.append(note);
    }
    tr.addEventListener("click", () => {
      state.selected = j.id; state.selectedVersion = null; renderJobs(); showDetail(); linkChanged();
    });
    tbody.appendChild(tr);
  }
  $("#jobs-count").textContent = state.jobs.length ? `(${state.jobs.length})` : "(none yet)";
}

// the list, asked with the ETag of the last one: 304 (a few headers) while nothing in it changed
async function fetchJobList() {
  const headers = authHeaders();
  if (state.listEtag) headers["If-None-Match"] = state.listEtag;
  const r = await fetch("/v1/jobs?limit=50", {headers, cache: "no-store"});
  if (r.status === 304) return null;
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    const err = new Error(describeError(r.status, data));
    err.status = r.status;
    throw err;
  }
  state.listEtag = r.headers.get("etag");
  return data.jobs;
}

async function refreshJobs() {
  try {
    const jobs = await fetchJobList();
    if (jobs === null) return;  // unchanged: nothing to draw again
    state.jobs = jobs;
    $("#jobs-error").textContent = "";
  } catch (e) {
    state.listEtag = null;
    $("#jobs-error").textContent = e.status === 401 ? "type your token above to see your jobs" : e.message;
    state.jobs = [];
  }
  renderJobs();
  const sel = state.jobs.find((j) => j.id === state.selected);
  if (sel && versionOf(sel) !== state.selectedVersion) await showDetail(sel);
}

// -- one job --------------------------------------------------------------------------------------
async function showDetail(rec) {
  if (!state.selected) return;
  if (!rec) rec = await api("GET", `/v1/jobs/${state.selected}`);
  const changedStatus = !state.selectedVersion || !state.selectedVersion.startsWith(rec.status + "/");
  state.selectedVersion = versionOf(rec);
  $("#detail").hidden = false;
  $("#detail-id").textContent = rec.id;
  const badge = $("#detail-status");
  badge.textContent = rec.status === "running" ? `running ${pct(rec.progress)}` : rec.status;
  badge.className = `badge ${rec.status}`;
  $("#cancel").hidden = TERMINAL.includes(rec.status);
  const s = rec.series;
  const fields = {label: rec.label,
    images: s && `${s.images}, numbered ${s.first_image}–${s.first_image + s.images - 1}`,
    done: s && `${s.images_done} of ${s.images}` + (s.images_failed ? ` · ${s.images_failed} failed` : "") +
      (s.images_canceled ? ` · ${s.images_canceled} canceled` : ""),
    device: rec.device, dtype: rec.dtype,
    size: (rec.shape || []).slice().reverse().join(" × ") + " pixels" + (s ? " each" : ""),
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
  // a series' failed images each with their error; another job's error
  const failures = (s && s.failures) || [];
  $("#detail-error").textContent = failures.length
    ? failures.map((f) => `image${f.images.length === 1 ? "" : "s"} ${f.images.join(", ")}: ` +
                          `${f.error.type}: ${f.error.message}`).join("\n")
    : rec.error ? `${rec.error.type}: ${rec.error.message}` : "";
  if (changedStatus) await showArtifacts(rec);
  else if (s) await showSeries(rec);
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
  $("#image-files-box").hidden = true;
  if (rec.shape && rec.shape.length) {
    // the pixel to trace starts at the detector's centre, and stays on it
    for (const [input, size] of [[$("#trace-s"), rec.shape[0]], [$("#trace-f"), rec.shape[1]]]) {
      input.max = size - 1;
      if (!(+input.value < size)) input.value = Math.floor(size / 2);
    }
  }
  if (state.viewer.job && state.viewer.job.id !== rec.id) closeCompare();
  if (rec.series) { await showSeries(rec); return; }
  state.series = null;
  $("#report-box").hidden = true;
  if (rec.verification) await showReport(rec, $("#report-box"), (url) => api("GET", url));
  for (const a of rec.artifacts) artifactItem(a, a.name, list, traces);
  // the float image, else the first other image the job wrote
  const image = rec.status === "finished" && rec.kind !== "trace" &&
    VIEWABLE.find((name) => rec.artifacts.some((a) => a.name === name));
  const viewable = !!image;
  if (viewable) {
    state.viewer.setAvailable(null);
    try { await state.viewer.open(rec.id, null, image); } catch (e) { $("#detail-error").textContent = e.message; }
    broughtIntoView(rec.id);
  } else state.viewer.close();
  const png = rec.artifacts.find((a) => a.name === "preview.png");
  if (png && !viewable) {
    const url = URL.createObjectURL(await blobOf(png.url));
    state.blobs.push(url);
    $("#preview").src = url;
    $("#preview-box").hidden = false;
  }
}

// a download link for the artifact `a` ({name, size, url}) showing `text`: into `traces` with a
// show button for a trace, else into `list`
function artifactItem(a, text, list, traces) {
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.href = a.url;
  link.textContent = text;
  link.addEventListener("click", (ev) => { ev.preventDefault(); download(a); });
  li.append(link);
  if (a.size !== undefined) li.append(` ${a.size.toLocaleString()} bytes`);
  if (text.startsWith("trace_")) {
    const show = document.createElement("button");
    show.textContent = "show";
    show.addEventListener("click", () => showTrace(a.url, a.name));
    li.append(" ", show);
    traces.appendChild(li);
  } else list.appendChild(li);
  return link;
}

// -- a series ---------------------------------------------------------------------------------------
function imageNumber(n) { return String(n).padStart(5, "0"); }

// every child job of series `id`, in image order
async function seriesChildren(id) {
  const out = [];
  let cursor = null;
  do {
    const page = await api("GET", `/v1/jobs?parent=${id}&limit=200` + (cursor ? `&cursor=${cursor}` : ""));
    out.push(...page.jobs);
    cursor = page.next_cursor;
  } while (cursor);
  return out;
}

// a series: the dataset zip (once finished), the viewer on its first rendered image (stepping
// through those rendered so far), the files of the image shown
async function showSeries(rec) {
  const s = rec.series;
  if (!state.series || state.series.id !== rec.id) {
    state.series = {id: rec.id, first: s.first_image, images: s.images, children: [], n: null};
    state.viewer.close();
  }
  const ser = state.series;
  const ticket = ser.ticket = (ser.ticket || 0) + 1;
  showDataset(rec);
  const children = await seriesChildren(rec.id);
  if (state.series !== ser || ser.ticket !== ticket) return;  // another job, or a newer look at this one
  ser.children = children;
  const done = new Set();
  for (const c of children) if (c.status === "finished") for (const n of c.image_numbers) done.add(n);
  const v = state.viewer;
  v.setAvailable(done.size === s.images ? null : done);
  const open = (v.job && v.job.id === rec.id) || (v.target && v.target.id === rec.id);
  if (!open && done.size) {
    try { await v.open(rec.id, Math.min(...done)); } catch (e) { $("#detail-error").textContent = e.message; }
    broughtIntoView(rec.id);
  } else if (open && ser.n !== null) showImageFiles(ser.n);
  else if (!done.size) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = TERMINAL.includes(rec.status) ? "no image was rendered" : "no image is rendered yet";
    $("#artifacts").append(li);
  }
}

function showDataset(rec) {
  const list = $("#artifacts");
  list.replaceChildren();
  if (rec.status === "finished") {
    const link = artifactItem({name: `${rec.id}.zip`, url: rec.series.dataset_url}, "dataset (zip)", list);
    link.id = "dataset-link";
    link.parentElement.append(": every image's files and sha256.txt, as one zip");
    return;
  }
  const li = document.createElement("li");
  li.id = "dataset";
  li.className = "muted";
  li.textContent = TERMINAL.includes(rec.status) ? `no dataset: the series is ${rec.status}`
    : "the dataset (one zip of every image) once every image is rendered";
  list.append(li);
}

// the viewer shows image n: its files (named as a single job's) and traces
function imageShown(n) {
  const ser = state.series;
  if (!ser || !state.viewer.job || state.viewer.job.id !== ser.id) return;
  if (ser.n !== n) {
    ser.n = n;
    $("#trace-view").replaceChildren();
    $("#trace-raw-box").hidden = true;
  }
  showImageFiles(n);
}

function showImageFiles(n) {
  const ser = state.series;
  const list = $("#image-files"), traces = $("#traces");
  list.replaceChildren();
  traces.replaceChildren();
  $("#image-files-n").textContent = String(n);
  $("#image-files-box").hidden = false;
  const child = ser.children.find((c) => c.image_numbers.includes(n));
  if (!child || child.status !== "finished") {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = `image ${n} is not rendered yet`;
    list.append(li);
    return;
  }
  // the child holds image n's files numbered (floatimage_00005.bin); the image route names them
  // as a single job's (floatimage.bin)
  const numbered = new RegExp(`^(.+)_${imageNumber(n)}(\\.[^.]+)?$`);
  for (const a of child.artifacts) {
    const m = a.name.match(numbered);
    if (!m) continue;
    const name = m[1] + (m[2] || "");
    artifactItem({name: a.name, size: a.size, url: `/v1/jobs/${ser.id}/images/${n}/artifacts/${name}`},
                 name, list, traces);
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

// a pixel's trace (of a series: of the image shown): shown at once when it exists, else traced by
// a small job and shown when done
async function tracePixel() {
  const id = state.selected, s = +$("#trace-s").value, f = +$("#trace-f").value;
  const ser = state.series && state.series.id === id ? state.series : null;
  const n = ser ? (ser.n ?? ser.first) : null;
  const base = ser ? `/v1/jobs/${id}/images/${n}` : `/v1/jobs/${id}`;
  const path = `${base}/trace?pixel=${s},${f}`;
  const name = ser ? `trace_${s}_${f}_${imageNumber(n)}.log` : `trace_${s}_${f}.log`;
  const ticket = state.traceTicket = (state.traceTicket || 0) + 1;
  const current = () => ticket === state.traceTicket && id === state.selected &&
    (state.series ? state.series.n ?? state.series.first : null) === n;
  try {
    showTraceText(await api("GET", path), name);
    return;
  } catch (e) {
    if (e.status !== 404) { traceMessage(e.message, true); return; }
  }
  try {
    await api("POST", `${base}/traces`, {pixels: [[s, f]]});
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

// a job submitted from the page: its picture is scrolled into view when it first shows
function broughtIntoView(id) {
  if (state.scrollTo !== id || !state.viewer.job) return;
  state.scrollTo = null;
  $("#viewer").scrollIntoView({block: "start"});
}

// -- a local image beside the simulated one ----------------------------------------------------------
async function openLocal() {
  const file = $("#local-file").files[0];
  if (!file || !state.viewer.job) return;
  try {
    const form = new FormData();
    form.append("kind", "image");
    form.append("file", file, file.name);
    const rec = await api("POST", "/v1/files", form);
    await showCompare(rec.id);
  } catch (e) { state.viewer.setStatus(`${file.name}: ${e.message}`); }
  $("#local-file").value = "";
}

async function showCompare(fileId) {
  const main = state.viewer, b = state.compare;
  if (!main.job) return;
  main.pair(b);
  await b.openFile(fileId, main.job.geo);
  $("#b-compare-title").textContent = b.job.artifact;
  $("#detail .split").classList.add("comparing");
  main.sync();
  linkChanged();
}

function closeCompare() {
  if (!state.compare.job) return;
  state.compare.unpair();
  state.compare.close();
  $("#detail .split").classList.remove("comparing");
  linkChanged();
}

// -- deep links: #job=ID&n=3&image=noiseimage.img&zoom=16&pixel=120,130&map=heat&compare=FILE ------------
function currentLink() {
  const v = state.viewer, p = new URLSearchParams();
  if (!state.selected) return "";
  p.set("job", state.selected);
  if (v.job && v.job.id === state.selected) {
    if (v.job.images > 1) p.set("n", String(v.job.n));
    if (v.job.artifact !== "floatimage.bin") p.set("image", v.job.artifact);
    const view = v.viewState();
    if (view && view.zoom !== null) { p.set("zoom", String(view.zoom)); p.set("pixel", `${view.s},${view.f}`); }
    if (v.contrast && v.contrast.mapName !== "grey") p.set("map", v.contrast.mapName);
    if (state.compare.job) p.set("compare", state.compare.job.id);
  }
  return "#" + p.toString();
}

function linkChanged() {
  if (state.applyingLink) return;
  clearTimeout(state.linkTimer);
  state.linkTimer = setTimeout(() => {
    const link = currentLink();
    if (link && link !== location.hash) history.replaceState(null, "", link);
  }, 150);
}

function parseLink(hash) {
  const p = new URLSearchParams(hash.replace(/^#/, ""));
  const num = (k) => (p.has(k) && Number.isFinite(+p.get(k)) ? +p.get(k) : null);
  const px = (p.get("pixel") || "").split(",").map(Number);
  return {job: p.get("job"), n: num("n"), image: p.get("image"), zoom: num("zoom"),
          pixel: px.length === 2 && px.every(Number.isInteger) ? px : null, map: p.get("map"),
          compare: p.get("compare")};
}

// open the view a link names: the job, its image n and file, the zoom about a pixel, the colours
async function openLink(link) {
  if (!link.job) return;
  state.applyingLink = true;
  try {
    state.selected = link.job;
    state.selectedVersion = null;
    renderJobs();
    await showDetail();
    const v = state.viewer;
    if (!v.job || v.job.id !== link.job) return;
    if ((link.n !== null && link.n !== v.job.n) || (link.image && link.image !== v.job.artifact)) {
      await v.open(link.job, link.n ?? v.job.n, link.image || v.job.artifact);
    }
    if (link.map && $("#c-map").querySelector(`option[value="${link.map}"]`)) {
      $("#c-map").value = link.map;
      v.contrastChanged();
    }
    if (link.zoom && link.pixel) v.goTo(link.pixel[0], link.pixel[1], link.zoom);
    if (link.compare) await showCompare(link.compare);
  } catch (e) { $("#detail-error").textContent = `the link: ${e.message}`; } finally {
    state.applyingLink = false;
  }
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
  $("#token").addEventListener("change", () => {
    localStorage.setItem("bragg.token", $("#token").value.trim());
    state.listEtag = null;
    refreshJobs();
  });
  $("#example").addEventListener("change", chooseExample);
  $("#submission").addEventListener("input", () => { if (!$("#submission").value.trim()) state.extra = {}; });
  $("#submit").addEventListener("click", submit);
  $("#trace-form").addEventListener("submit", (ev) => { ev.preventDefault(); tracePixel(); });
  const link = parseLink(location.hash);
  const apiOf = {binary: binaryOf, json: (url) => api("GET", url)};
  // the viewer of a local image: the job viewer's markup, its ids prefixed with b-
  const twin = $("#viewer").cloneNode(true);
  for (const el of [twin, ...twin.querySelectorAll("[id]")]) el.id = "b-" + el.id;
  twin.setAttribute("aria-label", "a local image beside the simulated one");
  twin.querySelector("#b-view").setAttribute("aria-label", "the local image, in step with the simulated one");
  $("#viewer").after(twin);
  state.viewer = new ImageViewer($("#viewer"), apiOf, {
    onPick: (s, f) => { $("#trace-s").value = s; $("#trace-f").value = f; tracePixel(); },
    onImage: imageShown, onView: linkChanged});
  state.compare = new ImageViewer(twin, apiOf, {prefix: "b-", onView: linkChanged});
  window.viewer = state.viewer;
  window.compareViewer = state.compare;
  $("#local-file").addEventListener("change", openLocal);
  $("#b-compare-close").addEventListener("click", closeCompare);
  $("#cancel").addEventListener("click", cancelSelected);
  await loadExamples();
  await Promise.all([refreshJobs(), health()]);
  await openLink(link);
  // a link typed or pasted into the address bar of the open page
  window.addEventListener("hashchange", () => openLink(parseLink(location.hash)));
  setInterval(() => { if (!document.hidden) refreshJobs(); }, 1000);
  setInterval(() => { if (!document.hidden) health(); }, 5000);
  document.body.dataset.ready = "1";
});
