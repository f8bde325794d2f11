"""The Engine.IO v3 / Socket.IO (protocol 4, "socket.io 2.x") framing XTS speaks, over
trio-websocket.

Only what XTS needs, websocket transport only (spec 6.1):

- the server opens with ``0{"sid", "upgrades", "pingInterval", "pingTimeout"}`` and joins the
  default namespace with ``40`` (another namespace is joined by sending ``40/ns,``);
- in v3 the **client** pings: ``2`` every ``pingInterval``, the server answers ``3`` (a v4-style
  server ping ``2`` is answered with ``3`` too);
- events arrive as ``42["name", data]`` (``42/ns,["name", data]`` off the default namespace,
  optionally with an ack id before the array); ``41`` leaves the namespace, ``1`` closes.

A socket silent for longer than the stall limit (the server's ``pingInterval + pingTimeout``
unless configured) is treated as dead. :func:`parse_frame` is pure and fuzzed.
"""

from __future__ import annotations

import contextlib
import json
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, Literal, NoReturn
from urllib.parse import urlsplit

import attrs
import trio
import trio_websocket

from hft import AuthError, HftError, NetworkError, ValidationError

__all__ = ["Frame", "SocketIo", "encode_event", "open_socketio", "parse_frame"]

Kind = Literal["open", "close", "ping", "pong", "connect", "disconnect", "event", "error", "noop"]
_ENGINE_KINDS: Final[dict[str, Kind]] = {
    "0": "open",
    "1": "close",
    "2": "ping",
    "3": "pong",
    "6": "noop",
}
_SOCKET_KINDS: Final[dict[str, Kind]] = {
    "0": "connect",
    "1": "disconnect",
    "2": "event",
    "4": "error",
}


@attrs.frozen
class Frame:
    """One decoded frame. ``data`` is the open packet's dict, an event's first argument, or an
    error's payload; ``event`` is the event name."""

    kind: Kind
    namespace: str = "/"
    event: str = ""
    data: Any = None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ValidationError(
            f"socket.io payload is not JSON: {text[:60]!r}", code="xts_bad_frame"
        ) from None


def parse_frame(message: str) -> Frame:
    """One Engine.IO text frame; ValidationError for anything XTS would not send."""
    if not message:
        raise ValidationError("empty Engine.IO frame", code="xts_bad_frame")
    head, rest = message[0], message[1:]
    if head in _ENGINE_KINDS:
        kind = _ENGINE_KINDS[head]
        if kind == "open":
            data = _json(rest)
            if not isinstance(data, dict):
                raise ValidationError(
                    "Engine.IO open packet is not an object", code="xts_bad_frame"
                )
            return Frame("open", data=data)
        return Frame(kind, data=rest or None)
    if head != "4" or not rest:
        raise ValidationError(f"unknown Engine.IO frame {message[:20]!r}", code="xts_bad_frame")
    socket_kind, body = _SOCKET_KINDS.get(rest[0]), rest[1:]
    if socket_kind is None:
        raise ValidationError(f"unsupported socket.io packet {rest[:20]!r}", code="xts_bad_frame")
    namespace = "/"
    if body.startswith("/"):
        namespace, comma, body = body.partition(",")
        if not comma and body:
            raise ValidationError("socket.io namespace without a comma", code="xts_bad_frame")
    # An ack id may sit between the namespace and the JSON.
    digits = 0
    while digits < len(body) and body[digits].isascii() and body[digits].isdigit():
        digits += 1
    body = body[digits:]
    if socket_kind in ("connect", "disconnect"):
        return Frame(socket_kind, namespace, data=_json(body) if body else None)
    if socket_kind == "error":
        return Frame("error", namespace, data=_json(body) if body else None)
    args = _json(body)
    if not isinstance(args, list) or not args or not isinstance(args[0], str):
        raise ValidationError("socket.io event is not [name, ...]", code="xts_bad_frame")
    return Frame("event", namespace, event=args[0], data=args[1] if len(args) > 1 else None)


def encode_event(name: str, data: Any, namespace: str = "/") -> str:
    """A ``42`` event frame (the fake server in the tests speaks with it)."""
    prefix = "" if namespace == "/" else f"{namespace},"
    return f"42{prefix}{json.dumps([name, data])}"


