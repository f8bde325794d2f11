"""Exchange rules and pre-trade checks: every bad order is refused with its own code and
changes nothing (funds, positions, orders, trades, books)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from hft_sim.broker import SimBroker

from hft import BrokerRejected
from hft.contracts import EngineCodes
from hft.model import (
    Instrument,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    StreamMode,
    TimeInForce,
)

from .conftest import INSTANT, QUIET, make_sim

INFY = "NSE:INFY"  # ₹1,500.00, tick ₹0.10, lot 1, band 20 %
NIFTY = "NFO:NIFTY-I"  # ₹23,500.00, tick ₹0.05, lot 75, freeze 1800, band 10 %


@pytest.fixture
async def sim() -> AsyncIterator[SimBroker]:
    broker = make_sim(latency=INSTANT)
    await broker.connect()
    await broker.subscribe(await broker.instruments(), StreamMode.FULL)
    for _ in range(5):
        broker.step()
    broker.take_events()
    try:
        yield broker
    finally:
        await broker.close()


def request(key: str, quantity: int, price: int | None, **fields: Any) -> OrderRequest:
    values: dict[str, Any] = {
        "account": "default",
        "instrument": key,
        "side": Side.BUY,
        "quantity": quantity,
        "order_type": OrderType.LIMIT if price is not None else OrderType.MARKET,
        "price": price,
    }
    values.update(fields)
    return OrderRequest(**values)


async def state(broker: SimBroker) -> tuple[Any, ...]:
    """Everything a refused order must leave as it was."""
    books = tuple(
        (
            book.key,
            tuple(book.engine.depth(EngineCodes.BUY, 100)),
            tuple(book.engine.depth(EngineCodes.SELL, 100)),
            book.engine.live_orders,
            book.engine.waiting_stops,
        )
        for book in broker.exchange
    )
    return (
        broker.funds("default"),
        await broker.positions("default"),
        await broker.holdings("default"),
        await broker.orders("default"),
        await broker.trades("default"),
        books,
    )


async def refused(broker: SimBroker, key: str, order: OrderRequest, code: str) -> str:
    instrument = broker.book(key).instrument if key in broker.exchange.books else None
    target = instrument or Instrument(*key.split(":"), token=1)
    broker.take_events()
    before = await state(broker)
    with pytest.raises(BrokerRejected) as info:
        await broker.place_order(order.account, target, order)
    assert info.value.code == code, info.value.message
    assert info.value.message
    assert broker.take_events() == [], "a refused order emitted events"
    assert await state(broker) == before
    return info.value.message


@pytest.mark.anyio
async def test_unknown_instrument(sim: SimBroker) -> None:
    message = await refused(sim, "NSE:NOPE", request("NSE:NOPE", 1, 10_000), "unknown_instrument")
    assert "NSE:NOPE" in message


@pytest.mark.anyio
async def test_unknown_account(sim: SimBroker) -> None:
    order = request(INFY, 1, 150_000, account="nobody")
    await refused(sim, INFY, order, "unknown_account")


@pytest.mark.anyio
async def test_off_tick_price(sim: SimBroker) -> None:
    message = await refused(sim, INFY, request(INFY, 1, 150_005), "off_tick")
    assert "tick size 0.10" in message


@pytest.mark.anyio
async def test_quantity_not_a_whole_number_of_lots(sim: SimBroker) -> None:
    message = await refused(sim, NIFTY, request(NIFTY, 76, 2_350_000), "bad_lot")
    assert "lot size 75" in message


@pytest.mark.anyio
async def test_above_freeze_quantity(sim: SimBroker) -> None:
    order = request(NIFTY, 1875, 2_350_000, product=Product.NRML)
    message = await refused(sim, NIFTY, order, "freeze_quantity")
    assert "1800" in message


@pytest.mark.anyio
@pytest.mark.parametrize("price", [120_000 - 10, 180_000 + 10])
async def test_beyond_the_price_band(sim: SimBroker, price: int) -> None:
    book = sim.book(INFY)
    assert (book.band_low, book.band_high) == (120_000, 180_000)
    message = await refused(sim, INFY, request(INFY, 1, price), "price_band")
    assert "1200.00-1800.00" in message


@pytest.mark.anyio
async def test_stop_trigger_beyond_the_band(sim: SimBroker) -> None:
    order = request(INFY, 1, 181_000, order_type=OrderType.STOP_LIMIT, trigger_price=180_500)
    await refused(sim, INFY, order, "price_band")


@pytest.mark.anyio
async def test_insufficient_funds(sim: SimBroker) -> None:
    # 1,000 INFY delivery at ₹1,500 is ₹15 lakh; the account holds ₹10 lakh.
    order = request(INFY, 1000, 150_000, product=Product.CNC)
    message = await refused(sim, INFY, order, "insufficient_funds")
    assert "₹1500000.00" in message
    assert "₹1000000.00" in message


@pytest.mark.anyio
async def test_open_orders_count_against_funds(sim: SimBroker) -> None:
    first = request(INFY, 600, 140_000, product=Product.CNC)  # ₹8.4 lakh, rests below market
    await sim.place_order("default", sim.book(INFY).instrument, first)
    assert sim.funds("default").order_margin == 600 * 140_000
    second = request(INFY, 200, 140_000, product=Product.CNC)  # ₹2.8 lakh more: too much
    await refused(sim, INFY, second, "insufficient_funds")


@pytest.mark.anyio
async def test_cnc_sell_needs_holdings(sim: SimBroker) -> None:
    order = request(INFY, 1, 150_000, side=Side.SELL, product=Product.CNC)
    await refused(sim, INFY, order, "no_holdings")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "product"), [(INFY, Product.NRML), (NIFTY, Product.CNC), (INFY, Product.MTF)]
)
async def test_product_must_suit_the_instrument(sim: SimBroker, key: str, product: Product) -> None:
    lot = sim.book(key).instrument.lot_size
    await refused(
        sim, key, request(key, lot, sim.book(key).market.last, product=product), "bad_product"
    )


@pytest.mark.anyio
async def test_stop_whose_trigger_has_been_reached(sim: SimBroker) -> None:
    last = sim.book(INFY).market.last
    order = request(
        INFY, 1, None, order_type=OrderType.STOP, trigger_price=last - 100, side=Side.BUY
    )
    await refused(sim, INFY, order, "trigger_crossed")


@pytest.mark.anyio
async def test_broker_specific_options_are_refused(sim: SimBroker) -> None:
    order = request(INFY, 1, 150_000, extras={"iceberg_legs": "3"})
    await refused(sim, INFY, order, "unsupported_option")


@pytest.mark.anyio
async def test_instrument_mismatch(sim: SimBroker) -> None:
    order = request(NIFTY, 75, 2_350_000)
    before = await state(sim)
    with pytest.raises(BrokerRejected) as info:
        await sim.place_order("default", sim.book(INFY).instrument, order)
    assert info.value.code == "instrument_mismatch"
    assert await state(sim) == before


@pytest.mark.anyio
async def test_market_closed_outside_market_hours() -> None:
    broker = make_sim(
        latency=INSTANT,
        start_at="2025-01-01T08:00:00+05:30",
        rules={"market_hours": True},
    )
    await broker.connect()
    try:
        broker.step()
        message = await refused(broker, INFY, request(INFY, 1, 150_000), "market_closed")
        assert "09:15-15:30" in message
        # No agent trades while the market is closed: the books stay empty.
        assert all(book.engine.live_orders == 0 for book in broker.exchange)
    finally:
        await broker.close()


@pytest.mark.anyio
async def test_a_good_order_after_refusals_gets_the_first_id(sim: SimBroker) -> None:
    await refused(sim, INFY, request(INFY, 1, 150_005), "off_tick")
    order_id = await sim.place_order(
        "default", sim.book(INFY).instrument, request(INFY, 1, 140_000)
    )
    assert order_id == "S000000001"
    (update,) = [e for e in sim.take_events() if getattr(e, "status", None) is OrderStatus.OPEN]
    assert update.broker_order_id == order_id


@pytest.mark.anyio
async def test_ioc_remainder_is_cancelled_with_a_reason(sim: SimBroker) -> None:
    book = sim.book(INFY)
    ask = book.best_ask()
    assert ask is not None
    available = book.engine.depth(EngineCodes.SELL, 1)[0][1]
    order = request(INFY, available + 5, ask, time_in_force=TimeInForce.IOC)
    order_id = await sim.place_order("default", book.instrument, order)
    view = sim.order(order_id)
    assert view.status is OrderStatus.CANCELLED
    assert view.filled_quantity == available
    assert "IOC" in view.reason


@pytest.mark.anyio
async def test_market_order_takes_liquidity(sim: SimBroker) -> None:
    book = sim.book(NIFTY)
    ask = book.best_ask()
    order_id = await sim.place_order("default", book.instrument, request(NIFTY, 75, None))
    view = sim.order(order_id)
    assert view.status is OrderStatus.FILLED
    assert view.filled_value == 75 * ask


@pytest.mark.anyio
async def test_band_follows_the_previous_close_after_the_day_reset() -> None:
    sim = make_sim(latency=INSTANT, **QUIET)
    await sim.connect()
    try:
        book = sim.book(INFY)
        sim.trade(INFY, 160_000)
        sim.end_day()
        assert book.market.previous_close == 160_000
        assert (book.band_low, book.band_high) == (128_000, 192_000)
        await refused(sim, INFY, request(INFY, 1, 127_990), "price_band")
    finally:
        await sim.close()


@pytest.mark.anyio
async def test_fair_value_never_leaves_the_band() -> None:
    broker = make_sim(fair_value={"volatility_annual_pct": 400_000})
    await broker.connect()
    try:
        highs = lows = 0
        for _ in range(200):
            broker.step()
            for book in broker.exchange:
                fair = broker.fair_value(book.key)
                assert book.band_low <= fair <= book.band_high
                assert book.band_low <= book.market.last <= book.band_high
                highs += fair == book.band_high
                lows += fair == book.band_low
        assert highs, "the volatility was meant to reach the upper limit"
        assert lows, "the volatility was meant to reach the lower limit"
    finally:
        await broker.close()


def test_listing_validation() -> None:
    from hft_sim.universe import Listing

    from hft.model import InstrumentType

    index = Instrument("NSE", "NIFTY 50", 1, instrument_type=InstrumentType.INDEX)
    with pytest.raises(Exception, match="equities and futures"):
        Listing(index, 100, 10.0, 10.0)
    with pytest.raises(Exception, match="paise"):
        Listing(
            attrs.evolve(index, instrument_type=InstrumentType.EQUITY, price_scale=4), 100, 1, 1
        )
