"""Domain objects (attrs, fixed-point) to protobuf messages and back.

Enum values are translated by tables; a value a table does not know is refused (in a request) or
a bug (in a reply), never guessed. Order and portfolio prices become decimal strings at the
instrument's scale, market data stays in integer price units beside its ``price_scale``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Final, TypeVar

from hft import ValidationError
from hft.model import (
    Account,
    ConnectionEvent,
    ConnectionState,
    Environment,
    Holding,
    ModifyRequest,
    Order,
    OrderRequest,
    OrderStatus,
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
from hft_grpc._generated import common_pb2 as pb
from hft_grpc._generated import market_data_pb2 as md_pb
from hft_grpc._generated import orders_pb2 as orders_pb
from hft_grpc._generated import portfolio_pb2 as portfolio_pb

__all__ = [
    "EVENT_KINDS",
    "ORDER_STATUS",
    "SIDE",
    "STREAM_MODE",
    "account_out",
    "check_instrument",
    "check_name",
    "connection_out",
    "decimal_string",
    "enum_in",
    "holding_out",
    "modify_request",
    "order_out",
    "order_request",
    "order_status_in",
    "position_out",
    "repeated_field",
    "side_in",
    "stream_mode_in",
    "tick_out",
    "timestamp",
]

K = TypeVar("K")

SIDE: Final = {Side.BUY: pb.SIDE_BUY, Side.SELL: pb.SIDE_SELL}
ORDER_TYPE: Final = {
    OrderType.MARKET: pb.ORDER_TYPE_MARKET,
    OrderType.LIMIT: pb.ORDER_TYPE_LIMIT,
    OrderType.STOP: pb.ORDER_TYPE_STOP,
    OrderType.STOP_LIMIT: pb.ORDER_TYPE_STOP_LIMIT,
}
TIME_IN_FORCE: Final = {
    TimeInForce.DAY: pb.TIME_IN_FORCE_DAY,
    TimeInForce.IOC: pb.TIME_IN_FORCE_IOC,
    TimeInForce.GTC: pb.TIME_IN_FORCE_GTC,
    TimeInForce.FOK: pb.TIME_IN_FORCE_FOK,
}
PRODUCT: Final = {
    Product.CNC: pb.PRODUCT_CNC,
    Product.MIS: pb.PRODUCT_MIS,
    Product.NRML: pb.PRODUCT_NRML,
    Product.MTF: pb.PRODUCT_MTF,
}
ORDER_STATUS: Final = {
    OrderStatus.NEW: pb.ORDER_STATUS_NEW,
    OrderStatus.PENDING: pb.ORDER_STATUS_PENDING,
    OrderStatus.OPEN: pb.ORDER_STATUS_OPEN,
    OrderStatus.PARTIALLY_FILLED: pb.ORDER_STATUS_PARTIALLY_FILLED,
    OrderStatus.FILLED: pb.ORDER_STATUS_FILLED,
    OrderStatus.PENDING_CANCEL: pb.ORDER_STATUS_PENDING_CANCEL,
    OrderStatus.PENDING_MODIFY: pb.ORDER_STATUS_PENDING_MODIFY,
    OrderStatus.CANCELLED: pb.ORDER_STATUS_CANCELLED,
    OrderStatus.REJECTED: pb.ORDER_STATUS_REJECTED,
    OrderStatus.EXPIRED: pb.ORDER_STATUS_EXPIRED,
}
STREAM_MODE: Final = {
    StreamMode.LTP: pb.STREAM_MODE_LTP,
    StreamMode.QUOTE: pb.STREAM_MODE_QUOTE,
    StreamMode.FULL: pb.STREAM_MODE_FULL,
}
ENVIRONMENT: Final = {Environment.LIVE: pb.ENVIRONMENT_LIVE, Environment.SIM: pb.ENVIRONMENT_SIM}
CONNECTION_STATE: Final = {
    ConnectionState.CONNECTED: md_pb.CONNECTION_STATE_CONNECTED,
    ConnectionState.RECONNECTING: md_pb.CONNECTION_STATE_RECONNECTING,
    ConnectionState.RESYNCED: md_pb.CONNECTION_STATE_RESYNCED,
    ConnectionState.DISCONNECTED: md_pb.CONNECTION_STATE_DISCONNECTED,
}
EVENT_KINDS: Final = {
    "created": orders_pb.ORDER_EVENT_KIND_CREATED,
    "accepted": orders_pb.ORDER_EVENT_KIND_ACCEPTED,
    "status": orders_pb.ORDER_EVENT_KIND_STATUS,
    "fill": orders_pb.ORDER_EVENT_KIND_FILL,
    "modified": orders_pb.ORDER_EVENT_KIND_MODIFIED,
}

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NAME: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_INSTRUMENT: Final = re.compile(r"[A-Za-z0-9_-]{1,16}:[^\x00-\x1f\x7f]{1,64}")
_CLIENT_ORDER_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{0,64}")
_PRICE: Final = re.compile(r"[0-9]{1,12}(\.[0-9]{1,8})?")
_MAX_QUANTITY: Final = 1_000_000_000
_MAX_EXTRAS: Final = 16


def _reverse(table: Mapping[K, int]) -> dict[int, K]:
    return {number: value for value, number in table.items()}


_SIDE_IN: Final = _reverse(SIDE)
_ORDER_TYPE_IN: Final = _reverse(ORDER_TYPE)
_TIME_IN_FORCE_IN: Final = _reverse(TIME_IN_FORCE)
_PRODUCT_IN: Final = _reverse(PRODUCT)
_ORDER_STATUS_IN: Final = _reverse(ORDER_STATUS)
_STREAM_MODE_IN: Final = _reverse(STREAM_MODE)


def enum_in(table: Mapping[int, K], number: int, field: str, default: K | None = None) -> K:
    """The model value of a request's enum field; UNSPECIFIED (0) is ``default`` or refused."""
    if number == 0 and default is not None:
        return default
    value = table.get(number)
    if value is None:
        what = "is required" if number == 0 else f"has no value {number}"
        raise ValidationError(f"{field} {what}", code="invalid")
    return value


