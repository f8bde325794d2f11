"""Admin only: kill switches, risk limits, users and their grants."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import attrs
from fastapi import APIRouter, Response

from hft import NotFound
from hft._config import RiskRuleSection
from hft._risk import KillSwitchState
from hft_http import _convert
from hft_http import _schemas as s
from hft_http._state import AdminUser, AppState, State
from hft_http.routes._common import API_PREFIX, AUTHED, errors

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX)

_ADMIN = (403, *AUTHED)


def _switch(state: KillSwitchState) -> s.KillSwitchOut:
    return s.KillSwitchOut(mode=state.mode.value, reason=state.reason, by=state.by, at=state.at)


def _account_switch(app: AppState, account: str) -> s.AccountKillSwitchOut:
    risk = app.services.risk
    own = risk.kill_switch(account)
    return s.AccountKillSwitchOut(
        account=account,
        mode=own.mode.value,
        reason=own.reason,
        by=own.by,
        at=own.at,
        effective=risk.effective_kill_switch(account).value,
    )


def _known_account(app: AppState, account: str) -> None:
    if account not in app.services.accounts:
        raise NotFound(f"no account {account!r}")


@router.get("/risk/kill-switch", tags=["risk"], summary="Kill switches", responses=errors(*_ADMIN))
async def kill_switches(user: AdminUser, state: State) -> s.KillSwitchesOut:
    """The global kill switch and every account's own one."""
    risk = state.services.risk
    return s.KillSwitchesOut.model_validate(
        {
            "global": _switch(risk.kill_switch()),
            "accounts": {a: _switch(risk.kill_switch(a)) for a in state.services.accounts},
        }
    )


@router.put(
    "/risk/kill-switch",
    tags=["risk"],
    summary="Set the global kill switch",
    responses=errors(400, 503, *_ADMIN),
)
async def set_global_kill_switch(
    body: s.KillSwitchIn, user: AdminUser, state: State
) -> s.KillSwitchOut:
    """`halt` refuses every new order on every account; `reduce_only` lets through only orders
    that bring a position closer to zero; `off` lifts it. Stored and audited, with who set it."""
    result = await state.services.risk.set_kill_switch(
        body.mode, reason=body.reason, by=user.username
    )
    return _switch(result)


@router.get(
    "/risk/kill-switch/{account_id}",
    tags=["risk"],
    summary="An account's kill switch",
    responses=errors(404, *_ADMIN),
)
async def account_kill_switch(
    account_id: str, user: AdminUser, state: State
) -> s.AccountKillSwitchOut:
    """The account's own kill switch, and what applies to it with the global one."""
    _known_account(state, account_id)
    return _account_switch(state, account_id)


@router.put(
    "/risk/kill-switch/{account_id}",
    tags=["risk"],
    summary="Set an account's kill switch",
    responses=errors(400, 404, 503, *_ADMIN),
)
async def set_account_kill_switch(
    account_id: str, body: s.KillSwitchIn, user: AdminUser, state: State
) -> s.AccountKillSwitchOut:
    """Set one account's kill switch (the stricter of it and the global one applies)."""
    _known_account(state, account_id)
    await state.services.risk.set_kill_switch(
        body.mode, account=account_id, reason=body.reason, by=user.username
    )
    return _account_switch(state, account_id)


