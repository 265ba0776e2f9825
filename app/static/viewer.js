// The image viewer: a canvas that shows a job's float image from tiles the API serves
// (GET /v1/jobs/{id}/image?slow=a:b&fast=c:d&step=k, raw float32, each value the maximum of a
// k x k block), with zoom and pan down to single pixels, contrast, the value, resolution and 2θ
// under the cursor, resolution rings and the beam centre. No library, no build step.
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
}

// -- formatting -------------------------------------------------------------------------------
function formatValue(v) {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  return (a >= 1e6 || a < 1e-3) ? v.toExponential(5) : v.toPrecision(6);
}

// -- the viewer ---------------------------------------------------------------------------------
class ImageViewer {
  // root: the element holding the viewer's controls (ids below); api: {binary(url), json(url)}
  // onPick(s, f): a pixel was clicked; onImage(n): image n of the job is shown
  constructor(root, api, onPick, onImage) {
    this.root = root;
    this.api = api;
    this.onPick = onPick;
    this.onImage = onImage;
    this.canvas = root.querySelector("#view");
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
    this.bind();
    new ResizeObserver(() => this.resize()).observe(this.canvas);
  }

  $(id) { return this.root.querySelector(id); }

  // ---- opening a job ----
  // image n of the job, as in its file numbering (null: the job's first image)
  async open(jobId, n = null) {
    if (this.job && this.job.id === jobId && (n === null || this.job.n === n)) {
      // back to the image shown: an image asked for meanwhile is no longer wanted
      this.target = {id: jobId, n: this.job.n};
      this.$("#series").value = String(this.job.n);
      this.seriesLabel(this.job.n);
      return;
    }
    const first = !this.job || this.job.id !== jobId;
    const target = this.target = {id: jobId, n};
    let info, geo;
    try {
      [info, geo] = await Promise.all([
        this.api.json(`/v1/jobs/${jobId}/image/info` + (n === null ? "" : `?n=${n}`)),
        first ? this.api.json(`/v1/jobs/${jobId}/geometry`) : Promise.resolve(this.job.geo),
      ]);
    } catch (e) {
      // nothing is on the way any more: the image shown stays the one to step from
      if (this.target === target) this.target = this.job && {id: this.job.id, n: this.job.n};
      throw e;
    }
    if (this.target !== target) return;  // another image was asked for meanwhile
    n = info.n;
    target.n = n;
    this.job = {id: jobId, n, info, geo: geo instanceof Geometry ? geo : new Geometry(geo),
                images: info.images, first: info.first_image ?? 1, shape: info.shape, tile: info.tile};
    this.tiles.clear();
    this.queue = [];
    this.exact.clear();
    this.canvas.dataset.complete = "";
    const [S, F] = info.shape;
    this.levels = Math.max(0, Math.ceil(Math.log2(Math.max(S, F) / info.tile)));
    const series = this.$("#series");
    series.min = String(this.job.first);
    series.max = String(this.job.first + info.images - 1);
    series.value = String(n);
    this.$("#series-box").hidden = info.images <= 1;
    this.seriesLabel(n);
    this.setStatus("");
    if (first) {
      this.selected = null;
      this.autoContrast();
      this.fit();
    } else if (this.$("#contrast-mode").value !== "manual") {
      this.autoContrast();
    }
    this.$("#goto-s").max = S - 1;
    this.$("#goto-f").max = F - 1;
    this.$("#ring-note").textContent = this.job.geo.curved ? "rings are not drawn on a curved detector" : "";
    this.root.hidden = false;
    this.resize();
    if (this.onImage) this.onImage(n);
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

  toImage(sx, sy) { return [(sx - this.W / 2) / this.scale + this.cx, (sy - this.H / 2) / this.scale + this.cy]; }
  toScreen(ix, iy) { return [(ix - this.cx) * this.scale + this.W / 2, (iy - this.cy) * this.scale + this.H / 2]; }

  // the CSS-pixel offset within the canvas of pixel (s, f)'s centre (for tests and the keyboard)
  cssOf(s, f) {
    const [x, y] = this.toScreen(f + 0.5, s + 0.5);
    const dpr = window.devicePixelRatio || 1;
    return [x / dpr, y / dpr];
  }

  // ---- tiles ----
  level() {
    return Math.max(0, Math.min(this.levels, Math.ceil(Math.log2(1 / this.scale - 1e-9))));
  }

  tileUrl(L, ty, tx) {
    const step = 2 ** L, span = this.job.tile * step;
    const [S, F] = this.job.shape;
    const s0 = ty * span, f0 = tx * span;
    const s1 = Math.min(S, s0 + span), f1 = Math.min(F, f0 + span);
    return {url: `/v1/jobs/${this.job.id}/image?n=${this.job.n}&slow=${s0}:${s1}&fast=${f0}:${f1}&step=${step}`,
            s0, f0, s1, f1, step};
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
        if (this.job !== job) return;
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

  // ---- contrast ----
  autoContrast() {
    const stats = this.job.info.stats;
    const mode = this.$("#contrast-mode").value;
    const key = mode === "manual" ? "99.5" : mode;
    const top = stats.percentiles[key] ?? stats.max ?? 1;
    this.$("#c-min").value = formatValue(Math.min(0, stats.min ?? 0));
    this.$("#c-max").value = formatValue(top > 0 ? top : 1);
    this.$("#c-pct").value = String(Math.max(0, VIEW_PERCENTILES.indexOf(key)));
    this.contrastChanged();
  }

  contrastChanged() {
    let lo = parseFloat(this.$("#c-min").value), hi = parseFloat(this.$("#c-max").value);
    if (!Number.isFinite(lo)) lo = 0;
    if (!Number.isFinite(hi) || hi <= lo) hi = lo + 1;
    this.contrast = {lo, hi, log: this.$("#c-scale").value === "log", invert: this.$("#c-invert").checked};
    this.contrastVersion++;
    this.draw();
  }

  paint(tile) {
    if (tile.canvas && tile.contrast === this.contrastVersion) return tile.canvas;
    const {lo, hi, log, invert} = this.contrast;
    const c = tile.canvas || document.createElement("canvas");
    c.width = tile.cols;
    c.height = tile.rows;
    const g = c.getContext("2d");
    const img = g.createImageData(tile.cols, tile.rows);
    const px = img.data, data = tile.data, span = hi - lo, k = 1 / Math.log(1000);
    for (let i = 0, j = 0; i < data.length; i++, j += 4) {
      const v = data[i];
      if (Number.isNaN(v)) { px[j] = 200; px[j + 1] = 0; px[j + 2] = 200; px[j + 3] = 255; continue; }
      let t = (v - lo) / span;
      t = t <= 0 ? 0 : t >= 1 ? 1 : t;
      if (log) t = Math.log1p(999 * t) * k;
      let grey = Math.round(255 * t);
      if (invert) grey = 255 - grey;
      px[j] = px[j + 1] = px[j + 2] = grey;
      px[j + 3] = 255;
    }
    g.putImageData(img, 0, 0);
    tile.canvas = c;
    tile.contrast = this.contrastVersion;
    return c;
  }

  // ---- drawing ----
  draw() {
    if (this.frame || !this.job) return;
    this.frame = requestAnimationFrame(() => { this.frame = null; this.render(); });
  }

  render() {
    const g = this.ctx, job = this.job;
    if (!job || !this.scale) return;
    g.imageSmoothingEnabled = false;
    g.fillStyle = this.contrast.invert ? "#ddd" : "#222";
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
    this.canvas.dataset.level = String(L);
    this.canvas.dataset.complete = complete ? "1" : "";
    this.updateReadout();
  }

  drawOverlays() {
    const g = this.ctx, geo = this.job.geo, dpr = window.devicePixelRatio || 1;
    g.lineWidth = 1.5 * dpr;
    g.font = `${12 * dpr}px system-ui, sans-serif`;
    if (this.$("#show-rings").checked) {
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
    if (this.$("#show-beam").checked && geo.beam_center_px) {
      const [x, y] = this.toScreen(geo.beam_center_px.fast, geo.beam_center_px.slow);
      const r = 10 * dpr;
      g.strokeStyle = "rgba(255, 90, 60, 0.95)";
      g.beginPath();
      g.moveTo(x - r, y); g.lineTo(x + r, y); g.moveTo(x, y - r); g.lineTo(x, y + r);
      g.stroke();
    }
    if (this.selected) {
      const [s, f] = this.selected;
      const [x, y] = this.toScreen(f, s);
      const w = Math.max(this.scale, 6 * dpr);
      g.strokeStyle = "rgba(255, 210, 0, 1)";
      g.strokeRect(x + this.scale / 2 - w / 2, y + this.scale / 2 - w / 2, w, w);
    }
  }

  ringValues() {
    return this.$("#rings").value.split(/[\s,;]+/).map(Number).filter((d) => d > 0).slice(0, 12);
  }

  // ---- the value under the cursor ----
  pixelAt(sx, sy) {
    const [ix, iy] = this.toImage(sx, sy);
    const [S, F] = this.job.shape;
    const f = Math.floor(ix), s = Math.floor(iy);
    return (s >= 0 && f >= 0 && s < S && f < F) ? [s, f] : null;
  }

  valueAt(s, f) {
    // the finest loaded tile that holds (s, f): exact at step 1, a block maximum above
    let best = null;
    for (const tile of this.tiles.values()) {
      if (s < tile.s0 || s >= tile.s1 || f < tile.f0 || f >= tile.f1) continue;
      if (best && best.step <= tile.step) continue;
      best = tile;
    }
    const exact = this.exact.get(`${this.job.n}:${s},${f}`);
    if (exact !== undefined) return {v: exact, step: 1};
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
    const r = this.job.geo.resolution(s, f);
    set("#ro-d", Number.isFinite(r.d) ? r.d.toFixed(3) : "∞");
    set("#ro-tt", r.tt.toFixed(3));
    const ro = this.$("#readout");
    ro.dataset.pixel = `${s},${f}`;
    ro.dataset.exact = val && val.step === 1 ? "1" : "";
  }

  fetchExact(s, f) {
    clearTimeout(this.hoverTimer);
    const job = this.job;
    this.hoverTimer = setTimeout(async () => {
      const key = `${job.n}:${s},${f}`;
      if (this.job !== job || this.exact.has(key)) return;
      try {
        const buf = await this.api.binary(`/v1/jobs/${job.id}/image?n=${job.n}&slow=${s}:${s + 1}&fast=${f}:${f + 1}`);
        if (this.job !== job) return;
        this.exact.set(key, new Float32Array(buf)[0]);
        this.updateReadout();
      } catch (e) { /* the readout keeps the block maximum */ }
    }, 120);
  }

  setStatus(text) { this.$("#viewer-status").textContent = text; }

  // ---- series ----
  // the image numbers that are rendered so far (a Set), or null when every one is
  setAvailable(numbers) { this.available = numbers; }

  has(n) { return !this.available || this.available.has(n); }

  // show image n of the open job: its picture once it is rendered, else a note saying so
  async show(n) {
    if (!this.job) return;
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
      const p = local(ev);
      this.pointer = p;
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
    });
    c.addEventListener("pointerup", (ev) => {
      const drag = this.drag;
      this.drag = null;
      if (drag && drag.moved <= 4 * dpr()) this.pick(this.pixelAt(...local(ev)));
    });
    c.addEventListener("pointerleave", () => { if (!this.drag) { this.pointer = null; this.updateReadout(); } });
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
    for (const id of ["#c-min", "#c-max"]) {
      this.$(id).addEventListener("change", () => { this.$("#contrast-mode").value = "manual"; this.contrastChanged(); });
    }
    for (const id of ["#c-scale", "#c-invert"]) this.$(id).addEventListener("change", () => this.contrastChanged());
    for (const id of ["#rings", "#show-rings", "#show-beam"]) this.$(id).addEventListener("change", () => this.draw());
    this.$("#series").addEventListener("input", () => this.show(+this.$("#series").value));
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
    this.fitted = false;
    this.draw();
  }

  pick(p) {
    if (!p) return;
    this.selected = p;
    this.draw();
    if (this.onPick) this.onPick(p[0], p[1]);
  }
}

window.ImageViewer = ImageViewer;
window.formatValue = formatValue;
