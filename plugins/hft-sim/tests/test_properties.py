"""Properties of the whole simulation under random order flow (hypothesis)."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from hft_sim.broker import SimBroker
from hypothesis import given, settings
from hypothesis import strategies as st

from hft import BrokerRejected
from hft.model import (
    TRANSITIONS,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Product,
    Side,
    TimeInForce,
)

from .conftest import make_sim

KEYS = ("NSE:INFY", "NSE:IDEA", "NFO:NIFTY-I")

ORDERS = st.lists(
    st.tuples(
        st.integers(0, 3),  # steps to run first
        st.sampled_from(KEYS),
        st.sampled_from(Side),
        st.integers(-4, 4),  # ticks from the touch on the order's own side
        st.integers(1, 3),  # lots
        st.sampled_from([Product.MIS, Product.CNC]),
        st.sampled_from([TimeInForce.DAY, TimeInForce.IOC]),
        st.sampled_from(["default", "other"]),
        st.booleans(),  # cancel it after the next step
    ),
    max_size=25,
)


def check_books(broker: SimBroker) -> None:
    for book in broker.exchange:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            assert bid < ask, f"{book.key} is crossed: {bid} >= {ask}"
        assert book.band_low <= book.market.last <= book.band_high


async def check_accounts(broker: SimBroker) -> None:
    """Equity = starting cash + Σ over fills of side × quantity × (last price − fill price)."""
    for code in broker.accounts():
        expected = 10_000_000_00
        for fill in await broker.trades(code):
            last = broker.book(fill.instrument).market.last
            expected += fill.side.sign * fill.quantity * (last - fill.price)
        assert broker.equity(code) == expected


async def scenario(orders: list[tuple[Any, ...]], seed: int) -> None:
    broker = make_sim(
        seed=seed,
        accounts={"default": {"cash_paise": 10_000_000_00}, "other": {"cash_paise": 10_000_000_00}},
    )
    await broker.connect()
    try:
        to_cancel: list[tuple[str, str]] = []
        refusals: list[str] = []
        broker.step()
        for steps, key, side, offset, lots, product, tif, account, cancel in orders:
            for _ in range(steps):
                broker.step()
                check_books(broker)
            for code, order_id in to_cancel:
                if not broker.order(order_id).is_terminal:
                    with contextlib.suppress(BrokerRejected):  # one is already on its way
                        await broker.cancel_order(code, order_id)
            to_cancel.clear()
            book = broker.book(key)
            touch = (book.best_bid() if side is Side.BUY else book.best_ask()) or book.market.last
            price = touch + offset * book.tick * (1 if side is Side.BUY else -1)
            if key.startswith("NFO") and product is Product.CNC:
                product = Product.NRML
            request = OrderRequest(
                account,
                key,
                side,
                lots * book.instrument.lot_size,
                price=max(book.band_low, min(book.band_high, price)),
                product=product,
                time_in_force=tif,
            )
            try:
                order_id = await broker.place_order(account, book.instrument, request)
            except BrokerRejected as exc:
                refusals.append(exc.code)
                continue
            check_books(broker)
            if cancel:
                to_cancel.append((account, order_id))
        for _ in range(5):
            broker.step()
        check_books(broker)
        # Only what the account cannot afford or deliver is refused: prices are always good.
        assert set(refusals) <= {"no_holdings", "insufficient_funds"}
        await check_accounts(broker)
        # Once every order is done, no margin stays blocked.
        for code in broker.accounts():
            for update in await broker.orders(code):
                if update.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
                    await broker.cancel_order(code, update.broker_order_id)
        for _ in range(2):
            broker.step()
        for code in broker.accounts():
            assert broker.funds(code).order_margin == 0
        # Every order's updates form a legal path through the state machine.
        seen: dict[str, OrderStatus] = {}
        for event in broker.take_events():
            if isinstance(event, OrderUpdate):
                before = seen.get(event.broker_order_id)
                if before is not None:
                    assert event.status is before or event.status in TRANSITIONS[before]
                seen[event.broker_order_id] = event.status
    finally:
        await broker.close()


@given(ORDERS, st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_books_stay_uncrossed_and_accounts_agree_with_their_trades(
    orders: list[tuple[Any, ...]], seed: int
) -> None:
    anyio.run(scenario, orders, seed, backend="trio")
