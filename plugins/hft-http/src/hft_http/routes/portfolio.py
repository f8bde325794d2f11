"""Accounts, positions, holdings, trades and PnL: only of the accounts the user may see."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import attrs
from fastapi import APIRouter, Query

from hft import Conflict, NetworkError, NotFound, ValidationError
from hft.model import Account, User
from hft_http import _convert
from hft_http import _schemas as s
from hft_http._state import (
    AdminUser,
    AppState,
    CurrentUser,
    State,
    visible_account,
    visible_accounts,
)
from hft_http.routes._common import API_PREFIX, AUTHED, Limit, Offset, errors, page_bounds

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX)

AccountFilter = Annotated[
    str | None, Query(max_length=64, description="Only this account (default: all visible).")
]


def _accounts(state: AppState, user: User, account: str | None) -> list[Account]:
    if account is not None:
        return [visible_account(state, user, account)]
    return visible_accounts(state, user)


@router.get("/accounts", tags=["accounts"], summary="List accounts", responses=errors(*AUTHED))
async def list_accounts(user: CurrentUser, state: State) -> list[s.AccountOut]:
    """The accounts the user may see (admins: all)."""
    return [_convert.account_out(a) for a in visible_accounts(state, user)]


@router.post(
    "/accounts",
    tags=["accounts"],
    summary="Create an account (admin)",
    status_code=201,
    responses=errors(400, 403, 404, 409, 503, *AUTHED),
)
async def create_account(body: s.AccountIn, user: AdminUser, state: State) -> s.AccountOut:
    """Add an account on a configured broker instance; it is stored and survives restarts.

    Grant it to users with `PUT /users/{username}/accounts/{account_id}`. Its environment
    defaults to the broker's; a live account on a sim broker is refused.
    """
    services = state.services
    if body.account_id in services.accounts:
        raise Conflict(f"account {body.account_id!r} exists", code="account_exists")
    broker = services.config.brokers.get(body.broker)
    if broker is None:
        raise NotFound(f"no broker instance {body.broker!r}")
    environment = body.environment or broker.environment
    if environment != broker.environment and str(broker.environment) == "sim":
        raise ValidationError(
            f"broker {body.broker!r} is a sim broker: its accounts are sim accounts",
            code="environment_mismatch",
        )
    account = Account(
        account_id=body.account_id,
        broker=body.broker,
        broker_account=body.broker_account,
        environment=environment,
        name=body.name,
    )
    await services.storage.save_account(account)
    services.accounts[account.account_id] = account
    return _convert.account_out(account)


@router.get(
    "/accounts/{account_id}",
    tags=["accounts"],
    summary="Get an account",
    responses=errors(403, 404, *AUTHED),
)
async def get_account(account_id: str, user: CurrentUser, state: State) -> s.AccountOut:
    """One account, if the user may see it."""
    return _convert.account_out(visible_account(state, user, account_id))


@router.get(
    "/accounts/{account_id}/pnl",
    tags=["accounts"],
    summary="Account PnL",
    responses=errors(403, 404, *AUTHED),
)
async def account_pnl(account_id: str, user: CurrentUser, state: State) -> s.PnlOut:
    """Realised and mark-to-market PnL of the account today, in rupees, with its positions."""
    account = visible_account(state, user, account_id)
    positions = state.services.portfolio.positions(account.account_id)
    realised = unrealised = Decimal(0)
    out = []
    for position in positions:
        scale = state.scale(position.instrument, account.broker)
        realised += position.realised_pnl.scaleb(-scale)
        unrealised += position.unrealised_pnl.scaleb(-scale)
        out.append(_convert.position_out(position, scale))
    return s.PnlOut(
        account=account.account_id,
        realised=_money(realised),
        unrealised=_money(unrealised),
        total=_money(realised + unrealised),
        positions=out,
    )


def _money(value: Decimal) -> str:
    # Rupees: at least paise, every further digit a fractional average brings.
    return _convert.decimal_string(value.scaleb(2), 2)


@router.get(
    "/positions",
    tags=["portfolio"],
    summary="Positions",
    responses=errors(400, 403, 404, *AUTHED),
)
async def positions(
    user: CurrentUser, state: State, account: AccountFilter = None
) -> list[s.PositionOut]:
    """Net positions per account, instrument and product, marked at the latest price."""
    out = []
    for acct in _accounts(state, user, account):
        for position in state.services.portfolio.positions(acct.account_id):
            out.append(
                _convert.position_out(position, state.scale(position.instrument, acct.broker))
            )
    return out


@router.get(
    "/holdings",
    tags=["portfolio"],
    summary="Holdings",
    responses=errors(400, 403, 404, 503, *AUTHED),
)
async def holdings(
    user: CurrentUser, state: State, account: AccountFilter = None
) -> list[s.HoldingOut]:
    """Delivery holdings as each account's broker reports them.

    With `account`, a broker that is not connected answers 503; without, such accounts are
    left out.
    """
    out = []
    for acct in _accounts(state, user, account):
        handle = state.services.brokers.get(acct.broker)
        if handle is None or not handle.ready:
            if account is None:
                continue
            raise NetworkError(f"broker {acct.broker!r} is not connected")
        for holding in await handle.broker.holdings(acct.broker_account):
            # Brokers name their own account code: answer with the hft account's id.
            holding = attrs.evolve(holding, account=acct.account_id)
            out.append(_convert.holding_out(holding, state.scale(holding.instrument, acct.broker)))
    return out


@router.get(
    "/trades",
    tags=["portfolio"],
    summary="Trades",
    responses=errors(400, 403, 404, 503, *AUTHED),
)
async def trades(
    user: CurrentUser,
    state: State,
    account: AccountFilter = None,
    instrument: Annotated[str | None, Query(max_length=64)] = None,
    offset: Offset = 0,
    limit: Limit = 100,
) -> s.TradePage:
    """Fills of the accounts the user may see, newest first."""
    accounts = {a.account_id: a for a in _accounts(state, user, account)}
    fills = [
        f
        for f in await state.services.storage.load_fills(account)
        if f.account in accounts and (instrument is None or f.instrument == instrument)
    ]
    fills.sort(key=lambda f: f.at, reverse=True)
    page, following = page_bounds(fills, offset, limit)
    return s.TradePage(
        items=[
            _convert.trade_out(f, state.scale(f.instrument, accounts[f.account].broker))
            for f in page
        ],
        total=len(fills),
        offset=offset,
        limit=limit,
        next_offset=following,
    )
