"""The Kite Connect v3 REST client: headers, envelopes, errors, rate limits, batching.

Rate limits are kept client-side per endpoint family (spec section 4), with windows widened a
little for clock jitter, so a well-behaved host never earns a 429; one that arrives anyway is
retried with exponential backoff (Kite sends no ``Retry-After``). Calls that may change state
(placing, modifying, cancelling) are retried only after a 429, which proves the request was
refused; reads are also retried after transport failures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal, TypeAlias

import httpx
import structlog

from hft._errors import NetworkError, RateLimited, ValidationError
from hft._resilience import Backoff, RateLimiter, retry
from hft._secret import Secret

from .config import ZerodhaConfig
from .parsing.kite import error_from_response, parse_envelope

__all__ = ["BATCH_LIMITS", "Family", "KiteRest"]

log = structlog.get_logger("hft_zerodha.rest")

Family: TypeAlias = Literal["quote", "historical", "orders", "changes", "other"]
Params: TypeAlias = Mapping[str, str | int | Sequence[str]]

#: Instruments per call of each quote route.
BATCH_LIMITS: Final = {"/quote": 500, "/quote/ohlc": 1000, "/quote/ltp": 1000}
_USER_AGENT: Final = "hft-zerodha/0.1"


def _limiters() -> dict[Family, RateLimiter]:
    return {
        "quote": RateLimiter((1, 1.05)),
        "historical": RateLimiter((3, 1.05)),
        # 10/s, 400/min and 5000/day orders (the day cap counts per login, across restarts
        # too: the broker's count is what finally applies).
        "orders": RateLimiter((10, 1.05), (400, 60.5), (5000, 86_400.0)),
        # Modifications and cancellations do not count towards the order caps.
        "changes": RateLimiter((10, 1.05)),
        "other": RateLimiter((10, 1.05)),
    }


def _rate_limited(exc: BaseException) -> bool:
    return isinstance(exc, RateLimited)


def _retryable_read(exc: BaseException) -> bool:
    return isinstance(exc, NetworkError)


class KiteRest:
    """One api key's REST session. Use as ``async with KiteRest(config) as rest``."""

    def __init__(
        self,
        config: ZerodhaConfig,
        access_token: Secret | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._token = access_token
        self._client = httpx.AsyncClient(
            base_url=config.api_url,
            timeout=config.timeout_s,
            headers={"X-Kite-Version": "3", "User-Agent": _USER_AGENT},
            transport=transport,
        )
        self._limits = _limiters()
        self._backoff = Backoff(initial_s=config.retry_initial_s, max_s=30.0, jitter="equal")

    async def __aenter__(self) -> KiteRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def set_access_token(self, token: Secret | None) -> None:
        self._token = token

    # The one request path ---------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        family: Family,
        *,
        params: Params | None = None,
        data: Mapping[str, Any] | None = None,
        authorised: bool = True,
        raw: bool = False,
    ) -> Any:
        """Send one request and return the envelope's ``data`` (or the body, if ``raw``)."""
        changes = method != "GET"
        what = f"{method} {path}"

        async def attempt() -> Any:
            await self._limits[family].acquire()
            return await self._send(method, path, what, params, data, authorised, raw)

        return await retry(
            attempt,
            attempts=5,
            backoff=self._backoff,
            retry_if=_rate_limited if changes else _retryable_read,
            what=f"kite {what}",
        )

    async def _send(
        self,
        method: str,
        path: str,
        what: str,
        params: Params | None,
        data: Mapping[str, Any] | None,
        authorised: bool,
        raw: bool,
    ) -> Any:
        headers = {}
        if authorised:
            if not self._token:
                raise NetworkError(f"kite: {what}: no access token", code="kite_no_session")
            headers["Authorization"] = f"token {self._config.api_key}:{self._token.reveal()}"
        try:
            response = await self._client.request(
                method, path, params=params, data=data, headers=headers
            )
        except httpx.TimeoutException:
            raise NetworkError(f"kite: {what} timed out", code="timeout") from None
        except httpx.HTTPError as exc:
            # The exception text may hold the URL, whose query can carry a token: name the type.
            raise NetworkError(f"kite: {what} failed: {type(exc).__name__}") from None
        body = response.content
        if response.status_code >= 400:
            error = error_from_response(response.status_code, body, what)
            log.warning("kite.error", what=what, status=response.status_code, code=error.code)
            raise error
        if raw:
            kind = response.headers.get("content-type", "")
            if "csv" not in kind and "text/plain" not in kind:
                # A JSON body here is an error envelope that came with a 200.
                parse_envelope(body, what)
                raise ValidationError(
                    f"kite: {what}: expected CSV, got {kind or 'no content type'}",
                    code="kite_malformed",
                    status=502,
                )
            return body
        return parse_envelope(body, what)

    # Batched quotes ---------------------------------------------------------------------------

    async def quotes(self, route: str, keys: Sequence[str]) -> dict[str, Any]:
        """``/quote``, ``/quote/ohlc`` or ``/quote/ltp`` for ``keys``, in batches the route
        accepts; entries are merged by key (absent keys had no data)."""
        limit = BATCH_LIMITS[route]
        merged: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), limit):
            batch = unique[start : start + limit]
            data = await self.call("GET", route, "quote", params={"i": batch})
            if not isinstance(data, Mapping):
                raise ValidationError(
                    f"kite: GET {route}: data is not an object", code="kite_malformed", status=502
                )
            merged.update(data)
        return merged

    async def historical(
        self,
        token: int,
        interval: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        continuous: bool = False,
        oi: bool = False,
    ) -> Any:
        fmt = "%Y-%m-%d %H:%M:%S"
        return await self.call(
            "GET",
            f"/instruments/historical/{token}/{interval}",
            "historical",
            params={
                "from": start.strftime(fmt),
                "to": end.strftime(fmt),
                "continuous": int(continuous),
                "oi": int(oi),
            },
        )
