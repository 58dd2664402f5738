"""The lane application: domain, passage state machine, MQTT contract, durable outbox,
daemons (lane, scanner, recognition worker), runtime and the maintenance CLI.

Every exception of ``portlane.edge``, and the exit-code table of its commands and daemons, are
in ``portlane.edge.errors`` (drawn there once).
"""

__version__ = "0.1.0"
