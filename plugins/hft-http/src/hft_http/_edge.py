"""The outermost layer of the app: correlation ids, who is calling, rate limits, security
headers, request metrics and the access log.

It runs before routing, as plain ASGI, so that a refused request (429) costs little, every
answer (errors and 500s included) carries the same headers, and the correlation id is bound
for everything the request does, in the core too.
"""

from __future__ import annotations

import re
import time
from typing import Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hft import HftError
from hft._logging import bind_correlation_id
from hft_http._auth import credential_from_headers
from hft_http._errors import error_body
from hft_http._ratelimit import retry_after_header
from hft_http._state import AUTH_ERROR_KEY, USER_KEY, AppState

__all__ = ["Edge"]

log = structlog.get_logger("hft.http")

_CORRELATION_SHAPE: Final = re.compile(rb"[A-Za-z0-9_.:-]{1,128}")
#: Probes and scrapes are never rate limited: an orchestrator must always get an answer.
_UNLIMITED: Final = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
_API_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
# The docs page runs Swagger UI from this server, with its inline start-up script.
_DOCS_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
        b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    ),
)
_NO_STORE: Final = (b"cache-control", b"no-store")


class Edge:
    """Wraps the FastAPI app; see the module docstring."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _headers(scope)
        given = headers.get(b"x-correlation-id")
        valid = given is not None and _CORRELATION_SHAPE.fullmatch(given) is not None
        with bind_correlation_id(given.decode() if valid and given else None) as cid:
            await self._handle(scope, receive, send, headers, cid, started)

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        cid: str,
        started: float,
    ) -> None:
        state = self.state
        path: str = scope["path"]
        user = None
        credential = credential_from_headers(
            _text(headers.get(b"authorization")), _text(headers.get(b"x-api-key"))
        )
        # Set both keys on every request: nothing may carry over from another one.
        scope[USER_KEY] = None
        scope[AUTH_ERROR_KEY] = None
        if credential is not None:
            try:
                user = state.auth.authenticate(credential)
            except HftError as exc:
                scope[AUTH_ERROR_KEY] = exc
            else:
                scope[USER_KEY] = user

        extra = _DOCS_HEADERS if path.startswith("/docs") else _API_HEADERS
        response_headers = [*extra, (b"x-correlation-id", cid.encode())]
        if path.startswith("/api/"):
            response_headers.append(_NO_STORE)
        status = 500
        sent = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                sent = True
                message["headers"] = [*message.get("headers", ()), *response_headers]
            await send(message)

        try:
            if path not in _UNLIMITED:
                if user is not None:
                    wait = state.limits.admit_user(user.username)
                else:
                    client = scope.get("client")
                    wait = state.limits.admit_anonymous(client[0] if client else "unknown")
                if wait > 0:
                    state.metrics.rate_limited.inc()
                    await _send_error(
                        send_with_headers,
                        429,
                        error_body("rate_limited", "too many requests; retry after a pause"),
                        [(b"retry-after", retry_after_header(wait).encode())],
                    )
                    return
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception as exc:
                # FastAPI has answered 500 already (its handler logged it) and re-raised: the
                # server must not log it a second time or drop the connection.
                if not sent:
                    log.error("http.unhandled", path=path, error=repr(exc), exc_info=exc)
                    await _send_error(
                        send_with_headers,
                        500,
                        error_body("internal", "internal error; quote the correlation id"),
                        [],
                    )
        finally:
            # The route's template, not the path, so that ids do not each make a time series.
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            method: str = scope["method"]
            elapsed = time.perf_counter() - started
            state.metrics.requests.labels(method, template, str(status)).inc()
            state.metrics.request_seconds.labels(method, template).observe(elapsed)
            if state.config.access_log:
                log.info(
                    "http.request",
                    method=method,
                    route=template,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    user=user.username if user is not None else None,
                )


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Header names arrive lower-cased (ASGI); for a repeated header the first one wins.
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        found.setdefault(name, value)
    return found


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


async def _send_error(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
