"""Signing in and out, and what a user manages about themselves."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from hft import ValidationError
from hft._auth import TokenPair
from hft_http import _convert
from hft_http import _schemas as s
from hft_http._state import CurrentUser, State
from hft_http.routes._common import API_PREFIX, AUTHED, errors

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX)


def _tokens(pair: TokenPair) -> s.TokenOut:
    return s.TokenOut(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in_s=pair.expires_in_s,
    )


@router.post(
    "/auth/login",
    tags=["auth"],
    summary="Sign in",
    responses=errors(400, 401, 403, 429, 503),
)
async def login(body: s.LoginIn, state: State) -> s.TokenOut:
    """Exchange a username and password for an access token and a refresh token.

    Send the access token as `Authorization: Bearer <token>`; when it expires, get a new pair
    from `/auth/refresh`. Wrong credentials answer 401 `invalid_credentials`, whichever part
    was wrong.
    """
    pair = await state.auth.login(body.username, body.password)
    return _tokens(pair)


@router.post(
    "/auth/refresh",
    tags=["auth"],
    summary="Renew tokens",
    responses=errors(400, 401, 403, 429, 503),
)
async def refresh(body: s.RefreshIn, state: State) -> s.TokenOut:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    pair = await state.auth.refresh(body.refresh_token)
    return _tokens(pair)


@router.post(
    "/auth/logout",
    tags=["auth"],
    summary="Sign out",
    status_code=204,
    response_class=Response,
    responses=errors(400, 503, *AUTHED),
)
async def logout(
    request: Request, user: CurrentUser, state: State, body: s.LogoutIn | None = None
) -> Response:
    """Revoke the access token this request carries, and the refresh token if one is sent."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ValidationError(
            "logout ends a token session: send the access token as Authorization: Bearer "
            "(API keys are revoked with DELETE /api/v1/me/api-keys/{key_id})",
            code="not_a_token_session",
        )
    await state.auth.logout(token.strip(), body.refresh_token if body else None)
    return Response(status_code=204)


@router.get("/me", tags=["me"], summary="Who am I", responses=errors(*AUTHED))
async def me(user: CurrentUser) -> s.UserOut:
    """The authenticated user: role, kind (live or sim) and granted accounts."""
    return _convert.user_out(user)


@router.put(
    "/me/password",
    tags=["me"],
    summary="Change my password",
    status_code=204,
    response_class=Response,
    responses=errors(400, 503, *AUTHED),
)
async def change_password(body: s.PasswordChangeIn, user: CurrentUser, state: State) -> Response:
    """Set a new password, given the current one. Every token issued before, the one this
    request carries included, stops working at once: sign in again with the new password.

    A wrong current password answers 401 `invalid_credentials`; a too short new one 400
    `weak_password`.
    """
    auth = state.auth
    # The current password is checked by signing in with it; that session is ended at once.
    pair = await auth.login(user.username, body.current_password)
    await auth.logout(pair.access_token, pair.refresh_token)
    await auth.set_password(user.username, body.new_password)
    return Response(status_code=204)


@router.get("/me/api-keys", tags=["me"], summary="My API keys", responses=errors(*AUTHED))
async def api_keys(user: CurrentUser, state: State) -> list[s.ApiKeyOut]:
    """The API keys of the authenticated user (never the keys themselves)."""
    return [_convert.api_key_out(info) for info in state.auth.api_keys(user.username)]


@router.post(
    "/me/api-keys",
    tags=["me"],
    summary="Create an API key",
    status_code=201,
    responses=errors(400, 409, 503, *AUTHED),
)
async def create_api_key(body: s.ApiKeyIn, user: CurrentUser, state: State) -> s.ApiKeyCreatedOut:
    """Create an API key that acts as this user. The key is in this answer only: store it.

    Send it as `X-API-Key: <key>` (or `Authorization: ApiKey <key>`).
    """
    info, key = await state.auth.create_api_key(user.username, body.name)
    return s.ApiKeyCreatedOut(key=key, info=_convert.api_key_out(info))


@router.delete(
    "/me/api-keys/{key_id}",
    tags=["me"],
    summary="Revoke an API key",
    status_code=204,
    response_class=Response,
    responses=errors(400, 404, 503, *AUTHED),
)
async def revoke_api_key(key_id: str, user: CurrentUser, state: State) -> Response:
    """Revoke one of the user's API keys; requests with it answer 401 from now on."""
    await state.auth.revoke_api_key(user.username, key_id)
    return Response(status_code=204)
