"""The gRPC server, on its own thread's asyncio loop: reads credentials and deadlines, hands each
call to the host through the bridge, writes replies and streams, and maps errors to statuses."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterable
from contextlib import aclosing, asynccontextmanager
from typing import Any, Final

import grpc
import grpc.aio
import structlog
from google.protobuf.message import DecodeError, Message

from hft import HftError, ValidationError
from hft._logging import bind_correlation_id
from hft_grpc._api import HostApi
from hft_grpc._bridge import Bridge
from hft_grpc._errors import grpc_status, trailers
from hft_grpc._generated import auth_pb2 as auth_pb
from hft_grpc._generated import market_data_pb2 as md_pb
from hft_grpc._generated import orders_pb2 as orders_pb
from hft_grpc._generated import portfolio_pb2 as portfolio_pb
from hft_grpc.config import GrpcConfig

__all__ = ["Server", "credential_from_metadata"]

log = structlog.get_logger("hft.grpc")

Context = grpc.aio.ServicerContext[Any, Any]
Streaming = Callable[[Any, Context], AsyncGenerator[Message | bytes, None]]

#: The shape ``hft._logging.bind_correlation_id`` accepts; anything else gets a new id.
_CORRELATION_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def credential_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The credential ``AuthService.authenticate`` takes, or None when the call carries none.

    ``authorization: Bearer <jwt>`` passes on as ``"Bearer <jwt>"``, ``authorization: ApiKey
    <key>`` and ``x-api-key: <key>`` as the bare key (``authorization`` wins when both are sent);
    any other ``authorization`` is passed on whole, for the service to refuse.
    """
    authorization = api_key = None
    for key, value in metadata or ():
        if isinstance(value, bytes):
            continue  # a -bin entry: never a credential
        if key == "authorization" and authorization is None:
            authorization = value.strip()
        elif key == "x-api-key" and api_key is None:
            api_key = value.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "apikey":
            return value.strip()
        if scheme.lower() == "bearer":
            return f"Bearer {value.strip()}"
        return authorization
    return api_key or None


