"""Signed ``replay_events`` requests: how the console asks a unit to re-send missing events.

Contract (TEAM.md): command ``replay_events`` with args ``{"from_seq": int, "to_seq": int |
null}``, signed like every command (``portlane.edge.trust.security``), sent to
``portlane/v1/{site}/{unit}/cmd/replay_events`` and answered on
``portlane/v1/{site}/{unit}/response`` with the command's nonce as correlation id. The unit
re-sends the retained events of that range with their original ids, which the console then
de-duplicates like any redelivery.

The console signs with its own key (a ``clients`` entry of role ``console`` in the site file,
or ``signing_key`` in the console configuration); the lanes must trust it for this command.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from portlane.edge.contract.topics import Topics
from portlane.edge.trust.security import (
    COMMAND_NAMES,
    CommandSigner,
    canonical_json,
    format_rfc3339,
    load_private_key,
    new_nonce,
)

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
        private_key_b64: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.site = site
        self._signer = CommandSigner(key_id, private_key_b64)  # checks the key id and the key
        self._key = load_private_key(private_key_b64)
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
        if REPLAY_COMMAND in COMMAND_NAMES:
            payload = self._signer.sign(fields).to_json_bytes()
        else:
            # The command set does not list replay_events yet: sign the same wire form by hand
            # (canonical JSON of every field but sig, Ed25519, standard base64).
            signed = {**fields, "key_id": self._signer.key_id}
            sig = base64.b64encode(self._key.sign(canonical_json(signed, allow_floats=False))).decode("ascii")
            payload = canonical_json({**signed, "sig": sig}, allow_floats=False)
        return ReplayRequest(
            unit, Topics(self.site, unit).cmd(REPLAY_COMMAND), payload, str(fields["nonce"]), from_seq, to_seq
        )
