"""One client connection: authentication, requests, and the single sender that batches.

Tasks per connection: the reader (requests, in order; order operations are started
concurrently), the order pump (the OMS feed into the outbox), the heartbeat, and the writer. The
writer is the only task that sends: it takes the whole outbox (replies and events, never
dropped) and then every pending tick (conflated by the fan-out) and sends them, so whatever
piles up while a send is in flight goes out together in the next one.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import anyio
import anyio.abc
import orjson
import structlog
import trio
import trio_websocket

from hft import HftError
from hft._host import Services
from hft._oms import OrderEventMessage, OrderFeed
from hft._resilience import TokenBucket
from hft.model import Order, OrderRequest, StreamMode, User, to_price_units
from hft_websocket import codec
from hft_websocket._fanout import MODE_CODE, Encoded, Fanout
from hft_websocket._fastsend import FrameSender
from hft_websocket._protocol import (
    Auth,
    Cancel,
    Modify,
    Ping,
    ProtocolError,
    Request,
    Submit,
    Subscribe,
    Unsubscribe,
    loads,
    order_json,
    parse,
    position_json,
    request_id,
)
from hft_websocket.config import WebsocketConfig

__all__ = ["CloseCode", "Connection"]

log = structlog.get_logger("hft.websocket")


class CloseCode:
    """Close codes of ``docs/protocol.md`` section 12."""

    GOING_AWAY: Final = 1001
    INTERNAL: Final = 1011
    AUTH_TIMEOUT: Final = 4001
    AUTH_FAILED: Final = 4003
    RESUME_TOO_FAR: Final = 4004
    SLOW_CONSUMER: Final = 4008
    HEARTBEAT_TIMEOUT: Final = 4009


class _Closing(Exception):
    """Raised inside the connection to close it with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Connection:
    """Serves one accepted WebSocket until either side closes it."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        services: Services,
        fanout: Fanout,
        config: WebsocketConfig,
        find_instrument_scale: Callable[[str], int | None],
    ) -> None:
        self.ws = ws
        self._frames = FrameSender(ws)
        self.id = secrets.token_hex(4)
        self._services = services
        self._fanout = fanout
        self._config = config
        self._scale_of = find_instrument_scale
        self._bucket = TokenBucket(config.rate_limit_per_s, config.rate_limit_burst)
        self.market: dict[str, Encoded] = {}
        self.bars: dict[str, bytes] = {}
        self.records: dict[StreamMode, dict[str, bytes]] = {mode: {} for mode in MODE_CODE}
        self.modes: dict[str, StreamMode] = {}
        self.binary = False
        self.user: User | None = None
        self._outbox: list[dict[str, Any]] = []
        self._seq = 0
        self._idle = False
        self._ready = trio.Event()  # trio's own: this one is made on every idle turn
        self._closing: _Closing | None = None
        self._replaying = 0  # a resume's replay, queued at once: not held against the backlog

    # -- the fan-out's side --------------------------------------------------------------------

    def wake(self) -> None:
        """New market data is pending (the fan-out calls this once per batch it hands over)."""
        if self._idle:
            # The writer is waiting, so nothing is being sent: binary frames the socket takes
            # at once go out from here, without waking the writer for them.
            if (
                self.binary
                and not self._outbox
                and not self.market
                and not self.bars
                and self._closing is None
                and self._send_records_now()
            ):
                return
            self._idle = False
            self._ready.set()

    def _send_records_now(self) -> bool:
        """Send the pending binary records without waiting; False if the writer must go on."""
        frames = self._frames
        if not frames.ready():
            return False
        chunk = self._config.max_frame_records
        records = self.records
        for mode, code in MODE_CODE.items():
            pending = records[mode]
            if not pending:
                continue
            records[mode] = {}
            values = list(pending.values())
            if len(values) <= chunk:  # the usual case: one frame
                frames.send_now(codec.encode_frame(code, self._next_seq(), values))
                continue
            for start in range(0, len(values), chunk):
                part = values[start : start + chunk]
                frames.send_now(codec.encode_frame(code, self._next_seq(), part))
        return not frames.has_tail

    # -- life ----------------------------------------------------------------------------------

    async def run(self) -> None:
        feed: OrderFeed | None = None
        try:
            feed = await self._authenticate()
            if feed is None:
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer)
                tg.start_soon(self._order_pump, feed)
                tg.start_soon(self._heartbeat)
                await self._reader(tg)
                tg.cancel_scope.cancel()
        except* _Closing as group:
            closing = group.exceptions[0]
            assert isinstance(closing, _Closing)
            await self._close(closing.code, closing.reason)
        except* trio_websocket.ConnectionClosed:
            pass
        except* Exception as group:
            # A fault of ours ends this connection, never the server and its other clients.
            log.error(
                "websocket.internal", connection=self.id, error=repr(group.exceptions[0]),
                exc_info=group,
            )  # fmt: skip
            await self._close(CloseCode.INTERNAL, "internal")
        finally:
            self._fanout.drop(self)
            if feed is not None:
                feed.close()

    async def _close(self, code: int, reason: str) -> None:
        log.info("websocket.closing", connection=self.id, code=code, reason=reason)
        with anyio.move_on_after(2, shield=True):
            await self.ws.aclose(code, reason)

    async def _authenticate(self) -> OrderFeed | None:
        """Wait for ``auth``; then queue ``welcome`` and what follows it (section 2)."""
        with anyio.move_on_after(self._config.auth_timeout_s):
            while True:
                text = await self.ws.get_message()
                try:
                    request = self._parse(text)
                    if not isinstance(request, Auth):
                        raise ProtocolError("unauthenticated", "send 'auth' first")
                except ProtocolError as exc:
                    await self._send_now(
                        self._error(self._safe_id(text), exc.code, exc.message, exc.extra)
                    )
                    continue
                try:
                    user = self._services.auth.authenticate(request.token)
                except HftError as exc:
                    await self._send_now(self._error(request.id, exc.code, exc.message))
                    raise _Closing(CloseCode.AUTH_FAILED, exc.code) from None
                return await self._welcome(request, user)
        raise _Closing(CloseCode.AUTH_TIMEOUT, "auth_timeout")

    async def _welcome(self, request: Auth, user: User) -> OrderFeed:
        services = self._services
        self.user = user
        self.binary = request.encoding == "binary"
        order_seq = services.oms.last_seq
        replayed: list[OrderEventMessage] = []
        if request.resume_after is not None:
            try:
                feed = await services.oms.resume(
                    user, request.resume_after, max_backlog=self._config.max_order_backlog
                )
            except HftError as exc:
                await self._send_now(self._error(request.id, exc.code, exc.message))
                raise _Closing(CloseCode.RESUME_TOO_FAR, exc.code) from None
            replayed = feed.receive_nowait()
        else:
            feed = services.oms.subscribe(user, max_backlog=self._config.max_order_backlog)
        watchlist = await services.watchlist(user.username)
        config = self._config
        self._queue(
            {
                "type": "welcome",
                "id": request.id,
                "user": user.username,
                "encoding": request.encoding,
                "connection": self.id,
                "order_seq": order_seq,
                "resume": None
                if request.resume_after is None
                else {"after": request.resume_after, "replayed": len(replayed)},
                "market_data": "snapshot",
                "watchlist": watchlist,
                "heartbeat_s": config.heartbeat_s,
                "limits": {
                    "max_message_bytes": config.max_message_bytes,
                    "max_subscriptions": config.max_subscriptions,
                    "rate_limit_per_s": config.rate_limit_per_s,
                    "rate_limit_burst": config.rate_limit_burst,
                    "max_order_backlog": config.max_order_backlog,
                },
            }
        )
        self._replaying = 2 * len(replayed)  # an order event may bring a position event
        self._queue_orders(replayed)
        accounts = services.accounts
        positions = [
            position_json(p, self._scale(p.instrument))
            for p in services.portfolio.positions()
            if p.account in accounts and user.can_see(accounts[p.account])
        ]
        self._queue({"type": "positions", "positions": positions})
        watch = watchlist[: config.max_subscriptions]
        if watch:
            self._subscribe_now(None, watch, StreamMode.QUOTE)
        log.info(
            "websocket.authenticated",
            connection=self.id,
            user=user.username,
            encoding=request.encoding,
            resume_after=request.resume_after,
            replayed=len(replayed),
        )
        return feed

    # -- reading -------------------------------------------------------------------------------

    def _parse(self, text: str | bytes) -> Request:
        if isinstance(text, bytes):
            raise ProtocolError("bad_message", "send JSON text frames, not binary")
        limit = self._config.max_message_bytes
        if len(text) > limit or len(text.encode()) > limit:
            raise ProtocolError("too_large", f"a message may have at most {limit} bytes")
        return parse(loads(text))

    @staticmethod
    def _safe_id(text: str | bytes) -> str | None:
        try:
            return (
                request_id(loads(text)) if isinstance(text, str) and len(text) < 1 << 20 else None
            )
        except ProtocolError:
            return None

    async def _reader(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            text = await self.ws.get_message()
            try:
                request = self._parse(text)
                if not self._bucket.try_acquire():
                    retry_ms = math.ceil(1000 / self._config.rate_limit_per_s)
                    raise ProtocolError(
                        "rate_limited", "too many requests", retry_after_ms=retry_ms
                    )
            except ProtocolError as exc:
                self._queue(self._error(self._safe_id(text), exc.code, exc.message, exc.extra))
                continue
            if isinstance(request, Submit | Modify | Cancel):
                tg.start_soon(self._order_op, request)
            else:
                self._control(request)

    def _control(self, request: Request) -> None:
        try:
            if isinstance(request, Auth):
                raise ProtocolError("already_authenticated", "this connection is authenticated")
            if isinstance(request, Ping):
                self._queue({"type": "pong", "id": request.id, "time_ns": time.time_ns()})
            elif isinstance(request, Subscribe):
                self._subscribe(request)
            elif isinstance(request, Unsubscribe):
                removed = self._fanout.remove(self, request.instruments)
                self._queue({"type": "unsubscribed", "id": request.id, "instruments": removed})
        except ProtocolError as exc:
            self._queue(self._error(request.id, exc.code, exc.message, exc.extra))

    def _subscribe(self, request: Subscribe) -> None:
        unknown = [k for k in request.instruments if self._scale_of(k) is None]
        if unknown:
            raise ProtocolError(
                "unknown_instrument",
                f"no broker lists {', '.join(unknown[:5])}",
                instruments=unknown,
            )
        new = sum(1 for k in request.instruments if k not in self.modes)
        if len(self.modes) + new > self._config.max_subscriptions:
            raise ProtocolError(
                "too_many_subscriptions",
                f"a connection may subscribe at most {self._config.max_subscriptions} instruments",
            )
        self._subscribe_now(request.id, request.instruments, request.mode)

    def _subscribe_now(self, rid: str | None, keys: Any, mode: StreamMode) -> None:
        fanout = self._fanout
        # The reply is queued first, so the snapshots the fan-out makes pending follow it.
        self._queue(
            {
                "type": "subscribed",
                "id": rid,
                "mode": str(mode),
                "instruments": [
                    {"instrument": k, "iid": fanout.iid(k), "price_scale": fanout.scale(k)}
                    for k in keys
                ],
            }
        )
        fanout.add(self, keys, mode)

    async def _order_op(self, request: Submit | Modify | Cancel) -> None:
        assert self.user is not None
        oms = self._services.oms
        try:
            orders: list[Order]
            if isinstance(request, Submit):
                op = "submit"
                orders = await oms.submit(self.user, self._order_request(request))
            elif isinstance(request, Modify):
                op = "modify"
                current = oms.get(self.user, request.order_id)
                scale = self._scale(current.request.instrument)
                orders = [await oms.modify(self.user, request.order_id, request.request(scale))]
            else:
                op = "cancel"
                orders = [await oms.cancel(self.user, request.order_id)]
        except HftError as exc:
            self._queue(self._error(request.id, exc.code, exc.message))
            return
        except Exception as exc:
            log.error("websocket.internal", connection=self.id, error=repr(exc), exc_info=exc)
            self._queue(
                self._error(request.id, "internal", "internal error; quote the connection id")
            )
            return
        self._queue(
            {
                "type": "ack",
                "id": request.id,
                "op": op,
                "orders": [order_json(o, self._scale(o.request.instrument)) for o in orders],
            }
        )

    def _order_request(self, request: Submit) -> OrderRequest:
        fields = dict(request.order)
        scale = self._scale(fields["instrument"])
        for key in ("price", "trigger_price"):
            if fields[key] is not None:
                fields[key] = to_price_units(fields[key], scale)
        return OrderRequest(**fields)

    def _scale(self, key: str) -> int:
        scale = self._scale_of(key)
        return 2 if scale is None else scale

    # -- order events --------------------------------------------------------------------------

    async def _order_pump(self, feed: OrderFeed) -> None:
        while True:
            try:
                batch = await feed.receive_batch()
            except anyio.EndOfStream:
                return
            except HftError:  # overflowed: the outbox check below normally closes first
                raise _Closing(CloseCode.SLOW_CONSUMER, "slow_consumer") from None
            self._queue_orders(batch)

    def _queue_orders(self, batch: list[OrderEventMessage]) -> None:
        portfolio = self._services.portfolio
        for message in batch:
            order = message.order
            scale = self._scale(order.request.instrument)
            self._queue(
                {
                    "type": "order",
                    "order_seq": message.seq,
                    "kind": message.kind,
                    "order": order_json(order, scale),
                }
            )
            if message.kind == "fill":
                request = order.request
                for position in portfolio.positions(request.account):
                    if (
                        position.instrument == request.instrument
                        and position.product == request.product
                    ):
                        self._queue(
                            {"type": "position", "position": position_json(position, scale)}
                        )

    # -- writing -------------------------------------------------------------------------------

    @staticmethod
    def _error(
        rid: str | None, code: str, message: str, extra: dict[str, object] | None = None
    ) -> dict[str, Any]:
        return {"type": "error", "id": rid, "code": code, "message": message, **(extra or {})}

    def _queue(self, message: dict[str, Any]) -> None:
        if self._closing is not None:
            return
        self._outbox.append(message)
        if len(self._outbox) > self._config.max_order_backlog + self._replaying:
            # The close frame goes out after what is already written, so the client reads up to
            # its last order event and resumes from there; what was queued is replayed then.
            self._closing = _Closing(CloseCode.SLOW_CONSUMER, "slow_consumer")
            self._outbox = []
        self.wake()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def _send_now(self, message: dict[str, Any]) -> None:
        message["seq"] = self._next_seq()
        await self.ws.send_message(orjson.dumps(message).decode())

    async def _writer(self) -> None:
        ws = self.ws
        while True:
            if self._closing is not None:
                raise self._closing
            if (
                not self._outbox
                and not self.market
                and not self.bars
                and not any(self.records.values())
                and not self._frames.has_tail
            ):
                self._ready = trio.Event()
                self._idle = True
                await self._ready.wait()
                if self._closing is not None:
                    raise self._closing
            await self._frames.flush()  # the end of a frame sent from wake(), first
            outbox, self._outbox = self._outbox, []
            self._replaying = 0
            for message in outbox:
                message["seq"] = self._next_seq()
                await ws.send_message(orjson.dumps(message).decode())
            # Frames the kernel takes at once never suspend; the loop still yields, since
            # nothing new can be pending until other tasks have run: the next turn waits.
            await self._send_market()

    async def _send_market(self) -> None:
        """Everything pending, in as few messages as ``max_frame_records`` allows; then each
        pending bar as a ``bar`` message, in either encoding."""
        ws = self.ws
        chunk = self._config.max_frame_records
        if self.market:
            entries = list(self.market.values())
            self.market = {}
            for start in range(0, len(entries), chunk):
                part = b",".join([e.json() for e in entries[start : start + chunk]])
                head = b'{"type":"ticks","seq":%d,"ticks":[' % self._next_seq()
                await ws.send_message((head + part + b"]}").decode())
        for mode, pending in self.records.items():
            if not pending:
                continue
            # Swapped before the first await: ticks that arrive meanwhile go to the next send.
            self.records[mode] = {}
            records = list(pending.values())
            code = MODE_CODE[mode]
            for start in range(0, len(records), chunk):
                frame = codec.encode_frame(code, self._next_seq(), records[start : start + chunk])
                await self._frames.send(frame)
        if self.bars:
            bars, self.bars = list(self.bars.values()), {}
            await self._frames.flush()  # a binary frame's tail must not interleave with text
            for bar in bars:
                head = b'{"type":"bar","seq":%d,"bar":' % self._next_seq()
                await ws.send_message((head + bar + b"}").decode())

    async def _heartbeat(self) -> None:
        config = self._config
        while True:
            await anyio.sleep(config.heartbeat_s)
            with anyio.move_on_after(config.heartbeat_timeout_s) as scope:
                await self.ws.ping()
            if scope.cancelled_caught:
                raise _Closing(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat_timeout")
