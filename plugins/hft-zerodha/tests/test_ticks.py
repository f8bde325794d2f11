"""decode_ticks against the spec's byte tables: properties for every packet size and segment,
the official test vectors, heartbeats, and arbitrary bytes."""

from __future__ import annotations

import base64
import struct

import pytest
from hft_zerodha import decode_ticks
from hft_zerodha.parsing.ticks import SEGMENTS, price_scale, split_packets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hft._errors import ValidationError
from hft.model import Depth, DepthLevel, Ohlc, StreamMode, Tick

from . import kite_frames as kf

INT32 = st.integers(-(2**31), 2**31 - 1)
UINT16 = st.integers(0, 2**16 - 1)
TRADABLE = sorted(s for s in SEGMENTS if s != 9)


def tokens(segments: list[int]) -> st.SearchStrategy[int]:
    return st.builds(
        lambda e, s: (e << 8) | s, st.integers(1, 2**24 - 1), st.sampled_from(segments)
    )


levels = st.lists(st.builds(kf.Level, INT32, INT32, UINT16), min_size=5, max_size=5)


@st.composite
def packets(draw: st.DrawFn, segments: list[int] = TRADABLE) -> kf.Packet:
    return kf.Packet(
        token=draw(tokens(segments)),
        last_price=draw(INT32),
        last_quantity=draw(INT32),
        average_price=draw(INT32),
        volume=draw(INT32),
        buy_quantity=draw(INT32),
        sell_quantity=draw(INT32),
        open=draw(INT32),
        high=draw(INT32),
        low=draw(INT32),
        close=draw(INT32),
        last_trade_time=draw(INT32),
        oi=draw(INT32),
        oi_day_high=draw(INT32),
        oi_day_low=draw(INT32),
        exchange_time=draw(INT32),
        bids=draw(levels),
        asks=draw(levels),
        change=draw(INT32),
    )


def expected(p: kf.Packet, kind: str) -> Tick:
    """What each table says the packet means, field by field."""
    key = str(p.token)
    if kind == "ltp":
        return Tick(key, StreamMode.LTP, p.last_price)
    if kind in ("index_quote", "index_full"):
        stamp = p.exchange_time * 10**9 if kind == "index_full" else 0
        mode = StreamMode.FULL if kind == "index_full" else StreamMode.QUOTE
        return Tick(key, mode, p.last_price, stamp, ohlc=Ohlc(p.open, p.high, p.low, p.close))
    quote = Tick(
        key,
        StreamMode.QUOTE,
        p.last_price,
        last_quantity=p.last_quantity,
        volume=p.volume,
        average_price=p.average_price,
        total_buy_quantity=p.buy_quantity,
        total_sell_quantity=p.sell_quantity,
        ohlc=Ohlc(p.open, p.high, p.low, p.close),
    )
    if kind == "quote":
        return quote
    return Tick(
        key,
        StreamMode.FULL,
        p.last_price,
        p.exchange_time * 10**9,
        p.last_quantity,
        p.volume,
        p.average_price,
        p.buy_quantity,
        p.sell_quantity,
        p.oi,
        quote.ohlc,
        Depth(
            tuple(DepthLevel(lv.price, lv.quantity, lv.orders) for lv in p.bids),
            tuple(DepthLevel(lv.price, lv.quantity, lv.orders) for lv in p.asks),
        ),
    )


ENCODERS = {
    "ltp": kf.ltp,
    "quote": kf.quote,
    "full": kf.full,
    "index_quote": kf.index_quote,
    "index_full": kf.index_full,
}


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["ltp", "quote", "full"]), packets()),
            st.tuples(st.sampled_from(["ltp", "index_quote", "index_full"]), packets([9])),
        ),
        max_size=6,
    )
)
def test_every_packet_kind_decodes_as_its_table_says(items: list[tuple[str, kf.Packet]]) -> None:
    message = kf.frame([ENCODERS[kind](p) for kind, p in items])
    assert decode_ticks(message) == [expected(p, kind) for kind, p in items]


