"""MQTT brokers for demos and tests: the zero-config embedded one, and Mosquitto.

* ``EmbeddedBroker`` — amqtt, in-process, MQTT 3.1.1 only (it refuses MQTT 5; the daemons'
  ``protocol: auto`` falls back). No set-up; the default for ``portlane demo``.
* ``MosquittoBroker`` — a ``mosquitto`` child process on a loopback port with a generated
  config (anonymous, persistence off), MQTT 5. Used when the binary exists.
  ``MosquittoBroker(secure=PKI_DIR/broker)`` runs the *shipped* secure configuration instead
  (``firmware_config/broker/mosquitto.conf``: TLS, client certificates, the site's ACL,
  maximum packet size, ``user mosquitto``), pointed at a directory laid out by
  ``portlane pki init``; its URL is ``mqtts://localhost:PORT``. Started as root it drops to the
  ``mosquitto`` user, as on a site: it then reads a private copy of the broker directory owned
  by that user, and nothing else of ours.
* ``python -m portlane.edge.demo.broker --port N`` runs the embedded broker as its own process, so
  a test can kill and restart it like a real broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

__all__ = ["BROKER_USER", "Broker", "BrokerProcess", "EmbeddedBroker", "MosquittoBroker", "free_port", "wait_port"]

log = logging.getLogger(__name__)

#: The user the shipped configuration has Mosquitto drop to (``user mosquitto``); Debian's
#: package creates it.
BROKER_USER = "mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_port(host: str, port: int, *, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until something accepts TCP connections on host:port (TimeoutError after
    ``timeout`` s: a broker that has not started by then will not)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                _r, w = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
            return


class Broker(Protocol):
    url: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _amqtt_config(port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}", "max_connections": 0}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


class EmbeddedBroker:
    """amqtt in this process's event loop."""

    kind = "embedded"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._broker: Any = None

    async def start(self) -> None:
        from amqtt.broker import Broker as AmqttBroker

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._broker = AmqttBroker(_amqtt_config(self.port))
        await self._broker.start()
        await wait_port("127.0.0.1", self.port)

    async def stop(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        try:
            await broker.shutdown()
        except Exception as exc:  # stopped while it was still starting (amqtt refuses): it is gone with us
            log.debug("embedded broker: shutdown while %s (%s)", getattr(broker, "state", "?"), exc)


class BrokerProcess:
    """A broker in a child process (Mosquitto, or the embedded one) that can be killed and
    restarted on the same port."""

    def __init__(
        self, kind: str, port: int | None = None, *, persistence_dir: Path | None = None, secure: Path | None = None
    ) -> None:
        self.kind = kind
        self.persistence_dir = persistence_dir
        self.secure = secure
        self.port = port or free_port()
        self.url = f"mqtts://localhost:{self.port}" if secure else f"mqtt://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="portlane-broker-"))

    def _argv(self) -> list[str]:
        if self.kind == "mosquitto" and self.secure is not None:
            from portlane.edge.trust.pki import render_mosquitto_conf

            directory = self._for_broker_user(self.secure) if os.geteuid() == 0 else self.secure
            conf = self._dir / "mosquitto.conf"
            conf.write_text(
                render_mosquitto_conf(
                    directory=directory,
                    port=self.port,
                    bind="127.0.0.1",
                    persistence_dir=self.persistence_dir,
                    log_dest=f"file {self._dir / 'mosquitto.log'}",
                )
            )
            exe = shutil.which("mosquitto")
            assert exe is not None
            return [exe, "-c", str(conf)]
        if self.kind == "mosquitto":
            conf = self._dir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                "max_queued_messages 100000\nlog_dest stderr\nlog_type error\n"
                # As the shipped configuration: no Nagle delay on what the broker forwards.
                "set_tcp_nodelay true\n"
                + (
                    f"persistence true\npersistence_location {self.persistence_dir}/\n"
                    if self.persistence_dir
                    else "persistence false\n"
                )
            )
            if self.persistence_dir:
                self.persistence_dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                # Started as root, mosquitto drops to user 'mosquitto', which cannot write our
                # root-owned temporary persistence directory: sessions would silently not survive.
                with conf.open("a") as f:
                    f.write("user root\n")
            exe = shutil.which("mosquitto")
            assert exe is not None
            return [exe, "-c", str(conf)]
        return [sys.executable, "-m", "portlane.edge.demo.broker", "--port", str(self.port)]

    def _for_broker_user(self, source: Path) -> Path:
        """As root, Mosquitto drops to :data:`BROKER_USER` before it reads its files and writes
        its log: a copy of the broker directory owned by that user (``server.key`` 0600, the
        rest 0640, the directory 0750), and our run directory for its log."""
        try:
            user = pwd.getpwnam(BROKER_USER)
        except KeyError:
            raise RuntimeError(
                f"mosquitto drops to user {BROKER_USER!r}, which does not exist: install Debian's mosquitto "
                "package (it creates the user), or run as another user than root"
            ) from None
        dest = self._dir / "broker"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(mode=0o750)
        for f in sorted(source.iterdir()):
            if f.is_file():
                target = dest / f.name
                shutil.copyfile(f, target)
                os.chmod(target, 0o600 if f.suffix == ".key" else 0o640)
                os.chown(target, user.pw_uid, user.pw_gid)
        for d in (dest, self._dir, *([self.persistence_dir] if self.persistence_dir else [])):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, user.pw_uid, user.pw_gid)
        return dest

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    async def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        # A plain Popen (it returns at once): the handle must outlive any one event loop, since
        # tests and the chaos suite kill and restart the broker from wherever they are.
        self._proc = subprocess.Popen(  # noqa: ASYNC220
            self._argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            await wait_port("127.0.0.1", self.port)
        except TimeoutError:
            self._proc.kill()
            raise RuntimeError(f"{self.kind} broker did not start on port {self.port}") from None

    async def stop(self, *, graceful: bool = False) -> None:
        """Stop the broker: abruptly by default (a crash, as clients see it), or with SIGTERM
        (a restart: Mosquitto then saves its persistent sessions)."""
        if self._proc is not None:
            if graceful:
                self._proc.terminate()
            else:
                self._proc.kill()
            await asyncio.to_thread(self._proc.wait)
            self._proc = None

    async def close(self) -> None:
        await self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


class MosquittoBroker(BrokerProcess):
    def __init__(
        self, port: int | None = None, *, persistence_dir: Path | None = None, secure: Path | None = None
    ) -> None:
        super().__init__("mosquitto", port, persistence_dir=persistence_dir, secure=secure)

    @property
    def log(self) -> str:
        """The secure broker's log (connections, refusals), for test diagnostics."""
        p = self._dir / "mosquitto.log"
        return p.read_text(errors="replace") if p.exists() else ""

    @staticmethod
    def available() -> bool:
        return shutil.which("mosquitto") is not None


def _main() -> int:
    parser = argparse.ArgumentParser(description="run the embedded MQTT broker (amqtt)")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()

    async def serve() -> None:
        broker = EmbeddedBroker(args.port)
        await broker.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await broker.stop()

    logging.basicConfig(level=logging.ERROR)
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(_main())
