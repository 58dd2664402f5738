"""The reference central platform on the consumer library (issue 23): what ``portlane demo`` and
the benchmarks run as the platform, and what a platform team reads to learn the contract from the
platform's side. It believes only what the site's unit keys signed (``portlane.edge.client``) and
signs its commands with an agency key.

A layer beside ``console``: on ``client`` (and ``trust``, ``contract``); ``demo`` and ``cli``
start it. It used to be ``sim_devices/central.py``, which may not import ``edge`` (a device
simulator must not mirror the driver it tests): the platform is no device, and it must verify
what it reads — which is the library. What that rule protected for the platform, a second,
independent implementation of signing, the signing test vectors keep
(``docs/contract-vectors.json``).

Modules::

    central.py    CentralPlatform: registrations, decisions, verdicts on verified scans, desks' hooks
    forgeries.py  forged commands for demos of the trust layer (--inject-forged)
"""

from __future__ import annotations

from .central import PLATFORM, CentralPlatform, CentralStats, Command, Desk, LaneInfo

__all__ = ["PLATFORM", "CentralPlatform", "CentralStats", "Command", "Desk", "LaneInfo"]
