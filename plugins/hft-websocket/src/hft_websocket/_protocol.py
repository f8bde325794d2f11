"""Client messages (``docs/protocol.md`` section 3) parsed into typed requests, and JSON shapes of
the domain objects the server sends.

:func:`parse` takes untrusted text and either returns a request or raises
:class:`ProtocolError` with the stable code of section 11; nothing else escapes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, TypeAlias

import attrs
import orjson

from hft.model import (
    Bar,
    ModifyRequest,
    Order,
    OrderType,
    Position,
    Product,
    Side,
    StreamMode,
    Tick,
    TimeInForce,
    format_price,
    to_price_units,
)

__all__ = [
    "Auth",
    "Cancel",
    "Modify",
    "Ping",
    "ProtocolError",
    "Request",
    "Submit",
    "Subscribe",
    "Unsubscribe",
    "bar_json",
    "order_json",
    "parse",
    "position_json",
    "tick_json",
]

MAX_ID_CHARS: Final = 64


class ProtocolError(Exception):
    """A message the server refuses; ``extra`` goes into the error message as more fields."""

    def __init__(self, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


@attrs.frozen
class Auth:
    id: str | None
    token: str
    encoding: str
    resume_after: int | None


@attrs.frozen
class Subscribe:
    id: str | None
    instruments: tuple[str, ...]
    mode: StreamMode


@attrs.frozen
class Unsubscribe:
    id: str | None
    instruments: tuple[str, ...]


@attrs.frozen
class Submit:
    id: str | None
    order: Mapping[str, Any]  # checked fields; prices still decimal strings (scale unknown here)


@attrs.frozen
class Modify:
    id: str | None
    order_id: str
    quantity: int | None
    price: str | None
    trigger_price: str | None
    order_type: OrderType | None
    time_in_force: TimeInForce | None

    def request(self, scale: int) -> ModifyRequest:
        return ModifyRequest(
            quantity=self.quantity,
            price=None if self.price is None else to_price_units(self.price, scale),
            trigger_price=(
                None if self.trigger_price is None else to_price_units(self.trigger_price, scale)
            ),
            order_type=self.order_type,
            time_in_force=self.time_in_force,
        )


@attrs.frozen
class Cancel:
    id: str | None
    order_id: str


@attrs.frozen
class Ping:
    id: str | None


Request: TypeAlias = Auth | Subscribe | Unsubscribe | Submit | Modify | Cancel | Ping


# -- field readers -----------------------------------------------------------------------------


def _bad(message: str) -> ProtocolError:
    return ProtocolError("bad_message", message)


def _str(body: Mapping[str, Any], key: str, *, required: bool = True, max_len: int = 256) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise _bad(f"{key!r} is required")
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise _bad(f"{key!r} must be a non-empty string of at most {max_len} characters")
    return value


def _int(body: Mapping[str, Any], key: str, *, minimum: int, required: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise _bad(f"{key!r} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**63:
        raise _bad(f"{key!r} must be an integer of at least {minimum}")
    return value


def _enum(body: Mapping[str, Any], key: str, kind: Callable[[str], Any], default: Any) -> Any:
    value = body.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except ValueError:
        raise _bad(f"{key!r}: {value!r} is not one of the allowed values") from None


def _price(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 32:
        raise _bad(f'{key!r} must be a decimal string, like "1500.05"')
    try:
        Decimal(value)
    except ArithmeticError:
        raise _bad(f"{key!r}: {value!r} is not a decimal number") from None
    return value


def _keys(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("instruments")
    if not isinstance(value, list) or not value:
        raise _bad("'instruments' must be a non-empty list of instrument keys")
    if not all(isinstance(k, str) and 0 < len(k) <= 64 for k in value):
        raise _bad("each instrument key must be a string of 1..64 characters")
    return tuple(dict.fromkeys(value))


# -- the parser --------------------------------------------------------------------------------


def request_id(body: Mapping[str, Any]) -> str | None:
    value = body.get("id")
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise _bad(f"'id' must be a string of 1..{MAX_ID_CHARS} characters")
    return value


def loads(text: str | bytes) -> dict[str, Any]:
    """The JSON object in ``text``; ``bad_json`` for anything else."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_json", "the message is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("bad_json", "the message must be a JSON object")
    return body


def parse(body: Mapping[str, Any]) -> Request:
    """The request in a decoded message (see :func:`loads`)."""
    op = body.get("op")
    rid = request_id(body)
    if not isinstance(op, str):
        raise _bad("'op' is required and must be a string")
    if op == "auth":
        encoding = body.get("encoding", "json")
        if encoding not in ("json", "binary"):
            raise _bad('\'encoding\' must be "json" or "binary"')
        return Auth(
            rid, _str(body, "token", max_len=4096), encoding, _int(body, "resume_after", minimum=0)
        )
    if op == "subscribe":
        mode = _enum(body, "mode", StreamMode, StreamMode.QUOTE)
        return Subscribe(rid, _keys(body), mode)
    if op == "unsubscribe":
        return Unsubscribe(rid, _keys(body))
    if op == "submit":
        return Submit(rid, _order(body.get("order")))
    if op == "modify":
        return Modify(
            rid,
            _str(body, "order_id", max_len=64),
            _int(body, "quantity", minimum=1),
            _price(body, "price"),
            _price(body, "trigger_price"),
            _enum(body, "order_type", OrderType, None),
            _enum(body, "time_in_force", TimeInForce, None),
        )
    if op == "cancel":
        return Cancel(rid, _str(body, "order_id", max_len=64))
    if op == "ping":
        return Ping(rid)
    raise ProtocolError("unknown_op", f"no operation {op[:40]!r}")


