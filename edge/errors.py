"""Every exception ``portlane.edge`` raises, and the exit codes of its commands and daemons.

One module, as httpx's ``_exceptions.py``: the tree is drawn here once, and every layer
imports its exceptions from here. ``drivers`` and ``models`` keep their own trees
(``portlane.drivers.errors``, ``portlane.models``): they know nothing of the lane.

Exception tree::

    PortlaneError                       exit_code 1 unless a subclass says otherwise
    ├── UsageError                      bad invocation or input (2)
    ├── ConfigError                     a configuration file is wrong: file, key path, reason (2;
    │                                   a daemon exits EXIT_CONFIG on it)
    ├── UnreachableError                a daemon, broker or device does not answer (3)
    │   ├── DaemonUnreachableError      nothing answers at a control socket (also a ControlError)
    │   └── BrokerUnreachableError      the MQTT broker cannot be reached
    ├── StateError                      a state file is corrupt, truncated, read-only or on a full
    │   │                               disk: one line (file, problem, remedy) (4)
    │   ├── OutboxStateError            the outbox's store (also an OutboxError)
    │   └── NonceStoreError             the nonce store
    ├── ContractError                   a message does not match the MQTT contract
    │   └── CanonicalJSONError          a value has no RFC 8785 form (also a ValueError)
    ├── DeliveryError                   the broker link (both also ConnectionError)
    │   ├── NotConnectedError           not connected now
    │   └── PublishRefusedError         the broker refused a publish (MQTT 5 reason code)
    ├── OutboxError                     the durable outbox cannot accept an event
    │   ├── OutboxFullError             full under ``reject_new`` (counted; the caller audits it)
    │   ├── OutboxStateError            (see StateError)
    │   └── ReplayArgsError             bad replay range (also a ValueError)
    ├── TrustError                      a signature or authority check failed; ``reason`` is the
    │   │                               word a receiver counts
    │   ├── UnknownKeyError             unknown_key
    │   ├── NotAuthorisedError          not_authorised
    │   ├── UnsignedEventError          unsigned
    │   ├── MalformedEventError         malformed
    │   ├── BadSignatureError           bad_signature
    │   └── TopicMismatchError          topic_mismatch: a verified event on another unit's, type's
    │                                   or lane's topic
    ├── CommandRejectedError            a signed command failed verification or validation;
    │                                   ``reason`` (the wire's ``RejectReason``) goes in the answer
    │                                   (the *event* a unit publishes about it is the contract's
    │                                   ``CommandRejected``)
    ├── CredentialError                 a key or credential file is missing or wrong
    ├── PkiError                        the site PKI directory cannot be used
    ├── AuditError                      the audit log cannot be appended to
    ├── AuditLineError                  one line of the audit log does not parse or verify
    │                                   (``problem``; also a ValueError)
    ├── OperatorError                   an audited action without operator or reason (also a
    │                                   ValueError)
    ├── CheckpointError                 an audit checkpoint does not parse or verify
    ├── ControlError                    the control socket cannot be created or answers badly
    │   └── DaemonUnreachableError      (see UnreachableError)
    ├── ClientError                     the consumer library (``portlane.edge.client``)
    │   ├── NoSignerError               it has no key to sign commands with
    │   ├── CommandTimeoutError         no answer after every attempt (also a TimeoutError)
    │   └── ClientStateError            used before start, after close, or started twice (also a
    │                                   RuntimeError)
    ├── MissingExtraError               an optional package (an extra of the distribution) is not
    │                                   installed: names it and the ``pip install`` that adds it
    ├── DemoError                       ``portlane demo`` cannot run
    └── ConsoleError                    the site console
        ├── UsersFileError              its users file
        └── ConsoleStoreError           its database

Exit codes (every ``portlane`` command and daemon; docs/operations.md lists them for
technicians):

====  ====================  =====================================================================
code  name                  meaning
====  ====================  =====================================================================
0     EXIT_OK               done
1     EXIT_FAILED           ran, and what was checked failed (a device, a diff, a selftest)
2     EXIT_USAGE            bad invocation, bad input or configuration file
3     EXIT_UNREACHABLE      a daemon, the broker or a device did not answer
4     EXIT_STATE            a state file or directory cannot be used: a person must act
                            (systemd units list it in ``RestartPreventExitStatus=``)
75    EXIT_RESTART          EX_TEMPFAIL: a daemon stopped to take a new site file; start it again
78    EXIT_CONFIG           EX_CONFIG: a daemon's site file is invalid (no restart loop)
130   EXIT_INTERRUPTED      stopped by SIGINT (Ctrl-C)
143   EXIT_TERMINATED       stopped by SIGTERM
====  ====================  =====================================================================
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RESTART",
    "EXIT_STATE",
    "EXIT_TERMINATED",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "AuditError",
    "AuditLineError",
    "BadSignatureError",
    "BrokerUnreachableError",
    "CanonicalJSONError",
    "CheckpointError",
    "ClientError",
    "ClientStateError",
    "CommandRejectedError",
    "CommandTimeoutError",
    "ConfigError",
    "ConsoleError",
    "ConsoleStoreError",
    "ContractError",
    "ControlError",
    "CredentialError",
    "DaemonUnreachableError",
    "DeliveryError",
    "DemoError",
    "MalformedEventError",
    "MissingExtraError",
    "NoSignerError",
    "NonceStoreError",
    "NotAuthorisedError",
    "NotConnectedError",
    "OperatorError",
    "OutboxError",
    "OutboxFullError",
    "OutboxStateError",
    "PkiError",
    "PortlaneError",
    "PublishRefusedError",
    "ReplayArgsError",
    "StateError",
    "TopicMismatchError",
    "TrustError",
    "UnknownKeyError",
    "UnreachableError",
    "UnsignedEventError",
    "UsageError",
    "UsersFileError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_STATE = 4
EXIT_RESTART = 75
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class PortlaneError(Exception):
    """Base of every exception ``portlane.edge`` raises on purpose. ``str(exc)`` is meant for the
    user as it is (one line where a user can cause it); ``exit_code`` is what a command exits with."""

    exit_code = EXIT_FAILED


class UsageError(PortlaneError):
    """Bad invocation or input."""

    exit_code = EXIT_USAGE


class ConfigError(PortlaneError):
    """A configuration file is invalid. ``problems`` lists (key path, reason) pairs."""

    exit_code = EXIT_USAGE

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        lines = [f"{file}: {path or '<root>'}: {reason}" for path, reason in problems]
        super().__init__("\n".join(lines))


class UnreachableError(PortlaneError):
    """A daemon, the broker or a device does not answer."""

    exit_code = EXIT_UNREACHABLE


class BrokerUnreachableError(UnreachableError):
    pass


class ControlError(PortlaneError):
    """The control socket cannot be created, or an answer is malformed."""


class DaemonUnreachableError(ControlError, UnreachableError):
    """No daemon answers at the socket path (not running, or no permission)."""


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


class NonceStoreError(StateError):
    """The nonce store cannot be used (corrupt file, unreadable). Raised when it is opened."""


class ContractError(PortlaneError):
    pass


class CanonicalJSONError(ContractError, ValueError):
    """The value has no canonical JSON form (float where none is allowed, NaN, huge int, ...)."""


class DeliveryError(PortlaneError, ConnectionError):
    """The broker link: callers that only care that nothing was delivered catch ``ConnectionError``."""


class NotConnectedError(DeliveryError):
    pass


class PublishRefusedError(DeliveryError):
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


class OutboxStateError(StateError, OutboxError):
    """The outbox's store cannot be used (at open, or when a write fails: e.g. the disk filled).
    Both a ``StateError`` (daemons exit with ``EXIT_STATE`` at start-up) and an ``OutboxError``
    (a lane that cannot record events takes itself out of service)."""


class ReplayArgsError(OutboxError, ValueError):
    """The command's arguments are not ``{"from_seq": int >= 1, "to_seq": int >= from_seq | null}``."""

    exit_code = EXIT_USAGE


