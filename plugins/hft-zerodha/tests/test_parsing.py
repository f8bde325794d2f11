"""Kite payloads → hft: error mapping, envelopes, statuses, the instrument dump; and fuzzing of
every parser of Kite's JSON and CSV."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal

import pytest
from hft_zerodha.normaliser import ZerodhaNormaliser
from hft_zerodha.parsing.kite import (
    candles_from_kite,
    error_from_response,
    fill_from_kite,
    instruments_from_csv,
    kite_error,
    order_status,
    parse_envelope,
    position_from_kite,
    update_from_kite,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hft._errors import (
    AuthError,
    BrokerRejected,
    HftError,
    NetworkError,
    NotFound,
    RateLimited,
    ValidationError,
)
from hft.model import InstrumentType, OrderStatus, Side

from .fake_kite import instruments_csv


@pytest.mark.parametrize(
    ("error_type", "status", "kind"),
    [
        ("TokenException", 403, AuthError),
        ("PermissionException", 403, AuthError),
        ("TwoFAException", 403, AuthError),
        ("UserException", 403, BrokerRejected),
        ("OrderException", 400, BrokerRejected),
        ("OrderException", 500, BrokerRejected),
        ("MarginException", 400, BrokerRejected),
        ("HoldingException", 400, BrokerRejected),
        ("InputException", 400, ValidationError),
        ("NetworkException", 503, NetworkError),
        ("DataException", 502, NetworkError),
        ("GeneralException", 500, NetworkError),
        ("NetworkException", 429, RateLimited),
        ("SomethingNew", 404, NotFound),
        ("SomethingNew", 418, HftError),
        ("", 403, AuthError),
        ("", 400, ValidationError),
        ("", 504, NetworkError),
    ],
)
def test_error_types_map_onto_the_tree_with_the_real_status(
    error_type: str, status: int, kind: type[HftError]
) -> None:
    body = json.dumps({"status": "error", "message": "m", "error_type": error_type}).encode()
    error = error_from_response(status, body, "GET /x")
    assert type(error) is kind
    assert error.status == status
    assert "m" in error.message


def test_token_exception_says_to_log_in_again() -> None:
    error = kite_error(403, "TokenException", "Incorrect `api_key` or `access_token`.")
    assert "hft zerodha login" in error.message
    assert error.code == "kite_tokenexception"


@pytest.mark.parametrize("body", [b"", b"<html>502 Bad Gateway</html>", b"[1,2]", b"{"])
def test_error_bodies_that_are_not_envelopes_still_map_by_status(body: bytes) -> None:
    error = error_from_response(502, body, "GET /x")
    assert isinstance(error, NetworkError)
    assert error.status == 502


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'{"status": "success"}', b'{"status": "ok", "data": 1}', b"null"],
)
def test_malformed_success_bodies_are_validation_errors(body: bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_envelope(body, "GET /x")
    assert caught.value.code == "kite_malformed"


def test_an_error_envelope_with_http_200_is_an_error() -> None:
    body = b'{"status": "error", "error_type": "OrderException", "message": "no"}'
    with pytest.raises(BrokerRejected):
        parse_envelope(body, "POST /orders/regular")


def test_envelope_prices_are_decimals_not_floats() -> None:
    assert parse_envelope(b'{"status": "success", "data": {"p": 1573.7}}', "x") == {
        "p": Decimal("1573.7")
    }


@pytest.mark.parametrize(
    ("kite", "filled", "ours"),
    [
        ("PUT ORDER REQ RECEIVED", 0, OrderStatus.PENDING),
        ("PUT ORDER REQUEST RECEIVED", 0, OrderStatus.PENDING),
        ("AMO REQ RECEIVED", 0, OrderStatus.PENDING),
        ("VALIDATION PENDING", 0, OrderStatus.PENDING),
        ("OPEN PENDING", 0, OrderStatus.PENDING),
        ("OPEN", 0, OrderStatus.OPEN),
        ("OPEN", 5, OrderStatus.PARTIALLY_FILLED),
        ("TRIGGER PENDING", 0, OrderStatus.OPEN),
        ("MODIFY VALIDATION PENDING", 0, OrderStatus.PENDING_MODIFY),
        ("MODIFY PENDING", 0, OrderStatus.PENDING_MODIFY),
        ("MODIFIED", 0, OrderStatus.OPEN),
        ("UPDATE", 5, OrderStatus.PARTIALLY_FILLED),
        ("CANCEL PENDING", 0, OrderStatus.PENDING_CANCEL),
        ("COMPLETE", 10, OrderStatus.FILLED),
        ("CANCELLED", 5, OrderStatus.CANCELLED),
        ("CANCELLED AMO", 0, OrderStatus.CANCELLED),
        ("REJECTED", 0, OrderStatus.REJECTED),
        ("SOMETHING NEW", 0, OrderStatus.PENDING),
    ],
)
def test_order_statuses(kite: str, filled: int, ours: OrderStatus) -> None:
    assert order_status(kite, filled, 10) is ours


ORDER = {
    "order_id": "1953367517686685697",
    "exchange_order_id": None,
    "status": "REJECTED",
    "status_message": "Insufficient funds",
    "exchange": "CDS",
    "tradingsymbol": "USDINR26JANFUT",
    "instrument_token": 315907,
    "quantity": 1,
    "filled_quantity": 0,
    "pending_quantity": 0,
    "price": 83.2525,
    "average_price": 0,
    "tag": "abc123",
    "order_timestamp": "2026-01-21 10:00:00",
}


def test_an_order_object_becomes_an_update_in_price_units() -> None:
    update = update_from_kite(
        json.loads(json.dumps(ORDER), parse_float=Decimal), "z", "AB1234", lambda _: None
    )
    assert update.broker_order_id == "1953367517686685697"  # 19 digits, kept as a string
    assert update.status is OrderStatus.REJECTED
    assert update.reason == "Insufficient funds"
    assert update.price == 832525000  # CDS: scale 7
    assert update.client_order_id == "abc123"
    assert update.at.isoformat() == "2026-01-21T04:30:00+00:00"  # IST → UTC


def test_a_trade_becomes_a_fill() -> None:
    row = {
        "trade_id": "10000000",
        "order_id": "151220000000000",
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "instrument_token": 408065,
        "transaction_type": "SELL",
        "average_price": Decimal("1573.75"),
        "quantity": 3,
        "fill_timestamp": "2026-01-21 10:15:00",
        "order_timestamp": "10:15:00",
    }
    fill = fill_from_kite(row, "AB1234", lambda _: None)
    assert (fill.fill_id, fill.side, fill.quantity, fill.price) == (
        "10000000",
        Side.SELL,
        3,
        157375,
    )


def test_positions_and_candles() -> None:
    row = {
        "exchange": "NSE",
        "tradingsymbol": "INFY",
        "product": "MIS",
        "quantity": -2,
        "average_price": Decimal("1500.5"),
        "multiplier": 1,
        "buy_quantity": 1,
        "buy_value": Decimal("1500"),
        "sell_quantity": 3,
        "sell_value": Decimal("4501.5"),
        "last_price": Decimal("1501"),
        "realised": Decimal("1"),
    }
    position = position_from_kite(row, "AB1234", lambda _: None)
    assert (position.quantity, position.buy_value, position.sell_value) == (-2, 150000, 450150)
    assert position.average_price == Decimal("150050")
    candles = candles_from_kite(
        {"candles": [["2026-01-21T09:15:00+0530", 1, Decimal("2.5"), 0, 1, 10, 7]]}, 2
    )
    assert candles[0].at.isoformat() == "2026-01-21T03:45:00+00:00"
    assert (candles[0].high, candles[0].volume, candles[0].open_interest) == (250, 10, 7)


def test_instrument_dump() -> None:
    instruments = {i.key: i for i in instruments_from_csv(instruments_csv().encode())}
    infy = instruments["NSE:INFY"]
    assert (infy.token, infy.tick_size, infy.lot_size, infy.price_scale) == (408065, 5, 1, 2)
    fut = instruments["NFO:NIFTY26JANFUT"]
    assert fut.instrument_type is InstrumentType.FUTURE
    assert fut.lot_size == 75
    assert str(fut.expiry) == "2026-01-27"
    assert instruments["NFO:NIFTY26JAN24000CE"].strike == 2400000
    assert instruments["CDS:USDINR26JANFUT"].price_scale == 7
    assert instruments["CDS:USDINR26JANFUT"].tick_size == 25000
    assert instruments["BCD:USDINR26JANFUT"].tick_size == 25
    assert instruments["NCO:GUARSEED26FEBFUT"].price_scale == 4
    assert instruments["NSE:NIFTY 50"].instrument_type is InstrumentType.INDEX
    for instrument in instruments.values():
        assert instrument.token >> 8 > 0  # instrument_token = exchange_token << 8 | segment


@pytest.mark.parametrize(
    "csv_text",
    [
        "",
        "a,b,c\n1,2,3\n",
        instruments_csv().replace("408065", "x"),
        instruments_csv().replace(",0.05,1,EQ", ",0.05,EQ"),
        instruments_csv().replace("2026-01-27", "27/01/2026"),
    ],
)
def test_a_malformed_dump_is_refused(csv_text: str) -> None:
    with pytest.raises(ValidationError):
        instruments_from_csv(csv_text)


HEADER = instruments_csv().splitlines()[0]


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: HEADER + "\n" + t)))
def test_fuzz_the_instrument_dump(data: bytes | str) -> None:
    with contextlib.suppress(ValidationError):
        instruments_from_csv(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ORDER_KEYS = list(ORDER)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_envelopes_with_bytes(data: bytes) -> None:
    with contextlib.suppress(HftError):
        parse_envelope(data, "GET /x")
    assert isinstance(error_from_response(500, data, "GET /x"), HftError)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(ORDER_KEYS), json_values, max_size=len(ORDER_KEYS)))
def test_fuzz_order_objects(row: dict[str, object]) -> None:
    text = json.dumps({**ORDER, **row})
    try:
        update_from_kite(json.loads(text, parse_float=Decimal), "z", "A", lambda _: None)
        fill_from_kite(json.loads(text, parse_float=Decimal), "A", lambda _: None)
    except ValidationError:
        pass


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), json_values.map(json.dumps)))
def test_fuzz_the_normaliser(payload: bytes | str) -> None:
    normaliser = ZerodhaNormaliser([])
    with contextlib.suppress(ValidationError):
        normaliser.normalise(payload)
