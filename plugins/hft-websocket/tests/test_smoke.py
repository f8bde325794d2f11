from __future__ import annotations

from typing import Any

import anyio
import pytest
from hft_websocket.client import Tick, connect


@pytest.mark.anyio
@pytest.mark.parametrize("encoding", ["json", "binary"])
async def test_ticks(server: Any, encoding: str) -> None:
    async with connect(server.ws_url, server.tokens["trader"], encoding=encoding) as client:
        reply = await client.subscribe(["NSE:INFY", "NSE:TCS"], mode="full")
        assert reply["mode"] == "full"
        ticks: list[Tick] = []
        with anyio.fail_after(10):
            async for event in client:
                print(event)
                if isinstance(event, Tick):
                    ticks.append(event)
                    if len(ticks) > 10:
                        break
        assert {t.instrument for t in ticks} == {"NSE:INFY", "NSE:TCS"}
