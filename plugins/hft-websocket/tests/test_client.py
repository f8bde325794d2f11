"""The SDK against a real ``hft serve``: market data in both encodings, orders, resume."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from hft_websocket.client import (
    Client,
    Connected,
    Event,
    OrderEvent,
    PositionEvent,
    RequestError,
    Tick,
    connect,
)

from .conftest import ACCOUNT, Server

pytestmark = pytest.mark.anyio

INSTRUMENTS = ["NSE:INFY", "NSE:TCS", "NSE:SBIN"]


async def next_event(client: Client, want: Callable[[Event], bool], timeout_s: float = 10) -> Any:
    with anyio.fail_after(timeout_s):
        async for event in client:
            if want(event):
                return event
    raise AssertionError("the client stopped")


async def last_price(client: Client, instrument: str) -> Decimal:
    tick = await next_event(client, lambda e: isinstance(e, Tick) and e.instrument == instrument)
    assert isinstance(tick, Tick)
    return tick.last_price


def resting_buy_price(last: Decimal) -> str:
    """A buy price well below the market but inside the circuit band, on the 0.10 tick."""
    return str((last * Decimal("0.95")).quantize(Decimal("0.1"), rounding=ROUND_DOWN))


@pytest.mark.parametrize("encoding", ["json", "binary"])
async def test_ticks_arrive_in_each_mode_with_increasing_sequences(
    server: Server, encoding: str
) -> None:
    async with connect(server.ws_url, server.tokens["trader"], encoding=encoding) as client:
        for mode in ("ltp", "quote", "full"):
            reply = await client.subscribe(INSTRUMENTS, mode=mode)
            assert [i["instrument"] for i in reply["instruments"]] == INSTRUMENTS
            assert all(i["price_scale"] == 2 and i["iid"] > 0 for i in reply["instruments"])
            seen: dict[str, list[Tick]] = {}
            with anyio.fail_after(10):
                async for event in client:
                    if isinstance(event, Tick) and event.mode == mode:
                        seen.setdefault(event.instrument, []).append(event)
                        if all(len(seen.get(k, ())) >= 3 for k in INSTRUMENTS):
                            break
            for ticks in seen.values():
                seqs = [t.seq for t in ticks]
                assert seqs == sorted(set(seqs)), seqs
                assert all(t.last_price > 0 and t.timestamp_ns > 0 for t in ticks)
            if mode == "full":
                deep = [t for ticks in seen.values() for t in ticks if len(t.bids) > 1]
                assert deep, "full mode carries depth"
                assert all(len(t.bids) <= 5 and len(t.asks) <= 5 for t in deep)
            elif mode == "quote":
                quotes = [t for ticks in seen.values() for t in ticks]
                assert all(t.volume is not None for t in quotes)
                assert all(t.ohlc is not None and t.ohlc[1] >= t.ohlc[2] for t in quotes)
                assert all(len(t.bids) <= 1 for ticks in seen.values() for t in ticks)
        assert client.seq_gaps == 0
        removed = await client.unsubscribe(["NSE:TCS", "NSE:NOPE"])
        assert removed == ["NSE:TCS"]


async def test_a_market_order_fills_and_moves_the_position(server: Server) -> None:
    async with connect(server.ws_url, server.tokens["trader"]) as client:
        orders = await client.submit(
            account=ACCOUNT, instrument="NSE:SBIN", side="BUY", quantity=1, order_type="MARKET"
        )
        assert len(orders) == 1
        order_id = orders[0]["order_id"]
        filled = await next_event(
            client,
            lambda e: (
                isinstance(e, OrderEvent)
                and e.order["order_id"] == order_id
                and e.order["status"] == "FILLED"
            ),
        )
        assert filled.order["filled_quantity"] == 1
        assert Decimal(filled.order["average_price"]) > 0
        position = await next_event(
            client,
            lambda e: isinstance(e, PositionEvent) and e.position["instrument"] == "NSE:SBIN",
        )
        assert position.position["account"] == ACCOUNT
        assert position.position["buy_quantity"] >= 1


async def test_cancel_and_modify_a_resting_order(server: Server) -> None:
    async with connect(server.ws_url, server.tokens["trader"], encoding="binary") as client:
        await client.subscribe(["NSE:INFY"], mode="ltp")
        price = resting_buy_price(await last_price(client, "NSE:INFY"))
        [order] = await client.submit(
            account=ACCOUNT, instrument="NSE:INFY", side="BUY", quantity=2, price=price
        )
        order_id = order["order_id"]
        await next_event(
            client,
            lambda e: (
                isinstance(e, OrderEvent)
                and e.order["order_id"] == order_id
                and e.order["status"] == "OPEN"
            ),
        )
        lower = str(Decimal(price) - Decimal("1.00"))
        modified = await client.modify(order_id, price=lower, quantity=3)
        assert modified["order_id"] == order_id
        event = await next_event(
            client,
            lambda e: (
                isinstance(e, OrderEvent)
                and e.order["order_id"] == order_id
                and e.kind == "modified"
            ),
        )
        assert (event.order["price"], event.order["quantity"]) == (lower, 3)
        cancelled = await client.cancel(order_id)
        assert cancelled["status"] in ("PENDING_CANCEL", "CANCELLED")
        await next_event(
            client,
            lambda e: (
                isinstance(e, OrderEvent)
                and e.order["order_id"] == order_id
                and e.order["status"] == "CANCELLED"
            ),
        )
        with pytest.raises(RequestError) as refused:
            await client.cancel(order_id)
        assert refused.value.code == "order_not_live"


async def test_the_market_watch_is_subscribed_on_connect(server: Server) -> None:
    for key in ("NSE:ITC", "NSE:LT"):
        added = server.http("POST", "/api/v1/watchlist", "trader", {"instrument": key})
        assert added.status_code in (200, 201), added.text
    try:
        async with connect(server.ws_url, server.tokens["trader"]) as client:
            welcome = await next_event(client, lambda e: isinstance(e, Connected))
            assert welcome.welcome["watchlist"] == ["NSE:ITC", "NSE:LT"]
            seen: set[str] = set()
            with anyio.fail_after(10):
                async for event in client:
                    if isinstance(event, Tick):
                        seen.add(event.instrument)
                        if seen == {"NSE:ITC", "NSE:LT"}:
                            break
    finally:
        for key in ("NSE:ITC", "NSE:LT"):
            server.http("DELETE", f"/api/v1/watchlist/{key}", "trader")


async def cancel_unless_pending(client: Client, order_id: str) -> bool:
    """Cancel; True (try again) while the broker has not acknowledged the order yet."""
    try:
        await client.cancel(order_id)
    except RequestError as exc:
        if exc.code != "order_pending":
            raise
        return True
    return False


async def test_a_dropped_connection_resumes_with_every_order_event(server: Server) -> None:
    """A steady stream of orders from another connection; this one is killed mid-stream and
    comes back by itself: it must see exactly the order events the other one saw."""
    token = server.tokens["trader"]
    async with connect(server.ws_url, token) as watcher, connect(server.ws_url, token) as resumer:
        start = (await next_event(resumer, lambda e: isinstance(e, Connected))).welcome
        price = "1.00"  # far below every market: the orders rest, then are cancelled
        await watcher.subscribe(["NSE:IDEA"], mode="ltp")
        price = resting_buy_price(await last_price(watcher, "NSE:IDEA"))
        got: list[OrderEvent] = []
        connections: list[dict[str, Any]] = []
        placed: list[str] = []
        done = anyio.Event()

        async def drain() -> None:
            async for event in resumer:
                if isinstance(event, OrderEvent):
                    got.append(event)
                elif isinstance(event, Connected):
                    connections.append(event.welcome)
                if (
                    done.is_set()
                    and placed
                    and any(
                        e.order["order_id"] == placed[-1] and e.order["status"] == "CANCELLED"
                        for e in got[-5:]
                    )
                ):
                    return

        async def trade() -> None:
            for n in range(12):
                [order] = await watcher.submit(
                    account=ACCOUNT, instrument="NSE:IDEA", side="BUY", quantity=1, price=price
                )
                placed.append(order["order_id"])
                if n == 4:
                    await resumer.drop_connection()
                await anyio.sleep(0.02)
            for order_id in placed:
                while await cancel_unless_pending(watcher, order_id):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            done.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drain)
                tg.start_soon(trade)
                await done.wait()
        expected: list[int] = []
        with anyio.fail_after(10):
            async for event in watcher:
                if isinstance(event, OrderEvent) and event.order_seq > start["order_seq"]:
                    expected.append(event.order_seq)
                    if event.order_seq == got[-1].order_seq:
                        break
    assert connections, "the client reconnected"
    assert connections[0]["resume"]["after"] >= start["order_seq"]
    seqs = [e.order_seq for e in got]
    assert seqs == sorted(set(seqs)), "no repeat, in order"
    assert seqs == expected, "no event lost"
    mine = {e.order["order_id"] for e in got}
    assert set(placed) <= mine


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ticks_and_order.py"


def test_the_readme_example_runs_as_written(server: Server) -> None:
    """On asyncio: the SDK is not tied to trio."""
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    assert EXAMPLE.read_text().strip() in readme, "the README shows the example as it is"
    env = {**os.environ, "WS_URL": server.ws_url, "WS_TOKEN": server.tokens["trader"]}
    run = subprocess.run(
        [sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("placed ")
    assert any(line.startswith("tick NSE:INFY") for line in lines)
    assert any(line.startswith("order ") and line.endswith("FILLED") for line in lines)
    assert lines[-1].startswith("position NSE:INFY")