class SocketIo:
    """A joined socket.io connection; :meth:`run` pings and hands events over until it dies."""

    def __init__(
        self, ws: trio_websocket.WebSocketConnection, namespace: str, stall_s: float
    ) -> None:
        self._ws = ws
        self._namespace = namespace
        self._stall_s = stall_s
        self.ping_interval_s = 25.0
        self.ping_timeout_s = 60.0

    async def _receive(self, limit_s: float) -> Frame:
        with trio.move_on_after(limit_s):
            try:
                message = await self._ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                reason = exc.reason
                raise NetworkError(
                    f"socket closed ({reason.code if reason else 'no code'})",
                    code="xts_socket_closed",
                ) from None
            if isinstance(message, bytes):
                # XTS's JSON API never sends binary frames; Binary MD is a different API.
                raise ValidationError("unexpected binary socket.io frame", code="xts_bad_frame")
            return parse_frame(message)
        raise NetworkError(f"socket silent for {limit_s:.0f} s", code="xts_socket_stalled")

    async def _send(self, text: str) -> None:
        try:
            await self._ws.send_message(text)
        except trio_websocket.ConnectionClosed:
            raise NetworkError("socket closed", code="xts_socket_closed") from None

    async def handshake(self) -> None:
        frame = await self._receive(10.0)
        if frame.kind != "open":
            raise NetworkError(f"socket.io server opened with {frame.kind!r}", code="xts_bad_frame")
        # Milliseconds on the wire; keep sane bounds whatever the server says.
        self.ping_interval_s = min(
            max(float(frame.data.get("pingInterval", 25000)) / 1000, 0.05), 300
        )
        self.ping_timeout_s = min(
            max(float(frame.data.get("pingTimeout", 60000)) / 1000, 0.05), 300
        )
        if not self._stall_s:
            self._stall_s = self.ping_interval_s + self.ping_timeout_s
        if self._namespace != "/":
            await self._send(f"40{self._namespace},")
        while True:
            frame = await self._receive(10.0)
            if frame.kind == "connect" and frame.namespace == self._namespace:
                return
            if frame.kind == "error":
                raise AuthError(
                    f"socket.io refused the connection: {frame.data}", code="xts_session_expired"
                )
            if frame.kind in ("close", "disconnect"):
                raise NetworkError(
                    "socket.io closed during the handshake", code="xts_socket_closed"
                )

    async def run(self, on_event: Callable[[str, Any], Awaitable[None]]) -> None:
        """Ping on the server's interval and pass each event to ``on_event`` until the socket
        closes or stalls (raising :class:`NetworkError`)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pinger)
                await self._dispatch(on_event)
        except BaseExceptionGroup as group:
            _raise_leaf(group)

    async def _dispatch(self, on_event: Callable[[str, Any], Awaitable[None]]) -> None:
        while True:
            frame = await self._receive(self._stall_s)
            if frame.kind == "ping":
                await self._send("3")
            elif frame.kind == "event" and frame.namespace == self._namespace:
                await on_event(frame.event, frame.data)
            elif frame.kind == "error":
                raise AuthError(f"socket.io error: {frame.data}", code="xts_session_expired")
            elif frame.kind in ("close", "disconnect"):
                raise NetworkError("the server closed the socket", code="xts_socket_closed")

    async def _pinger(self) -> None:
        while True:
            await trio.sleep(self.ping_interval_s)
            await self._send("2")


@contextlib.asynccontextmanager
async def open_socketio(
    url: str,
    *,
    namespace: str = "/",
    stall_s: float = 0.0,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[SocketIo]:
    """Connect to ``url`` (``ws(s)://host/<path>/socket.io/?EIO=3&transport=websocket&...``),
    complete the Engine.IO open and namespace join, and yield the joined socket.

    The TCP (or TLS) stream is opened here and closed here whatever happens: trio-websocket's
    own ``open_websocket_url`` leaves it open when cancelled mid-handshake or after the server
    closes the websocket cleanly.
    """
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    resource = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"
    header = host if port in (80, 443) else f"{host}:{port}"
    try:
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(10):
                    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = (
                        await trio.open_ssl_over_tcp_stream(
                            host, port, ssl_context=ssl_context, https_compatible=True
                        )
                        if secure
                        else await trio.open_tcp_stream(host, port)
                    )
            except (OSError, trio.TooSlowError) as exc:
                raise NetworkError(f"socket.io connection failed: {type(exc).__name__}") from None
            ws: trio_websocket.WebSocketConnection | None = None
            try:
                with trio.fail_after(10):
                    ws = await trio_websocket.wrap_client_stream(nursery, stream, header, resource)
                socket = SocketIo(ws, namespace, stall_s)
                await socket.handshake()
                yield socket
            finally:
                # A polite close handshake needs the reader task, which a cancellation (the
                # broker closing) has already stopped: then just drop the connection.
                polite = ws is not None and trio.current_effective_deadline() != -math.inf
                with trio.CancelScope(shield=True):
                    if polite and ws is not None:
                        with trio.move_on_after(1):
                            await ws.aclose()
                    await stream.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # trio-websocket's reader runs in the nursery, so our own errors may come back wrapped.
        _raise_leaf(group)
    except trio_websocket.ConnectionRejected as exc:
        if exc.status_code in (400, 401, 403):
            raise AuthError(
                f"the socket.io server refused the session (HTTP {exc.status_code})",
                code="xts_session_expired",
            ) from None
        raise NetworkError(f"socket.io upgrade refused (HTTP {exc.status_code})") from None
    except (trio_websocket.HandshakeError, trio.TooSlowError, trio.BrokenResourceError) as exc:
        raise NetworkError(f"socket.io connection failed: {type(exc).__name__}") from None


def _raise_leaf(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the first error of ``group`` unwrapped, unless it holds a cancellation (or other
    BaseException) that must travel as it is."""
    leaves = _leaves(group)
    if leaves and all(isinstance(leaf, Exception) for leaf in leaves):
        hft = [leaf for leaf in leaves if isinstance(leaf, HftError)]
        raise (hft or leaves)[0] from None
    raise group


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
