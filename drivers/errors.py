"""One exception tree for every driver::

    DeviceError
    ├── DeviceUnavailableError      link down, port vanished, connection refused
    │    └── SlaveIsolatedError     (drivers.bus) circuit breaker open: skipped without using the bus
    ├── DeviceTimeoutError          no answer in time (also a TimeoutError)
    ├── DeviceProtocolError         bad frame, CRC/checksum error
    │    ├── FrameError             (drivers.serial_link) a frame a decoder rejected
    │    └── ModbusExceptionError   the slave answered with a Modbus exception (code, name)
    └── DeviceFaultError            the device answered and reports a fault (structured code)

Third-party exceptions (pyserial, pymodbus, OpenCV) are translated into these in exactly
one place per backend, always with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "MODBUS_EXCEPTION_NAMES",
    "DeviceError",
    "DeviceFaultError",
    "DeviceProtocolError",
    "DeviceTimeoutError",
    "DeviceUnavailableError",
    "ModbusExceptionError",
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


#: Standard Modbus exception codes (Modbus Application Protocol v1.1b3, §7).
MODBUS_EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusExceptionError(DeviceProtocolError):
    """The slave answered with a Modbus exception response.

    ``code`` is the exception code, ``name`` its name in the Modbus specification
    ("server device busy"), ``function_code`` the function that was refused. Lives here, not
    in ``drivers.modbus``, so that catching it never imports pymodbus (the virtual backend
    raises it too).
    """

    def __init__(self, message: str, *, device: str = "", code: int = 0, function_code: int = 0) -> None:
        super().__init__(message, device=device)
        self.code = code
        self.function_code = function_code

    @property
    def name(self) -> str:
        return MODBUS_EXCEPTION_NAMES.get(self.code, f"exception {self.code}")