@pytest.mark.parametrize("segment", sorted(SEGMENTS))
@pytest.mark.parametrize("kind", ["ltp", "quote", "full"])
def test_each_segment_and_size_with_keys(segment: int, kind: str) -> None:
    if segment == 9:
        kind = {"ltp": "ltp", "quote": "index_quote", "full": "index_full"}[kind]
    p = kf.Packet(token=(77 << 8) | segment, last_price=123456, close=120000, exchange_time=5)
    packet = ENCODERS[kind](p)
    assert (
        len(packet)
        == {"ltp": 8, "quote": 44, "full": 184, "index_quote": 28, "index_full": 32}[kind]
    )
    (tick,) = decode_ticks(kf.frame([packet]), {p.token: "X:Y"})
    assert tick.instrument == "X:Y"
    assert tick.last_price == 123456  # wire units are hft's price units at the segment's scale
    assert price_scale(p.token) == {3: 7, 6: 4, 12: 4}.get(segment, 2)


def test_official_full_packet_vector() -> None:
    """The values the spec lists for kiteconnect-mocks' ticker_full.packet (INFY)."""
    p = kf.Packet(
        token=408065,
        last_price=157370,
        last_quantity=7,
        average_price=157037,
        volume=1192471,
        buy_quantity=256443,
        sell_quantity=363009,
        open=156915,
        high=157500,
        low=156105,
        close=156780,
        last_trade_time=1625461887,
        exchange_time=1625461887,
        bids=[kf.Level(5, 157340, 1)],
        asks=[kf.Level(172, 157370, 3)],
    )
    raw = base64.b64encode(kf.full(p))  # the mock ships the bare packet as base64 text
    (tick,) = decode_ticks(kf.frame([base64.b64decode(raw)]), {408065: "NSE:INFY"})
    assert tick.instrument == "NSE:INFY"
    assert (tick.last_price, tick.last_quantity, tick.average_price) == (157370, 7, 157037)
    assert (tick.volume, tick.total_buy_quantity, tick.total_sell_quantity) == (
        1192471,
        256443,
        363009,
    )
    assert tick.ohlc == Ohlc(156915, 157500, 156105, 156780)
    assert tick.timestamp_ns == 1625461887 * 10**9
    assert tick.best_bid == DepthLevel(157340, 5, 1)
    assert tick.best_ask == DepthLevel(157370, 172, 3)
    assert (408065 >> 8, 408065 & 0xFF) == (1594, 1)


def test_forum_index_sample_with_a_negative_change() -> None:
    packet = bytes.fromhex("0003E909000DED2D000DFD18000DE90E000DFCD7000DED2DFFFFFFDC")
    (tick,) = decode_ticks(kf.frame([packet]))
    assert tick == Tick(
        "256265", StreamMode.QUOTE, 912685, ohlc=Ohlc(916695, 916760, 911630, 912685)
    )


def test_heartbeat_and_empty_frames_give_no_ticks() -> None:
    assert decode_ticks(kf.HEARTBEAT) == []
    assert decode_ticks(b"") == []
    assert decode_ticks(struct.pack(">H", 0)) == []


def test_unknown_packet_lengths_are_skipped() -> None:
    ltp = kf.ltp(kf.Packet(token=408065, last_price=1))
    message = kf.frame([b"\x00" * 12, ltp, b"\x01" * 3])
    assert [t.last_price for t in decode_ticks(message)] == [1]
    assert len(split_packets(message)) == 3


@pytest.mark.parametrize(
    "message",
    [
        struct.pack(">HH", 1, 8) + b"\x00" * 4,  # packet runs past the end
        struct.pack(">H", 2) + struct.pack(">H", 8) + b"\x00" * 8,  # second length missing
        kf.frame([b"\x00" * 8]) + b"\x00",  # trailing byte
    ],
)
def test_truncated_frames_are_refused_clearly(message: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_ticks(message)
    assert caught.value.code == "kite_bad_frame"


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_give_ticks_or_a_validation_error(data: bytes) -> None:
    try:
        ticks = decode_ticks(data)
    except ValidationError:
        return
    assert all(isinstance(t, Tick) for t in ticks)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_well_framed_garbage_never_crashes(packets_: list[bytes]) -> None:
    ticks = decode_ticks(kf.frame(packets_))
    assert len(ticks) == sum(len(p) in (8, 28, 32, 44, 184) for p in packets_)
