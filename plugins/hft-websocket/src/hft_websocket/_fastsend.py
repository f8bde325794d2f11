"""Binary frames written straight to a connection's socket when it can take them at once.

Market data is most of what the server sends, and each frame through trio-websocket costs a
wsproto serialisation, a lock and trio's socket machinery: about three quarters of the server's
time at 100 connections. A server frame is unmasked, so its RFC 6455 header is two to ten bytes
we can write ourselves; when the kernel takes the whole frame in one non-blocking ``send`` (the
usual case on a connection that keeps up), nothing else is needed. Anything else (a frame in
flight on trio-websocket's side, a closing connection, a full socket buffer, TLS) goes through
trio-websocket, or finishes under its lock, so frames never interleave.

This reaches into trio-websocket 0.12's connection (``_stream``, ``_stream_lock``, ``_wsproto``);
``FrameSender`` falls back to the public path whenever those are not what it expects.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import trio
import trio_websocket
from wsproto.connection import ConnectionState

__all__ = ["FrameSender"]

_BINARY_FIN = 0x82
_U16 = struct.Struct("!BBH")
_U64 = struct.Struct("!BBQ")


def frame_header(size: int) -> bytes:
    """The header of one unmasked, final binary frame of ``size`` payload bytes."""
    if size < 126:
        return bytes((_BINARY_FIN, size))
    if size < 1 << 16:
        return _U16.pack(_BINARY_FIN, 126, size)
    return _U64.pack(_BINARY_FIN, 127, size)


class FrameSender:
    """Sends binary messages on one trio-websocket connection, directly when it safely can."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        stream: Any = getattr(ws, "_stream", None)
        lock: Any = getattr(ws, "_stream_lock", None)
        protocol: Any = getattr(ws, "_wsproto", None)
        raw: socket.socket | None = None
        if isinstance(stream, trio.SocketStream) and lock is not None and protocol is not None:
            raw = getattr(stream.socket, "_sock", None)
        self._stream = stream
        self._lock = lock
        self._protocol = protocol
        self._socket = raw if isinstance(raw, socket.socket) else None
        self._tail = b""  # the unsent end of a frame the kernel took part of
        self.direct = 0  # frames the kernel took whole, for tests and curiosity

    @property
    def has_tail(self) -> bool:
        """Whether part of a frame awaits :meth:`send` (nothing else may be written first)."""
        return bool(self._tail)

    def ready(self) -> bool:
        """Whether :meth:`send_now` may be used (until the caller next awaits)."""
        return (
            self._socket is not None
            and not self._tail
            and not self._lock.locked()
            and self._ws.closed is None
            and self._protocol.state is ConnectionState.OPEN
        )

    def send_now(self, payload: bytes) -> None:
        """Write one binary message without waiting; only after :meth:`ready` said so. What
        the kernel does not take at once is kept, and :meth:`send` writes it first."""
        assert self._socket is not None
        size = len(payload)
        frame = (bytes((_BINARY_FIN, size)) if size < 126 else frame_header(size)) + payload
        if self._tail:
            self._tail += frame
            return
        try:
            sent = self._socket.send(frame)
        except OSError:  # a full buffer (BlockingIOError), or a broken connection that
            sent = 0  # trio-websocket's own path then reports as closed
        if sent == len(frame):
            self.direct += 1
        else:
            self._tail = frame[sent:]

    async def send(self, payload: bytes) -> None:
        """Write what :meth:`send_now` left, then ``payload``: directly, else the usual way."""
        await self.flush()
        if self.ready():
            self.send_now(payload)
            await self.flush()
        else:
            await self._ws.send_message(payload)

    async def flush(self) -> None:
        """Write what :meth:`send_now` left (under trio-websocket's lock)."""
        if not self._tail:
            return
        tail, self._tail = self._tail, b""
        async with self._lock:  # before anyone else writes
            try:
                await self._stream.send_all(tail)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise trio_websocket.ConnectionClosed(None) from None
