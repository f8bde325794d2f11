"""Every built-in risk rule and the kill switch, exercised through the OMS of a running host."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from hft import RiskRejected, ValidationError
from hft._risk import KillSwitchMode
from hft.model import Environment, OrderRequest, OrderStatus, OrderType, Role, Side, User
from hft.testing import Services, TestBroker, make_host
from hft.testing import _plugin as test_broker_plugin

TRADER = User("tara", Role.TRADER, Environment.LIVE, accounts=("acct",))
INFY, RELIANCE, TCS = "NSE:INFY", "NSE:RELIANCE", "NSE:TCS"
PRICES = {INFY: 150_000, RELIANCE: 125_000, TCS: 400_000}


def order(
    quantity: int = 1,
    price: int | None = None,
    *,
    side: Side = Side.BUY,
    instrument: str = INFY,
    market: bool = False,
) -> OrderRequest:
    if market:
        return OrderRequest("acct", instrument, side, quantity, order_type=OrderType.MARKET)
    return OrderRequest("acct", instrument, side, quantity, price=price or PRICES[instrument])


async def eventually(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    with anyio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - state owned by the host's tasks
            await anyio.sleep(0.001)


def host_with(risk: dict[str, dict[str, Any]]) -> Any:
    config = {
        "brokers": {"t": {"plugin": "test"}},
        "accounts": {"acct": {"broker": "t", "environment": "live"}},
        "risk": risk,
    }
    return make_host({"test": test_broker_plugin}, config)


@pytest.fixture
def risk() -> dict[str, dict[str, Any]]:
    return {}


@pytest.fixture
async def services(risk: dict[str, dict[str, Any]]) -> AsyncIterator[Services]:
    async with host_with(risk).running() as running:
        await eventually(lambda: running.brokers["t"].ready)
        # Prices reach the hub (and so risk and marks) through a subscription, as for a client.
        prices = running.hub.subscribe(list(PRICES))
        await eventually(lambda: all(running.hub.last_price(i) for i in PRICES))
        yield running
        prices.close()


def venue(services: Services) -> Any:
    broker = services.brokers["t"].broker
    assert isinstance(broker, TestBroker)
    return broker.venue


async def accepted(services: Services, request: OrderRequest) -> None:
    (placed,) = await services.oms.submit(TRADER, request)
    assert placed.status is not OrderStatus.REJECTED


async def refused(services: Services, request: OrderRequest, code: str) -> None:
    before = len(services.oms.orders(TRADER))
    with pytest.raises(RiskRejected) as info:
        await services.oms.submit(TRADER, request)
    assert info.value.code == code
    assert info.value.message  # a reason a person can read
    assert len(services.oms.orders(TRADER)) == before  # a refusal creates nothing


Case = Callable[[Services], Awaitable[None]]


async def max_order_quantity(services: Services) -> None:
    await accepted(services, order(100))
    await refused(services, order(101), "max_order_quantity")


async def max_order_value(services: Services) -> None:
    await accepted(services, order(10))  # 10 x 1,500.00 = 15,000.00, the limit
    await refused(services, order(11), "max_order_value")
    await refused(services, order(11, market=True), "max_order_value")  # valued at last price


async def price_band(services: Services) -> None:
    await accepted(services, order(1, 151_500))  # +1.00 % of 1,500.00
    await accepted(services, order(1, 148_500))
    await refused(services, order(1, 151_505), "price_band")


async def max_position(services: Services) -> None:
    await accepted(services, order(15))
    await accepted(services, order(5))  # resting orders count: 20 could fill
    await refused(services, order(1), "max_position_quantity")
    await accepted(services, order(5, side=Side.SELL))  # reducing is always fine


async def max_account_position(services: Services) -> None:
    await accepted(services, order(20))
    await accepted(services, order(10, instrument=RELIANCE))
    (first,) = services.oms.orders(TRADER)[:1]
    venue(services).fill(first.broker_order_id, 20)
    await eventually(lambda: services.oms.get(TRADER, first.order_id).status is OrderStatus.FILLED)
    await refused(services, order(11, instrument=TCS), "max_account_position_quantity")


async def max_open_orders(services: Services) -> None:
    for _ in range(3):
        await accepted(services, order(1))
    await refused(services, order(1), "max_open_orders")


async def order_rate(services: Services) -> None:
    await accepted(services, order(1))
    await accepted(services, order(1))
    await refused(services, order(1), "order_rate_per_second")


async def daily_loss_limit(services: Services) -> None:
    await accepted(services, order(10))
    (bought,) = services.oms.orders(TRADER)
    venue(services).fill(bought.broker_order_id, 10, 150_000)
    await eventually(lambda: services.oms.get(TRADER, bought.order_id).status is OrderStatus.FILLED)
    venue(services).set_last_price(INFY, 149_800)  # 10 x -2.00 = -20.00 on the day
    await eventually(lambda: services.hub.last_price(INFY) == 149_800)
    await refused(services, order(1, 149_800), "daily_loss_limit")
    assert services.risk.effective_kill_switch("acct") is KillSwitchMode.HALT
    stored = await services.storage.get_state("risk", "kill_switch")
    assert stored is not None
    assert b"acct" in stored  # tripped switch is durable
    await refused(services, order(1, 149_800, side=Side.SELL), "kill_switch_halt")


CASES: list[tuple[str, dict[str, Any], Case]] = [
    ("max_order_quantity", {"max_quantity": 100}, max_order_quantity),
    ("max_order_value", {"max_value_paise": 1_500_000}, max_order_value),
    ("price_band", {"max_deviation_bps": 100}, price_band),
    ("max_position", {"max_quantity": 20}, max_position),
    ("max_account_position", {"max_quantity": 30}, max_account_position),
    ("max_open_orders", {"max_open_orders": 3}, max_open_orders),
    ("order_rate", {"max_per_second": 2}, order_rate),
    ("daily_loss_limit", {"max_loss_paise": 1_000}, daily_loss_limit),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("risk", "case"),
    [pytest.param({name: values}, case, id=name) for name, values, case in CASES],
)
async def test_each_rule_accepts_up_to_its_limit_and_refuses_past_it(
    services: Services, case: Case
) -> None:
    await case(services)


@pytest.mark.anyio
async def test_instrument_rules_refuse_before_the_chain(services: Services) -> None:
    for request, code in [
        (order(1, 150_001), "off_tick"),
        (order(10, 2_350_000, instrument="NFO:NIFTY25JANFUT"), "bad_lot"),
        (order(75 * 25, 2_350_000, instrument="NFO:NIFTY25JANFUT"), "freeze_quantity"),
    ]:
        with pytest.raises(ValidationError) as info:
            await services.oms.submit(TRADER, request)
        assert info.value.code == code
    assert services.oms.orders(TRADER) == []


@pytest.mark.anyio
async def test_the_manual_kill_switch_halts_or_allows_only_reductions(services: Services) -> None:
    await accepted(services, order(10))
    (bought,) = services.oms.orders(TRADER)
    venue(services).fill(bought.broker_order_id, 10, 150_000)
    await eventually(lambda: services.oms.get(TRADER, bought.order_id).status is OrderStatus.FILLED)

    await services.risk.set_kill_switch("reduce_only", account="acct", reason="drill", by="root")
    await refused(services, order(1), "kill_switch_reduce_only")
    await refused(services, order(11, side=Side.SELL), "kill_switch_reduce_only")  # would flip
    await accepted(services, order(4, side=Side.SELL))

    await services.risk.set_kill_switch("halt", reason="exchange outage", by="root")  # global
    await refused(services, order(1, side=Side.SELL), "kill_switch_halt")

    await services.risk.set_kill_switch("off", reason="resolved", by="root")
    await services.risk.set_kill_switch("off", account="acct", reason="resolved", by="root")
    await accepted(services, order(1))
    audit = await services.storage.audit_entries("kill_switch")
    assert [entry["mode"] for entry in audit][:2] == ["off", "off"]
    assert len(audit) == 4
