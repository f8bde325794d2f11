"""The authorization matrix: every endpoint × every role × own/other account × sim/live user
and account → the exact status.

Six users (admin, trader, viewer; each live and sim) are granted ``live_a`` and ``sim_a``
("own"); ``live_b`` and ``sim_b`` are "other". The sim users' grant of ``live_a`` is written
straight into storage (the auth service refuses to make it), so the matrix shows that a sim user
never reaches a live account even when a grant says it may.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import pytest

from hft.model import Environment, Role

PASSWORD = "correct horse battery"  # as in conftest
ROLES = (Role.ADMIN, Role.TRADER, Role.VIEWER)
KINDS = (Environment.LIVE, Environment.SIM)
OWN = ("live_a", "sim_a")
ACCOUNTS = ("live_a", "sim_a", "live_b", "sim_b")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(scope="module")
async def matrix(harness_factory: Any) -> AsyncIterator[Any]:
    async with harness_factory() as harness:
        await harness.services.auth.add_user(
            "victim", "victim-password", role=Role.VIEWER, kind=Environment.LIVE
        )
        yield harness


# The rules, stated once ---------------------------------------------------------------------


def reaches(kind: Environment, account: str) -> bool:
    """Granted, and never a sim user on a live account."""
    return account in OWN and not (kind is Environment.SIM and account.startswith("live"))


def sees(role: Role, kind: Environment, account: str) -> bool:
    return role is Role.ADMIN or reaches(kind, account)


def trades(role: Role, kind: Environment, account: str) -> bool:
    # Admins trade only accounts granted to them, like traders; viewers never trade.
    return role is not Role.VIEWER and reaches(kind, account)


def read(role: Role, kind: Environment, account: str) -> int:
    return 200 if sees(role, kind, account) else 403


def read_order(role: Role, kind: Environment, account: str) -> int:
    return 200 if sees(role, kind, account) else 404


def place(role: Role, kind: Environment, account: str) -> int:
    return 201 if trades(role, kind, account) else 403


def change_order(role: Role, kind: Environment, account: str) -> int:
    if not sees(role, kind, account):
        return 404
    return 200 if trades(role, kind, account) else 403


def admin_only(ok: int = 200) -> Callable[[Role, Environment, str], int]:
    return lambda role, kind, account: ok if role is Role.ADMIN else 403


# Endpoints ----------------------------------------------------------------------------------


Prepare = Callable[[Any, str, str], Awaitable[dict[str, str]]]


@attrs.frozen
class Endpoint:
    """One endpoint; ``{placeholders}`` in ``path`` and ``body`` are filled per case.

    ``prepare(harness, account, username)`` makes what the call needs (an order to change, a
    key to revoke, a session to end) and returns more placeholders; ``{account}`` and ``{n}``
    (a number unique to the call) are always there. A ``{token}`` placeholder means the call
    uses that fresh session rather than the user's usual one.
    """

    name: str
    method: str
    path: str
    expected: Callable[[Role, Environment, str], int]
    body: dict[str, Any] | None = None
    prepare: Prepare | None = None
    ends_sessions: bool = False  # the call voids the user's tokens (a password change)


async def _order(harness: Any, account: str, username: str) -> dict[str, str]:
    order = await harness.place(account)
    await harness.settle()  # acknowledged by the broker, so it can be changed
    return {"order": order["order_id"]}


async def _api_key(harness: Any, account: str, username: str) -> dict[str, str]:
    response = await harness.client.post(
        "/api/v1/me/api-keys", json={"name": "matrix"}, headers=await harness.as_user(username)
    )
    return {"key": response.json()["info"]["key_id"]}


async def _watched(harness: Any, account: str, username: str) -> dict[str, str]:
    await harness.client.post(
        "/api/v1/watchlist",
        json={"instrument": "NSE:RELIANCE"},
        headers=await harness.as_user(username),
    )
    return {}


async def _session(harness: Any, account: str, username: str) -> dict[str, str]:
    tokens = await harness.login(username)
    return {"token": tokens["access_token"], "refresh": tokens["refresh_token"]}


ORDER = {"account": "{account}", "instrument": "NSE:INFY", "side": "BUY", "quantity": 1}

ACCOUNT_ENDPOINTS = [
    Endpoint("get account", "GET", "/api/v1/accounts/{account}", read),
    Endpoint("account pnl", "GET", "/api/v1/accounts/{account}/pnl", read),
    Endpoint("list orders", "GET", "/api/v1/orders?account={account}", read),
    Endpoint("positions", "GET", "/api/v1/positions?account={account}", read),
    Endpoint("holdings", "GET", "/api/v1/holdings?account={account}", read),
    Endpoint("trades", "GET", "/api/v1/trades?account={account}", read),
    Endpoint("place order", "POST", "/api/v1/orders", place, {**ORDER, "price": "1000.00"}),
    Endpoint("get order", "GET", "/api/v1/orders/{order}", read_order, prepare=_order),
    Endpoint(
        "modify order",
        "PATCH",
        "/api/v1/orders/{order}",
        change_order,
        {"price": "1001.00"},
        prepare=_order,
    ),
    Endpoint("cancel order", "DELETE", "/api/v1/orders/{order}", change_order, prepare=_order),
    Endpoint("get kill switch", "GET", "/api/v1/risk/kill-switch/{account}", admin_only()),
    Endpoint(
        "set kill switch",
        "PUT",
        "/api/v1/risk/kill-switch/{account}",
        admin_only(),
        {"mode": "off", "reason": "matrix"},
    ),
    Endpoint(
        "set an account's risk limit",
        "PUT",
        "/api/v1/risk/limits/max_order_quantity",
        admin_only(),
        {"enabled": True, "settings": {"max_quantity": 1_000_000}, "account": "{account}"},
    ),
    Endpoint("grant account", "PUT", "/api/v1/users/setup/accounts/{account}", admin_only()),
    Endpoint("revoke account", "DELETE", "/api/v1/users/victim/accounts/{account}", admin_only()),
]


def everyone(ok: int = 200) -> Callable[[Role, Environment, str], int]:
    return lambda role, kind, account: ok


GLOBAL_ENDPOINTS = [
    Endpoint("me", "GET", "/api/v1/me", everyone()),
    Endpoint("my api keys", "GET", "/api/v1/me/api-keys", everyone()),
    Endpoint("create api key", "POST", "/api/v1/me/api-keys", everyone(201), {"name": "k{n}"}),
    Endpoint(
        "revoke api key", "DELETE", "/api/v1/me/api-keys/{key}", everyone(204), prepare=_api_key
    ),
    Endpoint(
        "logout",
        "POST",
        "/api/v1/auth/logout",
        everyone(204),
        {"refresh_token": "{refresh}"},
        prepare=_session,
    ),
    Endpoint(
        "change my password",
        "PUT",
        "/api/v1/me/password",
        everyone(204),
        {"current_password": PASSWORD, "new_password": PASSWORD},
        ends_sessions=True,
    ),
    Endpoint("accounts", "GET", "/api/v1/accounts", everyone()),
    Endpoint("all orders", "GET", "/api/v1/orders", everyone()),
    Endpoint("all positions", "GET", "/api/v1/positions", everyone()),
    Endpoint("all holdings", "GET", "/api/v1/holdings", everyone()),
    Endpoint("all trades", "GET", "/api/v1/trades", everyone()),
    Endpoint("instruments", "GET", "/api/v1/instruments?q=INF", everyone()),
    Endpoint("instrument", "GET", "/api/v1/instruments/NSE:INFY", everyone()),
    Endpoint("quotes", "GET", "/api/v1/quotes?instruments=NSE:INFY", everyone()),
    Endpoint("watchlist", "GET", "/api/v1/watchlist", everyone()),
    Endpoint("watch", "POST", "/api/v1/watchlist", everyone(), {"instrument": "NSE:TCS"}),
    Endpoint("unwatch", "DELETE", "/api/v1/watchlist/NSE:RELIANCE", everyone(), prepare=_watched),
    Endpoint(
        "create account",
        "POST",
        "/api/v1/accounts",
        admin_only(201),
        {"account_id": "new{n}", "broker": "venue", "broker_account": "P1"},
    ),
    Endpoint(
        "create user",
        "POST",
        "/api/v1/users",
        admin_only(201),
        {"username": "user{n}", "password": PASSWORD, "role": "viewer", "kind": "sim"},
    ),
    Endpoint("users", "GET", "/api/v1/users", admin_only()),
    Endpoint("user", "GET", "/api/v1/users/victim", admin_only()),
    Endpoint("update user", "PATCH", "/api/v1/users/victim", admin_only(), {"disabled": False}),
    Endpoint(
        "set password",
        "PUT",
        "/api/v1/users/victim/password",
        admin_only(204),
        {"password": "victim-password"},
    ),
    Endpoint("kill switches", "GET", "/api/v1/risk/kill-switch", admin_only()),
    Endpoint(
        "set global kill switch",
        "PUT",
        "/api/v1/risk/kill-switch",
        admin_only(),
        {"mode": "off", "reason": "matrix"},
    ),
    Endpoint("risk limits", "GET", "/api/v1/risk/limits", admin_only()),
    Endpoint(
        "set a risk limit",
        "PUT",
        "/api/v1/risk/limits/max_order_quantity",
        admin_only(),
        {"enabled": True, "settings": {"max_quantity": 1_000_000}},
    ),
]

USERS = [(role, kind) for role in ROLES for kind in KINDS]


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, replacement in values.items():
            value = value.replace(f"{{{name}}}", replacement)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


_calls = itertools.count()


async def _call(
    harness: Any, endpoint: Endpoint, account: str, username: str | None
) -> tuple[int, Any]:
    """Call ``endpoint`` as ``username`` (``None``: with no credentials at all)."""
    values = {"account": account, "n": str(next(_calls)), "order": "0000", "key": "0000"}
    if endpoint.prepare is not None and username is not None:
        values.update(await endpoint.prepare(harness, account, username))
    headers: dict[str, str] = {}
    if username is not None:
        headers = await harness.as_user(username)
        if "token" in values:
            headers = {"Authorization": f"Bearer {values['token']}"}
    response = await harness.client.request(
        endpoint.method,
        _fill(endpoint.path, values),
        json=_fill(endpoint.body, values),
        headers=headers,
    )
    if endpoint.ends_sessions and username is not None and response.status_code < 300:
        harness.headers.pop(username, None)  # that token was voided: sign in again next time
    return response.status_code, response.json() if response.content else None


@pytest.mark.anyio
@pytest.mark.parametrize(("role", "kind"), USERS, ids=[f"{r}-{k}" for r, k in USERS])
@pytest.mark.parametrize("account", ACCOUNTS)
@pytest.mark.parametrize("endpoint", ACCOUNT_ENDPOINTS, ids=lambda e: e.name)
async def test_account_endpoints(
    matrix: Any, endpoint: Endpoint, account: str, role: Role, kind: Environment
) -> None:
    status, body = await _call(matrix, endpoint, account, f"{role}_{kind}")
    expected = endpoint.expected(role, kind, account)
    assert status == expected, body
    if status == 403:
        assert body["error"]["code"] == "forbidden"
    if status == 404:
        assert body["error"]["code"] == "not_found"


@pytest.mark.anyio
@pytest.mark.parametrize(("role", "kind"), USERS, ids=[f"{r}-{k}" for r, k in USERS])
@pytest.mark.parametrize("endpoint", GLOBAL_ENDPOINTS, ids=lambda e: e.name)
async def test_global_endpoints(
    matrix: Any, endpoint: Endpoint, role: Role, kind: Environment
) -> None:
    status, body = await _call(matrix, endpoint, "live_a", f"{role}_{kind}")
    assert status == endpoint.expected(role, kind, "live_a"), body
    if status == 403:
        assert body["error"]["code"] == "forbidden"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "endpoint",
    [*ACCOUNT_ENDPOINTS, *GLOBAL_ENDPOINTS],
    ids=lambda e: e.name,
)
async def test_no_credentials_is_401_everywhere(matrix: Any, endpoint: Endpoint) -> None:
    status, body = await _call(matrix, endpoint, "live_a", None)
    assert status == 401, body
    assert body["error"]["code"] == "missing_credentials"


@pytest.mark.anyio
async def test_what_each_user_sees_in_lists(matrix: Any) -> None:
    """Lists are filtered, not refused: each user gets exactly the accounts it may see."""
    for role, kind in USERS:
        headers = await matrix.as_user(f"{role}_{kind}")
        response = await matrix.client.get("/api/v1/accounts", headers=headers)
        seen = {a["account_id"] for a in response.json()} & set(ACCOUNTS)
        assert seen == {a for a in ACCOUNTS if sees(role, kind, a)}, (role, kind)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "path", ["/health", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"]
)
async def test_operations_endpoints_need_no_credentials(matrix: Any, path: str) -> None:
    assert (await matrix.client.get(path)).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(("role", "kind"), USERS, ids=[f"{r}-{k}" for r, k in USERS])
async def test_every_user_signs_in_and_refreshes(
    matrix: Any, role: Role, kind: Environment
) -> None:
    tokens = await matrix.login(f"{role}_{kind}")
    refreshed = await matrix.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200
