"""``[brokers.<name>]`` keys of the ``zerodha`` broker.

Only ``api_key`` is required to stream and trade; ``api_secret`` is needed by ``hft zerodha
login`` alone (the token exchange). Put the secret in the environment
(``HFT_BROKERS__<NAME>__API_SECRET``), never in a file you share. The README lists every key;
a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import attrs

from hft._secret import Secret

__all__ = ["API_URL", "LOGIN_URL", "WS_URL", "ZerodhaConfig"]

API_URL: Final = "https://api.kite.trade"
LOGIN_URL: Final = "https://kite.zerodha.com/connect/login"
WS_URL: Final = "wss://ws.kite.trade"


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _port(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{attribute.name} must lie in 0..65535, got {value}")


@attrs.frozen
class ZerodhaConfig:
    """One Kite Connect app login (one api key, one Zerodha user)."""

    #: The app's api key from the Kite developer console.
    api_key: str = attrs.field(validator=attrs.validators.min_len(1))
    #: The app's api secret; only ``hft zerodha login`` uses it.
    api_secret: Secret | None = None
    #: The Zerodha user id (``AB1234``): the broker account code. Empty: taken from the session.
    user_id: str = ""
    #: Where the access token is kept (mode 0600). Empty: ``<data_dir>/zerodha-<name>.token``.
    token_file: Path | None = None
    #: The port ``hft zerodha login`` listens on at 127.0.0.1 for Kite's redirect; it must match
    #: the redirect URL registered for the app (``http://127.0.0.1:<port>/``).
    redirect_port: int = attrs.field(default=5000, validator=_port)
    #: Exchanges whose instruments are loaded (empty: every exchange in the dump).
    exchanges: tuple[str, ...] = ()
    #: The REST root, login page and ticker URL (change them only for a test server).
    api_url: str = API_URL
    login_url: str = LOGIN_URL
    ws_url: str = WS_URL
    #: Timeout of one REST call.
    timeout_s: float = attrs.field(default=7.0, validator=_positive)
    #: Silence on a ticker connection (not even a heartbeat) after which it is reconnected.
    stall_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    #: First and longest wait between ticker reconnection attempts (doubling, with jitter).
    reconnect_initial_s: float = attrs.field(default=1.0, validator=_positive)
    reconnect_max_s: float = attrs.field(default=60.0, validator=_positive)
    #: Instruments per ticker connection and connections per api key (Kite: 3000 and 3).
    max_tokens_per_connection: int = attrs.field(default=3000, validator=_positive)
    max_connections: int = attrs.field(default=3, validator=_positive)
    #: First wait after a 429 before the call is tried again (doubling, 5 tries in all).
    retry_initial_s: float = attrs.field(default=0.5, validator=_positive)
