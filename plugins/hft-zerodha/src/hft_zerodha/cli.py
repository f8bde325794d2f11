"""``hft zerodha login`` / ``logout`` / ``status``: the daily Kite login, outside the host.

``login`` prints the Kite login URL, then waits for the ``request_token``: Kite redirects the
browser to the app's registered redirect URL, which should be ``http://127.0.0.1:<port>/``
(``redirect_port``) so that a small listener here catches it; the token (or the whole
redirect URL) may also be pasted, or given with ``--request-token``. The token is exchanged
(``POST /session/token`` with the SHA-256 checksum) and the access token stored, owner-only,
until 06:00 IST the next day. ``logout`` invalidates it at Kite and removes the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from hft._errors import ConfigError, HftError, ValidationError
from hft._secret import Secret
from hft.model import utcnow

from . import session as sessions
from .parsing.kite import IST, parse_ist
from .rest import KiteRest

if TYPE_CHECKING:
    from .config import ZerodhaConfig

__all__ = ["HELP", "configure", "request_token_from", "run"]

HELP: Final = "log in to Zerodha Kite (daily), log out, or show the stored session"
_PAGE: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n"
    b"<!doctype html><title>hft</title><p>%s You can close this tab.</p>"
)


def configure(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="zerodha_command", metavar="SUBCOMMAND", required=True)
    login = commands.add_parser("login", help="log in and store today's access token")
    login.add_argument("--broker", help="the zerodha broker instance (default: the only one)")
    login.add_argument("--request-token", help="exchange this request_token without a browser")
    login.add_argument(
        "--no-listen", action="store_true", help="do not listen for the redirect; paste it"
    )
    login.add_argument(
        "--timeout-s", type=float, default=300.0, help="how long to wait for the login (300)"
    )
    logout = commands.add_parser("logout", help="invalidate the stored access token")
    logout.add_argument("--broker", help="the zerodha broker instance (default: the only one)")
    status = commands.add_parser("status", help="show the stored session")
    status.add_argument("--broker", help="the zerodha broker instance (default: the only one)")


def run(args: argparse.Namespace) -> Any:
    return _main(args)


async def _main(args: argparse.Namespace) -> int:
    try:
        name, config, token_file = _resolve(args)
        if args.zerodha_command == "login":
            return await _login(args, name, config, token_file)
        if args.zerodha_command == "logout":
            return await _logout(name, config, token_file)
        return _status(name, config, token_file)
    except HftError as exc:
        print(f"hft zerodha: error: {exc.message}", file=sys.stderr)
        return 1


def _resolve(args: argparse.Namespace) -> tuple[str, ZerodhaConfig, Path]:
    from hft._config import read_config, resolve_config
    from hft._plugins import PluginHost, plugins_from_env

    core = read_config(getattr(args, "config", None))
    plugins = PluginHost.load(
        only=plugins_from_env(),
        disabled=core.host.disabled_plugins,
        required=core.host.required_plugins,
    )
    config = resolve_config(core, plugins)
    names = [n for n, section in config.brokers.items() if section.plugin == "zerodha"]
    listed = ", ".join(names) or "none"
    if args.broker is not None:
        if args.broker not in names:
            raise ConfigError(f"no zerodha broker named {args.broker!r} (configured: {listed})")
        name = args.broker
    elif len(names) == 1:
        name = names[0]
    else:
        raise ConfigError(
            f"name the zerodha broker with --broker (configured: {listed}); a broker is a "
            '[brokers.<name>] section with plugin = "zerodha"'
        )
    settings: ZerodhaConfig = config.brokers[name].settings
    token_file = settings.token_file or sessions.default_token_file(config.host.data_dir, name)
    return name, settings, token_file


# Login ------------------------------------------------------------------------------------------


def login_url(config: ZerodhaConfig) -> str:
    return f"{config.login_url}?{urllib.parse.urlencode({'v': 3, 'api_key': config.api_key})}"


def request_token_from(text: str) -> str:
    """The request token in a pasted redirect URL, query string, or bare token."""
    text = text.strip()
    if "request_token=" in text:
        query = urllib.parse.urlsplit(text).query or text.split("?", 1)[-1]
        values = urllib.parse.parse_qs(query).get("request_token", [""])
        text = values[0]
    if not text or not text.isalnum():
        raise ValidationError(
            "that is not a request_token (letters and digits) or a redirect URL holding one",
            code="kite_bad_request_token",
        )
    return text


async def _login(
    args: argparse.Namespace, name: str, config: ZerodhaConfig, token_file: Path
) -> int:
    secret = config.api_secret
    if not secret:
        raise ConfigError(
            f"brokers.{name}.api_secret is not set; set it in the environment as "
            f"HFT_BROKERS__{name.upper()}__API_SECRET"
        )
    if args.request_token:
        token = request_token_from(args.request_token)
    else:
        print(f"Open this URL in a browser and log in to Kite:\n\n  {login_url(config)}\n")
        with trio.move_on_after(args.timeout_s) as scope:
            token = await _wait_for_token(config, listen=not args.no_listen)
        if scope.cancelled_caught:
            print(f"hft zerodha: error: no login within {args.timeout_s:g}s", file=sys.stderr)
            return 1
    stored = await exchange(config, secret, token)
    await trio.to_thread.run_sync(sessions.save, token_file, stored)
    until = stored.expires_at.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")
    print(f"Logged in as {stored.user_id} ({stored.user_name}); the session lasts until {until}.")
    print(f"The access token is in {token_file} (readable only by you).")
    return 0


async def exchange(
    config: ZerodhaConfig, secret: Secret, request_token: str
) -> sessions.StoredSession:
    """``POST /session/token``: a request token for the day's session."""
    form = {
        "api_key": config.api_key,
        "request_token": request_token,
        "checksum": sessions.checksum(config.api_key, request_token, secret.reveal()),
    }
    async with KiteRest(config) as rest:
        data = await rest.call("POST", "/session/token", "other", data=form, authorised=False)
    if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
        raise ValidationError(
            "kite: the session response has no access_token", code="kite_malformed"
        )
    now = utcnow()
    login = parse_ist(data.get("login_time") if isinstance(data.get("login_time"), str) else None)
    return sessions.StoredSession(
        api_key=config.api_key,
        user_id=str(data.get("user_id", "")),
        user_name=str(data.get("user_name", "")),
        access_token=Secret(data["access_token"]),
        login_time=login or now,
        expires_at=sessions.expiry_after(max(login or now, now)),
    )


