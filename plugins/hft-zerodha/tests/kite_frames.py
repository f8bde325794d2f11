"""Builds KiteTicker binary packets field by field at the offsets of the spec's byte tables.

Written independently of the decoder (one ``pack_into`` per table row), so a test that encodes
with this and decodes with the plugin checks the decoder against the tables, not itself.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import attrs


def _put(buffer: bytearray, offset: int, fmt: str, value: int) -> None:
    struct.pack_into(">" + fmt, buffer, offset, value)


@attrs.frozen
class Level:
    quantity: int
    price: int
    orders: int


@attrs.frozen
class Packet:
    """Every field a tradable packet can carry, as raw wire integers."""

    token: int
    last_price: int
    last_quantity: int = 0
    average_price: int = 0
    volume: int = 0
    buy_quantity: int = 0
    sell_quantity: int = 0
    open: int = 0
    high: int = 0
    low: int = 0
    close: int = 0
    last_trade_time: int = 0
    oi: int = 0
    oi_day_high: int = 0
    oi_day_low: int = 0
    exchange_time: int = 0
    bids: Sequence[Level] = ()
    asks: Sequence[Level] = ()
    change: int = 0  # index packets only


def ltp(p: Packet) -> bytes:
    buffer = bytearray(8)
    _put(buffer, 0, "I", p.token)
    _put(buffer, 4, "i", p.last_price)
    return bytes(buffer)


def quote(p: Packet) -> bytes:
    buffer = bytearray(44)
    _put(buffer, 0, "I", p.token)
    _put(buffer, 4, "i", p.last_price)
    _put(buffer, 8, "i", p.last_quantity)
    _put(buffer, 12, "i", p.average_price)
    _put(buffer, 16, "i", p.volume)
    _put(buffer, 20, "i", p.buy_quantity)
    _put(buffer, 24, "i", p.sell_quantity)
    _put(buffer, 28, "i", p.open)
    _put(buffer, 32, "i", p.high)
    _put(buffer, 36, "i", p.low)
    _put(buffer, 40, "i", p.close)
    return bytes(buffer)


def full(p: Packet) -> bytes:
    buffer = bytearray(quote(p)) + bytearray(140)
    _put(buffer, 44, "i", p.last_trade_time)
    _put(buffer, 48, "i", p.oi)
    _put(buffer, 52, "i", p.oi_day_high)
    _put(buffer, 56, "i", p.oi_day_low)
    _put(buffer, 60, "i", p.exchange_time)
    levels = [*p.bids, *[Level(0, 0, 0)] * (5 - len(p.bids))]
    levels += [*p.asks, *[Level(0, 0, 0)] * (5 - len(p.asks))]
    for i, level in enumerate(levels):
        start = 64 + 12 * i
        _put(buffer, start, "i", level.quantity)
        _put(buffer, start + 4, "i", level.price)
        _put(buffer, start + 8, "H", level.orders)
        # bytes start+10..start+12: padding, left zero
    return bytes(buffer)


def index_quote(p: Packet) -> bytes:
    buffer = bytearray(28)
    _put(buffer, 0, "I", p.token)
    _put(buffer, 4, "i", p.last_price)
    _put(buffer, 8, "i", p.high)
    _put(buffer, 12, "i", p.low)
    _put(buffer, 16, "i", p.open)
    _put(buffer, 20, "i", p.close)
    _put(buffer, 24, "i", p.change)
    return bytes(buffer)


def index_full(p: Packet) -> bytes:
    buffer = bytearray(index_quote(p)) + bytearray(4)
    _put(buffer, 28, "i", p.exchange_time)
    return bytes(buffer)


def frame(packets: Sequence[bytes]) -> bytes:
    """One binary message: count, then (length, packet) for each."""
    out = bytearray(struct.pack(">H", len(packets)))
    for packet in packets:
        out += struct.pack(">H", len(packet)) + packet
    return bytes(out)


HEARTBEAT = b"\x00"
