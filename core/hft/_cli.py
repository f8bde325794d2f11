"""The ``hft`` command line: the core's commands plus those plugins add through their hook."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import anyio

import hft
from hft import _logging
from hft._config import Config, CoreConfig, read_config, resolve_config
from hft._errors import ConfigError, HftError
from hft._host import Host, open_storage, redact_url
from hft._plugins import PluginHost, plugins_from_env

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hft`` console script; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config")
    known, _ = early.parse_known_args(args_list)

    _logging.configure(level="warning")
    core: CoreConfig | None = None
    core_error: ConfigError | None = None
    try:
        core = read_config(known.config)
    except ConfigError as exc:
        core_error = exc
    try:
        plugins = PluginHost.load(
            only=plugins_from_env(),
            disabled=core.host.disabled_plugins if core else (),
            required=core.host.required_plugins if core else (),
        )
    except HftError as exc:
        return _fail(exc)

    parser = _build_parser(plugins)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "needs_config", False) and core_error is not None:
        return _fail(core_error)
    try:
        result = args.run(args, plugins=plugins, core=core)
        if inspect.isawaitable(result):
            awaitable = result

            async def wait() -> Any:
                return await awaitable

            result = anyio.run(wait, backend="trio")
    except HftError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return 130
    return EXIT_OK if result is None else int(result)


def _fail(exc: HftError) -> int:
    print(f"hft: error: {exc.message}", file=sys.stderr)
    return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILURE


def _build_parser(plugins: PluginHost) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hft", description="hft: a plugin-based trading platform framework."
    )
    parser.add_argument(
        "--config", metavar="PATH", help="config file (default: $HFT_CONFIG, else ./hft.toml)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    version = commands.add_parser("version", help="show the core's and every plugin's version")
    version.set_defaults(run=_version)

    plugins_cmd = commands.add_parser("plugins", help="inspect installed plugins")
    plugins_sub = plugins_cmd.add_subparsers(
        dest="plugins_command", metavar="SUBCOMMAND", required=True
    )
    listing = plugins_sub.add_parser("list", help="every plugin with its hooks and load error")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(run=_plugins_list)

    config_cmd = commands.add_parser("config", help="inspect the configuration")
    config_sub = config_cmd.add_subparsers(
        dest="config_command", metavar="SUBCOMMAND", required=True
    )
    check = config_sub.add_parser("check", help="validate the configuration and summarise it")
    check.set_defaults(run=_config_check, needs_config=True)

    serve = commands.add_parser("serve", help="run the host: storage, brokers and transports")
    serve.set_defaults(run=_serve, needs_config=True)

    for registration in plugins.commands:
        help_text, configure, run = registration.factory
        sub = commands.add_parser(registration.name, help=help_text)
        configure(sub)
        sub.set_defaults(run=_plugin_runner(run), needs_config=False)
    return parser


def _plugin_runner(run: Any) -> Any:
    def runner(args: argparse.Namespace, **_: Any) -> Any:
        return run(args)

    return runner


# Commands ---------------------------------------------------------------------------------------


def _version(args: argparse.Namespace, *, plugins: PluginHost, **_: Any) -> int:
    out: TextIO = sys.stdout
    print(f"hft {hft.__version__} (Python {sys.version.split()[0]})", file=out)
    for info in plugins.infos():
        if info.builtin:
            continue
        extra = f" [{info.details}]" if info.details else ""
        broken = " (failed to load)" if info.error else ""
        print(f"  {info.name}: {info.distribution} {info.version}{extra}{broken}", file=out)
    return EXIT_OK


def _plugins_list(args: argparse.Namespace, *, plugins: PluginHost, **_: Any) -> int:
    infos = plugins.infos()
    if args.json:
        rows = [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "hooks": list(i.hooks),
                "error": i.error,
                "builtin": i.builtin,
                "details": i.details,
            }
            for i in infos
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    header = ("NAME", "DISTRIBUTION", "VERSION", "HOOKS / ERROR")
    rows_text = [
        (
            i.name,
            i.distribution,
            i.version + (f" [{i.details}]" if i.details else ""),
            f"ERROR: {i.error}" if i.error else ", ".join(h.removeprefix("hft_") for h in i.hooks),
        )
        for i in infos
    ]
    widths = [max(len(r[c]) for r in [header, *rows_text]) for c in range(3)]
    for row in [header, *rows_text]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3]
        )
    return EXIT_OK


def _resolved(plugins: PluginHost, core: CoreConfig | None) -> Config:
    assert core is not None  # guaranteed by needs_config
    return resolve_config(core, plugins)


def _config_check(args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None) -> int:
    config = _resolved(plugins, core)
    open_storage(config.storage.url, plugins)  # an unknown scheme fails here, not at serve time
    source = str(config.source) if config.source else "(none: embedded default)"
    print(f"config: {source}")
    print(f"storage: {redact_url(config.storage.url)}")
    for name, broker in config.brokers.items():
        print(f"broker {name}: plugin {broker.plugin}, {broker.environment}")
    for name, account in config.accounts.items():
        where = f"{account.broker}/{account.broker_account}"
        print(f"account {name}: broker {where}, {account.environment}")
    for name, transport in config.transports.items():
        state = "enabled" if transport.enabled else "disabled"
        print(f"transport {name}: {state}")
    rules = [name for name, rule in config.risk.items() if rule.enabled]
    print(f"risk rules: {', '.join(rules) or 'none'}")
    if not config.brokers:
        print("warning: no broker configured or installed; orders cannot be routed")
    print("ok")
    return EXIT_OK


def _serve(args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None) -> int:
    config = _resolved(plugins, core)
    _logging.configure(level=config.logging.level, fmt=config.logging.format)
    host = Host(config, plugins)

    async def run() -> None:
        await host.serve()

    anyio.run(run, backend="trio")
    return EXIT_OK
