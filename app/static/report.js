// A verification's report (report.json, docs/verification.md): the verdict, each exit criterion
// with ✔ or ✘, per comparison the image Δ, the trace Δ per key and the first diverging key, and
// the two traces of a pixel side by side.
"use strict";

function reportCell(tag, text, cls) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (cls) el.className = cls;
  return el;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return v === 0 ? "0" : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(2) : String(+v.toPrecision(4));
  return String(v);
}

// `rec`: the verification's job record; `get(url)` reads JSON or text with the page's token
async function showReport(rec, box, get) {
  box.replaceChildren();
  box.hidden = false;
  if (rec.status !== "finished") {
    box.append(reportCell("p", rec.status === "canceled" || rec.status === "failed"
      ? `no report: the verification is ${rec.status}`
      : "the report is written once every side has ended", "muted"));
    return;
  }
  const art = (name) => rec.artifacts.find((a) => a.name === name);
  const report = await get(art("report.json").url);
  const met = report.criteria.filter((c) => c.ok).length;
  box.append(reportCell("h3", `Report: ${report.verdict === "pass" ? "PASS" : "FAIL"} ` +
    `(${met} of ${report.criteria.length} criteria met)`, `verdict ${report.verdict}`));
  const crit = document.createElement("ul");
  crit.className = "criteria";
  for (const c of report.criteria) {
    crit.append(reportCell("li", `${c.ok ? "✔" : "✘"} ${c.name}: ${fmt(c.value)} (threshold ` +
      `${fmt(c.threshold)})${c.detail ? " — " + c.detail : ""}`, c.ok ? "ok" : "bad"));
  }
  box.append(crit);
  for (const comp of report.comparisons) {
    box.append(reportCell("h4", `${comp.b} against ${comp.a}`));
    if (comp.image) {
      const w = comp.image.where_slow_fast;
      box.append(reportCell("p", `image: max Δ relative ${fmt(comp.image.max_rel)}, absolute ` +
        `${fmt(comp.image.max_abs)}${w ? ` at (slow ${w[0]}, fast ${w[1]})` : ""}; tolerance ` +
        `${fmt(comp.image_tolerance)}`));
    }
    if (comp.first_divergence) {
      const fd = comp.first_divergence;
      box.append(reportCell("p", `first diverging key: ${fd.key} (occurrence ${fd.occurrence}, ` +
        `pixel (${fd.pixel[0]}, ${fd.pixel[1]})): ${fd.reason}`, "bad"));
    }
    for (const t of comp.traces) {
      const table = document.createElement("table");
      table.className = "delta";
      const head = document.createElement("tr");
      for (const h of ["key", "lines A/B", "Δ relative", "Δ absolute", ""]) head.append(reportCell("th", h));
      table.append(reportCell("caption", `trace Δ, pixel (${t.pixel_slow_fast[0]}, ` +
        `${t.pixel_slow_fast[1]}), tolerance ${fmt(comp.trace_tolerance)}` +
        (comp.traces_judged ? "" : " (float32: not judged)")), head);
      for (const k of t.keys) {
        const tr = document.createElement("tr");
        tr.append(reportCell("td", k.key), reportCell("td", `${k.lines_a}/${k.lines_b}`),
                  reportCell("td", fmt(k.max_rel)), reportCell("td", fmt(k.max_abs)),
                  reportCell("td", k.exceeds ? "✘" : "✔", k.exceeds ? "bad" : "ok"));
        table.append(tr);
      }
      box.append(table);
      const sideA = report.sides.find((s) => s.name === comp.a);
      const sideB = report.sides.find((s) => s.name === comp.b);
      const key = `${t.pixel_slow_fast[0]},${t.pixel_slow_fast[1]}`;
      const names = [sideA, sideB].map((s) => s && s.trace_artifacts[key]);
      if (names.every((n) => n && art(n))) {
        const show = document.createElement("button");
        show.textContent = `traces of (${key}) side by side`;
        show.addEventListener("click", async () => {
          const pair = document.createElement("div");
          pair.className = "trace-pair";
          for (const n of names) {
            const col = document.createElement("div");
            const link = reportCell("a", n);
            link.href = art(n).url;
            col.append(link, reportCell("pre", await get(art(n).url)));
            pair.append(col);
          }
          show.replaceWith(pair);
        });
        box.append(show);
      }
    }
  }
}
