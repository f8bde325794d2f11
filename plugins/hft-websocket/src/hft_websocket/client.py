"""The Python SDK for ``docs/protocol.md``: connect, authenticate, subscribe, trade, and iterate.

::

    async with connect("ws://127.0.0.1:8765/v1", token, encoding="binary") as client:
        await client.subscribe(["NSE:INFY"], mode="quote")
        orders = await client.submit(account="sim", instrument="NSE:INFY", side="BUY",
                                     quantity=1, price="1500.00")
        async for event in client:
            ...  # Tick, Bar, OrderEvent, PositionEvent, Connected, Disconnected

It runs on anyio (trio or asyncio). When the connection drops, the client reconnects with
exponential backoff, resumes the order events from the last one it received (none is lost or
repeated), subscribes again to what it had (fresh snapshots), and yields :class:`Connected`
with the server's ``welcome``. Requests in flight when the connection dropped fail with
:class:`ConnectionLost`: a ``submit`` carries a ``client_order_id`` (one is made if not given),
so submitting it again is safe.
"""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, Final, TypeAlias

import anyio
import anyio.abc
import attrs
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from hft._resilience import Backoff
from hft_websocket import codec
from hft_websocket._wsclient import Closed, WebSocket

__all__ = [
    "AuthFailed",
    "Bar",
    "Client",
    "Connected",
    "ConnectionLost",
    "Disconnected",
    "Event",
    "OrderEvent",
    "PositionEvent",
    "RequestError",
    "Tick",
    "connect",
]

#: Close codes after which reconnecting cannot help.
_FATAL: Final = frozenset({1009, 4003})
_RESUME_TOO_FAR: Final = 4004


