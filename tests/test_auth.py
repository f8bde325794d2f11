"""Users, sessions and API keys through :class:`hft._auth.AuthService`, as a transport uses it."""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import logging
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import jwt
import pytest
import structlog
from hypothesis import assume, given
from hypothesis import strategies as st

import hft.testing._plugin
from hft import AuthError, ConfigError, Conflict, NotFound, Secret, ValidationError
from hft._auth import PASSWORD_FILE, AuthService, TokenPair, require_admin, require_trader
from hft._builtin.memory import MemoryStorage
from hft._config import AuthSection, config_from_mapping, resolve_config
from hft._host import open_storage
from hft._logging import configure
from hft._plugins import PluginHost
from hft.contracts import Storage
from hft.model import Account, Environment, Role, User
from hft.testing import make_host

# argon2 at its cheapest, so that each test hashes in microseconds.
FAST: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}
CONFIG = AuthSection(access_ttl_s=60, refresh_ttl_s=3600, **FAST)
PASSWORD = "correct horse battery"
START = 1_750_000_000.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _with_accounts(storage: Storage) -> Storage:
    await storage.open()
    await storage.save_account(Account("paper", "sim", "default", Environment.SIM))
    await storage.save_account(Account("main", "zerodha", "AB1234", Environment.LIVE))
    return storage


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def storage() -> Storage:
    return await _with_accounts(MemoryStorage("memory://"))


@pytest.fixture
async def auth(storage: Storage, clock: Clock) -> AuthService:
    service = AuthService(storage, CONFIG, clock=clock)
    await service.load()
    await service.add_user(
        "alice", PASSWORD, role=Role.TRADER, kind=Environment.SIM, accounts=["paper"]
    )
    return service


def code_of(call: Any, *args: Any) -> str:
    """The ``code`` of the AuthError that ``call(*args)`` raises."""
    with pytest.raises(AuthError) as info:
        call(*args)
    return info.value.code


async def acode_of(call: Any, *args: Any) -> str:
    with pytest.raises(AuthError) as info:
        await call(*args)
    return info.value.code


# ----------------------------------------------------------------------------------------------
# Logging in


@pytest.mark.anyio
async def test_login_gives_tokens_that_authenticate_the_user(auth: AuthService) -> None:
    tokens = await auth.login("alice", PASSWORD)
    assert tokens.token_type == "bearer"
    assert tokens.expires_in_s == 60
    user = auth.authenticate(tokens.access_token)
    assert user == User("alice", Role.TRADER, Environment.SIM, ("paper",))
    assert auth.authenticate(f"Bearer {tokens.access_token}") == user
    assert auth.authenticate(f"bearer  {tokens.access_token} ") == user


@pytest.mark.anyio
async def test_an_unknown_user_and_a_wrong_password_get_the_same_error(
    auth: AuthService, storage: Storage
) -> None:
    errors = []
    for username, password in [("alice", "wrong password"), ("mallory", PASSWORD)]:
        with pytest.raises(AuthError) as info:
            await auth.login(username, password)
        errors.append((info.value.code, info.value.message, info.value.status))
    assert errors[0] == errors[1] == ("invalid_credentials", "wrong username or password", 401)
    audit = await storage.audit_entries("auth")
    assert [(e["event"], e["username"]) for e in audit[:2]] == [
        ("login_failed", "mallory"),
        ("login_failed", "alice"),
    ]


@pytest.mark.anyio
async def test_a_password_is_rehashed_at_a_new_cost_on_login(
    auth: AuthService, storage: Storage, clock: Clock
) -> None:
    assert (await storage.password_hash("alice") or "").startswith("$argon2id$v=19$m=8,t=1,p=1$")
    costlier = AuthService(storage, AuthSection(**{**FAST, "argon2_time_cost": 2}), clock=clock)
    await costlier.load()
    await costlier.login("alice", PASSWORD)
    assert (await storage.password_hash("alice") or "").startswith("$argon2id$v=19$m=8,t=2,p=1$")
    assert await costlier.login("alice", PASSWORD)


