"""KiteTicker binary frames → :class:`hft.model.Tick`, exactly as the byte tables say.

A frame is ``N`` (uint16) then ``N`` times ``length`` (uint16) + packet; the packet kind is
decided by its length alone: 8 LTP, 28 index quote, 32 index full, 44 quote, 184 full. Every
integer is big-endian. Prices are integers in the segment's finest unit (paise for most,
1e-7 for CDS, 1e-4 for BCD and NCO): that is exactly hft's fixed-point price at the
instrument's ``price_scale`` (:func:`price_scale`), so prices are passed through, never divided.

Signedness (spec 6.7): 4-byte fields are signed int32 as documented (the index "change" can be
negative), the instrument token is read unsigned, depth order counts are unsigned int16.
Timestamps are Unix seconds; ``0`` means none. The index packet's own "price change" field is
opaque (it is not last − close) and is not carried.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from hft._errors import ValidationError
from hft.model import Depth, DepthLevel, Ohlc, StreamMode, Tick

__all__ = [
    "INDICES_SEGMENT",
    "PACKET_SIZES",
    "SEGMENTS",
    "decode_ticks",
    "price_scale",
    "split_packets",
]

#: Segment id (``token & 0xFF``) → (name as the CSV's exchange, decimal places of its prices).
SEGMENTS: Final[Mapping[int, tuple[str, int]]] = {
    1: ("NSE", 2),
    2: ("NFO", 2),
    3: ("CDS", 7),  # ÷ 10,000,000
    4: ("BSE", 2),
    5: ("BFO", 2),
    6: ("BCD", 4),  # ÷ 10,000
    7: ("MCX", 2),
    8: ("MCXSX", 2),
    9: ("INDICES", 2),
    12: ("NCO", 4),  # ÷ 10,000 (newest segment; several official clients still miss it)
}
INDICES_SEGMENT: Final = 9
PACKET_SIZES: Final = (8, 28, 32, 44, 184)
_NS: Final = 1_000_000_000


def price_scale(token: int) -> int:
    """Decimal places of ``token``'s prices on the wire (2 for a segment we do not know)."""
    entry = SEGMENTS.get(token & 0xFF)
    return entry[1] if entry else 2


_COUNT = struct.Struct(">H")
_LTP = struct.Struct(">Ii")
_INDEX_QUOTE = struct.Struct(">I6i")
_INDEX_FULL = struct.Struct(">I7i")
_QUOTE = struct.Struct(">I10i")
# 44 quote bytes, 5 extended fields, then 10 depth entries of (qty, price, orders, 2 pad bytes).
_FULL = struct.Struct(">I10i5i" + "iiH2x" * 10)


def split_packets(message: bytes) -> list[bytes]:
    """The packets of one binary frame; a heartbeat (shorter than 2 bytes) has none.

    Raises :class:`ValidationError` when the frame's lengths run past its end or leave bytes
    over.
    """
    size = len(message)
    if size < 2:
        return []
    (count,) = _COUNT.unpack_from(message, 0)
    offset = 2
    packets = []
    for index in range(count):
        if offset + 2 > size:
            raise ValidationError(
                f"kite frame: packet {index + 1} of {count} has no length (frame is {size} bytes)",
                code="kite_bad_frame",
            )
        length = message[offset] << 8 | message[offset + 1]
        offset += 2
        if offset + length > size:
            raise ValidationError(
                f"kite frame: packet {index + 1} of {count} claims {length} bytes, "
                f"{size - offset} left",
                code="kite_bad_frame",
            )
        packets.append(message[offset : offset + length])
        offset += length
    if offset != size:
        raise ValidationError(
            f"kite frame: {size - offset} bytes after the last of {count} packets",
            code="kite_bad_frame",
        )
    return packets


