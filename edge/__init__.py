"""The lane application: domain, passage state machine, MQTT contract, durable outbox,
daemons (lane, scanner, recognition worker), runtime and the maintenance CLI.

Exception tree::

    PortlaneError
    ├── ConfigError              a configuration file is wrong (file, key path, reason)
    ├── ContractError            a message does not match the MQTT contract
    ├── OutboxError              the durable outbox cannot accept an event
    │   ├── OutboxFullError      full under ``reject_new`` (counted in ``refused``; the caller audits it)
    │   └── OutboxStateError     its store is unusable (also a StateError)
    └── StateError               a state file is corrupt, truncated, read-only or on a full disk
                                 (one-line message: file, problem, remedy; exit code EXIT_STATE = 4)
"""

__version__ = "0.1.0"
