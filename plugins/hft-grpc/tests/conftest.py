"""A running host with the ``test`` broker and this transport on a free port, its users, and a
real gRPC client (grpcio's own channel and the generated stubs).

The host runs on the test's trio loop, so the (blocking) client runs in worker threads.
"""

from __future__ import annotations

import sys
import tempfile
import types
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import grpc
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import hft_grpc.plugin  # noqa: E402
from hft_grpc._generated import (  # noqa: E402  # noqa: E402
    auth_pb2,
    auth_pb2_grpc,
    market_data_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    portfolio_pb2_grpc,
)

import hft  # noqa: E402
import hft.testing._plugin  # noqa: E402
from hft._builtin.memory import MemoryStorage  # noqa: E402
from hft.model import Environment, Role  # noqa: E402
from hft.testing import Services, TestVenue, make_host  # noqa: E402

PASSWORD = "correct horse battery"
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture
def anyio_backend() -> str:
    """The hft host runs on trio, so async tests do too."""
    return "trio"


class SlowStorage(MemoryStorage):
    """The in-memory store, whose journal writes take ``delay_s`` and journal reads
    ``read_delay_s`` (a database under load)."""

    delay_s = 0.0
    read_delay_s = 0.0

    async def append_order_events(self, *args: Any, **kwargs: Any) -> Any:
        if self.delay_s:
            await anyio.sleep(self.delay_s)
        return await super().append_order_events(*args, **kwargs)

    async def order_events(self, *args: Any, **kwargs: Any) -> Any:
        if self.read_delay_s:
            await anyio.sleep(self.read_delay_s)
        return await super().order_events(*args, **kwargs)


def _storage_plugin(storage: SlowStorage | None) -> types.SimpleNamespace:
    """``slow://``: a new store, or ``storage`` again (a restart on the same database)."""

    def hft_register_storage(register: Any) -> None:
        register("slow", SlowStorage if storage is None else (lambda url: storage))

    return types.SimpleNamespace(hft_register_storage=hft.hookimpl(hft_register_storage))


def host_config(**grpc_settings: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "port": 0,
        "login_rate_per_s": 1000,
        "login_burst": 1000,
        "rate_limit_per_s": 10_000,
        "rate_limit_burst": 10_000,
    }
    settings.update(grpc_settings)
    return {
        "storage": {"url": "slow://"},
        "brokers": {"venue": {"plugin": "test", "accounts": ["A1", "A2", "P1"]}},
        "accounts": {
            "live_a": {"broker": "venue", "broker_account": "A1", "environment": "live"},
            "live_b": {"broker": "venue", "broker_account": "A2", "environment": "live"},
            "sim_a": {"broker": "venue", "broker_account": "P1", "environment": "sim"},
        },
        "transports": {"grpc": settings},
        # Cheap hashes: the tests sign in often, and hashing cost is not what they test.
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
    }


