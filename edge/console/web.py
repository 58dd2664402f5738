"""The console's web server (aiohttp): pages, JSON API, server-sent events.

Pages (``static/``, shipped as package data — no CDN, nothing fetched at run time):
``/`` the application (overview, scanner, alarms, passage detail, analytics), ``/login``,
``/report?day=YYYY-MM-DD`` the printable daily report.

API (JSON; every route but ``/api/login`` and ``/api/health`` needs a session cookie):

=============================  ===============================================================
``GET  /api/me``               the signed-in user
``GET  /api/overview``         lanes, scanner, console state (also pushed on ``/api/stream``)
``GET  /api/stream``           server-sent events: ``overview`` snapshots as things change
``GET  /api/alarms``           ``?state=open|all``: alarms the user may see, newest first
``POST /api/alarms/{id}/ack``  ``{"note": ...}``: the officer's agency acknowledges (403 for others)
``GET  /api/passages``         ``?lane=&limit=``: recently completed passages
``GET  /api/passages/{id}``    stage timeline, identification, decisions, scan (by audience)
``GET  /api/clearance``        ``?from=&to=&lane=&kind=``: the figures of ``portlane report clearance``
``POST /api/login|logout``     ``{"name", "password"}`` → session cookie (HttpOnly, SameSite=Strict,
                               Secure over TLS); failures delay the account and the source
                               (``auth.LoginThrottle``), never lock
=============================  ===============================================================

State-changing requests must carry ``X-Portlane: 1`` (a header a cross-site form cannot set)
on top of the SameSite cookie. Responses carry a strict Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from portlane.edge.trust.rejections import AuditSink

from .analytics import clearance, parse_bound
from .auth import LoginThrottle, Sessions, User, cookie_secure
from .live import SiteLive
from .store import Store

__all__ = ["Console", "make_app", "start_web"]

STATIC = Path(str(importlib.resources.files("portlane.edge.console"))) / "static"
COOKIE = "portlane_console"
#: Server-sent events: at most this many snapshots a second per browser, and a comment line
#: this often so proxies (nginx ``proxy_read_timeout`` 60 s) keep the stream open.
SSE_MIN_INTERVAL_S = 0.25
SSE_KEEPALIVE_S = 15.0
#: Web server shutdown: open event streams end at once (``closing``); requests get this long.
HTTP_SHUTDOWN_S = 2.0
#: Failed sign-ins are audited in aggregate; the summaries of a past minute are written this often.
SIGN_IN_FLUSH_S = 5.0
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class _Stats(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class Console(Protocol):
    """What the web layer uses of the running console. ``ConsoleService`` is one, and starts the
    web server with itself; the web layer never imports the service (no import cycle)."""

    site_id: str
    live: SiteLive
    users: Mapping[str, User]
    cookie_secure: bool
    closing: asyncio.Event
    version: int

    @property
    def audit(self) -> AuditSink | None:
        """Where failed sign-ins are audited (aggregated)."""

    @property
    def stats(self) -> _Stats: ...

    @property
    def connected(self) -> bool: ...

    def db(self) -> Store: ...

    def notify_changed(self) -> None: ...

    def now_ms(self) -> int: ...

    def snapshot(self) -> dict[str, Any]: ...

    async def wait_changed(self, version: int) -> int: ...


SERVICE: web.AppKey[Console] = web.AppKey("service")
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions")
THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("throttle")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _user(request: web.Request) -> User:
    u = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    if u is None:
        raise web.HTTPUnauthorized()
    return u


@web.middleware
async def _security(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    public = path in ("/login", "/api/login", "/api/health") or path.startswith("/static/")
    user = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    if request.method not in ("GET", "HEAD") and request.headers.get("X-Portlane") != "1":
        return _json({"error": "missing X-Portlane header"}, 403)
    if user is None and not public:
        if path.startswith("/api/"):
            return _json({"error": "sign in first"}, 401)
        raise web.HTTPFound(f"/login?next={path}")
    resp = await handler(request)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if not path.startswith("/static/"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


async def _page(request: web.Request, name: str) -> web.StreamResponse:
    return web.FileResponse(STATIC / name, headers={"Content-Type": "text/html; charset=utf-8"})


async def index(request: web.Request) -> web.StreamResponse:
    return await _page(request, "index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    return await _page(request, "login.html")


async def report_page(request: web.Request) -> web.StreamResponse:
    return await _page(request, "report.html")


async def wall_page(request: web.Request) -> web.StreamResponse:
    """Every lane and the scanner on one screen, dark, large type, live: for a wall (docs/console.md)."""
    return await _page(request, "wall.html")


async def login(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
        name, password = str(body["name"]), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return _json({"error": "send {name, password}"}, 400)
    svc = request.app[SERVICE]
    # Growing delays per account and per source (the real client behind the TLS proxy), never a
    # lock: the right password always signs in (auth.LoginThrottle).
    user = await request.app[THROTTLE].check(
        svc.users, name, password, remote=request.remote, forwarded_for=request.headers.get("X-Forwarded-For")
    )
    if user is None:
        return _json({"error": "wrong name or password"}, 401)
    session = request.app[SESSIONS].create(user)
    resp = _json({"user": user.public()})
    resp.set_cookie(
        COOKIE,
        session.token,
        httponly=True,
        samesite="Strict",
        secure=cookie_secure(
            svc.cookie_secure, scheme=request.scheme, forwarded_proto=request.headers.get("X-Forwarded-Proto")
        ),
        path="/",
        max_age=int(request.app[SESSIONS].ttl_s),
    )
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].drop(request.cookies.get(COOKIE))
    resp = _json({"ok": True})
    resp.del_cookie(COOKIE, path="/")
    return resp


async def me(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICE]
    return _json(
        {
            "user": _user(request).public(),
            "site": {"id": svc.site_id, "name": svc.live.site_name, "timezone": str(svc.live.tz)},
        }
    )


async def health(request: web.Request) -> web.StreamResponse:
    svc = request.app[SERVICE]
    return _json({"connected": svc.connected, "version": svc.version, "stats": svc.stats.as_dict()})


async def overview(request: web.Request) -> web.StreamResponse:
    _user(request)
    return _json(request.app[SERVICE].snapshot())


async def stream(request: web.Request) -> web.StreamResponse:
    _user(request)
    svc = request.app[SERVICE]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    version = -1
    try:
        while not svc.closing.is_set():
            if version != svc.version:
                version = svc.version
                data = json.dumps(svc.snapshot(), ensure_ascii=False)
                await resp.write(f"event: overview\nid: {version}\ndata: {data}\n\n".encode())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SSE_MIN_INTERVAL_S):
                        await svc.closing.wait()
                continue
            try:
                async with asyncio.timeout(SSE_KEEPALIVE_S):
                    await svc.wait_changed(version)
            except TimeoutError:
                await resp.write(b": keepalive\n\n")
    except ConnectionError:
        pass  # the browser tab was closed: the normal end of a stream, not an error to log
    return resp


def _visible_alarm(user: User, agencies: tuple[str, ...]) -> bool:
    return user.sees(agencies)


async def alarms(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    svc = request.app[SERVICE]
    state = request.query.get("state", "open")
    rows = [a for a in svc.db().alarms(limit=1000) if _visible_alarm(user, a.agencies)]
    out = []
    for a in rows:
        d = a.as_dict()
        if user.role == "officer" and user.agency is not None:
            d["acked"] = user.agency.value in a.acks
            d["can_ack"] = not d["acked"]
        else:
            d["acked"] = bool(a.agencies) and all(x in a.acks for x in a.agencies)
            d["can_ack"] = False
        if state == "open" and d["acked"] and not d["active"]:
            continue
        out.append(d)
    return _json({"alarms": out[:500], "now_ms": svc.now_ms()})


async def ack(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    if user.role != "officer" or user.agency is None:
        return _json({"error": "supervisors see everything read-only; an agency officer acknowledges"}, 403)
    svc = request.app[SERVICE]
    try:
        alarm_id = int(request.match_info["id"])
        body = await request.json() if request.can_read_body else {}
        note = str(body.get("note", "")) if isinstance(body, dict) else ""
    except ValueError:
        return _json({"error": "bad request"}, 400)
    st = svc.db()
    a = st.alarm(alarm_id)
    if a is None or not user.sees(a.agencies):
        return _json({"error": "no such alarm for your agency"}, 404)
    with st.transaction():
        ok = st.ack(alarm_id, agency=user.agency.value, user=user.name, note=note, ms=svc.now_ms())
    if not ok:
        return _json({"error": "already acknowledged by your agency"}, 409)
    svc.notify_changed()
    alarm = st.alarm(alarm_id)
    return _json({"alarm": alarm.as_dict() if alarm else None})


async def passages(request: web.Request) -> web.StreamResponse:
    _user(request)
    svc = request.app[SERVICE]
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        return _json({"error": "limit must be an integer"}, 400)
    rows = svc.db().recent_passages(limit, request.query.get("lane") or None)
    return _json(
        {
            "passages": [
                {
                    "passage_id": r.passage_id,
                    "lane": r.lane,
                    "vehicle_kind": r.vehicle_kind,
                    "outcome": r.outcome,
                    "inspected": r.inspected,
                    "arrived_ms": r.arrived_ms,
                    "completed_ms": r.completed_ms,
                    "plates": list(r.plates),
                    "containers": list(r.containers),
                    "total_ms": r.stage_ms.get("exited", max(r.stage_ms.values(), default=0)),
                }
                for r in rows
            ]
        }
    )


async def passage(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    svc = request.app[SERVICE]
    pid = request.match_info["id"]
    events = [
        e
        for e in svc.db().events_of(pid)
        if user.role == "supervisor" or not e.get("audience") or (user.agency and user.agency.value in e["audience"])
    ]
    if not events:
        return _json({"error": f"no passage {pid}"}, 404)
    row = svc.db().passage(pid)
    t0 = next((e["time"] for e in events if e["type"] == "portlane.passage.arrived"), events[0]["time"])
    ident = [e["data"] for e in events if e["type"] == "portlane.vehicle.identified"]
    decisions = [
        {
            "agency": e["data"].get("agency"),
            "decision": e["data"].get("decision"),
            "phase": e["data"].get("phase"),
            "time": e["time"],
        }
        for e in events
        if e["type"] == "portlane.passage.decided"
    ]
    scan = [
        e["data"] | {"type": e["type"], "time": e["time"]} for e in events if e["type"].startswith("portlane.scan.")
    ]
    lane = next((e["source"].rsplit("/", 1)[-1] for e in events if not e["type"].startswith("portlane.scan.")), None)
    return _json(
        {
            "passage_id": pid,
            "lane": lane,
            "arrived": t0,
            "completed": (
                {
                    "outcome": row.outcome,
                    "inspected": row.inspected,
                    "scan_result": row.scan_result,
                    "stage_ms": row.stage_ms,
                    "vehicle_kind": row.vehicle_kind,
                }
                if row
                else None
            ),
            "timeline": [
                {
                    "time": e["time"],
                    "type": e["type"].removeprefix("portlane."),
                    "unit": e["source"].rsplit("/", 1)[-1],
                    "id": e["id"],
                    "signature": e["_signature"],
                    "problem": e["_problem"],
                    "data": e["data"],
                }
                for e in events
            ],
            "identification": ident[-1] if ident else None,
            "identifications": len(ident),
            "decisions": decisions,
            "scan": scan,
        }
    )


async def clearance_api(request: web.Request) -> web.StreamResponse:
    _user(request)
    svc = request.app[SERVICE]
    tz = svc.live.tz
    q = request.query
    try:
        start = parse_bound(q["from"], tz, end=False) if q.get("from") else None
        end = parse_bound(q["to"], tz, end=True) if q.get("to") else None
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    rep = clearance(
        svc.db(),
        site=svc.site_id,
        tz=tz,
        start=start,
        end=end,
        lanes=[x for x in q.get("lane", "").split(",") if x],
        kinds=[x for x in q.get("kind", "").split(",") if x],
    )
    out = rep.as_dict()
    out["site_name"] = svc.live.site_name
    return _json(out)


async def _sign_in_audit(app: web.Application) -> AsyncIterator[None]:
    """Writes the sign-in failures' aggregated summaries on a tick, and all of them at shutdown."""
    throttle = app[THROTTLE]

    async def tick() -> None:
        while True:
            await asyncio.sleep(SIGN_IN_FLUSH_S)
            throttle.flush()

    task = asyncio.create_task(tick(), name="console:sign-in-audit")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        throttle.flush(force=True)


