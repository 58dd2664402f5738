"""Typed, frozen device configuration shared by drivers and the site configuration.

Links say *how* a device is reached; ``backend`` says *which protocol* speaks over it.
``backend: virtual`` with a ``virtual`` link selects the in-process fakes of
``drivers.virtual`` (unit tests of the lane, no wire).
Serial ports are named by stable path (``/dev/serial/by-id/...``) in production; tests and
simulators put a pty path or a pyserial URL there.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["CameraLink", "DeviceConfig", "Link", "SerialLink", "TcpLink", "VirtualLink"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SerialLink(_Frozen):
    kind: Literal["serial"] = "serial"
    url: str = Field(description="device path (prefer /dev/serial/by-id/...) or pyserial URL")
    baudrate: int = Field(9600, ge=300, le=921600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bus: str | None = Field(None, description="name of the RS-485 bus this port is (shared by several slaves)")


class TcpLink(_Frozen):
    kind: Literal["tcp"] = "tcp"
    host: str
    port: int = Field(502, ge=1, le=65535)


class CameraLink(_Frozen):
    kind: Literal["camera"] = "camera"
    source: str = Field(description="anything OpenCV opens: rtsp://, http:// MJPEG, file path, /dev/videoN")
    roi: tuple[int, int, int, int] | None = Field(
        None, description="x1, y1, x2, y2 (frame pixels) where plates or numbers appear; recognition reads only this"
    )

    @model_validator(mode="after")
    def _roi_is_a_box(self) -> CameraLink:
        if self.roi is not None:
            x1, y1, x2, y2 = self.roi
            if min(self.roi) < 0 or x2 <= x1 or y2 <= y1:
                raise ValueError(f"roi must be x1, y1, x2, y2 with x2 > x1 >= 0 and y2 > y1 >= 0, not {self.roi}")
        return self


class VirtualLink(_Frozen):
    """An in-process virtual device (``backend: virtual``, see ``drivers.virtual``)."""

    kind: Literal["virtual"] = "virtual"
    world: str = Field("default", description="the virtual world the device belongs to (one per lane, by name)")

    @property
    def url(self) -> str:
        """Where the device is, for status displays (as a serial link's ``url``)."""
        return f"virtual://{self.world}"


Link = Annotated[SerialLink | TcpLink | CameraLink | VirtualLink, Field(discriminator="kind")]


class DeviceConfig(_Frozen):
    backend: str = Field(description="protocol backend name, see drivers.registry")
    link: Link
    unit: int = Field(1, ge=0, le=255, description="Modbus unit id or RS-485 address")
    timeout_s: float = Field(0.5, gt=0, le=30, description="deadline of one transaction")
    poll_s: float = Field(0.1, gt=0, le=60, description="status polling period")
