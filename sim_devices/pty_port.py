"""A simulated serial port on a pseudo-terminal.

The simulator owns the pty master; a driver opens the slave like a real port. The stable
path handed to drivers is a *symlink* in a temp directory (the role ``/dev/serial/by-id/…``
plays for a real USB adapter). Pulling the adapter out (``unplug``) closes the pty and
removes the symlink: the driver's reads fail with EIO and a reopen finds no file, exactly
as when a USB-RS485 dongle disappears. ``replug`` serves a fresh pty behind the same
symlink, so a driver that reconnects by path finds its device again.

Notes on ptys as serial ports:

* ``tty.setraw`` on the slave is required, otherwise the line discipline echoes and
  rewrites CR/LF;
* ptys do not emulate the baud rate: bytes arrive at once, so protocol timing (inter-frame
  gaps) must be modelled by whoever cares;
* the simulator keeps its own slave fd open, so the master never sees a hang-up when the
  driver closes the port (otherwise ``add_reader`` on the master would spin on EIO);
* bytes written while nobody reads pile up in the kernel buffer (4 KiB); when it is full
  further writes are dropped and counted, as on a real line nobody listens to.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pty
import tempfile
import tty
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from .faults import FaultInjector

__all__ = ["PtyPort", "SerialSimHandle"]

log = logging.getLogger(__name__)

#: Largest chunk read from the master per readiness callback.
_READ_CHUNK = 4096


class PtyPort:
    """One simulated serial port. ``on_data(bytes)`` is called with what the driver writes."""

    def __init__(
        self,
        on_data: Callable[[bytes], None],
        *,
        name: str = "ttySIM",
        directory: str | os.PathLike[str] | None = None,
        faults: FaultInjector | None = None,
    ) -> None:
        self._on_data = on_data
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="portlane-pty-")
            directory = self._own_dir.name
        self.path = str(Path(directory) / name)
        self._master: int | None = None
        self._slave: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.counters = {"rx_bytes": 0, "tx_bytes": 0, "tx_dropped": 0, "plugs": 0}
        self._closed = False
        if faults is not None:
            faults.on_plug(self._plug_hook)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> PtyPort:
        self._loop = asyncio.get_running_loop()
        self._open()
        return self

    def _open(self) -> None:
        assert self._loop is not None
        master, slave = pty.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        target = os.ttyname(slave)
        tmp = self.path + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, self.path)  # atomic: the stable path never points nowhere while plugged
        self._loop.add_reader(master, self._readable)
        self.counters["plugs"] += 1
        log.debug("pty %s -> %s", self.path, target)

    def _shut(self) -> None:
        if self._master is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def unplug(self) -> None:
        """The adapter is pulled out: the path vanishes, open handles get EIO."""
        self._shut()

    def replug(self) -> None:
        if not self._closed and self._master is None:
            self._open()

    def _plug_hook(self, plugged: bool) -> None:
        if plugged:
            self.replug()
        else:
            self.unplug()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._shut()
        if self._own_dir is not None:
            self._own_dir.cleanup()

    # ------------------------------------------------------------------ data
    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open at all: cannot happen while we hold one
                return
            raise
        if data:
            self.counters["rx_bytes"] += len(data)
            self._on_data(data)

    def write(self, data: bytes) -> None:
        """Send bytes towards the driver; silently lost while unplugged or when nobody reads."""
        if self._master is None:
            self.counters["tx_dropped"] += len(data)
            return
        try:
            n = os.write(self._master, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            n = 0
        self.counters["tx_bytes"] += n
        if n < len(data):
            self.counters["tx_dropped"] += len(data) - n


# --------------------------------------------------------------------------- simulator handle


class SerialSimHandle:
    """A running serial simulator: ``link`` (a site-config link dict), ``faults``, ``close()``.

    Owns its tasks; owns its pty unless it is one of several devices on a shared RS-485
    line (``line``): then closing it detaches its slaves, and the last handle on the line
    closes the line. ``close()`` is idempotent. Starts the lane world's physics when nobody
    runs them yet (``own_world_physics``) and stops them again on close.
    """

    def __init__(
        self,
        port: PtyPort,
        faults: FaultInjector,
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        sim: object = None,
        line: Any = None,
        slaves: tuple[Any, ...] = (),
    ) -> None:
        self.port = port
        self.faults = faults
        self.sim = sim
        self.line = line
        self._slaves = slaves
        if line is not None:
            line.users += 1
        # A pty carries bytes, not bits: line settings are not emulated, and some kernels
        # refuse 7-bit or parity termios on a pty. So the link always says 8N1 (overriding
        # a site's 7E1 when a simulator stands in); the device's own settings are kept in
        # ``line_settings`` for display.
        self.link: dict[str, object] = {
            "kind": "serial",
            "url": port.path,
            "baudrate": baudrate,
            "bytesize": 8,
            "parity": "N",
            "stopbits": 1,
        }
        self.line_settings = f"{baudrate} {bytesize}{parity}1"
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def path(self) -> str:
        return self.port.path

    def add_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    def own_world_physics(self, world: Any) -> None:
        if world._task is None or world._task.done():
            world._task = self.add_task(world.run(), name=f"lane-world-{world.lane_id}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
        if self.line is None:
            await self.port.close()
            return
        for slave in self._slaves:
            self.line.detach(slave)
            if callable(stop := getattr(slave, "close", None)):
                stop()
        self.line.users -= 1
        if self.line.users <= 0:
            await self.line.close()

    async def __aenter__(self) -> SerialSimHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
