// The image viewer: a canvas that shows a job's image (the float image, the noisy or integer SMV
// image, the CBF image) or an image file the user uploaded, from tiles the API serves
// (GET /v1/jobs/{id}/image?slow=a:b&fast=c:d&step=k, raw float32, each value the maximum of a
// k x k block), with zoom and pan down to single pixels, colour maps and a contrast window drawn
// on the image's histogram, a colour bar, overloads coloured, the value, resolution and 2θ under
// the cursor with the values around it, a line profile, resolution rings and the beam centre.
// Two viewers can be paired: a user's own frame beside the simulated one, the same zoom and the
// same pixel under the cursor in both. No library, no build step.
"use strict";

const VIEW_PERCENTILES = ["50", "90", "99", "99.5", "99.9", "99.99"];

// -- the detector geometry (GET /v1/jobs/{id}/geometry), the same recipe as sim_core ----------
const vec = {
  add: (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]],
  sub: (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]],
  mul: (a, k) => [a[0] * k, a[1] * k, a[2] * k],
  dot: (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2],
  cross: (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]],
  norm: (a) => Math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]),
  unit: (a) => { const n = vec.norm(a); return n > 0 ? vec.mul(a, 1 / n) : a; },
  // Rodrigues' rotation of v about the unit vector axis by phi radians
  rotate: (v, axis, phi) => {
    const c = Math.cos(phi), s = Math.sin(phi);
    return vec.add(vec.add(vec.mul(axis, vec.dot(axis, v) * (1 - c)), vec.mul(v, c)),
                   vec.mul(vec.cross(axis, v), s));
  },
};

class Geometry {
  constructor(g) { Object.assign(this, g); }

  // lab position (m) of the point (slow, fast) in pixel units from the first pixel's outer corner
  position(slow, fast) {
    const px = this.pixel_size_m;
    let p = vec.add(vec.add(this.pix0_m, vec.mul(this.fdet, fast * px)), vec.mul(this.sdet, slow * px));
    if (this.curved) {
      const d = this.distance_m;
      p = vec.rotate(vec.rotate(vec.mul(this.beam, d), this.sdet, p[1] / d), this.fdet, p[2] / d);
    }
    return p;
  }

  // {d (Å, Infinity on the beam), tt (degrees)} at the centre of pixel (s, f)
  resolution(s, f) {
    const p = this.position(s + 0.5, f + 0.5);
    const c = Math.max(-1, Math.min(1, vec.dot(p, this.beam) / vec.norm(p)));
    const tt = Math.acos(c);
    const sin = Math.sin(tt / 2);
    return {d: sin > 0 ? this.wavelength_A / (2 * sin) : Infinity, tt: tt * 180 / Math.PI};
  }

  // the ring of resolution d on a flat detector: [[slow, fast] | null, ...] (null: off the plane)
  ring(d, points = 360) {
    if (this.curved || !(d > this.wavelength_A / 2)) return [];
    const tt = 2 * Math.asin(this.wavelength_A / (2 * d));
    const b = vec.unit(this.beam);
    const u = vec.unit(vec.cross(b, Math.abs(b[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0]));
    const w = vec.cross(b, u);
    const n = this.odet, px = this.pixel_size_m, h = vec.dot(this.pix0_m, n);
    const out = [];
    for (let i = 0; i <= points; i++) {
      const phi = 2 * Math.PI * i / points;
      const dir = vec.add(vec.mul(b, Math.cos(tt)),
                          vec.mul(vec.add(vec.mul(u, Math.cos(phi)), vec.mul(w, Math.sin(phi))), Math.sin(tt)));
      const dn = vec.dot(dir, n);
      const t = dn !== 0 ? h / dn : -1;
      if (!(t > 0)) { out.push(null); continue; }
      const rel = vec.sub(vec.mul(dir, t), this.pix0_m);
      out.push([vec.dot(rel, this.sdet) / px, vec.dot(rel, this.fdet) / px]);
    }
    return out;
  }

  // ring resolutions (Å) spread over the image's own range: evenly in 1/d from the beam (or the
  // detector's lowest resolution when the beam is off it) to the corner of highest resolution,
  // rounded to two significant digits
  defaultRings(S, F, count = 5) {
    const border = [];
    for (let i = 0; i <= 32; i++) {
      const s = Math.min(S - 1, Math.round(i * (S - 1) / 32)), f = Math.min(F - 1, Math.round(i * (F - 1) / 32));
      border.push([s, 0], [s, F - 1], [0, f], [S - 1, f]);
    }
    const q = border.map(([s, f]) => 1 / this.resolution(s, f).d).filter(Number.isFinite);
    if (!q.length) return [];
    const b = this.beam_center_px;
    const inside = b && b.slow >= 0 && b.slow <= S && b.fast >= 0 && b.fast <= F;
    const lo = inside ? 0 : Math.min(...q), hi = Math.max(...q);
    if (!(hi > lo)) return [];
    const out = [];
    for (const k of [0.2, 0.4, 0.6, 0.8, 0.95].slice(0, count)) {
      const d = Number((1 / (lo + k * (hi - lo))).toPrecision(2));
      if (!out.includes(d)) out.push(d);
    }
    return out;
  }
}

// -- formatting -------------------------------------------------------------------------------
function formatValue(v) {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return (a >= 1e6 || a < 1e-3) ? v.toExponential(5) : v.toPrecision(6);
}

// a short form for tables and axis labels
function shortValue(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "NaN";
  const a = Math.abs(v);
  if (v === 0 || (a >= 0.01 && a < 1e5)) return String(Number(v.toPrecision(4)));
  return v.toExponential(2);
}

// -- colour maps: 256 RGB entries each, and the colour of an overloaded pixel -------------------
function lutOf(fn) {
  const lut = new Uint8ClampedArray(768);
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = fn(i / 255);
    lut[3 * i] = Math.round(255 * r); lut[3 * i + 1] = Math.round(255 * g); lut[3 * i + 2] = Math.round(255 * b);
  }
  return lut;
}

