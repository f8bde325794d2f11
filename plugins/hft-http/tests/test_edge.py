"""What every answer has in common: the error shape, correlation ids, security headers, CORS,
and per-user rate limits."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import anyio
import pytest
import structlog

from hft import _logging as hft_logging

pytestmark = pytest.mark.anyio

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_error_shape(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "correlation_id"} <= set(error)
    assert error["code"] == code
    assert error["message"]
    assert error["correlation_id"] == response.headers["x-correlation-id"]
    return error


async def test_unknown_routes_and_methods_answer_in_the_error_shape(harness: Any) -> None:
    assert_error_shape(await harness.client.get("/api/v1/nothing"), 404, "not_found")
    assert_error_shape(await harness.client.get("/api/v1/orders/"), 404, "not_found")
    assert_error_shape(await harness.client.get("/nothing"), 404, "not_found")
    response = await harness.client.put("/health")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


async def test_malformed_bodies_are_400_invalid(harness: Any) -> None:
    headers = await harness.as_user("trader_live")
    for content in (b"{not json", b"[]", b'"text"', b""):
        response = await harness.client.post(
            "/api/v1/orders",
            content=content,
            headers={**headers, "Content-Type": "application/json"},
        )
        error = assert_error_shape(response, 400, "invalid")
        assert error["fields"]


async def test_a_given_correlation_id_is_echoed_and_logged(harness_factory: Any) -> None:
    stream = io.StringIO()
    hft_logging.configure("info", "json", stream)
    try:
        async with harness_factory(access_log=True) as harness:
            headers = {**await harness.as_user("trader_live"), "X-Correlation-ID": "client-req.42"}
            response = await harness.client.post(
                "/api/v1/orders",
                json={
                    "account": "nope",
                    "instrument": "NSE:INFY",
                    "side": "BUY",
                    "quantity": 1,
                    "price": "1.00",
                },
                headers=headers,
            )
    finally:
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_hft_logging", False)]:
            root.removeHandler(handler)
    assert response.headers["x-correlation-id"] == "client-req.42"
    assert response.json()["error"]["correlation_id"] == "client-req.42"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (access,) = [line for line in lines if line.get("correlation_id") == "client-req.42"]
    assert access["event"] == "http.request"
    assert (access["route"], access["status"], access["user"]) == (
        "/api/v1/orders",
        404,
        "trader_live",
    )
    assert hft_logging.correlation_id() is None  # bound for the request only
    assert not any("Bearer" in line or "eyJ" in line for line in stream.getvalue().splitlines())


async def test_the_correlation_id_is_bound_for_the_core_too(harness: Any) -> None:
    seen: list[str | None] = []
    original = harness.venue._place

    def place(*args: Any) -> str:
        seen.append(hft_logging.correlation_id())
        broker_order_id: str = original(*args)
        return broker_order_id

    harness.venue._place = place
    await harness.client.post(
        "/api/v1/orders",
        json={
            "account": "live_a",
            "instrument": "NSE:INFY",
            "side": "BUY",
            "quantity": 1,
            "price": "1000.00",
        },
        headers={**await harness.as_user("trader_live"), "X-Correlation-ID": "trace-7"},
    )
    assert seen == ["trace-7"]


async def test_a_missing_or_unusable_correlation_id_is_replaced(harness: Any) -> None:
    plain = await harness.client.get("/health/live")
    generated = plain.headers["x-correlation-id"]
    assert 8 <= len(generated) <= 128
    again = await harness.client.get("/health/live")
    assert again.headers["x-correlation-id"] != generated
    for bad in ("has spaces", "x" * 200, "semi;colon"):
        response = await harness.client.get("/health/live", headers={"X-Correlation-ID": bad})
        assert response.headers["x-correlation-id"] != bad


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/me"), ("GET", "/health"), ("GET", "/metrics"), ("GET", "/api/v1/nope")],
)
async def test_security_headers_on_every_answer(harness: Any, method: str, path: str) -> None:
    response = await harness.client.request(
        method, path, headers=await harness.as_user("viewer_live")
    )
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "server" not in response.headers
    if path.startswith("/api/"):
        assert response.headers["cache-control"] == "no-store"


async def test_cors_is_off_unless_configured(harness: Any, harness_factory: Any) -> None:
    preflight = {
        "Origin": "https://desk.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    response = await harness.client.options("/api/v1/orders", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    async with harness_factory(cors_origins=["https://desk.example"]) as cors:
        allowed = await cors.client.options("/api/v1/orders", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://desk.example"
        assert "POST" in allowed.headers["access-control-allow-methods"]
        simple = await cors.client.get(
            "/api/v1/me",
            headers={**await cors.as_user("viewer_live"), "Origin": "https://desk.example"},
        )
        assert simple.headers["access-control-allow-origin"] == "https://desk.example"
        assert "x-correlation-id" in simple.headers["access-control-expose-headers"].lower()
        other = await cors.client.options(
            "/api/v1/orders", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


# Rate limits ------------------------------------------------------------------------------------


async def test_each_user_has_their_own_rate_limit(harness_factory: Any) -> None:
    async with harness_factory(rate_limit_per_s=2, rate_limit_burst=3) as harness:
        statuses = [(await harness.get("/api/v1/me", "trader_live")).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await harness.get("/api/v1/me", "trader_live")
        error = assert_error_shape(limited, 429, "rate_limited")
        assert error["message"]
        assert limited.headers["retry-after"] == "1"
        for name, value in SECURITY_HEADERS.items():
            assert limited.headers[name] == value
        # Another user is not held back by this one.
        assert (await harness.get("/api/v1/me", "trader_sim")).status_code == 200
        # Probes and scrapes are never limited.
        for path in ("/health", "/health/live", "/health/ready", "/metrics"):
            assert (await harness.get(path, "trader_live")).status_code == 200
        await anyio.sleep(0.6)  # one token back at 2 a second
        assert (await harness.get("/api/v1/me", "trader_live")).status_code == 200
        assert (await harness.get("/api/v1/me", "trader_live")).status_code == 429
        metrics = (await harness.client.get("/metrics")).text
        assert "hft_http_rate_limited_total 2.0" in metrics


async def test_unauthenticated_clients_are_limited_by_address(harness_factory: Any) -> None:
    async with harness_factory(anonymous_rate_limit_per_s=0.5, anonymous_rate_limit_burst=2) as h:
        wrong = {"username": "trader_live", "password": "guessing!!"}
        statuses = [
            (await h.client.post("/api/v1/auth/login", json=wrong)).status_code for _ in range(3)
        ]
        assert statuses == [401, 401, 429]
        limited = await h.client.post("/api/v1/auth/login", json=wrong)
        assert limited.headers["retry-after"] == "2"
        # A signed-in user is counted apart from the address.
        key = await h.services.auth.create_api_key("trader_live", "k")
        me = await h.client.get("/api/v1/me", headers={"X-API-Key": key[1]})
        assert me.status_code == 200