def _json_ready(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal | PurePath | dt.date | dt.datetime | dt.timedelta):
        return str(value)
    if isinstance(value, enum.Enum):
        return _json_ready(value.value)
    if attrs.has(type(value)):
        return {f.name: _json_ready(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_ready(v) for v in value]
    return str(value)


def _rule(name: str, section: RiskRuleSection) -> s.RiskRuleOut:
    return s.RiskRuleOut(
        rule=name,
        enabled=section.enabled,
        settings=_json_ready(section.settings) if section.settings is not None else None,
    )


def _rules(sections: Mapping[str, RiskRuleSection]) -> list[s.RiskRuleOut]:
    return [_rule(name, section) for name, section in sections.items()]


@router.get("/risk/limits", tags=["risk"], summary="Risk limits", responses=errors(*_ADMIN))
async def risk_limits(user: AdminUser, state: State) -> s.RiskLimitsOut:
    """The pre-trade rules and their limits in force: the global chain, and the accounts that
    have their own (set in `hft.toml` under `[risk.<rule>]` and `[accounts.<id>.risk.<rule>]`,
    or changed at runtime with `PUT /risk/limits/{rule}`)."""
    risk = state.services.risk
    return s.RiskLimitsOut(
        rules=_rules(risk.sections()),
        accounts={account: _rules(risk.sections(account)) for account in risk.own_accounts()},
    )


@router.put(
    "/risk/limits/{rule}",
    tags=["risk"],
    summary="Change a risk rule",
    responses=errors(400, 404, 503, *_ADMIN),
)
async def set_risk_limit(
    rule: str, body: s.RiskRuleIn, user: AdminUser, state: State
) -> s.RiskRuleOut:
    """Enable, disable or change one rule's settings, globally or (with `account`) for one
    account, from the next order on. `settings` replace the rule's current ones. A global change
    reaches every account without its own value for the rule. Stored (it wins over `hft.toml`
    after a restart) and audited, with who made it. Settings the rule does not accept answer
    400 `risk_settings_invalid` naming the field; an unknown rule or account 404."""
    if body.account is not None:
        _known_account(state, body.account)
    section = await state.services.risk.set_rule(
        rule,
        enabled=body.enabled,
        settings=body.settings,
        account=body.account,
        by=user.username,
        reason=body.reason,
    )
    return _rule(rule, section)


# Users ------------------------------------------------------------------------------------------


@router.get("/users", tags=["users"], summary="List users", responses=errors(*_ADMIN))
async def list_users(user: AdminUser, state: State) -> list[s.UserOut]:
    """Every user."""
    return [_convert.user_out(u) for u in state.auth.users()]


@router.post(
    "/users",
    tags=["users"],
    summary="Create a user",
    status_code=201,
    responses=errors(400, 404, 409, 503, *_ADMIN),
)
async def create_user(body: s.UserIn, user: AdminUser, state: State) -> s.UserOut:
    """Create a user with a role (admin, trader, viewer), a kind (live or sim) and granted
    accounts. A sim user is never granted a live account (400 `sim_user_live_account`); a
    taken name answers 409 `user_exists`, a short password 400 `weak_password`."""
    for account in body.accounts:
        _known_account(state, account)
    created = await state.auth.add_user(
        body.username,
        body.password,
        role=body.role,
        kind=body.kind,
        accounts=tuple(body.accounts),
    )
    return _convert.user_out(created)


@router.get(
    "/users/{username}", tags=["users"], summary="Get a user", responses=errors(404, *_ADMIN)
)
async def get_user(username: str, user: AdminUser, state: State) -> s.UserOut:
    """One user."""
    return _convert.user_out(state.auth.user(username))


@router.patch(
    "/users/{username}",
    tags=["users"],
    summary="Change a user's role or disable them",
    responses=errors(400, 404, 503, *_ADMIN),
)
async def update_user(username: str, body: s.UserPatch, user: AdminUser, state: State) -> s.UserOut:
    """Change the role, or disable (or re-enable) the user. A disabled user's tokens and keys
    stop working at once."""
    auth = state.auth
    result = auth.user(username)
    if body.role is not None:
        result = await auth.set_role(username, body.role)
    if body.disabled is not None:
        result = await auth.set_disabled(username, body.disabled)
    return _convert.user_out(result)


@router.put(
    "/users/{username}/password",
    tags=["users"],
    summary="Set a user's password",
    status_code=204,
    response_class=Response,
    responses=errors(400, 404, 503, *_ADMIN),
)
async def set_password(
    username: str, body: s.PasswordSetIn, user: AdminUser, state: State
) -> Response:
    """Set a new password; the user's refresh tokens issued before stop working."""
    await state.auth.set_password(username, body.password)
    return Response(status_code=204)


@router.put(
    "/users/{username}/accounts/{account_id}",
    tags=["users"],
    summary="Grant an account",
    responses=errors(400, 404, 503, *_ADMIN),
)
async def grant(username: str, account_id: str, user: AdminUser, state: State) -> s.UserOut:
    """Let the user see (and, as a trader or admin, trade) the account. A live account is never
    granted to a sim user (400 `sim_user_live_account`)."""
    _known_account(state, account_id)
    return _convert.user_out(await state.auth.grant(username, account_id))


@router.delete(
    "/users/{username}/accounts/{account_id}",
    tags=["users"],
    summary="Revoke an account",
    responses=errors(404, 503, *_ADMIN),
)
async def revoke(username: str, account_id: str, user: AdminUser, state: State) -> s.UserOut:
    """Take the account away from the user."""
    return _convert.user_out(await state.auth.revoke_grant(username, account_id))