class RequestError(Exception):
    """The server answered a request with an ``error``; ``code`` is its stable code."""

    def __init__(self, code: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.fields = fields or {}


class AuthFailed(RequestError):
    """The server refused the credentials."""


class ConnectionLost(Exception):
    """The connection dropped before the request was answered."""


@attrs.frozen
class Tick:
    """One market-data update, from either encoding; prices as exact decimals."""

    instrument: str
    seq: int
    mode: str
    last_price: Decimal
    timestamp_ns: int
    volume: int | None = None
    last_quantity: int | None = None
    #: Best first, ``(price, quantity)``: one level in ``quote`` mode, up to five in ``full``.
    bids: tuple[tuple[Decimal, int], ...] = ()
    asks: tuple[tuple[Decimal, int], ...] = ()
    average_price: Decimal | None = None
    total_buy_quantity: int | None = None
    total_sell_quantity: int | None = None
    open_interest: int | None = None
    #: ``(open, high, low, close)``
    ohlc: tuple[Decimal, Decimal, Decimal, Decimal] | None = None


@attrs.frozen
class Bar:
    """One OHLC bar of a subscribed instrument (``bar`` messages); prices as exact decimals."""

    instrument: str
    start_ns: int
    interval_s: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int
    open_interest: int | None = None


@attrs.frozen
class OrderEvent:
    order_seq: int
    kind: str
    order: dict[str, Any]


@attrs.frozen
class PositionEvent:
    position: dict[str, Any]


@attrs.frozen
class Connected:
    """A (re)connection: the server's ``welcome`` (``welcome["resume"]`` says what was replayed)."""

    welcome: dict[str, Any]


@attrs.frozen
class Disconnected:
    code: int
    reason: str


Event: TypeAlias = Tick | Bar | OrderEvent | PositionEvent | Connected | Disconnected


@attrs.define
class _Pending:
    done: anyio.Event = attrs.field(factory=anyio.Event)
    reply: dict[str, Any] | None = None
    error: BaseException | None = None


class Client:
    """A connection to ``hft serve``'s WebSocket that survives disconnections; see the module."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        encoding: str = "json",
        reconnect: bool = True,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 10.0,
        request_timeout_s: float = 10.0,
    ) -> None:
        if encoding not in ("json", "binary"):
            raise ValueError("encoding must be 'json' or 'binary'")
        self.url = url
        self.encoding = encoding
        self.reconnect = reconnect
        self.request_timeout_s = request_timeout_s
        self._token = token
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        #: The ``order_seq`` of the last order event received (what a resume starts after).
        self.last_order_seq: int | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, _Pending] = {}
        self._subscriptions: dict[str, str] = {}  # instrument → mode
        self._iids: dict[int, tuple[str, int]] = {}  # iid → (instrument, price scale)
        self._ws: WebSocket | None = None
        self._connected = anyio.Event()
        self._fatal: BaseException | None = None
        self._send_events: MemoryObjectSendStream[Event]
        self._events: MemoryObjectReceiveStream[Event]
        self._send_events, self._events = anyio.create_memory_object_stream[Event](math.inf)
        self._tg: anyio.abc.TaskGroup | None = None
        #: Messages received per connection sequence gap (should stay 0).
        self.seq_gaps = 0

    # -- life ----------------------------------------------------------------------------------

    async def drop_connection(self) -> None:
        """Close the current connection abruptly, as a network failure would (for tests and
        drills); the client reconnects and resumes as it would after a real one."""
        if self._ws is not None:
            await self._ws.abort()

    # -- requests ------------------------------------------------------------------------------

    async def subscribe(self, instruments: list[str], mode: str = "quote") -> dict[str, Any]:
        reply = await self._request({"op": "subscribe", "instruments": instruments, "mode": mode})
        self._learn(reply)
        for key in instruments:
            self._subscriptions[key] = mode
        return reply

    async def unsubscribe(self, instruments: list[str]) -> list[str]:
        reply = await self._request({"op": "unsubscribe", "instruments": instruments})
        for key in instruments:
            self._subscriptions.pop(key, None)
        removed: list[str] = reply["instruments"]
        return removed

    async def submit(self, **order: Any) -> list[dict[str, Any]]:
        """Place an order (fields of ``docs/protocol.md``; prices as strings); the orders made."""
        order.setdefault("client_order_id", f"ws-{secrets.token_hex(8)}")
        reply = await self._request({"op": "submit", "order": order})
        orders: list[dict[str, Any]] = reply["orders"]
        return orders

    async def modify(self, order_id: str, **changes: Any) -> dict[str, Any]:
        reply = await self._request({"op": "modify", "order_id": order_id, **changes})
        order: dict[str, Any] = reply["orders"][0]
        return order

    async def cancel(self, order_id: str) -> dict[str, Any]:
        reply = await self._request({"op": "cancel", "order_id": order_id})
        order: dict[str, Any] = reply["orders"][0]
        return order

    async def ping(self) -> int:
        """The server's clock in nanoseconds."""
        reply = await self._request({"op": "ping"})
        return int(reply["time_ns"])

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        await self._connected.wait()
        ws = self._ws
        if ws is None or self._fatal is not None:
            raise ConnectionLost("not connected") from self._fatal
        rid = f"r{next(self._ids)}"
        pending = self._pending[rid] = _Pending()
        try:
            try:
                await ws.send(orjson.dumps({**message, "id": rid}).decode())
            except Closed as exc:
                raise ConnectionLost(str(exc)) from exc
            with anyio.fail_after(self.request_timeout_s):
                await pending.done.wait()
        finally:
            self._pending.pop(rid, None)
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        return pending.reply

    # -- events --------------------------------------------------------------------------------

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Event:
        """The next event; the iteration ends when the client stops reconnecting."""
        try:
            return await self._events.receive()
        except anyio.EndOfStream:
            if self._fatal is not None:
                raise self._fatal from None
            raise StopAsyncIteration from None

    # -- the connection loop -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            code, reason = 1006, "connection failed"
            try:
                ws = await WebSocket.connect(self.url)
                try:
                    await self._session(ws)
                finally:
                    await ws.aclose()
            except Closed as closed:
                code, reason = closed.code, closed.reason
            except AuthFailed as exc:
                self._fatal = exc
            except OSError as exc:
                reason = str(exc)
            self._ws = None
            for pending in self._pending.values():
                pending.error = ConnectionLost(f"connection closed: {code} {reason}")
                pending.done.set()
            if code == _RESUME_TOO_FAR:
                self.last_order_seq = None  # start afresh; list orders over REST
            if self._fatal is None and code in _FATAL:
                self._fatal = ConnectionLost(f"the server closed the connection: {code} {reason}")
            self._send_events.send_nowait(Disconnected(code, reason))
            if self._fatal is not None or not self.reconnect:
                self._connected.set()
                self._send_events.close()
                return
            self._connected = anyio.Event()
            await anyio.sleep(self._backoff.next_delay())

    async def _session(self, ws: WebSocket) -> None:
        auth: dict[str, Any] = {"op": "auth", "id": "auth", "token": self._token}
        auth["encoding"] = self.encoding
        if self.last_order_seq is not None:
            auth["resume_after"] = self.last_order_seq
        await ws.send(orjson.dumps(auth).decode())
        expected_seq = 1
        welcomed = False
        while True:
            raw = await ws.receive()
            if isinstance(raw, bytes):
                frame = codec.decode_frame(raw)
                seq = frame.seq
                self._check_seq(seq, expected_seq)
                expected_seq = seq + 1
                for record in frame.records:
                    self._send_events.send_nowait(self._tick_from_record(record))
                continue
            message = orjson.loads(raw)
            self._check_seq(message.get("seq", expected_seq), expected_seq)
            expected_seq = message.get("seq", expected_seq) + 1
            kind = message.get("type")
            if not welcomed:
                if kind == "error":
                    raise AuthFailed(message["code"], message["message"])
                if kind != "welcome":
                    continue
                welcomed = True
                if self.last_order_seq is None:
                    self.last_order_seq = int(message["order_seq"])
                self._ws = ws
                self._backoff.reset()
                self._send_events.send_nowait(Connected(message))
                self._connected.set()
                if self._subscriptions:
                    self._tg_start(self._resubscribe)
                continue
            self._dispatch(kind, message)

    def _tg_start(self, func: Any) -> None:
        if self._tg is not None:
            self._tg.start_soon(func)

    async def _resubscribe(self) -> None:
        by_mode: dict[str, list[str]] = {}
        for key, mode in self._subscriptions.items():
            by_mode.setdefault(mode, []).append(key)
        for mode, keys in by_mode.items():
            try:
                await self.subscribe(keys, mode)
            except (RequestError, ConnectionLost, TimeoutError):
                return  # the next connection tries again

    def _check_seq(self, seq: int, expected: int) -> None:
        if seq != expected:
            self.seq_gaps += 1

    def _dispatch(self, kind: str | None, message: dict[str, Any]) -> None:
        rid = message.get("id")
        if kind in ("subscribed", "unsubscribed", "ack", "pong", "error") and rid is not None:
            if kind == "subscribed":
                self._learn(message)
            pending = self._pending.get(rid)
            if pending is not None:
                if kind == "error":
                    fields = {
                        k: v
                        for k, v in message.items()
                        if k not in ("type", "seq", "id", "code", "message")
                    }
                    pending.error = RequestError(message["code"], message["message"], fields)
                else:
                    pending.reply = message
                pending.done.set()
            return
        if kind == "subscribed":
            self._learn(message)  # the market watch, subscribed by the server
        elif kind == "ticks":
            for t in message["ticks"]:
                self._send_events.send_nowait(_tick_from_json(t))
        elif kind == "bar":
            b = message["bar"]
            self._send_events.send_nowait(
                Bar(
                    b["instrument"],
                    b["start_ns"],
                    b["interval_s"],
                    Decimal(b["open"]),
                    Decimal(b["high"]),
                    Decimal(b["low"]),
                    Decimal(b["close"]),
                    b["volume"],
                    b["open_interest"],
                )
            )
        elif kind == "order":
            self.last_order_seq = int(message["order_seq"])
            self._send_events.send_nowait(
                OrderEvent(message["order_seq"], message["kind"], message["order"])
            )
        elif kind == "position":
            self._send_events.send_nowait(PositionEvent(message["position"]))
        elif kind == "positions":
            for position in message["positions"]:
                self._send_events.send_nowait(PositionEvent(position))

    def _learn(self, subscribed: dict[str, Any]) -> None:
        for item in subscribed["instruments"]:
            self._iids[int(item["iid"])] = (item["instrument"], int(item["price_scale"]))

    def _tick_from_record(self, record: codec.TickRecord) -> Tick:
        key, scale = self._iids.get(record.iid, (f"#{record.iid}", 0))

        def price(units: int) -> Decimal:
            return Decimal(units).scaleb(-scale)

        ohlc = record.ohlc
        return Tick(
            key,
            record.seq,
            record.mode,
            price(record.last_price),
            record.timestamp_ns,
            record.volume,
            record.last_quantity,
            tuple((price(level.price), level.quantity) for level in record.bids),
            tuple((price(level.price), level.quantity) for level in record.asks),
            None if record.average_price is None else price(record.average_price),
            record.total_buy_quantity,
            record.total_sell_quantity,
            record.open_interest,
            None
            if ohlc is None
            else (price(ohlc[0]), price(ohlc[1]), price(ohlc[2]), price(ohlc[3])),
        )


@asynccontextmanager
async def connect(
    url: str,
    token: str,
    *,
    encoding: str = "json",
    reconnect: bool = True,
    backoff_initial_s: float = 0.1,
    backoff_max_s: float = 10.0,
    request_timeout_s: float = 10.0,
) -> AsyncIterator[Client]:
    """A connected, authenticated :class:`Client`, closed on the way out.

    ``token`` is an access token from the HTTP login or an API key. Raises :class:`AuthFailed`
    when the server refuses it, and :class:`ConnectionLost` when the first connection fails and
    ``reconnect`` is off.
    """
    client = Client(
        url,
        token,
        encoding=encoding,
        reconnect=reconnect,
        backoff_initial_s=backoff_initial_s,
        backoff_max_s=backoff_max_s,
        request_timeout_s=request_timeout_s,
    )
    try:
        async with anyio.create_task_group() as tg:
            client._tg = tg
            tg.start_soon(client._run)
            try:
                await client._connected.wait()
                if client._fatal is not None:
                    raise client._fatal
                yield client
            finally:
                tg.cancel_scope.cancel()
    finally:
        client._tg = None
        client._send_events.close()
        client._events.close()


def _tick_from_json(t: dict[str, Any]) -> Tick:
    average = t.get("average_price")
    ohlc = t.get("ohlc")
    return Tick(
        t["instrument"],
        t["seq"],
        t["mode"],
        Decimal(t["last_price"]),
        t["timestamp_ns"],
        t.get("volume"),
        t.get("last_quantity"),
        tuple((Decimal(b["price"]), b["quantity"]) for b in t.get("bids", ())),
        tuple((Decimal(a["price"]), a["quantity"]) for a in t.get("asks", ())),
        None if average is None else Decimal(average),
        t.get("total_buy_quantity"),
        t.get("total_sell_quantity"),
        t.get("open_interest"),
        None
        if ohlc is None
        else (
            Decimal(ohlc["open"]),
            Decimal(ohlc["high"]),
            Decimal(ohlc["low"]),
            Decimal(ohlc["close"]),
        ),
    )
