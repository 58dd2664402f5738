"""Device drivers: one interface per device kind, backends per protocol.

Exception tree (``drivers.errors``)::

    DeviceError
    ├── DeviceUnavailableError      link down, port vanished, connection refused
    │    └── SlaveIsolatedError     circuit breaker open: skipped without using the bus
    ├── DeviceTimeoutError          no answer in time (also a TimeoutError)
    ├── DeviceProtocolError         bad frame, CRC/checksum error
    │    ├── FrameError             a frame a decoder rejected
    │    └── ModbusExceptionError   the slave answered with a Modbus exception (code, name)
    └── DeviceFaultError            the device answered and reports a fault (structured code)

Drivers never import ``portlane.edge`` or ``portlane.sim_devices``.
"""
