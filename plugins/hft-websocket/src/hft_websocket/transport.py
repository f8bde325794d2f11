"""The ``websocket`` transport: trio-websocket's server inside the host's task group."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import structlog
import trio_websocket

from hft import NetworkError
from hft._host import Services
from hft.contracts import TaskStatus, Transport
from hft_websocket._connection import CloseCode, Connection
from hft_websocket._fanout import Fanout
from hft_websocket.config import WebsocketConfig

__all__ = ["PATH", "WebsocketTransport"]

log = structlog.get_logger("hft.websocket")

PATH = "/v1"


class WebsocketTransport(Transport):
    """Serves ``docs/protocol.md`` on ``ws://host:port/v1``."""

    def __init__(self, config: WebsocketConfig | None = None) -> None:
        self.config = config if config is not None else WebsocketConfig()
        self.connections: set[Connection] = set()

    async def serve(self, services: Services, task_status: TaskStatus) -> None:
        config = self.config

        def scale_of(key: str) -> int | None:
            for handle in services.brokers.values():
                instrument = handle.instruments.get(key)
                if instrument is not None:
                    return instrument.price_scale
            return None

        fanout = Fanout(services.hub, lambda key: scale_of(key) or 2)

        async def handler(request: trio_websocket.WebSocketRequest) -> None:
            if request.path != PATH:
                await request.reject(404)
                return
            ws = await request.accept()
            connection = Connection(ws, services, fanout, config, scale_of)
            self.connections.add(connection)
            try:
                await connection.run()
            finally:
                self.connections.discard(connection)

        serve = functools.partial(
            trio_websocket.serve_websocket,
            handler,
            config.host,
            config.port,
            None,
            # Above the protocol's own limit, which answers with an error and keeps the
            # connection; this one protects the server from a huge frame (close 1009).
            max_message_size=4 * config.max_message_bytes,
            connect_timeout=config.auth_timeout_s,
            disconnect_timeout=2,
        )
        # Shielded, so that cancelling ``serve`` first closes every connection with 1001 (below)
        # rather than dropping them; the server is cancelled once that is done.
        server_scope = anyio.CancelScope(shield=True)

        async def run_server(*, task_status: Any) -> None:
            with server_scope:
                await serve(task_status=task_status)

        async with anyio.create_task_group() as tg:
            tg.start_soon(fanout.run)
            try:
                server = await tg.start(run_server)
            except OSError as exc:
                raise NetworkError(
                    f"transports.websocket: cannot listen on {config.host}:{config.port}: "
                    f"{exc.strerror or exc} (choose another with [transports.websocket] port)",
                    code="bind_failed",
                ) from None
            host = f"[{config.host}]" if ":" in config.host else config.host
            address = f"ws://{host}:{server.port}{PATH}"
            log.info("websocket.listening", address=address)
            services.add_gauge(
                "hft_websocket_connections",
                "Open WebSocket connections, authenticated or not.",
                lambda: len(self.connections),
            )
            task_status.started(address)
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.move_on_after(2, shield=True):
                    async with anyio.create_task_group() as closing:
                        for connection in list(self.connections):
                            closing.start_soon(
                                connection.ws.aclose, CloseCode.GOING_AWAY, "server shutting down"
                            )
                server_scope.cancel()
                tg.cancel_scope.cancel()
