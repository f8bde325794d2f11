"""Bars on an in-process host: a subscriber of the instrument receives each as a ``bar`` message,
in either encoding, and a connection that subscribes later gets the latest one."""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import hft_websocket.plugin
import pytest
from hft_websocket.client import Bar as ClientBar
from hft_websocket.client import Client, connect

import hft.testing._plugin
from hft.model import Bar, Environment, Role, StreamMode, Tick
from hft.testing import make_host

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "brokers": {"venue": {"plugin": "test", "instant": True}},
    "accounts": {"acc": {"broker": "venue", "environment": "sim"}},
    "transports": {"websocket": {"port": 0}},
    "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
}
PLUGINS = {"test": hft.testing._plugin, "websocket": hft_websocket.plugin}


async def next_bar(client: Client) -> ClientBar:
    with anyio.fail_after(10):
        async for event in client:
            if isinstance(event, ClientBar):
                return event
    raise AssertionError("the connection ended before a bar")


@pytest.mark.parametrize("encoding", ["json", "binary"])
async def test_a_subscriber_receives_bars_as_bar_messages(encoding: str) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        host = make_host(PLUGINS, CONFIG, data_dir=Path(data_dir))
        async with host.running() as services:
            await services.auth.add_user(
                "v", "a long password", role=Role.VIEWER, kind=Environment.SIM
            )
            token = (await services.auth.login("v", "a long password")).access_token
            url = services.transports["websocket"]
            async with connect(url, token, encoding=encoding, reconnect=False) as client:
                await client.subscribe(["NSE:INFY"], mode="ltp")
                start = 1_763_700_000 * 10**9
                services.dispatch(
                    "venue", Tick("NSE:INFY", StreamMode.LTP, 150_000, time.time_ns())
                )
                services.dispatch(
                    "venue", Bar("NSE:INFY", start, 60, 150_000, 150_500, 149_900, 150_205, 42, 7)
                )
                bar = await next_bar(client)
                assert bar == ClientBar(
                    "NSE:INFY",
                    start,
                    60,
                    Decimal("1500.00"),
                    Decimal("1505.00"),
                    Decimal("1499.00"),
                    Decimal("1502.05"),
                    42,
                    7,
                )
                assert client.seq_gaps == 0
            # A connection subscribing later starts with the latest bar, as with ticks.
            async with connect(url, token, encoding=encoding, reconnect=False) as late:
                await late.subscribe(["NSE:INFY"], mode="full")
                assert (await next_bar(late)).close == Decimal("1502.05")
