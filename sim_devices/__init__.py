"""Wire-level device simulators, the traffic generator and the central-platform simulator.

Simulators speak the same bytes as real devices on a pty or a TCP port. They never import
``portlane.edge`` and never reuse a driver's codec for their side of the wire, so a bug in a
driver cannot be mirrored by the simulator it is tested against.
"""
