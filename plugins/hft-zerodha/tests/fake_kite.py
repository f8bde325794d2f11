"""A fake Kite Connect v3 server on loopback: REST routes with Kite's envelopes and a KiteTicker
WebSocket sending real binary frames, built from the facts in the protocol spec.

It checks what Kite checks (the version header, ``Authorization: token key:access``, the login
checksum, per-call quote limits, the published rate limits, answering 429 past them) and keeps
a small order book whose life the tests drive: :meth:`FakeKite.execute` fills, :meth:`trade`
moves a price, :meth:`kick` drops every ticker connection, :meth:`stall` silences them.
Scripted responses (:meth:`script`) replace the next answers of a route, for error tests.
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import itertools
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import kite_frames as kf

API_KEY = "testkey"
API_SECRET = "testsecret"
USER_ID = "AB1234"

CSV_HEADER = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,"
    "lot_size,instrument_type,segment,exchange"
)
#: (token, exchange_token, symbol, name, expiry, strike, tick, lot, type, segment, exchange,
#: scale, starting price in units)
LISTINGS = [
    (408065, 1594, "INFY", "INFOSYS", "", "0", "0.05", 1, "EQ", "NSE", "NSE", 2, 157370),
    (884737, 3456, "TATAMOTORS", "TATA MOTORS", "", "0", "0.05", 1, "EQ", "NSE", "NSE", 2, 39295),
    (13568258, 53001, "NIFTY26JANFUT", "NIFTY", "2026-01-27", "0", "0.05", 75, "FUT",
     "NFO-FUT", "NFO", 2, 2400000),
    (13568514, 53002, "NIFTY26JAN24000CE", "NIFTY", "2026-01-27", "24000", "0.05", 75, "CE",
     "NFO-OPT", "NFO", 2, 15000),
    (315907, 1234, "USDINR26JANFUT", "USDINR", "2026-01-27", "0", "0.0025", 1, "FUT",
     "CDS-FUT", "CDS", 7, 832500000),
    (1106182, 4321, "USDINR26JANFUT", "USDINR", "2026-01-27", "0", "0.0025", 1, "FUT",
     "BCD-FUT", "BCD", 4, 832500),
    (1280007, 5000, "GOLD26FEBFUT", "GOLD", "2026-02-05", "0", "1", 1, "FUT",
     "MCX-FUT", "MCX", 2, 7200000),
    (1536012, 6000, "GUARSEED26FEBFUT", "GUARSEED", "2026-02-20", "0", "0.5", 5, "FUT",
     "NCO-FUT", "NCO", 4, 52000000),
    (256265, 1001, "NIFTY 50", "NIFTY 50", "", "0", "0", 0, "EQ", "INDICES", "NSE", 2, 2400000),
]  # fmt: skip

RATE_LIMITS = {
    "quote": (1, 1.0),
    "historical": (3, 1.0),
    "orders": (10, 1.0),
    "changes": (10, 1.0),
    "other": (10, 1.0),
}
QUOTE_LIMITS = {"/quote": 500, "/quote/ohlc": 1000, "/quote/ltp": 1000}


def instruments_csv() -> str:
    rows = [CSV_HEADER]
    for tok, etok, sym, name, exp, strike, tick, lot, kind, seg, exch, _, _ in LISTINGS:
        rows.append(f"{tok},{etok},{sym},{name},0,{exp},{strike},{tick},{lot},{kind},{seg},{exch}")
    return "\n".join(rows) + "\n"


def _rupees(units: int, scale: int) -> float:
    return float(Decimal(units).scaleb(-scale))


def envelope(data: Any) -> Response:
    return Response(json.dumps({"status": "success", "data": data}), media_type="application/json")


def error(status: int, error_type: str, message: str) -> Response:
    body = {"status": "error", "message": message, "error_type": error_type, "data": None}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


@attrs.define(eq=False)
class Listing:
    token: int
    key: str
    symbol: str
    exchange: str
    scale: int
    tick: int
    lot: int
    last: int
    index: bool
    volume: int = 0


@attrs.define(eq=False)
class Conn:
    websocket: WebSocket
    send: trio.MemorySendChannel[bytes | str]
    receive: trio.MemoryReceiveChannel[bytes | str]
    subs: dict[int, str] = attrs.field(factory=dict)
    kicked: trio.Event = attrs.field(factory=trio.Event)


@attrs.define(eq=False)
class FakeKite:
    port: int = 0
    heartbeat_s: float = 0.2
    access_tokens: set[str] = attrs.field(factory=set)
    request_tokens: set[str] = attrs.field(factory=set)
    listings: dict[int, Listing] = attrs.field(factory=dict)
    orders: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    histories: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    trades: list[dict[str, Any]] = attrs.field(factory=list)
    conns: list[Conn] = attrs.field(factory=list)
    requests: list[tuple[str, str, dict[str, list[str]], dict[str, str], dict[str, str]]] = (
        attrs.field(factory=list)
    )
    scripts: dict[tuple[str, str], collections.deque[Response]] = attrs.field(factory=dict)
    stalled: bool = False
    refuse_ticker: bool = False
    reject_reason: str | None = None
    sent_frames: int = 0
    connections_opened: int = 0
    _ids: Any = attrs.field(factory=lambda: itertools.count(260121000000001))
    _trade_ids: Any = attrs.field(factory=lambda: itertools.count(90000001))
    _stamps: dict[str, collections.deque[float]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        for tok, _e, sym, _n, _x, _s, tick, lot, _k, seg, exch, scale, price in LISTINGS:
            self.listings[tok] = Listing(
                tok,
                f"{exch}:{sym}",
                sym,
                exch,
                scale,
                max(int(Decimal(tick).scaleb(scale)), 1),
                max(lot, 1),
                price,
                seg == "INDICES",
            )

    # Test controls ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def issue_access_token(self, token: str = "access0001") -> str:
        self.access_tokens.add(token)
        return token

    def listing(self, key: str) -> Listing:
        return next(item for item in self.listings.values() if item.key == key)

    def script(self, method: str, path: str, *responses: Response) -> None:
        """Answer the next calls of ``method path`` with ``responses``, in order."""
        self.scripts.setdefault((method, path), collections.deque()).extend(responses)

    def subscriptions(self) -> dict[int, str]:
        merged: dict[int, str] = {}
        for conn in self.conns:
            merged.update(conn.subs)
        return merged

    def trade(self, key: str, price: int) -> None:
        """``key`` trades at ``price``: a tick to every connection subscribed to it."""
        listing = self.listing(key)
        listing.last = price
        listing.volume += 1
        for conn in list(self.conns):
            mode = conn.subs.get(listing.token)
            if mode is not None:
                self._push(conn, kf.frame([self.packet(listing, mode)]))

    def push_raw(self, message: bytes | str) -> None:
        for conn in list(self.conns):
            self._push(conn, message)

    async def kick(self) -> None:
        """Drop every ticker connection (server side), as a network failure would."""
        for conn in list(self.conns):
            conn.kicked.set()
        with trio.fail_after(5):
            while self.conns:  # noqa: ASYNC110 - polled: connections end in their own tasks
                await trio.sleep(0.01)

    def stall(self, stalled: bool = True) -> None:
        """Keep connections open but send nothing at all, heartbeats included."""
        self.stalled = stalled

    async def execute(self, order_id: str, quantity: int, price: int) -> None:
        order = self.orders[order_id]
        listing = self.listing(f"{order['exchange']}:{order['tradingsymbol']}")
        order["filled_quantity"] += quantity
        order["pending_quantity"] = order["quantity"] - order["filled_quantity"]
        done = order["filled_quantity"]
        previous = Decimal(str(order["average_price"])) * (done - quantity)
        order["average_price"] = float(
            (previous + Decimal(price).scaleb(-listing.scale) * quantity) / done
        )
        self.trades.append(
            {
                "trade_id": str(next(self._trade_ids)),
                "order_id": order_id,
                "exchange_order_id": order["exchange_order_id"],
                "tradingsymbol": order["tradingsymbol"],
                "exchange": order["exchange"],
                "instrument_token": listing.token,
                "product": order["product"],
                "average_price": _rupees(price, listing.scale),
                "quantity": quantity,
                "fill_timestamp": "2026-01-21 10:15:00",
                "exchange_timestamp": "2026-01-21 10:15:00",
                "order_timestamp": "10:15:00",
                "transaction_type": order["transaction_type"],
            }
        )
        full = order["filled_quantity"] == order["quantity"]
        self._set(order, "COMPLETE" if full else "OPEN", postback="COMPLETE" if full else "UPDATE")

    def packet(self, listing: Listing, mode: str) -> bytes:
        tick = listing.tick
        last = listing.last
        packet = kf.Packet(
            token=listing.token,
            last_price=last,
            last_quantity=1,
            average_price=last,
            volume=listing.volume,
            buy_quantity=500,
            sell_quantity=700,
            open=last - 10 * tick,
            high=last + 20 * tick,
            low=last - 30 * tick,
            close=last - 5 * tick,
            last_trade_time=1768970700,
            exchange_time=1768970701,
            bids=[kf.Level(10 * (i + 1), last - (i + 1) * tick, i + 1) for i in range(5)],
            asks=[kf.Level(20 * (i + 1), last + (i + 1) * tick, i + 2) for i in range(5)],
            change=-36,
        )
        if listing.index:
            return {"ltp": kf.ltp, "quote": kf.index_quote, "full": kf.index_full}[mode](packet)
        return {"ltp": kf.ltp, "quote": kf.quote, "full": kf.full}[mode](packet)

    # Serving ----------------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **options: Any) -> AsyncIterator[FakeKite]:
        server = cls(**options)
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.5
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve(
                    server.app(),  # type: ignore[arg-type]
                    config,
                    shutdown_trigger=stop.wait,  # type: ignore[arg-type]
                    task_status=task_status,
                )
            )
            server.port = int(binds[0].rsplit(":", 1)[1])
            try:
                yield server
            finally:
                for conn in list(server.conns):
                    conn.kicked.set()
                stop.set()

    def app(self) -> Starlette:
        routes = [
            Route("/session/token", self._session, methods=["POST", "DELETE"]),
            Route("/user/profile", self._profile, methods=["GET"]),
            Route("/user/margins", self._margins, methods=["GET"]),
            Route("/user/margins/{segment}", self._margins, methods=["GET"]),
            Route("/orders", self._order_book, methods=["GET"]),
            Route("/orders/{variety}", self._place, methods=["POST"]),
            Route("/orders/{a}/{b}", self._order_two, methods=["GET", "PUT", "DELETE"]),
            Route("/orders/{order_id}", self._history, methods=["GET"]),
            Route("/trades", self._trade_book, methods=["GET"]),
            Route("/portfolio/positions", self._positions, methods=["GET"]),
            Route("/portfolio/holdings", self._holdings, methods=["GET"]),
            Route("/quote", self._quote, methods=["GET"]),
            Route("/quote/ohlc", self._quote, methods=["GET"]),
            Route("/quote/ltp", self._quote, methods=["GET"]),
            Route("/instruments", self._instruments, methods=["GET"]),
            Route("/instruments/historical/{token}/{interval}", self._historical, methods=["GET"]),
            Route("/instruments/{exchange}", self._instruments, methods=["GET"]),
            WebSocketRoute("/ws", self._ws),
        ]
        return Starlette(routes=routes)

    async def _gate(
        self, request: Request, family: str, *, authorised: bool = True
    ) -> Response | dict[str, str]:
        """Common checks; returns the form (POST/PUT) or an error response."""
        body = (await request.body()).decode()
        # Kite takes form bodies (parsed by hand: starlette's parser needs python-multipart).
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(body).items()}
        self.requests.append(
            (
                request.method,
                request.url.path,
                {k: request.query_params.getlist(k) for k in request.query_params},
                form,
                dict(request.headers),
            )
        )
        scripted = self.scripts.get((request.method, request.url.path))
        if scripted:
            return scripted.popleft()
        if request.headers.get("x-kite-version") != "3":
            return error(400, "InputException", "X-Kite-Version header missing")
        limit, window = RATE_LIMITS[family]
        now = trio.current_time()
        stamps = self._stamps.setdefault(family, collections.deque())
        while stamps and stamps[0] + window <= now:
            stamps.popleft()
        if len(stamps) >= limit:
            return error(429, "NetworkException", "Too many requests")
        stamps.append(now)
        if authorised:
            header = request.headers.get("authorization", "")
            key, _, token = header.removeprefix("token ").partition(":")
            if not header.startswith("token ") or key != API_KEY or token not in self.access_tokens:
                return error(403, "TokenException", "Incorrect `api_key` or `access_token`.")
        return form

    # REST routes ------------------------------------------------------------------------------

    async def _session(self, request: Request) -> Response:
        if request.method == "DELETE":
            gate = await self._gate(request, "other")
            if isinstance(gate, Response):
                return gate
            self.access_tokens.discard(request.query_params.get("access_token", ""))
            return envelope(True)
        gate = await self._gate(request, "other", authorised=False)
        if isinstance(gate, Response):
            return gate
        key, token, checksum = (
            gate.get("api_key"),
            gate.get("request_token", ""),
            gate.get("checksum"),
        )
        expected = hashlib.sha256(f"{API_KEY}{token}{API_SECRET}".encode()).hexdigest()
        if key != API_KEY or checksum != expected:
            return error(403, "TokenException", "Invalid `checksum`.")
        if token not in self.request_tokens:
            return error(403, "TokenException", "Token is invalid or has expired.")
        self.request_tokens.discard(token)
        access = self.issue_access_token(f"access{len(self.access_tokens) + 1:04d}")
        return envelope(
            {
                "user_id": USER_ID,
                "user_name": "Test User",
                "user_shortname": "Test",
                "email": "test@example.com",
                "user_type": "individual",
                "broker": "ZERODHA",
                "exchanges": ["NSE", "NFO"],
                "products": ["CNC", "MIS", "NRML"],
                "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
                "avatar_url": None,
                "api_key": API_KEY,
                "access_token": access,
                "public_token": "pub",
                "refresh_token": "",
                "enctoken": "enc",
                "silo": "",
                "login_time": "2026-01-21 08:30:00",
                "meta": {"demat_consent": "physical"},
            }
        )

    async def _profile(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        return envelope({"user_id": USER_ID, "user_name": "Test User", "broker": "ZERODHA"})

    async def _margins(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        segment = {
            "enabled": True,
            "net": 99725.05,
            "available": {"cash": 245431.6, "collateral": 0, "live_balance": 99725.05},
            "utilised": {"debits": 145706.55, "exposure": 38981.25, "span": 101989},
        }
        name = request.path_params.get("segment")
        return envelope(segment if name else {"equity": segment, "commodity": segment})

    async def _place(self, request: Request) -> Response:
        gate = await self._gate(request, "orders")
        if isinstance(gate, Response):
            return gate
        variety = request.path_params["variety"]
        if variety not in ("regular", "amo", "co", "iceberg", "auction"):
            return error(400, "InputException", f"Invalid variety {variety}")
        form = gate
        for field in ("tradingsymbol", "exchange", "transaction_type", "order_type", "quantity",
                      "product"):  # fmt: skip
            if not form.get(field):
                return error(400, "InputException", f"Missing {field}")
        listing = self.listing(f"{form['exchange']}:{form['tradingsymbol']}")
        order_id = str(next(self._ids))
        quantity = int(form["quantity"])
        price = Decimal(form.get("price", "0"))
        order: dict[str, Any] = {
            "account_id": USER_ID,
            "placed_by": USER_ID,
            "order_id": order_id,
            "exchange_order_id": None,
            "parent_order_id": None,
            "status": "PUT ORDER REQ RECEIVED",
            "status_message": None,
            "status_message_raw": None,
            "order_timestamp": "2026-01-21 10:00:00",
            "exchange_update_timestamp": None,
            "exchange_timestamp": None,
            "variety": variety,
            "modified": False,
            "exchange": form["exchange"],
            "tradingsymbol": form["tradingsymbol"],
            "instrument_token": listing.token,
            "order_type": form["order_type"],
            "transaction_type": form["transaction_type"],
            "validity": form.get("validity", "DAY"),
            "product": form["product"],
            "quantity": quantity,
            "disclosed_quantity": int(form.get("disclosed_quantity", "0")),
            "price": float(price),
            "trigger_price": float(Decimal(form.get("trigger_price", "0"))),
            "average_price": 0,
            "filled_quantity": 0,
            "pending_quantity": quantity,
            "cancelled_quantity": 0,
            "market_protection": int(form.get("market_protection", "0") or 0),
            "meta": {},
            "tag": form.get("tag"),
            "tags": [form["tag"]] if form.get("tag") else [],
            "guid": "guid" + order_id,
        }
        self.orders[order_id] = order
        self.histories[order_id] = [dict(order)]
        reason = self._refusal(listing, quantity, price)
        task = BackgroundTask(self._acknowledge, order, reason)
        return Response(
            json.dumps({"status": "success", "data": {"order_id": order_id}}),
            media_type="application/json",
            background=task,
        )

    def _refusal(self, listing: Listing, quantity: int, price: Decimal) -> str | None:
        if self.reject_reason is not None:
            reason, self.reject_reason = self.reject_reason, None
            return reason
        units = price.scaleb(listing.scale)
        if price and units % listing.tick:
            tick = Decimal(listing.tick).scaleb(-listing.scale)
            return f"Tick size for this script is {tick}. Kindly enter valid price."
        if quantity % listing.lot:
            return f"Quantity should be a multiple of lot size {listing.lot}."
        return None

    async def _acknowledge(self, order: dict[str, Any], reason: str | None) -> None:
        self._set(order, "VALIDATION PENDING", postback=None)
        if reason is not None:
            order["status_message"] = reason
            order["status_message_raw"] = "RMS:" + reason
            self._set(order, "REJECTED")
            return
        order["exchange_order_id"] = "1300000" + order["order_id"][-8:]
        self._set(order, "OPEN PENDING", postback=None)
        self._set(order, "OPEN")

    def _set(self, order: dict[str, Any], status: str, postback: str | None = "") -> None:
        order["status"] = status
        self.histories[order["order_id"]].append(dict(order))
        if postback is not None:
            message = dict(order, status=postback or status, user_id=USER_ID, app_id=1)
            message["unfilled_quantity"] = order["pending_quantity"]
            text = json.dumps({"type": "order", "data": message})
            for conn in list(self.conns):
                self._push(conn, text)

    async def _order_two(self, request: Request) -> Response:
        a, b = request.path_params["a"], request.path_params["b"]
        if request.method == "GET":
            if b != "trades":
                return error(404, "GeneralException", "Route not found")
            gate = await self._gate(request, "other")
            if isinstance(gate, Response):
                return gate
            return envelope([t for t in self.trades if t["order_id"] == a])
        gate = await self._gate(request, "changes")
        if isinstance(gate, Response):
            return gate
        order = self.orders.get(b)
        if order is None or order["variety"] != a:
            return error(400, "InputException", "Invalid order_id or variety.")
        if order["status"] in ("COMPLETE", "CANCELLED", "REJECTED"):
            return error(
                400, "OrderException", f"Order cannot be modified or cancelled: {order['status']}"
            )
        if request.method == "DELETE":
            order["cancelled_quantity"] = order["pending_quantity"]
            order["pending_quantity"] = 0
            order["status_message"] = "Cancelled by user"
            self._set(order, "CANCEL PENDING", postback=None)
            self._set(order, "CANCELLED")
        else:
            if "quantity" in gate:
                order["quantity"] = int(gate["quantity"])
                order["pending_quantity"] = order["quantity"] - order["filled_quantity"]
            if "price" in gate:
                order["price"] = float(Decimal(gate["price"]))
            order["modified"] = True
            self._set(order, "MODIFY VALIDATION PENDING", postback=None)
            self._set(order, "MODIFIED", postback=None)
            self._set(order, "OPEN", postback="UPDATE")
        return envelope({"order_id": b})

    async def _history(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        history = self.histories.get(request.path_params["order_id"])
        if history is None:
            return error(400, "InputException", "Couldn't find that `order_id`.")
        return envelope(history)

    async def _order_book(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        return envelope(list(self.orders.values()))

    async def _trade_book(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        return envelope(self.trades)

    async def _positions(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        book: dict[tuple[str, str, str], dict[str, Any]] = {}
        for trade in self.trades:
            key = (trade["exchange"], trade["tradingsymbol"], trade["product"])
            row = book.setdefault(
                key,
                {
                    "tradingsymbol": key[1],
                    "exchange": key[0],
                    "instrument_token": trade["instrument_token"],
                    "product": key[2],
                    "quantity": 0,
                    "overnight_quantity": 0,
                    "multiplier": 1,
                    "average_price": 0,
                    "last_price": 0,
                    "realised": 0,
                    "buy_quantity": 0,
                    "buy_value": 0,
                    "sell_quantity": 0,
                    "sell_value": 0,
                },
            )
            value = Decimal(str(trade["average_price"])) * trade["quantity"]
            side = "buy" if trade["transaction_type"] == "BUY" else "sell"
            row[f"{side}_quantity"] += trade["quantity"]
            row[f"{side}_value"] = float(Decimal(str(row[f"{side}_value"])) + value)
            row["quantity"] = row["buy_quantity"] - row["sell_quantity"]
        net = list(book.values())
        return envelope({"net": net, "day": net})

    async def _holdings(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        return envelope(
            [
                {
                    "tradingsymbol": "INFY",
                    "exchange": "NSE",
                    "instrument_token": 408065,
                    "isin": "INE009A01021",
                    "product": "CNC",
                    "quantity": 10,
                    "t1_quantity": 2,
                    "average_price": 1450.25,
                    "last_price": 1573.7,
                }
            ]
        )

    async def _quote(self, request: Request) -> Response:
        gate = await self._gate(request, "quote")
        if isinstance(gate, Response):
            return gate
        keys = request.query_params.getlist("i")
        route = request.url.path
        if len(keys) > QUOTE_LIMITS[route]:
            return error(400, "InputException", f"Too many instruments ({len(keys)})")
        data: dict[str, Any] = {}
        for key in keys:
            found = [item for item in self.listings.values() if item.key == key]
            if not found:
                continue
            item = found[0]
            last = _rupees(item.last, item.scale)
            entry: dict[str, Any] = {"instrument_token": item.token, "last_price": last}
            if route != "/quote/ltp":
                entry["ohlc"] = {"open": last, "high": last, "low": last, "close": last}
            if route == "/quote":
                level = {"price": last, "quantity": 5, "orders": 1}
                entry.update(
                    timestamp="2026-01-21 10:41:27",
                    last_trade_time="2026-01-21 10:41:27",
                    last_quantity=7,
                    buy_quantity=256443,
                    sell_quantity=363009,
                    volume=item.volume,
                    average_price=last,
                    oi=0,
                    net_change=0,
                    depth={"buy": [level] * 5, "sell": [level] * 5},
                )
            data[key] = entry
        return envelope(data)

    async def _instruments(self, request: Request) -> Response:
        gate = await self._gate(request, "other")
        if isinstance(gate, Response):
            return gate
        text = instruments_csv()
        exchange = request.path_params.get("exchange")
        if exchange:
            lines = text.splitlines()
            text = "\n".join([lines[0], *(ln for ln in lines[1:] if ln.endswith("," + exchange))])
            text += "\n"
        return Response(
            gzip.compress(text.encode()),
            media_type="text/csv",
            headers={"Content-Encoding": "gzip"},
        )

    async def _historical(self, request: Request) -> Response:
        gate = await self._gate(request, "historical")
        if isinstance(gate, Response):
            return gate
        candles = [
            ["2026-01-21T09:15:00+0530", 1573.7, 1575.0, 1570.05, 1574.1, 12034],
            ["2026-01-21T09:16:00+0530", 1574.1, 1576.95, 1573.0, 1576.0, 8021],
        ]
        if request.query_params.get("oi") == "1":
            candles = [[*row, 0] for row in candles]
        return envelope({"candles": candles})

    # Ticker -----------------------------------------------------------------------------------

    def _push(self, conn: Conn, message: bytes | str) -> None:
        if self.stalled:
            return
        with contextlib.suppress(
            trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError
        ):
            conn.send.send_nowait(message)

    async def _ws(self, websocket: WebSocket) -> None:
        params = websocket.query_params
        token = params.get("access_token")
        if (
            params.get("api_key") != API_KEY
            or token not in self.access_tokens
            or self.refuse_ticker
        ):
            await websocket.close(code=1008)  # before accept: the upgrade is refused with 403
            return
        await websocket.accept()
        send, receive = trio.open_memory_channel[bytes | str](10_000)
        conn = Conn(websocket, send, receive)
        self.conns.append(conn)
        self.connections_opened += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ws_reader, conn)
                nursery.start_soon(self._ws_writer, conn)
                nursery.start_soon(self._ws_heartbeat, conn)
                await conn.kicked.wait()
                nursery.cancel_scope.cancel()
        finally:
            self.conns.remove(conn)
        with contextlib.suppress(Exception):
            await websocket.close(code=1011)

    async def _ws_reader(self, conn: Conn) -> None:
        try:
            while True:
                text = await conn.websocket.receive_text()
                message = json.loads(text)
                action, value = message.get("a"), message.get("v")
                if action == "subscribe":
                    for token in value:
                        if token in self.listings:
                            conn.subs.setdefault(token, "quote")  # Kite's default mode
                elif action == "unsubscribe":
                    for token in value:
                        conn.subs.pop(token, None)
                elif action == "mode":
                    mode, tokens = value
                    for token in tokens:
                        if token in conn.subs:
                            conn.subs[token] = mode
        except (WebSocketDisconnect, RuntimeError):
            conn.kicked.set()

    async def _ws_writer(self, conn: Conn) -> None:
        try:
            async for message in conn.receive:
                if isinstance(message, bytes):
                    await conn.websocket.send_bytes(message)
                    self.sent_frames += 1
                else:
                    await conn.websocket.send_text(message)
        except (WebSocketDisconnect, RuntimeError):
            conn.kicked.set()

    async def _ws_heartbeat(self, conn: Conn) -> None:
        while True:
            await trio.sleep(self.heartbeat_s)
            self._push(conn, kf.HEARTBEAT)


async def wait_until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not check():  # noqa: ASYNC110 - a condition on state others change
            await trio.sleep(0.01)
