"""The ``template`` plugin: hook implementations only. Importing this module does no I/O."""

from __future__ import annotations

import hft
from hft.hookspecs import RegisterCommand, RegisterRiskRule
from hft_template import cli
from hft_template.rules import NAME, MaxNotionalConfig, MaxNotionalRule


@hft.hookimpl
def hft_register_risk_rules(register: RegisterRiskRule) -> None:
    # Off until the operator writes `enabled = true` in [risk.template_max_notional].
    register(NAME, MaxNotionalRule, config=MaxNotionalConfig)


@hft.hookimpl
def hft_register_commands(register: RegisterCommand) -> None:
    register(
        "template-notional",
        f"value an order against the {NAME} limit",
        cli.configure,
        cli.run,
    )