def make_app(svc: Console, *, throttle: LoginThrottle | None = None) -> web.Application:
    """The application; ``throttle`` replaces the sign-in throttle (tests with shorter delays)."""
    app = web.Application(middlewares=[_security], client_max_size=64 * 1024)
    app[SERVICE] = svc
    app[SESSIONS] = Sessions()
    app[THROTTLE] = throttle or LoginThrottle(audit=svc.audit)
    app.cleanup_ctx.append(_sign_in_audit)
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_get("/report", report_page)
    app.router.add_get("/wall", wall_page)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/me", me)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/overview", overview)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/alarms", alarms)
    app.router.add_post(r"/api/alarms/{id:\d+}/ack", ack)
    app.router.add_get("/api/passages", passages)
    app.router.add_get("/api/passages/{id}", passage)
    app.router.add_get("/api/clearance", clearance_api)
    return app


async def start_web(
    svc: Console, host: str, port: int, *, throttle: LoginThrottle | None = None
) -> tuple[web.AppRunner, str]:
    """Serve on ``host:port`` (port 0: a free one); returns the runner and the base URL."""
    runner = web.AppRunner(make_app(svc, throttle=throttle), access_log=None, shutdown_timeout=HTTP_SHUTDOWN_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:  # the port is taken, or the address is not this host's
        await runner.cleanup()
        from portlane.edge.errors import UsageError

        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UsageError(f"cannot serve the console on {host}:{port}: {reason}; choose another HOST:PORT") from exc
    addrs = [a for a in runner.addresses if isinstance(a, tuple)]
    real_port = int(addrs[0][1]) if addrs else port
    shown = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown}:{real_port}"
