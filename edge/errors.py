"""The ``edge`` exception tree (drawn in the package docstring)."""

from __future__ import annotations

__all__ = ["ConfigError", "ContractError", "OutboxError", "PortlaneError", "StateError"]


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


class StateError(PortlaneError):
    """A state file (outbox, journal, audit log, nonce store) cannot be used: corrupt,
    truncated, read-only or on a full disk. The message says which file, what is wrong and
    what to do, on one line."""

    def __init__(self, file: str, problem: str, remedy: str) -> None:
        self.file = file
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{file}: {problem}; {remedy}")
