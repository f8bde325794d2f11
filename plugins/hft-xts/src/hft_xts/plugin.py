"""The ``xts`` plugin: hook implementations only. Importing this module does no I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING

import hft
from hft_xts import cli
from hft_xts.broker import make_broker
from hft_xts.config import XtsConfig
from hft_xts.normaliser import XtsNormaliser

if TYPE_CHECKING:
    from hft.hookspecs import RegisterBroker, RegisterCommand, RegisterNormaliser


@hft.hookimpl
def hft_register_brokers(register: RegisterBroker) -> None:
    register("xts", make_broker, config=XtsConfig)


@hft.hookimpl
def hft_register_normalisers(register: RegisterNormaliser) -> None:
    register("xts.marketdata", XtsNormaliser)


@hft.hookimpl
def hft_register_commands(register: RegisterCommand) -> None:
    register("xts", cli.HELP, cli.configure, cli.run)
