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
from typing import Final

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
        (length,) = _COUNT.unpack_from(message, offset)
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
        (length,) = _COUNT.unpack_from(message, offset)
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
            token, last = _LTP.unpack_from(message, offset)
            append(Tick(names.get(token) or str(token), StreamMode.LTP, last))
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


def _quote(message: bytes, offset: int, names: Mapping[int, str]) -> Tick:
    token, last, last_qty, avg, volume, buys, sells, o, h, lo, c = _QUOTE.unpack_from(
        message, offset
    )
    return Tick(
        names.get(token) or str(token),
        StreamMode.QUOTE,
        last,
        0,
        last_qty,
        volume,
        avg,
        buys,
        sells,
        None,
        Ohlc(o, h, lo, c),
    )


def _full(message: bytes, offset: int, names: Mapping[int, str]) -> Tick:
    f = _FULL.unpack_from(message, offset)
    token = f[0]
    # f[11] last trade time, f[12] OI, f[13]/f[14] OI day high/low, f[15] exchange timestamp.
    bids = (
        DepthLevel(f[17], f[16], f[18]),
        DepthLevel(f[20], f[19], f[21]),
        DepthLevel(f[23], f[22], f[24]),
        DepthLevel(f[26], f[25], f[27]),
        DepthLevel(f[29], f[28], f[30]),
    )
    asks = (
        DepthLevel(f[32], f[31], f[33]),
        DepthLevel(f[35], f[34], f[36]),
        DepthLevel(f[38], f[37], f[39]),
        DepthLevel(f[41], f[40], f[42]),
        DepthLevel(f[44], f[43], f[45]),
    )
    return Tick(
        names.get(token) or str(token),
        StreamMode.FULL,
        f[1],
        f[15] * _NS,
        f[2],
        f[4],
        f[3],
        f[5],
        f[6],
        f[12],
        Ohlc(f[7], f[8], f[9], f[10]),
        Depth(bids, asks),
    )


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
