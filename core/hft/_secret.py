"""A string that never shows itself: in reprs, logs, errors or config dumps."""

from __future__ import annotations

import re
import weakref
from typing import Final

__all__ = ["Secret", "known_secrets", "redact_url"]

# Every secret value alive in the process, so that the log redactor can scrub it from any text.
_live: Final[weakref.WeakSet[Secret]] = weakref.WeakSet()


class Secret:
    """Wraps a credential (api key, token, password). ``reveal()`` is the only way to read it."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret wraps a str")
        self._value = value
        if value:
            _live.add(self)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def known_secrets() -> list[str]:
    """The values of every live :class:`Secret`, longest first (for redaction)."""
    return sorted((s.reveal() for s in list(_live)), key=len, reverse=True)


_QUERY_PASSWORD: Final = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs (``postgresql://u:***@h/db``)."""
    base, sep, query = url.partition("?")
    scheme, colons, rest = base.partition("://")
    credentials, at, location = rest.rpartition("@")
    if at and ":" in credentials:
        base = f"{scheme}{colons}{credentials.split(':', 1)[0]}:***@{location}"
    return base + sep + _QUERY_PASSWORD.sub(r"\1***", query)
