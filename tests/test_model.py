from __future__ import annotations

import datetime as dt
from decimal import Decimal

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hft import IllegalTransition, ValidationError
from hft.model import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    Account,
    Environment,
    Instrument,
    ModifyRequest,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Role,
    Side,
    TimeInForce,
    User,
    converter,
    format_price,
    from_price_units,
    to_price_units,
)

INFY = Instrument(exchange="NSE", symbol="INFY", token=408065, tick_size=5, lot_size=1)
NIFTY_FUT = Instrument(
    exchange="NFO", symbol="NIFTY26NOVFUT", token=13238786, tick_size=10, lot_size=75
)

scales = st.integers(min_value=0, max_value=8)


@given(units=st.integers(min_value=-(10**15), max_value=10**15), scale=scales)
def test_price_units_round_trip_through_decimal_and_string(units: int, scale: int) -> None:
    assert to_price_units(from_price_units(units, scale), scale) == units
    text = format_price(units, scale)
    assert to_price_units(text, scale) == units
    assert Decimal(text) == from_price_units(units, scale)


@given(
    digits=st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9
    ),
    scale=scales,
)
def test_decimal_to_units_is_exact_or_refused(digits: Decimal, scale: int) -> None:
    try:
        units = to_price_units(digits, scale)
    except ValidationError:
        assert digits.scaleb(scale) != digits.scaleb(scale).to_integral_value()
    else:
        assert from_price_units(units, scale) == digits


def test_price_conversion_examples() -> None:
    assert to_price_units("1234.05", 2) == 123405
    assert to_price_units("0.0025", 4) == 25
    assert to_price_units(12, 2) == 1200
    assert format_price(5, 2) == "0.05"
    assert format_price(-123405, 2) == "-1234.05"
    assert format_price(7, 0) == "7"


@pytest.mark.parametrize("bad", ["1.005", "abc", "NaN", "Infinity", ""])
def test_unrepresentable_prices_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        to_price_units(bad, 2)


def test_binary_floats_are_refused() -> None:
    with pytest.raises(ValidationError, match="binary floats"):
        to_price_units(1.05, 2)  # type: ignore[arg-type]


@given(
    ticks=st.integers(min_value=1, max_value=10**8), offset=st.integers(min_value=1, max_value=4)
)
def test_prices_off_the_tick_grid_are_refused(ticks: int, offset: int) -> None:
    on_grid = ticks * INFY.tick_size
    assert INFY.price(INFY.format(on_grid)) == on_grid
    with pytest.raises(ValidationError, match="tick size") as info:
        INFY.price(INFY.format(on_grid + offset))
    assert info.value.code == "off_tick"


def test_quantity_must_be_whole_lots() -> None:
    NIFTY_FUT.check_quantity(150)
    with pytest.raises(ValidationError) as info:
        NIFTY_FUT.check_quantity(100)
    assert info.value.code == "bad_lot"
    with pytest.raises(ValidationError):
        NIFTY_FUT.check_quantity(0)


def _order(**overrides: object) -> Order:
    fields: dict[str, object] = {
        "account": "acct",
        "instrument": INFY.key,
        "side": Side.BUY,
        "quantity": 10,
        "price": 150000,
    }
    fields.update(overrides)
    return Order("o1", OrderRequest(**fields), user="alice")  # type: ignore[arg-type]


statuses = st.sampled_from(list(OrderStatus))


@given(path=st.lists(statuses, max_size=12))
def test_state_machine_follows_the_transition_table(path: list[OrderStatus]) -> None:
    order = _order()
    for status in path:
        before = order.status
        if status in TRANSITIONS[before]:
            order.transition(status, reason="r")
            assert order.status is status
            assert order.history[-1].status is status
        else:
            with pytest.raises(IllegalTransition):
                order.transition(status)
            assert order.status is before
    assert order.history[0].status is OrderStatus.NEW
    for a, b in zip(order.history, order.history[1:], strict=False):
        assert b.status in TRANSITIONS[a.status]


def test_terminal_states_have_no_exits_and_are_reachable() -> None:
    for status in TERMINAL_STATUSES:
        assert TRANSITIONS[status] == frozenset()
        assert any(status in exits for exits in TRANSITIONS.values())
    assert set(TRANSITIONS) == set(OrderStatus)


