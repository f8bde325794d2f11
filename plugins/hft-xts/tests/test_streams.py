"""Both sockets against the fake install's Engine.IO v3 endpoints: pings, stalls, drops,
session loss, partial mode, and the events that drive the OMS."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from xts_fake import FakeXts

from hft.model import (
    Bar,
    ConnectionEvent,
    ConnectionState,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    PositionConversion,
    Product,
    Side,
    StreamMode,
    Tick,
)

from .conftest import DEALER, make_broker, streaming


def state(wanted: ConnectionState) -> object:
    return lambda e: isinstance(e, ConnectionEvent) and e.state is wanted


@pytest.mark.anyio
async def test_the_client_pings_on_the_servers_interval(tmp_path: Path) -> None:
    # EIO3: the client pings and the server only answers; a client that never pinged would be
    # dropped at pingTimeout.
    async with (
        FakeXts.running(ping_interval_ms=50, ping_timeout_ms=2000) as server,
        streaming(make_broker(server.url, tmp_path)) as events,
    ):
        await events.wait(state(ConnectionState.CONNECTED))
        with pytest.raises(TimeoutError):
            await events.wait(state(ConnectionState.RECONNECTING), timeout_s=0.4)
        assert server.pings >= 6  # two sockets, 0.4 s, a ping each per 50 ms


@pytest.mark.anyio
async def test_a_server_ping_is_answered(server: FakeXts, tmp_path: Path) -> None:
    async with streaming(make_broker(server.url, tmp_path)) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        server.ping_clients()
        with anyio.fail_after(5):
            while server.client_pongs < 2:  # noqa: ASYNC110 - the fake only counts
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_silent_socket_is_detected_and_replaced(tmp_path: Path) -> None:
    async with (
        FakeXts.running(ping_interval_ms=50, ping_timeout_ms=150) as server,
        streaming(make_broker(server.url, tmp_path)) as events,
    ):
        await events.wait(state(ConnectionState.CONNECTED))
        server.silent = True  # no more pongs: the sockets stall after 0.2 s
        down = await events.wait(state(ConnectionState.RECONNECTING))
        assert "silent" in down.reason
        server.silent = False
        await events.wait(state(ConnectionState.RESYNCED))


@pytest.mark.anyio
async def test_a_dropped_connection_resubscribes_and_yields_what_was_missed(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path)
    async with streaming(broker) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        keys = {i.key: i for i in await broker.instruments()}
        stock = keys["NSE:RELIANCE"]
        await broker.subscribe([stock], StreamMode.QUOTE)
        order_id = await broker.place_order(
            "PRO1", stock, OrderRequest("PRO1", stock.key, Side.BUY, 5, price=stock.price("1290"))
        )
        await events.wait(lambda e: isinstance(e, OrderUpdate) and e.status is OrderStatus.OPEN)
        await server.kick()
        await events.wait(state(ConnectionState.RECONNECTING))
        # While both sockets are down, the order fills and the price moves.
        await server.execute(int(order_id), 5, Decimal("1290"))
        await server.trade(1, 2885, Decimal("1301.05"))
        await events.wait(state(ConnectionState.RESYNCED))
        filled = await events.wait(
            lambda e: isinstance(e, OrderUpdate) and e.status is OrderStatus.FILLED
        )
        assert filled.filled_quantity == 5
        fill = await events.wait(lambda e: isinstance(e, Fill))
        assert (fill.quantity, fill.price) == (5, 129000)
        tick = await events.wait(lambda e: isinstance(e, Tick) and e.last_price == 130105)
        assert tick.mode is StreamMode.QUOTE
        await server.trade(1, 2885, Decimal("1302"))
        await events.wait(lambda e: isinstance(e, Tick) and e.last_price == 130200)
        assert sum(isinstance(e, Fill) for e in events.seen) == 1


@pytest.mark.anyio
async def test_a_logout_event_means_a_new_session(server: FakeXts, tmp_path: Path) -> None:
    async with streaming(make_broker(server.url, tmp_path)) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        logins = server.logins
        server.push(
            "interactive", "logout", json.dumps({"type": "success", "description": "logged out"})
        )
        await events.wait(state(ConnectionState.RECONNECTING))
        await events.wait(state(ConnectionState.RESYNCED))
        assert server.logins == logins + 1


@pytest.mark.anyio
async def test_a_token_refused_at_the_socket_is_renewed(server: FakeXts, tmp_path: Path) -> None:
    async with streaming(make_broker(server.url, tmp_path)) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        server.invalidate_tokens()
        await server.kick()  # the reconnect is refused (HTTP 401) until the broker logs in again
        await events.wait(state(ConnectionState.RESYNCED))


@pytest.mark.anyio
async def test_partial_mode_ticks_merge_into_the_snapshot(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path, broadcast_mode="Partial")
    async with streaming(broker) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        future = {i.key: i for i in await broker.instruments()}["NFO:NIFTY26JANFUT"]
        await broker.subscribe([future], StreamMode.QUOTE)
        await server.trade(2, 35001, Decimal("24010.10"))
        tick = await events.wait(lambda e: isinstance(e, Tick) and e.last_price == 2401010)
        assert tick.best_bid is not None
        assert tick.best_bid.price == 2401005
        assert tick.ohlc is not None  # from the subscription snapshot, not the partial message
        assert tick.volume == 10


@pytest.mark.anyio
async def test_bad_events_are_logged_and_skipped(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    async with streaming(broker) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        stock = {i.key: i for i in await broker.instruments()}["NSE:RELIANCE"]
        await broker.subscribe([stock], StreamMode.LTP)
        server.push("md", "1512-json-full", "{not json")
        server.push("interactive", "order", json.dumps({"AppOrderID": ""}))
        server.push("interactive", "position", json.dumps({"AccountID": "PRO1"}))
        await server.trade(1, 2885, Decimal("1299.95"))
        tick = await events.wait(lambda e: isinstance(e, Tick) and e.last_price == 129995)
        assert tick.mode is StreamMode.LTP
        assert not any(
            e.state is ConnectionState.RECONNECTING
            for e in events.seen
            if isinstance(e, ConnectionEvent)
        )


@pytest.mark.anyio
async def test_open_interest_candles_and_ltp_from_touchlines(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path, ltp_message_code=1501)
    async with streaming(broker) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        future = {i.key: i for i in await broker.instruments()}["NFO:NIFTY26JANFUT"]
        await broker.subscribe([future], StreamMode.LTP)
        await broker.subscribe_extra([future], 1510)
        await broker.subscribe_extra([future], 1505)
        await server.trade(2, 35001, Decimal("24020"))
        await events.wait(lambda e: isinstance(e, Tick) and e.open_interest == 12345)
        ltp = [e for e in events.seen if isinstance(e, Tick) and e.last_price == 2402000]
        assert ltp
        assert {t.mode for t in ltp} == {StreamMode.LTP}  # 1501 touchlines, cut down to ltp
        bar = await events.wait(lambda e: isinstance(e, Bar) and e.close == 2402000)
        assert (bar.instrument, bar.interval_s, bar.volume) == ("NFO:NIFTY26JANFUT", 60, 500)
        assert bar.start_ns == 1737345600 * 10**9  # BarTime 1737365400 is IST written as UTC
        config = await broker.client_config()
        assert config["xtsMessageCode"]["ltpEvent"] == 1512


@pytest.mark.anyio
async def test_the_stream_can_be_closed_and_read_again(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    stock = {i.key: i for i in await broker.instruments()}["NSE:RELIANCE"]
    try:
        for _ in range(2):
            async with contextlib.aclosing(broker.events()) as events:
                async for event in events:
                    if isinstance(event, ConnectionEvent):  # (a snapshot tick may come first)
                        assert event.state is ConnectionState.CONNECTED
                        break
            await broker.subscribe([stock], StreamMode.LTP)  # no reader now: nothing to yield
        assert not [s for s in server.sockets if s.user == "PRO1"]
    finally:
        await broker.close()
    async for _ in broker.events():
        raise AssertionError("a closed broker's stream yields nothing")


@pytest.mark.anyio
async def test_trade_conversions_reach_the_clients_account(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path, DEALER)
    async with streaming(broker) as events:
        await events.wait(state(ConnectionState.CONNECTED))
        server.convert("CL9", 2885, "MIS", "NRML", 5, key="K0")  # not a client this broker serves
        server.convert("CL2", 2885, "MIS", "NRML", 5, side="Sell", success=False, key="K1")
        server.convert("CL2", 35001, "NRML", "MIS", 75, side="Sell", key="K2", segment="NSEFO")
        server.convert("CL2", 35001, "NRML", "MIS", 75, side="Sell", key="K2", segment="NSEFO")
        server.convert("CL1", 2885, "MIS", "CNC", 3, key="K3")
        last = await events.wait(lambda e: isinstance(e, PositionConversion) and e.key == "K3")
        assert (last.account, last.quantity, last.to_product) == ("CL1", 3, Product.CNC)
        conversions = [e for e in events.seen if isinstance(e, PositionConversion)]
        assert [(c.key, c.account, c.instrument, c.quantity) for c in conversions] == [
            ("K2", "CL2", "NFO:NIFTY26JANFUT", -75),
            ("K3", "CL1", "NSE:RELIANCE", 3),
        ]
        assert conversions[0].from_product is Product.NRML
