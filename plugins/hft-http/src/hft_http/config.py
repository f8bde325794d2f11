"""``[transports.http]``: where the REST API listens and how it treats clients."""

from __future__ import annotations

import attrs

__all__ = ["HttpConfig"]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _port(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{attribute.name} must lie in 0..65535, got {value!r}")


@attrs.frozen
class HttpConfig:
    """The keys of ``[transports.http]``; every one has a default.

    :param host: the address to bind (``0.0.0.0`` for every interface).
    :param port: the TCP port; ``0`` picks a free one (the bound address is reported).
    :param cors_origins: origins allowed to call the API from a browser (``["*"]`` for any);
        empty turns CORS off.
    :param rate_limit_per_s: requests a second each authenticated user may make on average.
    :param rate_limit_burst: how many requests a user may make at once before the average holds.
    :param anonymous_rate_limit_per_s: the same for unauthenticated requests, per client address
        (login, refresh, and requests whose credentials are missing or wrong).
    :param anonymous_rate_limit_burst: burst for unauthenticated clients.
    :param docs_enabled: serve the interactive API docs at ``/docs`` (the OpenAPI document at
        ``/openapi.json`` is always served).
    :param access_log: log every request as ``http.request`` (method, route, status, duration).
    :param graceful_timeout_s: how long in-flight requests may run on after shutdown begins.
    :param keep_alive_timeout_s: how long an idle keep-alive connection is kept open.
    :param ready_timeout_s: how long ``/health/ready`` waits for the storage ping.
    :param max_watchlist: instruments a user's market watch may hold.
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8080, validator=_port)
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_s: float = attrs.field(default=50.0, validator=_positive)
    rate_limit_burst: float = attrs.field(default=100.0, validator=_positive)
    anonymous_rate_limit_per_s: float = attrs.field(default=5.0, validator=_positive)
    anonymous_rate_limit_burst: float = attrs.field(default=20.0, validator=_positive)
    docs_enabled: bool = True
    access_log: bool = True
    graceful_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    keep_alive_timeout_s: float = attrs.field(default=30.0, validator=_positive)
    ready_timeout_s: float = attrs.field(default=2.0, validator=_positive)
    max_watchlist: int = attrs.field(default=200, validator=attrs.validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if self.rate_limit_burst < 1 or self.anonymous_rate_limit_burst < 1:
            raise ValueError("rate limit bursts must be at least 1")
