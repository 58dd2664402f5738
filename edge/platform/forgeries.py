"""Forged commands for demos of the trust layer (``portlane demo --inject-forged K``): every lane
must refuse them, and says so in a signed ``command.rejected`` the demo counts.

Five kinds, drawn at random: ``forged`` (a key the site does not trust, under the platform's key
id: ``bad_signature``), ``replayed`` (the very bytes of a command the platform sent before:
``replayed``), ``expired`` (signed ten minutes ago: ``expired``), ``other_lane`` (addressed to
another lane, published on this one's topic: ``wrong_lane``) and ``unsigned`` (``unsigned``).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable, Sequence

from portlane.edge.contract.topics import Topics
from portlane.edge.trust.commands import CommandSigner
from portlane.edge.trust.keys import generate_keypair

__all__ = ["FORGERY_KINDS", "Forger"]

FORGERY_KINDS = ("forged", "replayed", "expired", "other_lane", "unsigned")
#: How old an "expired" forgery's signature is: far past any validity the lanes accept.
EXPIRED_AGO_S = 600.0
#: Validity written into the forgeries (the genuine commands' own).
TTL_S = 60.0


class Forger:
    """Makes forged ``decision`` commands (a release by customs) for one site. ``genuine`` signs
    with the platform's real key; ``last_sent`` gives the newest genuine command's topic and bytes."""

    def __init__(
        self,
        site: str,
        *,
        genuine: CommandSigner,
        lanes: Sequence[str],
        last_sent: Callable[[], tuple[str, bytes] | None],
        clock: Callable[[], dt.datetime],
        rng: random.Random,
    ) -> None:
        self.site = site
        self.genuine = genuine
        self.rogue = CommandSigner(genuine.key_id, generate_keypair()[0])  # the trusted id, another key
        self.lanes = list(lanes)
        self.last_sent = last_sent
        self.clock = clock
        self.rng = rng

    def forge(self, lane: str, kind: str | None = None) -> tuple[str, bytes]:
        """One forgery aimed at ``lane`` as ``(topic, payload)``; ``kind`` at random if None."""
        kind = kind or self.rng.choice(FORGERY_KINDS)
        topic = Topics(self.site, lane).cmd("decision")
        now = self.clock()
        if kind == "replayed":
            sent = self.last_sent()
            if sent is not None:
                return sent
            kind = "forged"  # nothing sent yet: forge instead
        signer = self.rogue if kind == "forged" else self.genuine
        issued = now - dt.timedelta(seconds=EXPIRED_AGO_S) if kind == "expired" else now
        target = next((x for x in self.lanes if x != lane), "zz") if kind == "other_lane" else lane
        signed = signer.sign(
            {
                "cmd": "decision",
                "site": self.site,
                "lane": target,
                "passage_id": "stale" if kind == "expired" else None,
                "args": {"agency": "customs", "verdict": "release"},
                "issued_at": issued,
                "expires_at": issued + dt.timedelta(seconds=TTL_S),
            }
        )
        if kind == "unsigned":
            body = signed.model_dump(mode="json")
            body.pop("sig")
            return topic, json.dumps(body).encode()
        return topic, signed.to_json_bytes()
