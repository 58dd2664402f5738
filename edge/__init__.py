"""The lane application: domain, passage state machine, MQTT contract, durable outbox,
daemons (lane, scanner, recognition worker), runtime and the maintenance CLI.

Exception tree::

    PortlaneError
    ├── ConfigError              a configuration file is wrong (file, key path, reason)
    ├── ContractError            a message does not match the MQTT contract
    ├── OutboxError              the durable outbox cannot accept an event
    └── StateError               a state file is corrupt, truncated, read-only or full
"""

__version__ = "0.1.0"
