"""The console's exceptions (tree in the package docstring)."""

from __future__ import annotations

from portlane.edge.errors import PortlaneError

__all__ = ["ConsoleError", "EventRejected", "StoreError", "UsersFileError"]


class ConsoleError(PortlaneError):
    pass


class UsersFileError(ConsoleError):
    """The users file cannot be read or is invalid; the message names the file and the entry."""


class EventRejected(ConsoleError):
    """An event was not accepted. ``reason`` is a short machine word (``malformed``,
    ``wrong_source``, ``unknown_key``, ``bad_signature``, ``not_authorised``, ``unsigned``,
    ``invalid_payload``); ``detail`` is for people."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class StoreError(ConsoleError):
    pass
