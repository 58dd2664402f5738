"""The ``edge`` exception tree (drawn in the package docstring)."""

from __future__ import annotations

__all__ = [
    "EXIT_STATE",
    "ConfigError",
    "ContractError",
    "OutboxError",
    "OutboxFullError",
    "OutboxStateError",
    "PortlaneError",
    "StateError",
]

#: Exit code of a command or daemon that stopped because a state file (outbox, audit log,
#: nonce store) or the state directory cannot be used. Restarting does not help: a person
#: must act (free space, fix permissions, move a damaged file aside), so systemd units list
#: it in ``RestartPreventExitStatus=``.
EXIT_STATE = 4


class PortlaneError(Exception):
    pass


class ConfigError(PortlaneError):
    """A configuration file is invalid. ``problems`` lists (key path, reason) pairs."""

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        lines = [f"{file}: {path or '<root>'}: {reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


class ContractError(PortlaneError):
    pass


class OutboxError(PortlaneError):
    pass


class OutboxFullError(OutboxError):
    """``put`` refused an event because the outbox holds ``capacity`` undelivered events and the
    overflow policy is ``reject_new``. The refusal is already counted (``refused``, persisted);
    the caller audits it (who was refused what, and what the lane did about it)."""

    def __init__(self, file: str, *, event_type: str, capacity: int, depth: int, refused: int, dropped: int) -> None:
        self.file = file
        self.event_type = event_type
        self.capacity = capacity
        self.depth = depth
        self.refused = refused
        self.dropped = dropped
        super().__init__(
            f"{file}: outbox full ({depth}/{capacity} undelivered events): refusing {event_type} "
            f"(refused so far {refused}, dropped {dropped}); deliver or purge events, or raise outbox.capacity"
        )


class StateError(PortlaneError):
    """A state file or the state directory cannot be used: corrupt, truncated, not a database,
    read-only, or on a full disk. ``str(exc)`` is one line: the file, what is wrong, what to do.
    Commands and daemons print it as it is and exit with ``EXIT_STATE``."""

    exit_code = EXIT_STATE

    def __init__(self, file: str, problem: str, remedy: str) -> None:
        self.file = file
        self.problem = " ".join(problem.split())  # one line, whatever the library said
        self.remedy = " ".join(remedy.split())
        super().__init__(f"{file}: {self.problem}; {self.remedy}")


class OutboxStateError(StateError, OutboxError):
    """The outbox's store cannot be used (at open, or when a write fails: e.g. the disk filled).
    Both a ``StateError`` (daemons exit with ``EXIT_STATE`` at start-up) and an ``OutboxError``
    (a lane that cannot record events takes itself out of service)."""
