"""Fixtures of the trust tests: a PKI for the shipped site (``portlane pki init``) and the
shipped secure Mosquitto configuration running on it (tests that use it need the binary)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from portlane.edge.config import load_site
from portlane.edge.demo.broker import MosquittoBroker
from portlane.edge.demo.options import DEFAULT_SITE
from portlane.edge.trust.pki import init_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki")
    init_pki(load_site(DEFAULT_SITE), out)
    return out


@pytest.fixture
async def secure(pki: Path) -> AsyncIterator[MosquittoBroker]:
    b = MosquittoBroker(secure=pki / "broker")
    await b.start()
    try:
        yield b
    finally:
        await b.close()
