"""The risk engine and the built-in rules, through the engine's and the rules' public interface."""

from __future__ import annotations

import datetime as dt
import functools
import json
import types
from decimal import Decimal
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

import hft
from hft import ConfigError, HftError, PluginError, ValidationError
from hft._builtin.memory import MemoryStorage
from hft._builtin.risk import OrderRate
from hft._config import config_from_mapping, resolve_config
from hft._plugins import PluginHost
from hft._risk import KillSwitchMode, RiskEngine
from hft.contracts import RiskContext, RiskRejection, RiskRule
from hft.model import (
    Account,
    Environment,
    Instrument,
    InstrumentType,
    OrderRequest,
    OrderType,
    Position,
    Product,
    Role,
    Side,
    User,
)

BUILT_INS = [
    "daily_loss_limit",
    "lot_and_tick",
    "freeze_quantity",
    "max_order_quantity",
    "max_order_value",
    "price_band",
    "max_position",
    "max_account_position",
    "max_open_orders",
    "order_rate",
]

INFY = Instrument("NSE", "INFY", 408065)  # tick 0.05, lot 1, price scale 2
NIFTY = Instrument(
    "NFO", "NIFTY-FUT", 1, instrument_type=InstrumentType.FUTURE, lot_size=25, freeze_quantity=1800
)
USDINR = Instrument("CDS", "USDINR-FUT", 2, tick_size=25, price_scale=4)  # tick 0.0025
INSTRUMENTS = {i.key: i for i in (INFY, NIFTY, USDINR)}
ACCOUNT = Account("acc", "b", "default", Environment.SIM)
USER = User("alice", Role.TRADER, Environment.SIM, accounts=("acc", "other"))
NOW = dt.datetime(2025, 1, 6, 4, 0, tzinfo=dt.UTC)


def _dummy_broker_plugin() -> types.SimpleNamespace:
    def hft_register_brokers(register: Any) -> None:
        register("dummy", lambda config, context: None)

    return types.SimpleNamespace(hft_register_brokers=hft.hookimpl(hft_register_brokers))


PLUGINS = PluginHost.from_modules({"dummy": _dummy_broker_plugin()})


def engine_for(tree: dict[str, Any], plugins: PluginHost = PLUGINS) -> RiskEngine:
    """An engine for a config tree, through the real config resolution."""
    if "accounts" in tree:
        tree = {"brokers": {"b": {"plugin": "dummy"}}, **tree}
    return RiskEngine.from_config(resolve_config(config_from_mapping(tree), plugins), plugins)


def rule(name: str, **settings: Any) -> RiskRule:
    """One built-in rule, built as the engine builds it (settings structured by the config)."""
    config = resolve_config(config_from_mapping({"risk": {name: settings}}), PLUGINS)
    return PLUGINS.risk_rules.get(name).factory(config.risk[name].settings)


def rate_rule(**settings: Any) -> OrderRate:
    built = rule("order_rate", **settings)
    assert isinstance(built, OrderRate)
    return built


def order(
    quantity: int = 10,
    price: int | None = 100_000,
    side: Side = Side.BUY,
    instrument: Instrument = INFY,
    account: str = "acc",
    **fields: Any,
) -> OrderRequest:
    order_type = fields.pop(
        "order_type", OrderType.LIMIT if price is not None else OrderType.MARKET
    )
    return OrderRequest(
        account, instrument.key, side, quantity, order_type=order_type, price=price, **fields
    )


def position(quantity: int, instrument: Instrument = INFY, **fields: Any) -> Position:
    return Position("acc", instrument.key, quantity=quantity, **fields)


def context(**fields: Any) -> RiskContext:
    """A context with quiet defaults: no position, no orders, last price ₹1,000.00."""
    values: dict[str, Any] = {
        "account": ACCOUNT,
        "user": USER,
        "instrument": INFY,
        "position": None,
        "positions": (),
        "open_orders": 0,
        "pending_buy_quantity": 0,
        "pending_sell_quantity": 0,
        "last_price": 100_000,
        "day_pnl": 0,
        "now": NOW,
        "monotonic_s": 0.0,
        "instruments": INSTRUMENTS,
    }
    values.update(fields)
    if "account_id" in values:
        values["account"] = attrs.evolve(ACCOUNT, account_id=values.pop("account_id"))
    return RiskContext(**values)