def _deadline(context: Context) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class Server:
    """The handlers of every service, bound to one host through one bridge."""

    def __init__(self, api: HostApi, bridge: Bridge, config: GrpcConfig) -> None:
        self.api = api
        self.bridge = bridge
        self.config = config

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        api = self.api
        u, s = self._unary, self._stream
        services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {
            "hft.v1.AuthService": {
                "Login": u("Auth/Login", api.login, auth_pb.LoginRequest, anonymous=True),
                "Refresh": u("Auth/Refresh", api.refresh, auth_pb.RefreshRequest, anonymous=True),
            },
            "hft.v1.OrderService": {
                "Place": u("Order/Place", api.place, orders_pb.PlaceRequest, shield=True),
                "Modify": u("Order/Modify", api.modify, orders_pb.ModifyRequest, shield=True),
                "Cancel": u("Order/Cancel", api.cancel, orders_pb.CancelRequest, shield=True),
                "Get": u("Order/Get", api.get, orders_pb.GetRequest),
                "List": u("Order/List", api.list_orders, orders_pb.ListRequest),
                "StreamEvents": s(
                    "Order/StreamEvents", self._order_events, orders_pb.StreamEventsRequest
                ),
            },
            "hft.v1.MarketDataService": {
                "Quotes": u("MarketData/Quotes", api.quotes, md_pb.QuotesRequest),
                "StreamTicks": s("MarketData/StreamTicks", self._ticks, md_pb.StreamTicksRequest),
            },
            "hft.v1.PortfolioService": {
                "Positions": u("Portfolio/Positions", api.positions, portfolio_pb.PositionsRequest),
                "Holdings": u("Portfolio/Holdings", api.holdings, portfolio_pb.HoldingsRequest),
                "Accounts": u("Portfolio/Accounts", api.accounts, portfolio_pb.AccountsRequest),
            },
        }
        return [grpc.method_handlers_generic_handler(n, m) for n, m in services.items()]

    # Unary calls ------------------------------------------------------------------------------

    def _unary(
        self,
        method: str,
        operation: Callable[[Any, Any, float | None], Coroutine[Any, Any, Message]],
        request_type: type[Message],
        *,
        anonymous: bool = False,
        shield: bool = False,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        bridge = self.bridge

        async def handle(request: Message | _Malformed, context: Context) -> Message:
            async with self._observed(method, context) as call:
                who = _peer_host(context) if anonymous else _credential(context)
                try:
                    if isinstance(request, _Malformed):
                        raise request.error()
                    return await bridge.call(
                        operation, who, request, _deadline(context), shield=shield
                    )
                except Exception as exc:  # every failure becomes a status
                    raise await call.abort(exc) from None
            raise AssertionError("unreachable: the block returns or raises")

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=_deserializer(request_type),
            response_serializer=_serialize,
        )

    @asynccontextmanager
    async def _observed(self, method: str, context: Context) -> AsyncIterator[_Call]:
        """The call's correlation id (the client's ``x-correlation-id``, else a new one: sent
        back in the initial metadata, in every log line of the call, on both loops) and its
        access log line ``grpc.call``."""
        given = _metadata(context, "x-correlation-id")
        valid = given is not None and _CORRELATION_ID.fullmatch(given) is not None
        with bind_correlation_id(given if valid else None) as cid:
            call = _Call(context)
            started = time.perf_counter()
            try:
                await context.send_initial_metadata((("x-correlation-id", cid),))
                yield call
            except asyncio.CancelledError:
                call.status = "CANCELLED"  # the client left, or its deadline passed
                raise
            finally:
                if self.config.access_log:
                    log.info(
                        "grpc.call",
                        method=method,
                        status=call.status,
                        code=call.code,
                        duration_ms=round((time.perf_counter() - started) * 1000, 3),
                        peer=context.peer(),
                    )

    # Streams ----------------------------------------------------------------------------------

    def _stream(
        self, method: str, body: Streaming, request_type: type[Message]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def handle(request: Message | _Malformed, context: Context) -> None:
            async with self._observed(method, context) as call:
                try:
                    if isinstance(request, _Malformed):
                        raise request.error()
                    async with aclosing(body(request, context)) as messages:
                        async for message in messages:
                            await context.write(message)
                except Exception as exc:  # every failure becomes a status
                    await call.abort(exc)

        return grpc.unary_stream_rpc_method_handler(
            handle,
            request_deserializer=_deserializer(request_type),
            response_serializer=_serialize,
        )

    async def _ticks(
        self, request: md_pb.StreamTicksRequest, context: Context
    ) -> AsyncGenerator[Message | bytes, None]:
        api, bridge = self.api, self.bridge
        stream = await bridge.call(
            api.open_ticks,
            _credential(context),
            request,
            _deadline(context),
            discard=api.close_ticks,
        )
        batches = bridge.pull(api.next_ticks, stream)
        try:
            # Pulled one batch at a time: while a write waits on a slow client nothing is taken
            # from the hub, which conflates meanwhile to the latest tick per instrument.
            while (message := await batches.next()) is not None:
                yield message
        finally:
            batches.close()
            bridge.spawn(api.close_ticks, stream)

    async def _order_events(
        self, request: orders_pb.StreamEventsRequest, context: Context
    ) -> AsyncGenerator[Message | bytes, None]:
        api, bridge = self.api, self.bridge
        feed, after = await bridge.call(
            api.open_events,
            _credential(context),
            request,
            _deadline(context),
            discard=api.close_events,
        )
        try:
            yield orders_pb.StreamEventsResponse(started=orders_pb.StreamStarted(after_seq=after))
            # The feed buffers events while a write waits (up to order_backlog, then the stream
            # ends with ABORTED overflow and the client resumes): none is ever skipped.
            events = bridge.pull(api.next_events, feed)
            try:
                while (messages := await events.next()) is not None:
                    for message in messages:
                        yield message
            finally:
                events.close()
        finally:
            bridge.spawn(api.close_events, (feed, after))


class _Malformed:
    """A request that is not a valid message of its type (grpcio would answer INTERNAL)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self) -> ValidationError:
        return ValidationError(f"the request is not a valid {self.name}", code="malformed")


def _deserializer(request_type: type[Message]) -> Callable[[bytes], Message | _Malformed]:
    name = request_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> Message | _Malformed:
        try:
            return request_type.FromString(data)
        except DecodeError:
            return _Malformed(name)

    return parse


def _credential(context: Context) -> str | None:
    return credential_from_metadata(context.invocation_metadata())


def _peer_host(context: Context) -> str:
    """``ipv4:127.0.0.1:50000`` -> ``ipv4:127.0.0.1``: one client address, whatever its port."""
    peer = context.peer()
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


def _serialize(message: Message | bytes) -> bytes:
    # Tick streams hand over messages they encoded themselves (see HostApi.next_ticks).
    return message if isinstance(message, bytes) else message.SerializeToString()


class _Call:
    """One call's outcome, for its access log line."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.status = "OK"
        self.code: str | None = None

    async def abort(self, exc: Exception) -> BaseException:
        """End the call with ``exc``'s status (``abort`` raises; the return is for mypy)."""
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if not isinstance(exc, HftError):
            log.error("grpc.unhandled", error=repr(exc), exc_info=exc)
            exc = HftError("internal error; quote the correlation id", code="internal")
        status = grpc_status(exc)
        self.status, self.code = status.name, exc.code
        if status is grpc.StatusCode.INTERNAL or status is grpc.StatusCode.UNAVAILABLE:
            log.warning("grpc.error", code=exc.code, status=status.name, error=exc.message)
        await self.context.abort(status, exc.message, trailing_metadata=trailers(exc))


def _metadata(context: Context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None
