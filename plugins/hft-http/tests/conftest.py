"""A running host with the ``test`` broker and this transport on a free port, and its users.

Also lets the tests run from a source checkout without installing the plugin.
"""

from __future__ import annotations

import sys
import tempfile
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

import hft_http.plugin  # noqa: E402

import hft  # noqa: E402
import hft.testing._plugin  # noqa: E402
from hft import NetworkError  # noqa: E402
from hft._builtin.memory import MemoryStorage  # noqa: E402
from hft.model import Environment, Role  # noqa: E402
from hft.testing import Services, TestVenue, make_host  # noqa: E402

PASSWORD = "correct horse battery"
ROLES = (Role.ADMIN, Role.TRADER, Role.VIEWER)
KINDS = (Environment.LIVE, Environment.SIM)
#: Accounts each matrix user is granted ("own"), and the ones it is not ("other").
OWN = ("live_a", "sim_a")
OTHER = ("live_b", "sim_b")
ACCOUNTS = (*OWN, *OTHER)


@pytest.fixture
def anyio_backend() -> str:
    """The hft host runs on trio, so async tests do too."""
    return "trio"


class FlakyStorage(MemoryStorage):
    """The in-memory store, whose ping fails while ``down`` (a database gone away) and takes
    ``ping_delay_s`` to answer (a database under load)."""

    down = False
    ping_delay_s = 0.0

    async def ping(self) -> None:
        if self.ping_delay_s:
            await anyio.sleep(self.ping_delay_s)
        if self.down:
            raise NetworkError("storage unreachable: connection refused")


def _storage_plugin(storage: FlakyStorage | None) -> types.SimpleNamespace:
    """``flaky://``: a new store, or ``storage`` again (a restart on the same database)."""

    def hft_register_storage(register: Any) -> None:
        register("flaky", FlakyStorage if storage is None else (lambda url: storage))

    return types.SimpleNamespace(hft_register_storage=hft.hookimpl(hft_register_storage))


def host_config(**http: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "port": 0,
        "access_log": False,
        "rate_limit_per_s": 100_000,
        "rate_limit_burst": 100_000,
        "anonymous_rate_limit_per_s": 100_000,
        "anonymous_rate_limit_burst": 100_000,
    }
    settings.update(http)
    return {
        "storage": {"url": "flaky://"},
        "brokers": {"venue": {"plugin": "test", "accounts": ["A1", "A2", "P1", "P2"]}},
        "accounts": {
            "live_a": {"broker": "venue", "broker_account": "A1", "environment": "live"},
            "live_b": {"broker": "venue", "broker_account": "A2", "environment": "live"},
            "sim_a": {"broker": "venue", "broker_account": "P1", "environment": "sim"},
            "sim_b": {"broker": "venue", "broker_account": "P2", "environment": "sim"},
        },
        "transports": {"http": settings},
        # Cheap hashes: the tests sign in often, and hashing cost is not what they test.
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
    }


def user_name(role: Role, kind: Environment) -> str:
    return f"{role}_{kind}"


@attrs.define
class Harness:
    """A running host, an HTTP client on its REST API, and helpers to act as its users."""

    services: Services
    client: httpx.AsyncClient
    base_url: str
    headers: dict[str, dict[str, str]] = attrs.field(factory=dict)

    @property
    def storage(self) -> FlakyStorage:
        assert isinstance(self.services.storage, FlakyStorage)
        return self.services.storage

    @property
    def venue(self) -> TestVenue:
        broker = self.services.brokers["venue"].broker
        venue: TestVenue = broker.venue  # type: ignore[attr-defined]
        return venue

    async def login(self, username: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    async def as_user(self, username: str) -> dict[str, str]:
        """Headers that authenticate as ``username`` (signed in once, then reused)."""
        if username not in self.headers:
            tokens = await self.login(username)
            self.headers[username] = {"Authorization": f"Bearer {tokens['access_token']}"}
        return self.headers[username]

    async def place(self, account: str, username: str = "setup", **fields: Any) -> dict[str, Any]:
        """A resting limit buy of 1 INFY (far below the market) on ``account``."""
        body = {
            "account": account,
            "instrument": "NSE:INFY",
            "side": "BUY",
            "quantity": 1,
            "price": "1000.00",
            **fields,
        }
        response = await self.client.post(
            "/api/v1/orders", json=body, headers=await self.as_user(username)
        )
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()["orders"][0]
        return order

    async def get(self, path: str, username: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, headers=await self.as_user(username), **kwargs)

    async def post(self, path: str, username: str, body: Any = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=await self.as_user(username))

    async def put(self, path: str, username: str, body: Any = None) -> httpx.Response:
        return await self.client.put(path, json=body, headers=await self.as_user(username))

    async def patch(self, path: str, username: str, body: Any = None) -> httpx.Response:
        return await self.client.patch(path, json=body, headers=await self.as_user(username))

    async def delete(self, path: str, username: str) -> httpx.Response:
        return await self.client.delete(path, headers=await self.as_user(username))

    async def settle(self) -> None:
        """Let broker events flow and the journal write."""
        for _ in range(5):
            await anyio.sleep(0.001)
        await self.services.oms.flush()


async def _wait_ready(services: Services) -> None:
    with anyio.fail_after(5):
        while not all(h.ready for h in services.brokers.values()):  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def _add_users(services: Services) -> None:
    auth = services.auth
    if any(u.username == "root" for u in auth.users()):
        return  # a restart on a store that has them
    await auth.add_user("root", PASSWORD, role=Role.ADMIN, kind=Environment.LIVE)
    await auth.add_user(
        "setup", PASSWORD, role=Role.TRADER, kind=Environment.LIVE, accounts=ACCOUNTS
    )
    for role in ROLES:
        for kind in KINDS:
            allowed = OWN if kind is Environment.LIVE else ("sim_a",)
            user = await auth.add_user(
                user_name(role, kind), PASSWORD, role=role, kind=kind, accounts=allowed
            )
            if kind is Environment.SIM:
                # The service never grants a live account to a sim user; a store edited by
                # hand (or an older version) might. The OMS and the API must hold anyway.
                await services.storage.save_user(attrs.evolve(user, accounts=OWN))
    await auth.load()


@asynccontextmanager
async def open_harness(
    *, config: dict[str, Any] | None = None, storage: FlakyStorage | None = None, **http: Any
) -> AsyncIterator[Harness]:
    """A running host; ``http`` overrides ``[transports.http]``, ``config`` other sections;
    ``storage`` is a store to start on (another host's: a restart)."""
    plugins = {
        "test": hft.testing._plugin,
        "http": hft_http.plugin,
        "flaky": _storage_plugin(storage),
    }
    tree = host_config(**http)
    for section, values in (config or {}).items():
        tree[section] = {**tree.get(section, {}), **values}
    # The first start writes the bootstrap users' passwords into the data directory.
    with tempfile.TemporaryDirectory() as data_dir:
        host = make_host(plugins, tree, data_dir=Path(data_dir))
        async with host.running() as services:
            await _wait_ready(services)
            await _add_users(services)
            base_url = services.transports["http"]
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                yield Harness(services, client, base_url)


@pytest.fixture(scope="session")
def harness_factory() -> Callable[..., Any]:
    """``async with harness_factory(**http_settings) as harness:`` for a host of one's own."""
    return open_harness


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with open_harness() as running:
        yield running
