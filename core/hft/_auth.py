"""Users, passwords, sessions and API keys: the one service every transport authenticates through.

- **Passwords** are hashed with argon2id (argon2-cffi), in a worker thread, since a hash costs
  tens of milliseconds by design.
- **Sessions.** :meth:`AuthService.login` opens a session and returns a short-lived access token
  and a refresh token, both HS256 JWTs naming the session (``sid``). Each
  :meth:`~AuthService.refresh` rotates the refresh token: the session's generation moves on, so
  the previous token stops working, and presenting one from an earlier generation again means it
  was copied: the whole session ends (theft detection). :meth:`~AuthService.logout` ends the
  session and refuses its access tokens until they would have expired anyway.
- **Token versions.** Every token carries its user's token version ``ver``; a password change or
  disabling a user bumps it, which voids every token issued before at once.
- **API keys** (``hft_<key_id>_<secret>``) are for bots; only a SHA-256 digest of the secret is
  kept.
- :meth:`AuthService.authenticate` runs per request: it is synchronous and touches only memory.

Persistence goes through the :class:`~hft.contracts.Storage` contract: users and password hashes
through ``save_user``; the rest as one JSON document per user in the ``auth`` state namespace
(``user:<username>``: token version, live sessions, revoked sessions, API keys), and the
generated signing key under ``signing_key``. Revocations are therefore kept across restarts.
Every change re-reads the user from storage first, so changes made by ``hft users ...`` in
another process are not overwritten, and :meth:`AuthService.run` re-reads every user
periodically, so that a running host sees them. Secrets (passwords, tokens, key secrets) never
reach a log line, an audit entry or an error message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import argon2
import attrs
import jwt
import structlog

from hft._config import AuthSection
from hft._errors import AuthError, Conflict, HftError, NotFound, ValidationError
from hft.contracts import Storage
from hft.model import Environment, Role, User

__all__ = [
    "PASSWORD_FILE",
    "ApiKeyInfo",
    "AuthService",
    "TokenPair",
    "require_admin",
    "require_trader",
]

log = structlog.get_logger("hft.auth")

#: The state namespace and the file the first start writes its passwords to (in ``data_dir``).
NAMESPACE: Final = "auth"
PASSWORD_FILE: Final = "hft-admin-password.txt"
API_KEY_PREFIX: Final = "hft_"

_SIGNING_KEY_STATE: Final = "signing_key"
_ALGORITHM: Final = "HS256"
_ACCESS: Final = "access"
_REFRESH: Final = "refresh"
_CLAIMS: Final = ("sub", "exp", "iat", "jti", "ver", "sid", "typ")
_USERNAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_MAX_KEY_NAME: Final = 64


@attrs.frozen
class TokenPair:
    """What a login or a refresh hands the client."""

    access_token: str
    refresh_token: str
    expires_in_s: int  # access token lifetime
    token_type: str = "bearer"


@attrs.frozen
class ApiKeyInfo:
    """An API key as it may be shown: never its secret.

    ``last_used_at`` is recorded in memory when the key authenticates and written to storage
    with the service's next write for that user (and at :meth:`AuthService.flush`).
    """

    key_id: str
    username: str
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None


def require_admin(user: User) -> None:
    """Refuse (403) anyone but an enabled admin."""
    if user.disabled or user.role is not Role.ADMIN:
        raise AuthError(f"user {user.username!r} is not an admin", code="forbidden", status=403)


def require_trader(user: User) -> None:
    """Refuse (403) viewers and disabled users: traders and admins may trade granted accounts."""
    if user.disabled or user.role is Role.VIEWER:
        raise AuthError(f"user {user.username!r} may not trade", code="forbidden", status=403)


# ----------------------------------------------------------------------------------------------
# What is kept per user
# ----------------------------------------------------------------------------------------------


@attrs.define
class _Session:
    """One login. ``gen`` is the generation of its one valid refresh token."""

    gen: int
    expires_at: float  # when the current refresh token expires
    created_at: float


@attrs.define
class _ApiKey:
    key_id: str
    name: str
    # SHA-256, not argon2: the secret is 256 random bits, so a leaked digest cannot be reversed
    # by guessing, and a slow hash would only add tens of milliseconds to every bot request.
    digest: bytes
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None


@attrs.define
class _UserState:
    """A user and the auth document stored beside it (``user:<username>``)."""

    user: User
    ver: int = 0
    sessions: dict[str, _Session] = attrs.field(factory=dict)
    revoked: dict[str, float] = attrs.field(factory=dict)  # session id → refused until
    api_keys: dict[str, _ApiKey] = attrs.field(factory=dict)

    def copy(self) -> _UserState:
        """A copy whose maps can change without touching this one (the values are shared)."""
        return _UserState(
            self.user, self.ver, dict(self.sessions), dict(self.revoked), dict(self.api_keys)
        )

    def prune(self, now: float) -> None:
        """Forget what has expired: such tokens are refused for their expiry anyway."""
        self.sessions = {k: s for k, s in self.sessions.items() if s.expires_at > now}
        self.revoked = {k: until for k, until in self.revoked.items() if until > now}

    def to_json(self) -> bytes:
        document = {
            "ver": self.ver,
            "sessions": {k: attrs.asdict(s) for k, s in self.sessions.items()},
            "revoked": self.revoked,
            "api_keys": {
                k: {
                    "name": key.name,
                    "sha256": key.digest.hex(),
                    "created_at": key.created_at.isoformat(),
                    "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
                }
                for k, key in self.api_keys.items()
            },
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, user: User, raw: bytes | None) -> _UserState:
        if raw is None:
            return cls(user)
        document: dict[str, Any] = json.loads(raw)
        keys = {
            key_id: _ApiKey(
                key_id=key_id,
                name=data["name"],
                digest=bytes.fromhex(data["sha256"]),
                created_at=dt.datetime.fromisoformat(data["created_at"]),
                last_used_at=(
                    dt.datetime.fromisoformat(data["last_used_at"])
                    if data["last_used_at"]
                    else None
                ),
            )
            for key_id, data in document["api_keys"].items()
        }
        return cls(
            user=user,
            ver=int(document["ver"]),
            sessions={k: _Session(**s) for k, s in document["sessions"].items()},
            revoked={k: float(until) for k, until in document["revoked"].items()},
            api_keys=keys,
        )


@attrs.frozen
class _Claims:
    username: str
    session_id: str
    ver: int
    gen: int
    expires_at: int


def _state_key(username: str) -> str:
    return f"user:{username}"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


# ----------------------------------------------------------------------------------------------
# The service
# ----------------------------------------------------------------------------------------------


class AuthService:
    """Users, sessions and API keys. Call :meth:`load` once before anything else.

    Admin operations (adding users, granting accounts, ...) do not check who asks: the caller
    does, with :func:`require_admin`. ``clock`` gives the time in seconds since the epoch.
    """

    def __init__(
        self,
        storage: Storage,
        config: AuthSection,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._config = config
        self._clock = clock
        self._hasher = argon2.PasswordHasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
        )
        self._key = config.signing_key.reveal().encode() if config.signing_key else b""
        self._users: dict[str, _UserState] = {}
        self._key_owners: dict[str, str] = {}  # API key id → username
        self._used_keys: set[str] = set()  # users whose keys' last use is not yet stored
        self._dummy_hash: str | None = None
        self._lock = anyio.Lock()

    # Loading ----------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read users, their sessions, revocations and API keys, and the signing key."""
        if not self._key:
            stored = await self._storage.get_state(NAMESPACE, _SIGNING_KEY_STATE)
            if stored is None:
                stored = secrets.token_bytes(32)
                await self._storage.put_state(NAMESPACE, _SIGNING_KEY_STATE, stored)
            self._key = stored
        async with self._lock:
            await self._load_users()

    async def run(self) -> None:
        """Re-read every user every ``reload_interval_s`` until cancelled (the host runs it).

        Another process (``hft users ...``) may change users, revoke keys or create them in the
        same store; this is how a running host learns of it.
        """
        while True:
            await anyio.sleep(self._config.reload_interval_s)
            try:
                async with self._lock:
                    await self._load_users()
            except HftError as exc:
                log.warning("auth.reload_failed", error=str(exc))

    async def _load_users(self) -> None:
        now = self._clock()
        users: dict[str, _UserState] = {}
        for user in await self._storage.load_users():
            state = _UserState.from_json(user, await self._get_document(user.username))
            state.prune(now)
            self._keep_last_use(state)
            users[user.username] = state
        # Swapped in whole: a request authenticating meanwhile sees the old set or the new one.
        self._users = users
        self._key_owners = {key: name for name, s in users.items() for key in s.api_keys}

    async def _get_document(self, username: str) -> bytes | None:
        return await self._storage.get_state(NAMESPACE, _state_key(username))

    async def _reload(self, username: str) -> _UserState | None:
        """The user as storage has it now (another process may have changed it)."""
        user = next((u for u in await self._storage.load_users() if u.username == username), None)
        if user is None:
            self._forget(username)
            return None
        state = _UserState.from_json(user, await self._get_document(username))
        state.prune(self._clock())
        self._keep_last_use(state)
        self._install(state)
        return state

    def _keep_last_use(self, state: _UserState) -> None:
        """Carry over API key uses recorded in memory: they are newer than what storage has."""
        known = self._users.get(state.user.username)
        if known is None:
            return
        for key_id, key in state.api_keys.items():
            seen = known.api_keys.get(key_id)
            used = seen.last_used_at if seen else None
            if used is not None and (key.last_used_at is None or used > key.last_used_at):
                key.last_used_at = used

    async def _reload_existing(self, username: str) -> _UserState:
        state = await self._reload(username)
        if state is None:
            raise NotFound(f"no user named {username!r}")
        return state

    def _install(self, state: _UserState) -> None:
        username = state.user.username
        self._forget(username)
        self._users[username] = state
        for key_id in state.api_keys:
            self._key_owners[key_id] = username

    def _forget(self, username: str) -> None:
        old = self._users.pop(username, None)
        if old is not None:
            for key_id in old.api_keys:
                self._key_owners.pop(key_id, None)

    async def _save(self, state: _UserState, password_hash: str | None = None) -> None:
        """Write the user's auth document, then the user (with a new hash when given).

        The document goes first: when a password changes, the revocation is durable before the
        new password is, so a crash in between fails closed.
        """
        await self._save_document(state)
        await self._storage.save_user(state.user, password_hash)

    async def _save_document(self, state: _UserState) -> None:
        state.prune(self._clock())
        await self._storage.put_state(NAMESPACE, _state_key(state.user.username), state.to_json())
        self._used_keys.discard(state.user.username)

    async def flush(self) -> None:
        """Store API keys' last-use times recorded in memory (the host calls it at shutdown)."""
        if not self._used_keys:
            return
        async with self._lock:
            for username in sorted(self._used_keys):
                state = await self._reload(username)
                if state is not None:
                    await self._save_document(state)
            self._used_keys.clear()

    # Users ------------------------------------------------------------------------------------

    async def add_user(
        self,
        username: str,
        password: str,
        *,
        role: Role,
        kind: Environment,
        accounts: Sequence[str] = (),
    ) -> User:
        """Create a user; Conflict when the name is taken, ValidationError for bad input."""
        if not _USERNAME.fullmatch(username):
            raise ValidationError(
                "a username is 1-64 letters, digits and _.@- starting with a letter or digit",
                code="bad_username",
            )
        self._check_password(password)
        user = User(username, Role(role), Environment(kind), tuple(dict.fromkeys(accounts)))
        await self._check_accounts(user, user.accounts)
        password_hash = await self._hash(password)
        async with self._lock:
            if await self._reload(username) is not None:
                raise Conflict(f"a user named {username!r} already exists", code="user_exists")
            state = _UserState(user)
            await self._save(state, password_hash)
            self._install(state)
        await self._audit("user_added", username, role=str(user.role), kind=str(user.kind))
        log.info("auth.user_added", username=username, role=str(user.role), kind=str(user.kind))
        return user

    def users(self) -> list[User]:
        """Every user, by name."""
        return [self._users[name].user for name in sorted(self._users)]

    def user(self, username: str) -> User:
        state = self._users.get(username)
        if state is None:
            raise NotFound(f"no user named {username!r}")
        return state.user

    async def set_password(self, username: str, password: str) -> None:
        """Change a password; every token issued before stops working."""
        self._check_password(password)
        password_hash = await self._hash(password)
        async with self._lock:
            state = (await self._reload_existing(username)).copy()
            self._void_tokens(state)
            self._install(state)
            await self._save(state, password_hash)
        await self._audit("password_changed", username)
        log.info("auth.password_changed", username=username)

    async def set_disabled(self, username: str, disabled: bool) -> User:
        """Disable (every token voided, API keys refused) or enable a user."""
        async with self._lock:
            state = (await self._reload_existing(username)).copy()
            if disabled and state.user.role is Role.ADMIN:
                self._check_not_last_admin(username)
            state.user = attrs.evolve(state.user, disabled=disabled)
            if disabled:
                self._void_tokens(state)
            self._install(state)
            await self._save(state)
        await self._audit("user_disabled" if disabled else "user_enabled", username)
        log.info("auth.user_disabled" if disabled else "auth.user_enabled", username=username)
        return state.user

    async def grant(self, username: str, account_id: str) -> User:
        """Let the user reach ``account_id`` (a sim user is never granted a live account)."""
        async with self._lock:
            state = (await self._reload_existing(username)).copy()
            await self._check_accounts(state.user, (account_id,))
            if account_id in state.user.accounts:
                return state.user
            state.user = attrs.evolve(state.user, accounts=(*state.user.accounts, account_id))
            await self._save(state)
            self._install(state)
        await self._audit("account_granted", username, account=account_id)
        log.info("auth.account_granted", username=username, account=account_id)
        return state.user

    async def revoke_grant(self, username: str, account_id: str) -> User:
        """Take ``account_id`` away from the user (nothing happens when it was not granted)."""
        async with self._lock:
            state = (await self._reload_existing(username)).copy()
            if account_id not in state.user.accounts:
                return state.user
            remaining = tuple(a for a in state.user.accounts if a != account_id)
            state.user = attrs.evolve(state.user, accounts=remaining)
            self._install(state)
            await self._save(state)
        await self._audit("account_revoked", username, account=account_id)
        log.info("auth.account_revoked", username=username, account=account_id)
        return state.user

    async def set_role(self, username: str, role: Role) -> User:
        """Change the user's role; the last enabled admin cannot be demoted."""
        role = Role(role)
        async with self._lock:
            state = (await self._reload_existing(username)).copy()
            if state.user.role is role:
                return state.user
            if state.user.role is Role.ADMIN:
                self._check_not_last_admin(username)
            state.user = attrs.evolve(state.user, role=role)
            self._install(state)
            await self._save(state)
        await self._audit("role_changed", username, role=str(role))
        log.info("auth.role_changed", username=username, role=str(role))
        return state.user

    def _check_not_last_admin(self, username: str) -> None:
        if not any(
            s.user.role is Role.ADMIN and not s.user.disabled and name != username
            for name, s in self._users.items()
        ):
            raise Conflict(
                f"{username!r} is the last enabled admin: make another admin first",
                code="last_admin",
            )

    def _check_password(self, password: str) -> None:
        if len(password) < self._config.min_password_length:
            raise ValidationError(
                f"a password needs at least {self._config.min_password_length} characters",
                code="weak_password",
            )

    async def _check_accounts(self, user: User, account_ids: Sequence[str]) -> None:
        known = {a.account_id: a for a in await self._storage.load_accounts()}
        for account_id in account_ids:
            account = known.get(account_id)
            if account is None:
                raise NotFound(f"no account named {account_id!r}")
            if user.kind is Environment.SIM and account.environment is Environment.LIVE:
                raise ValidationError(
                    f"sim user {user.username!r} can never be granted live account {account_id!r}",
                    code="sim_user_live_account",
                )

    def _void_tokens(self, state: _UserState) -> None:
        """A new token version: every access and refresh token issued so far is refused."""
        state.ver += 1
        state.sessions.clear()
        state.revoked.clear()  # the version refuses those sessions' tokens already

    # Passwords --------------------------------------------------------------------------------

    async def _hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password)

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; with no hash, a dummy one costs the same time."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash(secrets.token_urlsafe(16))
            password_hash = self._dummy_hash
        target = password_hash

        def verify() -> bool:
            try:
                return self._hasher.verify(target, password)
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False

        return await anyio.to_thread.run_sync(verify)

    # Sessions ---------------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> TokenPair:
        """Check the password and open a session.

        An unknown user and a wrong password are the same ``invalid_credentials`` error, and take
        about the same time. A disabled user with the right password gets ``user_disabled``.
        """
        password_hash = await self._storage.password_hash(username)
        matches = await self._verify(password_hash, password)
        if not matches or password_hash is None:
            await self._audit("login_failed", username)
            log.info("auth.login_failed", username=username)
            raise AuthError("wrong username or password", code="invalid_credentials")
        # The configured cost changed since this hash was made: store one at today's cost.
        rehashed = (
            await self._hash(password) if self._hasher.check_needs_rehash(password_hash) else None
        )
        async with self._lock:
            state = await self._reload(username)
            # The hash may have changed while it was being checked: that password is stale.
            if state is None or await self._storage.password_hash(username) != password_hash:
                raise AuthError("wrong username or password", code="invalid_credentials")
            if state.user.disabled:
                await self._audit("login_refused", username, reason="disabled")
                raise AuthError(f"user {username!r} is disabled", code="user_disabled", status=403)
            state = state.copy()
            now = self._clock()
            session_id = secrets.token_urlsafe(16)
            state.sessions[session_id] = _Session(0, now + self._config.refresh_ttl_s, now)
            excess = max(len(state.sessions) - self._config.max_sessions_per_user, 0)
            for old in sorted(state.sessions, key=lambda k: state.sessions[k].created_at)[:excess]:
                del state.sessions[old]
                state.revoked[old] = now + self._config.access_ttl_s
            await self._save_document(state)
            if rehashed is not None:
                await self._storage.save_user(state.user, rehashed)
            self._install(state)
            tokens = self._issue(state, session_id, 0, now)
        await self._audit("login", username, session=session_id)
        log.info("auth.login", username=username, session=session_id)
        return tokens

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Exchange a refresh token for a new pair; the one presented stops working.

        Presenting an older refresh token of a session again means someone kept a copy: the
        session ends and the error is ``token_revoked``.
        """
        claims = self._decode(refresh_token, _REFRESH)
        async with self._lock:
            state = await self._reload(claims.username)
            if state is None:
                raise AuthError("the token's user no longer exists", code="invalid_token")
            self._check_user(state, claims)
            session = state.sessions.get(claims.session_id)
            if session is None:
                raise AuthError("the session has ended", code="token_revoked")
            if claims.gen != session.gen:
                state = state.copy()
                state.sessions.pop(claims.session_id)
                state.revoked[claims.session_id] = self._clock() + self._config.access_ttl_s
                self._install(state)
                await self._save_document(state)
                await self._audit("refresh_reused", claims.username, session=claims.session_id)
                log.warning(
                    "auth.refresh_reused", username=claims.username, session=claims.session_id
                )
                raise AuthError(
                    "this refresh token was already used: the session has been ended",
                    code="token_revoked",
                )
            state = state.copy()
            now = self._clock()
            gen = session.gen + 1
            state.sessions[claims.session_id] = _Session(
                gen, now + self._config.refresh_ttl_s, session.created_at
            )
            await self._save_document(state)
            self._install(state)
            return self._issue(state, claims.session_id, gen, now)

    async def logout(self, access_token: str, refresh_token: str | None = None) -> None:
        """End the session(s) of both tokens: refreshes refused, access tokens too.

        Expired tokens are accepted here (logging out late is still logging out); tokens that
        were not issued by this service, or belong to two users, are ``invalid_token``.
        """
        tokens = [self._decode(access_token, _ACCESS, allow_expired=True)]
        if refresh_token is not None:
            tokens.append(self._decode(refresh_token, _REFRESH, allow_expired=True))
        username = tokens[0].username
        if any(c.username != username for c in tokens):
            raise AuthError("the tokens belong to different users", code="invalid_token")
        async with self._lock:
            state = await self._reload(username)
            if state is None:
                return
            state = state.copy()
            # Every access token of these sessions expires by then.
            until = max(self._clock() + self._config.access_ttl_s, tokens[0].expires_at)
            for claims in tokens:
                state.sessions.pop(claims.session_id, None)
                state.revoked[claims.session_id] = until
            self._install(state)
            await self._save_document(state)
        await self._audit("logout", username, session=tokens[0].session_id)
        log.info("auth.logout", username=username, session=tokens[0].session_id)

    def authenticate(self, credential: str) -> User:
        """The user behind an access token (``Bearer`` prefix optional) or an API key.

        Synchronous and memory-only: it runs for every request. Raises AuthError with code
        ``missing_credentials``, ``invalid_token``, ``token_expired``, ``token_revoked``,
        ``user_disabled`` (403) or ``invalid_api_key``.
        """
        text = credential.strip()
        scheme, _, rest = text.partition(" ")
        if scheme.lower() == "bearer":
            text = rest.strip()
        if not text:
            raise AuthError("no credentials given", code="missing_credentials")
        if text.startswith(API_KEY_PREFIX):
            return self._authenticate_key(text)
        claims = self._decode(text, _ACCESS)
        state = self._users.get(claims.username)
        if state is None:
            raise AuthError("the token's user no longer exists", code="invalid_token")
        self._check_user(state, claims)
        if claims.session_id in state.revoked:
            raise AuthError("the session has ended", code="token_revoked")
        return state.user

    def _check_user(self, state: _UserState, claims: _Claims) -> None:
        if state.user.disabled:
            raise AuthError(
                f"user {state.user.username!r} is disabled", code="user_disabled", status=403
            )
        if claims.ver != state.ver:
            raise AuthError(
                "the token was issued before a password change or a disable",
                code="token_revoked",
            )

    def _issue(self, state: _UserState, session_id: str, gen: int, now: float) -> TokenPair:
        issued = int(now)
        common = {"sub": state.user.username, "iat": issued, "ver": state.ver, "sid": session_id}
        access = {
            **common,
            "typ": _ACCESS,
            "exp": issued + self._config.access_ttl_s,
            "jti": secrets.token_urlsafe(12),
        }
        refresh = {
            **common,
            "typ": _REFRESH,
            "exp": issued + self._config.refresh_ttl_s,
            "jti": secrets.token_urlsafe(12),
            "gen": gen,
        }
        return TokenPair(
            access_token=jwt.encode(access, self._key, algorithm=_ALGORITHM),
            refresh_token=jwt.encode(refresh, self._key, algorithm=_ALGORITHM),
            expires_in_s=self._config.access_ttl_s,
        )

    def _decode(self, token: str, kind: str, *, allow_expired: bool = False) -> _Claims:
        """Verify a token's signature and shape; PyJWT's own clock checks are off for ours."""
        if not token.isascii():
            raise AuthError("the token is not valid", code="invalid_token")
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                options={
                    "require": list(_CLAIMS),
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError:
            raise AuthError("the token is not valid", code="invalid_token") from None
        sub, sid, exp, ver = claims["sub"], claims["sid"], claims["exp"], claims["ver"]
        gen = claims.get("gen", 0) if kind == _REFRESH else 0
        if (
            claims["typ"] != kind
            or not isinstance(sub, str)
            or not isinstance(sid, str)
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in (exp, ver, gen))
            or (kind == _REFRESH and "gen" not in claims)
        ):
            raise AuthError(f"this is not an {kind} token", code="invalid_token")
        if not allow_expired and exp <= self._clock():
            raise AuthError("the token has expired", code="token_expired")
        return _Claims(sub, sid, int(ver), int(gen), int(exp))

    # API keys ---------------------------------------------------------------------------------

    async def create_api_key(self, username: str, name: str) -> tuple[ApiKeyInfo, str]:
        """A new key for ``username``; the returned ``hft_...`` string is never shown again."""
        name = name.strip()
        if not name or len(name) > _MAX_KEY_NAME:
            raise ValidationError(
                f"an API key needs a name of 1-{_MAX_KEY_NAME} characters", code="bad_key_name"
            )
        key_id = secrets.token_hex(8)  # hex: never contains the "_" that ends the id
        secret = secrets.token_urlsafe(32)
        created = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        async with self._lock:
            state = (await self._reload_existing(username)).copy()
            state.api_keys[key_id] = _ApiKey(key_id, name, _digest(secret), created)
            await self._save_document(state)
            self._install(state)
        await self._audit("api_key_created", username, key_id=key_id, name=name)
        log.info("auth.api_key_created", username=username, key_id=key_id)
        return self._info(username, state.api_keys[key_id]), f"{API_KEY_PREFIX}{key_id}_{secret}"

    def api_keys(self, username: str) -> list[ApiKeyInfo]:
        """The user's keys, oldest first."""
        state = self._users.get(username)
        if state is None:
            raise NotFound(f"no user named {username!r}")
        keys = sorted(state.api_keys.values(), key=lambda k: k.created_at)
        return [self._info(username, key) for key in keys]

    async def revoke_api_key(self, username: str, key_id: str) -> None:
        """Delete a key: it is refused from now on. NotFound when the user has no such key."""
        async with self._lock:
            state = (await self._reload_existing(username)).copy()
            if state.api_keys.pop(key_id, None) is None:
                raise NotFound(f"user {username!r} has no API key {key_id!r}")
            self._install(state)
            await self._save_document(state)
        await self._audit("api_key_revoked", username, key_id=key_id)
        log.info("auth.api_key_revoked", username=username, key_id=key_id)

    def _info(self, username: str, key: _ApiKey) -> ApiKeyInfo:
        return ApiKeyInfo(key.key_id, username, key.name, key.created_at, key.last_used_at)

    def _authenticate_key(self, text: str) -> User:
        key_id, sep, secret = text.removeprefix(API_KEY_PREFIX).partition("_")
        owner = self._key_owners.get(key_id) if sep and secret and text.isascii() else None
        state = self._users.get(owner) if owner else None
        key = state.api_keys.get(key_id) if state else None
        if state is None or key is None or not hmac.compare_digest(key.digest, _digest(secret)):
            raise AuthError("the API key is not valid", code="invalid_api_key")
        if state.user.disabled:
            raise AuthError(
                f"user {state.user.username!r} is disabled", code="user_disabled", status=403
            )
        key.last_used_at = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        self._used_keys.add(state.user.username)
        return state.user

    # First start ------------------------------------------------------------------------------

    async def bootstrap(self, data_dir: Path, *, sim_account: str | None) -> str | None:
        """On an empty user store, create ``admin`` and (with ``sim_account``) a sim ``trader``.

        Their random passwords are written to ``data_dir / PASSWORD_FILE``, readable by its owner
        only. Returns the admin's password, or None when there were users already.
        """
        if await self._storage.load_users():
            return None
        admin_password = secrets.token_urlsafe(18)
        trader_password = secrets.token_urlsafe(18) if sim_account is not None else None
        created = dt.datetime.fromtimestamp(self._clock(), dt.UTC).isoformat(timespec="seconds")
        lines = [
            f"# hft created these users on its first start ({created}).",
            "# Log in, change the passwords (hft users passwd NAME), then delete this file.",
            f"admin: {admin_password}",
        ]
        if trader_password is not None:
            lines.append(f"trader: {trader_password}")
        # Written before the users exist: should it fail, no user is left with a lost password.
        path = data_dir / PASSWORD_FILE
        await anyio.to_thread.run_sync(_write_private, path, "\n".join(lines) + "\n")
        await self.add_user("admin", admin_password, role=Role.ADMIN, kind=Environment.LIVE)
        if sim_account is not None and trader_password is not None:
            await self.add_user(
                "trader",
                trader_password,
                role=Role.TRADER,
                kind=Environment.SIM,
                accounts=(sim_account,),
            )
        log.info("auth.bootstrapped", users=sorted(self._users), password_file=str(path))
        return admin_password

    # Audit ------------------------------------------------------------------------------------

    async def _audit(self, event: str, username: str, **fields: object) -> None:
        await self._storage.append_audit("auth", {"event": event, "username": username, **fields})


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only (0600)."""

    def opener(name: str, flags: int) -> int:
        return os.open(name, flags, 0o600)

    with open(path, "w", encoding="utf-8", opener=opener) as file:
        os.fchmod(file.fileno(), 0o600)  # the mode given to open() applies only to a new file
        file.write(text)