// viridis (matplotlib's perceptually uniform map), 32 samples, interpolated
const VIRIDIS = "440154470d6048186a482374472e7c4538824241863e4a893a548c365d8d32658e2e6d8e2b758e287d8e25848e" +
  "228c8d1f948c1e9c8920a38625ab822eb37c3aba7648c16e58c7656ccd5a7fd34e93d741a8db34c0df25d5e21aeae51afde725";
function viridis(t) {
  const n = VIRIDIS.length / 6 - 1, x = t * n, i = Math.min(n - 1, Math.floor(x)), u = x - i;
  const at = (k, c) => parseInt(VIRIDIS.substr(6 * k + 2 * c, 2), 16) / 255;
  return [0, 1, 2].map((c) => at(i, c) * (1 - u) + at(i + 1, c) * u);
}
const clamp01 = (x) => Math.max(0, Math.min(1, x));

const COLOUR_MAPS = {
  grey: {lut: lutOf((t) => [t, t, t]), over: [255, 0, 0], background: "#222"},
  inverted: {lut: lutOf((t) => [1 - t, 1 - t, 1 - t]), over: [255, 0, 0], background: "#ddd"},
  // black, red, yellow, white
  heat: {lut: lutOf((t) => [clamp01(3 * t), clamp01(3 * t - 1), clamp01(3 * t - 2)]), over: [0, 170, 255], background: "#222"},
  viridis: {lut: lutOf(viridis), over: [255, 0, 0], background: "#222"},
};
const NAN_COLOUR = [200, 0, 200];

// -- the viewer ---------------------------------------------------------------------------------
class ImageViewer {
  // root: the element holding the viewer; its controls have ids `prefix + name` (#view, #c-lo...),
  // api: {binary(url), json(url)}; opts: onPick(s, f) a pixel was clicked to trace, onImage(n)
  // image n is shown, onView() the view (zoom, centre, image) changed
  constructor(root, api, opts = {}) {
    this.root = root;
    this.api = api;
    this.prefix = opts.prefix || "";
    this.onPick = opts.onPick;
    this.onImage = opts.onImage;
    this.onView = opts.onView;
    this.stubs = new Map();
    this.canvas = this.$("#view");
    this.ctx = this.canvas.getContext("2d");
    this.tiles = new Map();       // url -> {data, rows, cols, s0, f0, step, canvas, contrast}
    this.pending = new Map();     // url -> promise
    this.queue = [];
    this.inFlight = 0;
    this.job = null;
    this.selected = null;
    this.contrastVersion = 0;
    this.pointer = null;
    this.hoverTimer = null;
    this.exact = new Map();       // "n:s,f" -> value
    this.available = null;        // the image numbers that can be shown (null: every one)
    this.peer = null;             // the viewer shown beside this one, in sync
    this.profileLine = null;      // {a: [s, f], b: [s, f] | null, data}
    this.ringsByUser = false;
    this.bind();
    // the predicted reflections over a still's image (overlay.js)
    this.truth = window.TruthOverlay ? new window.TruthOverlay(this) : null;
    new ResizeObserver(() => this.resize()).observe(this.canvas);
  }

  // the element `#name` of this viewer (a detached stand-in where this viewer has none)
  $(sel) {
    const id = this.prefix + sel.slice(1);
    const el = document.getElementById(id);
    if (el) return el;
    if (!this.stubs.has(id)) this.stubs.set(id, document.createElement("input"));
    return this.stubs.get(id);
  }

  // pair this viewer with another: zoom, pan and the pixel under the cursor are shared
  pair(other) { this.peer = other; other.peer = this; if (this.job) this.sync(); }
  unpair() { if (this.peer) { this.peer.peer = null; this.peer = null; } }

  // ---- opening an image ----
  // image n of the job (as in its file numbering; null: its first), its file `artifact` (null:
  // the one shown, else the float image)
  async open(jobId, n = null, artifact = null) {
    const same = this.job && this.job.kind === "job" && this.job.id === jobId;
    artifact = artifact || (same ? this.job.artifact : "floatimage.bin");
    if (same && (n === null || this.job.n === n) && this.job.artifact === artifact) {
      // back to the image shown: an image asked for meanwhile is no longer wanted
      this.target = {id: jobId, n: this.job.n};
      this.$("#series").value = String(this.job.n);
      this.seriesLabel(this.job.n);
      return;
    }
    const first = !same;
    const target = this.target = {id: jobId, n};
    const query = (n === null ? "" : `n=${n}&`) + `artifact=${encodeURIComponent(artifact)}`;
    let info, geo;
    try {
      [info, geo] = await Promise.all([
        this.api.json(`/v1/jobs/${jobId}/image/info?${query}`),
        // the geometry is known once a worker has rendered the image (409 before): without it the
        // image is shown with no rings, d or 2θ
        first ? this.api.json(`/v1/jobs/${jobId}/geometry`).catch(() => null)
              : Promise.resolve(this.job.geo),
      ]);
    } catch (e) {
      // nothing is on the way any more: the image shown stays the one to step from
      if (this.target === target) this.target = this.job && {id: this.job.id, n: this.job.n};
      throw e;
    }
    if (this.target !== target) return;  // another image was asked for meanwhile
    target.n = info.n;
    const newKind = !same || this.job.artifact !== artifact;
    this.install({id: jobId, kind: "job", n: info.n, artifact, base: `/v1/jobs/${jobId}/image`,
                  query: `n=${info.n}&artifact=${encodeURIComponent(artifact)}`, info,
                  geo: !geo || geo instanceof Geometry ? geo : new Geometry(geo)}, first, newKind);
  }

  // an image file the user uploaded (kind image), drawn with the geometry `geo` of the job it is
  // compared with
  async openFile(fileId, geo) {
    const info = await this.api.json(`/v1/files/${fileId}/image/info`);
    this.install({id: fileId, kind: "file", n: 1, artifact: info.name, base: `/v1/files/${fileId}/image`,
                  query: "", info, geo}, true, true);
  }

