"""What every endpoint shares: the host's services, the auth service, metrics, limits.

Also the read side of authorisation: which accounts a user may see. (The write side, trading,
is enforced by the OMS itself, so every transport inherits it.)
"""

from __future__ import annotations

import time
from typing import Annotated

import anyio
import attrs
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from hft import AuthError, HftError, NotFound
from hft._auth import AuthService, require_admin
from hft._host import Services
from hft.model import Account, Instrument, User
from hft_http._metrics import Metrics
from hft_http._ratelimit import RateLimits
from hft_http.config import HttpConfig

__all__ = [
    "AdminUser",
    "AppState",
    "CurrentUser",
    "State",
    "visible_account",
    "visible_accounts",
]

#: Where the edge middleware leaves what it learnt about the caller, in the request's scope.
USER_KEY = "hft.user"
AUTH_ERROR_KEY = "hft.auth_error"


@attrs.define(eq=False)
class AppState:
    services: Services
    config: HttpConfig
    auth: AuthService
    metrics: Metrics
    limits: RateLimits
    #: Instruments as last stored, for formatting prices of orders whose broker is not
    #: connected (yet): the scale of an instrument does not change.
    started_at: float = attrs.field(factory=time.monotonic)
    _locks: dict[str, anyio.Lock] = attrs.field(factory=dict)

    def lock(self, name: str) -> anyio.Lock:
        """The lock named ``name`` (one per user's read-modify-write of stored state)."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = anyio.Lock()
        return lock

    def find_instrument(self, key: str, broker: str | None = None) -> tuple[str, Instrument]:
        """The instrument ``key`` at ``broker`` (else at the first configured broker listing it)."""
        brokers = self.services.brokers
        names = [broker] if broker is not None else list(brokers)
        for name in names:
            handle = brokers.get(name)
            if handle is not None and key in handle.instruments:
                return name, handle.instruments[key]
        where = f" at broker {broker!r}" if broker is not None else ""
        raise NotFound(f"unknown instrument {key!r}{where}")

    def scale(self, key: str, broker: str | None = None) -> int:
        """The price scale of ``key`` (at ``broker`` when given), 2 when nothing knows it."""
        return self.services.price_scale(key, broker)

    def account_scale(self, account_id: str, key: str) -> int:
        account = self.services.accounts.get(account_id)
        return self.scale(key, account.broker if account is not None else None)


def visible_account(state: AppState, user: User, account_id: str) -> Account:
    """The account, if ``user`` may see it: NotFound when there is none, 403 when not theirs."""
    account = state.services.accounts.get(account_id)
    if account is None:
        raise NotFound(f"no account {account_id!r}")
    if not user.can_see(account):
        raise AuthError(
            f"user {user.username!r} may not see account {account_id!r}",
            code="forbidden",
            status=403,
        )
    return account


def visible_accounts(state: AppState, user: User) -> list[Account]:
    return [a for a in state.services.accounts.values() if user.can_see(a)]


# Dependencies ---------------------------------------------------------------------------------

# Declared for the OpenAPI document (and the docs page's "Authorize" button); the edge
# middleware has already read the headers.
_bearer = HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/login.")
_api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key (or send `Authorization: ApiKey <key>`).",
)


async def _state(request: Request) -> AppState:
    state: AppState = request.app.state.hft
    return state


State = Annotated[AppState, Depends(_state)]


async def _current_user(
    request: Request,
    _bearer_token: Annotated[object, Security(_bearer)] = None,
    _key: Annotated[object, Security(_api_key)] = None,
) -> User:
    user: User | None = request.scope.get(USER_KEY)
    if user is not None:
        return user
    error: HftError | None = request.scope.get(AUTH_ERROR_KEY)
    if error is not None:
        raise error
    raise AuthError(
        "send an access token (Authorization: Bearer ...) or an API key (X-API-Key)",
        code="missing_credentials",
    )


CurrentUser = Annotated[User, Depends(_current_user)]


async def _admin_user(user: CurrentUser) -> User:
    require_admin(user)
    return user


AdminUser = Annotated[User, Depends(_admin_user)]
