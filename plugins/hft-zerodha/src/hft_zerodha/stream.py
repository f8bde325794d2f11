"""The KiteTicker stream: sharded WebSocket connections with a stall watchdog and resubscription.

Each connection (a *shard*) carries at most ``max_tokens_per_connection`` instruments; a new
shard opens when the others are full, up to ``max_connections``. A shard:

- connects to ``ws_url?api_key=..&access_token=..`` and (re)sends ``subscribe`` then one
  ``mode`` message per mode for every instrument it carries;
- treats any frame, the 1-byte heartbeat included, as proof of life, and reconnects after
  ``stall_timeout_s`` of silence (a socket can die without closing: pykiteconnect #229);
- reconnects with exponential backoff and jitter, reporting ``RECONNECTING`` and, once
  resubscribed, ``RESYNCED``;
- gives up, reporting ``DISCONNECTED``, when the upgrade is refused with 401/403: the session
  is gone and only a new login helps.

Shard 0 always runs, subscribed or not, because order updates arrive on it; order messages on
other shards are ignored so that each arrives once.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final

import attrs
import structlog
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

from hft._errors import AuthError, NetworkError, ValidationError
from hft._resilience import Backoff
from hft._secret import Secret
from hft.model import ConnectionState, StreamMode

from .config import ZerodhaConfig
from .parsing.kite import LOGIN_HINT

__all__ = ["Ticker"]

log = structlog.get_logger("hft_zerodha.stream")

_MAX_MESSAGE: Final = 8 * 1024 * 1024  # 3000 full-mode packets are ~560 kB
_DISCONNECT_S: Final = 1.0

OnBinary = Callable[[bytes], Awaitable[None]]
OnText = Callable[[str], Awaitable[None]]
OnState = Callable[[ConnectionState, str], Awaitable[None]]


@attrs.define(eq=False)
class _Shard:
    index: int
    tokens: dict[int, StreamMode] = attrs.field(factory=dict)
    ws: WebSocketConnection | None = None
    connected: bool = False


class Ticker:
    """Every ticker connection of one login; start it with :meth:`start` inside a nursery."""

    def __init__(
        self,
        config: ZerodhaConfig,
        access_token: Secret,
        *,
        on_binary: OnBinary,
        on_text: OnText,
        on_state: OnState,
    ) -> None:
        self._config = config
        self._token = access_token
        self._on_binary = on_binary
        self._on_text = on_text
        self._on_state = on_state
        self._shards: list[_Shard] = []
        self._nursery: trio.Nursery | None = None
        self._backoff = Backoff(
            initial_s=config.reconnect_initial_s,
            max_s=max(config.reconnect_max_s, config.reconnect_initial_s),
            jitter="equal",
        )

    @property
    def subscriptions(self) -> dict[int, StreamMode]:
        """Every subscribed token and its mode, across shards."""
        merged: dict[int, StreamMode] = {}
        for shard in self._shards:
            merged.update(shard.tokens)
        return merged

    @property
    def connections(self) -> int:
        return len(self._shards)

    async def start(self, nursery: trio.Nursery) -> None:
        """Open shard 0 and return once it is connected; raise AuthError or NetworkError."""
        self._nursery = nursery
        shard = _Shard(0)
        self._shards.append(shard)
        await nursery.start(self._run, shard, True)

    # Subscriptions ----------------------------------------------------------------------------

    async def subscribe(self, tokens: Iterable[int], mode: StreamMode) -> None:
        """Stream ``tokens`` in ``mode`` (a token already streamed changes mode)."""
        wanted = list(dict.fromkeys(tokens))
        where = {t: s for s in self._shards for t in s.tokens}
        new = [t for t in wanted if t not in where]
        free = sum(self._room(s) for s in self._shards) + self._config.max_tokens_per_connection * (
            self._config.max_connections - len(self._shards)
        )
        if len(new) > free:
            limit = self._config.max_tokens_per_connection * self._config.max_connections
            raise ValidationError(
                f"kite ticker: {len(new)} more instruments would pass the limit of {limit} "
                f"({self._config.max_connections} connections of "
                f"{self._config.max_tokens_per_connection})",
                code="kite_too_many_instruments",
            )
        batches: dict[int, list[int]] = {}
        for token in wanted:
            shard = where.get(token) or self._shard_with_room()
            where[token] = shard
            shard.tokens[token] = mode
            batches.setdefault(shard.index, []).append(token)
        for index, batch in batches.items():
            shard = self._shards[index]
            fresh = [t for t in batch if t in new]
            if fresh:
                await self._send(shard, {"a": "subscribe", "v": fresh})
            await self._send(shard, {"a": "mode", "v": [str(mode), batch]})

    async def unsubscribe(self, tokens: Iterable[int]) -> None:
        gone = set(tokens)
        for shard in self._shards:
            mine = [t for t in shard.tokens if t in gone]
            for token in mine:
                del shard.tokens[token]
            if mine:
                await self._send(shard, {"a": "unsubscribe", "v": mine})

    def _room(self, shard: _Shard) -> int:
        return self._config.max_tokens_per_connection - len(shard.tokens)

    def _shard_with_room(self) -> _Shard:
        for shard in self._shards:
            if self._room(shard) > 0:
                return shard
        assert self._nursery is not None, "the ticker was not started"
        shard = _Shard(len(self._shards))
        self._shards.append(shard)
        self._nursery.start_soon(self._run, shard, False)
        log.info("kite.ticker_shard_opened", shard=shard.index)
        return shard

    async def _send(self, shard: _Shard, message: dict[str, Any]) -> None:
        ws = shard.ws
        if ws is None or not shard.connected:
            return  # sent with everything else once the shard (re)connects
        # A closed socket is noticed by the receive loop, and resubscription covers this message.
        with contextlib.suppress(ConnectionClosed):
            await ws.send_message(json.dumps(message, separators=(",", ":")))

    async def _resubscribe(self, shard: _Shard, ws: WebSocketConnection) -> None:
        if not shard.tokens:
            return
        await ws.send_message(json.dumps({"a": "subscribe", "v": list(shard.tokens)}))
        by_mode: dict[StreamMode, list[int]] = {}
        for token, mode in shard.tokens.items():
            by_mode.setdefault(mode, []).append(token)
        for mode, tokens in by_mode.items():
            await ws.send_message(json.dumps({"a": "mode", "v": [str(mode), tokens]}))

    # Connections ------------------------------------------------------------------------------

    def _url(self) -> str:
        query = urllib.parse.urlencode(
            {"api_key": self._config.api_key, "access_token": self._token.reveal()}
        )
        return f"{self._config.ws_url}?{query}"

    async def _run(
        self, shard: _Shard, strict: bool, *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep ``shard`` connected until cancelled. With ``strict``, a first connection that
        fails raises instead of retrying (the broker's ``connect`` reports it)."""
        backoff = self._backoff.clone()
        first = True
        while True:
            reason = ""
            try:
                async with self._connection() as ws:
                    shard.ws = ws
                    await self._resubscribe(shard, ws)
                    shard.connected = True
                    backoff.reset()
                    if first:
                        first = False
                        task_status.started()
                    else:
                        await self._on_state(ConnectionState.RESYNCED, f"shard {shard.index}")
                    log.info("kite.ticker_connected", shard=shard.index, tokens=len(shard.tokens))
                    reason = await self._receive(shard, ws)
            except ConnectionRejected as exc:
                reason = f"the ticker refused the connection (HTTP {exc.status_code})"
                if exc.status_code in (401, 403):
                    message = (
                        f"kite: the ticker refused the session (HTTP {exc.status_code}); "
                        f"{LOGIN_HINT}"
                    )
                    if strict and first:
                        raise AuthError(message, code="kite_tokenexception", status=403) from None
                    shard.connected, shard.ws = False, None
                    log.error("kite.ticker_session_refused", shard=shard.index)
                    await self._on_state(ConnectionState.DISCONNECTED, message)
                    return
            except (HandshakeError, ConnectionClosed, OSError, trio.TooSlowError) as exc:
                reason = reason or f"{type(exc).__name__}"
            finally:
                shard.connected, shard.ws = False, None
            if strict and first:
                raise NetworkError(f"kite: cannot open the ticker: {reason}", code="kite_ticker")
            delay = backoff.next_delay()
            log.warning(
                "kite.ticker_reconnecting", shard=shard.index, reason=reason, retry_in_s=delay
            )
            await self._on_state(ConnectionState.RECONNECTING, reason)
            await trio.sleep(delay)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[WebSocketConnection]:
        """One WebSocket connection whose socket is closed for certain on exit (trio-websocket
        leaves a client socket open when the server closes first)."""
        url = urllib.parse.urlsplit(self._url())
        secure = url.scheme == "wss"
        host = url.hostname or ""
        port = url.port or (443 if secure else 80)
        resource = f"{url.path or '/'}?{url.query}"
        try:
            async with trio.open_nursery() as nursery:
                with trio.fail_after(self._config.timeout_s):
                    stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
                    if secure:
                        stream = await trio.open_ssl_over_tcp_stream(
                            host,
                            port,
                            ssl_context=ssl.create_default_context(),
                            https_compatible=True,
                        )
                    else:
                        stream = await trio.open_tcp_stream(host, port)
                try:
                    with trio.fail_after(self._config.timeout_s):
                        ws = await wrap_client_stream(
                            nursery,
                            stream,
                            host if port in (80, 443) else f"{host}:{port}",
                            resource,
                            extra_headers=[(b"X-Kite-Version", b"3")],
                            max_message_size=_MAX_MESSAGE,
                        )
                    yield ws
                    # A polite close on a normal exit; when cancelled, the reader task is gone
                    # and the close handshake could not finish, so the socket just closes.
                    with trio.move_on_after(_DISCONNECT_S):
                        await ws.aclose()
                finally:
                    await trio.aclose_forcefully(stream)
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The reader task's nursery groups what the body raised: hand back the one error.
            leaves = _leaves(group)
            if len(leaves) == 1 and isinstance(leaves[0], Exception):
                raise leaves[0] from None
            raise

    async def _receive(self, shard: _Shard, ws: WebSocketConnection) -> str:
        """Read until the connection closes or stalls; return why it ended."""
        stall = self._config.stall_timeout_s
        while True:
            with trio.move_on_after(stall) as scope:
                message = await ws.get_message()
            if scope.cancelled_caught:
                log.warning("kite.ticker_stalled", shard=shard.index, silent_s=stall)
                return f"no frame for {stall:g}s"
            if isinstance(message, bytes):
                await self._on_binary(message)
            elif shard.index == 0:
                await self._on_text(message)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves
