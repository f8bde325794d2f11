"""structlog set-up: JSON lines in production, a pretty console on a TTY, never a secret.

:func:`configure` routes both structlog and stdlib ``logging`` through one handler on the root
logger, so a library's warning comes out in the same format as ours. Every line carries an ISO
timestamp, the level, the logger name, the event and, inside :func:`bind_correlation_id`, the
``correlation_id``. The last step before rendering is :func:`redact`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from typing import Final, Literal, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from hft._secret import Secret, known_secrets

__all__ = [
    "bind_correlation_id",
    "configure",
    "correlation_id",
    "redact",
    "scrub",
]

REDACTED: Final = "***"

# --------------------------------------------------------------------------------------------
# Correlation ids

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hft_correlation_id", default=None
)
# Ids may come from clients (a request header): keep them short and inert in any log format.
_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def correlation_id() -> str | None:
    """The correlation id of the current context, or None outside :func:`bind_correlation_id`."""
    return _correlation_id.get()


@contextlib.contextmanager
def bind_correlation_id(value: str | None = None) -> Iterator[str]:
    """Set the correlation id for the block (a new random one when ``value`` is None).

    Yields the id. Tasks started inside the block inherit it, since anyio copies the context
    into child tasks. ``value`` must be 1-128 characters of letters, digits and ``_.:-``.
    """
    if value is None:
        value = secrets.token_urlsafe(9)  # 12 URL-safe characters, 72 random bits
    elif not _ID_SHAPE.fullmatch(value):
        raise ValueError("a correlation id is 1-128 characters of letters, digits and _.:-")
    token = _correlation_id.set(value)
    try:
        yield value
    finally:
        _correlation_id.reset(token)


def _add_correlation_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    cid = _correlation_id.get()
    if cid is not None:
        event_dict.setdefault("correlation_id", cid)
    return event_dict


# --------------------------------------------------------------------------------------------
# Redaction

# Key names compared after lower-casing and dropping everything but letters and digits, so that
# "API-Key", "api_key" and "apiKey" are one name.
_SENSITIVE_NAMES: Final = frozenset(
    {
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "enctoken",
        "jwt",
        "otp",
        "passphrase",
        "pin",
        "proxyauthorization",
        "pwd",
        "setcookie",
        "signature",
        "token",
        "totp",
    }
)
# ...and names that end like these ("kite_api_key", "new_password", "xts_secret_key"). A bare
# "token" suffix is deliberately absent: Kite's instrument_token is an id, not a credential.
_SENSITIVE_SUFFIXES: Final = (
    "accesstoken",
    "apikey",
    "appkey",
    "authtoken",
    "bearertoken",
    "checksum",
    "idtoken",
    "passwd",
    "password",
    "privatekey",
    "refreshtoken",
    "requesttoken",
    "secret",
    "secretkey",
    "sessiontoken",
    "totpkey",
)
_NON_ALNUM: Final = re.compile(r"[^a-z0-9]")

# key=value, key: value, "key": "value" and 'key': 'value' where the key names a credential; an
# optional auth scheme (Authorization: token api_key:access_token, or Bearer xyz) is kept.
_KEY_WORDS: Final = (
    r"(?:[\w-]*?(?:access|refresh|request|session|auth|id|bearer)[_-]?token"
    r"|[\w-]*?(?:api|app|secret|private|client)[_-]?(?:key|secret)"
    r"|[\w-]*?(?:password|passwd|secret|checksum)"
    r"|token|enctoken|authorization|pwd|otp|totp)"
)
_PAIR: Final = re.compile(
    rf"(?P<head>(?<![\w-]){_KEY_WORDS}[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|token|basic)\s+)?)"
    r"[^\s\"'&,;<>)\]}]+",
    re.IGNORECASE,
)
_BEARER: Final = re.compile(r"(?P<head>\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# Kite's header value "token api_key:access_token", wherever it turns up.
_KITE_TOKEN: Final = re.compile(r"(?P<head>\btoken\s+)[\w.-]+:[\w.-]+", re.IGNORECASE)
# Passwords in URLs: scheme://user:password@host
_URL_PASSWORD: Final = re.compile(r"(?P<head>://[^/\s:@]+:)[^/\s@]+(?=@)")
_PATTERNS: Final = (_PAIR, _BEARER, _KITE_TOKEN, _URL_PASSWORD)
# Every pattern above needs one of these words: one search spares most strings four substitutions.
_TRIGGER: Final = re.compile(r"token|key|secret|passw|pwd|auth|bearer|checksum|otp|://", re.I)
_KEEP_HEAD: Final = rf"\g<head>{REDACTED}"

# Shorter secret values are not scrubbed from text: replacing every "a" or "42" in every line
# would wreck the logs, and a credential that short protects nothing anyway.
_MIN_SECRET_LEN: Final = 4
# Deeper structures than this are cut off rather than walked (and cycles cannot recurse forever).
_MAX_DEPTH: Final = 16


@functools.lru_cache(maxsize=4096)
def _is_sensitive_key(key: str) -> bool:
    name = _NON_ALNUM.sub("", key.lower())
    return name in _SENSITIVE_NAMES or name.endswith(_SENSITIVE_SUFFIXES)


def _live_secrets() -> list[str]:
    return [s for s in known_secrets() if len(s) >= _MIN_SECRET_LEN]


def _drop_secrets(text: str, values: list[str]) -> str:
    for value in values:  # longest first, so a secret containing another goes whole
        # Repeat: a replacement can join its neighbours into the secret again ("a" + "a***" with
        # the secret "a***"). Each pass shortens the text, since values are longer than "***".
        while value in text:
            text = text.replace(value, REDACTED)
    return text


def _scrub(text: str, values: list[str]) -> str:
    text = _drop_secrets(text, values)
    if _TRIGGER.search(text) is None:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_KEEP_HEAD, text)
    # Masking a pattern can, in contrived cases, spell a secret; the second pass is cheap.
    return _drop_secrets(text, values)


def scrub(text: str) -> str:
    """``text`` with every live :class:`~hft.Secret` value and credential-looking pair masked."""
    return _scrub(text, _live_secrets())


def _clean(value: object, values: list[str], depth: int) -> object:
    if isinstance(value, str):
        return _scrub(value, values)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Secret):
        return REDACTED
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        return {
            k: (
                REDACTED
                if isinstance(k, str) and _is_sensitive_key(k)
                else _clean(v, values, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, values, depth + 1) for v in value]
    if isinstance(value, BaseException):
        return _scrub(str(value), values)
    # Anything else would be rendered through its repr: scrub that instead of trusting it.
    return _scrub(repr(value), values)


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask credentials in an event before it is rendered.

    The value of any key that names a credential (``api_key``, ``password``, ``access_token``,
    ``authorization``, ``checksum``, ``appKey``...; at any depth) becomes ``"***"``; every
    string, the event text included, is :func:`scrub`-bed; a :class:`~hft.Secret` renders as
    ``"***"``. Place it after ``format_exc_info`` so that exception text is scrubbed too.
    """
    values = _live_secrets()
    for key, value in event_dict.items():
        if _is_sensitive_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _clean(value, values, 0)
    return event_dict


# --------------------------------------------------------------------------------------------
# Configuration

# Marks the root handler configure() installs, so that a second call replaces it.
_HANDLER_MARK: Final = "_hft_logging"


def configure(
    level: str | int = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr by default) at ``level``.

    ``fmt="auto"`` picks the console renderer when ``stream`` is a TTY and JSON lines otherwise.
    Calling it again replaces the previous set-up.
    """
    if isinstance(level, str):
        numeric = logging.getLevelNamesMapping().get(level.upper())
        if numeric is None:
            raise ValueError(f"unknown log level {level!r}")
        level = numeric
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"fmt must be 'auto', 'json' or 'console', not {fmt!r}")
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if _isatty(out) else "json"

    # Run for structlog events and stdlib records alike.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_correlation_id,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        # Exceptions are formatted to text before redaction, so the console must print that text
        # as is (rich tracebacks would also show frame locals, credentials included).
        renderer = structlog.dev.ConsoleRenderer(
            colors=_isatty(out), exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            # Here, not in the formatter: the stack must be taken where the call was made.
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: reconfiguring (tests, a second configure()) must reach existing loggers.
        cache_logger_on_first_use=False,
    )


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except ValueError:  # a closed stream
        return False
