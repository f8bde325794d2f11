"""The xts broker inside a running host: the OMS places through it, its events drive orders,
and after a dropped connection the host reconciles."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anyio
import hft_xts.plugin
import pytest
from xts_fake import FakeXts

from hft._config import config_from_mapping, resolve_config
from hft._host import Host, Services
from hft._plugins import PluginHost
from hft.model import Environment, OrderRequest, OrderStatus, Product, Role, Side, User

from .conftest import DEALER, FAST, MD, PRO


def host(url: str, data_dir: Path) -> Host:
    plugins = PluginHost.from_modules({"xts": hft_xts.plugin})
    tree = {
        "host": {"data_dir": str(data_dir)},
        "storage": {"url": "memory://"},
        "brokers": {"dealer": {"plugin": "xts", "url": url, **DEALER, **MD, **FAST}},
        "accounts": {
            "one": {"broker": "dealer", "broker_account": "CL1"},
            "two": {"broker": "dealer", "broker_account": "CL2"},
        },
    }
    return Host(resolve_config(config_from_mapping(tree), plugins), plugins)


async def until(check: Callable[[], bool], what: str) -> None:
    with anyio.fail_after(5):
        while not check():  # noqa: ASYNC110 - polling the host's state is the point here
            await anyio.sleep(0.01)


async def settled(services: Services, user: User, order_id: str, status: OrderStatus) -> None:
    await until(lambda: services.oms.get(user, order_id).status is status, f"{order_id} {status}")


@pytest.mark.anyio
async def test_a_dealer_trades_two_clients_through_the_oms(server: FakeXts, tmp_path: Path) -> None:
    async with host(server.url, tmp_path).running() as services:
        handle = services.brokers["dealer"]
        await until(lambda: handle.ready, "broker ready")
        trader = User("t", Role.TRADER, Environment.LIVE, accounts=("one", "two"))
        (order,) = await services.oms.submit(
            trader, OrderRequest("one", "NSE:RELIANCE", Side.BUY, 4, price=129000)
        )
        await settled(services, trader, order.order_id, OrderStatus.OPEN)
        broker_id = services.oms.get(trader, order.order_id).broker_order_id
        assert broker_id is not None
        assert server.orders[int(broker_id)]["ClientID"] == "CL1"

        await server.execute(int(broker_id), 1, Decimal("1290"))
        await settled(services, trader, order.order_id, OrderStatus.PARTIALLY_FILLED)

        # The connection drops; the rest fills meanwhile; the host reconciles after RESYNCED.
        await server.kick()
        await server.execute(int(broker_id), 3, Decimal("1290"))
        await settled(services, trader, order.order_id, OrderStatus.FILLED)
        await until(lambda: handle.ready, "broker ready again")
        assert services.oms.get(trader, order.order_id).filled_quantity == 4

        (other,) = await services.oms.submit(
            trader, OrderRequest("two", "NSE:RELIANCE", Side.SELL, 2, price=131000)
        )
        await settled(services, trader, other.order_id, OrderStatus.OPEN)
        await services.oms.cancel(trader, other.order_id)
        await settled(services, trader, other.order_id, OrderStatus.CANCELLED)


def pro_host(url: str, data_dir: Path, **settings: object) -> Host:
    plugins = PluginHost.from_modules({"xts": hft_xts.plugin})
    tree = {
        "host": {"data_dir": str(data_dir)},
        "storage": {"url": f"sqlite:///{data_dir / 'hft.db'}"},
        "brokers": {"pro": {"plugin": "xts", "url": url, **PRO, **MD, **FAST, **settings}},
        "accounts": {"main": {"broker": "pro", "broker_account": "PRO1"}},
    }
    return Host(resolve_config(config_from_mapping(tree), plugins), plugins)


def products(services: Services) -> dict[Product, int]:
    return {p.product: p.quantity for p in services.portfolio.positions("main") if p.quantity}


@pytest.mark.anyio
async def test_a_trade_conversion_moves_the_position_and_survives_a_restart(
    server: FakeXts, tmp_path: Path
) -> None:
    trader = User("t", Role.TRADER, Environment.LIVE, accounts=("main",))
    async with pro_host(server.url, tmp_path).running() as services:
        handle = services.brokers["pro"]
        await until(lambda: handle.ready, "broker ready")
        (order,) = await services.oms.submit(
            trader, OrderRequest("main", "NSE:RELIANCE", Side.BUY, 10, price=129000)
        )
        await settled(services, trader, order.order_id, OrderStatus.OPEN)
        broker_id = services.oms.get(trader, order.order_id).broker_order_id
        assert broker_id is not None
        await server.execute(int(broker_id), 10, Decimal("1290"))
        await until(lambda: products(services) == {Product.MIS: 10}, "filled")

        server.convert("PRO1", 2885, "MIS", "NRML", 4, side="Buy", success=False)  # refused
        server.convert("PRO1", 2885, "MIS", "NRML", 6, side="Buy", key="C1")
        server.convert("PRO1", 2885, "MIS", "NRML", 6, side="Buy", key="C1")  # a repeat
        await until(lambda: products(services) == {Product.MIS: 4, Product.NRML: 6}, "converted")
        # A later event is applied after the repeat: had the repeat counted, MIS would be 0.
        server.convert("PRO1", 2885, "MIS", "NRML", 1, side="Buy", key="C2")
        await until(
            lambda: products(services) == {Product.MIS: 3, Product.NRML: 7}, "converted again"
        )
        nrml = next(p for p in services.portfolio.positions("main") if p.product is Product.NRML)
        assert nrml.average_price == 129000
        await services.oms.flush()
    async with pro_host(server.url, tmp_path).running() as services:
        assert products(services) == {Product.MIS: 3, Product.NRML: 7}
        # Stopped only once connected: a broker closed mid-login is another story.
        await until(lambda: services.brokers["pro"].ready, "broker ready after the restart")
        assert products(services) == {Product.MIS: 3, Product.NRML: 7}
