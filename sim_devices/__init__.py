"""Wire-level device simulators, the physical lane model and the traffic generator.

(The central-platform simulator is no device: it verifies what it reads through the consumer
library, so it lives in ``portlane.edge.platform``.)

Simulators speak the same bytes as real devices on a pty or a TCP port. They never import
``portlane.edge`` and never reuse a driver's codec for their side of the wire, so a bug in a
driver cannot be mirrored by the simulator it is tested against.

Serial devices sit on a ``line.SerialLine`` (one pty; any number of slaves of any protocol,
framed by silence as real slaves do); Modbus devices are served by the simulators' own
engine (``modbus_slave``) over TCP or on a line; ``faults.FaultInjector`` is the one
fault-injection surface; ``evidence`` counts the edges real devices latch.
"""
