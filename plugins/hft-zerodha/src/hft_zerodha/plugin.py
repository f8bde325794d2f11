"""The ``zerodha`` plugin: hook implementations only. Importing this module does no I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING

import hft
from hft_zerodha import cli
from hft_zerodha.broker import make_broker
from hft_zerodha.config import ZerodhaConfig
from hft_zerodha.normaliser import NAME, ZerodhaNormaliser

if TYPE_CHECKING:
    from hft.hookspecs import RegisterBroker, RegisterCommand, RegisterNormaliser


@hft.hookimpl
def hft_register_brokers(register: RegisterBroker) -> None:
    register("zerodha", make_broker, config=ZerodhaConfig)


@hft.hookimpl
def hft_register_normalisers(register: RegisterNormaliser) -> None:
    register(NAME, ZerodhaNormaliser)


@hft.hookimpl
def hft_register_commands(register: RegisterCommand) -> None:
    register("zerodha", cli.HELP, cli.configure, cli.run)
