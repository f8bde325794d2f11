"""What the route modules share: documented error answers and pagination."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Query

from hft_http._schemas import ErrorBody

__all__ = ["API_PREFIX", "AUTHED", "Limit", "Offset", "errors", "page_bounds"]

#: Every API route is under it (health, metrics and docs are not).
API_PREFIX = "/api/v1"

T = TypeVar("T")

_DESCRIPTIONS = {
    400: "The request is malformed (`invalid`, with the offending fields) or breaks a rule of "
    "the instrument (`off_tick`, `bad_lot`, ...).",
    401: "No valid credentials (`missing_credentials`, `invalid_token`, `token_expired`, "
    "`token_revoked`, `user_disabled`, `invalid_api_key`, `invalid_credentials`).",
    403: "Not allowed (`forbidden`): the role, or the account is not granted, or a sim user "
    "and a live account; or the user is disabled (`user_disabled`).",
    404: "No such thing, or not visible to this user (`not_found`).",
    409: "Clashes with the current state (`conflict`, `duplicate_client_order_id`, "
    "`order_not_live`, `order_pending`, `order_busy`, ...).",
    422: "Refused on business grounds: a risk rule (its code, e.g. `kill_switch_halt`) or the "
    "broker (`broker_rejected`).",
    429: "Too many requests (`rate_limited`); retry after `Retry-After` seconds.",
    503: "A component is unavailable (`network`): a broker or the storage cannot be reached.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entry documenting these error statuses with the error shape."""
    return {
        status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in statuses
    }


#: Every authenticated endpoint can answer these (403: a disabled user).
AUTHED = (401, 403, 429)

Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Items to skip.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page.")]


def page_bounds(items: Sequence[T], offset: int, limit: int) -> tuple[list[T], int | None]:
    """The page of ``items`` and the offset of the next page (``None`` at the end)."""
    page = list(items[offset : offset + limit])
    following = offset + limit
    return page, following if following < len(items) else None