def _order(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad("'order' must be an object")
    return {
        "account": _str(value, "account", max_len=64),
        "instrument": _str(value, "instrument", max_len=64),
        "side": _enum(value, "side", Side, None) or _missing("side"),
        "quantity": _int(value, "quantity", minimum=1, required=True),
        "order_type": _enum(value, "order_type", OrderType, OrderType.LIMIT),
        "price": _price(value, "price"),
        "trigger_price": _price(value, "trigger_price"),
        "product": _enum(value, "product", Product, Product.MIS),
        "time_in_force": _enum(value, "time_in_force", TimeInForce, TimeInForce.DAY),
        "disclosed_quantity": _int(value, "disclosed_quantity", minimum=0) or 0,
        "client_order_id": _str(value, "client_order_id", required=False, max_len=64) or "",
        "tag": _str(value, "tag", required=False, max_len=64) or "",
    }


def _missing(key: str) -> Any:
    raise _bad(f"{key!r} is required")


# -- what the server sends ---------------------------------------------------------------------


def _opt_price(value: int | None, scale: int) -> str | None:
    return None if value is None else format_price(value, scale)


def _decimal(value: Decimal, scale: int) -> str:
    if value == value.to_integral_value():
        return format_price(int(value), scale)
    return format(value.scaleb(-scale).normalize(), "f")


def order_json(order: Order, scale: int) -> dict[str, Any]:
    request = order.request
    average = order.average_price
    return {
        "order_id": order.order_id,
        "account": request.account,
        "instrument": request.instrument,
        "side": str(request.side),
        "quantity": request.quantity,
        "order_type": str(request.order_type),
        "price": _opt_price(request.price, scale),
        "trigger_price": _opt_price(request.trigger_price, scale),
        "product": str(request.product),
        "time_in_force": str(request.time_in_force),
        "disclosed_quantity": request.disclosed_quantity,
        "client_order_id": request.client_order_id,
        "tag": request.tag,
        "status": str(order.status),
        "filled_quantity": order.filled_quantity,
        "remaining_quantity": order.remaining_quantity,
        "average_price": None if average is None else _decimal(Decimal(average), scale),
        "broker_order_id": order.broker_order_id,
        "exchange_order_id": order.exchange_order_id,
        "reason": order.reason,
        "user": order.user,
        "created_at": order.created_at.isoformat(),
    }


def position_json(position: Position, scale: int) -> dict[str, Any]:
    return {
        "account": position.account,
        "instrument": position.instrument,
        "product": str(position.product),
        "quantity": position.quantity,
        "average_price": _decimal(position.average_price, scale),
        "last_price": _opt_price(position.last_price, scale),
        "realised_pnl": _decimal(position.realised_pnl, scale),
        "unrealised_pnl": _decimal(position.unrealised_pnl, scale),
        "buy_quantity": position.buy_quantity,
        "buy_value": format_price(position.buy_value, scale),
        "sell_quantity": position.sell_quantity,
        "sell_value": format_price(position.sell_value, scale),
    }


def tick_json(tick: Tick, iid: int, mode: StreamMode, scale: int) -> dict[str, Any]:
    """Section 5's tick object for ``tick`` as a ``mode`` subscriber sees it."""
    out: dict[str, Any] = {
        "instrument": tick.instrument,
        "iid": iid,
        "seq": tick.seq,
        "mode": str(mode),
        "last_price": format_price(tick.last_price, scale),
        "timestamp_ns": tick.timestamp_ns,
    }
    if mode is StreamMode.LTP:
        return out
    levels = 1 if mode is StreamMode.QUOTE else 5
    depth = tick.depth
    ohlc = tick.ohlc
    out.update(
        last_quantity=tick.last_quantity,
        volume=tick.volume,
        average_price=_opt_price(tick.average_price, scale),
        total_buy_quantity=tick.total_buy_quantity,
        total_sell_quantity=tick.total_sell_quantity,
        open_interest=tick.open_interest,
        ohlc=None
        if ohlc is None
        else {
            "open": format_price(ohlc.open, scale),
            "high": format_price(ohlc.high, scale),
            "low": format_price(ohlc.low, scale),
            "close": format_price(ohlc.close, scale),
        },
        bids=[
            {"price": format_price(d.price, scale), "quantity": d.quantity, "orders": d.orders}
            for d in (depth.bids[:levels] if depth else ())
        ],
        asks=[
            {"price": format_price(d.price, scale), "quantity": d.quantity, "orders": d.orders}
            for d in (depth.asks[:levels] if depth else ())
        ],
    )
    return out


def bar_json(bar: Bar, iid: int, scale: int) -> dict[str, Any]:
    """Section 5's bar object (the ``bar`` field of a ``bar`` message)."""
    return {
        "instrument": bar.instrument,
        "iid": iid,
        "start_ns": bar.start_ns,
        "interval_s": bar.interval_s,
        "open": format_price(bar.open, scale),
        "high": format_price(bar.high, scale),
        "low": format_price(bar.low, scale),
        "close": format_price(bar.close, scale),
        "volume": bar.volume,
        "open_interest": bar.open_interest,
    }
