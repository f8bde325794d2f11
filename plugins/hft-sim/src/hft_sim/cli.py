"""``hft sim``: administer sim accounts while the host is not running.

``hft sim funds ACCOUNT`` shows an account's cash; ``--add RUPEES`` tops it up,
``--withdraw RUPEES`` takes cash out, ``--reset`` returns it to the configured starting cash
(and zeroes today's realised PnL). The change is written to the sim's state in the configured
storage, which the broker reads when it connects. A host that is running owns that state and
would overwrite the change, so the command refuses while the state says a host is running (its
last save is recent); ``--force`` overrides that, e.g. after a crash. A running host's accounts
are changed through :meth:`hft_sim.broker.SimBroker.top_up` and ``reset_funds`` instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any, Final

from hft.model import format_price, to_price_units

if TYPE_CHECKING:
    from hft_sim.config import SimConfig

__all__ = ["HELP", "configure", "run"]

HELP: Final = "administer sim accounts: show, top up, withdraw or reset funds"
#: A state saved more recently than this by a running host means the host is still up.
RUNNING_GRACE_S: Final = 30.0


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    funds = commands.add_parser("funds", help="show or change a sim account's cash")
    funds.add_argument("account", help="the sim account code (broker account), e.g. default")
    funds.add_argument(
        "--broker", help="the sim broker instance (default: the only one configured)"
    )
    change = funds.add_mutually_exclusive_group()
    change.add_argument("--add", metavar="RUPEES", help="add cash, e.g. 100000.00")
    change.add_argument("--withdraw", metavar="RUPEES", help="take cash out, e.g. 5000")
    change.add_argument("--reset", action="store_true", help="back to the configured starting cash")
    funds.add_argument(
        "--force", action="store_true", help="change the state even if a host seems to run"
    )


def run(args: argparse.Namespace) -> Any:
    return _funds(args)


async def _funds(args: argparse.Namespace) -> int:
    from hft._config import read_config, resolve_config
    from hft._errors import ValidationError
    from hft._host import open_storage
    from hft._plugins import PluginHost, plugins_from_env
    from hft_sim.accounts import SimAccount
    from hft_sim.broker import STATE_NAMESPACE, STATE_VERSION

    core = read_config(getattr(args, "config", None))
    plugins = PluginHost.load(
        only=plugins_from_env(),
        disabled=core.host.disabled_plugins,
        required=core.host.required_plugins,
    )
    config = resolve_config(core, plugins)
    sims = [name for name, section in config.brokers.items() if section.plugin == "sim"]
    if args.broker is not None:
        if args.broker not in sims:
            return _error(f"no sim broker named {args.broker!r} (configured: {_names(sims)})")
        name = args.broker
    elif len(sims) == 1:
        name = sims[0]
    else:
        return _error(f"name the sim broker with --broker (configured: {_names(sims)})")
    settings: SimConfig = config.brokers[name].settings
    code = args.account
    if code not in settings.accounts:
        return _error(
            f"broker {name!r} has no sim account {code!r} (configured: {_names(settings.accounts)})"
        )
    change: int | None = None
    for option, sign in (("add", 1), ("withdraw", -1)):
        text = getattr(args, option)
        if text is not None:
            paise = to_price_units(text, 2)
            if paise <= 0:
                raise ValidationError(f"--{option} takes a positive amount, got {text}")
            change = sign * paise

    storage = open_storage(config.storage.url, plugins)
    await storage.open()
    try:
        raw = await storage.get_state(STATE_NAMESPACE, name)
        state: dict[str, Any] = json.loads(raw) if raw else {"version": STATE_VERSION}
        if (change is not None or args.reset) and not args.force and _host_running(state, settings):
            return _error(
                f"a host is running sim broker {name!r} (state saved at {state.get('saved_at')}); "
                "stop it first, or pass --force if it is not running"
            )
        accounts = state.setdefault("accounts", {})
        starting = settings.accounts[code].cash_paise
        data = accounts.get(code)
        account = SimAccount.from_json(code, data) if data else SimAccount.new(code, starting)
        if change is not None:
            try:
                account.top_up(change)
            except ValueError as exc:
                return _error(str(exc))
        elif args.reset:
            account.starting_cash = starting
            account.reset_funds()
        if change is not None or args.reset:
            accounts[code] = account.to_json()
            await storage.put_state(STATE_NAMESPACE, name, json.dumps(state).encode())
    finally:
        await storage.close()
    print(
        f"{name}/{code}: cash ₹{format_price(account.cash, 2)}, realised today "
        f"₹{format_price(account.realised_day, 2)} (starting cash "
        f"₹{format_price(account.starting_cash, 2)})"
    )
    return 0


def _host_running(state: dict[str, Any], settings: SimConfig) -> bool:
    if not state.get("running") or "saved_at" not in state:
        return False
    saved = dt.datetime.fromisoformat(state["saved_at"])
    grace = max(RUNNING_GRACE_S, 3 * settings.persist_interval_ms / 1000)
    return (dt.datetime.now(dt.UTC) - saved).total_seconds() < grace


def _names(names: Any) -> str:
    return ", ".join(names) or "none"


def _error(message: str) -> int:
    print(f"hft sim: error: {message}", file=sys.stderr)
    return 1