def code(rejection: RiskRejection | None) -> str | None:
    return None if rejection is None else rejection.code


# ----------------------------------------------------------------------------------------------
# Registration and defaults
# ----------------------------------------------------------------------------------------------


def test_the_built_ins_are_registered_enabled_in_chain_order() -> None:
    config = resolve_config(config_from_mapping({}), PLUGINS)
    assert list(config.risk) == BUILT_INS
    assert all(section.enabled for section in config.risk.values())
    assert all(isinstance(rule(name), RiskRule) for name in BUILT_INS)
    assert engine_for({}).rule_names("anyone") == tuple(BUILT_INS)


def test_unconfigured_limits_let_a_sound_order_through() -> None:
    engine = engine_for({})
    ctx = context(
        position=position(10_000),
        open_orders=500,
        day_pnl=-(10**12),
        instrument=NIFTY,
        last_price=None,
    )
    assert engine.check(order(1800, price=None, instrument=NIFTY), ctx) is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"max_order_quantity": {"max_quantity": 0}}, "max_order_quantity: max_quantity must be"),
        ({"order_rate": {"max_per_second": -1}}, "order_rate: max_per_second must be positive"),
        ({"daily_loss_limit": {"kill_switch": "stop"}}, "risk.daily_loss_limit"),
        ({"price_band": {"max_deviation_pct": 5}}, "price_band.max_deviation_pct: unknown key"),
    ],
)
def test_bad_rule_settings_are_config_errors_naming_the_key(
    table: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config(config_from_mapping({"risk": table}), PLUGINS)


# ----------------------------------------------------------------------------------------------
# Instrument facts
# ----------------------------------------------------------------------------------------------


def test_lot_and_tick() -> None:
    check = rule("lot_and_tick").check
    nifty = context(instrument=NIFTY)
    assert check(order(50, price=2_250_000, instrument=NIFTY), nifty) is None
    rejection = check(order(60, price=2_250_000, instrument=NIFTY), nifty)
    assert rejection == RiskRejection(
        "bad_lot", "NFO:NIFTY-FUT: quantity 60 is not a multiple of the lot size 25"
    )
    assert code(check(order(price=100_001), context())) == "off_tick"
    assert code(check(order(price=0), context())) == "bad_price"
    stop = order(price=None, order_type=OrderType.STOP, trigger_price=99_999)
    rejection = check(stop, context())
    assert rejection is not None
    assert rejection.code == "off_tick"
    assert rejection.reason == (
        "NSE:INFY: trigger price 999.99 is not a multiple of the tick size 0.05"
    )
    assert (
        check(order(price=None, order_type=OrderType.STOP, trigger_price=99_995), context()) is None
    )


def test_freeze_quantity_passes_exactly_at_the_freeze_and_refuses_one_lot_above() -> None:
    check = rule("freeze_quantity").check
    nifty = context(instrument=NIFTY)
    assert check(order(1800, instrument=NIFTY), nifty) is None
    rejection = check(order(1825, instrument=NIFTY), nifty)
    assert rejection is not None
    assert rejection.code == "freeze_quantity"
    assert rejection.reason.startswith(
        "NFO:NIFTY-FUT: quantity 1,825 is above the freeze quantity 1,800"
    )
    assert check(order(10**6), context()) is None  # INFY has no freeze quantity


# ----------------------------------------------------------------------------------------------
# Per-order limits
# ----------------------------------------------------------------------------------------------


def test_max_order_quantity_boundary() -> None:
    check = rule("max_order_quantity", max_quantity=1000).check
    assert check(order(1000), context()) is None
    assert check(order(1001), context()) == RiskRejection(
        "max_order_quantity", "NSE:INFY: order quantity 1,001 exceeds the limit 1,000"
    )


@given(quantity=st.integers(1, 10**7), limit=st.integers(1, 10**7))
def test_max_order_quantity_matches_its_oracle(quantity: int, limit: int) -> None:
    rejection = rule("max_order_quantity", max_quantity=limit).check(order(quantity), context())
    assert (rejection is not None) == (quantity > limit)


def test_max_order_value_boundary_and_reason() -> None:
    check = rule("max_order_value", max_value_paise=100_000_000).check  # ₹10,00,000.00
    assert check(order(1000, price=100_000), context()) is None  # exactly ₹10 lakh
    assert code(check(order(1000, price=100_005), context())) == "max_order_value"
    assert check(order(1250, price=100_000), context()) == RiskRejection(
        "max_order_value",
        "NSE:INFY: order value 12,50,000.00 exceeds the limit 10,00,000.00",
    )


def test_max_order_value_at_another_price_scale() -> None:
    check = rule("max_order_value", max_value_paise=83_000_00).check  # ₹83,000.00
    usd = context(instrument=USDINR, last_price=830_000)  # 83.0000
    assert check(order(1000, price=830_000, instrument=USDINR), usd) is None
    rejection = check(order(1000, price=830_025, instrument=USDINR), usd)
    assert rejection is not None
    assert rejection.reason == (
        "CDS:USDINR-FUT: order value 83,002.5000 exceeds the limit 83,000.00"
    )


def test_max_order_value_values_market_orders_at_the_last_price() -> None:
    check = rule("max_order_value", max_value_paise=100_000_000).check
    assert check(order(1000, price=None), context(last_price=100_000)) is None
    assert code(check(order(1000, price=None), context(last_price=100_005))) == "max_order_value"
    rejection = check(order(1, price=None), context(last_price=None))
    assert rejection is not None
    assert rejection.code == "no_last_price"
    assert "order value limit 10,00,000.00" in rejection.reason
    # A stop-market order is valued at its trigger.
    stop = order(1000, price=None, order_type=OrderType.STOP, trigger_price=100_005)
    assert code(check(stop, context(last_price=None))) == "max_order_value"


@given(
    price=st.integers(1, 10**9),
    quantity=st.integers(1, 10**6),
    limit=st.integers(1, 10**13),
    scale=st.integers(0, 8),
)
def test_max_order_value_matches_a_decimal_oracle(
    price: int, quantity: int, limit: int, scale: int
) -> None:
    instrument = Instrument("X", "Y", 1, tick_size=1, price_scale=scale)
    rejection = rule("max_order_value", max_value_paise=limit).check(
        order(quantity, price=price, instrument=instrument), context(instrument=instrument)
    )
    over = Decimal(price * quantity).scaleb(-scale) > Decimal(limit).scaleb(-2)
    assert (rejection is not None) == over


def test_price_band_boundaries_on_both_sides() -> None:
    check = rule("price_band", max_deviation_bps=500).check  # ±5% around ₹1,000.00
    ctx = context(last_price=100_000)
    assert check(order(price=105_000), ctx) is None
    assert check(order(price=95_000, side=Side.SELL), ctx) is None
    assert check(order(price=105_005), ctx) == RiskRejection(
        "price_band",
        "NSE:INFY: price 1,050.05 is 5.01% above the last traded price 1,000.00; "
        "the band is ±5.00%",
    )
    assert code(check(order(price=94_995), ctx)) == "price_band"
    assert check(order(price=None), ctx) is None  # a market order trades at the market
    assert code(check(order(price=100_000), context(last_price=None))) == "no_last_price"


# ----------------------------------------------------------------------------------------------
# Exposure limits
# ----------------------------------------------------------------------------------------------


def test_max_position_counts_position_pending_and_order() -> None:
    check = rule("max_position", max_quantity=100).check
    ctx = context(position=position(50), pending_buy_quantity=30)
    assert check(order(20), ctx) is None  # 50 + 30 + 20 = 100
    assert check(order(21), ctx) == RiskRejection(
        "max_position_quantity",
        "NSE:INFY: the net position could reach 101, beyond the limit ±100",
    )
    short = context(position=position(-50), pending_sell_quantity=30)
    assert check(order(20, side=Side.SELL), short) is None
    assert code(check(order(21, side=Side.SELL), short)) == "max_position_quantity"
    # Flipping through zero to beyond the limit is refused; closing is not.
    assert check(order(150, side=Side.SELL), context(position=position(50))) is None
    assert code(check(order(151, side=Side.SELL), context(position=position(50)))) is not None


def test_max_position_always_lets_exposure_be_reduced() -> None:
    check = rule("max_position", max_quantity=100, max_value_paise=1).check
    over = context(position=position(500), pending_sell_quantity=100)
    assert check(order(100, side=Side.SELL), over) is None
    assert code(check(order(1), over)) == "max_position_quantity"


def test_max_position_value_marks_at_the_last_price() -> None:
    check = rule("max_position", max_value_paise=100_000_000).check  # ₹10 lakh
    ctx = context(position=position(900), last_price=100_000)
    assert check(order(100, price=90_000), ctx) is None  # 1000 × ₹1,000.00
    rejection = check(order(101, price=90_000), ctx)
    assert rejection is not None
    assert rejection.reason == (
        "NSE:INFY: the net position could be worth 10,01,000.00, beyond the limit 10,00,000.00"
    )
    # Without a last price the order's own price marks it; a market order cannot be valued.
    assert check(order(1000, price=100_000), context(last_price=None)) is None
    assert code(check(order(1, price=None), context(last_price=None))) == "no_last_price"


def test_max_account_position_quantity_adds_up_every_instrument() -> None:
    check = rule("max_account_position", max_quantity=1000).check
    positions = (
        position(300),
        position(-200, NIFTY),
        position(100, USDINR),
        position(0, NIFTY, product=Product.NRML),
    )
    ctx = context(position=positions[0], positions=positions, pending_buy_quantity=100)
    assert check(order(300), ctx) is None  # 700 in INFY + 200 + 100
    rejection = check(order(301), ctx)
    assert rejection is not None
    assert rejection.code == "max_account_position_quantity"
    assert rejection.reason == (
        "account acc: positions could add up to 1,001 (including 701 NSE:INFY), beyond the "
        "limit 1,000"
    )
    assert check(order(400, side=Side.SELL), ctx) is None  # reduces INFY


def test_max_account_position_value_mixes_price_scales_exactly() -> None:
    check = rule("max_account_position", max_value_paise=2_000_000).check  # ₹20,000.00
    usd = position(100, USDINR, last_price=830_000)  # 100 × 83.0000 = ₹8,300.00
    nifty_flat = position(0, NIFTY)
    ctx = context(positions=(usd, nifty_flat), last_price=100_000)
    assert check(order(11), ctx) is None  # ₹11,000.00 + ₹8,300.00
    assert check(order(12), ctx) == RiskRejection(
        "max_account_position_value",
        "account acc: positions could be worth 20,300.00 (including 12 NSE:INFY), beyond the "
        "limit 20,000.00",
    )
    unknown = position(5, Instrument("BSE", "X", 9), last_price=100)
    rejection = check(order(1), context(positions=(unknown,)))
    assert code(rejection) == "unknown_instrument"
    unpriced = position(5, NIFTY)
    assert code(check(order(1), context(positions=(unpriced,)))) == "no_last_price"


def test_max_open_orders_boundary() -> None:
    check = rule("max_open_orders", max_open_orders=10).check
    assert check(order(), context(open_orders=9)) is None
    assert check(order(), context(open_orders=10)) == RiskRejection(
        "max_open_orders", "account acc has 10 open orders; the limit is 10"
    )


# ----------------------------------------------------------------------------------------------
# Order rate
# ----------------------------------------------------------------------------------------------


def test_order_rate_per_second_is_a_sliding_window_of_accepted_orders() -> None:
    rate = rate_rule(max_per_second=3)
    for t in (0.0, 0.2, 0.4):
        ctx = context(monotonic_s=t)
        assert rate.check(order(), ctx) is None
        rate.commit(order(), ctx)
    rejection = rate.check(order(), context(monotonic_s=0.99))
    assert rejection is not None
    assert rejection.code == "order_rate_per_second"
    assert rejection.reason == (
        "account acc has sent 3 orders in the last second, the limit per second; retry in 0.01 s"
    )
    # A rejected order was not committed, so exactly one second after the first the window opens.
    assert rate.check(order(), context(monotonic_s=1.0)) is None


def test_order_rate_per_minute() -> None:
    rate = rate_rule(max_per_second=100, max_per_minute=2)
    for t in (0.0, 30.0):
        rate.commit(order(), context(monotonic_s=t))
    assert code(rate.check(order(), context(monotonic_s=59.9))) == "order_rate_per_minute"
    assert rate.check(order(), context(monotonic_s=60.0)) is None


@given(
    limit=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 0.6, allow_nan=False), min_size=1, max_size=60),
)
def test_order_rate_never_admits_more_than_the_limit_in_any_second(
    limit: int, gaps: list[float]
) -> None:
    rate = rate_rule(max_per_second=limit)
    now = 0.0
    accepted: list[float] = []
    for gap in gaps:
        now += gap
        ctx = context(monotonic_s=now)
        if rate.check(order(), ctx) is None:
            rate.commit(order(), ctx)
            accepted.append(now)
    assert all(
        later - earlier >= 1.0 for earlier, later in zip(accepted, accepted[limit:], strict=False)
    )


