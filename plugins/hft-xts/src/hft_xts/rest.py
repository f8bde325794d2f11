"""The two XTS REST families (Interactive and Market Data) over httpx, with their sessions.

Every reply is an envelope ``{type, code, description, result}`` (spec 3); :func:`result_of`
checks it and maps errors onto the :class:`hft.HftError` tree:

- HTTP 429 → :class:`RateLimited`; 5xx, a non-JSON body or no answer → :class:`NetworkError`;
- ``Invalid Token`` / ``e-session-0007`` (HTTP 400, 401 or 403) → :class:`AuthError` with code
  ``xts_session_expired``: the session logs in again once and repeats the call;
- a refused login, ``e-user-0013`` (IP not whitelisted), ``e-response-0012`` (CTCL only) →
  :class:`AuthError`;
- ``e-response-0004`` (data not found) → :class:`NotFound`;
- ``e-session-0002`` (already subscribed) → :class:`Conflict`;
- HTTP 400 ``Bad Request`` with field errors → :class:`ValidationError`;
- anything else refused → :class:`BrokerRejected`.

Messages carry XTS's code and description, never a key or token. Success is judged by ``type``
alone: one install answers a good market-data login with an ``e-`` code.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import anyio
import attrs
import httpx
import structlog

from hft import (
    AuthError,
    BrokerRejected,
    Conflict,
    HftError,
    NetworkError,
    NotFound,
    RateLimited,
    Secret,
    ValidationError,
)
from hft._resilience import TokenBucket
from hft_xts.config import XtsConfig
from hft_xts.parsing.values import field, loads, text

__all__ = ["InteractiveSession", "MarketDataSession", "XtsRest", "encode_json", "result_of"]

log = structlog.get_logger("hft.xts")

Family = Literal["interactive", "marketdata"]
_SESSION_EXPIRED: Final = "xts_session_expired"


def _token_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT, read without checking the signature (only to schedule re-login)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp")
        return float(exp) if isinstance(exp, int | float) else None
    except (IndexError, ValueError, AttributeError, TypeError):
        return None


def encode_json(value: object) -> str:
    """JSON text with :class:`Decimal` prices written as exact numbers (``json`` would need a
    float on the way, which the order path never holds)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        items = ",".join(f"{json.dumps(str(k))}:{encode_json(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    if value is None or isinstance(value, str | int | bool):
        return json.dumps(value)
    raise TypeError(f"cannot encode {type(value).__name__} as XTS JSON")


def result_of(status: int, body: bytes, what: str) -> Any:
    """The ``result`` of a successful envelope; raise the mapped error otherwise."""
    if status == 429:
        raise RateLimited(
            f"XTS throttled {what} (HTTP 429)", code="xts_rate_limited", retry_after_s=1.0
        )
    try:
        envelope = loads(body)
    except ValidationError:
        if status >= 500 or status == 404:
            raise NetworkError(f"XTS answered {what} with HTTP {status}", status=503) from None
        raise NetworkError(
            f"XTS answered {what} with HTTP {status} and a body that is not JSON",
            code="xts_bad_response",
        ) from None
    # Some installs wrap the envelope in a one-element list.
    if isinstance(envelope, list) and len(envelope) == 1:
        envelope = envelope[0]
    if not isinstance(envelope, dict):
        raise NetworkError(f"XTS answered {what} with no envelope", code="xts_bad_response")
    kind = text(envelope.get("type")).lower()
    if kind == "success" and status < 400:
        return envelope.get("result")
    code = text(envelope.get("code"))
    description = text(envelope.get("description")) or "no description"
    message = f"XTS refused {what}: {code or 'no code'} {description}"
    lowered = description.lower()
    if code == "e-session-0007" or "invalid token" in lowered:
        raise AuthError(message, code=_SESSION_EXPIRED)
    if code in ("e-user-0013", "e-response-0012") or "trusted ip" in lowered:
        raise AuthError(message, code="xts_login_refused")
    if status >= 500:
        raise NetworkError(message, status=503)
    if code == "e-response-0004":
        raise NotFound(message, code="xts_not_found")
    if code == "e-session-0002":
        raise Conflict(message, code="xts_already_subscribed")
    result = envelope.get("result")
    errors = field(result, "errors") if isinstance(result, Mapping) else None
    if status == 400 and errors:
        details = (
            "; ".join(
                text(field(e, "messages", "message")) if isinstance(e, Mapping) else text(e)
                for e in errors
            )
            if isinstance(errors, list)
            else text(errors)
        )
        raise ValidationError(f"{message} ({details})", code="xts_bad_request")
    raise BrokerRejected(message, code="xts_rejected")


@attrs.define
class InteractiveSession:
    token: Secret
    user_id: str
    is_investor: bool
    client_codes: tuple[str, ...]
    expires_at: float | None
    #: Segment name → allowed product and order types, from the login's ``enums.exchangeInfo``.
    exchange_info: dict[str, Any]


@attrs.define
class MarketDataSession:
    token: Secret
    user_id: str
    expires_at: float | None


class XtsRest:
    """Both REST families of one install, logged in lazily and again when a token dies."""

    def __init__(
        self, config: XtsConfig, name: str, client: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config
        self.name = name
        origin = config.url.rstrip("/")
        self.origin = origin
        #: Where the interactive socket lives (host lookup may name another host).
        self.interactive_origin = origin
        self.interactive_base = origin + config.interactive_prefix
        self.marketdata_base = origin + config.marketdata_prefix
        self.interactive_socket_path = f"{config.interactive_prefix}/socket.io"
        self.marketdata_socket_path = f"{config.marketdata_prefix}/socket.io"
        self._client = client or httpx.AsyncClient(
            timeout=config.timeout_s, verify=config.verify_tls
        )
        self._unique_key: Secret | None = None
        self.interactive: InteractiveSession | None = None
        self.marketdata: MarketDataSession | None = None
        self._login_lock = anyio.Lock()
        self.orders_gate = TokenBucket(config.order_rate_per_s, burst=config.order_rate_per_s)
        self._query_gates: dict[str, TokenBucket] = {}

    # Sessions -------------------------------------------------------------------------------

    async def _host_lookup(self) -> None:
        body = {
            "accesspassword": self.config.host_lookup_password.reveal(),
            "version": self.config.host_lookup_version,
        }
        response = await self._send("POST", f"{self.origin}/hostlookup", None, body, None)
        # One install answers a good lookup with type != success: judge by the key (spec 1.2).
        try:
            envelope = loads(response.content)
        except ValidationError:
            envelope = None
        result = envelope.get("result") if isinstance(envelope, dict) else None
        unique_key = text(field(result, "uniqueKey")) if isinstance(result, Mapping) else ""
        connection = text(field(result, "connectionString")) if isinstance(result, Mapping) else ""
        if response.status_code >= 400 or not unique_key or not connection:
            try:
                result_of(response.status_code, response.content, "the host lookup")
            except NetworkError:
                raise
            except HftError as exc:
                raise AuthError(exc.message, code="xts_login_refused") from None
            raise AuthError("XTS host lookup gave no uniqueKey", code="xts_login_refused")
        self._unique_key = Secret(unique_key)
        parts = urlsplit(connection)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AuthError(
                f"XTS host lookup named {connection!r}, not a URL", code="xts_login_refused"
            )
        self.interactive_base = connection.rstrip("/")
        first = parts.path.strip("/").split("/")[0] or "interactive"
        self.interactive_socket_path = f"/{first}/socket.io"
        self.interactive_origin = f"{parts.scheme}://{parts.netloc}"

    async def login_interactive(self) -> InteractiveSession:
        config = self.config
        body: dict[str, str] = {
            "appKey": config.interactive_app_key.reveal(),
            "secretKey": config.interactive_secret_key.reveal(),
        }
        if config.host_lookup:
            await self._host_lookup()
            assert self._unique_key is not None
            body["uniqueKey"] = self._unique_key.reveal()
        else:
            body["source"] = config.source
        result = await self._login(f"{self.interactive_base}/user/session", body, "interactive")
        token = text(field(result, "token"))
        codes = field(result, "clientCodes", default=[]) or []
        enums = field(result, "enums", default={}) or {}
        info = field(enums, "exchangeInfo", default={}) if isinstance(enums, Mapping) else {}
        investor = field(result, "isInvestorClient", default=True)
        self.interactive = InteractiveSession(
            token=Secret(token),
            user_id=text(field(result, "userID")),
            is_investor=investor is not False and text(investor).lower() != "false",
            client_codes=tuple(text(c) for c in codes if text(c))
            if isinstance(codes, list)
            else (),
            expires_at=_token_expiry(token),
            exchange_info=dict(info) if isinstance(info, Mapping) else {},
        )
        log.info(
            "xts.logged_in",
            broker=self.name,
            api="interactive",
            user=self.interactive.user_id,
            dealer=not self.interactive.is_investor,
        )
        return self.interactive

    async def login_marketdata(self) -> MarketDataSession:
        config = self.config
        body = {
            "appKey": config.marketdata_app_key.reveal(),
            "secretKey": config.marketdata_secret_key.reveal(),
            "source": config.source,
        }
        result = await self._login(f"{self.marketdata_base}/auth/login", body, "market data")
        token = text(field(result, "token"))
        self.marketdata = MarketDataSession(
            Secret(token), text(field(result, "userID")), _token_expiry(token)
        )
        log.info("xts.logged_in", broker=self.name, api="marketdata", user=self.marketdata.user_id)
        return self.marketdata

    async def _login(self, url: str, body: dict[str, str], what: str) -> Mapping[str, Any]:
        response = await self._send("POST", url, None, body, None)
        try:
            result = result_of(response.status_code, response.content, f"the {what} login")
        except (BrokerRejected, ValidationError, NotFound, AuthError) as exc:
            raise AuthError(
                f"{exc.message}; check the {what} app key and secret key of broker {self.name!r}",
                code="xts_login_refused",
            ) from None
        if not isinstance(result, Mapping) or not text(field(result, "token")):
            raise AuthError(f"XTS {what} login answered without a token", code="xts_login_refused")
        return result

    async def ensure_sessions(self) -> None:
        await self.token("interactive")
        await self.token("marketdata")

    async def token(self, family: Family, stale: Secret | None = None) -> Secret:
        """The family's token, logging in when there is none, it is near ``exp``, or it is the
        ``stale`` one a call was just refused with."""
        async with self._login_lock:
            session: InteractiveSession | MarketDataSession | None = (
                self.interactive if family == "interactive" else self.marketdata
            )
            margin = self.config.relogin_margin_s
            if (
                session is None
                or (stale is not None and session.token == stale)
                or (session.expires_at is not None and time.time() > session.expires_at - margin)
            ):
                if session is not None:
                    log.info("xts.relogin", broker=self.name, api=family)
                session = await (
                    self.login_interactive() if family == "interactive" else self.login_marketdata()
                )
            return session.token

    async def logout(self) -> None:
        """End both API sessions (best effort: the host is shutting down)."""
        for family, url in (
            ("interactive", f"{self.interactive_base}/user/session"),
            ("marketdata", f"{self.marketdata_base}/auth/logout"),
        ):
            session = self.interactive if family == "interactive" else self.marketdata
            if session is None:
                continue
            try:
                await self._send("DELETE", url, None, None, session.token)
            except NetworkError as exc:
                log.warning("xts.logout_failed", broker=self.name, api=family, error=str(exc))
        self.interactive = self.marketdata = None

    async def aclose(self) -> None:
        await self._client.aclose()

    # Calls ----------------------------------------------------------------------------------

    async def call(
        self,
        family: Family,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        what: str,
        gate: Literal["order", "query", None] = None,
    ) -> Any:
        """One authorised call; a dead token is renewed once and the call repeated."""
        base = self.interactive_base if family == "interactive" else self.marketdata_base
        if gate == "order":
            await self.orders_gate.acquire()
        elif gate == "query":
            bucket = self._query_gates.get(path)
            if bucket is None:
                rate = self.config.query_rate_per_s
                bucket = self._query_gates[path] = TokenBucket(rate, burst=max(1.0, rate))
            await bucket.acquire()
        token = await self.token(family)
        for attempt in (1, 2):
            response = await self._send(method, base + path, params, body, token)
            try:
                return result_of(response.status_code, response.content, what)
            except AuthError as exc:
                if exc.code != _SESSION_EXPIRED or attempt == 2:
                    raise
                token = await self.token(family, stale=token)
        raise AssertionError("unreachable")

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        body: Mapping[str, Any] | None,
        token: Secret | None,
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            # The raw token, no "Bearer" (spec 1.3).
            headers["Authorization"] = token.reveal()
        try:
            return await self._client.request(
                method,
                url,
                params={k: str(v) for k, v in (params or {}).items()},
                content=encode_json(body) if body is not None else None,
                headers=headers,
            )
        except httpx.TimeoutException:
            raise NetworkError(
                f"XTS did not answer {method} {urlsplit(url).path} in time", code="timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise NetworkError(
                f"XTS {method} {urlsplit(url).path} failed: {type(exc).__name__}"
            ) from None
