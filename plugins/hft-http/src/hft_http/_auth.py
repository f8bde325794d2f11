"""How the REST API reads credentials; the core's ``AuthService`` checks them.

Credentials come in one of three headers (the first present wins):

- ``Authorization: Bearer <access token>`` (a JWT from ``POST /api/v1/auth/login``);
- ``Authorization: ApiKey <key>``;
- ``X-API-Key: <key>``.
"""

from __future__ import annotations

__all__ = ["credential_from_headers"]


def credential_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    """The credential string ``AuthService.authenticate`` takes, or ``None`` when there is none.

    A bearer token is passed on as ``"Bearer <jwt>"``, an API key as the bare key; any other
    ``Authorization`` scheme is passed on whole, for the service to refuse.
    """
    if authorization is not None and authorization.strip():
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "apikey":
            return value.strip()
        if scheme.lower() == "bearer":
            return f"Bearer {value.strip()}"
        return authorization.strip()
    if api_key is not None and api_key.strip():
        return api_key.strip()
    return None
