"""``[transports.websocket]``: where the WebSocket server listens and its per-connection limits."""

from __future__ import annotations

import attrs

__all__ = ["WebsocketConfig"]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _port(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"{attribute.name} must lie in 0..65535, got {value!r}")


@attrs.frozen
class WebsocketConfig:
    """The keys of ``[transports.websocket]``; every one has a default (see the README)."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8765, validator=_port)
    auth_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    heartbeat_s: float = attrs.field(default=15.0, validator=_positive)
    heartbeat_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    max_message_bytes: int = attrs.field(default=65_536, validator=attrs.validators.ge(1024))
    max_subscriptions: int = attrs.field(default=2_000, validator=attrs.validators.gt(0))
    rate_limit_per_s: float = attrs.field(default=50.0, validator=_positive)
    rate_limit_burst: float = attrs.field(default=100.0, validator=attrs.validators.ge(1))
    max_order_backlog: int = attrs.field(default=10_000, validator=attrs.validators.gt(0))
    max_frame_records: int = attrs.field(
        default=1_000, validator=[attrs.validators.gt(0), attrs.validators.le(65_535)]
    )