async def _wait_for_token(config: ZerodhaConfig, *, listen: bool) -> str:
    """The first request token to arrive: from the redirect listener or pasted on stdin."""
    listeners: list[trio.SocketListener] = []
    if listen:
        try:
            listeners = await trio.open_tcp_listeners(config.redirect_port, host="127.0.0.1")
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on 127.0.0.1:{config.redirect_port} for Kite's redirect "
                f"({exc.strerror}); free the port, change redirect_port (and the app's "
                "redirect URL), or pass --no-listen and paste the redirect URL"
            ) from None
    found: list[str] = []
    async with trio.open_nursery() as nursery:

        def done(token: str) -> None:
            found.append(token)
            nursery.cancel_scope.cancel()

        if listeners:
            port = listeners[0].socket.getsockname()[1]
            print(f"Waiting for Kite's redirect on http://127.0.0.1:{port}/ ...")
            nursery.start_soon(_serve_redirect, listeners, done)
        print("...or paste the redirect URL (or its request_token) here and press Enter:")
        nursery.start_soon(_read_pasted, done)
    return found[0]


async def _read_pasted(done: Any) -> None:
    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        if not line:
            await trio.sleep_forever()  # stdin closed: only the listener can answer now
        try:
            done(request_token_from(line))
            return
        except ValidationError as exc:
            print(f"hft zerodha: {exc.message}; try again:", file=sys.stderr)


async def _serve_redirect(listeners: list[trio.SocketListener], done: Any) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            with trio.move_on_after(10):
                while b"\r\n" not in request and len(request) < 16384:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        break
                    request += chunk
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            target = parts[1] if len(parts) == 3 else ""
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            token = query.get("request_token", [""])[0]
            status = query.get("status", ["success"])[0]
            if token and token.isalnum() and status == "success":
                await stream.send_all(_PAGE % b"Logged in to Kite; hft has the token.")
                done(token)
            else:
                await stream.send_all(_PAGE % b"No request_token in this request.")

    await trio.serve_listeners(handle, listeners)


# Logout and status -------------------------------------------------------------------------------


async def _logout(name: str, config: ZerodhaConfig, token_file: Path) -> int:
    try:
        stored = sessions.load(token_file, config.api_key, name, utcnow())
    except HftError as exc:
        await trio.Path(token_file).unlink(missing_ok=True)
        print(f"No session to log out of ({exc.message}).")
        return 0
    async with KiteRest(config, stored.access_token) as rest:
        await rest.call(
            "DELETE",
            "/session/token",
            "other",
            params={"api_key": config.api_key, "access_token": stored.access_token.reveal()},
        )
    await trio.Path(token_file).unlink(missing_ok=True)
    print(f"Logged out {stored.user_id}; the access token is invalidated and {token_file} removed.")
    return 0


def _status(name: str, config: ZerodhaConfig, token_file: Path) -> int:
    stored = sessions.load(token_file, config.api_key, name, utcnow())
    until = stored.expires_at.astimezone(IST)
    left = until - dt.datetime.now(IST)
    print(
        f"{name}: logged in as {stored.user_id} ({stored.user_name}) until "
        f"{until:%Y-%m-%d %H:%M IST} ({left.total_seconds() / 3600:.1f} h left)"
    )
    return 0
