"""The ``grpc`` transport: a grpc.aio server on a thread of its own, bridged to the host's loop.

``serve`` (on the host's trio loop) starts the server thread, which runs an asyncio loop with
the grpc.aio server; every RPC reaches the host through :class:`~hft_grpc._bridge.Bridge`.
Shutdown drains: the server stops taking calls, open streams end with ``UNAVAILABLE``
``shutting_down`` (clients reconnect, and resume order events by seq), and unary calls in flight
finish within ``graceful_timeout_s`` while the host's services are still up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
import grpc
import grpc.aio
import structlog
import trio

from hft import NetworkError
from hft._host import Services
from hft.contracts import TaskStatus, Transport
from hft_grpc._api import HostApi
from hft_grpc._bridge import Bridge
from hft_grpc._server import Server
from hft_grpc.config import GrpcConfig

__all__ = ["GrpcTransport"]

log = structlog.get_logger("hft.grpc")


class GrpcTransport(Transport):
    """Serves the ``hft.v1`` gRPC services; see :mod:`hft_grpc`."""

    def __init__(self, config: GrpcConfig | None = None) -> None:
        self.config = config if config is not None else GrpcConfig()

    async def serve(self, services: Services, task_status: TaskStatus) -> None:
        config = self.config
        api = HostApi(services, config)
        stop = anyio.Event()
        # Shielded, so that cancelling ``serve`` starts a drain (``stop``) in which calls in
        # flight still reach the host, instead of cutting them off; bounded by a deadline below.
        server_scope = anyio.CancelScope(shield=True)

        async def run(*, task_status: anyio.abc.TaskStatus[str]) -> None:
            with server_scope:
                async with anyio.create_task_group() as calls:
                    bridge = Bridge(trio.lowlevel.current_trio_token(), calls)
                    thread = _ServerThread(Server(api, bridge, config))
                    address = await anyio.to_thread.run_sync(thread.start)
                    task_status.started(address)
                    try:
                        await stop.wait()
                    finally:
                        api.close_streams()
                        await anyio.to_thread.run_sync(thread.stop)
                        calls.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            try:
                address: str = await tg.start(run)
            except* OSError as group:
                raise NetworkError(
                    f"transports.grpc: cannot listen on {config.host}:{config.port}: "
                    f"{_first_leaf(group)} "
                    "(choose another with [transports.grpc] port, or HFT_TRANSPORTS__GRPC__PORT)",
                    code="bind_failed",
                ) from None
            log.info("grpc.listening", address=address)
            task_status.started(address)
            try:
                await anyio.sleep_forever()
            finally:
                log.info("grpc.stopping")
                stop.set()
                server_scope.deadline = anyio.current_time() + config.graceful_timeout_s + 2


class _ServerThread:
    """The thread that owns the asyncio loop and the grpc.aio server."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._started: concurrent.futures.Future[str] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="hft-grpc", daemon=True)

    def start(self) -> str:
        """Start the thread; block until the server listens, and return its address."""
        self._thread.start()
        return self._started.result()

    def stop(self) -> None:
        """Ask the server to drain and stop; block until the thread has ended."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(stop.set)
        self._thread.join()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the host through the future
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                log.error("grpc.crashed", error=repr(exc), exc_info=exc)

    async def _run(self) -> None:
        config = self._server.config
        self._loop = asyncio.get_running_loop()
        self._server.bridge.attach(self._loop)
        self._stop = asyncio.Event()
        keepalive_ms = int(config.keepalive_s * 1000)
        limits: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", keepalive_ms),
            ("grpc.keepalive_timeout_ms", min(keepalive_ms, 20_000)),
            # Streams may be quiet for long: ping (and let clients ping) with no data flowing.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", min(keepalive_ms, 10_000)),
        ]
        server = grpc.aio.server(options=limits)
        server.add_generic_rpc_handlers(self._server.handlers())
        host = f"[{config.host}]" if ":" in config.host else config.host
        try:
            port = server.add_insecure_port(f"{host}:{config.port}")
        except RuntimeError as exc:
            raise OSError(str(exc)) from None
        await server.start()
        self._started.set_result(f"{host}:{port}")
        await self._stop.wait()
        # Refuses new calls at once; calls in flight have the grace period, then are cancelled.
        await server.stop(config.graceful_timeout_s)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