def test_the_engine_counts_only_orders_the_whole_chain_accepted() -> None:
    engine = engine_for(
        {"risk": {"order_rate": {"max_per_second": 1}, "max_order_quantity": {"max_quantity": 5}}}
    )
    refused = order(6)
    assert code(engine.check(refused, context())) == "max_order_quantity"
    accepted = order(5)
    assert engine.check(accepted, context()) is None
    engine.commit(accepted, context())
    assert code(engine.check(order(5), context(monotonic_s=0.5))) == "order_rate_per_second"
    # Each account has its own rules, so its own window.
    other = order(5, account="other")
    assert engine.check(other, context(account_id="other", monotonic_s=0.5)) is None


# ----------------------------------------------------------------------------------------------
# The chain
# ----------------------------------------------------------------------------------------------


def test_the_first_rejection_in_configuration_order_wins() -> None:
    big = order(2000, price=100_000)
    limits = {
        "max_order_quantity": {"max_quantity": 1000},
        "max_order_value": {"max_value_paise": 1},
    }
    assert code(engine_for({"risk": limits}).check(big, context())) == "max_order_quantity"
    reversed_limits = dict(reversed(limits.items()))
    assert code(engine_for({"risk": reversed_limits}).check(big, context())) == "max_order_value"


def test_rules_after_a_rejection_are_not_asked() -> None:
    calls: list[str] = []

    @attrs.define
    class Recorder:
        code: str

        def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
            calls.append(self.code)
            return RiskRejection(self.code, "no") if self.code == "refuse" else None

    def hft_register_risk_rules(register: Any) -> None:
        for name in ("allow", "refuse", "later"):
            register(name, lambda _config, name=name: Recorder(name), enabled_by_default=True)

    plugins = PluginHost.from_modules(
        {
            "rec": types.SimpleNamespace(
                hft_register_risk_rules=hft.hookimpl(hft_register_risk_rules)
            )
        }
    )
    engine = engine_for({}, plugins)
    assert engine.rule_names("acc")[-3:] == ("allow", "refuse", "later")
    assert code(engine.check(order(), context())) == "refuse"
    assert calls == ["allow", "refuse"]


