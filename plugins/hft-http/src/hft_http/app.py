"""The ASGI app: FastAPI routes behind the edge middleware."""

from __future__ import annotations

import importlib.metadata
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from hft._host import Services
from hft_http._edge import Edge
from hft_http._errors import install_error_handlers
from hft_http._metrics import Metrics
from hft_http._ratelimit import RateLimits
from hft_http._state import AppState
from hft_http.config import HttpConfig
from hft_http.routes import admin, market, ops, orders, portfolio, session
from hft_http.routes._common import API_PREFIX

__all__ = ["API_PREFIX", "build_app"]

_DESCRIPTION = """\
The REST API of an hft host: orders, portfolio, instruments, market data, users and risk.

**Authentication.** Sign in with `POST /api/v1/auth/login` and send the access token as
`Authorization: Bearer <token>`, or send an API key as `X-API-Key: <key>` (or
`Authorization: ApiKey <key>`).

**Numbers.** Prices and money are decimal strings (`"1500.05"`), never JSON numbers;
quantities are integers.

**Errors.** Every error answers `{"error": {"code", "message", "correlation_id"}}`; `code` is
stable. Send `X-Correlation-ID` to choose the id; every answer echoes it.

**Rate limits.** Per user (per address when unauthenticated); over the limit answers 429 with
`Retry-After` in seconds.
"""


def _version() -> str:
    try:
        return importlib.metadata.version("hft-http")
    except importlib.metadata.PackageNotFoundError:  # a source checkout
        return "0.0.0"


def build_app(services: Services, config: HttpConfig) -> tuple[ASGIApp, AppState]:
    """The app serving ``services``, and its state (for the transport's background tasks)."""
    state = AppState(
        services=services,
        config=config,
        auth=services.auth,
        metrics=Metrics(services),
        limits=RateLimits(
            config.rate_limit_per_s,
            config.rate_limit_burst,
            config.anonymous_rate_limit_per_s,
            config.anonymous_rate_limit_burst,
        ),
    )
    app = FastAPI(
        title="hft REST API",
        version=_version(),
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        # An API answers 404 for a path it does not serve rather than redirecting elsewhere.
        redirect_slashes=False,
    )
    app.state.hft = state
    install_error_handlers(app)
    # Each router carries its full prefix, so a route's path is its whole template (metrics).
    for module in (session, orders, portfolio, market, admin, ops):
        app.include_router(module.router)
    if config.docs_enabled:
        _add_docs(app)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Correlation-ID"],
            expose_headers=["X-Correlation-ID", "Retry-After"],
            max_age=600,
        )
    _exact_openapi(app)
    return Edge(app, state), state


def _add_docs(app: FastAPI) -> None:
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    # Served from here, not a CDN: hosts often run where browsers reach nothing else.
    app.mount("/docs/static", StaticFiles(directory=str(swagger_ui_path)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="hft REST API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
        )


def _exact_openapi(app: FastAPI) -> None:
    """Drop FastAPI's automatic 422 validation answers: this API answers 400 ``invalid``."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                answer = responses.get("422", {})
                ref = (
                    answer.get("content", {})
                    .get("application/json", {})
                    .get("schema", {})
                    .get("$ref", "")
                )
                if ref.endswith("/HTTPValidationError"):
                    del responses["422"]
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