  install(job, first, newKind) {
    const info = job.info;
    Object.assign(job, {images: info.images, first: info.first_image ?? 1, shape: info.shape, tile: info.tile});
    this.job = job;
    this.tiles.clear();
    this.queue = [];
    this.exact.clear();
    this.canvas.dataset.complete = "";
    this.canvas.dataset.image = job.artifact;
    const [S, F] = info.shape;
    this.levels = Math.max(0, Math.ceil(Math.log2(Math.max(S, F) / info.tile)));
    const series = this.$("#series");
    series.min = String(job.first);
    series.max = String(job.first + info.images - 1);
    series.value = String(job.n);
    this.$("#series-box").hidden = info.images <= 1;
    this.seriesLabel(job.n);
    this.setStatus("");
    this.showArtifacts(info.artifacts || [], job.artifact);
    this.showStats(info.stats);
    if (first) {
      this.selected = null;
      this.profileLine = null;
      this.$("#profile-box").hidden = true;
      if (!this.ringsByUser && job.geo) this.$("#rings").value = job.geo.defaultRings(S, F).join(" ");
    }
    const sat = info.stats.saturation;
    if (newKind) this.$("#c-sat").value = sat === null || sat === undefined ? "" : String(sat);
    if (newKind || this.$("#contrast-mode").value !== "manual") this.autoContrast();
    else this.contrastChanged();
    // an image opened beside another takes its view; a job's image opens whole
    const follower = this.prefix && this.peer && this.peer.job;
    if (follower) this.follow(this.peer);
    else if (first) this.fit();
    this.$("#goto-s").max = S - 1;
    this.$("#goto-f").max = F - 1;
    this.$("#ring-note").textContent = job.geo && job.geo.curved ? "rings are not drawn on a curved detector" : "";
    this.root.hidden = false;
    this.resize();
    if (this.profileLine && this.profileLine.b) this.loadProfile(this.profileLine.a, this.profileLine.b);
    if (this.truth) this.truth.open(job);
    if (this.onImage && job.kind === "job") this.onImage(job.n);
    if (this.onView) this.onView();
  }

  // the switch between the image's files (float, noisy SMV, SMV, CBF)
  showArtifacts(names, shown) {
    const sel = this.$("#image-artifact");
    if (!sel.options) return;
    sel.replaceChildren();
    for (const name of names) {
      const o = document.createElement("option");
      o.value = name;
      o.textContent = ARTIFACT_TITLES[name] || name;
      sel.append(o);
    }
    sel.value = shown;
    sel.disabled = names.length <= 1;
  }

  // the image's minimum, maximum and mean (of its finite pixels), and its overloads
  showStats(st) {
    const set = (id, v) => { this.$(id).textContent = v === null || v === undefined ? "–" : formatValue(v); };
    set("#st-min", st.min);
    set("#st-max", st.max);
    set("#st-mean", st.mean);
    this.$("#st-over").textContent = st.overloads === null || st.overloads === undefined
      ? "" : ` · ${st.overloads.toLocaleString()} at or above ${formatValue(st.saturation)}`;
  }

  // "image 5 (3 of 6)": the file number, then the place in the series
  seriesLabel(n, note = "") {
    const label = this.$("#series-label");
    label.textContent = `image ${n} (${n - this.job.first + 1} of ${this.job.images})` + note;
    label.dataset.n = String(n);
  }

  close() {
    this.job = null;
    this.target = null;
    this.available = null;
    this.profileLine = null;
    this.tiles.clear();
    this.queue = [];
    this.root.hidden = true;
  }

