"""Every failure as a gRPC status, with hft's stable error code in the trailing metadata.

The status code follows the error's HTTP status (so both transports agree), with a few codes
that gRPC names more exactly; the stable code (``invalid_credentials``, ``risk_rejected``...) is
the trailing metadata entry ``hft-error-code``, and a rate limit's wait is ``hft-retry-after-s``.
The status details (message) are for people. Anything unexpected is ``INTERNAL`` ``internal``,
logged, with nothing of it sent to the client.
"""

from __future__ import annotations

import math
from typing import Final

import grpc

from hft import HftError, RateLimited

__all__ = ["ERROR_CODE_KEY", "RETRY_AFTER_KEY", "grpc_status", "trailers"]

ERROR_CODE_KEY: Final = "hft-error-code"
RETRY_AFTER_KEY: Final = "hft-retry-after-s"

_BY_HTTP_STATUS: Final[dict[int, grpc.StatusCode]] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# Codes whose meaning a gRPC status names more exactly than their HTTP status does.
_BY_ERROR_CODE: Final[dict[str, grpc.StatusCode]] = {
    "duplicate_client_order_id": grpc.StatusCode.ALREADY_EXISTS,
    "overflow": grpc.StatusCode.ABORTED,  # resume the stream from the last seq seen
    "seq_ahead": grpc.StatusCode.OUT_OF_RANGE,
    "shutting_down": grpc.StatusCode.UNAVAILABLE,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_status(exc: HftError) -> grpc.StatusCode:
    """The status code a call that failed with ``exc`` ends with."""
    by_code = _BY_ERROR_CODE.get(exc.code)
    if by_code is not None:
        return by_code
    return _BY_HTTP_STATUS.get(exc.status or 500, grpc.StatusCode.INTERNAL)


def trailers(exc: HftError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that carries ``exc``'s stable code (and a rate limit's wait)."""
    entries: list[tuple[str, str]] = [(ERROR_CODE_KEY, exc.code)]
    if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
        entries.append((RETRY_AFTER_KEY, str(max(1, math.ceil(exc.retry_after_s)))))
    return tuple(entries)