def test_typical_lifecycle_and_illegal_move() -> None:
    order = _order()
    for status in (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED):
        order.transition(status)
    order.record_fill(4, 150000)
    order.record_fill(6, 149995)
    order.transition(OrderStatus.FILLED)
    assert order.filled_quantity == 10
    assert order.average_price == Decimal(4 * 150000 + 6 * 149995) / 10
    with pytest.raises(IllegalTransition, match="FILLED -> OPEN"):
        order.transition(OrderStatus.OPEN)
    with pytest.raises(ValidationError):
        order.record_fill(1, 150000)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"price": None}, "missing_price"),
        ({"order_type": OrderType.MARKET}, "unexpected_price"),
        ({"order_type": OrderType.STOP_LIMIT}, "missing_trigger"),
        ({"trigger_price": 100}, "unexpected_trigger"),
        ({"quantity": 0}, "bad_quantity"),
        ({"disclosed_quantity": 11}, "bad_quantity"),
    ],
)
def test_order_requests_are_validated(fields: dict[str, object], code: str) -> None:
    with pytest.raises(ValidationError) as info:
        _order(**fields)
    assert info.value.code == code


def test_with_client_order_id_keeps_every_other_field() -> None:
    # Every field set away from its default, so a field the method forgot would show.
    request = OrderRequest(
        "acct",
        "NFO:NIFTY26NOVFUT",
        Side.SELL,
        150,
        OrderType.STOP_LIMIT,
        price=2_450_000,
        trigger_price=2_451_000,
        product=Product.NRML,
        time_in_force=TimeInForce.IOC,
        disclosed_quantity=75,
        client_order_id="mine",
        tag="t1",
        extras={"market_protection": "-1"},
    )
    defaults = {field.name: field.default for field in attrs.fields(OrderRequest)}
    assert all(getattr(request, name) != default for name, default in defaults.items())
    assert request.with_client_order_id("hft-1") == attrs.evolve(request, client_order_id="hft-1")


def test_modify_request_must_change_something() -> None:
    with pytest.raises(ValidationError):
        ModifyRequest()
    assert ModifyRequest(price=100).price == 100


def test_converter_round_trips_orders_as_json_ready_dicts() -> None:
    order = _order(extras={"market_protection": "-1"})
    order.transition(OrderStatus.PENDING, at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    data = converter.unstructure(order)
    assert data["status"] == "PENDING"
    assert data["request"]["side"] == "BUY"
    assert data["history"][1]["at"] == "2026-01-02T03:04:05+00:00"
    assert converter.structure(data, Order) == order


def test_position_average_cost_accounting() -> None:
    position = Position("a", INFY.key)
    position.apply_fill(Side.BUY, 3, 100000)
    position.apply_fill(Side.BUY, 1, 100400)
    assert position.average_price == Decimal(100100)
    position.last_price = 100300
    assert position.unrealised_pnl == Decimal(800)
    position.apply_fill(Side.SELL, 2, 100200)  # closes 2 at +100 each
    assert position.realised_pnl == Decimal(200)
    assert position.quantity == 2
    assert position.average_price == Decimal(100100)
    position.apply_fill(Side.SELL, 5, 99900)  # closes 2 at -200 each, opens 3 short at 99900
    assert position.realised_pnl == Decimal(-200)
    assert position.quantity == -3
    assert position.average_price == Decimal(99900)
    position.last_price = 99800
    assert position.unrealised_pnl == Decimal(300)
    assert (position.buy_quantity, position.sell_quantity) == (4, 7)


@given(
    fills=st.lists(
        st.tuples(st.sampled_from(Side), st.integers(1, 50), st.integers(9_000, 11_000)),
        min_size=1,
        max_size=40,
    ),
    mark=st.integers(9_000, 11_000),
)
def test_position_pnl_matches_cash_flow_identity(
    fills: list[tuple[Side, int, int]], mark: int
) -> None:
    position = Position("a", INFY.key, last_price=mark)
    for side, quantity, price in fills:
        position.apply_fill(side, quantity, price)
    # Whatever the path: total PnL = cash received - cash paid + what is held, marked. The
    # average price is a 28-digit decimal, so only a rounding residue far below a paisa remains.
    cash = position.sell_value - position.buy_value
    assert position.quantity == position.buy_quantity - position.sell_quantity
    assert abs(position.total_pnl - (cash + position.quantity * mark)) < Decimal("1e-12")


def test_sim_users_never_reach_live_accounts() -> None:
    live = Account("l", broker="zerodha", broker_account="AB1234", environment=Environment.LIVE)
    sim = Account("s", broker="sim", broker_account="default", environment=Environment.SIM)
    sim_user = User("bob", Role.TRADER, Environment.SIM, accounts=("l", "s"))
    live_user = User("eve", Role.TRADER, Environment.LIVE, accounts=("l",))
    assert not sim_user.may_reach(live)
    assert sim_user.may_reach(sim)
    assert live_user.may_reach(live)
    assert not live_user.may_reach(sim)  # not granted
    assert not User("x", Role.TRADER, Environment.LIVE, ("l",), disabled=True).may_reach(live)
