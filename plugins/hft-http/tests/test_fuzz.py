"""Property-based fuzzing of the live server from its own OpenAPI document (schemathesis).

Every operation gets generated requests, valid and invalid; every answer must be documented
(status, content type, headers, body schema) and none may be a 5xx.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import trio
from fastapi.routing import APIRoute
from hft_http.routes import admin, market, ops, orders, portfolio, session
from hypothesis import HealthCheck, given, settings
from prometheus_client.parser import text_string_to_metric_families
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: Examples per operation and generation mode: enough to walk every field, small enough that
#: the whole run stays well under a minute.
EXAMPLES = 10


class _Server:
    """A host with the HTTP transport in a trio thread, so that schemathesis (synchronous) can
    call it while it runs."""

    def __init__(self, open_harness: Any) -> None:
        self._open_harness = open_harness
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._error: BaseException | None = None
        self.base_url = ""
        self.headers: dict[str, str] = {}
        self.known: dict[str, str] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the server did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with self._open_harness() as harness:
            self.base_url = harness.base_url
            # An API key, not a token: a generated logout must not end the fuzzer's session.
            auth = harness.services.auth
            _, key = await auth.create_api_key("admin_live", "fuzzer")
            self.headers = {"X-API-Key": key}
            # Things that exist, for path parameters: random ones are almost never found.
            spare, _ = await auth.create_api_key("admin_live", "spare")
            self.known = {
                "account_id": "live_a",
                "username": "trader_live",
                "order_id": (await harness.place("live_a"))["order_id"],
                "key_id": spare.key_id,
                "instrument": "NSE:INFY",
                "key": "NSE:INFY",
                "rule": "price_band",
            }
            self._ready.set()
            await self._stop.wait()


@pytest.fixture(scope="module")
def server(harness_factory: Any) -> Iterator[_Server]:
    running = _Server(harness_factory)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api_schema(server: _Server) -> Any:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    schema.config.update(base_url=server.base_url)
    return schema


def _operations() -> list[tuple[str, str]]:
    """Every documented (method, path) of the app, from its routers (known before it runs)."""
    found = []
    for module in (session, orders, portfolio, market, admin, ops):
        for route in module.router.routes:
            assert isinstance(route, APIRoute)
            if route.include_in_schema:
                found += [(method, route.path) for method in sorted(route.methods or ())]
    return found


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", ["positive", "negative", "existing"])
@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_answer_conforms_and_none_is_a_server_error(
    method: str, path: str, mode: str, api_schema: Any, server: _Server
) -> None:
    """``positive``: valid requests; ``negative``: invalid ones; ``existing``: valid requests
    whose path parameters name things that exist (an account, an order, a user...)."""
    documented = api_schema.raw_schema["paths"][path][method.lower()]
    names = re.findall(r"{(\w+)}", path)
    if mode == "negative" and not (documented.get("parameters") or documented.get("requestBody")):
        pytest.skip("the operation takes no input that could be invalid")
    if mode == "existing" and not names:
        pytest.skip("the operation has no path parameters")
    operation = api_schema[path][method]
    strategy = operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE if mode == "negative" else GenerationMode.POSITIVE,
        path_parameters={n: server.known[n] for n in names} if mode == "existing" else None,
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Case[Any]) -> None:
        case.call_and_validate(headers=server.headers, checks=CHECKS)

    call()


def test_the_fuzzer_got_past_validation_and_auth(server: _Server) -> None:
    """Runs after the fuzzing above (file order): most operations answered a 2xx at least once,
    so the generated requests exercised the endpoints, not only their refusals."""
    metrics = httpx.get(f"{server.base_url}/metrics").text
    succeeded = set()
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "hft_http_requests_total" and sample.labels["status"][0] == "2":
                succeeded.add((sample.labels["method"], sample.labels["route"]))
    operations = set(_operations())
    assert len(succeeded & operations) >= 0.75 * len(operations), sorted(operations - succeeded)
