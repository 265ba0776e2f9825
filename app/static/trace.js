// A pixel's trace (docs/trace-format.md) as tables: the values of the first block (first sensor
// layer and subpixel, source 0), the per-φ lines of that block, and the final scaling lines.
"use strict";

function parseTrace(text) {
  const out = {pixel: null, keys: [], values: new Map(), phi: [], blocks: 0};
  let block = -1;
  for (const line of text.split("\n")) {
    const head = line.match(/^TRACE_\w*CONFIG: tracing pixel \(spixel=(\d+), fpixel=(\d+)\)/);
    if (head) { out.pixel = [+head[1], +head[2]]; continue; }
    const phi = line.match(/^TRACE_PY_PHI (.*)$/);
    if (phi) {
      if (block === 0) {
        const row = {};
        for (const kv of phi[1].trim().split(/\s+/)) { const [k, v] = kv.split("="); row[k] = v; }
        out.phi.push(row);
      }
      continue;
    }
    const m = line.match(/^TRACE_\w+: (\S+)\s*(.*)$/);
    if (!m) continue;
    const [, key, rest] = m;
    if (key === "pix0_vector_meters") block++;
    if (!out.values.has(key)) { out.keys.push(key); out.values.set(key, {first: rest, count: 0, last: rest}); }
    const v = out.values.get(key);
    v.count++;
    v.last = rest;
  }
  out.blocks = Math.max(0, block + 1);
  return out;
}

function cell(tag, text, cls) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

// fill `box` with the tables of `text`; `rawName` names the raw log offered for download
function renderTrace(box, text, rawName) {
  const t = parseTrace(text);
  box.replaceChildren();
  const final = t.values.get("I_pixel_final");
  const head = document.createElement("p");
  head.className = "trace-head";
  head.append(cell("strong", t.pixel ? `pixel (${t.pixel[0]}, ${t.pixel[1]})` : "trace"), " · I_pixel_final = ");
  const out = cell("output", final ? final.first : "–");
  out.id = "trace-final";
  head.append(out, ` · ${t.blocks} block${t.blocks === 1 ? "" : "s"} · `);
  const raw = document.createElement("a");
  if (renderTrace.rawUrl) URL.revokeObjectURL(renderTrace.rawUrl);
  raw.href = renderTrace.rawUrl = URL.createObjectURL(new Blob([text], {type: "text/plain"}));
  raw.download = rawName;
  raw.textContent = "raw log";
  raw.id = "trace-raw";
  head.append(raw);
  box.append(head);

  const table = document.createElement("table");
  table.className = "trace-table";
  table.append(cell("caption", "values of the first block (first layer, subpixel and source), then the pixel's final scaling; \"lines\" counts a key's lines over all blocks"));
  const thead = document.createElement("thead");
  const hr = document.createElement("tr");
  hr.append(cell("th", "key"), cell("th", "value"), cell("th", "lines"));
  thead.append(hr);
  const body = document.createElement("tbody");
  for (const key of t.keys) {
    const v = t.values.get(key);
    const tr = document.createElement("tr");
    tr.dataset.key = key;
    tr.append(cell("th", key), cell("td", v.count > 1 && v.last !== v.first ? `${v.first}  …  ${v.last}` : v.first, "num"),
              cell("td", String(v.count), "num"));
    body.append(tr);
  }
  table.append(thead, body);
  box.append(table);

  if (t.phi.length) {
    const cols = Object.keys(t.phi[0]);
    const pt = document.createElement("table");
    pt.className = "trace-table phi";
    pt.append(cell("caption", "per-φ lines (first block, mosaic domain 0, source 0)"));
    const ph = document.createElement("tr");
    for (const c of cols) ph.append(cell("th", c));
    const thead2 = document.createElement("thead");
    thead2.append(ph);
    const tb = document.createElement("tbody");
    for (const row of t.phi) {
      const tr = document.createElement("tr");
      for (const c of cols) tr.append(cell("td", row[c] ?? "", "num"));
      tb.append(tr);
    }
    pt.append(thead2, tb);
    box.append(pt);
  }
  return t;
}

window.parseTrace = parseTrace;
window.renderTrace = renderTrace;
