"use strict";
(() => {
  const { esc, fmtMs } = window.PL;
  const params = new URLSearchParams(location.search);
  let day = params.get("day");
  document.getElementById("day").addEventListener("change", (ev) => { location.search = "?day=" + ev.target.value; });
  document.getElementById("print").addEventListener("click", () => window.print());

  async function load() {
    if (!day) {
      const me = await fetch("/api/me", { credentials: "same-origin" }).then((r) => r.json()).catch(() => ({}));
      day = new Date().toLocaleDateString("en-CA", { timeZone: (me.site && me.site.timezone) || undefined });
    }
    document.getElementById("day").value = day;
    const r = await fetch(`/api/clearance?from=${day}&to=${day}`, { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); return; }
    const rep = await r.json();
    const all = rep.groups.all.all;
    const m = document.getElementById("report");
    m.innerHTML = `<h1>Daily clearance-time report 口岸通关时效日报</h1>
      <p class="meta">${esc(rep.site_name)} (${esc(rep.site)}) · ${esc(day)} · time zone ${esc(rep.timezone)} · generated ${esc(new Date().toLocaleString("sv-SE", { timeZone: rep.timezone }))}</p>
      <div class="summary"><div class="big"><span>${all.passages}</span><small>passages</small></div>
        <div class="big"><span>${all.released}</span><small>released</small></div>
        <div class="big"><span>${all.inspected}</span><small>inspected (X-ray)</small></div>
        <div class="big"><span>${all.diverted}</span><small>diverted</small></div>
        <div class="big"><span>${fmtMs((all.stages.exited || {}).p50)}</span><small>median arrival → exit</small></div></div>
      <h2>Stages 各环节</h2><div id="r-stage" class="chart-box"></div>${window.PL.stageTable(rep)}
      <h2>By lane 按车道</h2>${window.PL.groupTable(rep, "lane")}
      <h2>By vehicle kind 按车型</h2>${window.PL.groupTable(rep, "kind")}
      <h2>By hour of arrival 按时段</h2><div id="r-hour" class="chart-box"></div>${window.PL.groupTable(rep, "hour")}
      <p class="muted small">Percentiles are nearest-rank over the passages that arrived on this day; the same figures as
      <code>portlane report clearance --from ${esc(day)} --to ${esc(day)}</code>.</p>`;
    window.PL.bars(document.getElementById("r-stage"), window.PL.stageRows(rep), { id: "stage-chart", title: "Time from arrival to each stage" });
    window.PL.bars(document.getElementById("r-hour"), window.PL.groupRows(rep, "hour"), { id: "hour-chart", title: "Arrival → exit by hour", unitLabel: "arrival → exit" });
  }
  load();
})();
