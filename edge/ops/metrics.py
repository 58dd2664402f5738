"""Prometheus metrics of one daemon, on its own registry, served on loopback.

The daemon calls :class:`DaemonMetrics` methods and never touches prometheus_client. Each
daemon has its own ``CollectorRegistry`` (no process-global state, so tests and several
daemons in one interpreter do not collide) and serves it on ``127.0.0.1:<port>`` — a lane
controller's metrics are for the site's Prometheus through an SSH tunnel or a local agent,
not for the lane VLAN. Binding another address is an explicit choice (``host=``).

Metric families (all prefixed ``portlane_``; the ``lane`` label is the lane id, or ``""``
for daemons that are not about one lane):

============================================  =========  ===========================  =====
name                                          type       labels                       unit
============================================  =========  ===========================  =====
portlane_daemon_info                          gauge=1    daemon, site, version
portlane_passages_total                       counter    lane, outcome
portlane_stage_duration_seconds               histogram  lane, stage                  s
portlane_device_state                         gauge 0/1  lane, device, state
portlane_device_errors_total                  counter    lane, device, kind
portlane_outbox_depth                         gauge      lane                         events
portlane_outbox_oldest_age_seconds            gauge      lane                         s
portlane_outbox_dropped_total                 counter    lane                         events
portlane_command_rejections_total             counter    lane, reason
portlane_recognition_latency_seconds          histogram  kind                         s
portlane_recognition_confidence               histogram  kind                         0..1
portlane_broker_connected                     gauge 0/1
portlane_heartbeat_stalled                    gauge 0/1  check
============================================  =========  ===========================  =====

``device_state`` sets 1 on the current state and 0 on the others, so both
``portlane_device_state{state="offline"} == 1`` and ``sum by (state)`` work in alerts.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Iterable, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import start_http_server

__all__ = ["DEVICE_STATES", "DaemonMetrics", "MetricsServer"]

DEVICE_STATES = ("online", "degraded", "offline")

#: Stage durations span a barrier's 3 s to a decision's 120 s timeout and a 90 s scan.
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
#: Recognition: 300 ms (car) and 1 s (container truck) are the design targets (the steering
#: team's DESIGN.md, outside this repository; docs/recognition.md).
RECOGNITION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 1.0)


def _version() -> str:
    try:
        return importlib.metadata.version("portlane")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class MetricsServer:
    """The HTTP endpoint (``/metrics``) in a daemon thread; :meth:`close` is idempotent."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._closed = False
        host, port = httpd.server_address[:2]
        self.host = str(host)
        self.port = int(port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaemonMetrics:
    """All metrics of one daemon (``daemon`` = ``lane``, ``scanner``, ``recognition``).

    ``lane`` is the default for the lane label of the per-lane methods; the scanner daemon,
    which serves several lanes, passes ``lane=`` per call.
    """

    def __init__(self, daemon: str, *, site: str, lane: str | None = None) -> None:
        self.daemon = daemon
        self.lane = lane or ""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._info = Gauge(
            "portlane_daemon_info", "constant 1; labels identify the daemon", ["daemon", "site", "version"], registry=r
        )
        self._info.labels(daemon, site, _version()).set(1)
        self._passages = Counter("portlane_passages", "completed passages by outcome", ["lane", "outcome"], registry=r)
        self._stage = Histogram(
            "portlane_stage_duration_seconds",
            "duration of each passage stage (arrived→identified, …)",
            ["lane", "stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self._device_state = Gauge(
            "portlane_device_state", "1 for the device's current health state", ["lane", "device", "state"], registry=r
        )
        self._device_errors = Counter(
            "portlane_device_errors", "device errors by kind (timeout, …)", ["lane", "device", "kind"], registry=r
        )
        self._outbox_depth = Gauge(
            "portlane_outbox_depth", "events waiting in the durable outbox", ["lane"], registry=r
        )
        self._outbox_age = Gauge(
            "portlane_outbox_oldest_age_seconds", "age of the oldest undelivered event", ["lane"], registry=r
        )
        self._outbox_dropped = Counter("portlane_outbox_dropped", "events dropped (full, purged)", ["lane"], registry=r)
        self._rejections = Counter(
            "portlane_command_rejections", "platform commands rejected, by reason", ["lane", "reason"], registry=r
        )
        self._recog_latency = Histogram(
            "portlane_recognition_latency_seconds",
            "frames in → result out, per recognition kind",
            ["kind"],
            buckets=RECOGNITION_BUCKETS,
            registry=r,
        )
        self._recog_conf = Histogram(
            "portlane_recognition_confidence",
            "confidence of accepted reads",
            ["kind"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self._broker = Gauge("portlane_broker_connected", "1 while connected to the MQTT broker", registry=r)
        self._stalled = Gauge(
            "portlane_heartbeat_stalled", "1 while a liveness check is not advancing", ["check"], registry=r
        )
        self._dropped_seen: dict[str, float] = {}
        self._errors_seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def _lane(self, lane: str | None) -> str:
        return self.lane if lane is None else lane

    # -- passages
    def passage_completed(self, outcome: str, stages_ms: Mapping[str, float], *, lane: str | None = None) -> None:
        """A passage ended (``released``, ``diverted``, ``aborted``, …) with its stage durations
        in milliseconds, keyed by stage name (``identify``, ``decide``, ``scan``, ``exit``, …)."""
        ln = self._lane(lane)
        self._passages.labels(ln, outcome).inc()
        for stage, ms in stages_ms.items():
            if ms is not None and ms >= 0:
                self._stage.labels(ln, stage).observe(ms / 1000.0)

    # -- devices
    def device_state(self, lane: str | None, device: str, state: str) -> None:
        """Current health of a device: ``online``, ``degraded`` or ``offline``."""
        if state not in DEVICE_STATES:
            raise ValueError(f"unknown device state {state!r}; one of {DEVICE_STATES}")
        ln = self._lane(lane)
        for s in DEVICE_STATES:
            self._device_state.labels(ln, device, s).set(1 if s == state else 0)

    def device_errors(self, lane: str | None, device: str, totals: Mapping[str, int]) -> None:
        """A device's running error totals by kind (``timeout``, ``protocol``, ``fault``,
        ``unavailable`` — the driver's own counters; ``ok`` is not an error): the increase
        since the last call is exported."""
        ln = self._lane(lane)
        with self._lock:
            for kind, total in totals.items():
                if kind == "ok":
                    continue
                key = f"{ln}/{device}/{kind}"
                seen = self._errors_seen.get(key, 0)
                delta = total - seen if total >= seen else total
                self._errors_seen[key] = total
                if delta > 0:
                    self._device_errors.labels(ln, device, kind).inc(delta)

    # -- outbox and commands
    def outbox(self, depth: int, oldest_age_s: float, dropped: int, *, lane: str | None = None) -> None:
        """Outbox state: ``dropped`` is the outbox's own running total (we export the increase;
        a smaller value than last time means the outbox restarted its count)."""
        ln = self._lane(lane)
        self._outbox_depth.labels(ln).set(depth)
        self._outbox_age.labels(ln).set(oldest_age_s)
        with self._lock:
            seen = self._dropped_seen.get(ln, 0)
            delta = dropped - seen if dropped >= seen else dropped
            self._dropped_seen[ln] = dropped
        if delta > 0:
            self._outbox_dropped.labels(ln).inc(delta)
        else:
            self._outbox_dropped.labels(ln)  # make the series exist at 0

    def command_rejected(self, reason: str, *, lane: str | None = None) -> None:
        """A command refused: ``unsigned``, ``bad_signature``, ``expired``, ``replayed``,
        ``unknown_key``, ``invalid``, ``state`` (not allowed in the passage's stage), …"""
        self._rejections.labels(self._lane(lane), reason).inc()

    # -- recognition
    def recognition(self, kind: str, latency_s: float, confidence: float | None = None) -> None:
        """One recognition (``plate``, ``container``): latency, and confidence of the read."""
        self._recog_latency.labels(kind).observe(latency_s)
        if confidence is not None:
            self._recog_conf.labels(kind).observe(confidence)

    # -- daemon health
    def broker_connected(self, connected: bool) -> None:
        self._broker.set(1 if connected else 0)

    def heartbeats_stalled(self, all_checks: Iterable[str], stalled: Iterable[str]) -> None:
        bad = set(stalled)
        for name in all_checks:
            self._stalled.labels(name).set(1 if name in bad else 0)

    # -- exposition
    def render(self) -> bytes:
        """The text exposition format (what ``/metrics`` serves), for tests and ``diag bundle``."""
        return generate_latest(self.registry)

    def serve(self, port: int, *, host: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` (port 0 picks a free one) in a daemon thread."""
        httpd, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(httpd, thread)
