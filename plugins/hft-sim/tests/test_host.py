"""The sim broker inside a running host: the OMS, sim users, the hub and the start-up hook."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog.testing
from hft_sim import monitor, plugin
from hft_sim.broker import SimBroker

import hft.testing._plugin
import hft_ext.plugin
from hft import AuthError
from hft._config import config_from_mapping, resolve_config
from hft._host import Host, Services
from hft._plugins import PluginHost
from hft.model import (
    Environment,
    OrderRequest,
    OrderStatus,
    OrderType,
    Role,
    Side,
    StreamMode,
    Tick,
    User,
)

from .conftest import INSTANT

INFY = "NSE:INFY"


def make_host(config: Mapping[str, Any]) -> Host:
    """A host with the core's built-ins, the ``ext`` engine, the sim and the ``test`` broker."""
    plugins = PluginHost.from_modules(
        {"ext": hft_ext.plugin, "sim": plugin, "test": hft.testing._plugin}
    )
    tree = {key: dict(value) for key, value in config.items()}
    tree.setdefault("storage", {}).setdefault("url", "memory://")
    return Host(resolve_config(config_from_mapping(tree), plugins), plugins)


async def ready(services: Services) -> None:
    with anyio.fail_after(5):
        while not all(h.ready for h in services.brokers.values()):  # noqa: ASYNC110
            await anyio.sleep(0.005)


async def settled(services: Services, user: User, order_id: str, status: OrderStatus) -> None:
    with anyio.fail_after(5):
        while services.oms.get(user, order_id).status is not status:  # noqa: ASYNC110
            await anyio.sleep(0.002)


@pytest.fixture
async def two_accounts() -> AsyncIterator[Services]:
    config = {
        "brokers": {
            "sim": {
                "environment": "sim",
                "clock": "manual",
                "latency": INSTANT,
                "accounts": {"A": {}, "B": {}},
                # Quotes 5 ticks either side of fair value, nobody taking: room inside.
                "market_makers": {"half_spread_ticks": 5},
                "noise_takers": {"enabled": False},
            }
        },
        "accounts": {
            "alice": {"broker": "sim", "broker_account": "A"},
            "bob": {"broker": "sim", "broker_account": "B"},
        },
    }
    async with make_host(config).running() as services:
        await ready(services)
        broker = services.brokers["sim"].broker
        assert isinstance(broker, SimBroker)
        broker.step()  # the market makers quote
        yield services


@pytest.mark.anyio
async def test_two_accounts_cross_each_other_and_both_see_the_fill(
    two_accounts: Services,
) -> None:
    services = two_accounts
    broker = services.brokers["sim"].broker
    assert isinstance(broker, SimBroker)
    assert services.accounts["alice"].environment is Environment.SIM  # from the sim broker
    alice = User("alice", Role.TRADER, Environment.SIM, accounts=("alice",))
    bob = User("bob", Role.TRADER, Environment.SIM, accounts=("bob",))
    book = broker.book(INFY)
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is not None
    assert ask is not None
    assert ask - bid >= 4 * book.tick
    price = bid + 2 * book.tick  # inside the spread: the best bid once Alice is there

    (buy,) = await services.oms.submit(
        alice, OrderRequest("alice", INFY, Side.BUY, 25, price=price)
    )
    await settled(services, alice, buy.order_id, OrderStatus.OPEN)
    assert book.best_bid() == price
    (sell,) = await services.oms.submit(bob, OrderRequest("bob", INFY, Side.SELL, 25, price=price))
    await settled(services, alice, buy.order_id, OrderStatus.FILLED)
    await settled(services, bob, sell.order_id, OrderStatus.FILLED)

    for user, account, signed in ((alice, "alice", 25), (bob, "bob", -25)):
        order = services.oms.get(user, buy.order_id if account == "alice" else sell.order_id)
        assert (order.filled_quantity, order.average_price) == (25, price)
        (position,) = services.portfolio.positions(account)
        assert position.quantity == signed
    # The broker's books say the same, each account seeing its own side of the one trade.
    (a_fill,) = await broker.trades("A")
    (b_fill,) = await broker.trades("B")
    assert (a_fill.side, b_fill.side) == (Side.BUY, Side.SELL)
    assert a_fill.price == b_fill.price == price
    assert a_fill.fill_id != b_fill.fill_id
    assert [p.quantity for p in await broker.positions("A")] == [25]
    assert [p.quantity for p in await broker.positions("B")] == [-25]


