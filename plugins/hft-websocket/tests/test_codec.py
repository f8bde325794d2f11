"""The binary frame codec and the client-message parser, by property and by fuzzing."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from hft_websocket import codec
from hft_websocket._fanout import Encoded
from hft_websocket._protocol import ProtocolError, loads, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hft.model import Depth, DepthLevel, Ohlc, StreamMode, Tick

from .test_foreign_client import decode as decode_from_the_document

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

prices = st.integers(min_value=1, max_value=2**40)
quantities = st.integers(min_value=0, max_value=2**40)
optional = st.none() | st.integers(min_value=0, max_value=2**40)
levels = st.lists(
    st.builds(DepthLevel, prices, st.integers(1, 2**30), st.integers(0, 10_000)), max_size=7
)
ticks = st.builds(
    Tick,
    instrument=st.just("NSE:INFY"),
    mode=st.sampled_from(list(StreamMode)),
    last_price=prices,
    timestamp_ns=st.integers(0, 2**62),
    last_quantity=optional,
    volume=optional,
    average_price=optional,
    total_buy_quantity=optional,
    total_sell_quantity=optional,
    open_interest=optional,
    ohlc=st.none() | st.builds(Ohlc, prices, prices, prices, prices),
    depth=st.none() | st.builds(Depth, levels.map(tuple), levels.map(tuple)),
    seq=st.integers(1, 2**62),
)


@FAST
@given(
    st.lists(ticks, min_size=1, max_size=20),
    st.sampled_from(list(StreamMode)),
    st.integers(1, 2**62),
)
def test_frames_round_trip_through_both_decoders(
    batch: list[Tick], mode: StreamMode, seq: int
) -> None:
    encoded = [Encoded(t, mode, iid, 2) for iid, t in enumerate(batch, start=1)]
    by_mode: dict[StreamMode, list[Encoded]] = {}
    for e in encoded:
        by_mode.setdefault(e.mode, []).append(e)
    for frame_mode, entries in by_mode.items():
        frame = codec.encode_frame(codec.MODES[str(frame_mode)], seq, [e.record for e in entries])
        decoded = codec.decode_frame(frame)
        assert (decoded.seq, decoded.mode) == (seq, str(frame_mode))
        assert codec.frame_count(frame) == len(entries)
        doc_seq, doc_mode, doc_records = decode_from_the_document(frame)
        assert (doc_seq, doc_mode) == (seq, str(frame_mode))
        for entry, record, doc in zip(entries, decoded.records, doc_records, strict=True):
            tick = entry.tick
            assert (record.iid, record.seq, record.last_price, record.timestamp_ns) == (
                entry.iid, tick.seq, tick.last_price, tick.timestamp_ns
            )  # fmt: skip
            assert (doc["iid"], doc["seq"], doc["last_price"]) == (
                record.iid, record.seq, record.last_price
            )  # fmt: skip
            # The JSON form of the same entry says the same.
            as_json = json.loads(entry.json())
            assert as_json["seq"] == tick.seq
            assert as_json["mode"] == str(frame_mode)
            if frame_mode is StreamMode.LTP:
                continue
            assert record.volume == tick.volume == as_json["volume"]
            assert record.open_interest == tick.open_interest
            assert record.ohlc == (
                None
                if tick.ohlc is None
                else (tick.ohlc.open, tick.ohlc.high, tick.ohlc.low, tick.ohlc.close)
            )
            bids = tick.depth.bids if tick.depth else ()
            if frame_mode is StreamMode.FULL:
                expected = [(b.price, b.quantity, b.orders) for b in bids[:5]]
                assert [(b.price, b.quantity, b.orders) for b in record.bids] == expected
                assert doc["bids"] == expected
                assert len(as_json["bids"]) == len(expected)
            else:
                assert [(b.price, b.quantity) for b in record.bids] == [
                    (b.price, b.quantity) for b in bids[:1]
                ]


@FAST
@given(st.binary(max_size=600))
def test_garbage_is_refused_with_frame_error(data: bytes) -> None:
    with contextlib.suppress(codec.FrameError):
        codec.decode_frame(data)


@FAST
@given(ticks, st.integers(0, 10_000), st.integers(0, 7))
def test_any_corruption_is_detected(tick: Tick, position: int, bit: int) -> None:
    tick = attrs.evolve(tick, mode=StreamMode.FULL)
    frame = bytearray(
        codec.encode_frame(codec.FULL, 9, [Encoded(tick, StreamMode.FULL, 1, 2).record])
    )
    position %= len(frame)
    if position in range(8, 16):
        return  # the connection seq is not covered by anything (section 6)
    frame[position] ^= 1 << bit
    with pytest.raises(codec.FrameError):
        codec.decode_frame(bytes(frame))


def test_the_documented_example_frame() -> None:
    """The bytes of the example in section 6, as printed there."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text()
    example = doc.split("### Example", 1)[1].split("```")[1]
    documented = bytes.fromhex(example.replace("\n", " "))
    frame = codec.encode_frame(codec.LTP, 7, [codec.pack_ltp(3, 42, 150005, 1763720102000000000)])
    assert frame == documented
    assert codec.decode_frame(documented).records[0].last_price == 150005


# -- the parser --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
ops = st.sampled_from(
    ["auth", "subscribe", "unsubscribe", "submit", "modify", "cancel", "ping", "x"]
)
messages = st.fixed_dictionaries(
    {"op": ops},
    optional={
        "id": json_values | st.text(max_size=70),
        "token": json_values,
        "encoding": st.sampled_from(["json", "binary", "xml"]) | json_values,
        "resume_after": json_values | st.integers(-5, 2**64),
        "instruments": json_values | st.lists(st.text(max_size=70), max_size=3),
        "mode": st.sampled_from(["ltp", "quote", "full", "deep"]),
        "order_id": json_values,
        "quantity": json_values,
        "price": json_values | st.sampled_from(["1500.05", "abc", "1e5", "-1", "NaN"]),
        "order": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "account": json_values,
                "instrument": json_values,
                "side": st.sampled_from(["BUY", "SELL", "HOLD"]),
                "quantity": json_values,
                "price": st.sampled_from(["1500.05", "x", "Infinity"]) | json_values,
                "order_type": st.sampled_from(["LIMIT", "MARKET", "ICEBERG"]),
            },
        ),
    },
)


CODES = {"bad_json", "bad_message", "unknown_op"}


def parse_error(text: str | bytes) -> ProtocolError | None:
    """What the parser refuses ``text`` with; None when it is a request."""
    try:
        parse(loads(text))
    except ProtocolError as exc:
        return exc
    return None


@FAST
@given(messages)
def test_the_parser_answers_any_message_with_a_request_or_a_protocol_error(
    body: dict[str, Any],
) -> None:
    error = parse_error(json.dumps(body))
    assert error is None or (error.code in CODES and error.message)


@FAST
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_the_parser_survives_any_text(text: str | bytes) -> None:
    error = parse_error(text)
    assert error is None or error.code in CODES
