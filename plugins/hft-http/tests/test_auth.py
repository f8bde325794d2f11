"""Sign-in, tokens, sessions and API keys, over HTTP (the rules themselves are the core's)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"  # every test user's (conftest.PASSWORD)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def code(response: Any) -> str:
    value: str = response.json()["error"]["code"]
    return value


async def test_login_gives_a_working_token_pair(harness: Any) -> None:
    tokens = await harness.login("trader_live")
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in_s"] == 900
    response = await harness.client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json() == {
        "username": "trader_live",
        "role": "trader",
        "kind": "live",
        "accounts": ["live_a", "sim_a"],
        "disabled": False,
    }


@pytest.mark.parametrize(
    ("username", "password"), [("trader_live", "wrong password!"), ("nobody", PASSWORD)]
)
async def test_wrong_credentials_are_one_error(harness: Any, username: str, password: str) -> None:
    response = await harness.client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 401
    assert code(response) == "invalid_credentials"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_malformed_or_foreign_token_is_refused(harness: Any) -> None:
    for header in ("Bearer not-a-jwt", "Bearer", "Basic dXNlcjpwYXNz"):
        response = await harness.client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert code(response) in ("invalid_token", "missing_credentials")


async def test_an_expired_access_token_is_refused_and_refresh_renews(harness_factory: Any) -> None:
    async with harness_factory(config={"auth": {"access_ttl_s": 1}}) as harness:
        tokens = await harness.login("trader_live")
        me = await harness.client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        await anyio.sleep(1.1)
        expired = await harness.client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
        assert expired.status_code == 401
        assert code(expired) == "token_expired"

        renewed = await harness.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert renewed.status_code == 200
        fresh = renewed.json()
        me = await harness.client.get("/api/v1/me", headers=bearer(fresh["access_token"]))
        assert me.status_code == 200

        # The refresh token was rotated: presenting the old one again ends the session.
        reused = await harness.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert reused.status_code == 401
        assert code(reused) == "token_revoked"
        gone = await harness.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}
        )
        assert code(gone) == "token_revoked"


async def test_logout_revokes_the_access_and_refresh_tokens(harness: Any) -> None:
    tokens = await harness.login("viewer_live")
    headers = bearer(tokens["access_token"])
    response = await harness.client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert response.status_code == 204
    assert response.content == b""
    after = await harness.client.get("/api/v1/me", headers=headers)
    assert after.status_code == 401
    assert code(after) == "token_revoked"
    refresh = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 401
    # Other sessions of the same user go on.
    assert (await harness.get("/api/v1/me", "viewer_live")).status_code == 200


async def test_logout_without_a_body_ends_the_session(harness: Any) -> None:
    tokens = await harness.login("viewer_live")
    headers = bearer(tokens["access_token"])
    assert (await harness.client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert (await harness.client.get("/api/v1/me", headers=headers)).status_code == 401


async def test_password_change_voids_every_earlier_token(harness: Any) -> None:
    old = await harness.login("trader_live")
    other = await harness.login("trader_live")
    response = await harness.client.put(
        "/api/v1/me/password",
        json={"current_password": PASSWORD, "new_password": "a new password"},
        headers=bearer(old["access_token"]),
    )
    assert response.status_code == 204
    for tokens in (old, other):
        me = await harness.client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
        assert code(me) == "token_revoked"
        refresh = await harness.client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refresh.status_code == 401
        assert code(refresh) == "token_revoked"
    stale = await harness.client.post(
        "/api/v1/auth/login", json={"username": "trader_live", "password": PASSWORD}
    )
    assert stale.status_code == 401
    assert (await harness.login("trader_live", "a new password"))["access_token"]


async def test_password_change_needs_the_current_password(harness: Any) -> None:
    response = await harness.put(
        "/api/v1/me/password",
        "trader_live",
        {"current_password": "not my password", "new_password": "a new password"},
    )
    assert response.status_code == 401
    assert code(response) == "invalid_credentials"
    weak = await harness.put(
        "/api/v1/me/password",
        "trader_live",
        {"current_password": PASSWORD, "new_password": "short"},
    )
    assert weak.status_code == 400
    assert code(weak) == "weak_password"
    # Neither attempt changed anything.
    assert (await harness.get("/api/v1/me", "trader_live")).status_code == 200


async def test_an_admin_password_reset_voids_the_users_refresh_tokens(harness: Any) -> None:
    tokens = await harness.login("trader_sim")
    response = await harness.put(
        "/api/v1/users/trader_sim/password", "root", {"password": "reset by admin"}
    )
    assert response.status_code == 204
    refresh = await harness.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 401
    assert code(refresh) == "token_revoked"
    assert await harness.login("trader_sim", "reset by admin")


async def test_disabling_a_user_stops_their_tokens_and_keys_at_once(harness: Any) -> None:
    created = await harness.post("/api/v1/me/api-keys", "trader_live", {"name": "bot"})
    key = created.json()["key"]
    headers = await harness.as_user("trader_live")
    disabled = await harness.patch("/api/v1/users/trader_live", "root", {"disabled": True})
    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True
    by_token = await harness.client.get("/api/v1/me", headers=headers)
    assert by_token.status_code == 403
    assert code(by_token) == "user_disabled"
    by_key = await harness.client.get("/api/v1/me", headers={"X-API-Key": key})
    assert by_key.status_code == 403
    login = await harness.client.post(
        "/api/v1/auth/login", json={"username": "trader_live", "password": PASSWORD}
    )
    assert code(login) == "user_disabled"

    await harness.patch("/api/v1/users/trader_live", "root", {"disabled": False})
    # Re-enabled: the key works again; tokens from before stay void.
    assert (await harness.client.get("/api/v1/me", headers={"X-API-Key": key})).status_code == 200
    assert (await harness.client.get("/api/v1/me", headers=headers)).status_code == 401


async def test_api_key_lifecycle(harness: Any) -> None:
    created = await harness.post("/api/v1/me/api-keys", "trader_live", {"name": "my bot"})
    assert created.status_code == 201
    body = created.json()
    key, info = body["key"], body["info"]
    assert key.startswith("hft_")
    assert info["name"] == "my bot"
    assert info["last_used_at"] is None

    listed = (await harness.get("/api/v1/me/api-keys", "trader_live")).json()
    assert [k["key_id"] for k in listed] == [info["key_id"]]
    assert key not in str(listed)

    for headers in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}):
        me = await harness.client.get("/api/v1/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["username"] == "trader_live"
    # An API key can trade like the user.
    placed = await harness.client.post(
        "/api/v1/orders",
        json={
            "account": "live_a",
            "instrument": "NSE:INFY",
            "side": "BUY",
            "quantity": 1,
            "price": "1000.00",
        },
        headers={"X-API-Key": key},
    )
    assert placed.status_code == 201
    assert placed.json()["orders"][0]["user"] == "trader_live"
    listed = (await harness.get("/api/v1/me/api-keys", "trader_live")).json()
    assert listed[0]["last_used_at"] is not None

    # Keys are per user: another user neither sees nor revokes it.
    assert (await harness.get("/api/v1/me/api-keys", "trader_sim")).json() == []
    foreign = await harness.delete(f"/api/v1/me/api-keys/{info['key_id']}", "trader_sim")
    assert foreign.status_code == 404

    revoked = await harness.delete(f"/api/v1/me/api-keys/{info['key_id']}", "trader_live")
    assert revoked.status_code == 204
    refused = await harness.client.get("/api/v1/me", headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert code(refused) == "invalid_api_key"
    again = await harness.delete(f"/api/v1/me/api-keys/{info['key_id']}", "trader_live")
    assert again.status_code == 404


async def test_logout_is_for_token_sessions_not_api_keys(harness: Any) -> None:
    key = (await harness.post("/api/v1/me/api-keys", "viewer_live", {"name": "k"})).json()["key"]
    response = await harness.client.post("/api/v1/auth/logout", headers={"X-API-Key": key})
    assert response.status_code == 400
    assert code(response) == "not_a_token_session"
