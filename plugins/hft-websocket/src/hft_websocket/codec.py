"""The binary market-data frame of ``docs/protocol.md`` section 6: encoder and decoder.

Pure and dependency-free (``struct`` and ``zlib``), so the client and the server share it. The
server encodes a tick's record once and shares the bytes among every connection that wants it;
only the 24-byte header is per frame.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Final

import attrs

__all__ = [
    "FRAME_HEADER_SIZE",
    "MODES",
    "NULL",
    "RECORD_SIZES",
    "DepthLevel",
    "Frame",
    "FrameError",
    "TickRecord",
    "decode_frame",
    "encode_frame",
    "frame_count",
    "pack_full",
    "pack_ltp",
    "pack_quote",
]

MAGIC: Final = b"HT"
VERSION: Final = 1
#: Absent value of an optional field: -2**63.
NULL: Final = -(2**63)
LTP, QUOTE, FULL = 1, 2, 3
MODES: Final = {"ltp": LTP, "quote": QUOTE, "full": FULL}
MODE_NAMES: Final = {v: k for k, v in MODES.items()}
DEPTH_LEVELS: Final = 5

_HEADER: Final = struct.Struct("<2sBBHHQII")
_LTP: Final = struct.Struct("<IIQqq")
_QUOTE: Final = struct.Struct("<IIQqq14q")
_FULL: Final = struct.Struct("<IIQqq14q30q")
FRAME_HEADER_SIZE: Final = _HEADER.size
RECORD_SIZES: Final = {LTP: _LTP.size, QUOTE: _QUOTE.size, FULL: _FULL.size}
_STRUCTS: Final = {LTP: _LTP, QUOTE: _QUOTE, FULL: _FULL}
_MAX_COUNT: Final = 0xFFFF


class FrameError(ValueError):
    """A frame that does not follow the layout (magic, version, mode, sizes, CRC)."""


@attrs.frozen
class DepthLevel:
    price: int
    quantity: int
    orders: int


@attrs.frozen
class TickRecord:
    """One decoded record; prices in price units, ``None`` where the frame holds NULL."""

    iid: int
    seq: int
    last_price: int
    timestamp_ns: int
    mode: str
    last_quantity: int | None = None
    volume: int | None = None
    average_price: int | None = None
    total_buy_quantity: int | None = None
    total_sell_quantity: int | None = None
    open_interest: int | None = None
    ohlc: tuple[int, int, int, int] | None = None
    bids: tuple[DepthLevel, ...] = ()
    asks: tuple[DepthLevel, ...] = ()


@attrs.frozen
class Frame:
    seq: int
    mode: str
    records: tuple[TickRecord, ...]


# -- encoding ----------------------------------------------------------------------------------


def pack_ltp(iid: int, seq: int, last_price: int, timestamp_ns: int) -> bytes:
    return _LTP.pack(iid, 0, seq, last_price, timestamp_ns)


def pack_quote(
    iid: int, seq: int, last_price: int, timestamp_ns: int, quote: Sequence[int]
) -> bytes:
    """``quote``: the fourteen quote values of section 6, NULL where absent."""
    return _QUOTE.pack(iid, 0, seq, last_price, timestamp_ns, *quote)


def pack_full(
    iid: int,
    seq: int,
    last_price: int,
    timestamp_ns: int,
    quote: Sequence[int],
    depth: Sequence[int],
) -> bytes:
    """``depth``: thirty values, five bid then five ask levels of (price, quantity, orders)."""
    return _FULL.pack(iid, 0, seq, last_price, timestamp_ns, *quote, *depth)


def encode_frame(mode: int, seq: int, records: Sequence[bytes]) -> bytes:
    """One frame of ``records`` (each already packed for ``mode``) with connection ``seq``."""
    if not 1 <= len(records) <= _MAX_COUNT:
        raise ValueError(f"a frame holds 1..{_MAX_COUNT} records, not {len(records)}")
    payload = b"".join(records)
    size = RECORD_SIZES[mode]
    if len(payload) != size * len(records):
        raise ValueError("records are not all of the mode's size")
    header = _HEADER.pack(
        MAGIC, VERSION, mode, size, len(records), seq, zlib.crc32(payload), len(payload)
    )
    return header + payload


# -- decoding ----------------------------------------------------------------------------------


def frame_count(data: bytes) -> int:
    """The record count from a frame's header alone (cheap: for counting, not checking)."""
    if len(data) < FRAME_HEADER_SIZE:
        raise FrameError(f"a frame has at least {FRAME_HEADER_SIZE} bytes, got {len(data)}")
    return int.from_bytes(data[6:8], "little")


def _opt(value: int) -> int | None:
    return None if value == NULL else value


def _levels(values: Sequence[int]) -> tuple[DepthLevel, ...]:
    return tuple(
        DepthLevel(values[i], values[i + 1], values[i + 2])
        for i in range(0, len(values), 3)
        if values[i] != NULL
    )


def decode_frame(data: bytes) -> Frame:
    """Check and decode one frame; raise :class:`FrameError` on any mismatch."""
    if len(data) < FRAME_HEADER_SIZE:
        raise FrameError(f"a frame has at least {FRAME_HEADER_SIZE} bytes, got {len(data)}")
    magic, version, mode, size, count, seq, crc, payload_size = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r}")
    if version != VERSION:
        raise FrameError(f"unknown version {version}")
    if mode not in _STRUCTS:
        raise FrameError(f"unknown mode {mode}")
    if size != RECORD_SIZES[mode]:
        raise FrameError(f"record size {size} is not {RECORD_SIZES[mode]} for mode {mode}")
    if count < 1 or payload_size != count * size:
        raise FrameError(f"payload size {payload_size} is not {count} records of {size}")
    if len(data) != FRAME_HEADER_SIZE + payload_size:
        raise FrameError(
            f"frame is {len(data)} bytes, header says {FRAME_HEADER_SIZE + payload_size}"
        )
    payload = memoryview(data)[FRAME_HEADER_SIZE:]
    if zlib.crc32(payload) != crc:
        raise FrameError("CRC mismatch")
    layout = _STRUCTS[mode]
    name = MODE_NAMES[mode]
    records = []
    for values in layout.iter_unpack(payload):
        iid, _, tick_seq, last_price, timestamp_ns = values[:5]
        if mode == LTP:
            records.append(TickRecord(iid, tick_seq, last_price, timestamp_ns, name))
            continue
        q = values[5:19]
        bids = _levels(values[19:34]) if mode == FULL else ()
        asks = _levels(values[34:49]) if mode == FULL else ()
        if mode == QUOTE:
            bids = (DepthLevel(q[10], q[11], 0),) if q[10] != NULL else ()
            asks = (DepthLevel(q[12], q[13], 0),) if q[12] != NULL else ()
        ohlc = None if q[6] == NULL else (q[6], q[7], q[8], q[9])
        records.append(
            TickRecord(
                iid,
                tick_seq,
                last_price,
                timestamp_ns,
                name,
                _opt(q[0]),
                _opt(q[1]),
                _opt(q[2]),
                _opt(q[3]),
                _opt(q[4]),
                _opt(q[5]),
                ohlc,
                bids,
                asks,
            )
        )
    return Frame(seq, name, tuple(records))