@pytest.mark.anyio
async def test_missing_and_malformed_credentials(auth: AuthService) -> None:
    for empty in ("", "   ", "Bearer", "Bearer   "):
        assert code_of(auth.authenticate, empty) == "missing_credentials"
    assert code_of(auth.authenticate, "not-a-token") == "invalid_token"
    assert code_of(auth.authenticate, "Basic dXNlcjpwYXNz") == "invalid_token"


@pytest.mark.anyio
async def test_tokens_signed_otherwise_are_refused(auth: AuthService, clock: Clock) -> None:
    tokens = await auth.login("alice", PASSWORD)
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    forged = jwt.encode(claims, "k" * 32, algorithm="HS256")
    assert code_of(auth.authenticate, forged) == "invalid_token"
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert code_of(auth.authenticate, unsigned) == "invalid_token"


# ----------------------------------------------------------------------------------------------
# Expiry and refresh


@pytest.mark.anyio
async def test_an_access_token_expires_and_a_refresh_renews_it(
    auth: AuthService, clock: Clock
) -> None:
    tokens = await auth.login("alice", PASSWORD)
    clock.advance(59)
    assert auth.authenticate(tokens.access_token).username == "alice"
    clock.advance(1)
    assert code_of(auth.authenticate, tokens.access_token) == "token_expired"
    renewed = await auth.refresh(tokens.refresh_token)
    assert auth.authenticate(renewed.access_token).username == "alice"


@pytest.mark.anyio
async def test_a_refresh_token_expires(auth: AuthService, clock: Clock) -> None:
    tokens = await auth.login("alice", PASSWORD)
    clock.advance(3600)
    assert await acode_of(auth.refresh, tokens.refresh_token) == "token_expired"


@pytest.mark.anyio
async def test_refresh_rotates_and_each_refresh_lasts_its_own_lifetime(
    auth: AuthService, clock: Clock
) -> None:
    tokens = await auth.login("alice", PASSWORD)
    for _ in range(3):
        clock.advance(3000)  # each step is within the lifetime of the newest refresh token only
        tokens = await auth.refresh(tokens.refresh_token)
    assert auth.authenticate(tokens.access_token).username == "alice"


@pytest.mark.anyio
async def test_reusing_a_rotated_refresh_token_ends_the_whole_session(
    auth: AuthService, clock: Clock
) -> None:
    stolen = await auth.login("alice", PASSWORD)
    other = await auth.login("alice", PASSWORD)
    rotated = await auth.refresh(stolen.refresh_token)
    assert await acode_of(auth.refresh, stolen.refresh_token) == "token_revoked"
    # Everything of that session is now refused: the newer refresh and its access tokens...
    assert await acode_of(auth.refresh, rotated.refresh_token) == "token_revoked"
    assert code_of(auth.authenticate, rotated.access_token) == "token_revoked"
    assert code_of(auth.authenticate, stolen.access_token) == "token_revoked"
    # ...while the user's other session goes on.
    assert auth.authenticate(other.access_token).username == "alice"
    assert auth.authenticate((await auth.refresh(other.refresh_token)).access_token)


