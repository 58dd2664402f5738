"use strict";
/* portlane console: one page, hash routes, live state over server-sent events. */
(() => {
  const { esc, fmtMs } = window.PL;
  const $ = (sel) => document.querySelector(sel);
  const main = $("#main");
  const state = { me: null, snap: null, offset: 0, alarms: [], alarmFilter: "open", analytics: null, scansHtml: {} };

  async function api(path, opts = {}) {
    const r = await fetch(path, {
      credentials: "same-origin", ...opts,
      headers: { "Content-Type": "application/json", "X-Portlane": "1", ...(opts.headers || {}) },
    });
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.hash); throw new Error("signed out"); }
    const j = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
    return j;
  }

  const now = () => Date.now() + state.offset;
  /* Times in the site's zone (a supervisor may sit in another one). */
  const zone = () => (state.snap && state.snap.site.timezone) || undefined;
  const time = (ms) => ms ? new Date(ms).toLocaleTimeString("en-GB", { hour12: false, timeZone: zone() }) : "–";
  const dateTime = (ms) => ms ? new Date(ms).toLocaleString("sv-SE", { timeZone: zone() }) : "–";
  const stageName = (s) => (s || "idle").replace(/_/g, " ");
  const route = () => (location.hash || "#/overview").slice(2).split("/");

  /* ---------------------------------------------------------------- overview */
  function laneCard(l) {
    const p = l.passage;
    /* online / closed / offline only on the lane's signed status; the broker's last will: unconfirmed */
    const status = l.state === "unconfirmed_offline" ? ["offline? (unconfirmed)", "warn"] : l.online === false ? ["offline", "bad"] : !l.in_service ? ["out of service 关闭", "bad"] : l.online ? ["in service 开放", "ok"] : ["no signed status yet", "muted"];
    const devs = Object.entries(l.devices || {}).filter(([n]) => n !== "lane").map(([n, d]) =>
      `<span class="dev ${esc(d.health)}" title="${esc(n)}: ${esc(d.health)}${d.reason ? " — " + esc(d.reason) : ""}">${esc(n.replace("camera:", "cam "))}</span>`).join("");
    const decisions = p ? Object.entries(p.decisions || {}).map(([a, d]) => `<span class="dec ${esc(d)}">${esc(a)}: ${esc(d)}${(p.basis || {})[a] === "predecision" ? " (pre-decision)" : ""}</span>`).join(" ") : "";
    const cargo = p ? [p.radiation ? `<span class="pill ${p.radiation === "alarm" ? "bad" : "warn"}">radiation ${esc(p.radiation)}</span>` : "",
      ...(p.seal_exceptions || []).map((x) => `<span class="pill warn">${esc(x)}</span>`)].join(" ") : "";
    const share = l.automatic_share === null || l.automatic_share === undefined ? "" : `<span title="released by the lane on signed pre-decisions">auto ${Math.round(l.automatic_share * 100)}%</span>`;
    const refusals = Object.entries(l.predecision_refusals || {}).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([r, n]) => `${esc(r.replace(/_/g, " "))} ${n}`).join(", ");
    const vehicle = p ? esc([...(p.plates || []), ...(p.containers || [])].join(" · ") || "identifying…") : "";
    const last = l.last ? `<div class="last">last: <a href="#/passage/${encodeURIComponent(l.last.passage_id)}">${esc([...l.last.plates, ...l.last.containers].join(" · ") || l.last.passage_id)}</a> — ${esc(l.last.outcome)} in ${fmtMs(l.last.total_ms)}</div>` : "";
    return `<section class="card lane ${l.alarms ? "alarmed" : ""} ${l.in_service ? "" : "closed"}" id="lane-${esc(l.id)}" data-stage="${esc(l.stage)}" data-in-service="${l.in_service}" data-online="${l.online}" data-state="${esc(l.state)}" data-completed="${l.completed}" data-alarms="${l.alarms}">
      <header><h2>${esc(l.id)}</h2><span class="kind">${esc(l.kind)}</span><span class="pill ${status[1]}">${status[0]}</span>
        ${l.alarms ? `<a class="pill bad alarm-count" href="#/alarms">${l.alarms} alarm${l.alarms > 1 ? "s" : ""}</a>` : ""}</header>
      ${l.closed_reason && !l.in_service ? `<div class="closed-reason">${esc(l.closed_reason)}</div>` : ""}
      <div class="stage"><span class="stage-name">${esc(stageName(l.stage))}</span>
        ${p ? `<span class="elapsed" data-since="${p.stage_since_ms}"></span>` : ""}</div>
      ${p ? `<div class="vehicle"><a href="#/passage/${encodeURIComponent(p.id)}">${vehicle}</a>
        ${p.confidence !== null && p.confidence < 0.8 ? `<span class="pill warn">conf ${p.confidence.toFixed(2)}</span>` : ""}
        <div class="decisions">${decisions} ${cargo}</div><div class="muted small">arrived ${time(p.arrived_ms)} · <span class="elapsed" data-since="${p.arrived_ms}"></span> in lane</div></div>` : `<div class="vehicle muted">no vehicle</div>`}
      <div class="devices">${devs || '<span class="muted small">no device reports yet</span>'}</div>
      <footer><span>completed <b class="completed">${l.completed}</b></span> ${share}${last}
        ${refusals ? `<div class="muted small" title="why declared vehicles went to an officer">not released on pre-decisions: ${refusals}</div>` : ""}</footer>
    </section>`;
  }

  /* Live updates replace only what changed: a card being read (or clicked) stays put. */
  const painted = new Map();
  function paint(el, key, html) {
    if (painted.get(key) === html && el.isConnected) return el;
    painted.set(key, html);
    const tmp = document.createElement("div");
    tmp.innerHTML = html;
    const fresh = tmp.firstElementChild;
    el.replaceWith(fresh);
    return fresh;
  }

  function summaryHtml(s) {
    const sc = (s.scanners || []).map((x) => `<a class="card mini" href="#/scanner"><b>${esc(x.id)}</b> queue ${x.queue.length} ·
      ${x.lease ? "scanning " + esc(x.lease.lane) : "idle"} · utilisation ${(x.utilisation * 100).toFixed(0)}%</a>`).join("");
    return `<div class="summary" id="summary"><div class="big"><span id="completed-total">${s.completed}</span><small>passages completed 已通关</small></div>
      <div class="big"><span>${s.lanes.filter((l) => l.passage).length}</span><small>vehicles in lanes 车道内</small></div>
      <div class="big"><span>${s.lanes.filter((l) => !l.in_service || l.online === false).length}</span><small>lanes closed/offline 关闭</small></div>
      ${sc}</div>`;
  }

  function renderOverview() {
    const s = state.snap;
    if (!s) return;
    if (!$("#lanes")) {
      painted.clear();
      main.innerHTML = `<div id="summary"></div><div class="lanes" id="lanes"></div>
        <h3>Recently completed 最近通关</h3><div id="recent">${state.recentHtml || ""}</div>`;
      state.recentFor = -1;
    }
    paint($("#summary"), "summary", summaryHtml(s));
    const box = $("#lanes");
    for (const l of s.lanes) {
      let card = document.getElementById("lane-" + l.id);
      if (!card) { card = document.createElement("section"); box.appendChild(card); }
      paint(card, "lane-" + l.id, laneCard(l));
    }
    tickElapsed();
    if (state.recentFor !== s.completed) { state.recentFor = s.completed; loadRecent(); }
  }

  let recentTimer = null;
  function loadRecent() {
    clearTimeout(recentTimer);
    recentTimer = setTimeout(async () => {
      if (!$("#recent")) return;
      const j = await api("/api/passages?limit=12");
      state.recentHtml = passageTable(j.passages);
      const box = $("#recent");
      if (box) box.innerHTML = state.recentHtml;
    }, 300);
  }

  function passageTable(rows) {
    if (!rows.length) return `<p class="muted">None yet.</p>`;
    return `<table class="list"><thead><tr><th>completed</th><th>lane</th><th>vehicle</th><th>kind</th><th>outcome</th><th>total</th></tr></thead><tbody>` +
      rows.map((p) => `<tr><td>${time(p.completed_ms)}</td><td>${esc(p.lane)}</td><td><a href="#/passage/${encodeURIComponent(p.passage_id)}">${esc([...p.plates, ...p.containers].join(" · ") || p.passage_id)}</a></td>
        <td>${esc(p.vehicle_kind)}</td><td>${esc(p.outcome)}${p.inspected ? " (X-ray)" : ""}</td><td>${fmtMs(p.total_ms)}</td></tr>`).join("") + `</tbody></table>`;
  }

  function tickElapsed() {
    document.querySelectorAll(".elapsed[data-since]").forEach((e) => { e.textContent = fmtMs(Math.max(0, now() - Number(e.dataset.since))); });
    const c = $("#clock"); if (c) c.textContent = `${dateTime(now())} ${zone() || ""}`;
  }
  setInterval(tickElapsed, 1000);

  /* ---------------------------------------------------------------- scanner */
  function renderScanner() {
    const s = state.snap;
    if (!s) return;
    if (!s.scanners.length) { main.innerHTML = `<p class="muted">This site has no shared scanner.</p>`; return; }
    const lanes = new Map(s.lanes.map((l) => [l.id, l]));
    /* Two columns over the whole screen: the scanner itself (lease, queue) and the lanes it
       serves (what each is doing, whether it waits for the scanner), with recent faults. */
    main.innerHTML = s.scanners.map((x) => `<div class="scanner-page" id="scanner-${esc(x.id)}">
      <section class="card scanner">
      <header><h2>${esc(x.id)}</h2><span class="pill ${x.online === false ? "bad" : "ok"}">${x.online === false ? "offline" : "online"}</span>
        <span class="muted">serves ${x.lanes.map(esc).join(", ")}</span></header>
      <div class="summary"><div class="big"><span>${x.queue.length}</span><small>in queue 排队</small></div>
        <div class="big"><span>${(x.utilisation * 100).toFixed(0)}%</span><small>utilisation (last hour) 利用率</small></div>
        <div class="big"><span>${x.scans}</span><small>scans 扫描</small></div>
        <div class="big"><span>${x.last_result ? esc(x.last_result.result) : "–"}</span><small>last result</small></div></div>
      <h3>Lease 当前占用</h3>
      ${x.lease ? `<p>scanning <a href="#/passage/${encodeURIComponent(x.lease.passage_id)}">${esc(x.lease.passage_id)}</a> from lane <b>${esc(x.lease.lane)}</b>, scan ${esc(x.lease.scan_id)}, for <span class="elapsed" data-since="${x.lease.since_ms}"></span></p>` : `<p class="muted">free</p>`}
      <h3>Queue 队列</h3>
      ${x.queue.length ? `<table class="list queue"><thead><tr><th>#</th><th>lane</th><th>passage</th><th>queued</th><th>waiting</th></tr></thead><tbody>` +
        x.queue.map((q, i) => `<tr><td>${i + 1}</td><td>${esc(q.lane)}</td><td><a href="#/passage/${encodeURIComponent(q.passage_id)}">${esc(q.passage_id)}</a></td><td>${time(q.queued_ms)}</td><td class="elapsed" data-since="${q.queued_ms}"></td></tr>`).join("") + `</tbody></table>` : `<p class="muted">empty</p>`}
      <h3>Recent inspections 最近查验</h3><div class="recent-scans" data-scanner="${esc(x.id)}">${state.scansHtml[x.id] || ""}</div>
      </section>
      <section class="card scanner-side"><h3>Lanes served 服务车道</h3><div class="served">` +
      x.lanes.map((id) => lanes.get(id)).filter(Boolean).map((l) => `<a class="card mini" href="#/overview" data-lane="${esc(l.id)}">
        <b>${esc(l.id)}</b> <span class="pill ${l.in_service && l.online !== false ? "ok" : "bad"}">${l.in_service ? (l.online === false ? "offline" : "open") : "closed"}</span><br>
        ${esc(stageName(l.stage))}${l.passage ? ` · <span class="elapsed" data-since="${l.passage.stage_since_ms}"></span>` : ""}<br>
        <span class="muted small">${l.completed} completed</span></a>`).join("") + `</div>
      <h3>Faults 故障</h3>
      ${x.faults.length ? `<ul>${x.faults.map((f) => `<li>${time(f.ms)} — lane ${esc(f.lane)}: ${esc(f.reason)}</li>`).join("")}</ul>` : `<p class="muted">none</p>`}
      </section></div>`).join("");
    tickElapsed();
    if (state.scansFor !== s.completed) { state.scansFor = s.completed; loadRecentScans(); }
  }

  /* The vehicles the scanner inspected lately, newest first (completed passages of its lanes). */
  async function loadRecentScans() {
    const j = await api("/api/passages?limit=200");
    for (const x of state.snap.scanners) {
      const rows = j.passages.filter((p) => p.inspected && x.lanes.includes(p.lane)).slice(0, 15);
      state.scansHtml[x.id] = rows.length ? passageTable(rows) : `<p class="muted">none yet</p>`;
      const box = document.querySelector(`.recent-scans[data-scanner="${CSS.escape(x.id)}"]`);
      if (box) box.innerHTML = state.scansHtml[x.id];
    }
  }

  /* ---------------------------------------------------------------- alarms */
  async function loadAlarms() {
    const j = await api(`/api/alarms?state=${state.alarmFilter}`);
    const same = JSON.stringify(j.alarms) === JSON.stringify(state.alarms) && $("#alarms-page");
    state.alarms = j.alarms;
    if (route()[0] === "alarms" && !same) renderAlarms();
  }

  function renderAlarms() {
    const officer = state.me && state.me.role === "officer";
    main.innerHTML = `<div class="toolbar" id="alarms-page"><h2>Alarms and items waiting for an officer 待处理</h2>
      <label><input type="radio" name="af" value="open" ${state.alarmFilter === "open" ? "checked" : ""}> open</label>
      <label><input type="radio" name="af" value="all" ${state.alarmFilter === "all" ? "checked" : ""}> all</label>
      ${officer ? "" : `<span class="muted small">supervisor view: read-only</span>`}</div>
      ${state.alarms.length ? `<table class="list alarms"><thead><tr><th></th><th>raised</th><th>unit</th><th>what</th><th>detail</th><th>state</th><th>acknowledged</th><th></th></tr></thead><tbody>` +
      state.alarms.map((a) => `<tr class="alarm ${esc(a.severity)} ${a.active ? "active" : "cleared"}" data-kind="${esc(a.kind)}" data-unit="${esc(a.unit)}" data-id="${a.id}">
        <td><span class="sev ${esc(a.severity)}">${esc(a.severity)}</span></td><td>${time(a.raised_ms)}</td><td>${esc(a.unit || "site")}</td>
        <td>${esc(a.title)}${a.passage_id ? ` <a href="#/passage/${encodeURIComponent(a.passage_id)}">passage</a>` : ""}</td><td class="small">${esc(a.detail)}</td>
        <td>${a.active ? "active" : "cleared " + time(a.cleared_ms)}</td>
        <td class="small">${Object.entries(a.acks).map(([ag, k]) => `${esc(ag)} (${esc(k.user)})`).join(", ") || (a.agencies.length ? "–" : "site alarm")}</td>
        <td>${a.can_ack ? `<button class="ack" data-id="${a.id}" type="button">Acknowledge 确认</button>` : ""}</td></tr>`).join("") + `</tbody></table>`
      : `<p class="muted" id="no-alarms">Nothing waiting.</p>`}`;
    main.querySelectorAll("input[name=af]").forEach((r) => r.addEventListener("change", () => { state.alarmFilter = r.value; loadAlarms(); }));
    main.querySelectorAll("button.ack").forEach((b) => b.addEventListener("click", async () => {
      const note = prompt("Note (optional) 备注") ?? "";
      b.disabled = true;
      try { await api(`/api/alarms/${b.dataset.id}/ack`, { method: "POST", body: JSON.stringify({ note }) }); } catch (e) { alert(e.message); }
      loadAlarms();
    }));
  }

  /* ---------------------------------------------------------------- passage */
  async function renderPassage(id) {
    let p;
    try { p = await api(`/api/passages/${encodeURIComponent(id)}`); } catch (e) { main.innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
    const t0 = Date.parse(p.arrived);
    const idn = p.identification;
    // why the lane's recogniser did not confirm a read (contract: PlateRead.doubt / ContainerRead.doubt)
    const doubt = (x) => x.doubt ? ` <span class="pill warn doubt" title="why the lane did not confirm this read">${esc(x.doubt)}</span>` : "";
    const plates = idn ? (idn.plates || []).map((x) => `<tr><td>plate</td><td><b>${esc(x.text)}</b></td><td>${esc(x.kind)}</td><td>${(x.confidence * 100).toFixed(0)}%${doubt(x)}</td></tr>`).join("") : "";
    const boxes = idn ? (idn.containers || []).map((x) => `<tr><td>container</td><td><b>${esc(x.number)}</b></td><td>${x.check_digit_ok ? "check digit ✓" : "check digit ✗"} ${esc(x.iso_type || "")}</td><td>${(x.confidence * 100).toFixed(0)}%${doubt(x)}</td></tr>`).join("") : "";
    const crops = idn && Array.isArray(idn.crops) ? idn.crops.filter((c) => typeof c === "string" && c.startsWith("data:image/")).map((c) => `<img class="crop" alt="crop" src="${esc(c)}">`).join("") : "";
    main.innerHTML = `<p><a href="#/overview">← overview</a></p>
      <h2>Passage ${esc(p.passage_id)} <span class="muted">lane ${esc(p.lane)}</span></h2>
      ${p.completed ? `<p>${esc(p.completed.outcome)} · ${esc(p.completed.vehicle_kind)} · ${p.completed.inspected ? "inspected (X-ray " + esc(p.completed.scan_result) + ")" : "not inspected"} · total ${fmtMs(p.completed.stage_ms.exited)}</p>` : `<p class="pill warn">in progress</p>`}
      <div class="cols"><section class="card"><h3>Identification 识别</h3>
        ${idn ? `<table class="list"><tbody>${plates}${boxes}
          <tr><td>e-card tag</td><td colspan="3">${esc(idn.tag_id || "–")}</td></tr><tr><td>weight</td><td colspan="3">${idn.weight_kg ? idn.weight_kg + " kg" : "–"}</td></tr>
          <tr><td>confidence</td><td colspan="3">${(idn.confidence * 100).toFixed(0)}%</td></tr>
          <tr><td>exceptions</td><td colspan="3">${(idn.exceptions || []).map(esc).join(", ") || "none"}</td></tr>
          ${idn.corrected_by ? `<tr><td>corrected by</td><td colspan="3">${esc(idn.corrected_by)}</td></tr>` : ""}</tbody></table>${crops}
          ${p.identifications > 1 ? `<p class="muted small">${p.identifications} identifications (corrected); the last is shown.</p>` : ""}` : `<p class="muted">not identified yet</p>`}
      </section><section class="card"><h3>Decisions 各部门决定</h3>
        ${p.decisions.length ? `<table class="list"><thead><tr><th>agency</th><th>phase</th><th>decision</th><th>at</th></tr></thead><tbody>` +
          p.decisions.map((d) => `<tr><td>${esc(d.agency)}</td><td>${esc(d.phase)}</td><td><span class="dec ${esc(d.decision)}">${esc(d.decision)}</span></td><td>+${fmtMs(Date.parse(d.time) - t0)}</td></tr>`).join("") + `</tbody></table>` : `<p class="muted">none yet</p>`}
        ${p.scan.length ? `<h3>Scan 查验</h3><ul>${p.scan.map((s) => `<li>${esc(s.type.replace("portlane.", ""))} +${fmtMs(Date.parse(s.time) - t0)} ${s.result ? "<b>" + esc(s.result) + "</b>" : ""} ${s.image_ref ? "image " + esc(s.image_ref) : ""} ${s.reason ? esc(s.reason) : ""}</li>`).join("")}</ul>` : ""}
      </section></div>
      <section class="card"><h3>Stage timeline 环节时间线</h3>
      <table class="list timeline"><thead><tr><th>+time</th><th>event</th><th>unit</th><th>signature</th><th>detail</th></tr></thead><tbody>` +
      p.timeline.map((e) => `<tr><td>+${fmtMs(Date.parse(e.time) - t0)}</td><td>${esc(e.type)}</td><td>${esc(e.unit)}</td><td class="small">${esc(e.signature)}</td>
        <td class="small">${esc(summary(e))}${e.problem ? ` <span class="error">${esc(e.problem)}</span>` : ""}</td></tr>`).join("") + `</tbody></table></section>`;
  }

  function summary(e) {
    const d = e.data || {};
    switch (e.type) {
      case "passage.decided": return `${d.agency}: ${d.decision} (${d.phase})`;
      case "gate.moved": return `${d.action} (${d.cause})`;
      case "vehicle.identified": return (d.plates || []).map((p) => p.text).concat((d.containers || []).map((c) => c.number)).join(" · ");
      case "passage.completed": return `${d.outcome}`;
      case "lane.exception": return `${d.kind}: ${d.detail}`;
      default: return d.result || d.reason || d.outcome || "";
    }
  }

  /* ---------------------------------------------------------------- analytics */
  /* The site's day (days and hours are the site's local ones, whatever the browser's zone). */
  function today() { return new Date(now()).toLocaleDateString("en-CA", { timeZone: state.snap.site.timezone }); }

  async function renderAnalytics() {
    const q = state.aq || (state.aq = { from: today(), to: today(), lane: "", kind: "", by: "lane" });
    const lanes = state.snap ? state.snap.lanes.map((l) => l.id) : [];
    main.innerHTML = `<div class="toolbar"><h2>Clearance time 通关时效</h2>
      <label>from <input type="date" id="a-from" value="${esc(q.from)}"></label><label>to <input type="date" id="a-to" value="${esc(q.to)}"></label>
      <label>lane <select id="a-lane"><option value="">all</option>${lanes.map((l) => `<option ${q.lane === l ? "selected" : ""}>${esc(l)}</option>`).join("")}</select></label>
      <label>vehicle <select id="a-kind"><option value="">all</option>${["container_truck", "truck", "car"].map((k) => `<option ${q.kind === k ? "selected" : ""}>${k}</option>`).join("")}</select></label>
      <label>compare by <select id="a-by">${["lane", "hour", "day", "kind"].map((k) => `<option ${q.by === k ? "selected" : ""}>${k}</option>`).join("")}</select></label>
      <a id="a-report" href="/report?day=${esc(q.to)}" target="_blank">printable daily report ↗</a></div>
      <div id="a-body"><p class="muted">Computing…</p></div>`;
    for (const [id, key] of [["a-from", "from"], ["a-to", "to"], ["a-lane", "lane"], ["a-kind", "kind"], ["a-by", "by"]]) {
      $("#" + id).addEventListener("change", (ev) => { q[key] = ev.target.value; renderAnalytics(); });
    }
    loadAnalytics();
  }

  /* The figures only: the form stays as the user left it; live updates refresh the numbers. */
  async function loadAnalytics() {
    const q = state.aq;
    const params = new URLSearchParams({ from: q.from, to: q.to, lane: q.lane, kind: q.kind });
    let rep;
    try { rep = await api(`/api/clearance?${params}`); } catch (e) { $("#a-body").innerHTML = `<p class="error">${esc(e.message)}</p>`; return; }
    const body = $("#a-body");
    if (!body || route()[0] !== "analytics") return;
    state.analytics = rep;
    state.analyticsFor = state.snap ? state.snap.completed : null;
    const all = rep.groups.all.all;
    body.innerHTML = `<p id="a-count"><b>${all.passages}</b> passages · ${all.released} released · ${all.inspected} inspected · ${all.diverted} diverted</p>
      <div id="stage-chart-box" class="chart-box"></div><div id="group-chart-box" class="chart-box"></div>${window.PL.stageTable(rep)}`;
    window.PL.bars($("#stage-chart-box"), window.PL.stageRows(rep), { id: "stage-chart", title: "Time from arrival to each stage 各环节耗时 (all selected passages)" });
    window.PL.bars($("#group-chart-box"), window.PL.groupRows(rep, q.by), { id: "group-chart", title: `Total time in lane (arrival → exit) by ${q.by}`, unitLabel: "arrival → exit" });
  }

  /* ---------------------------------------------------------------- plumbing */
  function render() {
    const [page, arg] = route();
    document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
    if (page === "scanner") renderScanner();
    else if (page === "alarms") { renderAlarms(); loadAlarms(); }
    else if (page === "passage" && arg) renderPassage(decodeURIComponent(arg));
    else if (page === "analytics") renderAnalytics();
    else renderOverview();
  }

  function onSnapshot(snap) {
    state.snap = snap;
    state.offset = snap.now_ms - Date.now();
    const open = Object.values(snap.lanes).reduce((n, l) => n + l.alarms, 0) + snap.scanners.reduce((n, s) => n + s.alarms, 0);
    const badge = $("#alarm-badge"); badge.hidden = !open; badge.textContent = open;
    const page = route()[0];
    if (page === "overview" || page === "") renderOverview();
    else if (page === "scanner") renderScanner();
    else if (page === "alarms") loadAlarms();
    else if (page === "analytics" && state.aq && state.analyticsFor !== snap.completed) loadAnalytics();
  }

  function connect() {
    const es = new EventSource("/api/stream");
    es.addEventListener("overview", (ev) => { $("#conn").className = "dot on"; onSnapshot(JSON.parse(ev.data)); });
    es.onerror = () => { $("#conn").className = "dot off"; };
  }

  async function start() {
    const me = await api("/api/me");
    state.me = me.user;
    $("#user").textContent = `${me.user.name} · ${me.user.role}${me.user.agency ? " · " + me.user.agency : ""}`;
    $("#site-name").textContent = me.site.name;
    document.title = `${me.site.id} — portlane console`;
    $("#logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }); location.href = "/login"; });
    state.snap = await api("/api/overview");
    onSnapshot(state.snap);
    window.addEventListener("hashchange", render);
    render();
    connect();
  }
  start();
})();
