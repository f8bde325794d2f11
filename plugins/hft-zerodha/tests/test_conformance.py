"""The shared broker conformance suite, against the fake Kite server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
from hft_zerodha.broker import ZerodhaBroker

from hft.model import Instrument, Side
from hft.testing import BrokerConformance

from .conftest import connected
from .fake_kite import USER_ID, FakeKite, wait_until


@attrs.define
class KiteHarness:
    server: FakeKite
    broker: ZerodhaBroker
    account: str
    instrument: Instrument
    other_instrument: Instrument

    def resting_price(self, side: Side) -> int:
        last = self.server.listing(self.instrument.key).last
        offset = 20 * self.instrument.tick_size
        return last - offset if side is Side.BUY else last + offset

    async def fill(self, broker_order_id: str, quantity: int, price: int) -> None:
        await self.server.execute(broker_order_id, quantity, price)

    async def reject_next(self, reason: str) -> None:
        self.server.reject_reason = reason

    async def move_price(self, instrument: Instrument) -> int:
        # Kite does not acknowledge subscriptions: wait until the server has every one the
        # broker sent, so the trade below reaches exactly the subscribers it should.
        wanted = {token: str(mode) for token, mode in self.broker.subscriptions.items()}
        await wait_until(lambda: self.server.subscriptions() == wanted)
        listing = self.server.listing(instrument.key)
        start = self.server.listing(instrument.key).last
        price = listing.last + instrument.tick_size
        if price > start + 10 * instrument.tick_size:
            price = start - instrument.tick_size
        self.server.trade(instrument.key, price)
        return price

    async def drop_connection(self) -> None:
        await self.server.kick()


class TestKiteConformance(BrokerConformance):
    timeout_s = 5.0

    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[KiteHarness]:
        async with connected(tmp_path) as (server, broker):
            instruments = {i.key: i for i in await broker.instruments()}
            yield KiteHarness(
                server,
                broker,
                USER_ID,
                instruments["NFO:NIFTY26JANFUT"],
                instruments["NSE:INFY"],
            )
