"""The ``lines`` transport: newline-delimited JSON over TCP on loopback, for tests only.

Each line a client sends is one request, an object with an ``id`` (echoed back) and an ``op``;
each line it receives is one reply. Requests are answered concurrently, so replies can come back
in any order: match them by ``id``.

- ``{"op": "submit", "order": {...}}`` submits an :class:`~hft.model.OrderRequest` (as
  ``hft.model.converter`` structures it) and replies ``{"ok": true, "orders": [...]}`` once
  ``OrderManager.submit`` has returned, i.e. once the orders are durable and the broker has
  answered;
- ``{"op": "orders"}`` replies every order the user can see, ``{"op": "positions"}`` the
  positions of the user's accounts, ``{"op": "readiness"}`` the host's readiness map (a broker
  is ready once connected and reconciled);
- a failure replies ``{"ok": false, "code": ..., "message": ...}``.

There is no login: the transport acts for the user its ``[transports.lines]`` section describes
(``username``, ``accounts``, ``role``), and only on 127.0.0.1. ``port = 0`` (the default) binds any
free port; the bound address is what the host logs in ``host.started``.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

import hft
from hft import HftError, ValidationError
from hft.contracts import TaskStatus, Transport
from hft.model import Environment, OrderRequest, Role, User, converter

if TYPE_CHECKING:
    from hft._host import Services
    from hft._plugins import PluginContext
    from hft.hookspecs import RegisterTransport

__all__ = ["LineClientConfig", "LineTransport", "hft_register_transports"]

MAX_LINE = 1 << 20


@attrs.frozen
class LineClientConfig:
    """``[transports.lines]`` keys."""

    port: int = 0
    username: str = "lines"
    accounts: tuple[str, ...] = ()
    role: Role = Role.TRADER
    kind: Environment = Environment.LIVE


class LineTransport(Transport):
    """Serves the line protocol for the configured user."""

    def __init__(self, config: LineClientConfig) -> None:
        self.config = config
        self.user = User(config.username, config.role, config.kind, config.accounts)

    async def serve(self, services: Services, task_status: TaskStatus) -> None:
        listener = await anyio.create_tcp_listener(
            local_host="127.0.0.1", local_port=self.config.port
        )
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started(f"127.0.0.1:{port}")
        async with listener:
            await listener.serve(lambda stream: self._session(services, stream))

    async def _session(self, services: Services, stream: anyio.abc.SocketStream) -> None:
        lines = BufferedByteReceiveStream(stream)
        sending = anyio.Lock()
        async with stream, anyio.create_task_group() as requests:
            while True:
                try:
                    line = await lines.receive_until(b"\n", MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    break
                except anyio.DelimiterNotFound:
                    await self._send(stream, sending, _error(None, "bad_request", "line too long"))
                    break
                requests.start_soon(self._answer, services, stream, sending, line)

    async def _answer(
        self,
        services: Services,
        stream: anyio.abc.SocketStream,
        sending: anyio.Lock,
        line: bytes,
    ) -> None:
        try:
            request = json.loads(line)
        except ValueError:
            await self._send(stream, sending, _error(None, "bad_request", "not JSON"))
            return
        if not isinstance(request, dict):
            await self._send(stream, sending, _error(None, "bad_request", "not a JSON object"))
            return
        request_id = request.get("id")
        try:
            reply = await self._handle(services, request)
        except HftError as exc:
            reply = _error(request_id, exc.code, exc.message)
        except Exception as exc:  # a malformed order: cattrs' own errors
            reply = _error(request_id, "bad_request", repr(exc))
        else:
            reply = {"id": request_id, "ok": True, **reply}
        await self._send(stream, sending, reply)

    async def _handle(self, services: Services, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "submit":
            order = converter.structure(request.get("order"), OrderRequest)
            orders = await services.oms.submit(self.user, order)
            return {"orders": converter.unstructure(orders)}
        if op == "orders":
            return {"orders": converter.unstructure(services.oms.orders(self.user))}
        if op == "positions":
            positions = [p for a in self.user.accounts for p in services.portfolio.positions(a)]
            return {"positions": converter.unstructure(positions)}
        if op == "readiness":
            return {"readiness": services.readiness()}
        raise ValidationError(f"unknown op {op!r}", code="bad_request")

    @staticmethod
    async def _send(
        stream: anyio.abc.SocketStream, sending: anyio.Lock, reply: dict[str, Any]
    ) -> None:
        data = json.dumps(reply, separators=(",", ":")).encode() + b"\n"
        # A client that went away misses its replies; its requests still took effect.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            async with sending:
                await stream.send(data)


def _error(request_id: object, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "code": code, "message": message}


def _make_transport(config: LineClientConfig, context: PluginContext) -> LineTransport:
    return LineTransport(config)


@hft.hookimpl
def hft_register_transports(register: RegisterTransport) -> None:
    register("lines", _make_transport, config=LineClientConfig)
