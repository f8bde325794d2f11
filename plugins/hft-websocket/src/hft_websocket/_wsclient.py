"""A small WebSocket client on anyio streams and wsproto, so the SDK runs on trio or asyncio."""

from __future__ import annotations

import contextlib
from typing import Final
from urllib.parse import urlsplit

import anyio
import anyio.abc
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError

__all__ = ["Closed", "WebSocket"]

_CHUNK: Final = 1 << 16


class Closed(Exception):
    """The connection is closed; ``code`` is the close code (1006 when it simply dropped)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"websocket closed: {code} {reason}".strip())
        self.code = code
        self.reason = reason


class WebSocket:
    """One client connection: :meth:`send` from any task, :meth:`receive` from one task."""

    def __init__(self, stream: anyio.abc.ByteStream, ws: WSConnection) -> None:
        self._stream = stream
        self._ws = ws
        self._send_lock = anyio.Lock()
        self._parts: list[bytes | bytearray | str] = []
        self.closed: Closed | None = None

    @classmethod
    async def connect(cls, url: str, *, timeout_s: float = 10.0) -> WebSocket:
        parts = urlsplit(url)
        if parts.scheme != "ws" or parts.hostname is None:
            raise ValueError(f"expected a ws:// URL, got {url!r}")
        port = parts.port or 80
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        with anyio.fail_after(timeout_s):
            stream = await anyio.connect_tcp(parts.hostname, port)
            ws = WSConnection(ConnectionType.CLIENT)
            self = cls(stream, ws)
            try:
                await stream.send(ws.send(Request(host=parts.netloc, target=target)))
                while True:
                    data = await stream.receive(_CHUNK)
                    ws.receive_data(data)
                    for event in ws.events():
                        if isinstance(event, AcceptConnection):
                            return self
                        if isinstance(event, RejectConnection):
                            raise Closed(1002, f"handshake refused: HTTP {event.status_code}")
            except BaseException:
                await stream.aclose()
                raise

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise Closed(1006, "connection lost") from None

    async def send(self, message: str | bytes) -> None:
        if self.closed is not None:
            raise self.closed
        event = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        await self._write(self._ws.send(event))

    async def receive(self) -> str | bytes:
        """The next whole message; raise :class:`Closed` when the connection ends."""
        while True:
            for event in self._ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    self._parts.append(event.data)
                    if event.message_finished:
                        parts, self._parts = self._parts, []
                        if isinstance(parts[0], str):
                            return "".join(str(p) for p in parts)
                        return b"".join(p.encode() if isinstance(p, str) else p for p in parts)
                elif isinstance(event, Ping):
                    await self._write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.closed = Closed(event.code, event.reason or "")
                    with contextlib.suppress(Closed):
                        await self._write(self._ws.send(event.response()))
                    await self._stream.aclose()
                    raise self.closed
            try:
                data = await self._stream.receive(_CHUNK)
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
            ):
                self.closed = Closed(1006, "connection lost")
                await self._stream.aclose()
                raise self.closed from None
            self._ws.receive_data(data)

    async def abort(self) -> None:
        """Drop the TCP connection without a close handshake."""
        self.closed = Closed(1006, "aborted by the client")
        await self._stream.aclose()

    async def aclose(self, code: int = 1000) -> None:
        if self.closed is None:
            self.closed = Closed(code, "closed by the client")
            with anyio.move_on_after(1, shield=True):
                with contextlib.suppress(Closed, LocalProtocolError):
                    await self._write(self._ws.send(CloseConnection(code)))
        with anyio.CancelScope(shield=True):
            await self._stream.aclose()
