"""The shared broker conformance suite, against the fake XTS install: Pro and dealer logins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import attrs
import pytest
from hft_xts.broker import XtsBroker
from xts_fake import LISTINGS, FakeXts

from hft.model import Instrument, Side
from hft.testing import BrokerConformance

from .conftest import DEALER, PRO, make_broker


@attrs.define
class XtsHarness:
    server: FakeXts
    broker: XtsBroker
    account: str
    instrument: Instrument
    other_instrument: Instrument

    def _last(self, instrument: Instrument) -> int:
        code = LISTINGS[(instrument.segment, instrument.token)][0]
        return instrument.price(self.server.last_price(code, instrument.token))

    def resting_price(self, side: Side) -> int:
        offset = 20 * self.instrument.tick_size
        last = self._last(self.instrument)
        return last - offset if side is Side.BUY else last + offset

    async def fill(self, broker_order_id: str, quantity: int, price: int) -> None:
        await self.server.execute(int(broker_order_id), quantity, self.instrument.decimal(price))

    async def reject_next(self, reason: str) -> None:
        self.server.reject_next(reason)

    async def move_price(self, instrument: Instrument) -> int:
        code = LISTINGS[(instrument.segment, instrument.token)][0]
        price = self._last(instrument) + instrument.tick_size
        await self.server.trade(code, instrument.token, instrument.decimal(price))
        return price

    async def drop_connection(self) -> None:
        await self.server.kick()


async def _harness(
    tmp_path: Path, login: dict[str, str], account: str
) -> AsyncIterator[XtsHarness]:
    async with FakeXts.running() as server:
        broker = make_broker(server.url, tmp_path, login)
        await broker.connect()
        try:
            keys = {i.key: i for i in await broker.instruments()}
            yield XtsHarness(
                server, broker, account, keys["NFO:NIFTY26JANFUT"], keys["NSE:RELIANCE"]
            )
        finally:
            await broker.close()


class TestProConformance(BrokerConformance):
    """An investor ("Pro") login trading its own account."""

    timeout_s: ClassVar[float] = 5.0

    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[XtsHarness]:
        async for harness in _harness(tmp_path, PRO, "PRO1"):
            yield harness


class TestDealerConformance(BrokerConformance):
    """A dealer login serving two clients on the dealer routes."""

    timeout_s: ClassVar[float] = 5.0

    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[XtsHarness]:
        async for harness in _harness(tmp_path, DEALER, "CL1"):
            yield harness