  // ---- view transform: screen = (image - centre) * scale + canvas / 2, in device pixels ----
  get W() { return this.canvas.width; }
  get H() { return this.canvas.height; }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    if (w !== this.canvas.width || h !== this.canvas.height) {
      this.canvas.width = w;
      this.canvas.height = h;
      if (this.job && this.fitted) this.fit();
    }
    this.draw();
    this.drawHistogram();
    this.drawProfile();
  }

  fit() {
    if (!this.job) return;
    const [S, F] = this.job.shape;
    this.scale = Math.min(this.W / F, this.H / S);
    this.cx = F / 2;
    this.cy = S / 2;
    this.fitted = true;
    this.draw();
  }

  zoomAt(factor, sx = this.W / 2, sy = this.H / 2) {
    if (!this.job) return;
    const [S, F] = this.job.shape;
    const min = Math.min(this.W / F, this.H / S) / 2;
    const next = Math.max(min, Math.min(64 * (window.devicePixelRatio || 1), this.scale * factor));
    const [ix, iy] = this.toImage(sx, sy);
    this.scale = next;
    this.cx = ix - (sx - this.W / 2) / next;
    this.cy = iy - (sy - this.H / 2) / next;
    this.fitted = false;
    this.draw();
  }

  // centre on pixel (s, f), zoomed so that a pixel is `pixels` CSS pixels wide
  goTo(s, f, pixels = 16) {
    if (!this.job) return;
    this.scale = pixels * (window.devicePixelRatio || 1);
    this.cx = f + 0.5;
    this.cy = s + 0.5;
    this.fitted = false;
    this.draw();
  }

  // what a link keeps of the view: CSS pixels per image pixel (null: fitted) and the centre pixel
  viewState() {
    if (!this.job || !this.scale) return null;
    return {zoom: this.fitted ? null : Number((this.scale / (window.devicePixelRatio || 1)).toPrecision(4)),
            s: Math.floor(this.cy), f: Math.floor(this.cx)};
  }

  toImage(sx, sy) { return [(sx - this.W / 2) / this.scale + this.cx, (sy - this.H / 2) / this.scale + this.cy]; }
  toScreen(ix, iy) { return [(ix - this.cx) * this.scale + this.W / 2, (iy - this.cy) * this.scale + this.H / 2]; }

  // the CSS-pixel offset within the canvas of pixel (s, f)'s centre (for tests and the keyboard)
  cssOf(s, f) {
    const [x, y] = this.toScreen(f + 0.5, s + 0.5);
    const dpr = window.devicePixelRatio || 1;
    return [x / dpr, y / dpr];
  }

  // take the peer's zoom, centre and pixel under the cursor
  follow(o) {
    this.scale = o.scale;
    this.cx = o.cx;
    this.cy = o.cy;
    this.fitted = o.fitted;
    const p = o.pointer && o.toImage(o.pointer[0], o.pointer[1]);
    this.pointer = p ? this.toScreen(p[0], p[1]) : null;
    this.ghost = !!p;
  }

  // the peer takes this view, unless the cursor is over the peer (it leads then)
  sync() {
    const o = this.peer;
    if (!o || !o.job || !this.scale || o.hover) return;
    o.follow(this);
    o.render(false);
  }

  // ---- tiles ----
  level() {
    return Math.max(0, Math.min(this.levels, Math.ceil(Math.log2(1 / this.scale - 1e-9))));
  }

  url(path, params) {
    const q = [this.job.query, params].filter(Boolean).join("&");
    return `${this.job.base}${path}?${q}`;
  }

  tileUrl(L, ty, tx) {
    const step = 2 ** L, span = this.job.tile * step;
    const [S, F] = this.job.shape;
    const s0 = ty * span, f0 = tx * span;
    const s1 = Math.min(S, s0 + span), f1 = Math.min(F, f0 + span);
    return {url: this.url("", `slow=${s0}:${s1}&fast=${f0}:${f1}&step=${step}`), s0, f0, s1, f1, step};
  }

  visibleTiles(L) {
    const span = this.job.tile * 2 ** L;
    const [S, F] = this.job.shape;
    const [x0, y0] = this.toImage(0, 0), [x1, y1] = this.toImage(this.W, this.H);
    const out = [];
    for (let ty = Math.max(0, Math.floor(y0 / span)); ty <= Math.min(Math.ceil(S / span) - 1, Math.floor(y1 / span)); ty++) {
      for (let tx = Math.max(0, Math.floor(x0 / span)); tx <= Math.min(Math.ceil(F / span) - 1, Math.floor(x1 / span)); tx++) {
        out.push(this.tileUrl(L, ty, tx));
      }
    }
    return out;
  }

  request(t) {
    if (this.tiles.has(t.url) || this.pending.has(t.url) || this.queue.some((q) => q.url === t.url)) return;
    this.queue.push(t);
    this.pump();
  }

  pump() {
    while (this.inFlight < 6 && this.queue.length) {
      const t = this.queue.shift();
      const job = this.job;
      this.inFlight++;
      const p = this.api.binary(t.url).then((buf) => {
        // an image opened meanwhile asks again for the tiles it lacks (this one may be among them)
        if (this.job !== job) { this.draw(); return; }
        const rows = Math.ceil((t.s1 - t.s0) / t.step), cols = Math.ceil((t.f1 - t.f0) / t.step);
        this.tiles.set(t.url, Object.assign({}, t, {data: new Float32Array(buf), rows, cols}));
        this.evict();
        this.draw();
      }).catch((e) => { this.setStatus(`could not load the image: ${e.message}`); })
        .finally(() => { this.inFlight--; this.pending.delete(t.url); this.pump(); });
      this.pending.set(t.url, p);
    }
  }

  // keep at most 256 tiles (64 MB): drop the oldest but the overview
  evict() {
    if (this.tiles.size <= 256) return;
    const overview = `step=${2 ** this.levels}`;
    for (const key of this.tiles.keys()) {
      if (this.tiles.size <= 192) break;
      if (!key.endsWith(overview)) this.tiles.delete(key);
    }
  }

  // ---- contrast: a window lo..hi of values onto a colour map ----
  autoContrast() {
    const stats = this.job.info.stats;
    const mode = this.$("#contrast-mode").value;
    const key = VIEW_PERCENTILES.includes(mode) ? mode : "99.5";
    const lo = stats.min ?? 0;
    const top = stats.percentiles[key] ?? stats.max ?? 1;
    this.$("#c-lo").value = formatValue(lo);
    this.$("#c-hi").value = formatValue(top > lo ? top : lo + 1);
    this.$("#c-pct").value = String(Math.max(0, VIEW_PERCENTILES.indexOf(key)));
    this.contrastChanged();
  }

  contrastChanged() {
    let lo = parseFloat(this.$("#c-lo").value), hi = parseFloat(this.$("#c-hi").value);
    if (!Number.isFinite(lo)) lo = 0;
    if (!Number.isFinite(hi) || hi <= lo) hi = lo + 1;
    const sat = parseFloat(this.$("#c-sat").value);
    const name = this.$("#c-map").value;
    this.contrast = {lo, hi, log: this.$("#c-scale").value === "log",
                     map: COLOUR_MAPS[name] || COLOUR_MAPS.grey, mapName: COLOUR_MAPS[name] ? name : "grey",
                     sat: Number.isFinite(sat) ? sat : null};
    this.canvas.dataset.map = this.contrast.mapName;
    this.contrastVersion++;
    this.draw();
    this.drawHistogram();
    if (this.onView) this.onView();
  }

  // the colour map position 0..1 of value v
  level01(v) {
    const {lo, hi, log} = this.contrast;
    let t = (v - lo) / (hi - lo);
    t = t <= 0 ? 0 : t >= 1 ? 1 : t;
    return log ? Math.log1p(999 * t) / Math.log(1000) : t;
  }

  // the RGB of value v as drawn
  colourOf(v) {
    const {map, sat} = this.contrast;
    if (Number.isNaN(v)) return NAN_COLOUR;
    if (sat !== null && v >= sat) return map.over;
    const i = 3 * Math.round(255 * this.level01(v));
    return [map.lut[i], map.lut[i + 1], map.lut[i + 2]];
  }

  paint(tile) {
    if (tile.canvas && tile.contrast === this.contrastVersion) return tile.canvas;
    const {lo, hi, log, map, sat} = this.contrast;
    const c = tile.canvas || document.createElement("canvas");
    c.width = tile.cols;
    c.height = tile.rows;
    const g = c.getContext("2d");
    const img = g.createImageData(tile.cols, tile.rows);
    const px = img.data, data = tile.data, span = hi - lo, k = 1 / Math.log(1000), lut = map.lut;
    const over = sat === null ? Infinity : sat;
    for (let i = 0, j = 0; i < data.length; i++, j += 4) {
      const v = data[i];
      px[j + 3] = 255;
      if (Number.isNaN(v)) { px[j] = NAN_COLOUR[0]; px[j + 1] = NAN_COLOUR[1]; px[j + 2] = NAN_COLOUR[2]; continue; }
      if (v >= over) { px[j] = map.over[0]; px[j + 1] = map.over[1]; px[j + 2] = map.over[2]; continue; }
      let t = (v - lo) / span;
      t = t <= 0 ? 0 : t >= 1 ? 1 : t;
      if (log) t = Math.log1p(999 * t) * k;
      const e = 3 * Math.round(255 * t);
      px[j] = lut[e]; px[j + 1] = lut[e + 1]; px[j + 2] = lut[e + 2];
    }
    g.putImageData(img, 0, 0);
    tile.canvas = c;
    tile.contrast = this.contrastVersion;
    return c;
  }

  // the histogram (log counts over log1p(value - min), as the API bins it) with the contrast
  // window drawn on it, and the colour bar of the window under it
  drawHistogram() {
    const hc = this.$("#hist");
    if (!hc.getContext || !this.job || !this.contrast) return;
    const h = this.job.info.stats.histogram;
    const dpr = window.devicePixelRatio || 1;
    hc.width = Math.max(1, Math.round(hc.clientWidth * dpr));
    hc.height = Math.max(1, Math.round(hc.clientHeight * dpr));
    const g = hc.getContext("2d"), W = hc.width, H = hc.height;
    g.clearRect(0, 0, W, H);
    if (!h) return;
    const span = h.hi > h.lo ? Math.log1p(h.hi - h.lo) : 1;
    const xOf = (v) => W * Math.max(0, Math.min(1, Math.log1p(Math.max(0, v - h.lo)) / span));
    const top = Math.log1p(Math.max(...h.counts));
    const bw = W / h.counts.length;
    const {lo, hi} = this.contrast;
    g.fillStyle = "#eef1f6";
    g.fillRect(0, 0, W, H);
    h.counts.forEach((c, i) => {
      if (!c) return;
      const v = h.lo + Math.expm1((i + 0.5) / h.counts.length * span);
      const [r, gg, b] = this.colourOf(v);
      g.fillStyle = `rgb(${r},${gg},${b})`;
      const bh = (H - 2) * Math.log1p(c) / top;
      g.fillRect(i * bw, H - bh, Math.max(1, bw), bh);
      g.strokeStyle = "rgba(29,35,48,0.5)";
      g.strokeRect(i * bw, H - bh, Math.max(1, bw), bh);
    });
    // the window: shaded outside, its ends drawn
    const x0 = xOf(lo), x1 = xOf(hi);
    g.fillStyle = "rgba(45, 91, 211, 0.12)";
    g.fillRect(x0, 0, Math.max(1, x1 - x0), H);
    g.strokeStyle = "#2d5bd3";
    g.lineWidth = 2 * dpr;
    g.beginPath(); g.moveTo(x0, 0); g.lineTo(x0, H); g.moveTo(x1, 0); g.lineTo(x1, H); g.stroke();
    hc.dataset.lo = String(lo);
    hc.dataset.hi = String(hi);
    hc.dataset.windowPx = `${Math.round(x0 / dpr)},${Math.round(x1 / dpr)}`;
    hc.dataset.pixels = String(h.counts.reduce((a, b) => a + b, 0));
    this.$("#hist-lo").textContent = formatValue(h.lo);
    this.$("#hist-hi").textContent = formatValue(h.hi);
    // the colour bar: lo..hi, linearly in value
    const cb = this.$("#cbar");
    if (!cb.getContext) return;
    cb.width = Math.max(1, Math.round(cb.clientWidth * dpr));
    cb.height = Math.max(1, Math.round(cb.clientHeight * dpr));
    const cg = cb.getContext("2d");
    for (let x = 0; x < cb.width; x++) {
      const [r, gg, b] = this.colourOf(lo + (hi - lo) * (x + 0.5) / cb.width);
      cg.fillStyle = `rgb(${r},${gg},${b})`;
      cg.fillRect(x, 0, 1, cb.height);
    }
    this.$("#cbar-lo").textContent = formatValue(lo);
    this.$("#cbar-mid").textContent = formatValue(this.contrast.log ? lo + (hi - lo) * (Math.pow(1000, 0.5) - 1) / 999 : (lo + hi) / 2);
    this.$("#cbar-hi").textContent = formatValue(hi);
    this.$("#cbar-over").textContent = this.contrast.sat === null ? "" : `overload ≥ ${formatValue(this.contrast.sat)}`;
    this.$("#cbar-over").style.color = `rgb(${this.contrast.map.over.join(",")})`;
  }

  // ---- drawing ----
  draw() {
    if (this.frame || !this.job) return;
    this.frame = requestAnimationFrame(() => { this.frame = null; this.render(); });
  }

  render(propagate = true) {
    const g = this.ctx, job = this.job;
    if (!job || !this.scale) return;
    g.imageSmoothingEnabled = false;
    g.fillStyle = this.contrast.map.background;
    g.fillRect(0, 0, this.W, this.H);
    const L = this.level();
    // the whole image at the coarsest level first (one small tile), under the finer ones
    let complete = true;
    const layers = L === this.levels ? [L] : [this.levels, L];
    for (const level of layers) {
      for (const t of this.visibleTiles(level)) {
        const tile = this.tiles.get(t.url);
        if (!tile) { this.request(t); if (level === L) complete = false; continue; }
        const [x, y] = this.toScreen(t.f0, t.s0);
        g.drawImage(this.paint(tile), x, y, tile.cols * t.step * this.scale, tile.rows * t.step * this.scale);
      }
    }
    this.drawOverlays();
    this.canvas.dataset.scale = String(this.scale / (window.devicePixelRatio || 1));
    this.canvas.dataset.centre = `${Math.floor(this.cy)},${Math.floor(this.cx)}`;
    this.canvas.dataset.level = String(L);
    this.canvas.dataset.complete = complete ? "1" : "";
    this.updateReadout();
    if (propagate) {
      this.sync();
      const v = JSON.stringify(this.viewState());
      if (v !== this.lastView) { this.lastView = v; if (this.onView) this.onView(); }
    }
  }

  drawOverlays() {
    const g = this.ctx, geo = this.job.geo, dpr = window.devicePixelRatio || 1;
    g.lineWidth = 1.5 * dpr;
    g.font = `${12 * dpr}px system-ui, sans-serif`;
    if (geo && this.$("#show-rings").checked) {
      g.strokeStyle = "rgba(80, 200, 255, 0.9)";
      g.fillStyle = "rgba(80, 200, 255, 1)";
      for (const d of this.ringValues()) {
        const pts = geo.ring(d);
        g.beginPath();
        let pen = false, label = null;
        for (const p of pts) {
          if (!p) { pen = false; continue; }
          const [x, y] = this.toScreen(p[1], p[0]);
          if (pen) g.lineTo(x, y); else g.moveTo(x, y);
          pen = true;
          if (x > 0 && y > 12 * dpr && x < this.W - 40 * dpr && y < this.H && (!label || y < label[1])) label = [x, y];
        }
        g.stroke();
        if (label) g.fillText(`${d} Å`, label[0] + 3 * dpr, label[1] - 3 * dpr);
      }
    }
    if (geo && this.$("#show-beam").checked && geo.beam_center_px) {
      const [x, y] = this.toScreen(geo.beam_center_px.fast, geo.beam_center_px.slow);
      const r = 10 * dpr;
      g.strokeStyle = "rgba(255, 90, 60, 0.95)";
      g.beginPath();
      g.moveTo(x - r, y); g.lineTo(x + r, y); g.moveTo(x, y - r); g.lineTo(x, y + r);
      g.stroke();
    }
    const box = (s, f, colour) => {
      const [x, y] = this.toScreen(f, s);
      const w = Math.max(this.scale, 6 * dpr);
      g.strokeStyle = colour;
      g.strokeRect(x + this.scale / 2 - w / 2, y + this.scale / 2 - w / 2, w, w);
    };
    if (this.truth) this.truth.draw(g);
    if (this.selected) box(this.selected[0], this.selected[1], "rgba(255, 210, 0, 1)");
    // the pixel under the cursor of the paired viewer
    const p = this.ghost && this.pointer && this.pixelAt(this.pointer[0], this.pointer[1]);
    if (p) box(p[0], p[1], "rgba(0, 255, 160, 1)");
    const line = this.profileLine;
    if (line) {
      const [xa, ya] = this.toScreen(line.a[1] + 0.5, line.a[0] + 0.5);
      g.strokeStyle = "rgba(255, 210, 0, 1)";
      g.setLineDash([6 * dpr, 4 * dpr]);
      g.beginPath();
      g.arc(xa, ya, 4 * dpr, 0, 2 * Math.PI);
      if (line.b) {
        const [xb, yb] = this.toScreen(line.b[1] + 0.5, line.b[0] + 0.5);
        g.moveTo(xa, ya);
        g.lineTo(xb, yb);
      }
      g.stroke();
      g.setLineDash([]);
    }
  }

  ringValues() {
    return this.$("#rings").value.split(/[\s,;]+/).map(Number).filter((d) => d > 0).slice(0, 12);
  }

  // ---- the value under the cursor, and the values around it ----
  pixelAt(sx, sy) {
    const [ix, iy] = this.toImage(sx, sy);
    const [S, F] = this.job.shape;
    const f = Math.floor(ix), s = Math.floor(iy);
    return (s >= 0 && f >= 0 && s < S && f < F) ? [s, f] : null;
  }

  valueAt(s, f) {
    // the finest loaded tile that holds (s, f): exact at step 1, a block maximum above
    const exact = this.exact.get(`${this.job.n}:${s},${f}`);
    if (exact !== undefined) return {v: exact, step: 1};
    let best = null;
    for (const tile of this.tiles.values()) {
      if (s < tile.s0 || s >= tile.s1 || f < tile.f0 || f >= tile.f1) continue;
      if (best && best.step <= tile.step) continue;
      best = tile;
    }
    if (!best) return null;
    const i = Math.floor((s - best.s0) / best.step) * best.cols + Math.floor((f - best.f0) / best.step);
    return {v: best.data[i], step: best.step};
  }

  updateReadout() {
    const p = this.pointer && this.pixelAt(this.pointer[0], this.pointer[1]);
    const set = (id, text) => { this.$(id).textContent = text; };
    if (!p) {
      for (const id of ["#ro-s", "#ro-f", "#ro-v", "#ro-d", "#ro-tt"]) set(id, "–");
      this.$("#readout").dataset.pixel = "";
      this.pixelTable(null);
      return;
    }
    const [s, f] = p;
    set("#ro-s", String(s));
    set("#ro-f", String(f));
    const val = this.valueAt(s, f);
    if (!val) set("#ro-v", "…");
    else if (val.step === 1) set("#ro-v", formatValue(val.v));
    else {
      set("#ro-v", `≤ ${formatValue(val.v)} (max of ${val.step}×${val.step})`);
      this.fetchExact(s, f);
    }
    if (this.job.geo) {
      const r = this.job.geo.resolution(s, f);
      set("#ro-d", Number.isFinite(r.d) ? r.d.toFixed(3) : "∞");
      set("#ro-tt", r.tt.toFixed(3));
    }
    const ro = this.$("#readout");
    ro.dataset.pixel = `${s},${f}`;
    ro.dataset.exact = val && val.step === 1 ? "1" : "";
    this.pixelTable(p);
  }

  // the values of the 7 x 7 pixels around pixel p, once a pixel is 4 CSS pixels wide or more
  pixelTable(p) {
    const table = this.$("#pixtable");
    if (!table.tBodies) return;
    const zoomed = this.scale / (window.devicePixelRatio || 1) >= 4;
    const key = !p ? "" : !zoomed ? "out" : `${p[0]},${p[1]}:${this.tiles.size}:${this.exact.size}:${this.contrastVersion}`;
    if (key === table.dataset.key) return;
    table.dataset.key = key;
    this.$("#pixtable-note").textContent = !p ? "" : zoomed ? ""
      : "zoom in (a pixel 4 screen pixels wide or more) for the values around the cursor";
    table.dataset.pixel = p && zoomed ? `${p[0]},${p[1]}` : "";
    if (!p || !zoomed) { table.hidden = true; return; }
    const [S, F] = this.job.shape;
    const r = 3;
    const head = document.createElement("tr");
    head.append(document.createElement("th"));
    for (let f = p[1] - r; f <= p[1] + r; f++) {
      const th = document.createElement("th");
      th.textContent = f >= 0 && f < F ? String(f) : "";
      head.append(th);
    }
    const rows = [head];
    let complete = true;
    for (let s = p[0] - r; s <= p[0] + r; s++) {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = s >= 0 && s < S ? String(s) : "";
      tr.append(th);
      for (let f = p[1] - r; f <= p[1] + r; f++) {
        const td = document.createElement("td");
        if (s >= 0 && f >= 0 && s < S && f < F) {
          const val = this.valueAt(s, f);
          td.dataset.s = String(s);
          td.dataset.f = String(f);
          if (val && val.step === 1) {
            td.textContent = shortValue(val.v);
            td.dataset.v = String(val.v);
            const [R, G, B] = this.colourOf(val.v);
            td.style.background = `rgb(${R},${G},${B})`;
            td.style.color = 0.3 * R + 0.59 * G + 0.11 * B > 140 ? "#000" : "#fff";
          } else { td.textContent = "…"; complete = false; }
          if (s === p[0] && f === p[1]) td.className = "centre";
        }
        tr.append(td);
      }
      rows.push(tr);
    }
    table.tBodies[0].replaceChildren(...rows);
    table.dataset.complete = complete ? "1" : "";
    table.hidden = false;
  }

  fetchExact(s, f) {
    clearTimeout(this.hoverTimer);
    const job = this.job;
    this.hoverTimer = setTimeout(async () => {
      const key = `${job.n}:${s},${f}`;
      if (this.job !== job || this.exact.has(key)) return;
      try {
        const buf = await this.api.binary(this.url("", `slow=${s}:${s + 1}&fast=${f}:${f + 1}`));
        if (this.job !== job) return;
        this.exact.set(key, new Float32Array(buf)[0]);
        this.updateReadout();
      } catch (e) { /* the readout keeps the block maximum */ }
    }, 120);
  }

  setStatus(text) { this.$("#viewer-status").textContent = text; }

  // ---- a line profile between two clicked pixels ----
  async loadProfile(a, b) {
    const job = this.job;
    this.profileLine = {a, b, data: null};
    this.draw();
    try {
      const data = await this.api.json(this.url("/profile", `start=${a[0]},${a[1]}&end=${b[0]},${b[1]}`));
      if (this.job !== job || !this.profileLine || this.profileLine.b !== b) return;
      this.profileLine.data = data;
      this.$("#profile-box").hidden = false;
      this.drawProfile();
    } catch (e) { this.setStatus(`profile: ${e.message}`); }
  }

  drawProfile() {
    const c = this.$("#profile");
    const data = this.profileLine && this.profileLine.data;
    if (!c.getContext || !data) return;
    const dpr = window.devicePixelRatio || 1;
    c.width = Math.max(1, Math.round(c.clientWidth * dpr));
    c.height = Math.max(1, Math.round(c.clientHeight * dpr));
    const g = c.getContext("2d"), W = c.width, H = c.height, pad = 4 * dpr;
    const vals = data.values.map((v) => (v === null ? NaN : v));
    const finite = vals.filter(Number.isFinite);
    const lo = Math.min(...finite), hi = Math.max(...finite);
    const last = data.distance_px[data.distance_px.length - 1] || 1;
    g.fillStyle = "#fff";
    g.fillRect(0, 0, W, H);
    g.strokeStyle = "#2d5bd3";
    g.lineWidth = 1.5 * dpr;
    g.beginPath();
    let pen = false;
    vals.forEach((v, i) => {
      if (!Number.isFinite(v)) { pen = false; return; }
      const x = pad + (W - 2 * pad) * data.distance_px[i] / last;
      const y = H - pad - (H - 2 * pad) * (hi > lo ? (v - lo) / (hi - lo) : 0.5);
      if (pen) g.lineTo(x, y); else g.moveTo(x, y);
      pen = true;
    });
    g.stroke();
    const iMax = vals.indexOf(hi);
    const [a, b] = [data.from, data.to];
    this.$("#profile-note").textContent = `(${a[0]}, ${a[1]}) → (${b[0]}, ${b[1]}): ${vals.length} pixels, ` +
      `${formatValue(last)} px long · min ${formatValue(lo)} · max ${formatValue(hi)} at ` +
      `(${data.pixels[iMax][0]}, ${data.pixels[iMax][1]})`;
    c.dataset.points = String(vals.length);
    c.dataset.max = String(hi);
  }

  // ---- series ----
  // the image numbers that are rendered so far (a Set), or null when every one is
  setAvailable(numbers) { this.available = numbers; }

  has(n) { return !this.available || this.available.has(n); }

  // show image n of the open job: its picture once it is rendered, else a note saying so
  async show(n) {
    if (!this.job || this.job.kind !== "job") return;
    if (!this.has(n)) {
      this.$("#series").value = String(n);
      this.seriesLabel(n, `: not rendered (showing image ${this.job.n})`);
      return;
    }
    try { await this.open(this.job.id, n); } catch (e) {
      if (this.job) this.seriesLabel(n, e.status === 409 ? ": not rendered" : `: ${e.message}`);
    }
  }

  // the next rendered image before (delta < 0) or after the one shown, if any
  step(delta) {
    if (!this.job || this.job.images <= 1) return;
    const last = this.job.first + this.job.images - 1;
    let n = this.target && this.target.id === this.job.id && this.target.n !== null ? this.target.n : this.job.n;
    for (n += delta; n >= this.job.first && n <= last; n += delta) {
      if (this.has(n)) { this.show(n); return; }
    }
  }

  // ---- events ----
  bind() {
    const c = this.canvas;
    const dpr = () => window.devicePixelRatio || 1;
    const local = (ev) => { const r = c.getBoundingClientRect(); return [(ev.clientX - r.left) * dpr(), (ev.clientY - r.top) * dpr()]; };
    c.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const [x, y] = local(ev);
      this.zoomAt(Math.pow(1.2, -ev.deltaY / 100), x, y);
    }, {passive: false});
    c.addEventListener("pointerdown", (ev) => {
      c.setPointerCapture(ev.pointerId);
      this.drag = {start: local(ev), last: local(ev), moved: 0};
    });
    c.addEventListener("pointermove", (ev) => {
      if (!this.job) return;
      const p = local(ev);
      this.pointer = p;
      this.ghost = false;
      this.hover = true;
      if (this.drag) {
        const dx = p[0] - this.drag.last[0], dy = p[1] - this.drag.last[1];
        this.drag.moved += Math.abs(dx) + Math.abs(dy);
        this.drag.last = p;
        if (this.drag.moved > 4 * dpr()) {
          this.cx -= dx / this.scale;
          this.cy -= dy / this.scale;
          this.fitted = false;
          this.draw();
          return;
        }
      }
      this.updateReadout();
      this.draw();
    });
    c.addEventListener("pointerup", (ev) => {
      const drag = this.drag;
      this.drag = null;
      if (drag && drag.moved <= 4 * dpr() && this.job) this.pick(this.pixelAt(...local(ev)));
    });
    c.addEventListener("pointerleave", () => {
      this.hover = false;
      if (!this.drag && this.job) { this.pointer = null; this.updateReadout(); this.draw(); }
    });
    c.addEventListener("keydown", (ev) => this.key(ev));
    this.$("#zoom-in").addEventListener("click", () => this.zoomAt(2));
    this.$("#zoom-out").addEventListener("click", () => this.zoomAt(0.5));
    this.$("#zoom-fit").addEventListener("click", () => this.fit());
    this.$("#zoom-one").addEventListener("click", () => this.zoomAt(dpr() / this.scale));
    this.$("#goto").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const s = parseInt(this.$("#goto-s").value, 10), f = parseInt(this.$("#goto-f").value, 10);
      if (Number.isInteger(s) && Number.isInteger(f)) {
        this.goTo(s, f);
        this.pointer = this.toScreen(f + 0.5, s + 0.5);
        this.selected = [s, f];
        this.updateReadout();
      }
    });
    this.$("#contrast-mode").addEventListener("change", () => { if (this.job && this.$("#contrast-mode").value !== "manual") this.autoContrast(); });
    this.$("#c-pct").addEventListener("input", () => {
      this.$("#contrast-mode").value = VIEW_PERCENTILES[+this.$("#c-pct").value];
      if (this.job) this.autoContrast();
    });
    for (const id of ["#c-lo", "#c-hi"]) {
      this.$(id).addEventListener("change", () => { this.$("#contrast-mode").value = "manual"; this.contrastChanged(); });
    }
    for (const id of ["#c-scale", "#c-map", "#c-sat"]) this.$(id).addEventListener("change", () => this.contrastChanged());
    this.$("#rings").addEventListener("change", () => { this.ringsByUser = true; this.draw(); });
    for (const id of ["#show-rings", "#show-beam"]) this.$(id).addEventListener("change", () => this.draw());
    this.$("#series").addEventListener("input", () => this.show(+this.$("#series").value));
    // a click or drag on the histogram moves the nearer end of the window there
    const hist = this.$("#hist");
    const moveWindow = (ev) => {
      const h = this.job && this.job.info.stats.histogram;
      if (!h) return;
      const r = hist.getBoundingClientRect();
      const x = Math.max(0, Math.min(1, (ev.clientX - r.left) / r.width));
      const v = h.lo + Math.expm1(x * (h.hi > h.lo ? Math.log1p(h.hi - h.lo) : 1));
      const {lo, hi} = this.contrast;
      const end = Math.abs(v - lo) < Math.abs(v - hi) ? "#c-lo" : "#c-hi";
      this.$(end).value = formatValue(v);
      this.$("#contrast-mode").value = "manual";
      this.contrastChanged();
    };
    hist.addEventListener("pointerdown", (ev) => { hist.setPointerCapture(ev.pointerId); moveWindow(ev); });
    hist.addEventListener("pointermove", (ev) => { if (ev.buttons) moveWindow(ev); });
    this.$("#image-artifact").addEventListener("change", async () => {
      if (!this.job || this.job.kind !== "job") return;
      try { await this.open(this.job.id, this.job.n, this.$("#image-artifact").value); } catch (e) {
        this.setStatus(e.message);
      }
    });
  }

  key(ev) {
    const pan = 64 * (window.devicePixelRatio || 1) / this.scale;
    const actions = {
      "+": () => this.zoomAt(2), "=": () => this.zoomAt(2), "-": () => this.zoomAt(0.5),
      "0": () => this.fit(), "1": () => this.zoomAt((window.devicePixelRatio || 1) / this.scale),
      "ArrowLeft": () => { this.cx -= pan; }, "ArrowRight": () => { this.cx += pan; },
      "ArrowUp": () => { this.cy -= pan; }, "ArrowDown": () => { this.cy += pan; },
      "PageUp": () => this.step(-1), "PageDown": () => this.step(1),
      "[": () => this.step(-1), "]": () => this.step(1),
      "Enter": () => this.pick(this.pixelAt(this.W / 2, this.H / 2)),
    };
    const act = actions[ev.key];
    if (!act || !this.job) return;
    ev.preventDefault();
    act();
    if (ev.key !== "0") this.fitted = false;
    this.draw();
  }

  // a click: a pixel to trace, or an end of a line profile (drawn in both paired viewers)
  pick(p) {
    if (!p) return;
    if (document.getElementById("tool") && document.getElementById("tool").value === "profile") {
      const line = this.profileLine;
      const ends = !line || line.b ? [p, null] : [line.a, p];
      for (const v of [this, this.peer]) {
        if (!v || !v.job) continue;
        if (ends[1]) v.loadProfile(ends[0], ends[1]);
        else { v.profileLine = {a: ends[0], b: null, data: null}; v.draw(); }
      }
      return;
    }
    this.selected = p;
    this.draw();
    if (this.onPick) this.onPick(p[0], p[1]);
  }
}

const ARTIFACT_TITLES = {"floatimage.bin": "float image (noiseless)", "noiseimage.img": "noisy image (SMV)",
                         "intimage.img": "integer image (SMV)", "image.cbf": "CBF image",
                         "image.nxs": "NeXus image (HDF5)"};

window.ImageViewer = ImageViewer;
window.formatValue = formatValue;
