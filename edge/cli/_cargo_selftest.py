"""``portlane selftest``'s checks of the cargo-lane devices (issue 21): the radiation portal and
the e-seal / e-lock reader. Read-only: the selftest never applies or removes an e-lock (that
takes customs' authorisation code)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["exercise"]


async def exercise(dev: Any, kind: str, period: float, *, settle_s: float) -> tuple[float, str]:
    """Returns (first round trip in ms, detail); raises on a failed check."""
    t0 = time.perf_counter()
    if kind == "rpm":
        st = await dev.status()
        latency = (time.perf_counter() - t0) * 1000
        # The portal sends its backgrounds about once a second: wait for a complete reading.
        async with asyncio.timeout(settle_s):
            while not st.gamma_background_cps:
                await asyncio.sleep(period)
                st = await dev.status()
        if not st.trustworthy:
            raise RuntimeError(f"portal reports {', '.join(sorted(st.faults)) or 'tamper'}")
        detail = f"gamma bg {sum(st.gamma_background_cps):.0f} cps, neutron bg {sum(st.neutron_background_cps):.1f} cps"
        return latency, detail + (f", {st.nsigma:g} sigma" if st.nsigma is not None else "")
    seals = await dev.read_seals()
    latency = (time.perf_counter() - t0) * 1000
    if not seals:
        return latency, "no seal in the field (link ok)"
    return latency, f"{len(seals)} seal(s): " + ", ".join(f"{s.seal_id} {s.state}" for s in seals)
