"""REST through the broker against the fake Kite server: headers, order forms per variety,
every documented error, 429s, malformed bodies, client-side rate limits, batching, caches."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trio
from hft_zerodha.broker import ZerodhaBroker
from starlette.responses import Response

from hft._errors import (
    AuthError,
    BrokerRejected,
    HftError,
    NetworkError,
    RateLimited,
    ValidationError,
)
from hft.model import Instrument, ModifyRequest, OrderRequest, OrderType, Side, StreamMode

from .conftest import connected, make_broker, store_token
from .fake_kite import API_KEY, USER_ID, FakeKite, error

pytestmark = pytest.mark.anyio


async def instrument(broker: ZerodhaBroker, key: str) -> Instrument:
    return {i.key: i for i in await broker.instruments()}[key]


def sent(server: FakeKite, method: str, path: str) -> list[dict[str, str]]:
    return [form for m, p, _, form, _ in server.requests if (m, p) == (method, path)]


async def test_every_call_carries_the_version_and_authorization_headers(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker):
        await broker.orders(USER_ID)
        for _, path, _, _, headers in server.requests:
            assert headers["x-kite-version"] == "3", path
            assert headers["authorization"] == f"token {API_KEY}:access0001", path


async def test_order_forms_per_variety(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker):
        infy = await instrument(broker, "NSE:INFY")
        limit = OrderRequest(
            USER_ID, infy.key, Side.BUY, 2, price=150005, client_order_id="abc123",
            extras={"market_protection": "-1"},
        )  # fmt: skip
        await broker.place_order(USER_ID, infy, limit)
        (form,) = sent(server, "POST", "/orders/regular")
        assert form == {
            "tradingsymbol": "INFY",
            "exchange": "NSE",
            "transaction_type": "BUY",
            "order_type": "LIMIT",
            "quantity": "2",
            "product": "MIS",
            "validity": "DAY",
            "tag": "abc123",
            "price": "1500.05",
            "market_protection": "-1",
        }
        market = OrderRequest(USER_ID, infy.key, Side.SELL, 1, order_type=OrderType.MARKET)
        amo = await broker.place_order(USER_ID, infy, _with(market, variety="amo"))
        await broker.place_order(USER_ID, infy, _with(market, variety="co", trigger_price="1490.5"))
        await broker.place_order(
            USER_ID, infy, _with(limit, variety="iceberg", iceberg_legs="3", iceberg_quantity="1")
        )
        await broker.place_order(USER_ID, infy, _with(limit, validity_ttl="2"))
        assert sent(server, "POST", "/orders/co")[0]["trigger_price"] == "1490.50"
        iceberg = sent(server, "POST", "/orders/iceberg")[0]
        assert (iceberg["iceberg_legs"], iceberg["iceberg_quantity"]) == ("3", "1")
        ttl = sent(server, "POST", "/orders/regular")[-1]
        assert (ttl["validity"], ttl["validity_ttl"]) == ("TTL", "2")
        # Modify and cancel find the order's variety.
        await broker.modify_order(USER_ID, amo, infy, ModifyRequest(quantity=3))
        assert sent(server, "PUT", f"/orders/amo/{amo}") == [{"quantity": "3"}]
        for quantity in range(4, 4 + 24):
            await broker.modify_order(USER_ID, amo, infy, ModifyRequest(quantity=quantity))
        with pytest.raises(BrokerRejected, match="cancel it and place a new one"):
            await broker.modify_order(USER_ID, amo, infy, ModifyRequest(quantity=99))
        await broker.cancel_order(USER_ID, amo)
        assert server.orders[amo]["status"] == "CANCELLED"


def _with(request: OrderRequest, **extras: str) -> OrderRequest:
    import attrs

    return attrs.evolve(request, extras={**request.extras, **extras}, client_order_id="")


@pytest.mark.parametrize(
    "extras",
    [
        {"variety": "bo"},
        {"market_protection": "101"},
        {"iceberg_legs": "3"},
        {"variety": "iceberg", "iceberg_legs": "11", "iceberg_quantity": "1"},
        {"variety": "co"},
        {"colour": "red"},
    ],
)
async def test_bad_extras_are_refused_before_sending(
    tmp_path: Path, extras: dict[str, str]
) -> None:
    async with connected(tmp_path) as (server, broker):
        infy = await instrument(broker, "NSE:INFY")
        request = OrderRequest(USER_ID, infy.key, Side.BUY, 1, price=150005, extras=extras)
        with pytest.raises(BrokerRejected) as caught:
            await broker.place_order(USER_ID, infy, request)
        assert caught.value.code == "kite_bad_extra"
        assert not [r for r in server.requests if r[0] == "POST"]


@pytest.mark.parametrize(
    ("error_type", "status", "kind"),
    [
        ("TokenException", 403, AuthError),
        ("InputException", 400, ValidationError),
        ("OrderException", 400, BrokerRejected),
        ("MarginException", 400, BrokerRejected),
        ("HoldingException", 400, BrokerRejected),
        ("PermissionException", 403, AuthError),
        ("NetworkException", 503, NetworkError),
        ("DataException", 502, NetworkError),
        ("GeneralException", 500, NetworkError),
    ],
)
async def test_documented_errors_on_placement(
    tmp_path: Path, error_type: str, status: int, kind: type[HftError]
) -> None:
    async with connected(tmp_path) as (server, broker):
        infy = await instrument(broker, "NSE:INFY")
        server.script("POST", "/orders/regular", error(status, error_type, "refused"))
        request = OrderRequest(USER_ID, infy.key, Side.BUY, 1, price=150005)
        with pytest.raises(kind) as caught:
            await broker.place_order(USER_ID, infy, request)
        assert caught.value.status == status
        assert len(sent(server, "POST", "/orders/regular")) == 1  # never retried


async def test_a_429_is_retried_with_backoff(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker):
        infy = await instrument(broker, "NSE:INFY")
        too_many = error(429, "NetworkException", "Too many requests")
        server.script("POST", "/orders/regular", too_many, too_many)
        request = OrderRequest(USER_ID, infy.key, Side.BUY, 1, price=150005)
        order_id = await broker.place_order(USER_ID, infy, request)
        assert order_id in server.orders
        assert len(sent(server, "POST", "/orders/regular")) == 3
        server.script("GET", "/orders", *[too_many] * 5)
        with pytest.raises(RateLimited):
            await broker.orders(USER_ID)


@pytest.mark.parametrize(
    "response",
    [
        Response("not json", media_type="application/json"),
        Response("<html>oops</html>", media_type="text/html"),
        Response('{"status": "success"}', media_type="application/json"),
        Response('{"status": "success", "data": [{"order_id": 5}]}', media_type="application/json"),
    ],
)
async def test_malformed_bodies_are_validation_errors(tmp_path: Path, response: Response) -> None:
    async with connected(tmp_path) as (server, broker):
        server.script("GET", "/orders", response)
        with pytest.raises(ValidationError):
            await broker.orders(USER_ID)


async def test_a_bad_gateway_page_is_a_network_error(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker):
        bad = Response("<html>502</html>", status_code=502, media_type="text/html")
        server.script("GET", "/trades", *[bad] * 5)
        with pytest.raises(NetworkError) as caught:
            await broker.trades(USER_ID)
        assert caught.value.status == 502


async def test_client_side_limits_keep_the_server_from_answering_429(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker):
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for _ in range(15):
                nursery.start_soon(broker.orders, USER_ID)
        # 10 per second for reads: the last five waited for the window to move.
        assert trio.current_time() - started >= 0.9
        assert len(sent(server, "GET", "/orders")) == 15


async def test_quotes_are_batched_within_each_routes_limit(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker):
        infy = await instrument(broker, "NSE:INFY")
        fakes = [Instrument("NSE", f"S{i}", 1000 + i) for i in range(1100)]
        ticks = await broker.ltp([infy, *fakes])
        calls = [q for m, p, q, _, _ in server.requests if p == "/quote/ltp"]
        assert [len(q["i"]) for q in calls] == [1000, 101]
        assert ticks["NSE:INFY"].last_price == 157370
        assert ticks["NSE:INFY"].mode is StreamMode.LTP
        full = await broker.quotes([infy])
        assert full["NSE:INFY"].depth is not None
        assert full["NSE:INFY"].volume == 0
        ohlc = await broker.ohlc([infy])
        assert ohlc["NSE:INFY"].ohlc is not None


async def test_books_portfolio_margins_and_candles(tmp_path: Path) -> None:
    async with connected(tmp_path) as (server, broker):
        fut = await instrument(broker, "NFO:NIFTY26JANFUT")
        request = OrderRequest(USER_ID, fut.key, Side.BUY, 75, price=2399000)
        order_id = await broker.place_order(USER_ID, fut, request)
        await server.execute(order_id, 75, 2399000)
        (position,) = await broker.positions(USER_ID)
        assert (position.instrument, position.quantity, position.buy_value) == (
            fut.key,
            75,
            75 * 2399000,
        )
        history = await broker.order_history(order_id)
        assert history[0]["status"] == "PUT ORDER REQ RECEIVED"
        (holding,) = await broker.holdings(USER_ID)
        assert (holding.quantity, holding.t1_quantity, holding.last_price) == (10, 2, 157370)
        margins = await broker.margins()
        assert margins["equity"].net == 9972505
        assert (await broker.margins("commodity"))["commodity"].available["cash"] == 24543160
        infy = await instrument(broker, "NSE:INFY")
        start = dt.datetime(2026, 1, 21, 9, 15, tzinfo=dt.UTC)
        candles = await broker.historical(
            infy, "minute", start, start + dt.timedelta(hours=1), oi=True
        )
        assert [c.close for c in candles] == [157410, 157600]
        assert candles[0].open_interest == 0
        (query,) = [q for _, p, q, _, _ in server.requests if p.startswith("/instruments/hist")]
        assert query["from"] == ["2026-01-21 14:45:00"]  # IST
        assert query["oi"] == ["1"]
        with pytest.raises(ValidationError):
            await broker.historical(infy, "2minute", start, start)


async def test_the_instrument_master_is_cached_per_day(tmp_path: Path) -> None:
    async with FakeKite.running() as server:
        store_token(tmp_path, server.issue_access_token())
        for _ in range(2):
            broker = make_broker(server, tmp_path, exchanges=["NSE", "CDS"])
            await broker.connect()
            keys = {i.key for i in await broker.instruments()}
            await broker.close()
            assert keys == {"NSE:INFY", "NSE:TATAMOTORS", "NSE:NIFTY 50", "CDS:USDINR26JANFUT"}
        fetched = [p for _, p, _, _, _ in server.requests if p.startswith("/instruments")]
        assert fetched == [
            "/instruments/NSE",
            "/instruments/CDS",
        ]  # the second connect read the cache
        (cache,) = (tmp_path / "zerodha").glob("instruments-zerodha-*.csv")
        assert cache.read_text().startswith("instrument_token,")


async def test_cancelling_an_unknown_order_fails(tmp_path: Path) -> None:
    async with connected(tmp_path) as (_, broker):
        with pytest.raises(ValidationError):
            await broker.cancel_order(USER_ID, "999999999999999999")
        with pytest.raises(HftError):
            await broker.orders("XY9999")
