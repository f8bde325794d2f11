"""The shared broker conformance suite, on a manual clock and on the real-time clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import attrs
import pytest
from hft_sim.broker import SimBroker

from hft.model import Instrument, Side
from hft.testing import BrokerConformance

from .conftest import INSTANT, make_sim

ACCOUNT = "default"
#: Market makers quote far from fair value (200 ticks) and fair value barely moves, so the
#: suite's orders, 20 ticks from the reference price, are the best bid and offer: only the
#: harness fills them. Noise takers are off for the same reason.
HARNESS: dict[str, Any] = {
    "accounts": {ACCOUNT: {"cash_paise": 10_000_000_000}, "other": {}},
    "market_makers": {"half_spread_ticks": 200},
    "noise_takers": {"enabled": False},
    "fair_value": {"volatility_annual_pct": 0.01},
}


@attrs.define
class SimHarness:
    broker: SimBroker
    account: str
    instrument: Instrument
    other_instrument: Instrument
    steps: bool  # step a manual clock after moving a price, so its tick goes out

    def resting_price(self, side: Side) -> int:
        listing = self.broker.book(self.instrument.key).listing
        offset = 20 * self.instrument.tick_size
        return listing.price - offset if side is Side.BUY else listing.price + offset

    async def fill(self, broker_order_id: str, quantity: int, price: int) -> None:
        side = self.broker.order(broker_order_id).request.side
        other = Side.SELL if side is Side.BUY else Side.BUY
        self.broker.cross(self.instrument.key, other, quantity, price)

    async def reject_next(self, reason: str) -> None:
        # The sim refuses orders for its own reasons; an empty account is one.
        self.broker.top_up(self.account, -self.broker.funds(self.account).cash)

    async def move_price(self, instrument: Instrument) -> int:
        book = self.broker.book(instrument.key)
        tick = instrument.tick_size
        last = book.market.last
        price = last + tick if last <= book.listing.price else last - tick
        self.broker.trade(instrument.key, price)
        if self.steps:
            self.broker.step()
        return price

    async def drop_connection(self) -> None:
        self.broker.drop_connection()


async def _harness(steps: bool, **settings: Any) -> AsyncIterator[SimHarness]:
    broker = make_sim(**HARNESS, **settings)
    await broker.connect()
    try:
        yield SimHarness(
            broker,
            ACCOUNT,
            broker.book("NFO:NIFTY-I").instrument,
            broker.book("NSE:INFY").instrument,
            steps,
        )
    finally:
        await broker.close()


class TestManualClockConformance(BrokerConformance):
    """Zero latency, a clock the harness steps."""

    @pytest.fixture
    async def harness(self) -> AsyncIterator[SimHarness]:
        async for harness in _harness(True, clock="manual", latency=INSTANT):
            yield harness


class TestRealtimeClockConformance(BrokerConformance):
    """The default latency model, and the clock driven by the event stream's reader."""

    settle_s: ClassVar[float] = 0.05

    @pytest.fixture
    async def harness(self) -> AsyncIterator[SimHarness]:
        async for harness in _harness(False, clock="realtime", step_ms=20):
            yield harness