class Stubs:
    """The generated stubs of every service on one channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.orders = orders_pb2_grpc.OrderServiceStub(channel)
        self.market = market_data_pb2_grpc.MarketDataServiceStub(channel)
        self.portfolio = portfolio_pb2_grpc.PortfolioServiceStub(channel)


class Harness:
    """A running host, a channel to its gRPC server, and helpers to act as its users."""

    def __init__(self, services: Services, address: str, channel: grpc.Channel) -> None:
        self.services = services
        self.address = address
        self.channel = channel
        self.stubs = Stubs(channel)
        self._metadata: dict[str, Metadata] = {}

    @property
    def storage(self) -> SlowStorage:
        assert isinstance(self.services.storage, SlowStorage)
        return self.services.storage

    @property
    def venue(self) -> TestVenue:
        venue: TestVenue = self.services.brokers["venue"].broker.venue  # type: ignore[attr-defined]
        return venue

    async def call(self, method: Callable[..., Any], request: Any, **kwargs: Any) -> Any:
        """A unary call, in a worker thread (the host runs on this thread's loop)."""
        kwargs.setdefault("timeout", 10)
        return await anyio.to_thread.run_sync(partial(method, request, **kwargs))

    async def fails(self, method: Callable[..., Any], request: Any, **kwargs: Any) -> grpc.RpcError:
        """The error a call ends with (it must fail)."""
        with pytest.raises(grpc.RpcError) as caught:
            await self.call(method, request, **kwargs)
        return caught.value

    def stream(self, method: Callable[..., Any], request: Any, **kwargs: Any) -> Stream:
        """Start a server-streaming call; read it with ``await stream.next()``."""
        return Stream(method(request, **kwargs))

    async def login(self, username: str, password: str = PASSWORD) -> auth_pb2.Tokens:
        reply = await self.call(
            self.stubs.auth.Login, auth_pb2.LoginRequest(username=username, password=password)
        )
        tokens: auth_pb2.Tokens = reply.tokens
        return tokens

    async def as_user(self, username: str) -> Metadata:
        """Call metadata that authenticates as ``username`` (signed in once, then reused)."""
        if username not in self._metadata:
            tokens = await self.login(username)
            self._metadata[username] = (("authorization", f"Bearer {tokens.access_token}"),)
        return self._metadata[username]

    async def place(self, username: str = "alice", **fields: Any) -> orders_pb2.Order:
        """A resting limit buy of 1 INFY (far below the market) on live_a."""
        request = orders_pb2.PlaceRequest(
            **{
                "account": "live_a",
                "instrument": "NSE:INFY",
                "side": 1,
                "quantity": 1,
                "price": "1000.00",
                **fields,
            }
        )
        reply = await self.call(
            self.stubs.orders.Place, request, metadata=await self.as_user(username)
        )
        order: orders_pb2.Order = reply.orders[0]
        return order

    async def settle(self) -> None:
        """Let broker events flow and the journal write."""
        for _ in range(5):
            await anyio.sleep(0.001)
        await self.services.oms.flush()


class Stream:
    """A server stream read from a worker thread, one message per ``next``."""

    def __init__(self, call: Any) -> None:
        self.call = call

    async def next(self, wait_s: float = 5) -> Any:
        with anyio.fail_after(wait_s):
            return await anyio.to_thread.run_sync(partial(next, self.call), abandon_on_cancel=True)

    async def until_error(self) -> tuple[list[Any], grpc.RpcError]:
        """Every message up to the status the stream ends with (it must end in an error)."""
        received = []
        while True:
            try:
                received.append(await self.next())
            except grpc.RpcError as error:
                return received, error

    def cancel(self) -> None:
        self.call.cancel()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.call)


async def _wait_ready(services: Services) -> None:
    with anyio.fail_after(5):
        while not all(h.ready for h in services.brokers.values()):  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def _add_users(services: Services) -> None:
    auth = services.auth
    await auth.add_user("root", PASSWORD, role=Role.ADMIN, kind=Environment.LIVE)
    await auth.add_user(
        "alice", PASSWORD, role=Role.TRADER, kind=Environment.LIVE, accounts=("live_a", "sim_a")
    )
    await auth.add_user(
        "other", PASSWORD, role=Role.TRADER, kind=Environment.LIVE, accounts=("live_b",)
    )
    await auth.add_user(
        "viewer", PASSWORD, role=Role.VIEWER, kind=Environment.LIVE, accounts=("live_a",)
    )
    await auth.add_user(
        "simmer", PASSWORD, role=Role.TRADER, kind=Environment.SIM, accounts=("sim_a",)
    )


@asynccontextmanager
async def open_harness(
    *, storage: SlowStorage | None = None, **grpc_settings: Any
) -> AsyncIterator[Harness]:
    """A running host; ``grpc_settings`` override ``[transports.grpc]``; ``storage`` is a store
    to start on (another host's: a restart)."""
    plugins = {
        "test": hft.testing._plugin,
        "grpc": hft_grpc.plugin,
        "slow": _storage_plugin(storage),
    }
    with tempfile.TemporaryDirectory() as data_dir:
        host = make_host(plugins, host_config(**grpc_settings), data_dir=Path(data_dir))
        async with host.running() as services:
            await _wait_ready(services)
            if storage is None:
                await _add_users(services)
            address = services.transports["grpc"]
            channel = grpc.insecure_channel(address)
            try:
                yield Harness(services, address, channel)
            finally:
                channel.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with open_harness() as running:
        yield running


@pytest.fixture(scope="session")
def harness_factory() -> Callable[..., Any]:
    return open_harness