def decode_ticks(message: bytes, keys: Mapping[int, str] | None = None) -> list[Tick]:
    """The normalised ticks of one KiteTicker binary message.

    ``keys`` maps instrument tokens to hft instrument keys (``408065 → "NSE:INFY"``); a token
    it lacks (or every token, without it) is named by its decimal token, ``"408065"``.
    Packets of a length no table describes are skipped, as the official clients do; a frame
    whose lengths do not add up raises :class:`ValidationError`. A heartbeat gives ``[]``.
    """
    size = len(message)
    if size < 2:
        return []
    (count,) = _COUNT.unpack_from(message, 0)
    offset = 2
    ticks: list[Tick] = []
    append = ticks.append
    names = keys if keys is not None else {}
    for index in range(count):
        if offset + 2 > size:
            raise ValidationError(
                f"kite frame: packet {index + 1} of {count} has no length (frame is {size} bytes)",
                code="kite_bad_frame",
            )
        length = message[offset] << 8 | message[offset + 1]
        offset += 2
        if offset + length > size:
            raise ValidationError(
                f"kite frame: packet {index + 1} of {count} claims {length} bytes, "
                f"{size - offset} left",
                code="kite_bad_frame",
            )
        if length == 184:
            append(_full(message, offset, names))
        elif length == 8:
            append(_ltp(message, offset, names))
        elif length == 44:
            append(_quote(message, offset, names))
        elif length == 28 or length == 32:
            append(_index(message, offset, length, names))
        offset += length
    if offset != size:
        raise ValidationError(
            f"kite frame: {size - offset} bytes after the last of {count} packets",
            code="kite_bad_frame",
        )
    return ticks


# The hot path builds model objects field by field through their slot descriptors: attrs'
# generated ``__init__`` costs a Python call plus a generic ``object.__setattr__`` per field, about
# a third more. Only classes without validators or post-init hooks qualify (the tests compare the
# results with normally built objects).
_new = object.__new__


