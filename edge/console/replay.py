"""Signed ``replay_events`` requests: how the console asks a unit to re-send missing events.

Contract (``ReplayEventsArgs`` in ``edge/contract/commands.py``; ``docs/asyncapi.yaml``):
command ``replay_events`` with args ``{"from_seq": int, "to_seq": int | null}``, signed like
every command (``portlane.edge.trust.commands``), sent to
``portlane/v1/{site}/{unit}/cmd/replay_events`` and answered on
``portlane/v1/{site}/{unit}/response`` with the command's nonce as correlation id. The unit
re-sends the retained events of that range with their original ids, which the console then
de-duplicates like any redelivery.

The console signs with its own key: the ``key`` of its ``clients`` entry (role ``console``,
``commands: [replay_events]``) in the site file, or ``signing_key`` in the console
configuration (then the lanes must trust that key for this command too).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from portlane.edge.contract.times import format_rfc3339
from portlane.edge.contract.topics import Topics
from portlane.edge.trust.commands import CommandSigner, new_nonce

__all__ = ["REPLAY_COMMAND", "ReplayRequest", "ReplayRequester"]

REPLAY_COMMAND = "replay_events"
#: Validity of a replay request: long enough for the broker to deliver it and for a few
#: seconds of clock skew, short enough that a captured request is soon worthless.
REPLAY_VALIDITY_S = 60.0


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    unit: str
    topic: str
    payload: bytes
    nonce: str
    from_seq: int
    to_seq: int | None


class ReplayRequester:
    def __init__(
        self,
        *,
        site: str,
        key_id: str,
        private_key: Ed25519PrivateKey | str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """``private_key``: the key, or its 32-byte seed in standard base64."""
        if isinstance(private_key, Ed25519PrivateKey):
            seed = private_key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            private_key = base64.b64encode(seed).decode("ascii")
        self.site = site
        self._signer = CommandSigner(key_id, private_key)  # checks the key id and the key
        self._clock = clock

    @property
    def key_id(self) -> str:
        return self._signer.key_id

    @property
    def public_key_b64(self) -> str:
        return self._signer.public_key_b64

    def request(self, unit: str, from_seq: int, to_seq: int | None) -> ReplayRequest:
        now = self._clock()
        fields = {
            "v": 1,
            "cmd": REPLAY_COMMAND,
            "site": self.site,
            "lane": unit,
            "passage_id": None,
            "args": {"from_seq": from_seq, "to_seq": to_seq},
            "issued_at": format_rfc3339(now),
            "expires_at": format_rfc3339(now + dt.timedelta(seconds=REPLAY_VALIDITY_S)),
            "nonce": new_nonce(),
        }
        payload = self._signer.sign(fields).to_json_bytes()
        return ReplayRequest(
            unit, Topics(self.site, unit).cmd(REPLAY_COMMAND), payload, str(fields["nonce"]), from_seq, to_seq
        )