def test_a_rule_that_raises_refuses_the_order_and_is_logged() -> None:
    class Broken:
        code = "broken"

        def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
            raise KeyError("boom")

    def hft_register_risk_rules(register: Any) -> None:
        register("broken", lambda _config: Broken(), enabled_by_default=True)

    plugins = PluginHost.from_modules(
        {"b": types.SimpleNamespace(hft_register_risk_rules=hft.hookimpl(hft_register_risk_rules))}
    )
    with capture_logs() as logs:
        rejection = engine_for({}, plugins).check(order(), context())
    assert rejection == RiskRejection(
        "risk_rule_failed", "risk rule broken failed (KeyError: 'boom'); the order was refused"
    )
    assert [(e["event"], e["rule"]) for e in logs] == [("risk.rule_failed", "broken")]


def test_accounts_override_the_global_chain() -> None:
    engine = engine_for(
        {
            "risk": {"max_order_quantity": {"max_quantity": 100}},
            "accounts": {
                "small": {"broker": "b", "risk": {"max_order_quantity": {"max_quantity": 10}}},
                "free": {"broker": "b", "risk": {"max_order_quantity": {"enabled": False}}},
                "plain": {"broker": "b"},
            },
        }
    )
    for account, limit in (("small", 10), ("plain", 100), ("created_later", 100)):
        ctx = context(account_id=account)
        assert engine.check(order(limit, account=account), ctx) is None
        assert code(engine.check(order(limit + 1, account=account), ctx)) == "max_order_quantity"
    assert "max_order_quantity" not in engine.rule_names("free")
    assert engine.check(order(10_000, account="free"), context(account_id="free")) is None


