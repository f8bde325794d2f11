"""Both REST families against the fake install: sessions, envelopes, dealer routes, portfolio,
bracket and cover orders, market-data calls, the instrument cache."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import structlog
from hft_xts.rest import result_of
from xts_fake import FakeXts

from hft import (
    AuthError,
    BrokerRejected,
    Conflict,
    NetworkError,
    NotFound,
    RateLimited,
    ValidationError,
)
from hft.model import OrderRequest, OrderStatus, OrderType, Side, StreamMode

from .conftest import DEALER, make_broker, streaming

# ------------------------------------------------------------------------------------------------
# Envelopes


def _body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_envelope_success_judged_by_type_alone() -> None:
    # A good market-data login from a real install carries an e- code.
    ok = {
        "type": "success",
        "code": "e-response-0010",
        "description": "x",
        "result": {"token": "t"},
    }
    assert result_of(200, _body(ok), "login") == {"token": "t"}
    assert result_of(200, _body([ok]), "login") == {"token": "t"}  # wrapped in a list


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (429, b"", RateLimited, "xts_rate_limited"),
        (404, b"<html>404</html>", NetworkError, "network"),
        (502, b"<html>bad gateway</html>", NetworkError, "network"),
        (200, b"<html>hello</html>", NetworkError, "xts_bad_response"),
        (
            400,
            _body({"type": "error", "code": "e-session-0007", "description": "Invalid Token"}),
            AuthError,
            "xts_session_expired",
        ),
        (
            401,
            _body({"type": "error", "code": "x", "description": "Invalid Token"}),
            AuthError,
            "xts_session_expired",
        ),
        (
            400,
            _body({"type": "error", "code": "e-user-0013", "description": "not a trusted IP"}),
            AuthError,
            "xts_login_refused",
        ),
        (
            400,
            _body(
                {
                    "type": "error",
                    "code": "e-session-0002",
                    "description": "Instrument Already Subscribed !",
                }
            ),
            Conflict,
            "xts_already_subscribed",
        ),
        (
            400,
            _body({"type": "error", "code": "e-response-0004", "description": "Data Not found."}),
            NotFound,
            "xts_not_found",
        ),
        (
            400,
            _body(
                {
                    "type": "error",
                    "code": "e-orders-0001",
                    "description": "Bad Request",
                    "result": {
                        "errors": [{"field": "limitPrice", "messages": "limitPrice is required"}]
                    },
                }
            ),
            ValidationError,
            "xts_bad_request",
        ),
        (
            400,
            _body({"type": "error", "code": "e-rms-0001", "description": "Insufficient margin"}),
            BrokerRejected,
            "xts_rejected",
        ),
        (200, _body(["a", "b"]), NetworkError, "xts_bad_response"),
    ],
)
def test_envelope_errors_map_onto_the_error_tree(
    status: int, body: bytes, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as caught:
        result_of(status, body, "the call")
    assert caught.value.code == code  # type: ignore[attr-defined]


def test_field_errors_are_named_in_the_message() -> None:
    body = _body(
        {
            "type": "error",
            "code": "e-orders-0001",
            "description": "Bad Request",
            "result": {"errors": [{"field": "limitPrice", "messages": "limitPrice is required"}]},
        }
    )
    with pytest.raises(ValidationError, match="limitPrice is required"):
        result_of(400, body, "the order")


# ------------------------------------------------------------------------------------------------
# Sessions


@pytest.mark.anyio
async def test_wrong_credentials_give_a_clear_error_without_the_secret(
    server: FakeXts, tmp_path: Path
) -> None:
    login = {"interactive_app_key": "pro-key", "interactive_secret_key": "not-the-secret-9f3"}
    broker = make_broker(server.url, tmp_path, login)
    with structlog.testing.capture_logs() as logs, pytest.raises(AuthError) as caught:
        await broker.connect()
    assert caught.value.code == "xts_login_refused"
    assert "interactive app key and secret key" in caught.value.message
    assert "not-the-secret-9f3" not in str(caught.value)
    assert "not-the-secret-9f3" not in repr(logs)
    await broker.close()


@pytest.mark.anyio
async def test_wrong_market_data_keys_are_reported_as_such(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path, marketdata_secret_key="nope")
    with pytest.raises(AuthError, match="market data app key"):
        await broker.connect()
    await broker.close()


@pytest.mark.anyio
async def test_secrets_never_reach_logs_or_reprs(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    with structlog.testing.capture_logs() as logs:
        await broker.connect()
        await broker.orders("PRO1")
    text = repr(logs) + repr(broker.config)
    for secret in ("pro-secret", "md-secret", "pro-key", "md-key", *server.tokens):
        assert secret not in text
    await broker.close()


@pytest.mark.anyio
async def test_an_invalidated_token_is_renewed_once_and_the_call_repeated(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    logins = server.logins
    server.invalidate_tokens()
    assert await broker.orders("PRO1") == []
    assert server.logins == logins + 1
    await broker.close()


@pytest.mark.anyio
async def test_a_token_near_its_expiry_is_renewed_before_use(
    server: FakeXts, tmp_path: Path
) -> None:
    # The fake's tokens live a day; with a margin longer than that every call finds its token
    # about to expire.
    broker = make_broker(server.url, tmp_path, relogin_margin_s=90_000.0)
    await broker.connect()
    logins = server.logins
    await broker.orders("PRO1")
    await broker.orders("PRO1")
    assert server.logins == logins + 2
    await broker.close()


@pytest.mark.anyio
async def test_close_logs_out_of_both_apis(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    await broker.close()
    await broker.close()
    assert sorted(server.logouts) == ["MDUSER", "PRO1"]


@pytest.mark.anyio
async def test_host_lookup_flavour(server: FakeXts, tmp_path: Path) -> None:
    server.host_lookup = True
    broker = make_broker(
        server.url, tmp_path, host_lookup=True, host_lookup_password="2026HostLookUpAccess"
    )
    async with streaming(broker) as events:
        assert broker.rest.interactive_socket_path == "/1interactive/socket.io"
        instrument = {i.key: i for i in await broker.instruments()}["NSE:RELIANCE"]
        request = OrderRequest("PRO1", instrument.key, Side.BUY, 1, price=instrument.price("1290"))
        order_id = await broker.place_order("PRO1", instrument, request)
        await events.wait(
            lambda e: getattr(e, "broker_order_id", "") == order_id and e.status is OrderStatus.OPEN
        )
    login = next(
        b for m, p, b in server.requests if p == "/1interactive/user/session" and m == "POST"
    )
    assert login["uniqueKey"] == "UK123"


@pytest.mark.anyio
async def test_a_wrong_host_lookup_password_is_an_auth_error(
    server: FakeXts, tmp_path: Path
) -> None:
    server.host_lookup = True
    broker = make_broker(server.url, tmp_path, host_lookup=True, host_lookup_password="wrong")
    with pytest.raises(AuthError):
        await broker.connect()
    await broker.close()


# ------------------------------------------------------------------------------------------------
# Dealer mode


@pytest.mark.anyio
async def test_dealer_serves_its_clients_on_the_dealer_routes(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path, DEALER)
    await broker.connect()
    assert broker.dealer
    assert list(broker.accounts()) == ["CL1", "CL2"]
    instrument = {i.key: i for i in await broker.instruments()}["NSE:RELIANCE"]
    order_id = await broker.place_order(
        "CL2",
        instrument,
        OrderRequest("x", instrument.key, Side.SELL, 2, price=instrument.price("1310")),
    )
    assert [u.broker_order_id for u in await broker.orders("CL2")] == [order_id]
    assert await broker.orders("CL1") == []
    await broker.positions("CL1", day_wise=True)
    paths = [(m, p, b.get("clientID")) for m, p, b in server.requests]
    assert ("POST", "/interactive/orders", "CL2") in paths
    assert ("GET", "/interactive/orders/dealerorderbook", "CL1") in paths
    assert ("GET", "/interactive/portfolio/dealerpositions", "CL1") in paths
    with pytest.raises(NotFound):
        await broker.orders("CL9")
    await broker.close()


@pytest.mark.anyio
async def test_dealer_clients_can_be_restricted_and_unknown_ones_refused(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path, DEALER, clients=["CL2"])
    await broker.connect()
    assert list(broker.accounts()) == ["CL2"]
    await broker.close()
    broker = make_broker(server.url, tmp_path, DEALER, clients=["CL7"])
    with pytest.raises(AuthError, match="CL7"):
        await broker.connect()
    await broker.close()


# ------------------------------------------------------------------------------------------------
# Orders and portfolio


@pytest.mark.anyio
async def test_bad_orders_are_refused_before_they_are_sent(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    keys = {i.key: i for i in await broker.instruments()}
    future = keys["NFO:NIFTY26JANFUT"]
    with pytest.raises(BrokerRejected) as caught:
        await broker.place_order(
            "PRO1", future, OrderRequest("x", future.key, Side.BUY, 75, price=2400001)
        )
    assert caught.value.code == "off_tick"
    with pytest.raises(BrokerRejected, match="lot size"):
        await broker.place_order(
            "PRO1", future, OrderRequest("x", future.key, Side.BUY, 10, price=2400000)
        )
    with pytest.raises(BrokerRejected, match="products"):
        await broker.place_order(
            "PRO1",
            future,
            OrderRequest("x", future.key, Side.BUY, 75, price=2400000, product="CNC"),
        )  # type: ignore[arg-type]
    assert not [r for r in server.requests if r[1] == "/interactive/orders"]
    await broker.close()


@pytest.mark.anyio
async def test_order_requests_carry_exact_prices_and_history_is_kept(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    stock = {i.key: i for i in await broker.instruments()}["NSE:RELIANCE"]
    request = OrderRequest(
        "PRO1",
        stock.key,
        Side.BUY,
        3,
        OrderType.STOP_LIMIT,
        price=stock.price("1290.05"),
        trigger_price=stock.price("1290.10"),
        client_order_id="c1",
    )
    order_id = await broker.place_order("PRO1", stock, request)
    sent = next(b for m, p, b in server.requests if (m, p) == ("POST", "/interactive/orders"))
    assert (str(sent["limitPrice"]), str(sent["stopPrice"]), sent["orderType"]) == (
        "1290.05",
        "1290.10",
        "STOPLIMIT",
    )
    assert sent["orderUniqueIdentifier"] == "c1"
    history = await broker.order_history("PRO1", order_id)
    assert [u.status for u in history] == [OrderStatus.PENDING, OrderStatus.OPEN]
    await broker.cancel_all("PRO1", stock)
    assert (await broker.orders("PRO1"))[0].status is OrderStatus.CANCELLED
    with pytest.raises(NotFound):
        await broker.order_history("PRO1", "abc")
    await broker.close()


@pytest.mark.anyio
async def test_holdings_balance_and_day_wise_positions(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    [holding] = await broker.holdings("PRO1")
    assert (holding.instrument, holding.quantity, holding.average_price, holding.isin) == (
        "NSE:RELIANCE",
        10,
        125050,
        "INE002A01018",
    )
    balance = await broker.balance("PRO1")
    assert (balance.cash_available, balance.margin_utilized, balance.mtm) == (10000050, None, -1250)
    assert await broker.positions("PRO1", day_wise=True) == []
    assert ("GET", "/interactive/portfolio/positions", {"dayOrNet": "DayWise"}) in server.requests
    await broker.close()


@pytest.mark.anyio
async def test_bracket_and_cover_orders(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    stock = {i.key: i for i in await broker.instruments()}["NSE:RELIANCE"]
    request = OrderRequest("PRO1", stock.key, Side.BUY, 1, price=stock.price("1290"))
    entry = await broker.place_bracket_order(
        "PRO1", stock, request, square_off=stock.price("10"), stop_loss=stock.price("5")
    )
    sent = next(
        b for m, p, b in server.requests if (m, p) == ("POST", "/interactive/orders/bracket")
    )
    assert (str(sent["squarOff"]), str(sent["stopLossPrice"])) == ("10.00", "5.00")
    await broker.modify_bracket_order(
        "PRO1", entry, stock, quantity=1, price=stock.price("1289"), stop_loss=stock.price("6")
    )
    await broker.cancel_bracket_order("PRO1", entry)
    entry, exit_ = await broker.place_cover_order(
        "PRO1", stock, request, stop_price=stock.price("1280")
    )
    assert entry != exit_
    await broker.exit_cover_order("PRO1", exit_)
    statuses = {u.broker_order_id: u.status for u in await broker.orders("PRO1")}
    assert statuses[exit_] is OrderStatus.CANCELLED
    await broker.close()


# ------------------------------------------------------------------------------------------------
# Market data REST


@pytest.mark.anyio
async def test_quotes_ohlc_and_the_daily_instrument_cache(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    keys = {i.key: i for i in await broker.instruments()}
    assert "NSE:NIFTY 50" in keys  # from the index list
    ticks = await broker.quotes(
        [keys["NSE:RELIANCE"], keys["NFO:NIFTY26JANFUT"], keys["NFO:NATIONALUM26JAN335PE"]]
    )
    assert set(ticks) == {"NSE:RELIANCE", "NFO:NIFTY26JANFUT"}
    assert ticks["NSE:RELIANCE"].mode is StreamMode.FULL
    start = dt.datetime(2025, 1, 20, 9, 15, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))
    bars = await broker.ohlc(keys["NSE:RELIANCE"], start, start + dt.timedelta(hours=6), 60)
    assert len(bars) == 2
    sent = next(q for m, p, q in server.requests if p == "/apimarketdata/instruments/ohlc")
    assert sent["startTime"] == "Jan 20 2025 091500"
    with pytest.raises(ValidationError):
        await broker.ohlc(keys["NSE:RELIANCE"], start, start, 60)
    await broker.close()

    again = make_broker(server.url, tmp_path)
    await again.connect()
    assert len(await again.instruments()) == len(keys)
    masters = [r for r in server.requests if r[1] == "/apimarketdata/instruments/master"]
    assert len(masters) == 1  # the second broker read today's cache
    await again.close()


@pytest.mark.anyio
async def test_subscribing_twice_is_not_an_error_and_counts_are_kept(
    server: FakeXts, tmp_path: Path
) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    stock = {i.key: i for i in await broker.instruments()}["NSE:RELIANCE"]
    await broker.subscribe_codes([stock], 1501)
    await broker.subscribe_codes([stock], 1501)  # e-session-0002: already subscribed
    assert broker.remaining_subscriptions == 49
    await broker.subscribe_extra([stock], 1510)
    await broker.unsubscribe_codes([stock], 1501)
    assert server.subscriptions["MDUSER"][1501] == set()
    assert server.subscriptions["MDUSER"][1510] == {(1, 2885)}
    await broker.close()


@pytest.mark.anyio
async def test_the_subscription_quota_is_enforced(server: FakeXts, tmp_path: Path) -> None:
    broker = make_broker(server.url, tmp_path)
    await broker.connect()
    keys = {i.key: i for i in await broker.instruments()}
    await broker.subscribe([keys["NSE:RELIANCE"]], StreamMode.QUOTE)
    assert broker.remaining_subscriptions == 49
    broker.remaining_subscriptions = 1  # as if the key had one left
    with pytest.raises(BrokerRejected) as caught:
        await broker.subscribe([keys["NSE:INFY-BE"], keys["NFO:NIFTY26JANFUT"]], StreamMode.LTP)
    assert caught.value.code == "xts_subscription_limit"
    assert set(server.subscriptions["MDUSER"]) == {1501}  # nothing else was asked for
    await broker.subscribe([keys["NSE:RELIANCE"]], StreamMode.FULL)  # not a new instrument
    await broker.close()
