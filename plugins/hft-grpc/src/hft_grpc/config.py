"""``[transports.grpc]``: where the gRPC server listens and how it treats clients."""

from __future__ import annotations

import attrs

__all__ = ["GrpcConfig"]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _port(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{attribute.name} must lie in 0..65535, got {value!r}")


@attrs.frozen
class GrpcConfig:
    """The keys of ``[transports.grpc]``; every one has a default.

    :param host: the address to bind (``0.0.0.0`` for every interface).
    :param port: the TCP port; ``0`` picks a free one (the bound address is reported).
    :param graceful_timeout_s: how long calls in flight may run on after shutdown begins.
    :param max_stream_instruments: instruments one ``StreamTicks`` call may ask for.
    :param max_streams_per_user: streams (ticks and order events together) one user may have
        open at once.
    :param keepalive_s: how often the server pings an idle connection, to find clients that
        vanished without closing it (their streams then end).
    :param max_batch: ticks or order events one stream message carries at most.
    :param order_backlog: order events a stream may leave unsent before it is ended with
        ``ABORTED`` ``overflow`` (the client resumes from its last seq).
    :param rate_limit_per_s: calls a second each authenticated user may make on average
        (opening a stream counts as one call; what it streams does not).
    :param rate_limit_burst: how many calls a user may make at once before the average holds.
    :param login_rate_per_s: ``Login`` and ``Refresh`` calls a second per client address.
    :param login_burst: how many of those a client address may make at once.
    :param max_message_bytes: the largest request the server accepts.
    :param access_log: log every call as ``grpc.call`` (method, status, code, duration, peer).
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=50051, validator=_port)
    graceful_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    max_stream_instruments: int = attrs.field(default=500, validator=attrs.validators.gt(0))
    max_streams_per_user: int = attrs.field(default=20, validator=attrs.validators.gt(0))
    keepalive_s: float = attrs.field(default=30.0, validator=_positive)
    max_batch: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    order_backlog: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    rate_limit_per_s: float = attrs.field(default=50.0, validator=_positive)
    rate_limit_burst: float = attrs.field(default=100.0, validator=_positive)
    login_rate_per_s: float = attrs.field(default=5.0, validator=_positive)
    login_burst: float = attrs.field(default=20.0, validator=_positive)
    max_message_bytes: int = attrs.field(default=1 << 20, validator=attrs.validators.gt(1023))
    access_log: bool = True

    def __attrs_post_init__(self) -> None:
        if self.rate_limit_burst < 1 or self.login_burst < 1:
            raise ValueError("rate limit bursts must be at least 1")