@pytest.mark.anyio
async def test_two_refreshes_with_one_token_at_once_count_as_reuse(auth: AuthService) -> None:
    """Strict rotation: a client must not refresh twice with one token, or its session ends."""
    tokens = await auth.login("alice", PASSWORD)
    outcomes: list[TokenPair | str] = []

    async def refresh() -> None:
        try:
            outcomes.append(await auth.refresh(tokens.refresh_token))
        except AuthError as exc:
            outcomes.append(exc.code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(refresh)
        tg.start_soon(refresh)
    [winner] = [o for o in outcomes if isinstance(o, TokenPair)]
    assert outcomes.count("token_revoked") == 1
    assert code_of(auth.authenticate, winner.access_token) == "token_revoked"


@pytest.mark.anyio
async def test_tokens_are_not_interchangeable(auth: AuthService) -> None:
    tokens = await auth.login("alice", PASSWORD)
    assert code_of(auth.authenticate, tokens.refresh_token) == "invalid_token"
    assert await acode_of(auth.refresh, tokens.access_token) == "invalid_token"


@pytest.mark.anyio
async def test_a_new_login_beyond_the_session_limit_ends_the_oldest(
    storage: Storage, clock: Clock
) -> None:
    auth = AuthService(storage, AuthSection(max_sessions_per_user=2, **FAST), clock=clock)
    await auth.load()
    await auth.add_user("bob", PASSWORD, role=Role.VIEWER, kind=Environment.LIVE)
    sessions = []
    for _ in range(3):
        sessions.append(await auth.login("bob", PASSWORD))
        clock.advance(1)
    assert code_of(auth.authenticate, sessions[0].access_token) == "token_revoked"
    assert await acode_of(auth.refresh, sessions[0].refresh_token) == "token_revoked"
    for kept in sessions[1:]:
        assert auth.authenticate(kept.access_token).username == "bob"


# ----------------------------------------------------------------------------------------------
# Logout, password change, disable


@pytest.mark.anyio
async def test_logout_revokes_both_tokens(auth: AuthService) -> None:
    tokens = await auth.login("alice", PASSWORD)
    other = await auth.login("alice", PASSWORD)
    await auth.logout(tokens.access_token, tokens.refresh_token)
    assert code_of(auth.authenticate, tokens.access_token) == "token_revoked"
    assert await acode_of(auth.refresh, tokens.refresh_token) == "token_revoked"
    assert auth.authenticate(other.access_token).username == "alice"
    await auth.logout(tokens.access_token, tokens.refresh_token)  # again: nothing to do


@pytest.mark.anyio
async def test_logout_with_the_access_token_alone_ends_its_session(auth: AuthService) -> None:
    tokens = await auth.login("alice", PASSWORD)
    await auth.logout(f"Bearer {tokens.access_token}".removeprefix("Bearer "))
    assert code_of(auth.authenticate, tokens.access_token) == "token_revoked"
    assert await acode_of(auth.refresh, tokens.refresh_token) == "token_revoked"


@pytest.mark.anyio
async def test_logout_accepts_an_expired_access_token(auth: AuthService, clock: Clock) -> None:
    tokens = await auth.login("alice", PASSWORD)
    clock.advance(120)
    await auth.logout(tokens.access_token)
    assert await acode_of(auth.refresh, tokens.refresh_token) == "token_revoked"


@pytest.mark.anyio
async def test_logout_refuses_tokens_of_two_users(auth: AuthService) -> None:
    await auth.add_user("bob", PASSWORD, role=Role.VIEWER, kind=Environment.LIVE)
    alice = await auth.login("alice", PASSWORD)
    bob = await auth.login("bob", PASSWORD)
    assert await acode_of(auth.logout, alice.access_token, bob.refresh_token) == "invalid_token"
    assert auth.authenticate(bob.access_token).username == "bob"


@pytest.mark.anyio
async def test_a_password_change_voids_every_earlier_token(auth: AuthService) -> None:
    first = await auth.login("alice", PASSWORD)
    second = await auth.login("alice", PASSWORD)
    await auth.set_password("alice", "a new password")
    for tokens in (first, second):
        assert code_of(auth.authenticate, tokens.access_token) == "token_revoked"
        assert await acode_of(auth.refresh, tokens.refresh_token) == "token_revoked"
    assert await acode_of(auth.login, "alice", PASSWORD) == "invalid_credentials"
    fresh = await auth.login("alice", "a new password")
    assert auth.authenticate(fresh.access_token).username == "alice"


@pytest.mark.anyio
async def test_disabling_refuses_tokens_keys_and_logins(auth: AuthService) -> None:
    tokens = await auth.login("alice", PASSWORD)
    _, key = await auth.create_api_key("alice", "bot")
    user = await auth.set_disabled("alice", True)
    assert user.disabled
    with pytest.raises(AuthError) as info:
        auth.authenticate(tokens.access_token)
    assert (info.value.code, info.value.status) == ("user_disabled", 403)
    assert code_of(auth.authenticate, key) == "user_disabled"
    assert await acode_of(auth.refresh, tokens.refresh_token) == "user_disabled"
    assert await acode_of(auth.login, "alice", PASSWORD) == "user_disabled"
    assert await acode_of(auth.login, "alice", "wrong password") == "invalid_credentials"

    await auth.set_disabled("alice", False)
    # Enabling again does not bring back the sessions disabling ended; keys work again.
    assert code_of(auth.authenticate, tokens.access_token) == "token_revoked"
    assert auth.authenticate(key).username == "alice"


# ----------------------------------------------------------------------------------------------
# API keys


@pytest.mark.anyio
async def test_api_key_lifecycle(auth: AuthService, storage: Storage, clock: Clock) -> None:
    info, key = await auth.create_api_key("alice", " market maker ")
    assert key.startswith(f"hft_{info.key_id}_")
    assert (info.username, info.name, info.last_used_at) == ("alice", "market maker", None)
    assert info.created_at.timestamp() == START
    assert auth.api_keys("alice") == [info]

    clock.advance(30)
    assert auth.authenticate(key).username == "alice"
    assert auth.authenticate(f"Bearer {key}").username == "alice"
    [listed] = auth.api_keys("alice")
    assert listed.last_used_at is not None
    assert listed.last_used_at.timestamp() == START + 30

    secret = key.removeprefix("hft_").partition("_")[2]  # all of it: it may hold "_"
    assert code_of(auth.authenticate, key[:-1] + ("A" if key[-1] != "A" else "B")) == (
        "invalid_api_key"
    )
    for bad in ("hft_", "hft_x", f"hft_{info.key_id}", f"hft_{info.key_id}_", "hft_nope_secret"):
        assert code_of(auth.authenticate, bad) == "invalid_api_key"
    document = await storage.get_state("auth", "user:alice")
    assert document is not None
    assert secret.encode() not in document  # only its digest is kept
    assert key.encode() not in document

    await auth.revoke_api_key("alice", info.key_id)
    assert code_of(auth.authenticate, key) == "invalid_api_key"
    assert auth.api_keys("alice") == []
    with pytest.raises(NotFound):
        await auth.revoke_api_key("alice", info.key_id)
    events = [e["event"] for e in await storage.audit_entries("auth")]
    assert events[:2] == ["api_key_revoked", "api_key_created"]


@pytest.mark.anyio
async def test_api_keys_are_per_user_and_named(auth: AuthService) -> None:
    await auth.add_user("bob", PASSWORD, role=Role.TRADER, kind=Environment.LIVE)
    alice_key, _ = await auth.create_api_key("alice", "one")
    _, bob_secret = await auth.create_api_key("bob", "two")
    assert auth.authenticate(bob_secret).username == "bob"
    with pytest.raises(NotFound):
        await auth.revoke_api_key("bob", alice_key.key_id)  # not bob's to revoke
    with pytest.raises(ValidationError):
        await auth.create_api_key("alice", "  ")
    with pytest.raises(NotFound):
        await auth.create_api_key("nobody", "x")
    with pytest.raises(NotFound):
        auth.api_keys("nobody")


# ----------------------------------------------------------------------------------------------
# Users and authorization


@pytest.mark.anyio
async def test_user_management(auth: AuthService) -> None:
    with pytest.raises(Conflict):
        await auth.add_user("alice", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
    with pytest.raises(ValidationError) as bad_name:
        await auth.add_user("no spaces", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
    assert bad_name.value.code == "bad_username"
    with pytest.raises(ValidationError) as weak:
        await auth.add_user("carol", "short", role=Role.TRADER, kind=Environment.SIM)
    assert weak.value.code == "weak_password"
    with pytest.raises(ValidationError):
        await auth.set_password("alice", "short")

    await auth.add_user("carol", PASSWORD, role=Role.VIEWER, kind=Environment.LIVE)
    assert [u.username for u in auth.users()] == ["alice", "carol"]
    assert (await auth.grant("carol", "main")).accounts == ("main",)
    assert (await auth.grant("carol", "paper")).accounts == ("main", "paper")
    assert (await auth.grant("carol", "paper")).accounts == ("main", "paper")
    assert (await auth.revoke_grant("carol", "main")).accounts == ("paper",)
    assert (await auth.set_role("carol", Role.TRADER)).role is Role.TRADER
    assert auth.user("carol").role is Role.TRADER
    with pytest.raises(NotFound):
        auth.user("nobody")
    with pytest.raises(NotFound):
        await auth.grant("carol", "no-such-account")


@pytest.mark.anyio
async def test_a_sim_user_is_never_granted_a_live_account(auth: AuthService) -> None:
    with pytest.raises(ValidationError) as info:
        await auth.grant("alice", "main")
    assert info.value.code == "sim_user_live_account"
    with pytest.raises(ValidationError):
        await auth.add_user(
            "sam", PASSWORD, role=Role.TRADER, kind=Environment.SIM, accounts=["main"]
        )
    assert auth.user("alice").accounts == ("paper",)


@pytest.mark.anyio
async def test_the_last_admin_stays(auth: AuthService) -> None:
    await auth.add_user("root", PASSWORD, role=Role.ADMIN, kind=Environment.LIVE)
    with pytest.raises(Conflict):
        await auth.set_disabled("root", True)
    with pytest.raises(Conflict):
        await auth.set_role("root", Role.TRADER)
    await auth.add_user("root2", PASSWORD, role=Role.ADMIN, kind=Environment.LIVE)
    assert (await auth.set_role("root", Role.VIEWER)).role is Role.VIEWER


def test_the_auth_section_of_the_config() -> None:
    plugins = PluginHost.from_modules({})
    assert resolve_config(config_from_mapping({}), plugins).auth == AuthSection()
    tree = {"auth": {"access_ttl_s": "120", "signing_key": "k" * 32}}
    auth = resolve_config(config_from_mapping(tree), plugins).auth
    assert auth.access_ttl_s == 120
    assert auth.signing_key == Secret("k" * 32)
    assert "k" * 32 not in repr(auth)
    for bad, message in [
        ({"signing_key": "short"}, "auth: signing_key must be at least 32 bytes long"),
        ({"refresh_ttl_s": 0}, "auth: 'refresh_ttl_s' must be >= 1"),
        ({"acess_ttl_s": 5}, "auth.acess_ttl_s: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message):
            resolve_config(config_from_mapping({"auth": bad}), plugins)


def test_role_checks() -> None:
    admin = User("a", Role.ADMIN, Environment.LIVE)
    trader = User("t", Role.TRADER, Environment.SIM)
    viewer = User("v", Role.VIEWER, Environment.LIVE)
    require_admin(admin)
    require_trader(admin)
    require_trader(trader)
    for user, check in [
        (trader, require_admin),
        (viewer, require_admin),
        (viewer, require_trader),
        (User("x", Role.ADMIN, Environment.LIVE, disabled=True), require_admin),
        (User("y", Role.TRADER, Environment.SIM, disabled=True), require_trader),
    ]:
        with pytest.raises(AuthError) as info:
            check(user)
        assert (info.value.code, info.value.status) == ("forbidden", 403)


@pytest.mark.anyio
async def test_changes_made_by_another_process_are_seen(
    auth: AuthService, storage: Storage, clock: Clock
) -> None:
    """``hft users ...`` runs in its own process on the same store as ``hft serve``."""
    tokens = await auth.login("alice", PASSWORD)
    other = AuthService(storage, CONFIG, clock=clock)
    await other.load()
    await other.set_disabled("alice", True)
    assert await acode_of(auth.refresh, tokens.refresh_token) == "user_disabled"
    assert code_of(auth.authenticate, tokens.access_token) == "user_disabled"
    # ...and this service's next change does not undo the other's.
    await auth.grant("alice", "paper")
    await other.load()
    assert other.user("alice").disabled


@pytest.mark.anyio
async def test_a_running_service_learns_of_keys_made_and_revoked_elsewhere(
    storage: Storage, clock: Clock
) -> None:
    running = AuthService(storage, AuthSection(reload_interval_s=0.01, **FAST), clock=clock)
    await running.load()
    cli = AuthService(storage, CONFIG, clock=clock)
    await cli.load()
    await cli.add_user("bot", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
    info, key = await cli.create_api_key("bot", "maker")

    def accepted() -> bool:
        try:
            return running.authenticate(key).username == "bot"
        except AuthError:
            return False

    async with anyio.create_task_group() as tg:
        tg.start_soon(running.run)
        with anyio.fail_after(5):
            while not accepted():  # noqa: ASYNC110 (polling is what the service does)
                await anyio.sleep(0.01)
        await cli.revoke_api_key("bot", info.key_id)
        with anyio.fail_after(5):
            while accepted():  # noqa: ASYNC110
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()


# ----------------------------------------------------------------------------------------------
# Persistence


@pytest.fixture
async def sqlite_open(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Storage]]]:
    """Opens the same SQLite file each time it is called, as a restarted host would."""
    url = f"sqlite:///{tmp_path / 'hft.db'}"
    opened: list[Storage] = []

    async def open_one() -> Storage:
        store = await _with_accounts(open_storage(url, PluginHost.from_modules({})))
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.mark.anyio
async def test_revocations_survive_a_restart(
    sqlite_open: Callable[[], Awaitable[Storage]], clock: Clock
) -> None:
    store = await sqlite_open()
    auth = AuthService(store, CONFIG, clock=clock)
    await auth.load()
    await auth.add_user("alice", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
    await auth.add_user("bob", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
    logged_out = await auth.login("alice", PASSWORD)
    kept = await auth.login("alice", PASSWORD)
    stolen = await auth.login("alice", PASSWORD)
    rotated = await auth.refresh(stolen.refresh_token)
    old_password = await auth.login("bob", PASSWORD)
    revoked_info, revoked_key = await auth.create_api_key("alice", "old bot")
    _, live_key = await auth.create_api_key("alice", "new bot")
    await auth.logout(logged_out.access_token, logged_out.refresh_token)
    await auth.revoke_api_key("alice", revoked_info.key_id)
    await auth.set_password("bob", "bob's new password")
    auth.authenticate(live_key)
    await auth.flush()
    await store.close()

    restarted = AuthService(await sqlite_open(), CONFIG, clock=clock)
    await restarted.load()
    assert code_of(restarted.authenticate, logged_out.access_token) == "token_revoked"
    assert await acode_of(restarted.refresh, logged_out.refresh_token) == "token_revoked"
    assert code_of(restarted.authenticate, revoked_key) == "invalid_api_key"
    assert code_of(restarted.authenticate, old_password.access_token) == "token_revoked"
    assert await acode_of(restarted.refresh, stolen.refresh_token) == "token_revoked"
    # The reuse was detected after the restart too: the rotated session is over.
    assert await acode_of(restarted.refresh, rotated.refresh_token) == "token_revoked"
    # What was not revoked still works, signed by the same (stored) key.
    assert restarted.authenticate(kept.access_token).username == "alice"
    assert restarted.authenticate((await restarted.refresh(kept.refresh_token)).access_token)
    assert restarted.authenticate(live_key).username == "alice"
    [key] = restarted.api_keys("alice")
    assert key.name == "new bot"
    assert key.last_used_at is not None
    assert (await restarted.login("bob", "bob's new password")).access_token


@pytest.mark.anyio
async def test_a_configured_signing_key_is_used_and_not_stored(
    storage: Storage, clock: Clock
) -> None:
    config = AuthSection(signing_key=Secret("s" * 40), **FAST)
    auth = AuthService(storage, config, clock=clock)
    await auth.load()
    await auth.add_user("alice", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
    tokens = await auth.login("alice", PASSWORD)
    claims = jwt.decode(
        tokens.access_token, "s" * 40, algorithms=["HS256"], options={"verify_exp": False}
    )
    assert claims["sub"] == "alice"
    assert await storage.get_state("auth", "signing_key") is None


# ----------------------------------------------------------------------------------------------
# First start


@pytest.mark.anyio
async def test_bootstrap_creates_admin_and_a_sim_trader_once(
    tmp_path: Path, storage: Storage, clock: Clock
) -> None:
    auth = AuthService(storage, CONFIG, clock=clock)
    await auth.load()
    password = await auth.bootstrap(tmp_path, sim_account="paper")
    assert password
    path = tmp_path / PASSWORD_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = dict(
        line.split(": ", 1) for line in path.read_text().splitlines() if not line.startswith("#")
    )
    assert lines["admin"] == password
    assert auth.user("admin") == User("admin", Role.ADMIN, Environment.LIVE)
    assert auth.user("trader") == User("trader", Role.TRADER, Environment.SIM, ("paper",))
    for username, secret in lines.items():
        tokens = await auth.login(username, secret)
        assert auth.authenticate(tokens.access_token).username == username

    before = path.read_text()
    assert await auth.bootstrap(tmp_path, sim_account="paper") is None
    assert path.read_text() == before
    assert [u.username for u in auth.users()] == ["admin", "trader"]


@pytest.mark.anyio
async def test_bootstrap_without_a_sim_account_and_over_an_old_file(
    tmp_path: Path, storage: Storage, clock: Clock
) -> None:
    path = tmp_path / PASSWORD_FILE
    path.write_text("stale\n")
    path.chmod(0o644)
    auth = AuthService(storage, CONFIG, clock=clock)
    await auth.load()
    password = await auth.bootstrap(tmp_path, sim_account=None)
    assert [u.username for u in auth.users()] == ["admin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"admin: {password}" in path.read_text()
    assert "stale" not in path.read_text()


@pytest.mark.anyio
async def test_hft_serve_creates_the_first_users_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {
        "storage": {"url": f"sqlite:///{tmp_path / 'hft.db'}"},
        "brokers": {"paper": {"plugin": "test", "environment": "sim"}},
        "auth": FAST,
    }
    host = make_host({"test": hft.testing._plugin}, config, data_dir=tmp_path)
    async with host.running() as services:
        assert [u.username for u in services.auth.users()] == ["admin", "trader"]
        assert services.auth.user("trader").accounts == ("paper",)
    out = capsys.readouterr().out
    password = (tmp_path / PASSWORD_FILE).read_text().split("admin: ")[1].split()[0]
    assert out.count(password) == 1
    assert "'trader' for 'paper'" in out

    async with make_host({"test": hft.testing._plugin}, config, data_dir=tmp_path).running():
        pass
    assert "first start" not in capsys.readouterr().out


@pytest.mark.anyio
async def test_an_in_memory_host_starts_with_no_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_host({}, {"auth": FAST}, data_dir=tmp_path).running() as services:
        assert services.auth.users() == []
    assert not (tmp_path / PASSWORD_FILE).exists()
    assert "first start" not in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# No secret in a log line or an audit entry


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved = structlog.get_config()
    buf = io.StringIO()
    configure(level="debug", fmt="json", stream=buf)
    yield buf
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**saved)


@pytest.mark.anyio
async def test_no_secret_reaches_a_log_line_or_the_audit(
    log_buffer: io.StringIO, tmp_path: Path, storage: Storage, clock: Clock
) -> None:
    auth = AuthService(storage, CONFIG, clock=clock)
    await auth.load()
    admin_password = await auth.bootstrap(tmp_path, sim_account="paper")
    assert admin_password is not None
    await auth.add_user("alice", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
    tokens = await auth.login("alice", PASSWORD)
    renewed = await auth.refresh(tokens.refresh_token)
    await acode_of(auth.refresh, tokens.refresh_token)  # reuse: logged as a warning
    with pytest.raises(AuthError):
        await auth.login("alice", "a wrong password")
    info, key = await auth.create_api_key("alice", "bot")
    auth.authenticate(key)
    code_of(auth.authenticate, key + "x")
    await auth.revoke_api_key("alice", info.key_id)
    await auth.set_password("alice", "the next password")
    await auth.logout(renewed.access_token, renewed.refresh_token)

    secrets = [
        admin_password,
        PASSWORD,
        "a wrong password",
        "the next password",
        tokens.access_token,
        tokens.refresh_token,
        renewed.access_token,
        renewed.refresh_token,
        key,
        key.removeprefix("hft_").partition("_")[2],  # the secret (it may hold "_" itself)
    ]
    logged = log_buffer.getvalue()
    events = [json.loads(line)["event"] for line in logged.splitlines()]
    assert {"auth.login", "auth.login_failed", "auth.refresh_reused", "auth.logout"} <= set(events)
    audit = json.dumps(await storage.audit_entries("auth", limit=1000))
    for secret in secrets:
        assert secret not in logged
        assert secret not in audit


# ----------------------------------------------------------------------------------------------
# Properties: nothing but a credential this service issued gets in


@functools.cache
def _issued() -> tuple[AuthService, TokenPair, str]:
    """One service with a live session and an API key, shared by the property tests below."""

    async def build() -> tuple[AuthService, TokenPair, str]:
        storage = await _with_accounts(MemoryStorage("memory://"))
        auth = AuthService(storage, CONFIG, clock=lambda: START)
        await auth.load()
        await auth.add_user("alice", PASSWORD, role=Role.TRADER, kind=Environment.SIM)
        _, key = await auth.create_api_key("alice", "bot")
        return auth, await auth.login("alice", PASSWORD), key

    return anyio.run(build, backend="trio")


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _segments(token: str) -> tuple[bytes, ...] | None:
    """The decoded parts of a JWT; base64 may spell the same bytes two ways in a last char."""
    try:
        return tuple(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)) for p in token.split("."))
    except (binascii.Error, ValueError):
        return None


@given(data=st.data())
def test_a_tampered_access_token_is_always_refused(data: st.DataObject) -> None:
    auth, tokens, _ = _issued()
    token = tokens.access_token
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from(_B64URL + ".").filter(lambda c: c != token[index]))
    tampered = token[:index] + char + token[index + 1 :]
    assume(_segments(tampered) != _segments(token))
    assert code_of(auth.authenticate, tampered) == "invalid_token"


@given(data=st.data())
def test_a_tampered_api_key_is_always_refused(data: st.DataObject) -> None:
    auth, _, key = _issued()
    index = data.draw(st.integers(len("hft_"), len(key) - 1))
    char = data.draw(st.sampled_from(_B64URL).filter(lambda c: c != key[index]))
    assert code_of(auth.authenticate, key[:index] + char + key[index + 1 :]) == "invalid_api_key"


_CODES = {"missing_credentials", "invalid_token", "invalid_api_key"}


@given(
    st.one_of(
        st.text(),
        st.text().map(lambda s: f"Bearer {s}"),
        st.text().map(lambda s: f"hft_{s}"),
        st.from_regex(r"\A[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,80}\.[A-Za-z0-9_-]{0,43}\Z"),
    )
)
def test_any_other_string_is_refused_with_a_stable_code(credential: str) -> None:
    auth, _, _ = _issued()
    assert code_of(auth.authenticate, credential) in _CODES
