"use strict";
/* portlane wall: every lane and the shared scanner on one screen, for a control-room wall or a
   kiosk. No interaction: it follows the site live (server-sent events, as the console does),
   sizes its tiles to the screen, and never scrolls. Same session and API as the console. */
(() => {
  const { esc, fmtMs } = window.PL;
  const $ = (sel) => document.querySelector(sel);
  const wall = $("#wall");
  const state = { snap: null, offset: 0 };
  const now = () => Date.now() + state.offset;
  const zone = () => (state.snap && state.snap.site.timezone) || undefined;
  const stageName = (s) => (s || "idle").replace(/_/g, " ");

  /* Tiles in a grid that fills the screen: as many columns as a 16:9 screen of roughly 4:3
     tiles needs (7 tiles: 4 × 2; 5: 3 × 2), rows sharing the height. */
  function layout(n) {
    const aspect = window.innerWidth / Math.max(1, window.innerHeight);
    const cols = Math.max(1, Math.min(n, Math.ceil(Math.sqrt(n * aspect * 0.75))));
    wall.style.setProperty("--cols", cols);
    wall.style.setProperty("--rows", Math.ceil(n / cols));
  }

  function laneTile(l) {
    const p = l.passage;
    const status = l.online === false ? ["OFFLINE 离线", "bad"] : !l.in_service ? ["CLOSED 关闭", "bad"] : l.online ? ["OPEN 开放", "ok"] : ["—", "muted"];
    const plates = p ? [...(p.plates || []), ...(p.containers || [])].join(" · ") || "identifying 识别中…" : "";
    const decisions = p ? Object.entries(p.decisions || {}).map(([a, d]) => `<span class="dec ${esc(d)}">${esc(a)} ${esc(d)}</span>`).join("") : "";
    const devs = Object.entries(l.devices || {}).filter(([n]) => n !== "lane")
      .map(([n, d]) => `<span class="wdev ${esc(d.health)}" title="${esc(n)}: ${esc(d.health)}"></span>`).join("");
    return `<section class="tile lane ${status[1]} ${l.alarms ? "alarmed" : ""}" id="wall-${esc(l.id)}" data-stage="${esc(l.stage)}" data-in-service="${l.in_service}">
      <header><span class="tile-id">${esc(l.id)}</span><span class="tile-state ${status[1]}">${status[0]}</span>
        ${l.alarms ? `<span class="tile-alarms">${l.alarms} ⚠</span>` : ""}</header>
      <div class="tile-stage">${esc(stageName(l.stage))}${p ? ` <span class="elapsed" data-since="${p.stage_since_ms}"></span>` : ""}</div>
      <div class="tile-vehicle">${p ? esc(plates) : `<span class="muted">${l.in_service ? "no vehicle 无车" : esc(l.closed_reason || "")}</span>`}</div>
      <div class="tile-decisions">${decisions}</div>
      <footer><span class="wdevs">${devs}</span><span>${esc(l.kind)} · <b>${l.completed}</b> done 已通关</span></footer>
    </section>`;
  }

  function scannerTile(x) {
    const busy = x.lease;
    const queue = x.queue.map((q) => `<span class="qitem">${esc(q.lane)} <span class="elapsed" data-since="${q.queued_ms}"></span></span>`).join("");
    return `<section class="tile scanner ${x.online === false ? "bad" : "ok"} ${x.alarms ? "alarmed" : ""}" id="wall-${esc(x.id)}">
      <header><span class="tile-id">${esc(x.id)}</span><span class="tile-state ${x.online === false ? "bad" : "ok"}">${x.online === false ? "OFFLINE 离线" : "X-RAY 查验"}</span>
        ${x.alarms ? `<span class="tile-alarms">${x.alarms} ⚠</span>` : ""}</header>
      <div class="tile-stage">${busy ? `scanning <span class="lid">${esc(busy.lane)}</span> <span class="elapsed" data-since="${busy.since_ms}"></span>` : "free 空闲"}</div>
      <div class="tile-vehicle">queue 排队 <b>${x.queue.length}</b> ${queue}</div>
      <div class="tile-decisions">last ${x.last_result ? `<span class="dec ${x.last_result.result === "GREEN" ? "release" : "inspect"}">${esc(x.last_result.result)}</span>` : "—"}</div>
      <footer><span>utilisation ${(x.utilisation * 100).toFixed(0)}%</span><span><b>${x.scans}</b> scans 扫描</span></footer>
    </section>`;
  }

  function render() {
    const s = state.snap;
    const tiles = [...s.lanes.map(laneTile), ...s.scanners.map(scannerTile)];
    layout(tiles.length);
    wall.innerHTML = tiles.join("");
    const inLane = s.lanes.filter((l) => l.passage).length;
    const closed = s.lanes.filter((l) => !l.in_service || l.online === false).length;
    const alarms = s.lanes.reduce((n, l) => n + l.alarms, 0) + s.scanners.reduce((n, x) => n + x.alarms, 0);
    $("#wall-totals").innerHTML = `<span><b id="wall-completed">${s.completed}</b> passages 已通关</span>
      <span><b>${inLane}</b> in lanes 车道内</span><span class="${closed ? "bad" : ""}"><b>${closed}</b> closed 关闭</span>
      <span class="${alarms ? "bad" : ""}"><b>${alarms}</b> alarms 告警</span>`;
    tick();
  }

  function tick() {
    document.querySelectorAll(".elapsed[data-since]").forEach((e) => { e.textContent = fmtMs(Math.max(0, now() - Number(e.dataset.since))); });
    $("#wall-clock").textContent = new Date(now()).toLocaleTimeString("en-GB", { hour12: false, timeZone: zone() });
  }
  setInterval(tick, 1000);
  window.addEventListener("resize", () => { if (state.snap) render(); });

  function onSnapshot(snap) {
    state.snap = snap;
    state.offset = snap.now_ms - Date.now();
    $("#wall-site").textContent = snap.site.name;
    document.title = `${snap.site.id} — portlane wall`;
    render();
  }

  async function start() {
    const r = await fetch("/api/overview", { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login?next=/wall"; return; }
    onSnapshot(await r.json());
    const es = new EventSource("/api/stream");
    es.addEventListener("overview", (ev) => { $("#conn").className = "dot on"; onSnapshot(JSON.parse(ev.data)); });
    es.onerror = async () => {
      $("#conn").className = "dot off";
      // The stream reconnects by itself; a session that ended (after its 12 h) needs a sign-in.
      const me = await fetch("/api/me", { credentials: "same-origin" }).catch(() => null);
      if (me && me.status === 401) location.href = "/login?next=/wall";
    };
  }
  start();
})();
