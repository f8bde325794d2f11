"""``quantity_unit``: quantities go to XTS as units (the default) or as lots, and come back as
units either way (order updates, fills, positions, conversions)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from xts_fake import FakeXts

from hft import BrokerRejected, ConfigError, ValidationError
from hft.model import (
    ConnectionEvent,
    ConnectionState,
    Fill,
    ModifyRequest,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    PositionConversion,
    Side,
)

from .conftest import make_broker, streaming, xts_config

pytestmark = pytest.mark.anyio


def sent(server: FakeXts, method: str, key: str) -> list[object]:
    return [b[key] for m, p, b in server.requests if (m, p) == (method, "/interactive/orders")]


@pytest.mark.parametrize(("unit", "per_lot"), [("units", 75), ("lots", 1)])
async def test_quantities_on_the_wire_and_back(
    server: FakeXts, tmp_path: Path, unit: str, per_lot: int
) -> None:
    broker = make_broker(server.url, tmp_path, quantity_unit=unit)
    async with streaming(broker) as events:
        await events.wait(lambda e: isinstance(e, ConnectionEvent))
        assert events.seen[-1].state is ConnectionState.CONNECTED
        future = {i.key: i for i in await broker.instruments()}["NFO:NIFTY26JANFUT"]
        assert future.lot_size == 75
        request = OrderRequest("PRO1", future.key, Side.BUY, 150, price=2400000)
        order_id = await broker.place_order("PRO1", future, request)
        assert sent(server, "POST", "orderQuantity") == [2 * per_lot]
        opened = await events.wait(
            lambda e: isinstance(e, OrderUpdate) and e.status is OrderStatus.OPEN
        )
        assert (opened.quantity, opened.pending_quantity) == (150, 150)

        await broker.modify_order("PRO1", order_id, future, ModifyRequest(quantity=225))
        assert sent(server, "PUT", "modifiedOrderQuantity") == [3 * per_lot]
        await broker.modify_order("PRO1", order_id, future, ModifyRequest(price=2400100))
        # The quantity XTS holds is read back and re-sent unchanged.
        assert sent(server, "PUT", "modifiedOrderQuantity") == [3 * per_lot, 3 * per_lot]

        await server.execute(int(order_id), per_lot, Decimal("24000"))
        fill = await events.wait(lambda e: isinstance(e, Fill))
        assert fill.quantity == 75
        part = await events.wait(
            lambda e: isinstance(e, OrderUpdate) and e.status is OrderStatus.PARTIALLY_FILLED
        )
        assert (part.quantity, part.filled_quantity, part.pending_quantity) == (225, 75, 150)
        (position,) = await broker.positions("PRO1")
        assert (position.quantity, position.buy_quantity) == (75, 75)
        assert [f.quantity for f in await broker.trades("PRO1")] == [75]
        assert [u.filled_quantity for u in await broker.orders("PRO1")] == [75]

        server.convert("PRO1", 35001, "MIS", "NRML", per_lot, segment="NSEFO", key="Q1")
        conversion = await events.wait(lambda e: isinstance(e, PositionConversion))
        assert conversion.quantity == 75


async def test_a_quantity_that_is_not_whole_lots_is_refused_when_sending_lots(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path, quantity_unit="lots")
    await broker.connect()
    try:
        future = {i.key: i for i in await broker.instruments()}["NFO:NIFTY26JANFUT"]
        with pytest.raises(ValidationError, match="whole number of lots"):
            broker.wire_quantity(future, 100)
        request = OrderRequest(
            "PRO1", future.key, Side.BUY, 150, price=2400000, disclosed_quantity=10
        )
        with pytest.raises(BrokerRejected, match="disclosed quantity 10") as caught:
            await broker.place_order("PRO1", future, request)
        assert caught.value.code == "xts_bad_lot"
        assert not sent(server, "POST", "orderQuantity")
    finally:
        await broker.close()


def test_the_option_is_validated_with_a_clear_error() -> None:
    assert xts_config("https://xts.example.com").quantity_unit == "units"
    with pytest.raises(ConfigError, match="quantity_unit: expected one of 'units', 'lots'"):
        xts_config("https://xts.example.com", quantity_unit="contracts")
