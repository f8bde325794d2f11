"""Same seed and same orders: the same market data, order ids, fills and timestamps."""

from __future__ import annotations

import pytest

from hft.contracts import BrokerEvent
from hft.model import Fill, OrderRequest, OrderType, Product, Side, StreamMode, Tick

from .conftest import make_sim


async def run(seed: int, steps: int = 120) -> list[BrokerEvent]:
    """A scripted session on the default latency model (order 2 ms, report 1 ms, jitter)."""
    broker = make_sim(seed=seed)
    await broker.connect()
    events: list[BrokerEvent] = []
    try:
        instruments = await broker.instruments()
        await broker.subscribe(instruments, StreamMode.FULL)
        infy = broker.book("NSE:INFY")
        nifty = broker.book("NFO:NIFTY-I")
        resting = ""
        for i in range(steps):
            broker.step()
            if i == 10:  # marketable: takes the offer
                ask = infy.best_ask()
                assert ask is not None
                order = OrderRequest("default", infy.key, Side.BUY, 50, price=ask)
                await broker.place_order("default", infy.instrument, order)
            if i == 20:  # rests at the bid, filled by noise takers later (or not)
                bid = nifty.best_bid()
                assert bid is not None
                order = OrderRequest(
                    "default", nifty.key, Side.BUY, 75, price=bid, product=Product.NRML
                )
                resting = await broker.place_order("default", nifty.instrument, order)
            if i == 40:
                market = OrderRequest(
                    "default", infy.key, Side.SELL, 20, order_type=OrderType.MARKET
                )
                await broker.place_order("default", infy.instrument, market)
            if i == 60 and broker.order(resting).status.value != "FILLED":
                await broker.cancel_order("default", resting)
            events.extend(broker.take_events())
    finally:
        await broker.close()
    events.extend(broker.take_events())
    return events


@pytest.mark.anyio
async def test_same_seed_same_orders_same_everything() -> None:
    first, second = await run(7), await run(7)
    assert first == second
    fills = [e for e in first if isinstance(e, Fill)]
    ticks = [e for e in first if isinstance(e, Tick)]
    assert fills, "the script was meant to trade"
    assert len(ticks) > 1000
    assert len({t.last_price for t in ticks if t.instrument == "NSE:INFY"}) > 3, "no movement"


@pytest.mark.anyio
async def test_another_seed_another_market() -> None:
    def prices(events: list[BrokerEvent]) -> list[tuple[str, int]]:
        return [(e.instrument, e.last_price) for e in events if isinstance(e, Tick)]

    assert prices(await run(7, steps=30)) != prices(await run(8, steps=30))
