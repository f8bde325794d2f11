"""Health, readiness, metrics, the OpenAPI document and the docs page; the transport itself."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import anyio
import hft_http
import httpx
import pytest
from fastapi.routing import APIRoute
from hft_http import HttpConfig, HttpTransport
from hft_http.routes import admin, market, ops, orders, portfolio, session
from prometheus_client.parser import text_string_to_metric_families

from hft import ConfigError

pytestmark = pytest.mark.anyio


async def ready(harness: Any) -> tuple[int, dict[str, Any]]:
    response = await harness.client.get("/health/ready")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def eventually_ready(harness: Any, expected: int) -> dict[str, Any]:
    with anyio.fail_after(5):
        while True:
            status, body = await ready(harness)
            if status == expected:
                return body
            await anyio.sleep(0.01)


async def test_ready_when_storage_and_brokers_are(harness: Any) -> None:
    status, body = await ready(harness)
    assert status == 200
    assert body == {
        "status": "ready",
        "components": {
            "storage": {"ready": True, "reason": None},
            "broker:venue": {"ready": True, "reason": None},
        },
    }
    assert (await harness.client.get("/health/live")).json() == {"status": "alive"}
    health = (await harness.client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["version"]
    assert health["uptime_s"] >= 0


async def test_readiness_follows_the_storage(harness: Any) -> None:
    harness.storage.down = True
    status, body = await ready(harness)
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["components"]["storage"] == {
        "ready": False,
        "reason": "storage unreachable: connection refused",
    }
    assert body["components"]["broker:venue"]["ready"] is True
    health = await harness.client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert (await harness.client.get("/health/live")).status_code == 200
    harness.storage.down = False
    assert (await ready(harness))[0] == 200


async def test_a_storage_that_does_not_answer_is_not_ready(harness_factory: Any) -> None:
    async with harness_factory(ready_timeout_s=0.05) as harness:
        harness.storage.ping_delay_s = 1.0
        status, body = await ready(harness)
        assert status == 503
        assert "no answer" in body["components"]["storage"]["reason"]
        harness.storage.ping_delay_s = 0.0
        assert (await ready(harness))[0] == 200


async def test_readiness_follows_the_broker(harness: Any) -> None:
    harness.venue.disconnect("exchange link down")
    body = await eventually_ready(harness, 503)
    assert body["components"]["broker:venue"] == {"ready": False, "reason": "exchange link down"}
    assert body["components"]["storage"]["ready"] is True
    harness.venue.resync()
    await eventually_ready(harness, 200)


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


async def test_metrics(harness: Any) -> None:
    subscription = harness.services.hub.subscribe(["NSE:INFY"])
    open_order = await harness.place("live_a", "trader_live")
    filled = await harness.place("live_a", "trader_live")
    await harness.settle()
    harness.venue.fill(filled["broker_order_id"])
    await harness.put(
        "/api/v1/risk/kill-switch/sim_a", "root", {"mode": "halt", "reason": "metrics"}
    )
    for _ in range(2):
        await harness.post(
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
    harness.venue.drop_connection()
    await eventually_ready(harness, 200)
    await harness.settle()
    subscription.close()

    response = await harness.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = metric_values(response.text)
    assert values[("hft_orders", (("status", "OPEN"),))] == 1
    assert values[("hft_orders", (("status", "FILLED"),))] == 1
    assert values[("hft_orders", (("status", "REJECTED"),))] == 0
    assert values[("hft_risk_rejections_total", (("code", "kill_switch_halt"),))] == 2
    assert values[("hft_order_submit_latency_seconds_count", ())] == 4
    assert values[("hft_order_ack_latency_seconds_count", ())] == 2
    assert values[("hft_order_journal_latency_seconds_count", ())] == 2
    assert values[("hft_order_events_total", (("kind", "created"),))] == 2
    assert values[("hft_market_data_ticks_total", ())] >= 2
    assert values[("hft_market_data_subscribers", ())] == 0
    assert values[("hft_broker_reconnects_total", (("broker", "venue"),))] == 1
    assert (
        values[
            ("hft_broker_connection_events_total", (("broker", "venue"), ("state", "reconnecting")))
        ]
        == 1
    )
    assert values[("hft_broker_ready", (("broker", "venue"),))] == 1
    assert values[("hft_kill_switch", (("account", "sim_a"),))] == 2
    assert values[("hft_kill_switch", (("account", ""),))] == 0
    route = (("method", "POST"), ("route", "/api/v1/orders"), ("status", "201"))
    assert values[("hft_http_requests_total", route)] == 2
    assert ("hft_storage_commit_seconds_count", ()) not in values  # this backend keeps none
    del open_order


async def test_metrics_read_the_core_counters(harness: Any) -> None:
    # Rejections the engine counted for any caller, not only this transport's.
    harness.services.risk.rejections["max_order_quantity"] = 3
    # A backend that times its commits (the SQL one) is read the same way.
    storage = harness.storage
    storage.commit_bounds = (0.001, 0.01)
    storage.commit_buckets = [2, 4, 5]
    storage.commit_seconds = 0.25
    await harness.place("live_a", "trader_live")
    values = metric_values((await harness.client.get("/metrics")).text)
    assert values[("hft_risk_rejections_total", (("code", "max_order_quantity"),))] == 3
    assert (
        values[("hft_orders", (("status", "PENDING"),))]
        + values[("hft_orders", (("status", "OPEN"),))]
        == 1
    )
    assert values[("hft_storage_commit_seconds_bucket", (("le", "0.001"),))] == 2
    assert values[("hft_storage_commit_seconds_bucket", (("le", "0.01"),))] == 4
    assert values[("hft_storage_commit_seconds_bucket", (("le", "+Inf"),))] == 5
    assert values[("hft_storage_commit_seconds_count", ())] == 5
    assert values[("hft_storage_commit_seconds_sum", ())] == 0.25


async def test_the_openapi_document_describes_every_route(harness: Any) -> None:
    document = (await harness.client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "hft REST API"
    routes = {
        (method, route.path)
        for module in (session, orders, portfolio, market, admin, ops)
        for route in module.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == routes
    assert len(routes) >= 40
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            assert operation.get("description"), where  # from the endpoint's docstring
            assert (
                "422" not in operation["responses"]
                or path == "/api/v1/orders"
                or ("orders/{order_id}" in path)
            ), where
            takes_input = operation.get("requestBody") or any(
                p["in"] == "query" for p in operation.get("parameters", [])
            )
            if takes_input:
                assert "400" in operation["responses"], where
            if path.startswith("/api/v1/") and "/auth/" not in path:
                assert operation.get("security"), where
                assert {"401", "429"} <= set(operation["responses"]), where
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    price = schemas["OrderOut"]["properties"]["price"]
    assert [t["type"] for t in price["anyOf"]] == ["string", "null"]  # never a number
    assert schemas["OrderIn"]["properties"]["quantity"]["type"] == "integer"


async def test_the_docs_page_is_served_from_here(harness: Any, harness_factory: Any) -> None:
    page = await harness.client.get("/docs")
    assert page.status_code == 200
    assert "swagger-ui" in page.text
    assert "/openapi.json" in page.text
    assert "cdn." not in page.text  # assets come from this server
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = await harness.client.get("/docs/static/swagger-ui-bundle.js")
    assert script.status_code == 200
    async with harness_factory(docs_enabled=False) as without:
        assert (await without.client.get("/docs")).status_code == 404
        assert (await without.client.get("/openapi.json")).status_code == 200


async def test_the_plugin_is_registered_under_its_entry_point() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="hft.plugins") if e.name == "http"]
    assert entry.value == "hft_http.plugin"
    assert hft_http.HttpTransport is HttpTransport


def test_the_default_config_binds_loopback_8080() -> None:
    config = HttpConfig()
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.docs_enabled


async def test_a_bad_config_is_refused_with_its_path(harness_factory: Any) -> None:
    with pytest.raises(ConfigError, match=r"transports\.http: port must lie in 0\.\.65535"):
        async with harness_factory(port=70000):
            pass
    with pytest.raises(ConfigError, match=r"transports\.http\.colour: unknown key"):
        async with harness_factory(colour="blue"):
            pass


async def test_shutdown_lets_requests_in_flight_finish(harness_factory: Any) -> None:
    answers: list[int] = []
    sent = anyio.Event()
    async with anyio.create_task_group() as tg:
        async with harness_factory(ready_timeout_s=5) as harness:
            harness.storage.ping_delay_s = 0.3
            base_url = harness.base_url

            async def slow_request() -> None:
                async with httpx.AsyncClient(base_url=base_url) as client:
                    sent.set()
                    answers.append((await client.get("/health/ready")).status_code)

            tg.start_soon(slow_request)
            await sent.wait()
            await anyio.sleep(0.1)  # the request now waits on the storage's answer
        # The host has stopped: the transport drained the request instead of dropping it.
        assert answers == [200]
