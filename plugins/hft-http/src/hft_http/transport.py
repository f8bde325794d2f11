"""The ``http`` transport: the app served by hypercorn's trio worker inside the host."""

from __future__ import annotations

from typing import Any

import anyio
import structlog
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from hft import NetworkError
from hft._host import Services
from hft.contracts import TaskStatus, Transport
from hft_http.app import build_app
from hft_http.config import HttpConfig

__all__ = ["HttpTransport"]

log = structlog.get_logger("hft.http")


class HttpTransport(Transport):
    """Serves the REST API; see :mod:`hft_http`."""

    def __init__(self, config: HttpConfig | None = None) -> None:
        self.config = config if config is not None else HttpConfig()

    async def serve(self, services: Services, task_status: TaskStatus) -> None:
        config = self.config
        app, state = build_app(services, config)

        server = HypercornConfig()
        server.bind = [f"{_bracketed(config.host)}:{config.port}"]
        server.graceful_timeout = config.graceful_timeout_s
        server.keep_alive_timeout = config.keep_alive_timeout_s
        server.accesslog = None  # the edge middleware logs requests, with correlation ids
        server.errorlog = None
        server.include_server_header = False

        stop = anyio.Event()
        # Shielded, so that cancelling ``serve`` starts a graceful drain (``stop``) instead of
        # dropping requests in flight; hypercorn bounds the drain by ``graceful_timeout_s``, and
        # a deadline set at shutdown bounds it here too.
        server_scope = anyio.CancelScope(shield=True)

        async def run_server(*, task_status: Any) -> None:
            with server_scope:
                await hypercorn_serve(
                    app,  # type: ignore[arg-type]
                    server,
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )

        async with anyio.create_task_group() as tg:
            try:
                binds: list[str] = await tg.start(run_server)
            except* OSError as group:
                # hypercorn binds inside its own nursery, so the error arrives in a group.
                exc = _first_leaf(group)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise NetworkError(
                    f"transports.http: cannot listen on {config.host}:{config.port}: {reason} "
                    "(choose another with [transports.http] port, or HFT_TRANSPORTS__HTTP__PORT)",
                    code="bind_failed",
                ) from None
            tg.start_soon(state.metrics.watch_orders)
            address = binds[0]
            log.info("http.listening", address=address, docs=config.docs_enabled)
            task_status.started(address)
            try:
                await anyio.sleep_forever()
            finally:
                log.info("http.stopping")
                stop.set()
                server_scope.deadline = anyio.current_time() + config.graceful_timeout_s + 1
                tg.cancel_scope.cancel()


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
