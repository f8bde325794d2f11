"""The one exception tree of hft.

::

    HftError
    ├── ConfigError
    ├── PluginError
    ├── ValidationError
    │   └── IllegalTransition
    ├── AuthError
    ├── NetworkError
    │   └── RateLimited
    ├── BrokerRejected
    ├── RiskRejected
    ├── NotFound
    └── Conflict

Every error has a stable ``code`` (machine-readable, never reworded), a ``message`` for people,
and an optional HTTP ``status`` when it came from an HTTP exchange or maps onto one.
Messages never carry secrets: callers pass identifiers, not credentials.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BrokerRejected",
    "ConfigError",
    "Conflict",
    "HftError",
    "IllegalTransition",
    "NetworkError",
    "NotFound",
    "PluginError",
    "RateLimited",
    "RiskRejected",
    "ValidationError",
    "is_auth_error",
    "is_network_error",
    "is_retryable",
]


class HftError(Exception):
    """Root of every error hft raises on purpose."""

    default_code = "error"
    default_status: int | None = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status if status is not None else self.default_status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        """The error as the JSON body every transport sends."""
        return {"code": self.code, "message": self.message}


class ConfigError(HftError):
    """A configuration file, section or value is wrong; the message names its full path."""

    default_code = "config_invalid"
    default_status = None


class PluginError(HftError):
    """A plugin could not be loaded, or registered something that clashes."""

    default_code = "plugin_error"
    default_status = None


class ValidationError(HftError):
    """Input (from a client, a broker or a file) is malformed or out of range."""

    default_code = "invalid"
    default_status = 400


class IllegalTransition(ValidationError):
    """An order was asked to move between two states the state machine does not connect."""

    default_code = "illegal_transition"
    default_status = 409


class AuthError(HftError):
    """Credentials are missing, wrong or expired, or the caller may not do this."""

    default_code = "unauthenticated"
    default_status = 401


class NetworkError(HftError):
    """A peer could not be reached or answered with a transport-level failure. Retryable."""

    default_code = "network"
    default_status = 503


class RateLimited(NetworkError):
    """A rate limit (ours or a broker's) refused the call; ``retry_after_s`` says when to retry."""

    default_code = "rate_limited"
    default_status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after_s = retry_after_s


class BrokerRejected(HftError):
    """The broker refused an order or a request on business grounds (margin, RMS, exchange)."""

    default_code = "broker_rejected"
    default_status = 422


class RiskRejected(HftError):
    """A pre-trade risk rule refused an order; ``code`` is the rule's stable code."""

    default_code = "risk_rejected"
    default_status = 422


class NotFound(HftError):
    """The order, instrument, account or user asked for does not exist (for this caller)."""

    default_code = "not_found"
    default_status = 404


class Conflict(HftError):
    """The request clashes with existing state: a duplicate client order id, a name taken."""

    default_code = "conflict"
    default_status = 409


def is_auth_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the credentials must be renewed before trying again."""
    return isinstance(exc, AuthError)


def is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a transport-level failure (including rate limiting)."""
    return isinstance(exc, NetworkError)


def is_retryable(exc: BaseException) -> bool:
    """Whether the same call may succeed if simply tried again later."""
    return isinstance(exc, NetworkError)
