"use strict";
/* Small SVG charts and formatting helpers shared by the console and the printable report.
   Written for this page instead of a chart library: two bar charts, vector output that
   prints sharply, and every number kept in the DOM (data-* attributes and labels). */
window.PL = (() => {
  const SVG = "http://www.w3.org/2000/svg";

  function esc(s) {
    return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60), r = Math.round(s - m * 60);
    if (m < 60) return `${m} min ${String(r).padStart(2, "0")} s`;
    return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
  }

  function el(name, attrs, text) {
    const e = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* Horizontal bars: one row per item, a p50 bar over a lighter p95 bar.
     rows: [{key, label, p50, p95, n}] */
  function bars(container, rows, { id, title, unitLabel = "from arrival" } = {}) {
    container.innerHTML = "";
    if (!rows.length) { container.innerHTML = `<p class="muted">No completed passages in this period.</p>`; return; }
    const rowH = 26, left = 150, right = 150, top = 28, width = 760;
    const max = Math.max(...rows.map((r) => r.p95), 1);
    const scale = (v) => (v / max) * (width - left - right);
    const svg = el("svg", { id, class: "chart", viewBox: `0 0 ${width} ${top + rows.length * rowH + 24}`, role: "img", "aria-label": title || "" });
    if (title) svg.appendChild(el("text", { x: 0, y: 16, class: "chart-title" }, title));
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const g = el("g", { class: "bar", "data-key": r.key, "data-p50": r.p50, "data-p95": r.p95, "data-n": r.n });
      g.appendChild(el("text", { x: left - 8, y: y + 16, "text-anchor": "end", class: "label" }, r.label));
      g.appendChild(el("rect", { x: left, y: y + 4, width: Math.max(scale(r.p95), 1), height: 16, class: "p95" }));
      g.appendChild(el("rect", { x: left, y: y + 4, width: Math.max(scale(r.p50), 1), height: 16, class: "p50" }));
      g.appendChild(el("text", { x: left + scale(r.p95) + 6, y: y + 16, class: "value" }, `p50 ${fmtMs(r.p50)} · p95 ${fmtMs(r.p95)}`));
      const tip = el("title", {}, `${r.label}: p50 ${r.p50} ms, p95 ${r.p95} ms (${unitLabel}, n=${r.n})`);
      g.appendChild(tip);
      svg.appendChild(g);
    });
    const y = top + rows.length * rowH + 14;
    svg.appendChild(el("rect", { x: left, y: y - 9, width: 12, height: 10, class: "p50" }));
    svg.appendChild(el("text", { x: left + 16, y, class: "legend" }, "p50"));
    svg.appendChild(el("rect", { x: left + 60, y: y - 9, width: 12, height: 10, class: "p95" }));
    svg.appendChild(el("text", { x: left + 76, y, class: "legend" }, `p95 (${unitLabel})`));
    container.appendChild(svg);
  }

  const STAGE_LABEL = {
    arrived: "arrived 到达", identified: "identified 识别", decided: "decided 决定",
    scan_queued: "scan queued 排队", scan_started: "scan started 扫描", scan_ended: "scan ended 扫描完成",
    released: "released 放行", gate_opened: "gate opened 抬杆", exited: "exited 驶离",
  };

  function stageRows(report, group = ["all", "all"]) {
    const g = (report.groups[group[0]] || {})[group[1]];
    if (!g) return [];
    return report.stages.filter((s) => s in g.stages && s !== "arrived").map((s) => ({
      key: s, label: STAGE_LABEL[s] || s, p50: g.stages[s].p50, p95: g.stages[s].p95, n: g.stages[s].n,
    }));
  }

  function groupRows(report, dim, stage = "exited") {
    return Object.entries(report.groups[dim] || {}).filter(([, g]) => stage in g.stages).map(([k, g]) => ({
      key: k, label: dim === "hour" ? `${k}:00` : k, p50: g.stages[stage].p50, p95: g.stages[stage].p95, n: g.stages[stage].n,
    }));
  }

  function stageTable(report, group = ["all", "all"]) {
    const g = (report.groups[group[0]] || {})[group[1]];
    if (!g) return `<p class="muted">No completed passages.</p>`;
    const rows = report.stages.filter((s) => s in g.stages).map((s) => {
      const f = g.stages[s];
      return `<tr data-stage="${s}"><th>${esc(STAGE_LABEL[s] || s)}</th><td>${f.n}</td><td>${fmtMs(f.p50)}</td><td>${fmtMs(f.p90)}</td>` +
        `<td>${fmtMs(f.p95)}</td><td>${fmtMs(f.max)}</td><td>${fmtMs(f.step_p50)}</td><td>${fmtMs(f.step_p95)}</td></tr>`;
    }).join("");
    return `<table class="figures"><thead><tr><th>stage</th><th>n</th><th>p50</th><th>p90</th><th>p95</th><th>max</th>` +
      `<th>step p50</th><th>step p95</th></tr></thead><tbody>${rows}</tbody></table>` +
      `<p class="muted small">From arrival to the stage; "step" is the time since the previous stage. Nearest-rank percentiles.</p>`;
  }

  function groupTable(report, dim) {
    const rows = Object.entries(report.groups[dim] || {}).map(([k, g]) => {
      const t = g.stages.exited || g.stages.released || {};
      return `<tr><th>${esc(dim === "hour" ? k + ":00" : k)}</th><td>${g.passages}</td><td>${g.released}</td><td>${g.inspected}</td>` +
        `<td>${g.diverted}</td><td>${fmtMs(t.p50)}</td><td>${fmtMs(t.p95)}</td></tr>`;
    }).join("");
    return `<table class="figures"><thead><tr><th>${esc(dim)}</th><th>passages</th><th>released</th><th>inspected</th>` +
      `<th>diverted</th><th>total p50</th><th>total p95</th></tr></thead><tbody>${rows}</tbody></table>`;
  }

  return { esc, fmtMs, bars, stageRows, groupRows, stageTable, groupTable, STAGE_LABEL };
})();
