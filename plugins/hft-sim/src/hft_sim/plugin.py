"""The ``sim`` plugin: hook implementations only. Importing this module does no I/O."""

from __future__ import annotations

from typing import TYPE_CHECKING

import hft
from hft_sim import cli, monitor
from hft_sim.broker import make_broker
from hft_sim.config import SimConfig

if TYPE_CHECKING:
    from hft._host import Services
    from hft.hookspecs import RegisterBroker, RegisterCommand


@hft.hookimpl
def hft_register_brokers(register: RegisterBroker) -> None:
    register("sim", make_broker, config=SimConfig)


@hft.hookimpl
def hft_register_commands(register: RegisterCommand) -> None:
    register("sim", cli.HELP, cli.configure, cli.run)


@hft.hookimpl
def hft_startup(services: Services) -> None:
    # Subscribe the hub to every sim instrument and log a sample of it now and then.
    monitor.start(services)


@hft.hookimpl
def hft_shutdown(services: Services) -> None:
    monitor.stop(services)