def side_in(number: int) -> Side:
    return enum_in(_SIDE_IN, number, "side")


def order_status_in(number: int) -> OrderStatus | None:
    return None if number == 0 else enum_in(_ORDER_STATUS_IN, number, "status")


def stream_mode_in(number: int) -> StreamMode:
    return enum_in(_STREAM_MODE_IN, number, "mode", StreamMode.QUOTE)


def check_name(value: str, field: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValidationError(f"{field} must be 1-64 of A-Z a-z 0-9 _ . @ -", code="invalid")
    return value


def check_instrument(value: str, field: str = "instrument") -> str:
    if not _INSTRUMENT.fullmatch(value):
        raise ValidationError(
            f"{field} {value[:80]!r} is not an instrument key like NSE:INFY", code="invalid"
        )
    return value


def _price_in(text: str, scale: int, field: str) -> int:
    if not _PRICE.fullmatch(text):
        raise ValidationError(
            f"{field} {text[:40]!r} is not a positive decimal price like 1500.05", code="invalid"
        )
    try:
        units = to_price_units(text, scale)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc.message}", code="invalid") from None
    if units <= 0:  # "0" and "0.00" match the pattern
        raise ValidationError(f"{field} must be positive, got {text!r}", code="invalid")
    return units


def _quantity_in(value: int, field: str) -> int:
    if not 0 < value <= _MAX_QUANTITY:
        raise ValidationError(f"{field} must lie in 1..{_MAX_QUANTITY}", code="invalid")
    return value