def _setters(cls: type, *names: str) -> tuple[Any, ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


_LV_PRICE, _LV_QTY, _LV_ORDERS = _setters(DepthLevel, "price", "quantity", "orders")
_O_OPEN, _O_HIGH, _O_LOW, _O_CLOSE = _setters(Ohlc, "open", "high", "low", "close")
_D_BIDS, _D_ASKS = _setters(Depth, "bids", "asks")
(
    _T_INSTRUMENT,
    _T_MODE,
    _T_LAST,
    _T_STAMP,
    _T_LAST_QTY,
    _T_VOLUME,
    _T_AVERAGE,
    _T_BUYS,
    _T_SELLS,
    _T_OI,
    _T_OHLC,
    _T_DEPTH,
    _T_SEQ,
) = _setters(
    Tick,
    "instrument",
    "mode",
    "last_price",
    "timestamp_ns",
    "last_quantity",
    "volume",
    "average_price",
    "total_buy_quantity",
    "total_sell_quantity",
    "open_interest",
    "ohlc",
    "depth",
    "seq",
)
_FULL_MODE = StreamMode.FULL
_QUOTE_MODE = StreamMode.QUOTE
_LTP_MODE = StreamMode.LTP


def _ohlc(open_: int, high: int, low: int, close: int) -> Ohlc:
    ohlc: Ohlc = _new(Ohlc)
    _O_OPEN(ohlc, open_)
    _O_HIGH(ohlc, high)
    _O_LOW(ohlc, low)
    _O_CLOSE(ohlc, close)
    return ohlc


def _tick(
    instrument: str,
    mode: StreamMode,
    f: tuple[int, ...],
    stamp: int,
    oi: int | None,
    ohlc: Ohlc,
    depth: Depth | None,
) -> Tick:
    """A quote/full tick from the unpacked quote fields ``f`` (token first)."""
    tick: Tick = _new(Tick)
    _T_INSTRUMENT(tick, instrument)
    _T_MODE(tick, mode)
    _T_LAST(tick, f[1])
    _T_STAMP(tick, stamp)
    _T_LAST_QTY(tick, f[2])
    _T_VOLUME(tick, f[4])
    _T_AVERAGE(tick, f[3])
    _T_BUYS(tick, f[5])
    _T_SELLS(tick, f[6])
    _T_OI(tick, oi)
    _T_OHLC(tick, ohlc)
    _T_DEPTH(tick, depth)
    _T_SEQ(tick, 0)
    return tick


def _ltp(message: bytes, offset: int, names: Mapping[int, str]) -> Tick:
    token, last = _LTP.unpack_from(message, offset)
    tick: Tick = _new(Tick)
    _T_INSTRUMENT(tick, names.get(token) or str(token))
    _T_MODE(tick, _LTP_MODE)
    _T_LAST(tick, last)
    _T_STAMP(tick, 0)
    _T_LAST_QTY(tick, None)
    _T_VOLUME(tick, None)
    _T_AVERAGE(tick, None)
    _T_BUYS(tick, None)
    _T_SELLS(tick, None)
    _T_OI(tick, None)
    _T_OHLC(tick, None)
    _T_DEPTH(tick, None)
    _T_SEQ(tick, 0)
    return tick


def _quote(message: bytes, offset: int, names: Mapping[int, str]) -> Tick:
    f = _QUOTE.unpack_from(message, offset)
    token = f[0]
    return _tick(
        names.get(token) or str(token),
        _QUOTE_MODE,
        f,
        0,
        None,
        _ohlc(f[7], f[8], f[9], f[10]),
        None,
    )


def _full(message: bytes, offset: int, names: Mapping[int, str]) -> Tick:
    # Unpacked into locals (faster to read than tuple items): the 44 quote bytes, last trade
    # time, OI, OI day high and low, exchange time, then (quantity, price, orders) × 5 bids and
    # × 5 asks.
    (
        token, last, last_qty, average, volume, buys, sells, open_, high, low, close,
        _traded_at, oi, _oi_high, _oi_low, stamp,
        q0, p0, n0, q1, p1, n1, q2, p2, n2, q3, p3, n3, q4, p4, n4,
        q5, p5, n5, q6, p6, n6, q7, p7, n7, q8, p8, n8, q9, p9, n9,
    ) = _FULL.unpack_from(message, offset)  # fmt: skip
    # Ten levels, unrolled: a call per level would cost a fifth more.
    new, price, quantity, orders = _new, _LV_PRICE, _LV_QTY, _LV_ORDERS
    l0 = new(DepthLevel)
    price(l0, p0)
    quantity(l0, q0)
    orders(l0, n0)
    l1 = new(DepthLevel)
    price(l1, p1)
    quantity(l1, q1)
    orders(l1, n1)
    l2 = new(DepthLevel)
    price(l2, p2)
    quantity(l2, q2)
    orders(l2, n2)
    l3 = new(DepthLevel)
    price(l3, p3)
    quantity(l3, q3)
    orders(l3, n3)
    l4 = new(DepthLevel)
    price(l4, p4)
    quantity(l4, q4)
    orders(l4, n4)
    l5 = new(DepthLevel)
    price(l5, p5)
    quantity(l5, q5)
    orders(l5, n5)
    l6 = new(DepthLevel)
    price(l6, p6)
    quantity(l6, q6)
    orders(l6, n6)
    l7 = new(DepthLevel)
    price(l7, p7)
    quantity(l7, q7)
    orders(l7, n7)
    l8 = new(DepthLevel)
    price(l8, p8)
    quantity(l8, q8)
    orders(l8, n8)
    l9 = new(DepthLevel)
    price(l9, p9)
    quantity(l9, q9)
    orders(l9, n9)
    depth: Depth = new(Depth)
    _D_BIDS(depth, (l0, l1, l2, l3, l4))
    _D_ASKS(depth, (l5, l6, l7, l8, l9))
    ohlc: Ohlc = new(Ohlc)
    _O_OPEN(ohlc, open_)
    _O_HIGH(ohlc, high)
    _O_LOW(ohlc, low)
    _O_CLOSE(ohlc, close)
    tick: Tick = new(Tick)
    _T_INSTRUMENT(tick, names.get(token) or str(token))
    _T_MODE(tick, _FULL_MODE)
    _T_LAST(tick, last)
    _T_STAMP(tick, stamp * _NS)
    _T_LAST_QTY(tick, last_qty)
    _T_VOLUME(tick, volume)
    _T_AVERAGE(tick, average)
    _T_BUYS(tick, buys)
    _T_SELLS(tick, sells)
    _T_OI(tick, oi)
    _T_OHLC(tick, ohlc)
    _T_DEPTH(tick, depth)
    _T_SEQ(tick, 0)
    return tick


def _index(message: bytes, offset: int, length: int, names: Mapping[int, str]) -> Tick:
    if length == 32:
        token, last, high, low, open_, close, _change, stamp = _INDEX_FULL.unpack_from(
            message, offset
        )
        mode = StreamMode.FULL
    else:
        token, last, high, low, open_, close, _change = _INDEX_QUOTE.unpack_from(message, offset)
        stamp = 0
        mode = StreamMode.QUOTE
    return Tick(
        names.get(token) or str(token),
        mode,
        last,
        stamp * _NS,
        ohlc=Ohlc(open_, high, low, close),
    )
