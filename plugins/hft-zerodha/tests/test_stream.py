"""The ticker through the broker, against the fake server's WebSocket: prices per segment,
heartbeats, the stall watchdog, drops mid-stream, resubscription, sharding, postbacks."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hft_zerodha.broker import ZerodhaBroker

from hft._errors import AuthError, NetworkError, ValidationError
from hft.contracts import BrokerEvent
from hft.model import ConnectionEvent, ConnectionState, OrderStatus, OrderUpdate, StreamMode, Tick

from . import kite_frames as kf
from .conftest import connected, make_broker, store_token
from .fake_kite import FakeKite, _rupees, wait_until

pytestmark = pytest.mark.anyio


class Events:
    def __init__(self) -> None:
        self.items: list[BrokerEvent] = []

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.items if isinstance(e, kind)]

    def states(self) -> list[ConnectionState]:
        return [e.state for e in self.of(ConnectionEvent)]

    async def wait(self, check: Callable[[], bool], timeout_s: float = 5.0) -> None:
        await wait_until(check, timeout_s)


@contextlib.asynccontextmanager
async def watching(broker: ZerodhaBroker) -> AsyncIterator[Events]:
    events = Events()

    async def pump() -> None:
        async for event in broker.events():
            events.items.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump)
        yield events
        nursery.cancel_scope.cancel()


async def synced(server: FakeKite, broker: ZerodhaBroker) -> None:
    wanted = {t: str(m) for t, m in broker.subscriptions.items()}
    await wait_until(lambda: server.subscriptions() == wanted)


async def test_every_segment_streams_at_its_own_price_scale(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker), watching(broker) as events:
        instruments = await broker.instruments()
        await broker.subscribe(instruments, StreamMode.FULL)
        await synced(server, broker)
        for instrument in instruments:
            server.trade(instrument.key, server.listing(instrument.key).last + instrument.tick_size)
        await events.wait(
            lambda: {t.instrument for t in events.of(Tick)} >= {i.key for i in instruments}
        )
        for instrument in instruments:
            listing = server.listing(instrument.key)
            tick = [t for t in events.of(Tick) if t.instrument == instrument.key][-1]
            # The wire integer, read at the instrument's scale, is the rupee price Kite means.
            assert instrument.decimal(tick.last_price) == _decimal(listing.last, listing.scale)
            assert tick.mode is StreamMode.FULL
            if listing.index:
                assert tick.depth is None
                assert tick.ohlc is not None
            else:
                assert tick.depth is not None
                assert len(tick.depth.bids) == 5


def _decimal(units: int, scale: int) -> Any:
    from decimal import Decimal

    return Decimal(str(_rupees(units, scale)))


async def test_heartbeats_alone_keep_the_connection(tmp_path: Path) -> None:
    async with (
        connected(tmp_path, stall_timeout_s=1.5) as (server, broker),
        watching(broker) as events,
    ):
        await trio.sleep(3.0)  # heartbeats come every 0.2 s
        assert ConnectionState.RECONNECTING not in events.states()
        assert server.connections_opened == 1


async def test_silence_trips_the_watchdog_and_it_reconnects(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker), watching(broker) as events:
        infy = [i for i in await broker.instruments() if i.key == "NSE:INFY"]
        await broker.subscribe(infy, StreamMode.LTP)
        await synced(server, broker)
        server.stall()
        await events.wait(lambda: ConnectionState.RECONNECTING in events.states(), 4)
        server.stall(False)
        await events.wait(lambda: ConnectionState.RESYNCED in events.states(), 4)
        await synced(server, broker)
        server.trade("NSE:INFY", 157375)
        await events.wait(lambda: any(t.last_price == 157375 for t in events.of(Tick)))
        assert server.connections_opened >= 2


async def test_a_dropped_connection_resubscribes_every_instrument_in_its_mode(
    tmp_path: Path,
) -> None:
    async with connected(tmp_path) as (server, broker), watching(broker) as events:
        by_key = {i.key: i for i in await broker.instruments()}
        await broker.subscribe([by_key["NSE:INFY"]], StreamMode.LTP)
        await broker.subscribe([by_key["NFO:NIFTY26JANFUT"]], StreamMode.FULL)
        await broker.subscribe([by_key["NSE:NIFTY 50"]], StreamMode.QUOTE)
        await synced(server, broker)
        server.trade("NSE:INFY", 157375)
        await events.wait(lambda: len(events.of(Tick)) >= 1)

        await server.kick()
        await events.wait(lambda: ConnectionState.RESYNCED in events.states())
        states = events.states()
        assert states.index(ConnectionState.RECONNECTING) < states.index(ConnectionState.RESYNCED)
        await wait_until(
            lambda: server.subscriptions() == {408065: "ltp", 13568258: "full", 256265: "quote"}
        )
        mark = len(events.items)
        server.trade("NFO:NIFTY26JANFUT", 2400005)
        server.trade("NSE:NIFTY 50", 2400005)
        await events.wait(lambda: len([e for e in events.items[mark:] if isinstance(e, Tick)]) == 2)
        modes = {e.instrument: e.mode for e in events.items[mark:] if isinstance(e, Tick)}
        assert modes == {"NFO:NIFTY26JANFUT": StreamMode.FULL, "NSE:NIFTY 50": StreamMode.QUOTE}


async def test_subscriptions_shard_across_connections(tmp_path: Path) -> None:
    async with (
        connected(tmp_path, max_tokens_per_connection=3, max_connections=3) as (server, broker),
        watching(broker) as events,
    ):
        instruments = (await broker.instruments())[:7]
        await broker.subscribe(instruments, StreamMode.LTP)
        await wait_until(lambda: len(server.conns) == 3)
        await synced(server, broker)
        assert sorted(len(c.subs) for c in server.conns) == [1, 3, 3]
        for instrument in instruments:
            server.trade(instrument.key, server.listing(instrument.key).last + instrument.tick_size)
        await events.wait(lambda: len(events.of(Tick)) == 7)
        # Unsubscribing frees room on its shard; a changed mode stays on the same shard.
        await broker.unsubscribe(instruments[:2])
        await broker.subscribe(instruments[2:4], StreamMode.FULL)
        await synced(server, broker)


async def test_more_instruments_than_every_connection_holds_are_refused(tmp_path: Path) -> None:
    async with connected(tmp_path, max_tokens_per_connection=2, max_connections=2) as (_, broker):
        with pytest.raises(ValidationError) as caught:
            await broker.subscribe((await broker.instruments())[:5], StreamMode.LTP)
        assert caught.value.code == "kite_too_many_instruments"
        assert broker.subscriptions == {}


async def test_order_postbacks_and_other_text_messages(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker), watching(broker) as events:
        server.push_raw(json.dumps({"type": "message", "data": "Margins updated"}))
        server.push_raw(json.dumps({"type": "error", "data": "Invalid mode"}))
        server.push_raw(json.dumps({"type": "instruments_meta", "data": {"count": 1}}))
        server.push_raw("not json")
        server.push_raw(kf.frame([b"\x00" * 8])[:-2])  # a truncated binary frame
        order = {
            "order_id": "151220000000000",
            "status": "OPEN",
            "exchange": "NSE",
            "tradingsymbol": "INFY",
            "instrument_token": 408065,
            "quantity": 1,
            "filled_quantity": 0,
            "price": 1500.05,
            "average_price": 0,
            "variety": "regular",
            "tag": "x1",
        }
        server.push_raw(json.dumps({"type": "order", "data": order}))
        await events.wait(lambda: bool(events.of(OrderUpdate)))
        (update,) = events.of(OrderUpdate)
        assert (update.broker_order_id, update.status, update.price) == (
            "151220000000000",
            OrderStatus.OPEN,
            150005,
        )
        assert update.client_order_id == "x1"
        # A stale view (the order is OPEN; PENDING cannot follow) is dropped, not passed on.
        server.push_raw(json.dumps({"type": "order", "data": {**order, "status": "OPEN PENDING"}}))
        server.push_raw(json.dumps({"type": "order", "data": {**order, "status": "CANCELLED"}}))
        await events.wait(lambda: len(events.of(OrderUpdate)) == 2)
        assert [u.status for u in events.of(OrderUpdate)] == [
            OrderStatus.OPEN,
            OrderStatus.CANCELLED,
        ]
        assert ConnectionState.RECONNECTING not in events.states()


async def test_a_session_refused_on_reconnect_stops_with_a_login_hint(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker), watching(broker) as events:
        server.access_tokens.clear()  # a master logout from Kite web
        await server.kick()
        await events.wait(lambda: ConnectionState.DISCONNECTED in events.states())
        (event,) = [
            e for e in events.of(ConnectionEvent) if e.state is ConnectionState.DISCONNECTED
        ]
        assert "hft zerodha login" in event.reason
        opened = server.connections_opened
        await trio.sleep(0.5)
        assert server.connections_opened == opened  # no retry loop


@pytest.mark.parametrize("problem", ["missing", "expired", "invalidated", "other_key"])
async def test_connect_refuses_a_bad_session_clearly(tmp_path: Path, problem: str) -> None:
    async with FakeKite.running() as server:
        if problem == "expired":
            store_token(tmp_path, server.issue_access_token(), expires_in_s=-1)
        elif problem == "invalidated":
            store_token(tmp_path, "revoked")
        elif problem == "other_key":
            store_token(tmp_path, server.issue_access_token())
        broker = make_broker(
            server, tmp_path, api_key="otherkey" if problem == "other_key" else "testkey"
        )
        with pytest.raises(AuthError) as caught:
            await broker.connect()
        assert "hft zerodha login" in caught.value.message
        assert "revoked" not in caught.value.message  # the token never shows
        assert "access0001" not in caught.value.message
        await broker.close()


async def test_a_ticker_refusing_the_session_at_connect_is_an_auth_error(tmp_path: Path) -> None:
    async with FakeKite.running(refuse_ticker=True) as server:
        store_token(tmp_path, server.issue_access_token())
        broker = make_broker(server, tmp_path)
        with pytest.raises(AuthError, match="hft zerodha login"):
            await broker.connect()
        await broker.close()


async def test_a_ticker_that_cannot_be_reached_at_connect_is_a_network_error(
    tmp_path: Path,
) -> None:
    async with FakeKite.running() as server:
        store_token(tmp_path, server.issue_access_token())
        broker = make_broker(server, tmp_path, ws_url="ws://127.0.0.1:9/ws", timeout_s=1.0)
        with pytest.raises(NetworkError):
            await broker.connect()
        await broker.close()
