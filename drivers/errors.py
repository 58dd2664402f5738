"""One exception tree for every driver (see the package docstring).

Third-party exceptions (pyserial, pymodbus, OpenCV) are translated into these in exactly
one place per backend, always with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "DeviceError",
    "DeviceFaultError",
    "DeviceProtocolError",
    "DeviceTimeoutError",
    "DeviceUnavailableError",
]


class DeviceError(Exception):
    """Base of every driver error. ``device`` names the configured device id."""

    def __init__(self, message: str, *, device: str = "") -> None:
        super().__init__(message)
        self.device = device

    def __str__(self) -> str:
        base = super().__str__()
        return f"{self.device}: {base}" if self.device else base


class DeviceUnavailableError(DeviceError):
    """The link is down: port missing, connection refused, adapter unplugged."""


class DeviceTimeoutError(DeviceError, TimeoutError):
    """The device did not answer within its deadline."""


class DeviceProtocolError(DeviceError):
    """Bytes arrived but made no sense: truncated or garbled frame, bad CRC, exception response."""


class DeviceFaultError(DeviceError):
    """The device answered and reports a fault; ``code`` is the device's own fault code."""

    def __init__(self, message: str, *, device: str = "", code: int = 0) -> None:
        super().__init__(message, device=device)
        self.code = code
