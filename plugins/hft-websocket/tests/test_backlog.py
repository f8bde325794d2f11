"""Limits that a real ``hft serve`` cannot be pushed to quickly, on an in-process host: a slow
consumer's order-event backlog, and the close code of a server shutting down."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import hft_websocket.plugin
import pytest
from hft_websocket.client import Connected, Disconnected, connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

import hft.testing._plugin
from hft.model import (
    Depth,
    DepthLevel,
    Environment,
    OrderRequest,
    Role,
    Side,
    StreamMode,
    Tick,
)
from hft.testing import make_host

pytestmark = pytest.mark.anyio

CONFIG: dict[str, Any] = {
    "brokers": {"venue": {"plugin": "test", "instant": True}},
    "accounts": {"acc": {"broker": "venue", "environment": "sim"}},
    "transports": {"websocket": {"port": 0, "max_order_backlog": 20}},
    "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
}
PLUGINS = {"test": hft.testing._plugin, "websocket": hft_websocket.plugin}


def deep_tick(n: int) -> Tick:
    levels = tuple(DepthLevel(150000 - 5 * k, 100 + n, 3) for k in range(5))
    return Tick("NSE:INFY", StreamMode.FULL, 150000 + 5 * (n % 50), time.time_ns(), 1, n,
                depth=Depth(levels, levels))  # fmt: skip


class StalledClient:
    """A connection with a tiny receive window that authenticates, subscribes, stops reading
    until told to go on, then reads everything to the close."""

    def __init__(self, url: str, token: str, resume_after: int | None = None) -> None:
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.connect((host, int(port)))
        self.ws = ws_connect(url, sock=sock, close_timeout=1, max_size=None, legacy=True)
        auth: dict[str, Any] = {"op": "auth", "token": token}
        if resume_after is not None:
            auth["resume_after"] = resume_after
        self.ws.send(json.dumps(auth))
        self.welcome = json.loads(self.ws.recv(timeout=10))
        self.orders: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.go_on = threading.Event()

    def subscribe(self) -> None:
        self.ws.send(json.dumps({"op": "subscribe", "instruments": ["NSE:INFY"], "mode": "full"}))

    def read_to_the_end(self) -> None:
        self.go_on.wait(30)
        try:
            while True:
                message = json.loads(self.ws.recv(timeout=20))
                if message["type"] == "order":
                    self.orders.append(message)
        except ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd is not None else 1006
        finally:
            self.ws.close()


async def test_a_client_too_far_behind_is_closed_4008_and_resumes_without_a_gap() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        host = make_host(PLUGINS, CONFIG, data_dir=Path(data_dir))
        async with host.running() as services:
            user = await services.auth.add_user(
                "slow", "slow password long", role=Role.TRADER, kind=Environment.SIM,
                accounts=("acc",),
            )  # fmt: skip
            token = (await services.auth.login("slow", "slow password long")).access_token
            url = services.transports["websocket"]
            slow = await anyio.to_thread.run_sync(StalledClient, url, token)
            slow.subscribe()
            placed: list[str] = []
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anyio.to_thread.run_sync, slow.read_to_the_end)
                    # Market data fills the socket; the orders' events then pile up behind it,
                    # far past the backlog of 20.
                    for n in range(1, 2001):
                        services.dispatch("venue", deep_tick(n))
                        if n % 40 == 0:
                            request = OrderRequest("acc", "NSE:INFY", Side.BUY, 1, price=140000)
                            placed += [o.order_id for o in await services.oms.submit(user, request)]
                        await anyio.lowlevel.checkpoint()
                    await services.oms.flush()
                    slow.go_on.set()
            assert slow.close_code == 4008
            seqs = [m["order_seq"] for m in slow.orders]
            assert seqs == sorted(set(seqs))
            last = seqs[-1] if seqs else slow.welcome["order_seq"]
            resumed = await anyio.to_thread.run_sync(StalledClient, url, token, last)
            resumed.go_on.set()
            with anyio.fail_after(10):
                while len(resumed.orders) < resumed.welcome["resume"]["replayed"]:
                    message = json.loads(await anyio.to_thread.run_sync(resumed.ws.recv, 10))
                    if message["type"] == "order":
                        resumed.orders.append(message)
            resumed.ws.close()
            everything = slow.orders + resumed.orders
            all_seqs = [m["order_seq"] for m in everything]
            assert all_seqs == sorted(set(all_seqs)), "no repeat across the two connections"
            journal = [e.seq for e in await services.storage.order_events(0, limit=10_000)]
            assert all_seqs == journal, "no gap: every journalled event, once"
            assert {m["order"]["order_id"] for m in everything} == set(placed)


async def test_shutdown_closes_connections_with_1001() -> None:
    events: list[Any] = []

    async def watch(url: str, token: str, connected: anyio.Event) -> None:
        async with connect(url, token, reconnect=False) as client:
            async for event in client:
                events.append(event)
                connected.set()

    with tempfile.TemporaryDirectory() as data_dir, anyio.fail_after(20):
        host = make_host(PLUGINS, CONFIG, data_dir=Path(data_dir))
        async with anyio.create_task_group() as tg, host.running() as services:
            await services.auth.add_user(
                "u", "a long password", role=Role.VIEWER, kind=Environment.SIM
            )
            token = (await services.auth.login("u", "a long password")).access_token
            connected = anyio.Event()
            tg.start_soon(watch, services.transports["websocket"], token, connected)
            await connected.wait()
    assert isinstance(events[0], Connected)
    assert isinstance(events[-1], Disconnected)
    assert events[-1].code == 1001
