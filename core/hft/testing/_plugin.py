"""The ``test`` broker as a plugin: ``[brokers.<name>] plugin = "test"`` runs a :class:`TestBroker`.

Each configured instance gets its own :class:`TestVenue`: a fresh one, or with ``state_file`` the
one kept in that file, as the last process left it (a crash test restarts the host on it).
Importing this module does no I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import attrs

import hft
from hft.testing._broker import TestBroker, TestVenue

if TYPE_CHECKING:
    from hft._plugins import PluginContext
    from hft.hookspecs import RegisterBroker

__all__ = ["TestBrokerConfig", "hft_register_brokers"]


def _distinct(
    _: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    if not value or not all(value) or len(set(value)) != len(value):
        raise ValueError(f"{attribute.name} must list one or more distinct, non-empty codes")


@attrs.frozen
class TestBrokerConfig:
    """``[brokers.<name>]`` keys of the ``test`` broker.

    :param instant: acknowledge orders without a ``PENDING`` update and fill marketable ones at
        once at the last price (for benchmarks, and a host that should simply trade).
    :param accounts: the broker-side account codes the login serves (several, like an XTS
        dealer login).
    :param state_file: keep the venue in this operation log, so that it outlives the process
        (relative paths are under the host's ``data_dir``); unset, it lives in memory.
    """

    __test__ = False  # not a pytest test class, despite its name

    instant: bool = False
    accounts: tuple[str, ...] = attrs.field(default=("default",), validator=_distinct)
    state_file: Path | None = None


def _make_broker(config: TestBrokerConfig, context: PluginContext) -> TestBroker:
    state_file = None if config.state_file is None else context.data_dir / config.state_file
    venue = TestVenue(accounts=config.accounts, instant=config.instant, state_file=state_file)
    return TestBroker(venue, name=context.name)


@hft.hookimpl
def hft_register_brokers(register: RegisterBroker) -> None:
    register("test", _make_broker, config=TestBrokerConfig)
