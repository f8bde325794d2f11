"""``[brokers.<name>]`` keys of the ``xts`` broker.

XTS is white-labelled: every broker runs its own install, so one section describes one install
(its ``url``) and one login on it. Credentials are :class:`hft.Secret` values: put them in the
environment (``HFT_BROKERS__<NAME>__INTERACTIVE_SECRET_KEY=...``), not in the file. The README
lists every key; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import attrs

from hft import Secret
from hft_xts.parsing.master import SEGMENT_CODES

__all__ = ["XtsConfig"]


def _origin(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{attribute.name} must be an http(s) origin like https://xts.example.com")


def _prefix(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith("/") or value.endswith("/") or "?" in value:
        raise ValueError(f"{attribute.name} must be a path like /interactive, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _segments(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    unknown = [s for s in value if s not in SEGMENT_CODES]
    if unknown or not value:
        raise ValueError(
            f"{attribute.name}: unknown or no segments {unknown}; known: {sorted(SEGMENT_CODES)}"
        )


def _secret(_: object, attribute: attrs.Attribute[Any], value: Secret) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must be set (in the environment, preferably)")


@attrs.frozen
class XtsConfig:
    """``[brokers.<name>]`` keys of the ``xts`` broker."""

    #: The install's origin, e.g. ``https://xts.compositedge.com`` or ``https://host:3000``.
    url: str = attrs.field(validator=_origin)
    #: Interactive (order) API key pair.
    interactive_app_key: Secret = attrs.field(validator=_secret)
    interactive_secret_key: Secret = attrs.field(validator=_secret)
    #: Market Data API key pair (a different pair from the interactive one).
    marketdata_app_key: Secret = attrs.field(validator=_secret)
    marketdata_secret_key: Secret = attrs.field(validator=_secret)
    #: The ``source`` sent at login.
    source: str = "WEBAPI"
    #: Path of the Interactive API on the origin (``/1interactive`` on some installs).
    interactive_prefix: str = attrs.field(default="/interactive", validator=_prefix)
    #: Path of the Market Data API (``/marketdata`` on installs older than late 2023).
    marketdata_prefix: str = attrs.field(default="/apimarketdata", validator=_prefix)
    #: Host-lookup flavour: first ``POST {url}/hostlookup``, which names the interactive URL.
    host_lookup: bool = False
    #: The host-lookup access password the broker publishes (sent as ``accesspassword``).
    host_lookup_password: Secret = attrs.field(factory=lambda: Secret(""))
    host_lookup_version: str = "interactive_1.0.1"
    #: Dealer logins: the client codes to serve (each becomes a broker account). Empty: every
    #: client code the login returns. Ignored for a Pro (investor) login.
    clients: tuple[str, ...] = ()
    #: Exchange segments whose instrument master is loaded.
    segments: tuple[str, ...] = attrs.field(default=("NSECM", "NSEFO"), validator=_segments)
    #: Load the NSE and BSE index lists too (as ``INDEX`` instruments).
    indices: bool = True
    #: Market-data socket mode: ``Full`` JSON or the compact ``Partial`` text.
    broadcast_mode: Literal["Full", "Partial"] = "Full"
    #: Message code for ``ltp`` subscriptions: 1512, or 1501 on installs without 1512.
    ltp_message_code: Literal[1501, 1512] = 1512
    #: The unit of order quantities on the wire (spec open question 1): ``units`` (shares or
    #: contracts, what production integrations send) or ``lots`` (what Symphony's field
    #: reference says): quantities sent are divided by the lot size, received ones multiplied.
    quantity_unit: Literal["units", "lots"] = "units"
    #: Verify TLS certificates (the official SDKs turn this off; do not).
    verify_tls: bool = True
    #: Time limit of one REST call.
    timeout_s: float = attrs.field(default=10.0, validator=_positive)
    #: Order mutations (place, modify, cancel, bracket, cover), shared: XTS allows 10/s.
    order_rate_per_s: float = attrs.field(default=10.0, validator=_positive)
    #: Each book, position, balance and holdings route: XTS allows 1/s per route.
    query_rate_per_s: float = attrs.field(default=1.0, validator=_positive)
    #: First and longest wait between socket reconnection attempts.
    reconnect_initial_s: float = attrs.field(default=0.5, validator=_positive)
    reconnect_max_s: float = attrs.field(default=30.0, validator=_positive)
    #: A socket silent this long is dropped and reconnected; 0 uses the server's
    #: ``pingInterval + pingTimeout`` (80 s on the installs seen).
    stall_s: float = 0.0
    #: Log in again this long before the session token's ``exp``.
    relogin_margin_s: float = 300.0
