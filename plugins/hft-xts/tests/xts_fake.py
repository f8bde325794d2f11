"""A fake XTS install on loopback: both REST families and both socket.io endpoints.

It speaks the wire protocol from the spec (envelopes, routes, Engine.IO v3 framing) with the
quirks real installs show: numbers as strings with commas, ``listQuotes`` entries as JSON text,
``ExchangeInstrumentId`` spelt both ways, ``LastTradedQunatity``, ``dataReponse``, an ``e-`` code
on a good market-data login. It is a raw ASGI app served by hypercorn's trio worker.

Logins: a Pro user ``PRO1`` (interactive key ``pro-key``/``pro-secret``), a dealer ``DEAL1``
(``dealer-key``/``dealer-secret``) serving clients ``CL1`` and ``CL2``; market data
``md-key``/``md-secret``. Test controls: :meth:`execute`, :meth:`reject_next`, :meth:`trade`,
:meth:`convert`, :meth:`kick`, :meth:`invalidate_tokens`, ``silent`` (stop answering pings).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import itertools
import json
import math
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Realistic master rows of every kind (field layouts of spec 5.3).
MASTER_LINES = [
    "NSECM|2885|8|RELIANCE|RELIANCE-EQ|EQ|RELIANCE-EQ|1100100002885|1609.4|1316.8|100001|0.05|1|1"
    "|RELIANCE|INE002A01018|1|1|RELIANCE INDUSTRIES LTD|0|-1|-1",
    "NSECM|1594|8|INFY|INFY-BE|BE|INFY-BE|1100100001594|2000|1500|100001|0.05|1|1|INFY|INE009A01021"
    "|1|1|INFOSYS LIMITED|0|-1|-1",
    "BSECM|532497|8|RADICO|RADICO|A|RADICO-A|1100100532497|3795.45|2530.35|0|0.05|1|1|RADICO"
    "|INE944F01028|1|1|RADICO KHAITAN LTD|100|-1|-1",
    "NSEFO|35001|1|NIFTY|NIFTY26JANFUT|FUTIDX|NIFTY-FUTIDX|2603500135001|27000|22000|1800.5|0.05"
    "|75|1|-1|NIFTY|2026-01-27T14:30:00|NIFTY 27JAN2026|1|1|NIFTY26JANFUT",
    "NSEFO|119476|2|NATIONALUM|NATIONALUM26JAN335PE|OPTSTK|NATIONALUM-OPTSTK|2602700119476|76.45"
    "|36.45|112501|0.05|3750|1|1100100006364|NATIONALUM|2026-01-27T14:30:00|335|4"
    "|NATIONALUM 27JAN2026 PE 335|1|1|NATIONALUM26JAN335PE",
    "NSEFO|12778737|4|GAIL|GAIL25DEC26JANFUT|FUTSTK|GAIL-FUTSTK|2100112778737|4.2|-4.2|126001|0.01"
    "|3150|1|-1||2025-12-30T14:30:00|GAIL 30DEC27JAN SPD|1|1|GAIL25DEC26JANFUT",
    "BSEFO|1132771|2|BANKEX|BANKEX25DEC72000CE|IO|BANKEX-IO|12535801132771|20.05|0.05|900|0.05|30"
    "|1|-1|BANKEX|2025-12-24T00:00:00|72000|3|BANKEX 24DEC2025 CE 72000|1|1|BANKEX25DEC72000CE",
    "BSEFO|1166387|1|BANKEX|BANKEX26FEBFUT|IF|BANKEX-IF|12605701166387|73344.5|60009.15|600|0.05"
    "|30|1|-1|BANKEX|2026-02-26T00:00:00|BANKEX 26FEB2026|1|1|BANKEX26FEBFUT",
]
#: (segment name, id) → (segment code, tick, lot, first price) of what the fake trades.
LISTINGS = {
    ("NSECM", 2885): (1, Decimal("0.05"), 1, Decimal("1300.00")),
    ("NSECM", 1594): (1, Decimal("0.05"), 1, Decimal("1800.00")),
    ("NSEFO", 35001): (2, Decimal("0.05"), 75, Decimal("24000.00")),
}
INTERACTIVE_USERS = {
    ("pro-key", "pro-secret"): ("PRO1", True, ["PRO1"]),
    ("dealer-key", "dealer-secret"): ("DEAL1", False, ["CL1", "CL2"]),
}
MD_KEYS = {("md-key", "md-secret"): "MDUSER"}
_EPOCH_1980 = dt.datetime(1980, 1, 1)
_INDEX = {1: ["NIFTY 50_26000", "NIFTY BANK_26001"], 11: ["SENSEX_26065"]}


def jwt(user: str, lifetime_s: int = 86_400) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(dt.datetime.now(dt.UTC).timestamp())
    return ".".join(
        [part({"alg": "HS256"}), part({"userID": user, "iat": now, "exp": now + lifetime_s}), "sig"]
    )


def envelope(result: Any = "", code: str = "s-orders-0001", description: str = "ok") -> Any:
    return {"type": "success", "code": code, "description": description, "result": result}


def error(code: str, description: str, result: Any = None) -> Any:
    body: dict[str, Any] = {"type": "error", "code": code, "description": description}
    if result is not None:
        body["result"] = result
    return body


class Reply(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


def money(value: Decimal) -> str:
    """How XTS writes money in books: a string with thousands separators."""
    return f"{value:,.2f}"


def xts_now() -> tuple[str, str]:
    now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=5, minutes=30)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f"), now.strftime("%d-%m-%Y %H:%M:%S")


class Socket:
    def __init__(self, kind: str, user: str, token: str, mode: str) -> None:
        self.kind, self.user, self.token, self.mode = kind, user, token, mode
        self.outbox, self.inbox = trio.open_memory_channel[str | None](math.inf)


class FakeXts:
    def __init__(self, *, ping_interval_ms: int = 25_000, ping_timeout_ms: int = 60_000) -> None:
        self.url = ""
        self.ping_interval_ms, self.ping_timeout_ms = ping_interval_ms, ping_timeout_ms
        self.tokens: dict[str, tuple[str, str]] = {}  # token → (family, user)
        self.sockets: list[Socket] = []
        self.orders: dict[int, dict[str, Any]] = {}
        self.history: dict[int, list[dict[str, Any]]] = {}
        self.trades: list[dict[str, Any]] = []
        self.subscriptions: dict[str, dict[int, set[tuple[int, int]]]] = {}  # md user → code →
        self.prices = {(seg, tok): v[3] for (name, tok), v in LISTINGS.items() for seg in [v[0]]}
        self.volume: dict[tuple[int, int], int] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.pings = 0
        self.client_pongs = 0
        self.silent = False
        self.host_lookup = False
        self.logins = 0
        self.logouts: list[str] = []
        self._ids = itertools.count(1_000_001)
        self._exec_ids = itertools.count(5_000_001)
        self._reject: str | None = None
        self._seq = itertools.count(1)

    # Controls ---------------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **options: Any) -> AsyncIterator[FakeXts]:
        server = cls(**options)
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.1
        stop = trio.Event()
        async with trio.open_nursery() as nursery:

            async def run(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                await serve(server, config, shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]

            binds = await nursery.start(run)
            server.url = binds[0]
            try:
                yield server
            finally:
                await server.kick()
                stop.set()

    def reject_next(self, reason: str) -> None:
        self._reject = reason

    def invalidate_tokens(self) -> None:
        self.tokens.clear()

    async def kick(self) -> None:
        for socket in list(self.sockets):
            socket.outbox.send_nowait(None)

    def ping_clients(self) -> None:
        """Ping every socket the Engine.IO v4 way (a v3 server never does; clients answer)."""
        for socket in self.sockets:
            socket.outbox.send_nowait("2")

    def push(self, kind: str, name: str, data: Any) -> None:
        """Send an event to every socket of ``kind`` (``md`` or ``interactive``)."""
        for socket in self.sockets:
            if socket.kind == kind:
                socket.outbox.send_nowait("42" + json.dumps([name, data]))

    def last_price(self, segment: int, token: int) -> Decimal:
        return self.prices[(segment, token)]

    async def trade(self, segment: int, token: int, price: Decimal) -> None:
        self.prices[(segment, token)] = price
        self.volume[(segment, token)] = self.volume.get((segment, token), 0) + 10
        for socket in self.sockets:
            if socket.kind != "md":
                continue
            for code, instruments in self.subscriptions.get(socket.user, {}).items():
                if (segment, token) in instruments:
                    if socket.mode == "Partial" and code in (1501, 1502, 1512):
                        name, data = f"{code}-json-partial", self.partial(code, segment, token)
                    else:
                        name, data = (
                            f"{code}-json-full",
                            json.dumps(self.quote(code, segment, token)),
                        )
                    socket.outbox.send_nowait("42" + json.dumps([name, data]))

    async def execute(self, order_id: int, quantity: int, price: Decimal) -> None:
        order = self.orders[order_id]
        cumulative = order["CumulativeQuantity"] + quantity
        assert cumulative <= order["OrderQuantity"], "fake: overfill"
        value = Decimal(order["_value"]) + price * quantity
        order["_value"] = str(value)
        average = value / cumulative
        order.update(
            CumulativeQuantity=cumulative,
            LeavesQuantity=order["OrderQuantity"] - cumulative,
            OrderAverageTradedPrice=money(average),
            OrderAverageTradedPriceAPI=float(average),
        )
        trade = dict(order)
        trade.update(
            ExecutionID=str(next(self._exec_ids)),
            LastTradedPrice=float(price),
            LastTradedQuantity=quantity,
            MessageCode=9005,
        )
        trade.pop("_value", None)
        self.trades.append(trade)
        self._emit_interactive(order["ClientID"], "trade", trade)
        status = "Filled" if cumulative == order["OrderQuantity"] else "PartiallyFilled"
        self._set_status(order, status)

    def convert(
        self,
        client: str,
        token: int,
        source: str,
        target: str,
        quantity: int,
        *,
        side: str = "Buy",
        success: bool = True,
        key: str = "",
        segment: str = "NSECM",
    ) -> None:
        """Push a ``tradeConversion`` event (spec 6.6) as a real install writes it: numbers and
        flags as text."""
        key = key or f"CONV{next(self._exec_ids)}"
        text, _ = xts_now()
        row = {
            "LoginID": client,
            "ClientID": client,
            "UniqueKey": key,
            "Success": "true" if success else "false",
            "ErrorMessage": "" if success else "RMS: conversion not allowed",
            "OriginalProduct": source,
            "TargetProduct": target,
            "OriginalQty": str(quantity),
            "TargetQty": str(quantity),
            "EntityType": "Client",
            "ExchangeSegment": segment,
            "ExchangeInstrumentId": str(token),
            "TargetEntityId": client,
            "NetValue": "0",
            "Status": "Success" if success else "Rejected",
            "RejectionReason": "" if success else "RMS: conversion not allowed",
            "RejectedBy": "" if success else "RMS",
            "Price": "0",
            "NOWTimeStamp": text,
            "OrderSide": side,
            "IsProOrder": "false",
        }
        self._emit_interactive(client, "tradeConversion", row)

    # Market-data payloads ---------------------------------------------------------------------

    def _time(self) -> int:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=5, minutes=30)
        return int((now - _EPOCH_1980).total_seconds())

    def _touchline(self, segment: int, token: int) -> dict[str, Any]:
        price = self.prices[(segment, token)]
        tick = LISTINGS_BY_CODE[(segment, token)][1]
        return {
            "BidInfo": {
                "Size": 50,
                "Price": price - tick,
                "TotalOrders": 2,
                "BuyBackMarketMaker": 0,
            },
            "AskInfo": {
                "Size": 40,
                "Price": price + tick,
                "TotalOrders": 1,
                "BuyBackMarketMaker": 0,
            },
            "LastTradedPrice": price,
            "LastTradedQunatity": 10,
            "TotalBuyQuantity": 1000,
            "TotalSellQuantity": 900,
            "TotalTradedQuantity": self.volume.get((segment, token), 0),
            "AverageTradedPrice": price,
            "LastTradedTime": self._time(),
            "LastUpdateTime": self._time(),
            "PercentChange": 0.5,
            "Open": price,
            "High": price + tick * 10,
            "Low": price - tick * 10,
            "Close": price,
            "TotalValueTraded": None,
            "BuyBackTotalBuy": 0,
            "BuyBackTotalSell": 0,
        }

    def quote(self, code: int, segment: int, token: int) -> dict[str, Any]:
        head = {
            "MessageCode": code,
            "MessageVersion": 4,
            "ApplicationType": 0,
            "TokenID": 0,
            "ExchangeSegment": segment,
            "ExchangeInstrumentID": token,
            "ExchangeTimeStamp": self._time(),
            "BookType": 1,
            "XMarketType": 1,
            "SequenceNumber": next(self._seq),
        }
        touch = self._touchline(segment, token)
        if code == 1512:
            keys = (
                "LastTradedPrice",
                "LastTradedQunatity",
                "LastUpdateTime",
                "PercentChange",
                "Close",
            )
            return _plain({**head, **{k: touch[k] for k in keys}})
        if code == 1501:
            return _plain({**head, "Touchline": touch})
        if code == 1510:
            return _plain({**head, "XTSMarketType": 1, "OpenInterest": 12345})
        if code == 1505:
            # BarTime: the IST wall clock written as Unix time, like OHLC history.
            bar = {
                "BarTime": 1737365400,
                "BarVolume": 500,
                "Open": touch["Low"],
                "High": touch["High"],
                "Low": touch["Low"],
                "Close": touch["LastTradedPrice"],
                "OpenInterest": 0,
                "SumOfQtyInToPrice": 0,
            }
            return _plain(
                {
                    k: head[k]
                    for k in (
                        "MessageCode",
                        "MessageVersion",
                        "ApplicationType",
                        "TokenID",
                        "ExchangeSegment",
                        "ExchangeInstrumentID",
                    )
                }
                | bar
            )
        tick = LISTINGS_BY_CODE[(segment, token)][1]
        price = self.prices[(segment, token)]
        bids = [
            {
                "Size": 10 * (i + 1),
                "Price": price - tick * (i + 1),
                "TotalOrders": 1,
                "BuyBackMarketMaker": 0,
            }
            for i in range(5)
        ]
        asks = [
            {
                "Size": 10 * (i + 1),
                "Price": price + tick * (i + 1),
                "TotalOrders": 1,
                "BuyBackMarketMaker": 0,
            }
            for i in range(5)
        ]
        return _plain({**head, "Bids": bids, "Asks": asks, "Touchline": touch})

    def partial(self, code: int, segment: int, token: int) -> str:
        touch = self._touchline(segment, token)
        pairs = [f"t:{segment}_{token}", f"ltp:{touch['LastTradedPrice']}", "ltq:10"]
        if code in (1501, 1502):
            bid, ask = touch["BidInfo"], touch["AskInfo"]
            pairs += [
                f"v:{touch['TotalTradedQuantity']}",
                f"lut:{touch['LastUpdateTime']}",
                f"bi:0|{bid['Size']}|{bid['Price']}|{bid['TotalOrders']}",
                f"ai:0|{ask['Size']}|{ask['Price']}|{ask['TotalOrders']}",
            ]
        return ",".join(pairs)

    # Orders -----------------------------------------------------------------------------------

    def _emit_interactive(self, client: str, event: str, row: dict[str, Any]) -> None:
        payload = json.dumps(
            {k: v for k, v in row.items() if not k.startswith("_")}, default=_default
        )
        for socket in self.sockets:
            if socket.kind == "interactive" and (
                socket.user == client or (socket.user == "DEAL1" and client.startswith("CL"))
            ):
                socket.outbox.send_nowait("42" + json.dumps([event, payload]))

    def _set_status(self, order: dict[str, Any], status: str, reason: str = "") -> None:
        text, api = xts_now()
        order.update(OrderStatus=status, LastUpdateDateTime=text, LastUpdateDateTimeAPI=api)
        if reason:
            order["CancelRejectReason"] = reason
        snapshot = {k: v for k, v in order.items() if not k.startswith("_")}
        self.history[order["AppOrderID"]].append(snapshot)
        self._emit_interactive(order["ClientID"], "order", snapshot)

    def _client(self, user: str, given: Any) -> str:
        if user == "DEAL1":
            if given not in ("CL1", "CL2"):
                raise Reply(
                    400,
                    error(
                        "e-user-0005",
                        "Bad Request",
                        {
                            "errors": [
                                {
                                    "field": "clientID",
                                    "messages": "clientID is required for a dealer",
                                }
                            ]
                        },
                    ),
                )
            return str(given)
        if given not in (None, "", user):
            raise Reply(400, error("e-user-0005", "Invalid clientID"))
        return user

    def place(self, user: str, body: dict[str, Any]) -> Any:
        client = self._client(user, body.get("clientID"))
        for key in (
            "exchangeSegment",
            "exchangeInstrumentID",
            "productType",
            "orderType",
            "orderSide",
            "timeInForce",
            "orderQuantity",
            "limitPrice",
            "stopPrice",
        ):
            if key not in body:
                raise Reply(
                    400,
                    error(
                        "e-orders-0001",
                        "Bad Request",
                        {"errors": [{"field": key, "messages": f"{key} is required"}]},
                    ),
                )
        order_id = next(self._ids)
        text, api = xts_now()
        order = {
            "LoginID": user,
            "ClientID": client,
            "AppOrderID": order_id,
            "OrderReferenceID": "",
            "GeneratedBy": "TWSAPI",
            "ExchangeOrderID": "",
            "OrderCategoryType": "NORMAL",
            "ExchangeSegment": body["exchangeSegment"],
            "ExchangeInstrumentID": body["exchangeInstrumentID"],
            "OrderSide": body["orderSide"].capitalize(),
            "OrderSideAPI": body["orderSide"],
            "OrderType": {
                "LIMIT": "Limit",
                "MARKET": "Market",
                "STOPLIMIT": "StopLimit",
                "STOPMARKET": "StopMarket",
            }[body["orderType"]],
            "ProductType": body["productType"],
            "TimeInForce": body["timeInForce"],
            "OrderPrice": body["limitPrice"],
            "OrderQuantity": body["orderQuantity"],
            "OrderStopPrice": body["stopPrice"],
            "OrderStatus": "PendingNew",
            "OrderAverageTradedPrice": "",
            "OrderAverageTradedPriceAPI": "NaN",
            "LeavesQuantity": body["orderQuantity"],
            "CumulativeQuantity": 0,
            "OrderDisclosedQuantity": body.get("disclosedQuantity", 0),
            "OrderGeneratedDateTime": text,
            "OrderGeneratedDateTimeAPI": api,
            "ExchangeTransactTime": text,
            "LastUpdateDateTime": text,
            "OrderExpiryDate": "1980-01-01T00:00:00",
            "OrderExpiryDateAPI": "01-01-1980 00:00:00",
            "CancelRejectReason": "",
            "OrderUniqueIdentifier": body.get("orderUniqueIdentifier", ""),
            "OrderLegStatus": "SingleOrderLeg",
            "MessageCode": 9004,
            "MessageVersion": 4,
            "TokenID": 0,
            "ApplicationType": 146,
            "SequenceNumber": -1,
            "_value": "0",
        }
        self.orders[order_id] = order
        self.history[order_id] = []
        self._set_status(order, "PendingNew")
        if self._reject is not None:
            reason, self._reject = self._reject, None
            self._set_status(order, "Rejected", reason)
        else:
            order["ExchangeOrderID"] = str(1_100_000_000 + order_id)
            self._set_status(order, "New")
        return envelope(
            {
                "AppOrderID": order_id,
                "OrderUniqueIdentifier": order["OrderUniqueIdentifier"],
                "ClientID": client,
            },
            "s-orders-0001",
            "Request sent",
        )

    def _own(self, user: str, order_id: Any, client: Any) -> dict[str, Any]:
        client_id = self._client(user, client)
        try:
            order = self.orders[int(order_id)]
        except (KeyError, ValueError, TypeError):
            raise Reply(400, error("e-orders-0004", "Order Not Found")) from None
        if order["ClientID"] != client_id:
            raise Reply(400, error("e-orders-0004", "Order Not Found"))
        return order

    def modify(self, user: str, body: dict[str, Any]) -> Any:
        order = self._own(user, body.get("appOrderID"), body.get("clientID"))
        if order["OrderStatus"] in ("Filled", "Cancelled", "Rejected"):
            raise Reply(400, error("e-orders-0009", "Order is not open"))
        self._set_status(order, "PendingReplace")
        quantity = int(body["modifiedOrderQuantity"])
        order.update(
            OrderQuantity=quantity,
            OrderPrice=body["modifiedLimitPrice"],
            OrderStopPrice=body["modifiedStopPrice"],
            LeavesQuantity=quantity - order["CumulativeQuantity"],
        )
        self._set_status(order, "Replaced")
        return envelope({"AppOrderID": order["AppOrderID"], "ClientID": order["ClientID"]})

    def cancel(self, user: str, query: dict[str, Any]) -> Any:
        order = self._own(user, query.get("appOrderID"), query.get("clientID"))
        if order["OrderStatus"] in ("Filled", "Cancelled", "Rejected"):
            raise Reply(400, error("e-orders-0009", "Order is not open"))
        self._set_status(order, "PendingCancel")
        order["LeavesQuantity"] = 0
        self._set_status(order, "Cancelled")
        return envelope({"AppOrderID": order["AppOrderID"], "ClientID": order["ClientID"]})

    def positions(self, client: str) -> list[dict[str, Any]]:
        rows: dict[tuple[str, int, str], dict[str, Any]] = {}
        for trade in self.trades:
            if trade["ClientID"] != client:
                continue
            key = (trade["ExchangeSegment"], trade["ExchangeInstrumentID"], trade["ProductType"])
            row = rows.setdefault(
                key, {"buy": 0, "sell": 0, "buy_amount": Decimal(0), "sell_amount": Decimal(0)}
            )
            amount = Decimal(str(trade["LastTradedPrice"])) * trade["LastTradedQuantity"]
            side = "buy" if trade["OrderSideAPI"] == "BUY" else "sell"
            row[side] += trade["LastTradedQuantity"]
            row[f"{side}_amount"] += amount
        result = []
        for (segment, token, product), row in rows.items():
            buy_avg = row["buy_amount"] / row["buy"] if row["buy"] else Decimal("NaN")
            result.append(
                {
                    "AccountID": client,
                    "TradingSymbol": "",
                    "ExchangeSegment": segment,
                    "ExchangeInstrumentId": str(token),
                    "ProductType": product,
                    "Marketlot": "1",
                    "Multiplier": "1",
                    "BuyAveragePrice": "NaN" if buy_avg.is_nan() else money(buy_avg),
                    "SellAveragePrice": money(row["sell_amount"] / row["sell"])
                    if row["sell"]
                    else "NaN",
                    "OpenBuyQuantity": str(row["buy"]),
                    "OpenSellQuantity": str(row["sell"]),
                    "Quantity": str(row["buy"] - row["sell"]),
                    "BuyAmount": money(row["buy_amount"]),
                    "SellAmount": money(row["sell_amount"]),
                    "NetAmount": money(row["sell_amount"] - row["buy_amount"]),
                    "UnrealizedMTM": "0.00",
                    "RealizedMTM": "0.00",
                    "MTM": "0.00",
                    "statisticsLevel": "ParentLevel",
                    "MessageCode": 9002,
                }
            )
        return result

    # HTTP -------------------------------------------------------------------------------------

    def _user(self, headers: dict[str, str], family: str) -> str:
        found = self.tokens.get(headers.get("authorization", ""))
        if found is None or found[0] != family:
            raise Reply(400, error("e-session-0007", "Invalid Token"))
        return found[1]

    def route(
        self, method: str, path: str, query: dict[str, Any], body: Any, headers: dict[str, str]
    ) -> Any:
        self.requests.append((method, path, body if isinstance(body, dict) and body else query))
        if path == "/hostlookup" and method == "POST":
            if not self.host_lookup or body.get("accesspassword") != "2026HostLookUpAccess":
                raise Reply(400, error("e-hostlookup-0002", "Invalid access password"))
            # A good lookup that does not say "success" (spec 1.2).
            return {
                "type": "",
                "code": "hostlookup",
                "description": "Hostlookup successful",
                "result": {
                    "uniqueKey": "UK123",
                    "connectionString": f"{self.url}/1interactive",
                    "timeStamp": "",
                    "remarks": "",
                },
            }
        if path.startswith("/1interactive/"):
            if not self.host_lookup:
                raise Reply(404, "<html>404</html>")
            path = path.replace("/1interactive", "/interactive", 1)
            if (
                path == "/interactive/user/session"
                and method == "POST"
                and body.get("uniqueKey") != "UK123"
            ):
                raise Reply(400, error("e-user-0003", "Invalid uniqueKey"))
        if path == "/interactive/user/session":
            if method == "POST":
                found = INTERACTIVE_USERS.get((body.get("appKey"), body.get("secretKey")))
                if found is None:
                    raise Reply(400, error("e-user-0002", "Invalid appKey or secretKey"))
                user, investor, clients = found
                token = jwt(user)
                self.tokens[token] = ("interactive", user)
                self.logins += 1
                enums = {
                    "socketEvent": ["joined", "error", "order", "trade", "logout", "position"],
                    "exchangeInfo": {
                        "NSECM": {
                            "productType": ["CNC", "MIS", "NRML"],
                            "orderType": ["Limit", "Market", "StopLimit", "StopMarket"],
                            "timeInForce": ["DAY", "IOC"],
                        },
                        "NSEFO": {
                            "productType": ["MIS", "NRML"],
                            "orderType": ["Limit", "Market"],
                            "timeInForce": ["DAY", "IOC"],
                        },
                    },
                }
                return envelope(
                    {
                        "token": token,
                        "userID": user,
                        "isInvestorClient": investor,
                        "clientCodes": clients,
                        "exchangeSegmentArray": ["NSECM", "NSEFO"],
                        "isOneTouchUser": False,
                        "enums": enums,
                    },
                    "s-user-0001",
                    "Valid User.",
                )
            if method == "DELETE":
                self.logouts.append(self._user(headers, "interactive"))
                return envelope("", "s-user-0001", "successfully logout from all API.")
        if path == "/apimarketdata/auth/login" and method == "POST":
            user = MD_KEYS.get((body.get("appKey"), body.get("secretKey")))
            if user is None:
                raise Reply(400, error("e-response-0004", "Data Not found."))
            token = jwt(user)
            self.tokens[token] = ("md", user)
            # A real install answers a good login with an e- code (spec 2.2).
            return envelope(
                {
                    "token": token,
                    "userID": user,
                    "appVersion": "5.0.15",
                    "application_expiry_date": "31-12-2099",
                },
                "e-response-0010",
                "Provided Valid Credentials",
            )
        if path.startswith("/apimarketdata/"):
            return self.marketdata(
                method, path.removeprefix("/apimarketdata"), query, body, self._user(headers, "md")
            )
        if path.startswith("/interactive/"):
            return self.interactive(
                method,
                path.removeprefix("/interactive"),
                query,
                body,
                self._user(headers, "interactive"),
            )
        raise Reply(404, "<html><body>404 Not Found</body></html>")

    def interactive(
        self, method: str, path: str, query: dict[str, Any], body: Any, user: str
    ) -> Any:
        dealer = user == "DEAL1"
        if (method, path) == ("POST", "/orders"):
            return self.place(user, body)
        if (method, path) == ("PUT", "/orders"):
            return self.modify(user, body)
        if (method, path) == ("DELETE", "/orders"):
            return self.cancel(user, query)
        if (method, path) == ("GET", "/orders"):
            if "appOrderID" in query:
                order = self._own(user, query["appOrderID"], query.get("clientID"))
                return envelope(self.history[order["AppOrderID"]], "s-orders-0001")
            if dealer:
                raise Reply(400, error("e-orders-0006", "Use the dealer order book"))
            return envelope(
                [_public(o) for o in self.orders.values() if o["ClientID"] == user], "s-user-0001"
            )
        if (method, path) == ("GET", "/orders/dealerorderbook"):
            client = self._client(user, query.get("clientID")) if dealer else _refuse()
            return envelope([_public(o) for o in self.orders.values() if o["ClientID"] == client])
        if (method, path) == ("GET", "/orders/trades"):
            if dealer:
                raise Reply(400, error("e-orders-0006", "Use the dealer trade book"))
            return envelope([t for t in self.trades if t["ClientID"] == user])
        if (method, path) == ("GET", "/orders/dealertradebook"):
            client = self._client(user, query.get("clientID")) if dealer else _refuse()
            return envelope([t for t in self.trades if t["ClientID"] == client])
        if (method, path) in (
            ("GET", "/portfolio/positions"),
            ("GET", "/portfolio/dealerpositions"),
        ):
            if dealer != path.endswith("dealerpositions") or query.get("dayOrNet") not in (
                "DayWise",
                "NetWise",
            ):
                raise Reply(
                    400,
                    error(
                        "e-portfolio-0002",
                        "Bad Request",
                        {"errors": [{"field": "dayOrNet", "messages": "invalid"}]},
                    ),
                )
            client = self._client(user, query.get("clientID"))
            return envelope({"positionList": self.positions(client)}, "s-portfolio-0001")
        if (method, path) == ("POST", "/orders/cancelall"):
            client = self._client(user, body.get("clientID"))
            for order in list(self.orders.values()):
                if (
                    order["ClientID"] == client
                    and order["OrderStatus"] in ("New", "Replaced", "PartiallyFilled")
                    and order["ExchangeInstrumentID"] == body["exchangeInstrumentID"]
                ):
                    self._set_status(order, "Cancelled")
            return envelope("", "s-cancelall-0001", "Request sent")
        if (method, path) == ("GET", "/portfolio/holdings"):
            client = self._client(user, query.get("clientID"))
            holding = {
                "ISIN": "INE002A01018",
                "RMSHoldingId": 1,
                "ClientId": client,
                "ExchangeNSEInstrumentId": 2885,
                "ExchangeBSEInstrumentId": 500325,
                "HoldingType": 1,
                "HoldingQuantity": "10",
                "UsedQuantity": 0,
                "BuyAvgPrice": "1,250.50",
                "IsBuyAvgPriceProvided": True,
            }
            return envelope(
                {
                    "ClientId": client,
                    "RMSHoldingList": [{"Holdings": {"INE002A01018": holding}}],
                    "CollateralHoldingList": [],
                },
                "s-portfolio-0013",
            )
        if (method, path) == ("GET", "/user/balance"):
            client = self._client(user, query.get("clientID"))
            limits = {
                "RMSSubLimits": {
                    "cashAvailable": "1,00,000.50",
                    "collateral": "0",
                    "marginUtilized": "NaN",
                    "netMarginAvailable": "99,000.25",
                    "MTM": "-12.5",
                },
                "AccountID": client,
            }
            return envelope(
                {"BalanceList": [{"limitHeader": "ALL|ALL|ALL", "limitObject": limits}]},
                "s-user-0002",
            )
        if (method, path) == ("POST", "/orders/bracket"):
            if "squarOff" not in body:
                raise Reply(
                    400,
                    error(
                        "e-bracketorder-0001",
                        "Bad Request",
                        {"errors": [{"field": "squarOff", "messages": "required"}]},
                    ),
                )
            return self.place(
                user, {**body, "productType": "BO", "timeInForce": "DAY", "stopPrice": 0}
            )
        if (method, path) == ("PUT", "/orders/bracket"):
            order = self._own(user, body.get("appOrderID"), body.get("clientID"))
            order["OrderQuantity"] = int(body["orderQuantity"])
            return envelope({"AppOrderID": order["AppOrderID"]}, "s-bracketorders-0002")
        if (method, path) == ("DELETE", "/orders/bracket"):
            return self.cancel(
                user, {"appOrderID": query.get("boEntryOrderId"), "clientID": query.get("clientID")}
            )
        if (method, path) == ("POST", "/orders/cover"):
            entry = self.place(user, {**body, "productType": "CO", "timeInForce": "DAY"})["result"][
                "AppOrderID"
            ]
            exit_ = self.place(
                user,
                {
                    **body,
                    "orderSide": "SELL" if body["orderSide"] == "BUY" else "BUY",
                    "productType": "CO",
                    "timeInForce": "DAY",
                    "orderType": "STOPMARKET",
                    "limitPrice": 0,
                },
            )["result"]["AppOrderID"]
            return envelope(
                {
                    "EntryAppOrderID": entry,
                    "ExitAppOrderID": exit_,
                    "ClientID": body.get("clientID", user),
                }
            )
        if (method, path) == ("PUT", "/orders/cover"):
            return self.cancel(
                user, {"appOrderID": body.get("appOrderID"), "clientID": body.get("clientID")}
            )
        raise Reply(404, "<html>404</html>")

    def marketdata(
        self, method: str, path: str, query: dict[str, Any], body: Any, user: str
    ) -> Any:
        if (method, path) == ("DELETE", "/auth/logout"):
            self.logouts.append(user)
            return envelope("", "s-session-0001", "successfully logout.")
        if (method, path) == ("GET", "/config/clientConfig"):
            return envelope(
                {
                    "exchangeSegments": {"NSECM": 1, "NSEFO": 2, "BSECM": 11},
                    "xtsMessageCode": {
                        "touchlineEvent": 1501,
                        "marketDepthEvent": 1502,
                        "candleDataEvent": 1505,
                        "openInterestEvent": 1510,
                        "ltpEvent": 1512,
                    },
                    "publishFormat": ["Binary", "JSON"],
                    "broadCastMode": ["Full", "Partial"],
                },
                "s-response-0001",
            )
        if (method, path) == ("POST", "/instruments/master"):
            segments = body.get("exchangeSegmentList", [])
            lines = [line for line in MASTER_LINES if line.split("|")[0] in segments]
            return envelope("\n".join(lines) + "\n", "s-instrument-0001")
        if (method, path) == ("GET", "/instruments/indexlist"):
            return envelope(
                {
                    "exchangeSegment": int(query["exchangeSegment"]),
                    "indexList": _INDEX.get(int(query["exchangeSegment"]), []),
                },
                "s-instrument-0007",
            )
        if (method, path) in (
            ("POST", "/instruments/quotes"),
            ("POST", "/instruments/subscription"),
            ("PUT", "/instruments/subscription"),
        ):
            code = int(body["xtsMessageCode"])
            wanted = [
                (int(i["exchangeSegment"]), int(i["exchangeInstrumentID"]))
                for i in body["instruments"]
            ]
            known = [w for w in wanted if w in self.prices]
            subs = self.subscriptions.setdefault(user, {}).setdefault(code, set())
            if method == "PUT":
                subs.difference_update(known)
                return envelope(
                    {"Remaining_Subscription_Count": 50 - self._used(user)},
                    "s-response-0001",
                    "Instrument subscription deleted!",
                )
            if path.endswith("subscription"):
                if known and all(w in subs for w in known):
                    raise Reply(
                        400,
                        error(
                            "e-session-0002",
                            "Instrument Already Subscribed !",
                            {
                                "Remaining_Subscription_Count": 50 - self._used(user),
                                "listQuotes": [],
                            },
                        ),
                    )
                subs.update(known)
            quotes = [json.dumps(self.quote(code, *w)) for w in known]
            return envelope(
                {
                    "mdp": code,
                    "quotesList": body["instruments"],
                    "listQuotes": quotes,
                    "Remaining_Subscription_Count": 50 - self._used(user),
                },
                "s-session-0001",
                "Instrument subscribed successfully!",
            )
        if (method, path) == ("GET", "/instruments/ohlc"):
            for key in (
                "exchangeSegment",
                "exchangeInstrumentID",
                "startTime",
                "endTime",
                "compressionValue",
            ):
                if key not in query:
                    raise Reply(
                        400,
                        error(
                            "e-instrument-0001",
                            "Bad Request",
                            {"errors": [{"field": key, "messages": "required"}]},
                        ),
                    )
            dt.datetime.strptime(query["startTime"], "%b %d %Y %H%M%S")
            bars = (
                "1737365400|1316|1320.5|1300.25|1305.45|14040|0|,"
                "1737365460|1305.45|1310|1304|1309.9|9000|0|"
            )
            return {
                "type": "success",
                "code": "s-instrument-0002",
                "description": "Data found",
                "result": {
                    "exchangeSegment": query["exchangeSegment"],
                    "exchangeInstrumentID": query["exchangeInstrumentID"],
                    "dataReponse": bars,
                },
            }
        raise Reply(404, "<html>404</html>")

    def _used(self, user: str) -> int:
        return len({i for subs in self.subscriptions.get(user, {}).values() for i in subs})

    # ASGI -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        try:
            try:
                body = json.loads(raw, parse_float=Decimal) if raw else {}
            except ValueError:
                raise Reply(400, error("e-request-0001", "Bad Request")) from None
            result = self.route(scope["method"], scope["path"], query, body, headers)
            status, payload = 200, result
        except Reply as reply:
            status, payload = reply.status, reply.body
        except Exception:
            # A bug in the fake: show it in the test output, answer as a broken server would.
            traceback.print_exc()
            status, payload = 500, "<html>500</html>"
        data = (
            payload.encode()
            if isinstance(payload, str)
            else json.dumps(payload, default=_default).encode()
        )
        kind = b"text/html" if isinstance(payload, str) else b"application/json"
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]}
        )
        await send({"type": "http.response.body", "body": data})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        path = scope["path"].rstrip("/")
        kind = {
            "/apimarketdata/socket.io": "md",
            "/interactive/socket.io": "interactive",
            "/1interactive/socket.io": "interactive",
        }.get(path)
        await receive()  # websocket.connect
        found = self.tokens.get(query.get("token", ""))
        if kind is None or query.get("EIO") != "3":
            await send({"type": "websocket.http.response.start", "status": 404, "headers": []})
            await send({"type": "websocket.http.response.body", "body": b"not found"})
            return
        await send({"type": "websocket.accept"})
        if found is None or found[0] != kind:
            # A bad token: an error packet, then the server closes the socket (spec 6.2).
            opened = {"sid": "x", "upgrades": [], "pingInterval": 25000, "pingTimeout": 60000}
            await send({"type": "websocket.send", "text": "0" + json.dumps(opened)})
            await send({"type": "websocket.send", "text": '44"Invalid Token"'})
            await send({"type": "websocket.close", "code": 1000})
            return
        socket = Socket(kind, found[1], query.get("token", ""), query.get("broadcastMode", "Full"))
        await send(
            {
                "type": "websocket.send",
                "text": "0"
                + json.dumps(
                    {
                        "sid": "abc",
                        "upgrades": [],
                        "pingInterval": self.ping_interval_ms,
                        "pingTimeout": self.ping_timeout_ms,
                    }
                ),
            }
        )
        await send({"type": "websocket.send", "text": "40"})
        joined = json.dumps(
            {
                "type": "success",
                "code": "s-socket-0001",
                "description": "Socket joined successfully! SocketId=abc",
            }
        )
        await send({"type": "websocket.send", "text": "42" + json.dumps(["joined", joined])})
        self.sockets.append(socket)
        try:
            async with trio.open_nursery() as nursery:

                async def reader() -> None:
                    while True:
                        message = await receive()
                        if message["type"] == "websocket.disconnect":
                            nursery.cancel_scope.cancel()
                            return
                        if message.get("text") == "2":
                            self.pings += 1
                            if not self.silent:
                                await socket.outbox.send("3")
                        elif message.get("text") == "3":
                            self.client_pongs += 1

                nursery.start_soon(reader)
                async for text in socket.inbox:
                    if text is None:
                        await send({"type": "websocket.close", "code": 1001})
                        nursery.cancel_scope.cancel()
                        return
                    if self.silent and text == "3":
                        continue
                    await send({"type": "websocket.send", "text": text})
        finally:
            self.sockets.remove(socket)


LISTINGS_BY_CODE = {(v[0], tok): v for (name, tok), v in LISTINGS.items()}


def _refuse() -> str:
    raise Reply(400, error("e-orders-0007", "Dealer route for a non-dealer"))


def _public(order: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in order.items() if not k.startswith("_")}


def _plain(data: Any) -> Any:
    """Decimals as JSON numbers, as XTS sends them."""
    return json.loads(json.dumps(data, default=_default))


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)
