"""One error shape for every failure: ``{"error": {"code", "message", "correlation_id"}}``.

:class:`hft.HftError` answers with its own ``status`` and ``code``; a request the schema refuses
answers 400 ``invalid`` with the offending fields; unknown routes 404 ``not_found``; anything
unexpected 500 ``internal`` (logged, with no detail leaked to the client).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from hft import AuthError, HftError, RateLimited
from hft._logging import correlation_id
from hft_http._ratelimit import retry_after_header

__all__ = ["error_body", "error_response", "install_error_handlers"]

log = structlog.get_logger("hft.http")

_HTTP_CODES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
}


def error_body(code: str, message: str, fields: Sequence[Mapping[str, str]] | None = None) -> bytes:
    detail: dict[str, object] = {
        "code": code,
        "message": message,
        "correlation_id": correlation_id(),
    }
    if fields is not None:
        detail["fields"] = list(fields)
    return orjson.dumps({"error": detail})


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    fields: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_body(code, message, fields),
        status_code=status,
        headers=dict(headers or {}),
        media_type="application/json",
    )


def hft_error_response(exc: HftError) -> Response:
    status = exc.status or 500
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError) and status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hft"'
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        headers["Retry-After"] = retry_after_header(exc.retry_after_s)
    if status >= 500:
        log.warning("http.error", code=exc.code, status=status, error=exc.message)
    return error_response(status, exc.code, exc.message, headers=headers)


def _field_path(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


async def _on_hft_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HftError)
    return hft_error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"path": _field_path(error.get("loc", ())), "message": str(error.get("msg", "invalid"))}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{f['path']}: {f['message']}" for f in fields[:5])
    return error_response(400, "invalid", f"invalid request: {summary}", fields=fields)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = str(exc.detail) if exc.detail else code
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error(
        "http.unhandled",
        method=request.method,
        path=request.url.path,
        error=repr(exc),
        exc_info=exc,
    )
    return error_response(500, "internal", "internal error; quote the correlation id")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HftError, _on_hft_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)
