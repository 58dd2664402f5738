"""Closing a console tab ends its live stream quietly (issue 24: each closed tab left a 25-line
aiohttp traceback at error level in the console's log)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from console_helpers import site
from portlane.edge.console.auth import User, hash_password
from portlane.edge.console.service import ConsoleService
from portlane.edge.demo.broker import BrokerProcess

#: How long the server side may take to notice the closed tab once it writes to it.
WAIT_S = 10.0


async def test_a_closed_tab_ends_its_stream_without_an_error_in_the_log(
    broker: BrokerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    users = {"li": User(name="li", role="supervisor", password=hash_password("pw-for-tests"))}
    svc = ConsoleService(site=site(), db=tmp_path / "c.db", broker_url=broker.url, http=("127.0.0.1", 0), users=users)
    hdr = {"X-Portlane": "1"}
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    async with svc:
        assert svc.url is not None
        runner = svc._runner
        async with aiohttp.ClientSession(svc.url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.post("/api/login", json={"name": "li", "password": "pw-for-tests"}, headers=hdr) as r:
                assert r.status == 200
            r = await http.get("/api/stream")
            assert (await r.content.readuntil(b"\n\n")).startswith(b"event: overview\n")
            r.close()  # the tab is closed: the connection goes away under the open stream
        # The next change (what a stored event does) makes the stream write into the closed connection.
        svc.notify_changed()
        # Until the handler has ended and aiohttp dropped the connection: aiohttp offers no event
        # for that, so its list of connections is polled (bounded by WAIT_S).
        async with asyncio.timeout(WAIT_S):
            while runner.server.connections:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    errors = [r for r in caplog.records if r.name.startswith("aiohttp") and r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