@pytest.mark.anyio
async def test_an_account_never_trades_with_itself(two_accounts: Services) -> None:
    services = two_accounts
    broker = services.brokers["sim"].broker
    assert isinstance(broker, SimBroker)
    alice = User("alice", Role.TRADER, Environment.SIM, accounts=("alice",))
    book = broker.book(INFY)
    bid = book.best_bid()
    assert bid is not None
    price = bid + 2 * book.tick
    (buy,) = await services.oms.submit(alice, OrderRequest("alice", INFY, Side.BUY, 5, price=price))
    await settled(services, alice, buy.order_id, OrderStatus.OPEN)
    (sell,) = await services.oms.submit(
        alice, OrderRequest("alice", INFY, Side.SELL, 5, price=price)
    )
    await settled(services, alice, sell.order_id, OrderStatus.CANCELLED)
    assert "self-trade" in services.oms.get(alice, sell.order_id).reason
    assert services.oms.get(alice, buy.order_id).status is OrderStatus.OPEN


@pytest.mark.anyio
async def test_a_sim_user_trades_sim_accounts_and_is_refused_live_ones() -> None:
    config = {
        "brokers": {
            "sim": {"environment": "sim", "clock": "manual", "latency": INSTANT},
            "live": {"plugin": "test", "environment": "live", "instant": True},
        },
        "accounts": {
            "paper": {"broker": "sim"},  # a sim broker's account: sim unless said otherwise
            "real": {"broker": "live"},
        },
    }
    async with make_host(config).running() as services:
        await ready(services)
        assert services.accounts["paper"].environment is Environment.SIM
        assert services.accounts["real"].environment is Environment.LIVE
        sim_broker = services.brokers["sim"].broker
        assert isinstance(sim_broker, SimBroker)
        sim_broker.step()
        simon = User("simon", Role.TRADER, Environment.SIM, accounts=("paper", "real"))

        market = OrderRequest("paper", INFY, Side.BUY, 3, order_type=OrderType.MARKET)
        (order,) = await services.oms.submit(simon, market)
        await settled(services, simon, order.order_id, OrderStatus.FILLED)

        live = OrderRequest("real", INFY, Side.BUY, 3, order_type=OrderType.MARKET)
        with pytest.raises(AuthError) as info:
            await services.oms.submit(simon, live)
        assert info.value.code == "forbidden"
        assert "can never trade live account" in info.value.message
        assert await services.brokers["live"].broker.orders("default") == []
        assert [o.request.account for o in services.oms.orders(simon)] == ["paper"]


@pytest.mark.anyio
async def test_with_no_configuration_the_sim_serves_the_default_account() -> None:
    async with make_host({}).running() as services:
        assert list(services.brokers) == ["sim"]
        assert services.accounts["sim"].environment is Environment.SIM
        assert services.accounts["sim"].broker_account == "default"
        await ready(services)
        broker = services.brokers["sim"].broker
        assert isinstance(broker, SimBroker)
        assert broker.config.clock == "realtime"
        assert len(services.brokers["sim"].instruments) == 20
        trader = User("t", Role.TRADER, Environment.SIM, accounts=("sim",))
        market = OrderRequest("sim", INFY, Side.BUY, 1, order_type=OrderType.MARKET)
        # The market makers quote within a step (200 ms) of the start.
        with anyio.fail_after(5):
            while broker.book(INFY).best_ask() is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        (order,) = await services.oms.submit(trader, market)
        await settled(services, trader, order.order_id, OrderStatus.FILLED)
        # The start-up hook subscribed the universe: the hub has a snapshot of every instrument.
        with anyio.fail_after(5):
            while any(services.hub.latest(k) is None for k in services.brokers["sim"].instruments):  # noqa: ASYNC110
                await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_the_start_up_hook_logs_the_market_and_stops_at_shutdown() -> None:
    config = {
        "brokers": {
            "sim": {
                "environment": "sim",
                "step_ms": 20,
                "market_log_interval_s": 0.1,
                "market_log_instruments": 3,
            }
        }
    }
    with structlog.testing.capture_logs() as logs:
        async with make_host(config).running() as services:
            await ready(services)
            with anyio.fail_after(5):
                while sum(e["event"] == "sim.market" for e in logs) < 3:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            (line,) = monitor._RUNNING[id(services)]
            count = sum(e["event"] == "sim.market" for e in logs)
        assert id(services) not in monitor._RUNNING
        assert not line._active
        line._due = 0.0  # due at once, were it still active
        line._on_event("sim", Tick("NSE:INFY", StreamMode.LTP, 1))
        assert sum(e["event"] == "sim.market" for e in logs) == count
        assert not any(e["event"] == "broker.subscribe_failed" for e in logs)
    markets = [e for e in logs if e["event"] == "sim.market"]
    last = markets[-1]
    assert last["broker"] == "sim"
    assert last["instruments"] == 20
    assert last["ticks"] > 0
    shown = {k: v for k, v in last.items() if k in ("RELIANCE", "BHARTIARTL", "MARUTI")}
    assert len(shown) == 3, last
    for text in shown.values():
        price, touch, _, volume = text.split(" ")
        assert price.count(".") == 1
        assert touch.startswith("[")
        assert int(volume) >= 0
    assert [e["event"] for e in logs].count("sim.connected") == 1