def test_a_rule_that_cannot_be_built_fails_the_engine_at_start() -> None:
    def hft_register_risk_rules(register: Any) -> None:
        register("broken", lambda _config: 1 / 0, enabled_by_default=True)
        register("odd", lambda _config: object())

    plugins = PluginHost.from_modules(
        {
            "bad": types.SimpleNamespace(
                hft_register_risk_rules=hft.hookimpl(hft_register_risk_rules)
            )
        }
    )
    with pytest.raises(ConfigError, match=r"risk\.broken: the rule could not be built"):
        engine_for({}, plugins)
    with pytest.raises(PluginError, match=r"risk\.odd: plugin 'bad' built object"):
        engine_for({"risk": {"broken": {"enabled": False}, "odd": {"enabled": True}}}, plugins)


# ----------------------------------------------------------------------------------------------
# Daily loss limit and the kill switch
# ----------------------------------------------------------------------------------------------


def test_daily_loss_limit_boundary_and_it_trips_the_account_kill_switch() -> None:
    engine = engine_for({"risk": {"daily_loss_limit": {"max_loss_paise": 5_000_000}}})
    assert engine.check(order(), context(day_pnl=-4_999_999)) is None
    with capture_logs() as logs:
        rejection = engine.check(order(), context(day_pnl=-5_000_000))
    assert rejection == RiskRejection(
        "daily_loss_limit",
        "account acc: the day's PnL -50,000.00 has reached the daily loss limit of 50,000.00; "
        "the account is now halted",
        kill_switch="halt",
    )
    assert engine.effective_kill_switch("acc") is KillSwitchMode.HALT
    assert engine.kill_switch("acc").by == "rule daily_loss_limit"
    assert [e["event"] for e in logs] == ["risk.kill_switch"]
    assert logs[0]["mode"] == "halt"
    # It stays halted when prices recover, until an admin clears it; other accounts trade on.
    halted = engine.check(order(), context(day_pnl=0))
    assert halted is not None
    assert halted.code == "kill_switch_halt"
    assert halted.reason.startswith("trading is halted for account acc: account acc: the day's")
    assert engine.check(order(account="other"), context(account_id="other")) is None


