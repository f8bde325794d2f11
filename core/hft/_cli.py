"""The ``hft`` command line: the core's commands plus those plugins add through their hook."""

from __future__ import annotations

import argparse
import getpass
import inspect
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio

import hft
from hft import _logging
from hft._auth import AuthService
from hft._config import Config, CoreConfig, read_config, resolve_config
from hft._errors import ConfigError, HftError, ValidationError
from hft._host import Host, open_storage, redact_url
from hft._plugins import PluginHost, plugins_from_env
from hft.model import Account, Environment, Role, converter

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

    _add_users_commands(commands)

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


# Users ------------------------------------------------------------------------------------------


def _add_users_commands(commands: Any) -> None:
    users = commands.add_parser("users", help="manage users, their accounts and API keys")
    sub = users.add_subparsers(dest="users_command", metavar="SUBCOMMAND", required=True)

    add = sub.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.TRADER.value)
    add.add_argument(
        "--kind",
        choices=[e.value for e in Environment],
        default=Environment.SIM.value,
        help="live or sim (default); a sim user never reaches a live account",
    )
    add.add_argument(
        "--account", action="append", default=[], metavar="ID", help="grant an account (repeat)"
    )
    _password_option(add)
    add.set_defaults(run=_users_add, needs_config=True)

    listing = sub.add_parser("list", help="every user with role, kind, status and accounts")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(run=_users_list, needs_config=True)

    passwd = sub.add_parser("passwd", help="set a password; the user's sessions end")
    passwd.add_argument("username")
    _password_option(passwd)
    passwd.set_defaults(run=_users_passwd, needs_config=True)

    disable = sub.add_parser("disable", help="disable a user: sessions end, API keys refused")
    disable.add_argument("username")
    disable.add_argument("--enable", action="store_true", help="enable the user again")
    disable.set_defaults(run=_users_disable, needs_config=True)

    grant = sub.add_parser("grant", help="let a user reach an account")
    grant.add_argument("username")
    grant.add_argument("account")
    grant.add_argument("--remove", action="store_true", help="take the account away instead")
    grant.set_defaults(run=_users_grant, needs_config=True)

    role = sub.add_parser("role", help="change a user's role")
    role.add_argument("username")
    role.add_argument("role", choices=[r.value for r in Role])
    role.set_defaults(run=_users_role, needs_config=True)

    apikey = sub.add_parser("apikey", help="API keys for bots")
    keys = apikey.add_subparsers(dest="apikey_command", metavar="SUBCOMMAND", required=True)
    create = keys.add_parser("create", help="create a key; it is printed once, on stdout")
    create.add_argument("username")
    create.add_argument("name", help="what the key is for, e.g. the bot's name")
    create.set_defaults(run=_apikey_create, needs_config=True)
    key_list = keys.add_parser("list", help="a user's keys (never their secrets)")
    key_list.add_argument("username")
    key_list.add_argument("--json", action="store_true", help="print a JSON array")
    key_list.set_defaults(run=_apikey_list, needs_config=True)
    revoke = keys.add_parser("revoke", help="revoke a key: it is refused from now on")
    revoke.add_argument("username")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_apikey_revoke, needs_config=True)


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat it: ") != password:
        raise ValidationError("the two passwords differ")
    return password


@asynccontextmanager
async def _auth(plugins: PluginHost, core: CoreConfig | None) -> AsyncIterator[AuthService]:
    """The configured store, opened, with its users loaded; closed on exit."""
    config = _resolved(plugins, core)
    config.host.data_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(config.storage.url, plugins)
    await storage.open()
    try:
        # Accounts are granted by id: make the configured ones known, as `hft serve` does.
        stored = {a.account_id: a for a in await storage.load_accounts()}
        for account_id, section in config.accounts.items():
            account = Account(
                account_id,
                section.broker,
                section.broker_account,
                section.environment,
                section.name,
            )
            if stored.get(account_id) != account:
                await storage.save_account(account)
        auth = AuthService(storage, config.auth)
        await auth.load()
        yield auth
    finally:
        with anyio.CancelScope(shield=True):
            await storage.close()


async def _users_add(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    password = _read_password(args)
    async with _auth(plugins, core) as auth:
        user = await auth.add_user(
            args.username,
            password,
            role=Role(args.role),
            kind=Environment(args.kind),
            accounts=args.account,
        )
    accounts = ", ".join(user.accounts) or "none"
    print(f"created {user.role} {user.username} ({user.kind}); accounts: {accounts}")
    return EXIT_OK


async def _users_list(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    async with _auth(plugins, core) as auth:
        users = auth.users()
    if args.json:
        print(json.dumps([converter.unstructure(u) for u in users], indent=2))
        return EXIT_OK
    header = ("USERNAME", "ROLE", "KIND", "STATUS", "ACCOUNTS")
    rows = [
        (
            u.username,
            str(u.role),
            str(u.kind),
            "disabled" if u.disabled else "enabled",
            ", ".join(u.accounts),
        )
        for u in users
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(4)]
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]).rstrip())
    return EXIT_OK


async def _users_passwd(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    password = _read_password(args)
    async with _auth(plugins, core) as auth:
        await auth.set_password(args.username, password)
    print(f"password of {args.username} changed; their sessions have ended")
    return EXIT_OK


async def _users_disable(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    async with _auth(plugins, core) as auth:
        await auth.set_disabled(args.username, not args.enable)
    print(f"{'enabled' if args.enable else 'disabled'} {args.username}")
    return EXIT_OK


async def _users_grant(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    async with _auth(plugins, core) as auth:
        if args.remove:
            user = await auth.revoke_grant(args.username, args.account)
        else:
            user = await auth.grant(args.username, args.account)
    print(f"{user.username} may reach: {', '.join(user.accounts) or 'no account'}")
    return EXIT_OK


async def _users_role(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    async with _auth(plugins, core) as auth:
        user = await auth.set_role(args.username, Role(args.role))
    print(f"{user.username} is now {user.role}")
    return EXIT_OK


async def _apikey_create(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    async with _auth(plugins, core) as auth:
        info, key = await auth.create_api_key(args.username, args.name)
    # The key alone on stdout, for scripts; the note on stderr. It is never shown again.
    print(f"created API key {info.key_id} for {info.username}; keep it now:", file=sys.stderr)
    print(key)
    return EXIT_OK


async def _apikey_list(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    async with _auth(plugins, core) as auth:
        keys = auth.api_keys(args.username)
    if args.json:
        rows = [
            {
                "key_id": k.key_id,
                "name": k.name,
                "created_at": k.created_at.isoformat(),
                "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
            }
            for k in keys
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for k in keys:
        used = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "never"
        print(f"{k.key_id}  {k.name}  created {k.created_at:%Y-%m-%d %H:%M}  last used {used}")
    return EXIT_OK


async def _apikey_revoke(
    args: argparse.Namespace, *, plugins: PluginHost, core: CoreConfig | None
) -> int:
    async with _auth(plugins, core) as auth:
        await auth.revoke_api_key(args.username, args.key_id)
    print(f"revoked API key {args.key_id} of {args.username}")
    return EXIT_OK
