"""``hft xts check``: log in to a configured XTS broker and say what it serves.

It reads the configuration as ``hft serve`` does (``--config``, ``HFT_CONFIG``, ``./hft.toml``,
``HFT_...`` overrides), logs in to both APIs of the named XTS broker (or the only one), prints
the login kind, the broker accounts, how many instruments the master holds and the message
codes the install offers, and logs out. Exit status: 0 logged in, 1 refused or unreachable,
2 a configuration problem. Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final

__all__ = ["HELP", "configure", "run"]

HELP: Final = "check an XTS broker's login: accounts, instruments, market-data codes"


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="xts_command", metavar="SUBCOMMAND", required=True)
    check = commands.add_parser("check", help="log in, show what the login serves, log out")
    check.add_argument("--broker", help="the [brokers.<name>] to check (default: the only xts one)")


def run(args: argparse.Namespace) -> Any:
    return _check(args)


async def _check(args: argparse.Namespace) -> int:
    from hft._config import read_config, resolve_config
    from hft._errors import ConfigError, HftError
    from hft._plugins import PluginHost, plugins_from_env
    from hft_xts.broker import XtsBroker

    try:
        core = read_config(getattr(args, "config", None))
        plugins = PluginHost.load(
            only=plugins_from_env(),
            disabled=core.host.disabled_plugins,
            required=core.host.required_plugins,
        )
        config = resolve_config(core, plugins)
    except ConfigError as exc:
        print(f"hft xts: {exc.message}", file=sys.stderr)
        return 2
    names = [name for name, section in config.brokers.items() if section.plugin == "xts"]
    name = args.broker if args.broker is not None else (names[0] if len(names) == 1 else None)
    if name not in names:
        print(f"hft xts: name one of the xts brokers with --broker: {names}", file=sys.stderr)
        return 2
    broker = XtsBroker(config.brokers[name].settings, name, data_dir=config.host.data_dir)
    try:
        await broker.connect()
        instruments = await broker.instruments()
        codes = (await broker.client_config()).get("xtsMessageCode", {})
        kind = "dealer" if broker.dealer else "pro"
        print(f"{name}: {kind} login, accounts {', '.join(broker.accounts())}")
        print(f"{name}: {len(instruments)} instruments in {', '.join(broker.config.segments)}")
        if isinstance(codes, dict):
            print(f"{name}: market-data codes {sorted(set(codes.values()), key=str)}")
    except HftError as exc:
        print(f"hft xts: {name}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await broker.close()
    return 0