def order_request(message: orders_pb.PlaceRequest, scale: int) -> OrderRequest:
    """The core's request for ``message``, prices parsed at ``scale``."""
    if len(message.extras) > _MAX_EXTRAS or any(
        len(k) > 64 or len(v) > 256 for k, v in message.extras.items()
    ):
        raise ValidationError(
            f"extras holds at most {_MAX_EXTRAS} entries, keys of at most 64 characters and "
            "values of at most 256",
            code="invalid",
        )
    if not _CLIENT_ORDER_ID.fullmatch(message.client_order_id):
        raise ValidationError(
            "client_order_id must be at most 64 of A-Z a-z 0-9 _ . : -", code="invalid"
        )
    if len(message.tag) > 64:
        raise ValidationError("tag must be at most 64 characters", code="invalid")
    if not 0 <= message.disclosed_quantity <= _MAX_QUANTITY:
        raise ValidationError("disclosed_quantity must lie in 0..quantity", code="invalid")
    return OrderRequest(
        account=check_name(message.account, "account"),
        instrument=check_instrument(message.instrument),
        side=side_in(message.side),
        quantity=_quantity_in(message.quantity, "quantity"),
        order_type=enum_in(_ORDER_TYPE_IN, message.order_type, "order_type", OrderType.LIMIT),
        price=_price_in(message.price, scale, "price") if message.HasField("price") else None,
        trigger_price=(
            _price_in(message.trigger_price, scale, "trigger_price")
            if message.HasField("trigger_price")
            else None
        ),
        product=enum_in(_PRODUCT_IN, message.product, "product", Product.MIS),
        time_in_force=enum_in(
            _TIME_IN_FORCE_IN, message.time_in_force, "time_in_force", TimeInForce.DAY
        ),
        disclosed_quantity=message.disclosed_quantity,
        client_order_id=message.client_order_id,
        tag=message.tag,
        extras=dict(message.extras),
    )


def modify_request(message: orders_pb.ModifyRequest, scale: int) -> ModifyRequest:
    return ModifyRequest(
        quantity=(
            _quantity_in(message.quantity, "quantity") if message.HasField("quantity") else None
        ),
        price=_price_in(message.price, scale, "price") if message.HasField("price") else None,
        trigger_price=(
            _price_in(message.trigger_price, scale, "trigger_price")
            if message.HasField("trigger_price")
            else None
        ),
        order_type=(
            None
            if message.order_type == 0
            else enum_in(_ORDER_TYPE_IN, message.order_type, "order_type")
        ),
        time_in_force=(
            None
            if message.time_in_force == 0
            else enum_in(_TIME_IN_FORCE_IN, message.time_in_force, "time_in_force")
        ),
    )