def test_daily_loss_limit_in_reduce_only_mode_lets_closing_orders_through() -> None:
    engine = engine_for(
        {"risk": {"daily_loss_limit": {"max_loss_paise": 100, "kill_switch": "reduce_only"}}}
    )
    losing = context(day_pnl=-100, position=position(40))
    assert engine.check(order(40, side=Side.SELL), losing) is None
    rejection = engine.check(order(1), losing)
    assert rejection is not None
    assert rejection.kill_switch == "reduce_only"
    assert engine.effective_kill_switch("acc") is KillSwitchMode.REDUCE_ONLY
    assert code(engine.check(order(1), context(position=position(40)))) == (
        "kill_switch_reduce_only"
    )


@pytest.mark.anyio
async def test_a_rule_never_loosens_a_switch_an_admin_set() -> None:
    engine = engine_for(
        {"risk": {"daily_loss_limit": {"max_loss_paise": 100, "kill_switch": "reduce_only"}}}
    )
    await engine.set_kill_switch("halt", account="acc", reason="desk closed", by="root")
    assert code(engine.check(order(), context(day_pnl=-100))) == "kill_switch_halt"
    assert engine.kill_switch("acc").by == "root"


@pytest.mark.anyio
async def test_global_and_account_switches_the_stricter_applies() -> None:
    engine = engine_for({})
    long = context(position=position(100))
    await engine.set_kill_switch(KillSwitchMode.REDUCE_ONLY, reason="volatility", by="root")
    assert engine.effective_kill_switch("acc") is KillSwitchMode.REDUCE_ONLY
    assert engine.check(order(100, side=Side.SELL), long) is None
    rejection = engine.check(order(101, side=Side.SELL), long)
    assert rejection == RiskRejection(
        "kill_switch_reduce_only",
        "every account is reduce-only: volatility (set by root); a sell of 101 NSE:INFY would "
        "not reduce the net position of 100",
    )
    await engine.set_kill_switch("halt", account="acc", reason="breach", by="root")
    assert code(engine.check(order(100, side=Side.SELL), long)) == "kill_switch_halt"
    other = context(account_id="other", position=position(100))
    assert code(engine.check(order(1, account="other"), other)) == "kill_switch_reduce_only"
    await engine.set_kill_switch("off", reason="calm", by="root")
    assert engine.check(order(1, account="other"), other) is None
    assert engine.effective_kill_switch("acc") is KillSwitchMode.HALT
    with pytest.raises(ValidationError, match="kill switch mode must be one of off"):
        await engine.set_kill_switch("pause", reason="?", by="root")


