"""Accounts, holdings, kill switches, risk limits and users (the admin side of the API)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hft.model import Account, Environment

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"


async def test_accounts_list_and_get(harness: Any) -> None:
    mine = (await harness.get("/api/v1/accounts", "trader_live")).json()
    assert mine == [
        {
            "account_id": "live_a",
            "broker": "venue",
            "broker_account": "A1",
            "environment": "live",
            "name": "",
        },
        {
            "account_id": "sim_a",
            "broker": "venue",
            "broker_account": "P1",
            "environment": "sim",
            "name": "",
        },
    ]
    assert len((await harness.get("/api/v1/accounts", "root")).json()) == 4
    assert (await harness.get("/api/v1/accounts/nope", "root")).status_code == 404


async def test_an_admin_creates_an_account_that_is_stored_granted_and_traded(
    harness: Any,
) -> None:
    created = await harness.post(
        "/api/v1/accounts",
        "root",
        {
            "account_id": "paper2",
            "broker": "venue",
            "broker_account": "P2",
            "environment": "sim",
            "name": "Paper two",
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["environment"] == "sim"
    assert Account("paper2", "venue", "P2", Environment.SIM, "Paper two") in (
        await harness.storage.load_accounts()
    )
    default_env = await harness.post(
        "/api/v1/accounts",
        "root",
        {"account_id": "live3", "broker": "venue", "broker_account": "A2"},
    )
    assert default_env.json()["environment"] == "live"  # the broker's environment
    duplicate = await harness.post(
        "/api/v1/accounts", "root", {"account_id": "paper2", "broker": "venue"}
    )
    assert duplicate.status_code == 409
    no_broker = await harness.post(
        "/api/v1/accounts", "root", {"account_id": "x", "broker": "nope"}
    )
    assert no_broker.status_code == 404

    granted = await harness.put("/api/v1/users/trader_sim/accounts/paper2", "root")
    assert granted.status_code == 200
    assert "paper2" in granted.json()["accounts"]
    harness.headers.pop("trader_sim", None)
    order = await harness.place("paper2", "trader_sim")
    assert order["account"] == "paper2"
    revoked = await harness.delete("/api/v1/users/trader_sim/accounts/paper2", "root")
    assert "paper2" not in revoked.json()["accounts"]
    refused = await harness.post(
        "/api/v1/orders",
        "trader_sim",
        {
            "account": "paper2",
            "instrument": "NSE:INFY",
            "side": "BUY",
            "quantity": 1,
            "price": "1000.00",
        },
    )
    assert refused.status_code == 403


async def test_a_live_account_is_never_granted_to_a_sim_user(harness: Any) -> None:
    response = await harness.put("/api/v1/users/viewer_sim/accounts/live_b", "root")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "sim_user_live_account"
    unknown = await harness.put("/api/v1/users/viewer_sim/accounts/nope", "root")
    assert unknown.status_code == 404


async def test_holdings(harness: Any) -> None:
    assert (await harness.get("/api/v1/holdings", "trader_live")).json() == []
    harness.venue.disconnect("feed down")
    with anyio.fail_after(5):
        while harness.services.brokers["venue"].ready:  # noqa: ASYNC110
            await anyio.sleep(0.001)
    down = await harness.get("/api/v1/holdings", "trader_live", params={"account": "live_a"})
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "network"
    # Without an account, those of a broker that is down are left out.
    assert (await harness.get("/api/v1/holdings", "trader_live")).json() == []
    harness.venue.resync()


async def test_kill_switches(harness: Any) -> None:
    initial = (await harness.get("/api/v1/risk/kill-switch", "root")).json()
    assert initial["global"]["mode"] == "off"
    assert set(initial["accounts"]) == {"live_a", "live_b", "sim_a", "sim_b"}

    set_global = await harness.put(
        "/api/v1/risk/kill-switch", "root", {"mode": "reduce_only", "reason": "volatility"}
    )
    assert set_global.status_code == 200
    assert set_global.json()["mode"] == "reduce_only"
    assert set_global.json()["by"] == "root"
    account = await harness.put(
        "/api/v1/risk/kill-switch/sim_a", "root", {"mode": "halt", "reason": "runaway bot"}
    )
    assert account.json() == {
        **account.json(),
        "account": "sim_a",
        "mode": "halt",
        "effective": "halt",
        "reason": "runaway bot",
    }
    other = (await harness.get("/api/v1/risk/kill-switch/live_a", "root")).json()
    assert (other["mode"], other["effective"]) == ("off", "reduce_only")

    halted = await harness.post(
        "/api/v1/orders",
        "trader_live",
        {
            "account": "sim_a",
            "instrument": "NSE:INFY",
            "side": "BUY",
            "quantity": 1,
            "price": "1000.00",
        },
    )
    assert halted.json()["error"]["code"] == "kill_switch_halt"
    reduce_only = await harness.post(
        "/api/v1/orders",
        "trader_live",
        {
            "account": "live_a",
            "instrument": "NSE:INFY",
            "side": "BUY",
            "quantity": 1,
            "price": "1000.00",
        },
    )
    assert reduce_only.json()["error"]["code"] == "kill_switch_reduce_only"
    audit = await harness.storage.audit_entries("kill_switch")
    assert [e["mode"] for e in audit[:2]] == ["halt", "reduce_only"]

    bad = await harness.put("/api/v1/risk/kill-switch", "root", {"mode": "panic", "reason": "x"})
    assert bad.status_code == 400
    unknown = await harness.put(
        "/api/v1/risk/kill-switch/nope", "root", {"mode": "halt", "reason": "x"}
    )
    assert unknown.status_code == 404


async def test_risk_limits_show_the_configured_chain(harness_factory: Any) -> None:
    config = {
        "risk": {"max_order_quantity": {"enabled": True, "max_quantity": 500}},
        "accounts": {
            "live_a": {
                "broker": "venue",
                "broker_account": "A1",
                "environment": "live",
                "risk": {"max_order_quantity": {"max_quantity": 10}},
            }
        },
    }
    async with harness_factory(config=config) as harness:
        limits = (await harness.get("/api/v1/risk/limits", "root")).json()
        rule = next(r for r in limits["rules"] if r["rule"] == "max_order_quantity")
        assert rule == {
            "rule": "max_order_quantity",
            "enabled": True,
            "settings": {"max_quantity": 500},
        }
        own = next(r for r in limits["accounts"]["live_a"] if r["rule"] == "max_order_quantity")
        assert own["settings"] == {"max_quantity": 10}
        assert set(limits["accounts"]) == {"live_a"}
        refused = await harness.post(
            "/api/v1/orders",
            "trader_live",
            {
                "account": "live_a",
                "instrument": "NSE:INFY",
                "side": "BUY",
                "quantity": 11,
                "price": "1000.00",
            },
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "max_order_quantity"


async def test_admins_change_risk_limits_at_runtime(harness: Any) -> None:
    order = {
        "account": "live_a",
        "instrument": "NSE:INFY",
        "side": "BUY",
        "quantity": 20,
        "price": "1000.00",
    }
    changed = await harness.put(
        "/api/v1/risk/limits/max_order_quantity",
        "root",
        {"enabled": True, "settings": {"max_quantity": 10}, "reason": "tighten"},
    )
    assert changed.status_code == 200
    assert changed.json() == {
        "rule": "max_order_quantity",
        "enabled": True,
        "settings": {"max_quantity": 10},
    }
    refused = await harness.post("/api/v1/orders", "trader_live", order)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "max_order_quantity"
    limits = (await harness.get("/api/v1/risk/limits", "root")).json()
    rule = next(r for r in limits["rules"] if r["rule"] == "max_order_quantity")
    assert rule["settings"] == {"max_quantity": 10}

    # One account's own value: it wins over the global one for that account only.
    own = await harness.put(
        "/api/v1/risk/limits/max_order_quantity",
        "root",
        {"enabled": False, "settings": {}, "account": "live_a"},
    )
    assert own.json()["enabled"] is False
    assert (await harness.post("/api/v1/orders", "trader_live", order)).status_code == 201
    limits = (await harness.get("/api/v1/risk/limits", "root")).json()
    assert set(limits["accounts"]) == {"live_a"}
    (entry, *_) = await harness.storage.audit_entries("risk_limits")
    assert {entry["by"], entry["rule"]} == {"root", "max_order_quantity"}

    bad = await harness.put(
        "/api/v1/risk/limits/max_order_quantity",
        "root",
        {"enabled": True, "settings": {"max_quantity": -5, "max_qty": 1}},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "risk_settings_invalid"
    assert "risk.max_order_quantity.max_qty" in bad.json()["error"]["message"]
    unchanged = (await harness.get("/api/v1/risk/limits", "root")).json()
    assert unchanged["rules"] == limits["rules"]

    unknown = await harness.put("/api/v1/risk/limits/nope", "root", {"enabled": True})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_risk_rule"
    no_account = await harness.put(
        "/api/v1/risk/limits/price_band", "root", {"enabled": True, "account": "nope"}
    )
    assert no_account.status_code == 404
    schema_error = await harness.put("/api/v1/risk/limits/price_band", "root", {"enabled": "maybe"})
    assert schema_error.status_code in (400, 422)
    trader = await harness.put("/api/v1/risk/limits/price_band", "trader_live", {"enabled": False})
    assert trader.status_code == 403


async def test_user_management(harness: Any) -> None:
    created = await harness.post(
        "/api/v1/users",
        "root",
        {
            "username": "newbie",
            "password": PASSWORD,
            "role": "viewer",
            "kind": "sim",
            "accounts": ["sim_b"],
        },
    )
    assert created.status_code == 201
    assert created.json() == {
        "username": "newbie",
        "role": "viewer",
        "kind": "sim",
        "accounts": ["sim_b"],
        "disabled": False,
    }
    names = [u["username"] for u in (await harness.get("/api/v1/users", "root")).json()]
    assert "newbie" in names
    assert (await harness.get("/api/v1/users/newbie", "root")).json()["role"] == "viewer"

    promoted = await harness.patch("/api/v1/users/newbie", "root", {"role": "trader"})
    assert promoted.json()["role"] == "trader"
    order = await harness.place("sim_b", "newbie")
    assert order["user"] == "newbie"

    clash = await harness.post(
        "/api/v1/users",
        "root",
        {"username": "newbie", "password": PASSWORD, "role": "viewer", "kind": "sim"},
    )
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "user_exists"
    weak = await harness.post(
        "/api/v1/users",
        "root",
        {"username": "w", "password": "short", "role": "viewer", "kind": "sim"},
    )
    assert weak.json()["error"]["code"] == "weak_password"
    sim_live = await harness.post(
        "/api/v1/users",
        "root",
        {
            "username": "s",
            "password": PASSWORD,
            "role": "trader",
            "kind": "sim",
            "accounts": ["live_a"],
        },
    )
    assert sim_live.json()["error"]["code"] == "sim_user_live_account"
    assert (await harness.get("/api/v1/users/ghost", "root")).status_code == 404
    assert (await harness.patch("/api/v1/users/ghost", "root", {"disabled": True})).status_code == (
        404
    )


async def test_the_last_admin_cannot_lock_everyone_out(harness: Any) -> None:
    for name in ("admin_live", "admin_sim", "admin"):
        await harness.patch(f"/api/v1/users/{name}", "root", {"disabled": True})
    response = await harness.patch("/api/v1/users/root", "root", {"role": "viewer"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_admin"
