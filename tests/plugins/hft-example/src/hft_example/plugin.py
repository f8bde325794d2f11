"""Registers a command and a risk rule, and describes itself, so discovery tests can see it."""

from __future__ import annotations

import argparse

import attrs

import hft
from hft.contracts import RiskContext, RiskRejection
from hft.hookspecs import RegisterCommand, RegisterRiskRule
from hft.model import OrderRequest


@attrs.frozen
class OddQuantityConfig:
    message: str = "odd quantities are refused"


@attrs.define
class OddQuantityRule:
    config: OddQuantityConfig
    code: str = "example_odd_quantity"

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        return RiskRejection(self.code, self.config.message) if request.quantity % 2 else None


def _hello(args: argparse.Namespace) -> int:
    print(f"hello from the example plugin, {args.name}")
    return 0


@hft.hookimpl
def hft_register_commands(register: RegisterCommand) -> None:
    register(
        "example-hello",
        "say hello (from the example plugin)",
        lambda parser: parser.add_argument("--name", default="trader"),
        _hello,
    )


@hft.hookimpl
def hft_register_risk_rules(register: RegisterRiskRule) -> None:
    register("example_odd_quantity", OddQuantityRule, config=OddQuantityConfig)


@hft.hookimpl
def hft_describe() -> str:
    return "example build"
