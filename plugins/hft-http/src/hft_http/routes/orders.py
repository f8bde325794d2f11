"""Orders: list, get, place, modify, cancel. The OMS enforces who may trade which account."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from hft.model import OrderStatus, Side
from hft_http import _convert
from hft_http import _schemas as s
from hft_http._state import CurrentUser, State, visible_account
from hft_http.routes._common import API_PREFIX, AUTHED, Limit, Offset, errors, page_bounds

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/orders", tags=["orders"])

_TRADE_ERRORS = errors(400, 403, 404, 409, 422, 503, *AUTHED)


@router.get("", summary="List orders", responses=errors(400, 403, 404, *AUTHED))
async def list_orders(
    user: CurrentUser,
    state: State,
    account: Annotated[str | None, Query(max_length=64)] = None,
    status: OrderStatus | None = None,
    instrument: Annotated[str | None, Query(max_length=64)] = None,
    side: Side | None = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> s.OrderPage:
    """The orders of every account the user may see, newest first, optionally filtered.

    Naming an `account` the user may not see answers 403 (404 if there is no such account).
    """
    if account is not None:
        visible_account(state, user, account)
    orders = state.services.oms.orders(user, account=account, status=status)
    if instrument is not None or side is not None:
        orders = [
            o
            for o in orders
            if (instrument is None or o.request.instrument == instrument)
            and (side is None or o.request.side is side)
        ]
    orders.reverse()
    page, following = page_bounds(orders, offset, limit)
    return s.OrderPage(
        items=[
            _convert.order_out(o, state.account_scale(o.request.account, o.request.instrument))
            for o in page
        ],
        total=len(orders),
        offset=offset,
        limit=limit,
        next_offset=following,
    )


@router.post("", summary="Place an order", status_code=201, responses=_TRADE_ERRORS)
async def place_order(body: s.OrderIn, user: CurrentUser, state: State) -> s.PlacedOut:
    """Place an order on an account granted to the user (traders and admins; never a sim user
    on a live account).

    Answers 201 once the order is journalled and the broker has taken it and given it an id
    (`PENDING` or later), or refused it (`REJECTED`, with the broker's reason). A risk rule's
    refusal answers 422 with the rule's code and creates nothing. A retry with the same
    `client_order_id` returns the orders created the first time instead of placing again.
    """
    services = state.services
    account = services.accounts.get(body.account)
    instrument = (
        services.instrument(account.broker, body.instrument) if account is not None else None
    )
    request = _convert.order_request(body, instrument)
    started = time.perf_counter()
    try:
        orders = await services.oms.submit(user, request)
    finally:
        state.metrics.order_submit_seconds.observe(time.perf_counter() - started)
    scale = instrument.price_scale if instrument is not None else 2
    return s.PlacedOut(orders=[_convert.order_out(o, scale) for o in orders])


@router.get("/{order_id}", summary="Get an order", responses=errors(404, *AUTHED))
async def get_order(order_id: str, user: CurrentUser, state: State) -> s.OrderOut:
    """One order with its status history (404 when the user may not see it)."""
    order = state.services.oms.get(user, order_id)
    return _convert.order_out(
        order, state.account_scale(order.request.account, order.request.instrument)
    )


@router.patch("/{order_id}", summary="Modify an order", responses=_TRADE_ERRORS)
async def modify_order(
    order_id: str, body: s.OrderPatch, user: CurrentUser, state: State
) -> s.OrderOut:
    """Change a live order's quantity, prices, type or validity.

    Answers once the broker has accepted the change; a refusal leaves the order as it was and
    answers with the broker's error.
    """
    oms = state.services.oms
    current = oms.get(user, order_id)
    scale = state.account_scale(current.request.account, current.request.instrument)
    order = await oms.modify(user, order_id, _convert.modify_request(body, scale))
    return _convert.order_out(order, scale)


@router.delete("/{order_id}", summary="Cancel an order", responses=_TRADE_ERRORS)
async def cancel_order(order_id: str, user: CurrentUser, state: State) -> s.OrderOut:
    """Ask the broker to cancel a live order: answers with the order `PENDING_CANCEL`; it
    becomes `CANCELLED` when the broker confirms (see `GET /orders/{order_id}`)."""
    order = await state.services.oms.cancel(user, order_id)
    return _convert.order_out(
        order, state.account_scale(order.request.account, order.request.instrument)
    )
