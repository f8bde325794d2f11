"""Cash, margin, positions, holdings and PnL: the account rules, and the broker applying them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest
from hft_sim.accounts import MarginRates, OpenOrder, SimAccount
from hft_sim.broker import SimBroker
from hypothesis import given, settings
from hypothesis import strategies as st

from hft.model import OrderRequest, OrderStatus, Product, Side

from .conftest import INSTANT, QUIET, make_sim

RATES = MarginRates.from_percent(20, 15)
INFY = "NSE:INFY"
NIFTY = "NFO:NIFTY-I"


def marks(prices: dict[str, int]) -> Callable[[str], int]:
    return prices.__getitem__


# The rules, on the account alone ------------------------------------------------------------


def test_intraday_round_trip_realises_fifo_pnl_and_settles_at_the_day_reset() -> None:
    account = SimAccount.new("a", 1_000_000)
    account.apply_fill(INFY, Product.MIS, Side.BUY, 10, 1000)
    account.apply_fill(INFY, Product.MIS, Side.BUY, 10, 1100)
    account.apply_fill(INFY, Product.MIS, Side.SELL, 15, 1200)
    # FIFO: 10 closed at +200, 5 at +100.
    assert account.realised_day == 2500
    assert account.cash == 1_000_000  # intraday trades move no cash until the reset
    (position,) = account.position_list(lambda _: 1150)
    assert (position.quantity, position.average_price) == (5, Decimal(1100))
    assert position.realised_pnl == 2500
    assert position.unrealised_pnl == 250
    account.end_day(marks({INFY: 1150}))  # MIS is squared off at the last price
    assert account.cash == 1_000_000 + 2500 + 250
    assert account.positions == {}


def test_delivery_buy_is_paid_at_once_and_becomes_a_holding() -> None:
    account = SimAccount.new("a", 1_000_000)
    account.apply_fill(INFY, Product.CNC, Side.BUY, 100, 1500)
    assert account.cash == 1_000_000 - 150_000
    assert account.sellable(INFY) == 100
    account.end_day(marks({INFY: 1600}))
    assert account.positions == {}
    (holding,) = account.holding_list(lambda _: 1600)
    assert (holding.quantity, holding.average_price, holding.last_price) == (100, 1500, 1600)
    account.apply_fill(INFY, Product.CNC, Side.SELL, 40, 1600)
    assert account.cash == 1_000_000 - 150_000 + 64_000
    assert account.sellable(INFY) == 60
    account.end_day(marks({INFY: 1600}))
    (holding,) = account.holding_list(lambda _: 1600)
    assert (holding.quantity, holding.average_price) == (60, 1500)


def test_futures_are_marked_to_market_and_carried() -> None:
    account = SimAccount.new("a", 10_000_000)
    account.apply_fill(NIFTY, Product.NRML, Side.SELL, 75, 2_350_000)
    account.end_day(marks({NIFTY: 2_340_000}))
    assert account.cash == 10_000_000 + 75 * 10_000
    (position,) = account.position_list(lambda _: 2_340_000)
    assert (position.quantity, position.average_price, position.buy_quantity) == (-75, 2_340_000, 0)


def test_margin_rules() -> None:
    account = SimAccount.new("a", 10_000_000)
    prices = marks({INFY: 150_000, NIFTY: 2_350_000})
    account.apply_fill(INFY, Product.MIS, Side.BUY, 10, 150_000)
    account.apply_fill(NIFTY, Product.NRML, Side.BUY, 75, 2_350_000)
    assert account.position_margin(prices, RATES) == 10 * 150_000 // 5 + 75 * 2_350_000 * 15 // 100
    orders = [
        OpenOrder(INFY, Product.MIS, Side.SELL, 6, 151_000),  # reduces the long: free
        OpenOrder(INFY, Product.MIS, Side.SELL, 6, 151_000),  # 4 reduce, 2 open a short
        OpenOrder(INFY, Product.CNC, Side.BUY, 2, 149_000),  # delivery: in full
        OpenOrder(INFY, Product.CNC, Side.SELL, 2, 151_000),  # checked against holdings
    ]
    for order in orders:
        account.add_order(order)
    assert account.order_margin(RATES) == 2 * 151_000 // 5 + 2 * 149_000
    assert account.pending(INFY, Product.CNC, Side.SELL) == 2
    # One more MIS buy adds to the long: it blocks its own 20 %.
    more = OpenOrder(INFY, Product.MIS, Side.BUY, 5, 150_000)
    assert account.margin_change(RATES, more) == 5 * 150_000 // 5
    # Replacing the first sell by a bigger one opens more of a short.
    bigger = OpenOrder(INFY, Product.MIS, Side.SELL, 10, 151_000)
    assert account.margin_change(RATES, bigger, orders[0]) == 4 * 151_000 // 5
    funds = account.funds(prices, RATES)
    assert funds.available == (
        10_000_000 - funds.position_margin - funds.order_margin + min(0, funds.unrealised)
    )


def test_losses_count_at_once_gains_only_when_realised() -> None:
    account = SimAccount.new("a", 1_000_000)
    account.apply_fill(INFY, Product.MIS, Side.BUY, 10, 1000)
    up = account.funds(marks({INFY: 1100}), RATES)
    down = account.funds(marks({INFY: 900}), RATES)
    assert up.unrealised == 1000
    assert down.unrealised == -1000
    assert up.available == 1_000_000 - up.position_margin
    assert down.available == 1_000_000 - 1000 - down.position_margin


def test_top_up_and_reset() -> None:
    account = SimAccount.new("a", 1_000)
    account.top_up(500)
    account.top_up(-1_200)
    assert account.cash == 300
    with pytest.raises(ValueError, match="cannot withdraw"):
        account.top_up(-301)
    account.realised_day = 77
    account.reset_funds()
    assert (account.cash, account.realised_day) == (1_000, 0)


def test_json_round_trip() -> None:
    account = SimAccount.new("a", 1_000_000)
    account.apply_fill(INFY, Product.MIS, Side.BUY, 10, 1000)
    account.apply_fill(INFY, Product.CNC, Side.BUY, 5, 1000)
    account.apply_fill(NIFTY, Product.NRML, Side.SELL, 75, 2000)
    account.end_day(marks({INFY: 1010, NIFTY: 1990}))
    account.apply_fill(INFY, Product.MIS, Side.SELL, 3, 1020)
    assert SimAccount.from_json("a", account.to_json()) == account


FILLS = st.lists(
    st.tuples(
        st.sampled_from([Product.MIS, Product.CNC, Product.NRML]),
        st.sampled_from(Side),
        st.integers(1, 40),
        st.integers(900, 1100),
        st.integers(900, 1100),
    ),
    max_size=40,
)


@given(FILLS)
@settings(max_examples=200, deadline=None)
def test_equity_moves_only_with_the_marks(fills: list[tuple[Product, Side, int, int, int]]) -> None:
    """Cash + positions value is consistent: a fill at the mark changes nothing, a move of the
    mark changes equity by the net quantity times the move, and a day reset changes nothing."""
    account = SimAccount.new("a", 10**9)
    prices = {"X": 1000}
    for product, side, quantity, price, new_mark in fills:
        if product is Product.CNC and side is Side.SELL and account.sellable("X") < quantity:
            continue  # the broker refuses such a sell (no_holdings)
        prices["X"] = price
        before = account.equity(marks(prices))
        account.apply_fill("X", product, side, quantity, price)
        assert account.equity(marks(prices)) == before
        held = sum(b.quantity for b in account.positions.values()) + sum(
            h.quantity for h in account.holdings.values()
        )
        before = account.equity(marks(prices))
        prices["X"] = new_mark
        assert account.equity(marks(prices)) == before + held * (new_mark - price)
    before = account.equity(marks(prices))
    account.end_day(marks(prices))
    assert account.equity(marks(prices)) == before


# The broker applying them ----------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[SimBroker]:
    broker = make_sim(latency=INSTANT, **QUIET)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


async def filled(sim: SimBroker, side: Side, quantity: int, price: int, product: Product) -> str:
    book = sim.book(INFY)
    request = OrderRequest("default", INFY, side, quantity, price=price, product=product)
    order_id = await sim.place_order("default", book.instrument, request)
    sim.cross(INFY, Side.SELL if side is Side.BUY else Side.BUY, quantity, price)
    assert sim.order(order_id).status is OrderStatus.FILLED
    return order_id


@pytest.mark.anyio
async def test_orders_block_margin_until_they_fill_or_cancel(sim: SimBroker) -> None:
    book = sim.book(INFY)
    request = OrderRequest("default", INFY, Side.BUY, 100, price=149_000)
    order_id = await sim.place_order("default", book.instrument, request)
    assert sim.funds("default").order_margin == 100 * 149_000 // 5
    await sim.cancel_order("default", order_id)
    assert sim.funds("default").order_margin == 0
    await filled(sim, Side.BUY, 100, 149_000, Product.MIS)
    funds = sim.funds("default")
    assert (funds.order_margin, funds.position_margin) == (0, 100 * 149_000 // 5)


@pytest.mark.anyio
async def test_day_of_trading_settles_into_cash_and_holdings(sim: SimBroker) -> None:
    start = sim.funds("default").cash
    await filled(sim, Side.BUY, 10, 150_000, Product.MIS)
    await filled(sim, Side.SELL, 10, 151_000, Product.MIS)
    await filled(sim, Side.BUY, 5, 150_500, Product.CNC)
    funds = sim.funds("default")
    assert funds.realised == 10 * 1_000
    assert funds.cash == start - 5 * 150_500
    positions = {p.product: p for p in await sim.positions("default")}
    assert positions[Product.MIS].quantity == 0
    assert positions[Product.MIS].realised_pnl == 10_000
    assert positions[Product.CNC].quantity == 5
    assert len(await sim.trades("default")) == 3

    sim.trade(INFY, 152_000)
    sim.end_day()
    assert sim.funds("default").cash == start + 10_000 - 5 * 150_500
    assert await sim.positions("default") == []
    assert await sim.trades("default") == []
    (holding,) = await sim.holdings("default")
    assert (holding.quantity, holding.average_price, holding.last_price) == (5, 150_500, 152_000)
    # Shares held overnight may be sold for delivery.
    await filled(sim, Side.SELL, 5, 152_000, Product.CNC)
    assert sim.funds("default").cash == start + 10_000 + 5 * 1_500


@pytest.mark.anyio
async def test_admin_top_up_and_reset(sim: SimBroker) -> None:
    assert sim.top_up("default", 50_000_00) == 1_050_000_00
    assert sim.top_up("default", -1_050_000_00) == 0
    with pytest.raises(Exception, match="cannot withdraw"):
        sim.top_up("default", -1)
    assert sim.reset_funds("default") == 1_000_000_00
