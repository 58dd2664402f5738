"""The ``edge`` exception tree (drawn in the package docstring)."""

from __future__ import annotations

__all__ = ["ConfigError", "ContractError", "OutboxError", "PortlaneError"]


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
