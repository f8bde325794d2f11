"""The pure parsers on realistic XTS payloads, and fuzzed: each either decodes or raises
ValidationError, never anything else."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from decimal import Decimal

import pytest
from hft_xts import XtsNormaliser, decode_bar, parse_json_message, parse_partial_message
from hft_xts.parsing.master import parse_index_list, parse_master, parse_master_line
from hft_xts.parsing.ohlc import parse_ohlc
from hft_xts.parsing.orders import (
    conversion_refusal,
    conversion_to_event,
    map_status,
    order_to_update,
    position_to_position,
    trade_to_fill,
)
from hft_xts.parsing.values import from_1980_ist, ist_text_to_utc, optional_number, tick_time_ns
from hft_xts.stream import Frame, encode_event, parse_frame
from hypothesis import given, settings
from hypothesis import strategies as st
from xts_fake import MASTER_LINES

from hft import ValidationError
from hft.model import Bar, Instrument, InstrumentType, OrderStatus, Product, Side, StreamMode

FUZZ = settings(max_examples=150, deadline=None)

# ------------------------------------------------------------------------------------------------
# Instrument master


def test_every_instrument_type_of_the_master_parses() -> None:
    rows, skipped = parse_master("\r\n".join(MASTER_LINES) + "\n")
    assert skipped == 0
    by_key = {row.instrument.key: row for row in rows}

    reliance = by_key["NSE:RELIANCE"]
    assert (reliance.instrument.token, reliance.instrument.segment) == (2885, "NSECM")
    assert reliance.instrument.instrument_type is InstrumentType.EQUITY
    assert (reliance.instrument.tick_size, reliance.instrument.price_scale) == (5, 2)
    assert reliance.isin == "INE002A01018"
    assert reliance.instrument.name == "RELIANCE INDUSTRIES LTD"
    assert by_key["NSE:INFY-BE"].instrument.symbol == "INFY-BE"  # not the EQ series
    assert by_key["BSE:RADICO"].instrument.freeze_quantity is None  # 0: no freeze limit

    future = by_key["NFO:NIFTY26JANFUT"].instrument
    assert future.instrument_type is InstrumentType.FUTURE
    assert (future.lot_size, future.freeze_quantity) == (75, 1800)  # 1800.5 floored
    assert future.expiry == dt.date(2026, 1, 27)

    put = by_key["NFO:NATIONALUM26JAN335PE"].instrument
    assert put.instrument_type is InstrumentType.PUT
    assert (put.strike, put.lot_size) == (33500, 3750)
    call = by_key["BFO:BANKEX25DEC72000CE"].instrument
    assert call.instrument_type is InstrumentType.CALL
    assert call.strike == 7200000

    spread = by_key["NFO:GAIL25DEC26JANFUT"]
    assert spread.xts_type == 4
    assert spread.instrument.tick_size == 1  # 0.01 at scale 2
    assert by_key["BFO:BANKEX26FEBFUT"].instrument.expiry == dt.date(2026, 2, 26)


def test_a_master_row_with_an_extra_trailing_column_still_parses() -> None:
    row = parse_master_line(MASTER_LINES[3] + "|NEWCOLUMN")
    assert row.instrument.symbol == "NIFTY26JANFUT"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (
            "NSEFO|1|2|X|X|OPTIDX|X|1|1|1|1|0.05|50|1|-1|X|2026-01-27T14:30:00|100|7|D|1|1|X",
            "option type",
        ),
        ("NSEFO|1|1|X|X|FUTIDX|X|1|1|1|1|0.05|50|1|-1|X|not-a-date|D|1|1|X", "expiry"),
        ("XXXCM|1|8|X|X|EQ|X|1|1|1|1|0.05|1|1|X|I|1|1|D|0|-1|-1", "unknown segment"),
        ("NSECM|1|8|X|X|EQ|X|1|1|1|1|0|1|1|X|I|1|1|D|0|-1|-1", "positive"),
        ("NSEFO|1|2|X|X|OPTIDX|X|1|1|1|1|0.05|50|1|-1|X", "fields"),
    ],
)
def test_bad_master_rows_are_refused_with_their_line(line: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        parse_master_line(line, 7)
    rows, skipped = parse_master(line + "\n" + MASTER_LINES[0])
    assert (len(rows), skipped) == (1, 1)


def test_index_list_entries_become_index_instruments() -> None:
    rows = parse_index_list("NSECM", ["NIFTY 50_26000", "NIFTY BANK_26001"])
    assert [(r.instrument.key, r.instrument.token) for r in rows] == [
        ("NSE:NIFTY 50", 26000),
        ("NSE:NIFTY BANK", 26001),
    ]
    assert rows[0].instrument.instrument_type is InstrumentType.INDEX
    with pytest.raises(ValidationError):
        parse_index_list("NSECM", ["NIFTY"])


@FUZZ
@given(st.lists(st.text(alphabet="NSECMFO0123456789.|-T:ABX\r ", max_size=30), max_size=25))
def test_fuzz_master_lines(fields: list[str]) -> None:
    try:
        row = parse_master_line("|".join(fields))
    except ValidationError:
        return
    assert row.instrument.tick_size > 0
    assert row.instrument.lot_size > 0


# ------------------------------------------------------------------------------------------------
# Values and times


def test_numbers_arrive_as_strings_with_commas_and_nan() -> None:
    assert optional_number("1,671.00") == Decimal("1671.00")
    assert optional_number(" 2,853.50 ") == Decimal("2853.50")
    assert optional_number("NaN") is None
    assert optional_number("") is None
    assert optional_number(7) == 7
    with pytest.raises(ValidationError):
        optional_number("12abc")
    with pytest.raises(ValidationError):
        optional_number(1.5)  # floats never reach the order path


def test_tick_times_are_1980_based_ist() -> None:
    # The wire capture's 1420629367 is 2025-01-06 11:16:07 IST.
    assert from_1980_ist(1420629367) == dt.datetime(2025, 1, 6, 5, 46, 7, tzinfo=dt.UTC)
    assert from_1980_ist(0) is None
    # A 1970-based time (the Node SDK's BSE/MCX reading) is recognised by its size.
    assert from_1980_ist(1736142367) == dt.datetime.fromtimestamp(1736142367, dt.UTC)


@FUZZ
@given(st.integers(1, 4_000_000_000))
def test_tick_nanoseconds_agree_with_the_datetime_reading(seconds: int) -> None:
    when = from_1980_ist(seconds)
    assert when is not None
    assert tick_time_ns(seconds) == int(when.timestamp()) * 10**9


def test_order_times_in_both_formats_and_the_sentinels() -> None:
    expected = dt.datetime(2025, 1, 1, 4, 30, 15, tzinfo=dt.UTC)
    assert ist_text_to_utc("01-01-2025 10:00:15") == expected
    assert ist_text_to_utc("2025-01-01T10:00:15") == expected
    assert ist_text_to_utc("2025-01-01T10:00:15+05:30") == expected
    assert ist_text_to_utc("01-01-1980 00:00:00") is None
    assert ist_text_to_utc("0001-01-01T00:00:00") is None
    with pytest.raises(ValidationError):
        ist_text_to_utc("yesterday")


# ------------------------------------------------------------------------------------------------
# Orders, trades, positions


def _instruments() -> dict[tuple[str, int], Instrument]:
    rows, _ = parse_master("\n".join(MASTER_LINES))
    return {(r.instrument.segment, r.instrument.token): r.instrument for r in rows}


INSTRUMENTS = _instruments()


def RESOLVE(segment: str, token: int) -> Instrument | None:  # noqa: N802
    return INSTRUMENTS.get((segment, token))


def instrument(segment: str, token: int) -> Instrument:
    return INSTRUMENTS[(segment, token)]


ORDER_EVENT = {
    "LoginID": "PRO1",
    "ClientID": "PRO1",
    "AppOrderID": 1100020513,
    "ExchangeOrderID": "1100000007466437",
    "ExchangeSegment": "NSECM",
    "ExchangeInstrumentID": 2885,
    "OrderSide": "Buy",
    "OrderType": "StopMarket",
    "ProductType": "MIS",
    "TimeInForce": "DAY",
    "OrderPrice": 0,
    "OrderQuantity": 10,
    "OrderStopPrice": 1316.5,
    "OrderStatus": "PartiallyFilled",
    "OrderAverageTradedPrice": "1,317.05",
    "LeavesQuantity": 4,
    "CumulativeQuantity": 6,
    "LastUpdateDateTime": "2025-01-01T10:00:15.237162",
    "LastUpdateDateTimeAPI": "01-01-2025 10:00:15",
    "CancelRejectReason": "",
    "OrderUniqueIdentifier": "conf00000001",
    "MessageCode": 9004,
}


def test_an_order_event_becomes_an_update() -> None:
    update = order_to_update(
        "xts", json.loads(json.dumps(ORDER_EVENT), parse_float=Decimal), RESOLVE
    )
    assert update.status is OrderStatus.PARTIALLY_FILLED
    assert (update.broker_order_id, update.account, update.instrument) == (
        "1100020513",
        "PRO1",
        "NSE:RELIANCE",
    )
    assert (update.filled_quantity, update.pending_quantity, update.quantity) == (6, 4, 10)
    assert update.average_price == Decimal("131705")
    assert update.client_order_id == "conf00000001"
    assert update.at == dt.datetime(2025, 1, 1, 4, 30, 15, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("status", "filled", "expected"),
    [
        ("PendingNew", 0, OrderStatus.PENDING),
        ("New", 0, OrderStatus.OPEN),
        ("Replaced", 3, OrderStatus.PARTIALLY_FILLED),
        ("PendingReplace", 0, OrderStatus.PENDING_MODIFY),
        ("PendingCancel", 0, OrderStatus.PENDING_CANCEL),
        ("Cancelled", 2, OrderStatus.CANCELLED),
        ("Rejected", 0, OrderStatus.REJECTED),
        ("Filled", 5, OrderStatus.FILLED),
        ("Trigger Pending", 0, OrderStatus.OPEN),
        ("SomethingNew", 0, OrderStatus.OPEN),
    ],
)
def test_xts_statuses_map_onto_the_state_machine(
    status: str, filled: int, expected: OrderStatus
) -> None:
    assert map_status(status, filled) is expected


def test_a_trade_event_becomes_a_fill() -> None:
    row = {
        **ORDER_EVENT,
        "ExecutionID": "E1",
        "LastTradedPrice": "1,317.05",
        "LastTradedQuantity": 6,
        "OrderSideAPI": "BUY",
    }
    fill = trade_to_fill(row, RESOLVE)
    assert (fill.fill_id, fill.side, fill.quantity, fill.price) == ("E1", Side.BUY, 6, 131705)
    with pytest.raises(ValidationError):
        trade_to_fill({**row, "LastTradedQuantity": 0}, RESOLVE)


def test_both_position_schemas_read_the_same() -> None:
    rest = {
        "AccountID": "PRO1",
        "ExchangeSegment": "NSEFO",
        "ExchangeInstrumentId": "35001",
        "ProductType": "NRML",
        "BuyAveragePrice": "24,000.05",
        "SellAveragePrice": "NaN",
        "OpenBuyQuantity": "150",
        "OpenSellQuantity": "75",
        "Quantity": "75",
        "BuyAmount": "36,00,007.50",
        "SellAmount": "18,00,000.00",
        "RealizedMTM": "-3.75",
    }
    event = {
        "AccountID": "PRO1",
        "ExchangeSegment": "NSEFO",
        "ExchangeInstrumentID": 35001,
        "ProductType": "NRML",
        "BuyAveragePrice": "24000.05",
        "LongPosition": "150",
        "ShortPosition": "75",
        "NetPosition": "75",
        "BuyValue": "3600007.50",
        "SellValue": "1800000",
        "RealizedMTM": "-3.75",
        "IsDayWiseNetWise": "NetWise",
    }
    one, two = position_to_position(rest, RESOLVE), position_to_position(event, RESOLVE)
    assert one == two
    assert (one.instrument, one.product, one.quantity) == ("NFO:NIFTY26JANFUT", Product.NRML, 75)
    assert (one.buy_value, one.realised_pnl) == (360000750, Decimal("-375"))


ROW_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.text(max_size=12),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.lists(st.integers(), max_size=2),
)
ROW_KEYS = st.sampled_from(
    sorted(
        {
            *ORDER_EVENT,
            "ExecutionID",
            "LastTradedPrice",
            "LastTradedQuantity",
            "Quantity",
            "OpenBuyQuantity",
            "BuyAmount",
        }
    )
)


@FUZZ
@given(st.dictionaries(ROW_KEYS, ROW_VALUES, max_size=12))
def test_fuzz_order_trade_and_position_rows(row: dict[str, object]) -> None:
    for parse in (
        lambda r: order_to_update("xts", r, RESOLVE),
        lambda r: trade_to_fill(r, RESOLVE),
        lambda r: position_to_position(r, RESOLVE),
    ):
        with contextlib.suppress(ValidationError):
            parse({**ORDER_EVENT, **row})


CONVERSION = {
    "LoginID": "PRO1",
    "ClientID": "PRO1",
    "UniqueKey": "7f3a",
    "Success": True,
    "ErrorMessage": "",
    "OriginalProduct": "MIS",
    "TargetProduct": "NRML",
    "OriginalQty": "150",
    "TargetQty": "150",
    "ExchangeSegment": "NSEFO",
    "ExchangeInstrumentId": "35001",
    "Status": "Success",
    "NOWTimeStamp": "2025-01-06T11:16:07",
    "OrderSide": "Sell",
}


def test_a_trade_conversion_becomes_a_signed_position_conversion() -> None:
    event = conversion_to_event("xts", CONVERSION, RESOLVE)
    assert (event.account, event.instrument, event.key) == ("PRO1", "NFO:NIFTY26JANFUT", "7f3a")
    assert (event.from_product, event.to_product, event.quantity) == (
        Product.MIS,
        Product.NRML,
        -150,
    )
    assert event.at == dt.datetime(2025, 1, 6, 5, 46, 7, tzinfo=dt.UTC)
    assert conversion_refusal(CONVERSION) is None
    assert conversion_refusal({**CONVERSION, "Success": "true"}) is None
    refused = {**CONVERSION, "Success": "false", "ErrorMessage": "RMS says no"}
    assert conversion_refusal(refused) == "RMS says no"
    assert conversion_refusal({**CONVERSION, "Status": "Rejected"}) == "Rejected"
    assert conversion_refusal({k: v for k, v in CONVERSION.items() if k != "Success"})
    for broken in (
        {"UniqueKey": ""},
        {"TargetQty": "0", "OriginalQty": ""},
        {"TargetProduct": "MIS"},
        {"OrderSide": "?"},
        {"TargetQty": "1.5"},
    ):
        with pytest.raises(ValidationError):
            conversion_to_event("xts", {**CONVERSION, **broken}, RESOLVE)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(sorted(CONVERSION)),
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        max_size=8,
    )
)
def test_fuzz_trade_conversions(row: dict[str, object]) -> None:
    merged = {**CONVERSION, **row}
    conversion_refusal(merged)
    with contextlib.suppress(ValidationError):
        conversion_to_event("xts", merged, RESOLVE)


# ------------------------------------------------------------------------------------------------
# Market data

TOUCHLINE = {
    "MessageCode": 1501,
    "MessageVersion": 4,
    "ExchangeSegment": 1,
    "ExchangeInstrumentID": 2885,
    "ExchangeTimeStamp": 1420629367,
    "SequenceNumber": 1736142367123456,
    "Touchline": {
        "BidInfo": {"Size": 8, "Price": 1236.7, "TotalOrders": 1, "BuyBackMarketMaker": 0},
        "AskInfo": {"Size": 3, "Price": 1236.95, "TotalOrders": 1, "BuyBackMarketMaker": 0},
        "LastTradedPrice": 1236.8,
        "LastTradedQunatity": 2,
        "TotalBuyQuantity": 319718,
        "TotalSellQuantity": 567470,
        "TotalTradedQuantity": 6157224,
        "AverageTradedPrice": 1233.62,
        "LastTradedTime": 1420629366,
        "LastUpdateTime": 1420629367,
        "PercentChange": 0.52,
        "Open": 1226.7,
        "High": 1243.9,
        "Low": 1224.25,
        "Close": 1230.4,
        "TotalValueTraded": None,
    },
}


def normaliser() -> XtsNormaliser:
    rows, _ = parse_master("\n".join(MASTER_LINES))
    return XtsNormaliser([r.instrument for r in rows])


def test_a_nested_touchline_becomes_a_quote_tick() -> None:
    tick = normaliser().decode_json(json.dumps(TOUCHLINE))
    assert tick is not None
    assert (tick.instrument, tick.mode, tick.last_price, tick.volume) == (
        "NSE:RELIANCE",
        StreamMode.QUOTE,
        123680,
        6157224,
    )
    assert tick.best_bid is not None
    assert tick.best_bid.price == 123670
    assert tick.best_ask is not None
    assert tick.best_ask.quantity == 3
    assert tick.ohlc is not None
    assert tick.ohlc.close == 123040
    assert tick.timestamp_ns == 1736142367 * 10**9


def test_flat_touchlines_and_the_corrected_spelling_are_read_too() -> None:
    flat = {k: v for k, v in TOUCHLINE.items() if k != "Touchline"} | TOUCHLINE["Touchline"]  # type: ignore[operator]
    flat["LastTradedQuantity"] = flat.pop("LastTradedQunatity")
    tick = normaliser().decode_json(json.dumps(flat))
    assert tick is not None
    assert tick.last_quantity == 2
    assert tick.last_price == 123680


def test_a_repeated_sequence_number_is_dropped() -> None:
    decoder = normaliser()
    assert decoder.decode_json(json.dumps(TOUCHLINE)) is not None
    assert decoder.decode_json(json.dumps(TOUCHLINE)) is None


def test_depth_ltp_and_open_interest() -> None:
    decoder = normaliser()
    levels = [{"Size": 10 * i, "Price": 24000 - i * 0.05, "TotalOrders": i} for i in range(1, 6)]
    asks = [{"Size": 0, "Price": 0, "TotalOrders": 0}] * 5  # an empty side is all zeros
    depth = {
        "MessageCode": 1502,
        "ExchangeSegment": 2,
        "ExchangeInstrumentID": 35001,
        "Bids": levels,
        "Asks": asks,
        "Touchline": TOUCHLINE["Touchline"],
    }
    tick = decoder.decode_json(json.dumps(depth))
    assert tick is not None
    assert tick.mode is StreamMode.FULL
    assert tick.depth is not None
    assert [lv.price for lv in tick.depth.bids] == [2399995, 2399990, 2399985, 2399980, 2399975]
    assert tick.depth.asks == ()
    oi = decoder.normalise(
        encode_event(
            "1510-json-full",
            json.dumps(
                {
                    "MessageCode": 1510,
                    "ExchangeSegment": 2,
                    "ExchangeInstrumentID": 35001,
                    "OpenInterest": 4242,
                }
            ),
        )
    )
    assert len(oi) == 1
    assert oi[0].open_interest == 4242
    assert oi[0].mode is StreamMode.FULL
    ltp = decoder.decode_json(
        '{"MessageCode":1512,"ExchangeSegment":2,"ExchangeInstrumentID":35001,"LastTradedPrice":24001.5,"LastUpdateTime":1420629367}'
    )
    assert ltp is not None
    assert ltp.mode is StreamMode.LTP
    assert ltp.last_price == 2400150


def test_partial_messages_merge_into_the_snapshot() -> None:
    decoder = normaliser()
    decoder.seed([json.dumps(TOUCHLINE)])
    tick = decoder.decode_partial(
        1501, "t:1_2885,ltp:1237.05,ltq:5,v:6157300,bi:0|9|1237|2,ai:0|4|1237.1|1\n"
    )
    assert tick is not None
    assert (tick.last_price, tick.last_quantity, tick.volume) == (123705, 5, 6157300)
    assert tick.best_bid is not None
    assert (tick.best_bid.price, tick.best_bid.quantity) == (
        123700,
        9,
    )
    assert tick.ohlc is not None
    assert tick.ohlc.open == 122670
    frame = '42["1501-json-partial","t:1_2885,ltp:1237.10"]'
    [again] = decoder.normalise(frame)
    assert again.last_price == 123710  # type: ignore[union-attr]
    assert decoder.decode_partial(1501, "t:1_999999,ltp:1") is None  # not an instrument we know


def test_a_bad_partial_message_changes_nothing() -> None:
    decoder = normaliser()
    decoder.seed([json.dumps(TOUCHLINE)])
    with pytest.raises(ValidationError):
        decoder.decode_partial(1501, "t:1_2885,ltp:1240,v:lots,bi:0|1|1239.95|1")
    tick = decoder.decode_partial(1501, "t:1_2885,ltq:3")
    assert tick is not None
    assert (tick.last_price, tick.volume, tick.last_quantity) == (123680, 6157224, 3)
    assert tick.best_bid is not None
    assert tick.best_bid.price == 123670


@pytest.mark.parametrize("text", ["ltp:1", "t:x_1,ltp:1", "t:1_2885,nonsense", "t:1_2885,bi:0|1|2"])
def test_bad_partial_messages_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        normaliser().decode_partial(1501, text)


def test_a_1505_candle_becomes_a_one_minute_bar() -> None:
    candle = {
        "MessageCode": 1505,
        "MessageVersion": 4,
        "ExchangeSegment": 2,
        "ExchangeInstrumentID": 35001,
        "BarTime": 1737365400,  # 09:30 IST on 20 Jan 2025, written as if it were UTC
        "BarVolume": "1,500",
        "Open": 24010.05,
        "High": "24031.55",
        "Low": 24002,
        "Close": 24020,
        "OpenInterest": 12345,
        "SumOfQtyInToPrice": 0,
    }
    [bar] = normaliser().normalise(json.dumps(candle))
    assert isinstance(bar, Bar)
    start = dt.datetime(2025, 1, 20, 4, 0, tzinfo=dt.UTC)
    assert bar == Bar(
        "NFO:NIFTY26JANFUT",
        int(start.timestamp()) * 10**9,
        60,
        2401005,
        2403155,
        2400200,
        2402000,
        1500,
        12345,
    )
    rows, _ = parse_master("\n".join(MASTER_LINES))
    future = next(r.instrument for r in rows if r.instrument.key == "NFO:NIFTY26JANFUT")
    assert decode_bar(parse_json_message(json.dumps(candle)), future) == bar
    without_oi = {k: v for k, v in candle.items() if k != "OpenInterest"}
    [bar] = normaliser().normalise(json.dumps(without_oi))
    assert isinstance(bar, Bar)
    assert bar.open_interest is None
    with pytest.raises(ValidationError):
        normaliser().normalise(json.dumps({**candle, "Close": "NaN"}))


def test_partial_values_split_on_the_first_colon_only() -> None:
    pairs = parse_partial_message("t:1_2885, 18:2025-01-06 11:16:07 ,,24:")
    assert pairs == {"t": "1_2885", "18": "2025-01-06 11:16:07"}


def test_bare_partial_text_needs_its_event_name() -> None:
    with pytest.raises(ValidationError):
        normaliser().normalise("t:1_2885,ltp:1")


@FUZZ
@given(
    st.text(alphabet="t:_,|0123456789.ltpqbiavoc \n", max_size=80),
    st.sampled_from([1501, 1502, 1510, 1512]),
)
def test_fuzz_partial_messages(text: str, code: int) -> None:
    decoder = normaliser()
    with contextlib.suppress(ValidationError):
        decoder.decode_partial(code, text)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=6)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Bids",
                    "Asks",
                    "Size",
                    "Price",
                    "LastTradedPrice",
                    "Touchline",
                    "BidInfo",
                    "LastUpdateTime",
                    "Open",
                    "OpenInterest",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.sampled_from([1501, 1502, 1505, 1510, 1512, 1105]),
    st.dictionaries(
        st.sampled_from(
            [
                "Bids",
                "Asks",
                "Touchline",
                "LastTradedPrice",
                "LastUpdateTime",
                "BarTime",
                "Open",
                "High",
                "Low",
                "Close",
                "OpenInterest",
            ]
        ),
        JSONISH,
        max_size=6,
    ),
)
def test_fuzz_full_messages(code: int, fields: dict[str, object]) -> None:
    payload = json.dumps(
        {"MessageCode": code, "ExchangeSegment": 2, "ExchangeInstrumentID": 35001, **fields}
    )
    with contextlib.suppress(ValidationError):
        normaliser().decode_json(payload)


@FUZZ
@given(st.binary(max_size=60))
def test_fuzz_raw_payloads(payload: bytes) -> None:
    with contextlib.suppress(ValidationError, UnicodeDecodeError):
        normaliser().normalise(payload)
    with contextlib.suppress(ValidationError):
        parse_json_message(payload)


# ------------------------------------------------------------------------------------------------
# Engine.IO / socket.io frames


def test_engine_io_frames() -> None:
    opened = parse_frame('0{"sid":"x","upgrades":[],"pingInterval":20000,"pingTimeout":60000}')
    assert opened.kind == "open"
    assert opened.data["pingInterval"] == 20000
    assert parse_frame("3") == Frame("pong")
    assert parse_frame("40") == Frame("connect")
    assert parse_frame("40/md,") == Frame("connect", "/md")
    assert parse_frame('42["joined","{\\"type\\":\\"success\\"}"]') == Frame(
        "event", event="joined", data='{"type":"success"}'
    )
    assert parse_frame('42/md,7["1501-json-full","{}"]') == Frame(
        "event", "/md", "1501-json-full", "{}"
    )
    assert parse_frame('44"bad token"') == Frame("error", data="bad token")
    assert parse_frame("41") == Frame("disconnect")
    for bad in ("", "9", "4", "49", '42{"a":1}', "42[1]", "0[]", "42/md"):
        with pytest.raises(ValidationError):
            parse_frame(bad)


@FUZZ
@given(st.text(alphabet='0123456789/[]{}",:abx', max_size=40))
def test_fuzz_frames(message: str) -> None:
    with contextlib.suppress(ValidationError):
        parse_frame(message)


# ------------------------------------------------------------------------------------------------
# OHLC


def test_ohlc_bars_are_ist_wall_clock_as_unix_time() -> None:
    reliance = instrument("NSECM", 2885)
    bars = parse_ohlc(
        "1737365400|1316|1320.5|1300.25|1305.45|14040|0|,"
        "1737365460|1305.45|1310|1304|1309.9|9000|0|",
        reliance,
    )
    assert len(bars) == 2
    assert bars[0].start == dt.datetime(2025, 1, 20, 4, 0, tzinfo=dt.UTC)  # 09:30 IST
    assert (bars[0].ohlc.high, bars[0].volume) == (132050, 14040)
    assert parse_ohlc("", reliance) == []


@FUZZ
@given(st.text(alphabet="0123456789.|,-N a", max_size=60))
def test_fuzz_ohlc(bars: str) -> None:
    with contextlib.suppress(ValidationError):
        parse_ohlc(bars, instrument("NSECM", 2885))
