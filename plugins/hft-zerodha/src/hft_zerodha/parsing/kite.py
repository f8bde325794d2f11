"""Kite REST payloads ↔ hft's model: envelopes and errors, orders, trades, portfolio, instruments.

JSON is parsed with ``parse_float=Decimal`` so a price never passes through a binary float;
rupee amounts become integer price units at the instrument's scale. Kite's naive timestamps
are IST. Every function raises :class:`hft.ValidationError` for a payload it cannot read.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Final

import attrs

from hft._errors import (
    AuthError,
    BrokerRejected,
    HftError,
    NetworkError,
    NotFound,
    RateLimited,
    ValidationError,
)
from hft.model import (
    Depth,
    DepthLevel,
    Fill,
    Holding,
    Instrument,
    InstrumentType,
    Ohlc,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    Product,
    Side,
    StreamMode,
    Tick,
    TimeInForce,
    utcnow,
)

from .ticks import SEGMENTS

__all__ = [
    "IST",
    "LOGIN_HINT",
    "Candle",
    "SegmentMargin",
    "candles_from_kite",
    "error_from_response",
    "fill_from_kite",
    "holding_from_kite",
    "instruments_from_csv",
    "kite_error",
    "margins_from_kite",
    "order_status",
    "order_type_to_kite",
    "parse_envelope",
    "parse_ist",
    "position_from_kite",
    "quote_to_tick",
    "scale_of",
    "update_from_kite",
]

IST: Final = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
LOGIN_HINT: Final = "run `hft zerodha login` to log in again"

_AUTH_TYPES: Final = frozenset({"TokenException", "PermissionException", "TwoFAException"})
_REJECT_TYPES: Final = frozenset(
    {"OrderException", "MarginException", "HoldingException", "UserException"}
)
_NETWORK_TYPES: Final = frozenset({"NetworkException", "DataException", "GeneralException"})
_EXCHANGE_SCALES: Final = {"CDS": 7, "BCD": 4, "NCO": 4}


# Envelope and errors ---------------------------------------------------------------------------


def kite_error(status: int, error_type: str, message: str) -> HftError:
    """The :class:`HftError` for one Kite error: by ``error_type``, else by HTTP ``status``.

    The code is ``kite_<error_type>`` (``kite_tokenexception``) so clients can branch on it;
    the HTTP status is always the real one.
    """
    text = message or "(no message)"
    code = f"kite_{error_type.lower()}" if error_type else f"kite_http_{status}"
    if status == 429:
        return RateLimited(f"kite: rate limited: {text}", code="kite_rate_limited", status=429)
    if error_type == "TokenException" or (not error_type and status in (401, 403)):
        return AuthError(
            f"kite: the session expired or was invalidated ({text}); {LOGIN_HINT}",
            code=code,
            status=status,
        )
    if error_type in _AUTH_TYPES:
        return AuthError(f"kite: {error_type}: {text}", code=code, status=status)
    if error_type in _REJECT_TYPES:
        return BrokerRejected(f"kite: {error_type}: {text}", code=code, status=status)
    if error_type == "InputException" or (not error_type and status == 400):
        return ValidationError(
            f"kite: {error_type or 'bad request'}: {text}", code=code, status=status
        )
    if error_type in _NETWORK_TYPES or status >= 500:
        return NetworkError(
            f"kite: {error_type or 'server error'}: {text}", code=code, status=status
        )
    if status in (404, 410):
        return NotFound(f"kite: {error_type or 'not found'}: {text}", code=code, status=status)
    return HftError(f"kite: {error_type or 'error'}: {text}", code=code, status=status)


def _loads(body: bytes | str, what: str) -> Any:
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise ValidationError(
            f"kite: {what}: the response is not JSON", code="kite_malformed", status=502
        ) from None


def error_from_response(status: int, body: bytes, what: str) -> HftError:
    """The error for an HTTP ``status`` >= 400 with ``body`` (a Kite envelope or anything)."""
    try:
        data = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        error_type = data.get("error_type")
        message = data.get("message")
        return kite_error(
            status,
            error_type if isinstance(error_type, str) else "",
            f"{what}: {message}" if isinstance(message, str) else what,
        )
    return kite_error(status, "", f"{what}: HTTP {status} with a body that is not a Kite envelope")


def parse_envelope(body: bytes | str, what: str) -> Any:
    """The ``data`` of a successful ``{"status": "success", "data": ...}`` response.

    A body that is not that envelope raises ValidationError (or the error it carries: Kite's
    clients treat any body with ``error_type`` as an error, whatever the HTTP status).
    """
    envelope = _loads(body, what)
    if not isinstance(envelope, dict):
        raise ValidationError(
            f"kite: {what}: the response is not a JSON object", code="kite_malformed", status=502
        )
    if envelope.get("status") == "error" or "error_type" in envelope:
        error_type = envelope.get("error_type")
        message = envelope.get("message")
        raise kite_error(
            400,
            error_type if isinstance(error_type, str) else "",
            f"{what}: {message}" if isinstance(message, str) else what,
        )
    if envelope.get("status") != "success" or "data" not in envelope:
        raise ValidationError(
            f"kite: {what}: the response has no success envelope", code="kite_malformed", status=502
        )
    return envelope["data"]


# Field helpers ---------------------------------------------------------------------------------


def _bad(what: str, detail: str) -> ValidationError:
    return ValidationError(f"kite: {what}: {detail}", code="kite_malformed", status=502)


def _field(row: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in row:
        raise _bad(what, f"missing field {name!r}")
    return row[name]


def _str(row: Mapping[str, Any], name: str, what: str) -> str:
    value = _field(row, name, what)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _bad(what, f"{name} is not a string: {value!r}")
    return value


def _opt_str(row: Mapping[str, Any], name: str) -> str | None:
    value = row.get(name)
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _int(row: Mapping[str, Any], name: str, what: str, default: int | None = None) -> int:
    value = row.get(name) if default is not None else _field(row, name, what)
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _bad(what, f"{name} is not a number: {value!r}")
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            raise _bad(what, f"{name} is not a whole number: {value}")
        return int(value)
    return value


def _decimal(row: Mapping[str, Any], name: str, what: str) -> Decimal:
    value = row.get(name)
    if value is None:
        return Decimal(0)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _bad(what, f"{name} is not a number: {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise _bad(what, f"{name} is not finite")
    return number


def _units(amount: Decimal, scale: int) -> int:
    """A rupee amount in price units; digits past the scale (float noise in Kite's JSON) are
    rounded half-even."""
    try:
        return int(amount.scaleb(scale).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    except InvalidOperation:
        raise ValidationError(
            f"kite: amount {amount} is out of range", code="kite_malformed"
        ) from None


def scale_of(exchange: str, token: int | None = None) -> int:
    """Decimal places of prices for an instrument: from its token's segment, else its exchange."""
    if token:
        entry = SEGMENTS.get(token & 0xFF)
        if entry is not None:
            return entry[1]
    return _EXCHANGE_SCALES.get(exchange, 2)


def parse_ist(text: str | None) -> dt.datetime | None:
    """A Kite ``yyyy-mm-dd hh:mm:ss`` (IST) or ISO ``...+0530`` timestamp, as aware UTC."""
    if not text:
        return None
    try:
        if "T" in text:
            stamp = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
        else:
            stamp = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
    except ValueError:
        return None
    return stamp.astimezone(dt.UTC)


def _key(row: Mapping[str, Any], what: str) -> tuple[str, str]:
    exchange = _str(row, "exchange", what)
    return exchange, f"{exchange}:{_str(row, 'tradingsymbol', what)}"


# Orders ----------------------------------------------------------------------------------------

_PENDING_STATUSES: Final = frozenset(
    {"PUT ORDER REQ RECEIVED", "PUT ORDER REQUEST RECEIVED", "AMO REQ RECEIVED",
     "VALIDATION PENDING", "OPEN PENDING", "TRIGGER PENDING OPEN"}
)  # fmt: skip


def order_status(kite_status: str, filled: int, quantity: int) -> OrderStatus:
    """Kite's order status (spec 5.5) on hft's state machine.

    Resting states and modifications that went through become OPEN, or PARTIALLY_FILLED once
    something filled; ``UPDATE`` (a postback for a modification or partial fill) likewise.
    An unknown status is taken as PENDING: the broker's guard drops it once the order is past
    that, instead of failing.
    """
    status = kite_status.strip().upper()
    if status == "COMPLETE":
        return OrderStatus.FILLED
    if status.startswith("CANCELLED"):
        return OrderStatus.CANCELLED
    if status == "REJECTED":
        return OrderStatus.REJECTED
    if status in ("OPEN", "TRIGGER PENDING", "MODIFIED", "UPDATE"):
        return OrderStatus.PARTIALLY_FILLED if 0 < filled < quantity else OrderStatus.OPEN
    if status in ("MODIFY VALIDATION PENDING", "MODIFY PENDING"):
        return OrderStatus.PENDING_MODIFY
    if status == "CANCEL PENDING":
        return OrderStatus.PENDING_CANCEL
    return OrderStatus.PENDING


def update_from_kite(
    row: Mapping[str, Any],
    broker: str,
    account: str,
    instrument: Callable[[str], Instrument | None],
) -> OrderUpdate:
    """One order object (order book, history entry or postback) as an :class:`OrderUpdate`."""
    what = "order"
    if not isinstance(row, Mapping):
        raise _bad(what, "an order is not a JSON object")
    order_id = _str(row, "order_id", what)
    exchange, key = _key(row, what)
    known = instrument(key)
    token = row.get("instrument_token")
    scale = (
        known.price_scale
        if known
        else scale_of(exchange, token if isinstance(token, int) else None)
    )
    quantity = _int(row, "quantity", what)
    filled = _int(row, "filled_quantity", what, default=0)
    pending = row.get("pending_quantity")
    status = order_status(_str(row, "status", what), filled, quantity)
    price = _decimal(row, "price", what)
    average = _decimal(row, "average_price", what)
    tag = row.get("tag")
    reason = row.get("status_message") or row.get("status_message_raw") or ""
    if status is OrderStatus.REJECTED and not reason:
        reason = "rejected by Kite (no reason given)"
    at = parse_ist(_opt_str(row, "exchange_update_timestamp")) or parse_ist(
        _opt_str(row, "order_timestamp")
    )
    return OrderUpdate(
        broker=broker,
        account=account,
        broker_order_id=order_id,
        status=status,
        instrument=key,
        quantity=quantity,
        price=_units(price, scale) if price else None,
        filled_quantity=filled,
        pending_quantity=_int(row, "pending_quantity", what) if pending is not None else None,
        average_price=average.scaleb(scale) if filled and average else None,
        client_order_id=tag if isinstance(tag, str) else "",
        exchange_order_id=_opt_str(row, "exchange_order_id"),
        reason=str(reason),
        at=at or utcnow(),
    )


def fill_from_kite(
    row: Mapping[str, Any], account: str, instrument: Callable[[str], Instrument | None]
) -> Fill:
    """One trade object as a :class:`Fill` (``fill_id`` is Kite's ``trade_id``)."""
    what = "trade"
    if not isinstance(row, Mapping):
        raise _bad(what, "a trade is not a JSON object")
    exchange, key = _key(row, what)
    known = instrument(key)
    token = row.get("instrument_token")
    scale = (
        known.price_scale
        if known
        else scale_of(exchange, token if isinstance(token, int) else None)
    )
    side = _str(row, "transaction_type", what)
    if side not in ("BUY", "SELL"):
        raise _bad(what, f"transaction_type {side!r} is neither BUY nor SELL")
    at = parse_ist(_opt_str(row, "fill_timestamp")) or parse_ist(
        _opt_str(row, "exchange_timestamp")
    )
    return Fill(
        fill_id=_str(row, "trade_id", what),
        broker_order_id=_str(row, "order_id", what),
        account=account,
        instrument=key,
        side=Side(side),
        quantity=_int(row, "quantity", what),
        price=_units(_decimal(row, "average_price", what), scale),
        at=at or utcnow(),
    )


_PRODUCTS: Final = {
    "CNC": Product.CNC,
    "MIS": Product.MIS,
    "NRML": Product.NRML,
    "MTF": Product.MTF,
    # Legacy cover and bracket orders are intraday.
    "CO": Product.MIS,
    "BO": Product.MIS,
}


def position_from_kite(
    row: Mapping[str, Any], account: str, instrument: Callable[[str], Instrument | None]
) -> Position:
    """One entry of ``positions.net`` as a :class:`Position` (values in price units)."""
    what = "position"
    if not isinstance(row, Mapping):
        raise _bad(what, "a position is not a JSON object")
    exchange, key = _key(row, what)
    known = instrument(key)
    token = row.get("instrument_token")
    scale = (
        known.price_scale
        if known
        else scale_of(exchange, token if isinstance(token, int) else None)
    )
    product = _PRODUCTS.get(_str(row, "product", what))
    if product is None:
        raise _bad(what, f"unknown product {row.get('product')!r}")
    multiplier = _decimal(row, "multiplier", what) or Decimal(1)
    last = _decimal(row, "last_price", what)
    return Position(
        account=account,
        instrument=key,
        product=product,
        quantity=_int(row, "quantity", what),
        average_price=_decimal(row, "average_price", what).scaleb(scale),
        realised_pnl=_decimal(row, "realised", what).scaleb(scale) / multiplier,
        buy_quantity=_int(row, "buy_quantity", what, default=0),
        buy_value=_units(_decimal(row, "buy_value", what) / multiplier, scale),
        sell_quantity=_int(row, "sell_quantity", what, default=0),
        sell_value=_units(_decimal(row, "sell_value", what) / multiplier, scale),
        last_price=_units(last, scale) if last else None,
    )


def holding_from_kite(
    row: Mapping[str, Any], account: str, instrument: Callable[[str], Instrument | None]
) -> Holding:
    what = "holding"
    if not isinstance(row, Mapping):
        raise _bad(what, "a holding is not a JSON object")
    exchange, key = _key(row, what)
    known = instrument(key)
    scale = known.price_scale if known else scale_of(exchange)
    last = _decimal(row, "last_price", what)
    return Holding(
        account=account,
        instrument=key,
        quantity=_int(row, "quantity", what),
        average_price=_decimal(row, "average_price", what).scaleb(scale),
        t1_quantity=_int(row, "t1_quantity", what, default=0),
        isin=_opt_str(row, "isin") or "",
        last_price=_units(last, scale) if last else None,
    )


@attrs.frozen
class SegmentMargin:
    """One margin segment (``equity``, ``commodity``); amounts in paise."""

    enabled: bool
    net: int
    available: Mapping[str, int]
    utilised: Mapping[str, int]


def margins_from_kite(data: Any) -> dict[str, SegmentMargin]:
    """``GET /user/margins`` (``{equity: ..., commodity: ...}``) in paise."""
    what = "margins"
    if not isinstance(data, Mapping):
        raise _bad(what, "margins are not a JSON object")
    result = {}
    for segment, row in data.items():
        if not isinstance(row, Mapping):
            raise _bad(what, f"segment {segment!r} is not a JSON object")
        parts = {}
        for part in ("available", "utilised"):
            block = row.get(part) or {}
            if not isinstance(block, Mapping):
                raise _bad(what, f"{segment}.{part} is not a JSON object")
            parts[part] = {
                name: _units(_decimal(block, name, what), 2)
                for name, value in block.items()
                if isinstance(value, int | Decimal) and not isinstance(value, bool)
            }
        result[str(segment)] = SegmentMargin(
            enabled=bool(row.get("enabled", False)),
            net=_units(_decimal(row, "net", what), 2),
            available=parts["available"],
            utilised=parts["utilised"],
        )
    return result


# Quotes and candles ----------------------------------------------------------------------------


def quote_to_tick(key: str, row: Any, scale: int) -> Tick:
    """One ``/quote`` entry (rupees) as a full-mode :class:`Tick` (price units)."""
    what = f"quote {key}"
    if not isinstance(row, Mapping):
        raise _bad(what, "a quote is not a JSON object")

    def units(block: Mapping[str, Any], name: str) -> int:
        return _units(_decimal(block, name, what), scale)

    ohlc = row.get("ohlc") or {}
    depth = row.get("depth") or {}
    if not isinstance(ohlc, Mapping) or not isinstance(depth, Mapping):
        raise _bad(what, "ohlc or depth is not a JSON object")

    def levels(side: str) -> tuple[DepthLevel, ...]:
        entries = depth.get(side) or []
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise _bad(what, f"depth.{side} is not a list of objects")
        return tuple(
            DepthLevel(units(e, "price"), _int(e, "quantity", what), _int(e, "orders", what, 0))
            for e in entries
        )

    stamp = parse_ist(_opt_str(row, "timestamp"))
    return Tick(
        instrument=key,
        mode=StreamMode.FULL,
        last_price=units(row, "last_price"),
        timestamp_ns=int(stamp.timestamp()) * 1_000_000_000 if stamp else 0,
        last_quantity=_int(row, "last_quantity", what, 0),
        volume=_int(row, "volume", what, 0),
        average_price=units(row, "average_price"),
        total_buy_quantity=_int(row, "buy_quantity", what, 0),
        total_sell_quantity=_int(row, "sell_quantity", what, 0),
        open_interest=_int(row, "oi", what, 0),
        ohlc=Ohlc(
            units(ohlc, "open"), units(ohlc, "high"), units(ohlc, "low"), units(ohlc, "close")
        ),
        depth=Depth(levels("buy"), levels("sell")),
    )


@attrs.frozen
class Candle:
    """One historical candle; prices in the instrument's price units."""

    at: dt.datetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    open_interest: int | None = None


def candles_from_kite(data: Any, scale: int) -> list[Candle]:
    """``data.candles`` of the historical route: ``[ts, o, h, l, c, v(, oi)]`` rows."""
    what = "candles"
    rows = data.get("candles") if isinstance(data, Mapping) else None
    if not isinstance(rows, list):
        raise _bad(what, "no candles list")
    candles = []
    for index, row in enumerate(rows):
        if not isinstance(row, list) or len(row) not in (6, 7) or not isinstance(row[0], str):
            raise _bad(what, f"candle {index} is not [timestamp, o, h, l, c, v(, oi)]")
        at = parse_ist(row[0])
        if at is None:
            raise _bad(what, f"candle {index} has a bad timestamp {row[0]!r}")
        fields = {str(i): value for i, value in enumerate(row)}
        o, h, lo, c = (_units(_decimal(fields, str(i), what), scale) for i in range(1, 5))
        candles.append(
            Candle(
                at,
                o,
                h,
                lo,
                c,
                _int(fields, "5", what),
                _int(fields, "6", what) if len(row) == 7 else None,
            )
        )
    return candles


# Instruments -----------------------------------------------------------------------------------

_CSV_COLUMNS: Final = (
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
)
_TYPES: Final = {
    "EQ": InstrumentType.EQUITY,
    "FUT": InstrumentType.FUTURE,
    "CE": InstrumentType.CALL,
    "PE": InstrumentType.PUT,
}


def instruments_from_csv(data: bytes | str) -> list[Instrument]:
    """Kite's instrument dump (spec 3.8) as the instrument master.

    Prices (tick size, strike) are in units of the segment's wire scale, so ticks need no
    conversion. Index rows (segment ``INDICES``) become ``INDEX`` instruments. Rows of an
    instrument type hft does not model are skipped; a malformed row raises ValidationError
    naming its line.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise _bad("instruments", "the dump is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _CSV_COLUMNS:
            raise _bad("instruments", f"the header is not {', '.join(_CSV_COLUMNS)}")
        instruments = []
        for row in reader:
            if not row:
                continue
            instrument = _instrument_row(row, reader.line_num)
            if instrument is not None:
                instruments.append(instrument)
    except csv.Error as exc:
        raise _bad("instruments", f"line {reader.line_num}: {exc}") from None
    return instruments


def _instrument_row(row: Sequence[str], line: int) -> Instrument | None:
    what = f"instruments line {line}"
    if len(row) != len(_CSV_COLUMNS):
        raise _bad(what, f"{len(row)} columns, expected {len(_CSV_COLUMNS)}")
    values = dict(zip(_CSV_COLUMNS, row, strict=True))
    segment = values["segment"]
    kind = InstrumentType.INDEX if segment == "INDICES" else _TYPES.get(values["instrument_type"])
    if kind is None:
        return None
    try:
        token = int(values["instrument_token"])
        lot = int(values["lot_size"] or "0")
        tick = Decimal(values["tick_size"] or "0")
        strike = Decimal(values["strike"] or "0")
        expiry = dt.date.fromisoformat(values["expiry"]) if values["expiry"] else None
    except (ValueError, InvalidOperation) as exc:
        raise _bad(what, str(exc)) from None
    if not 0 < token < 2**32 or not tick.is_finite() or not strike.is_finite() or lot < 0:
        raise _bad(what, "token, tick size, strike or lot size out of range")
    if not values["tradingsymbol"] or not values["exchange"]:
        raise _bad(what, "empty tradingsymbol or exchange")
    scale = scale_of(values["exchange"], token)
    tick_units = _units(tick, scale) if tick > 0 else 0
    strike_units = _units(strike, scale) if strike > 0 else None
    return Instrument(
        exchange=values["exchange"],
        symbol=values["tradingsymbol"],
        token=token,
        segment=segment,
        name=values["name"],
        instrument_type=kind,
        # Indices list tick size 0 and lot size 0: they are not traded, any positive grid works.
        tick_size=max(tick_units, 1),
        lot_size=max(lot, 1),
        price_scale=scale,
        expiry=expiry,
        strike=strike_units,
    )


# Outbound ---------------------------------------------------------------------------------------

_ORDER_TYPES: Final = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP_LIMIT: "SL",
    OrderType.STOP: "SL-M",
}
_VALIDITIES: Final = {TimeInForce.DAY: "DAY", TimeInForce.IOC: "IOC"}


def order_type_to_kite(order_type: OrderType) -> str:
    return _ORDER_TYPES[order_type]


def validity_to_kite(time_in_force: TimeInForce) -> str:
    """Kite validities are DAY, IOC and TTL (an extra); GTC and FOK do not exist there."""
    try:
        return _VALIDITIES[time_in_force]
    except KeyError:
        raise BrokerRejected(
            f"kite: time in force {time_in_force} is not offered (DAY, IOC, or TTL via extras)",
            code="kite_unsupported_validity",
        ) from None