@pytest.mark.anyio
async def test_reduce_only_counts_pending_orders_on_the_same_side() -> None:
    engine = engine_for({})
    await engine.set_kill_switch("reduce_only", account="acc", reason="r", by="root")
    short = context(position=position(-100), pending_buy_quantity=60)
    assert engine.check(order(40), short) is None
    rejection = engine.check(order(41), short)
    assert rejection is not None
    assert rejection.reason.endswith(
        "a buy of 41 NSE:INFY would not reduce the net position of -100 with 60 more pending on "
        "that side"
    )
    assert code(engine.check(order(1), context())) == "kill_switch_reduce_only"  # flat


@functools.cache
def _reduce_only_engine() -> RiskEngine:
    engine = engine_for({})
    set_switch = engine.set_kill_switch("reduce_only", account="acc", reason="test", by="test")
    anyio.run(lambda: set_switch, backend="trio")
    return engine


@given(
    held=st.integers(-1000, 1000),
    pending=st.integers(0, 1000),
    quantity=st.integers(1, 2000),
    side=st.sampled_from(Side),
)
def test_reduce_only_never_lets_an_order_increase_the_absolute_position(
    held: int, pending: int, quantity: int, side: Side
) -> None:
    engine = _reduce_only_engine()
    pending_field = "pending_buy_quantity" if side is Side.BUY else "pending_sell_quantity"
    ctx = context(position=position(held), **{pending_field: pending})
    if engine.check(order(quantity, side=side), ctx) is None:
        worst = held + side.sign * (pending + quantity)  # every same-side order fills
        assert abs(worst) < abs(held)
        assert worst == 0 or (worst > 0) == (held > 0)


# ----------------------------------------------------------------------------------------------
# Persistence
# ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_kill_switches_survive_a_restart_and_every_change_is_audited() -> None:
    storage = MemoryStorage("memory://")
    engine = engine_for({})
    await engine.load(storage)
    with capture_logs() as logs:
        await engine.set_kill_switch("halt", reason="exchange glitch", by="root")
        await engine.set_kill_switch("reduce_only", account="acc", reason="margin", by="ops")
        await engine.set_kill_switch("off", reason="glitch over", by="root")
    assert [(e["event"], e["mode"], e["by"]) for e in logs] == [
        ("risk.kill_switch", "halt", "root"),
        ("risk.kill_switch", "reduce_only", "ops"),
        ("risk.kill_switch", "off", "root"),
    ]

    restarted = engine_for({})
    await restarted.load(storage)
    assert restarted.kill_switch() == engine.kill_switch()
    assert restarted.kill_switch("acc") == engine.kill_switch("acc")
    assert restarted.kill_switch("acc").reason == "margin"
    assert restarted.effective_kill_switch("acc") is KillSwitchMode.REDUCE_ONLY
    assert restarted.effective_kill_switch("other") is KillSwitchMode.OFF

    audit = await storage.audit_entries("kill_switch")
    assert [(a["scope"], a["account"], a["mode"], a["previous"]) for a in reversed(audit)] == [
        ("global", None, "halt", "off"),
        ("account", "acc", "reduce_only", "off"),
        ("global", None, "off", "halt"),
    ]
    assert audit[0]["reason"] == "glitch over"
    assert "at" in audit[0]


@pytest.mark.anyio
async def test_a_trip_by_a_rule_is_persisted_on_flush() -> None:
    storage = MemoryStorage("memory://")
    engine = engine_for({"risk": {"daily_loss_limit": {"max_loss_paise": 1}}})
    await engine.load(storage)
    rejection = engine.check(order(), context(day_pnl=-1))
    assert rejection is not None
    assert rejection.kill_switch == "halt"
    await engine.flush()
    await engine.flush()  # nothing more to write
    restarted = engine_for({})
    await restarted.load(storage)
    assert restarted.effective_kill_switch("acc") is KillSwitchMode.HALT
    audit = await storage.audit_entries("kill_switch")
    assert len(audit) == 1
    assert audit[0]["by"] == "rule daily_loss_limit"


@pytest.mark.anyio
async def test_unreadable_stored_state_stops_the_load() -> None:
    storage = MemoryStorage("memory://")
    await storage.put_state("risk", "kill_switch", json.dumps({"global": {}}).encode())
    with pytest.raises(HftError, match="stored kill-switch state is unreadable") as info:
        await engine_for({}).load(storage)
    assert info.value.code == "kill_switch_state_invalid"
