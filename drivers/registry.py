"""Backend registry: (device kind, backend name) -> class, imported lazily.

A backend with a missing optional dependency fails when it is chosen, with a clear error,
never at import time of this module.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Device
from .config import DeviceConfig
from .errors import DeviceError

__all__ = ["BACKENDS", "UnknownBackendError", "create"]

BACKENDS: dict[tuple[str, str], str] = {
    ("gate", "rs485"): "portlane.drivers.gate_rs485:Rs485Gate",
    ("gate", "modbus_rtu"): "portlane.drivers.gate_modbus:ModbusGate",
    ("gate", "modbus_tcp"): "portlane.drivers.gate_modbus:ModbusGate",
    ("io", "modbus_tcp"): "portlane.drivers.io_modbus:ModbusIo",
    ("io", "modbus_rtu"): "portlane.drivers.io_modbus:ModbusIo",
    ("board", "serial"): "portlane.drivers.board_serial:SerialBoard",
    ("rfid", "serial"): "portlane.drivers.rfid_serial:SerialRfid",
    ("weighbridge", "serial"): "portlane.drivers.weighbridge_serial:SerialWeighbridge",
    ("camera", "opencv"): "portlane.drivers.camera_opencv:OpenCvCamera",
    ("scanner", "modbus_tcp"): "portlane.drivers.scanner_modbus:ModbusScanner",
    ("rpm", "rapiscan"): "portlane.drivers.rpm_rapiscan:RapiscanRpm",
    ("seal_reader", "serial"): "portlane.drivers.seal_serial:SerialSealReader",
    # In-process fakes for unit tests (python-can's "virtual" interface): drivers.virtual and,
    # for the cargo lane's release devices, drivers.virtual_cargo.
    ("gate", "virtual"): "portlane.drivers.virtual:VirtualGate",
    ("io", "virtual"): "portlane.drivers.virtual:VirtualIo",
    ("board", "virtual"): "portlane.drivers.virtual:VirtualBoard",
    ("rfid", "virtual"): "portlane.drivers.virtual:VirtualRfid",
    ("weighbridge", "virtual"): "portlane.drivers.virtual:VirtualWeighbridge",
    ("camera", "virtual"): "portlane.drivers.virtual:VirtualCamera",
    ("scanner", "virtual"): "portlane.drivers.virtual:VirtualScanner",
    ("rpm", "virtual"): "portlane.drivers.virtual_cargo:VirtualRpm",
    ("seal_reader", "virtual"): "portlane.drivers.virtual_cargo:VirtualSealReader",
}


#: Optional libraries a backend needs, and the package extra that installs them.
EXTRAS = {"cv2": "ocr", "numpy": "ocr"}


class UnknownBackendError(DeviceError, LookupError):
    pass


def create(kind: str, device_id: str, config: DeviceConfig, **kwargs: Any) -> Device:
    """Build the backend named by ``config.backend`` for a device of ``kind``."""
    try:
        target = BACKENDS[(kind, config.backend)]
    except KeyError:
        known = sorted(b for k, b in BACKENDS if k == kind)
        raise UnknownBackendError(
            f"no backend {config.backend!r} for a {kind}; known: {', '.join(known) or 'none'}",
            device=device_id,
        ) from None
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = EXTRAS.get(exc.name or "", "")
        raise UnknownBackendError(
            f"backend {config.backend!r} for a {kind} cannot be loaded: {exc}"
            + (f" (install it with: pip install 'portlane[{hint}]')" if hint else ""),
            device=device_id,
        ) from exc
    cls = getattr(module, cls_name)
    device: Device = cls(device_id, config, **kwargs)
    return device
