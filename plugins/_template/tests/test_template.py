"""The template plugin, loaded as the host loads it: with exactly the plugins a test names."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

import pytest
from hft_template import plugin
from hft_template.rules import NAME, MaxNotionalConfig

from hft import ConfigError, ValidationError
from hft.contracts import RiskContext, RiskRejection, RiskRule
from hft.model import (
    Account,
    Environment,
    Instrument,
    OrderRequest,
    OrderType,
    Role,
    Side,
    User,
)
from hft.testing import Host, make_host

INFY = Instrument(exchange="NSE", symbol="INFY", token=408065)  # prices in paise, tick 0.05
USDINR = Instrument(  # a currency future: four decimal places, tick 0.0025, lots of 1000
    exchange="CDS", symbol="USDINR26JANFUT", token=1, tick_size=25, lot_size=1000, price_scale=4
)


def host(section: dict[str, Any] | None = None) -> Host:
    """A host with the template plugin (and the core's built-ins) and nothing else."""
    config = {"risk": {NAME: section}} if section is not None else {}
    return make_host({"template": plugin}, config)


def build_rule(section: dict[str, Any] | None = None) -> RiskRule:
    """The rule as the risk engine builds it: the factory, called with the structured section."""
    h = host(section)
    return h.plugins.risk_rules.get(NAME).factory(h.config.risk[NAME].settings)


def context(instrument: Instrument = INFY, last_price: int | None = None) -> RiskContext:
    return RiskContext(
        account=Account("paper", "sim", "default", Environment.SIM),
        user=User("asha", Role.TRADER, Environment.SIM, accounts=("paper",)),
        instrument=instrument,
        position=None,
        positions=(),
        open_orders=0,
        pending_buy_quantity=0,
        pending_sell_quantity=0,
        last_price=last_price,
        day_pnl=0,
        now=dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC),
        monotonic_s=0.0,
    )


def buy(quantity: int, price: str | None = None, instrument: Instrument = INFY) -> OrderRequest:
    return OrderRequest(
        account="paper",
        instrument=instrument.key,
        side=Side.BUY,
        quantity=quantity,
        order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        price=instrument.price(price) if price is not None else None,
    )


def test_the_rule_is_registered_and_off_until_configured() -> None:
    h = host()
    registration = h.plugins.risk_rules.get(NAME)
    assert registration.plugin == "template"
    assert registration.config is MaxNotionalConfig
    assert h.plugins.plugins["template"].hooks == (
        "hft_register_commands",
        "hft_register_risk_rules",
    )
    assert not h.config.risk[NAME].enabled
    assert h.config.risk[NAME].settings == MaxNotionalConfig()


def test_its_section_enables_and_configures_it() -> None:
    section = host({"enabled": True, "max_notional_paise": 5_000_000, "allow_unpriced": "yes"})
    rule = section.config.risk[NAME]
    assert rule.enabled
    assert rule.settings == MaxNotionalConfig(max_notional_paise=5_000_000, allow_unpriced=True)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"max_notional_paise": "lots"},
            f"risk.{NAME}.max_notional_paise: expected an integer, got 'lots'",
        ),
        ({"max_notional_paise": 0}, f"risk.{NAME}: max_notional_paise must be positive, got 0"),
        ({"colour": "red"}, f"risk.{NAME}.colour: unknown key"),
    ],
)
def test_a_wrong_section_is_refused_naming_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        host(section)
    assert info.value.message == message


def test_orders_up_to_the_limit_pass_and_larger_ones_are_rejected() -> None:
    rule = build_rule({"enabled": True})  # the default limit: ₹1,00,000
    assert rule.check(buy(100, "1000.00"), context()) is None  # exactly the limit
    assert rule.check(buy(66, "1500.00"), context()) is None
    assert rule.check(buy(67, "1500.00"), context()) == RiskRejection(
        NAME, "NSE:INFY: order value 100500.00 exceeds the limit of 100000.00"
    )


def test_values_compare_exactly_whatever_the_price_scale() -> None:
    rule = build_rule({"max_notional_paise": 8_325_000})  # ₹83,250.00
    assert rule.check(buy(1000, "83.2500", USDINR), context(USDINR)) is None
    rejection = rule.check(buy(1000, "83.2525", USDINR), context(USDINR))
    assert rejection == RiskRejection(
        NAME, "CDS:USDINR26JANFUT: order value 83252.5000 exceeds the limit of 83250.00"
    )


def test_market_orders_are_valued_at_the_last_price() -> None:
    rule = build_rule({})
    assert rule.check(buy(50), context(last_price=INFY.price("1999.95"))) is None
    assert rule.check(buy(51), context(last_price=INFY.price("1999.95"))) is not None
    assert rule.check(buy(1), context(last_price=None)) == RiskRejection(
        NAME, "NSE:INFY: no price to value the order"
    )
    assert build_rule({"allow_unpriced": True}).check(buy(1), context()) is None


def test_the_command_values_an_order(capsys: pytest.CaptureFixture[str]) -> None:
    help_text, configure, run = host().plugins.commands.get("template-notional").factory
    assert NAME in help_text
    parser = argparse.ArgumentParser(prog="hft template-notional")
    configure(parser)

    assert run(parser.parse_args(["1500.00", "66"])) == 0
    assert capsys.readouterr().out == "order value 99000.00 is within the limit of 100000.00\n"
    assert run(parser.parse_args(["1500", "67", "--max-notional-paise", "100"])) == 1
    assert capsys.readouterr().out == "order value 100500.00 exceeds the limit of 1.00\n"
    with pytest.raises(ValidationError, match="more than 2 decimal places"):
        run(parser.parse_args(["1500.005", "1"]))


@pytest.mark.anyio
async def test_a_running_host_carries_the_configured_rule() -> None:
    async with host({"enabled": True}).running() as services:
        assert services.config.risk[NAME].enabled
        assert "template" in services.plugins.plugins
