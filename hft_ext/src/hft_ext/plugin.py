"""The hft-ext plugin: the ``ext`` matching engine and the ``hft bench`` command.

Entry point ``ext`` in the ``hft.plugins`` group. This module is never compiled, and importing
it does no I/O: the benchmark code is imported only when its command runs.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

import hft
from hft.hookspecs import RegisterCommand, RegisterEngine
from hft_ext import (
    STP_ALLOW,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    Engine,
    describe,
    load_engine,
)

#: ``self_trade`` option values as a user writes them, and the engine's codes.
SELF_TRADE_MODES: Final = {
    "allow": STP_ALLOW,
    "cancel_resting": STP_CANCEL_RESTING,
    "cancel_incoming": STP_CANCEL_INCOMING,
}

BENCH_HELP: Final = "benchmark installed components (hft-ext: the matching engine)"


def make_engine(*, self_trade: str = "allow", interpreted: bool = False, **unknown: Any) -> Engine:
    """Build an engine for one instrument (the factory registered as ``ext``).

    :param self_trade: ``allow``, ``cancel_resting`` or ``cancel_incoming``.
    :param interpreted: use the interpreted engine even when the compiled one is installed.
    """
    if unknown:
        raise hft.ConfigError(f"matching engine 'ext' has no option(s) {sorted(unknown)}")
    try:
        mode = SELF_TRADE_MODES[self_trade]
    except KeyError:
        known = ", ".join(SELF_TRADE_MODES)
        raise hft.ConfigError(
            f"matching engine 'ext': self_trade must be one of {known}, not {self_trade!r}"
        ) from None
    return load_engine(interpreted)(mode)


@hft.hookimpl
def hft_register_matching_engines(register: RegisterEngine) -> None:
    register("ext", make_engine)


@hft.hookimpl
def hft_register_commands(register: RegisterCommand) -> None:
    register("bench", BENCH_HELP, _configure_bench, _run_bench)


@hft.hookimpl
def hft_describe() -> str | None:
    return describe()


def _configure_bench(parser: argparse.ArgumentParser) -> None:
    from hft_ext import _cli

    _cli.configure(parser)


def _run_bench(args: argparse.Namespace) -> int:
    from hft_ext import _cli

    return _cli.run(args)
