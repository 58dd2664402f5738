"""Shared fixtures: a real MQTT broker on a free loopback port.

Mosquitto when the binary is installed (CI installs it), otherwise the embedded amqtt
broker in a child process (``PORTLANE_TEST_BROKER=embedded`` forces the latter). Either can be
killed and restarted mid-test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from portlane.edge.demo.broker import BrokerProcess, MosquittoBroker


@pytest.fixture
async def broker() -> AsyncIterator[BrokerProcess]:
    # PORTLANE_TEST_BROKER=embedded runs the suite on the embedded broker even where
    # Mosquitto is installed.
    use_mosquitto = MosquittoBroker.available() and os.environ.get("PORTLANE_TEST_BROKER") != "embedded"
    b: BrokerProcess = MosquittoBroker() if use_mosquitto else BrokerProcess("embedded")
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def embedded_broker() -> AsyncIterator[BrokerProcess]:
    b = BrokerProcess("embedded")
    await b.start()
    try:
        yield b
    finally:
        await b.close()
