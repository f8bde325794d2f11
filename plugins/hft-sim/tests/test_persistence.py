"""The sim's state survives a restart through the host's storage (namespace ``sim``)."""

from __future__ import annotations

import json

import anyio
import pytest
import structlog.testing
from hft_sim.broker import STATE_NAMESPACE

from hft import NetworkError
from hft._builtin.memory import MemoryStorage
from hft.model import (
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Product,
    Side,
    StreamMode,
    Tick,
    TimeInForce,
)

from .conftest import INSTANT, QUIET, make_sim

INFY = "NSE:INFY"


@pytest.mark.anyio
async def test_accounts_orders_trades_and_prices_survive_a_restart() -> None:
    storage = MemoryStorage("memory://")
    first = make_sim(storage, latency=INSTANT, **QUIET)
    await first.connect()
    book = first.book(INFY)
    buy = OrderRequest("default", INFY, Side.BUY, 10, price=150_000, product=Product.CNC)
    bought = await first.place_order("default", book.instrument, buy)
    first.cross(INFY, Side.SELL, 10, 150_000)
    resting = OrderRequest(
        "default", INFY, Side.BUY, 7, price=140_000, time_in_force=TimeInForce.GTC
    )
    open_id = await first.place_order("default", book.instrument, resting)
    first.trade(INFY, 151_000)
    first.top_up("default", 123_45)
    funds = first.funds("default")
    orders, trades = await first.orders("default"), await first.trades("default")
    positions = await first.positions("default")
    await first.close()

    stored = json.loads(await storage.get_state(STATE_NAMESPACE, "sim") or b"{}")
    assert stored["running"] is False

    second = make_sim(storage, latency=INSTANT, **QUIET)
    await second.connect()
    try:
        assert second.funds("default") == funds
        assert await second.positions("default") == positions
        assert await second.trades("default") == trades
        assert [(o.broker_order_id, o.status) for o in await second.orders("default")] == [
            (o.broker_order_id, o.status) for o in orders
        ]
        assert second.order(bought).status is OrderStatus.FILLED
        assert second.book(INFY).market.last == 151_000
        # The open order is back in the book, where it trades and can be cancelled.
        assert second.book(INFY).best_bid() == 140_000
        second.cross(INFY, Side.SELL, 2, 140_000)
        assert second.order(open_id).filled_quantity == 2
        await second.cancel_order("default", open_id)
        assert second.order(open_id).status is OrderStatus.CANCELLED
        # New ids continue where the first process stopped.
        again = await second.place_order("default", book.instrument, resting)
        assert again > open_id
    finally:
        await second.close()


@pytest.mark.anyio
async def test_a_restart_on_a_later_day_runs_the_day_reset() -> None:
    storage = MemoryStorage("memory://")
    first = make_sim(storage, latency=INSTANT, **QUIET)
    await first.connect()
    book = first.book(INFY)
    day_order = OrderRequest("default", INFY, Side.BUY, 3, price=140_000)
    expiring = await first.place_order("default", book.instrument, day_order)
    gtc = await first.place_order(
        "default",
        book.instrument,
        OrderRequest("default", INFY, Side.BUY, 4, price=139_000, time_in_force=TimeInForce.GTC),
    )
    intraday = OrderRequest("default", INFY, Side.BUY, 10, price=150_000)
    await first.place_order("default", book.instrument, intraday)
    first.cross(INFY, Side.SELL, 10, 150_000)
    first.trade(INFY, 150_500)
    cash = first.funds("default").cash
    await first.close()

    second = make_sim(storage, latency=INSTANT, start_at="2025-01-02T09:15:00+05:30", **QUIET)
    await second.connect()
    try:
        # The DAY order expired and left today's book; the GTC order is still live.
        ids = {o.broker_order_id: o.status for o in await second.orders("default")}
        assert ids == {gtc: OrderStatus.OPEN}
        # Its end was streamed, for the host to apply (reconciliation would find it gone too).
        (expired,) = [
            e
            for e in second.take_events()
            if isinstance(e, OrderUpdate) and e.broker_order_id == expiring
        ]
        assert (expired.status, expired.reason) == (OrderStatus.EXPIRED, "end of the trading day")
        # The MIS position was squared off at the last price, its PnL settled into cash.
        assert await second.positions("default") == []
        assert second.funds("default").cash == cash + 10 * 500
        assert second.book(INFY).market.previous_close == 150_500
    finally:
        await second.close()


@pytest.mark.anyio
async def test_without_persist_nothing_is_written() -> None:
    storage = MemoryStorage("memory://")
    broker = make_sim(storage, persist=False)
    await broker.connect()
    broker.step()
    await broker.close()
    assert await storage.get_state(STATE_NAMESPACE, "sim") is None


@pytest.mark.anyio
async def test_accounts_dropped_from_the_config_are_kept_in_the_state() -> None:
    storage = MemoryStorage("memory://")
    first = make_sim(storage, accounts={"a": {"cash_paise": 5}, "b": {"cash_paise": 7}})
    await first.connect()
    await first.close()
    second = make_sim(storage, accounts={"a": {"cash_paise": 5}})
    await second.connect()
    await second.close()
    stored = json.loads(await storage.get_state(STATE_NAMESPACE, "sim") or b"{}")
    assert stored["accounts"]["b"]["cash"] == 7


class FlakyStorage(MemoryStorage):
    """A store whose state writes fail while ``down`` is set."""

    down = False

    async def put_state(self, namespace: str, key: str, value: bytes) -> None:
        if self.down:
            raise NetworkError("the store is unreachable")
        await super().put_state(namespace, key, value)


@pytest.mark.anyio
async def test_a_failing_store_does_not_stop_the_market() -> None:
    storage = FlakyStorage("memory://")
    broker = make_sim(storage, clock="realtime", step_ms=10, persist_interval_ms=10)
    await broker.connect()
    await broker.subscribe([broker.book(INFY).instrument], StreamMode.LTP)
    storage.down = True
    ticks = 0
    with structlog.testing.capture_logs() as logs:
        with anyio.move_on_after(0.3):
            async for event in broker.events():
                ticks += isinstance(event, Tick)
        await broker.close()
    assert ticks > 5
    failures = [e for e in logs if e["event"] == "sim.save_failed"]
    assert failures
    assert "unreachable" in failures[0]["error"]
