// The ground truth over a job's image: the reflections predicted on the detector (GET
// /v1/jobs/{id}/images/{n}/reflections; every still of a stills dataset has them), each drawn as
// a circle at its predicted position with its hkl; the spot under the cursor is named below the
// image with its d, F and summed intensity. The viewer (viewer.js) makes one per viewer, tells it
// each image it shows (open) and lets it draw over the picture (draw).

// the strongest reflections fetched per image (the route counts the rest)
const TRUTH_LIMIT = 5000;
// CSS pixels: a spot answers the cursor within this distance; hkl labels show above this zoom
const TRUTH_HOVER_PX = 8;
const TRUTH_LABEL_ZOOM = 16;
// spots summing to less than this fraction of the strongest are drawn faint (most predicted
// reflections of a still are barely excited)
const TRUTH_FAINT = 0.01;

class TruthOverlay {
  constructor(viewer) {
    this.v = viewer;
    this.key = null;       // "job:n" of the image whose reflections are loaded (or loading)
    this.spots = null;     // [{h, k, l, d_A, fast_px, slow_px, excitation_error, F, intensity}]
    this.hovered = null;
    this.v.$("#show-truth").addEventListener("change", () => { this.hovered = null; this.showTip(); this.v.draw(); });
    const c = viewer.canvas;
    c.addEventListener("pointermove", (ev) => this.hover(ev));
    c.addEventListener("pointerleave", () => { this.hovered = null; this.showTip(); });
  }

  get shown() { return this.spots !== null && this.v.$("#show-truth").checked; }

  // the viewer shows another image: fetch its reflections (an image without: the toggle hides)
  async open(job) {
    const key = job.kind === "job" ? `${job.id}:${job.n}` : null;
    if (key === this.key) return;
    this.key = key;
    this.spots = null;
    this.hovered = null;
    this.showTip();
    this.v.$("#truth-box").hidden = true;
    this.v.canvas.dataset.spots = "";
    this.v.canvas.dataset.truth = "";  // "" while asking, then "none" or "shown"
    if (!key) return;
    let body;
    try {
      body = await this.v.api.json(`/v1/jobs/${job.id}/images/${job.n}/reflections?limit=${TRUTH_LIMIT}`);
    } catch (e) {
      if (this.key === key) this.v.canvas.dataset.truth = "none";  // 404: no truth (not a still)
      return;
    }
    if (this.key !== key) return;  // another image was shown meanwhile
    this.spots = body.reflections.map((row) => Object.fromEntries(body.columns.map((c, i) => [c, row[i]])));
    this.v.$("#truth-count").textContent = body.truncated
      ? `(the ${this.spots.length.toLocaleString()} strongest of ${body.total.toLocaleString()})`
      : `(${body.total.toLocaleString()})`;
    this.v.$("#truth-box").hidden = false;
    this.v.canvas.dataset.spots = String(this.spots.length);
    this.v.canvas.dataset.truth = "shown";
    this.v.draw();
  }

  // circles at the predicted positions (pixel centres at integer + 0.5, as the route gives them),
  // hkl beside each once a pixel is large enough; the hovered spot stands out
  draw(g) {
    if (!this.shown) return;
    const v = this.v, dpr = window.devicePixelRatio || 1;
    const r = Math.min(14 * dpr, Math.max(4 * dpr, 0.8 * v.scale));
    const labels = v.scale / dpr >= TRUTH_LABEL_ZOOM;
    const faint = this.spots.length ? this.spots[0].intensity * TRUTH_FAINT : 0;
    g.save();
    g.lineWidth = 1.25 * dpr;
    g.font = `${11 * dpr}px system-ui, sans-serif`;
    for (const strong of [false, true]) {
      const alpha = strong ? 0.95 : 0.35;
      g.strokeStyle = g.fillStyle = `rgba(255, 120, 220, ${alpha})`;
      g.beginPath();
      for (const p of this.spots) {
        if ((p.intensity >= faint) !== strong) continue;
        const [x, y] = v.toScreen(p.fast_px, p.slow_px);
        if (x < -r || y < -r || x > v.W + r || y > v.H + r) continue;
        g.moveTo(x + r, y);
        g.arc(x, y, r, 0, 2 * Math.PI);
        if (labels) g.fillText(hklText(p), x + r + 2 * dpr, y - r);
      }
      g.stroke();
    }
    if (this.hovered) {
      const [x, y] = v.toScreen(this.hovered.fast_px, this.hovered.slow_px);
      g.strokeStyle = "rgba(255, 255, 0, 1)";
      g.lineWidth = 2.5 * dpr;
      g.beginPath();
      g.arc(x, y, r + 2 * dpr, 0, 2 * Math.PI);
      g.stroke();
      g.fillStyle = "rgba(255, 255, 0, 1)";
      g.fillText(hklText(this.hovered), x + r + 4 * dpr, y - r - 2 * dpr);
    }
    g.restore();
  }

  // the spot nearest the cursor, if within TRUTH_HOVER_PX
  hover(ev) {
    if (!this.shown) return;
    const v = this.v, dpr = window.devicePixelRatio || 1;
    const rect = v.canvas.getBoundingClientRect();
    const sx = (ev.clientX - rect.left) * dpr, sy = (ev.clientY - rect.top) * dpr;
    let best = null, bestD = (TRUTH_HOVER_PX * dpr) ** 2;
    for (const p of this.spots) {
      const [x, y] = v.toScreen(p.fast_px, p.slow_px);
      const d = (x - sx) ** 2 + (y - sy) ** 2;
      if (d <= bestD) { best = p; bestD = d; }
    }
    if (best !== this.hovered) {
      this.hovered = best;
      this.showTip();
      v.draw();
    }
  }

  showTip() {
    const tip = this.v.$("#truth-tip"), p = this.hovered;
    tip.dataset.hkl = p ? `${p.h},${p.k},${p.l}` : "";
    tip.textContent = p
      ? `spot ${hklText(p)} · d ${p.d_A.toFixed(3)} Å · F ${formatValue(p.F)} · ` +
        `summed I ${formatValue(p.intensity)} · at slow ${p.slow_px.toFixed(2)}, fast ${p.fast_px.toFixed(2)}`
      : "";
  }
}

function hklText(p) { return `${p.h} ${p.k} ${p.l}`; }

window.TruthOverlay = TruthOverlay;
