"""Device drivers: one interface per device kind, backends per protocol.

Exception tree (``drivers.errors``)::

    DeviceError
    ├── DeviceUnavailableError      link down, port vanished, connection refused
    ├── DeviceTimeoutError          no answer in time (also a TimeoutError)
    ├── DeviceProtocolError         bad frame, CRC/checksum error, Modbus exception response
    └── DeviceFaultError            the device answered and reports a fault (structured code)

Drivers never import ``portlane.edge`` or ``portlane.sim_devices``.
"""