class TrustError(PortlaneError):
    """A signature or an authority check failed. ``reason`` is the rejection reason a receiver
    reports (``unknown_key``, ``not_authorised``, ...); ``key_id`` what the message claimed."""

    reason = "rejected"

    def __init__(self, detail: str, *, key_id: str | None = None) -> None:
        self.detail = detail
        self.key_id = key_id
        super().__init__(f"{self.reason}: {detail}")


class UnknownKeyError(TrustError):
    reason = "unknown_key"


class NotAuthorisedError(TrustError):
    reason = "not_authorised"


class UnsignedEventError(TrustError):
    reason = "unsigned"


class MalformedEventError(TrustError):
    reason = "malformed"


class BadSignatureError(TrustError):
    reason = "bad_signature"


class TopicMismatchError(TrustError):
    """A verified event that came in on another unit's, type's or lane's topic."""

    reason = "topic_mismatch"


class CommandRejectedError(PortlaneError):
    """A command failed verification or validation. ``reason`` is a
    :class:`~portlane.edge.contract.commands.RejectReason` (a ``str``); ``detail`` is for humans;
    ``fields`` holds what could be read of the command (``cmd``, ``key_id``, ``nonce``,
    ``passage_id``, ``site``, ``lane``) — *unauthenticated* unless the reason comes after
    ``bad_signature`` in the check order — for the response and the audit entry."""

    def __init__(self, reason: str, detail: str, fields: dict[str, Any] | None = None) -> None:
        self.reason = reason  # the RejectReason member itself when given one (a str)
        self.detail = detail
        self.fields: dict[str, Any] = dict(fields or {})
        super().__init__(f"{self.reason}: {detail}")

    def _str_field(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if isinstance(value, str) else None

    @property
    def nonce(self) -> str | None:
        """The command's nonce as it could be read (unauthenticated before the signature check)."""
        return self._str_field("nonce")

    @property
    def key_id(self) -> str | None:
        """The key id the command claimed (unauthenticated before the signature check)."""
        return self._str_field("key_id")

    def as_dict(self) -> dict[str, Any]:
        """Body for the response topic / audit ``data``."""
        return {"ok": False, "reason": self.reason, "detail": self.detail, **self.fields}


class CredentialError(PortlaneError):
    """A credential file is missing, unreadable or not what it should be. The message names
    the file, what is wrong and what to do."""

    exit_code = EXIT_USAGE


class PkiError(PortlaneError):
    """The PKI directory cannot be created or used (exists, CA missing, name too long)."""

    exit_code = EXIT_USAGE


class AuditError(PortlaneError):
    """The audit log cannot be appended to (unreadable head entry, I/O error, entry too big)."""


class AuditLineError(PortlaneError, ValueError):
    """One line of an audit log is not an entry of the chain: ``problem`` is the
    ``trust.audit_chain.AuditProblem`` (a ``str``) a verification reports."""

    def __init__(self, problem: str, detail: str) -> None:
        self.problem = problem
        self.detail = detail
        super().__init__(f"{problem}: {detail}")


class OperatorError(PortlaneError, ValueError):
    """An override or correction without a usable operator identity or reason."""

    exit_code = EXIT_USAGE


class CheckpointError(PortlaneError):
    """A checkpoint does not parse, or its signature or signer is not trusted."""


class ClientError(PortlaneError):
    """The consumer library (``portlane.edge.client``) cannot do what was asked."""


class NoSignerError(ClientError):
    """The client cannot sign commands: give it a key (``clients[].key`` in the site file)."""


class CommandTimeoutError(ClientError, TimeoutError):
    """A command got no answer after every attempt."""


class ClientStateError(ClientError, RuntimeError):
    """A client used before it was started, after it was closed, or started twice."""


#: Top-level module → the extra of ``pyproject.toml`` that installs it (a lane controller has
#: the core dependencies only; tests/project/test_packaging.py keeps this in step with the file).
EXTRAS = {
    "numpy": "ocr",
    "cv2": "ocr",
    "onnxruntime": "ocr",
    "pyclipper": "ocr",
    "amqtt": "demo",
    "aiomqtt": "demo",
    "PIL": "demo",
    "aiohttp": "console",
}


class MissingExtraError(PortlaneError):
    """An optional package is not installed. ``str(exc)`` names it and the extra to install."""

    def __init__(self, module: str, extra: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"needs the package {module!r}, which is not installed here; "
            f"install it with: pip install 'portlane[{extra}]'"
        )

    @classmethod
    def of(cls, exc: ImportError) -> MissingExtraError | None:
        """The error for an ``ImportError`` of an optional package; None for any other module."""
        top = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(top)
        return cls(top, extra) if extra is not None else None


class DemoError(PortlaneError):
    """The demo cannot run. ``str(exc)`` is one line; ``exit_code`` what the CLI exits with."""


class ConsoleError(PortlaneError):
    pass


class UsersFileError(ConsoleError):
    """The users file cannot be read or is invalid; the message names the file and the entry."""

    exit_code = EXIT_USAGE


class ConsoleStoreError(ConsoleError):
    pass
