"""Orders over HTTP: place, get, list, modify, cancel; prices as decimal strings; errors."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio

BUY = {"account": "live_a", "instrument": "NSE:INFY", "side": "BUY", "quantity": 2}


async def test_place_answers_the_order_with_decimal_prices(harness: Any) -> None:
    response = await harness.post(
        "/api/v1/orders", "trader_live", {**BUY, "price": "1499.95", "client_order_id": "c-1"}
    )
    assert response.status_code == 201
    (order,) = response.json()["orders"]
    assert order["price"] == "1499.95"
    assert order["quantity"] == 2
    assert order["status"] in ("PENDING", "OPEN")
    assert order["user"] == "trader_live"
    assert order["client_order_id"] == "c-1"
    assert order["broker_order_id"]
    core = harness.services.oms.get(harness.services.auth.user("root"), order["order_id"])
    assert core.request.price == 149995  # fixed point, paise

    await harness.settle()
    fetched = await harness.get(f"/api/v1/orders/{order['order_id']}", "trader_live")
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "OPEN"
    assert [h["status"] for h in fetched.json()["history"]] == ["NEW", "PENDING", "OPEN"]


async def test_a_retried_client_order_id_never_places_twice(harness: Any) -> None:
    body = {**BUY, "price": "1000.00", "client_order_id": "retry-me"}
    first = await harness.post("/api/v1/orders", "trader_live", body)
    again = await harness.post("/api/v1/orders", "trader_live", body)
    assert first.status_code == again.status_code == 201
    assert first.json()["orders"][0]["order_id"] == again.json()["orders"][0]["order_id"]
    clash = await harness.post("/api/v1/orders", "trader_live", {**body, "quantity": 3})
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "duplicate_client_order_id"


async def test_list_filters_and_pages_newest_first(harness: Any) -> None:
    ids = []
    for i in range(5):
        order = await harness.place("live_a", "trader_live", price=f"{1000 + i}.00")
        ids.append(order["order_id"])
    await harness.place("sim_a", "trader_live")
    await harness.place("live_a", "trader_live", side="SELL")

    page = (
        await harness.get(
            "/api/v1/orders", "trader_live", params={"account": "live_a", "side": "BUY", "limit": 2}
        )
    ).json()
    assert page["total"] == 5
    assert [o["order_id"] for o in page["items"]] == ids[::-1][:2]
    assert page["next_offset"] == 2
    rest = (
        await harness.get(
            "/api/v1/orders",
            "trader_live",
            params={"account": "live_a", "side": "BUY", "limit": 2, "offset": 4},
        )
    ).json()
    assert [o["order_id"] for o in rest["items"]] == [ids[0]]
    assert rest["next_offset"] is None

    everything = (await harness.get("/api/v1/orders", "trader_live")).json()
    assert everything["total"] == 7
    sim = (await harness.get("/api/v1/orders", "trader_live", params={"account": "sim_a"})).json()
    assert sim["total"] == 1
    await harness.settle()
    open_orders = await harness.get("/api/v1/orders", "trader_live", params={"status": "OPEN"})
    assert open_orders.json()["total"] == 7
    none = await harness.get("/api/v1/orders", "trader_live", params={"instrument": "NSE:TCS"})
    assert none.json()["total"] == 0


async def test_modify_then_cancel(harness: Any) -> None:
    order = await harness.place("live_a", "trader_live")
    await harness.settle()
    changed = await harness.patch(
        f"/api/v1/orders/{order['order_id']}", "trader_live", {"price": "1001.50", "quantity": 3}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["price"] == "1001.50"
    assert changed.json()["quantity"] == 3
    assert changed.json()["status"] == "OPEN"

    cancelled = await harness.delete(f"/api/v1/orders/{order['order_id']}", "trader_live")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "PENDING_CANCEL"
    await harness.settle()
    final = await harness.get(f"/api/v1/orders/{order['order_id']}", "trader_live")
    assert final.json()["status"] == "CANCELLED"
    again = await harness.delete(f"/api/v1/orders/{order['order_id']}", "trader_live")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "order_not_live"


async def test_a_fill_shows_in_orders_trades_positions_and_pnl(harness: Any) -> None:
    # A market-data subscriber (a WebSocket client, say) makes the hub mark positions.
    subscription = harness.services.hub.subscribe(["NSE:INFY"])
    order = await harness.place("live_a", "trader_live", price="1500.05", quantity=4)
    await harness.settle()
    harness.venue.fill(order["broker_order_id"], 4)
    harness.venue.set_last_price("NSE:INFY", 151000)
    await harness.settle()

    filled = (await harness.get(f"/api/v1/orders/{order['order_id']}", "trader_live")).json()
    assert filled["status"] == "FILLED"
    assert filled["average_price"] == "1500.05"
    trades = (await harness.get("/api/v1/trades", "trader_live")).json()
    assert trades["total"] == 1
    (trade,) = trades["items"]
    assert (trade["order_id"], trade["price"], trade["quantity"], trade["side"]) == (
        order["order_id"],
        "1500.05",
        4,
        "BUY",
    )
    (position,) = (
        await harness.get("/api/v1/positions", "trader_live", params={"account": "live_a"})
    ).json()
    assert position["quantity"] == 4
    assert position["average_price"] == "1500.05"
    assert position["last_price"] == "1510.00"
    assert position["unrealised_pnl"] == "39.80"  # (1510.00 - 1500.05) × 4
    assert position["buy_value"] == "6000.20"
    pnl = (await harness.get("/api/v1/accounts/live_a/pnl", "trader_live")).json()
    assert (pnl["realised"], pnl["unrealised"], pnl["total"]) == ("0.00", "39.80", "39.80")
    # Another account's book is untouched.
    assert (await harness.get("/api/v1/accounts/sim_a/pnl", "trader_live")).json()["total"] == (
        "0.00"
    )
    subscription.close()


async def test_a_broker_rejection_is_an_order_not_an_error(harness: Any) -> None:
    harness.venue.reject_next("RMS: insufficient margin")
    order = await harness.place("live_a", "trader_live")
    await harness.settle()
    final = (await harness.get(f"/api/v1/orders/{order['order_id']}", "trader_live")).json()
    assert final["status"] == "REJECTED"
    assert "insufficient margin" in final["reason"]


async def test_a_risk_rejection_answers_422_with_the_rules_code(harness: Any) -> None:
    halted = await harness.put(
        "/api/v1/risk/kill-switch/live_a", "root", {"mode": "halt", "reason": "test"}
    )
    assert halted.status_code == 200
    response = await harness.post("/api/v1/orders", "trader_live", {**BUY, "price": "1000.00"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "kill_switch_halt"
    listed = await harness.get("/api/v1/orders", "trader_live")
    assert listed.json()["total"] == 0  # nothing was created
    # Other accounts still trade.
    assert (await harness.place("sim_a", "trader_live"))["status"] in ("PENDING", "OPEN")


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"price": 1500.05}, 400, "invalid"),  # a JSON number, not a decimal string
        ({"price": "1500.05.1"}, 400, "invalid"),
        ({"price": "1500.03"}, 400, "off_tick"),
        ({"price": "1500.001"}, 400, "invalid"),  # finer than the instrument's paise
        ({"quantity": 0}, 400, "invalid"),
        ({"quantity": "2"}, 400, "invalid"),
        ({"side": "HOLD"}, 400, "invalid"),
        ({"order_type": "MARKET"}, 400, "unexpected_price"),
        ({"instrument": "NSE:NOPE"}, 404, "not_found"),
        ({"account": "nope"}, 404, "not_found"),
        ({"surprise": 1}, 400, "invalid"),
        ({"extras": {"iceberg": "yes"}}, 201, None),  # passed to the broker, which refuses it
    ],
)
async def test_bad_orders_change_nothing(
    harness: Any, change: dict[str, Any], status: int, error: str | None
) -> None:
    response = await harness.post(
        "/api/v1/orders", "trader_live", {**BUY, "price": "1500.05", **change}
    )
    assert response.status_code == status, response.text
    if error is None:
        assert response.json()["orders"][0]["status"] == "REJECTED"
        return
    body = response.json()["error"]
    assert body["code"] == error
    assert body["correlation_id"] == response.headers["x-correlation-id"]
    if error == "invalid" and "fields" in body:
        assert body["fields"][0]["path"].startswith("body")
    assert (await harness.get("/api/v1/orders", "trader_live")).json()["total"] == 0


async def test_validation_errors_name_the_field(harness: Any) -> None:
    response = await harness.post("/api/v1/orders", "trader_live", {**BUY, "price": 1500.05})
    fields = response.json()["error"]["fields"]
    assert [f["path"] for f in fields] == ["body.price"]
    bad_query = await harness.get("/api/v1/orders", "trader_live", params={"limit": 0})
    assert bad_query.status_code == 400
    assert bad_query.json()["error"]["fields"][0]["path"] == "query.limit"


async def test_an_order_that_is_not_visible_is_not_found(harness: Any) -> None:
    order = await harness.place("live_b")  # the setup user's, on an account trader_live lacks
    for call in (harness.get, harness.delete):
        response = await call(f"/api/v1/orders/{order['order_id']}", "trader_live")
        assert response.status_code == 404
    assert (await harness.get(f"/api/v1/orders/{order['order_id']}", "root")).status_code == 200