@pytest.mark.anyio
async def test_no_market_line_when_turned_off() -> None:
    config = {"brokers": {"sim": {"environment": "sim", "market_log_interval_s": 0}}}
    async with make_host(config).running() as services:
        assert monitor._RUNNING.get(id(services)) is None


@pytest.mark.anyio
async def test_modify_and_cancel_through_the_oms(two_accounts: Services) -> None:
    from hft.model import ModifyRequest

    services = two_accounts
    broker = services.brokers["sim"].broker
    assert isinstance(broker, SimBroker)
    alice = User("alice", Role.TRADER, Environment.SIM, accounts=("alice",))
    book = broker.book(INFY)
    bid = book.best_bid()
    assert bid is not None
    (order,) = await services.oms.submit(
        alice, OrderRequest("alice", INFY, Side.BUY, 10, price=bid - 10 * book.tick)
    )
    await settled(services, alice, order.order_id, OrderStatus.OPEN)
    await services.oms.modify(alice, order.order_id, ModifyRequest(quantity=20, price=bid))
    # No latency: the book has the change by the time modify returns.
    broker_order_id = services.oms.get(alice, order.order_id).broker_order_id
    assert broker_order_id is not None
    assert broker.order(broker_order_id).request.quantity == 20
    assert book.best_bid() == bid
    await settled(services, alice, order.order_id, OrderStatus.OPEN)
    assert services.oms.get(alice, order.order_id).request.quantity == 20
    await services.oms.cancel(alice, order.order_id)
    await settled(services, alice, order.order_id, OrderStatus.CANCELLED)
    assert broker.funds("A").order_margin == 0


@pytest.mark.anyio
async def test_a_restarted_host_finds_its_open_orders_at_the_sim(tmp_path: Path) -> None:
    config = {
        "storage": {"url": f"sqlite:///{tmp_path / 'hft.db'}"},
        "brokers": {
            "sim": {"environment": "sim", "clock": "manual", "latency": INSTANT, "seed": 3}
        },
    }
    trader = User("t", Role.TRADER, Environment.SIM, accounts=("sim",))
    async with make_host(config).running() as services:
        await ready(services)
        broker = services.brokers["sim"].broker
        assert isinstance(broker, SimBroker)
        broker.step()
        bid = broker.book(INFY).best_bid()
        assert bid is not None
        (order,) = await services.oms.submit(
            trader, OrderRequest("sim", INFY, Side.BUY, 5, price=bid - 50)
        )
        await settled(services, trader, order.order_id, OrderStatus.OPEN)
    with structlog.testing.capture_logs() as logs:
        async with make_host(config).running() as services:
            await ready(services)
            assert services.oms.get(trader, order.order_id).status is OrderStatus.OPEN
            await services.oms.cancel(trader, order.order_id)
            await settled(services, trader, order.order_id, OrderStatus.CANCELLED)
    (report,) = [e for e in logs if e["event"] == "oms.reconciled"]
    assert (report["changes"], report["unknown"], report["mismatches"]) == (0, 0, 0)