def timestamp(at: dt.datetime) -> pb.Timestamp:
    # Integer arithmetic on the timedelta: a float timestamp would lose nanoseconds.
    return pb.Timestamp(unix_ns=(at - _EPOCH) // dt.timedelta(microseconds=1) * 1000)


def decimal_string(value: Decimal | int, scale: int) -> str:
    """Price units (possibly fractional, e.g. an average) as a decimal string in currency units."""
    if isinstance(value, int):
        return format_price(value, scale)
    if value == value.to_integral_value():
        return format_price(int(value), scale)
    # A fraction of a price unit (an average): every digit, so more places than the scale.
    return format(value.scaleb(-scale).normalize(), "f")


def order_out(order: Order, scale: int) -> orders_pb.Order:
    request = order.request
    out = orders_pb.Order(
        order_id=order.order_id,
        account=request.account,
        instrument=request.instrument,
        side=SIDE[request.side],
        quantity=request.quantity,
        order_type=ORDER_TYPE[request.order_type],
        product=PRODUCT[request.product],
        time_in_force=TIME_IN_FORCE[request.time_in_force],
        disclosed_quantity=request.disclosed_quantity,
        client_order_id=request.client_order_id,
        tag=request.tag,
        status=ORDER_STATUS[order.status],
        filled_quantity=order.filled_quantity,
        remaining_quantity=order.remaining_quantity,
        reason=order.reason,
        user=order.user,
        created_at=timestamp(order.created_at),
        history=[
            orders_pb.StatusChange(
                status=ORDER_STATUS[h.status], at=timestamp(h.at), reason=h.reason
            )
            for h in order.history
        ],
    )
    if request.price is not None:
        out.price = format_price(request.price, scale)
    if request.trigger_price is not None:
        out.trigger_price = format_price(request.trigger_price, scale)
    average = order.average_price
    if average is not None:
        out.average_price = decimal_string(average, scale)
    if order.broker_order_id is not None:
        out.broker_order_id = order.broker_order_id
    if order.exchange_order_id is not None:
        out.exchange_order_id = order.exchange_order_id
    return out


def tick_out(tick: Tick, scale: int) -> md_pb.Tick:
    out = md_pb.Tick(
        instrument=tick.instrument,
        seq=tick.seq,
        mode=STREAM_MODE[tick.mode],
        price_scale=scale,
        last_price=tick.last_price,
        timestamp_ns=tick.timestamp_ns,
    )
    for name in (
        "last_quantity",
        "volume",
        "average_price",
        "total_buy_quantity",
        "total_sell_quantity",
        "open_interest",
    ):
        value = getattr(tick, name)
        if value is not None:
            setattr(out, name, value)
    ohlc = tick.ohlc
    if ohlc is not None:
        out.ohlc.CopyFrom(
            md_pb.Ohlc(open=ohlc.open, high=ohlc.high, low=ohlc.low, close=ohlc.close)
        )
    depth = tick.depth
    if depth is not None:
        out.bids.extend(
            md_pb.DepthLevel(price=d.price, quantity=d.quantity, orders=d.orders)
            for d in depth.bids
        )
        out.asks.extend(
            md_pb.DepthLevel(price=d.price, quantity=d.quantity, orders=d.orders)
            for d in depth.asks
        )
    return out


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def repeated_field(number: int, encoded: list[bytes]) -> bytes:
    """A message whose only content is the repeated message field ``number`` holding the
    already encoded ``encoded``: what that message's ``SerializeToString`` would give, built
    from bytes shared between streams instead of re-encoding each message per client."""
    tag = _varint(number << 3 | 2)  # wire type 2: length-delimited
    return b"".join(tag + _varint(len(item)) + item for item in encoded)


def connection_out(event: ConnectionEvent) -> md_pb.ConnectionStatus:
    return md_pb.ConnectionStatus(
        broker=event.broker,
        state=CONNECTION_STATE[event.state],
        reason=event.reason,
        at=timestamp(event.at),
    )


def _opt(value: int | None, scale: int) -> str | None:
    return None if value is None else format_price(value, scale)


def position_out(position: Position, scale: int) -> portfolio_pb.Position:
    return portfolio_pb.Position(
        account=position.account,
        instrument=position.instrument,
        product=PRODUCT[position.product],
        quantity=position.quantity,
        average_price=decimal_string(position.average_price, scale),
        last_price=_opt(position.last_price, scale),
        realised_pnl=decimal_string(position.realised_pnl, scale),
        unrealised_pnl=decimal_string(position.unrealised_pnl, scale),
        buy_quantity=position.buy_quantity,
        buy_value=format_price(position.buy_value, scale),
        sell_quantity=position.sell_quantity,
        sell_value=format_price(position.sell_value, scale),
    )


def holding_out(holding: Holding, scale: int) -> portfolio_pb.Holding:
    return portfolio_pb.Holding(
        account=holding.account,
        instrument=holding.instrument,
        quantity=holding.quantity,
        t1_quantity=holding.t1_quantity,
        average_price=decimal_string(holding.average_price, scale),
        last_price=_opt(holding.last_price, scale),
        isin=holding.isin,
    )


def account_out(account: Account) -> portfolio_pb.Account:
    return portfolio_pb.Account(
        account_id=account.account_id,
        broker=account.broker,
        broker_account=account.broker_account,
        environment=ENVIRONMENT[account.environment],
        name=account.name,
    )
