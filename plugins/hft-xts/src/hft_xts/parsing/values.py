"""Tolerant readers for the values XTS sends: numbers as strings, commas, ``"NaN"``, odd casing.

Every function here is pure and raises :class:`hft.ValidationError` on input it cannot read, so a
payload is either understood or refused, never half-read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from hft import ValidationError
from hft.model import to_price_units

__all__ = [
    "IST",
    "field",
    "from_1980_ist",
    "ist_text_to_utc",
    "loads",
    "number",
    "optional_number",
    "price_units",
    "quantity",
    "text",
    "tick_time_ns",
]

IST: Final = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
_EPOCH_1980: Final = dt.datetime(1980, 1, 1, tzinfo=dt.UTC)
_IST_OFFSET_S: Final = 19_800
#: A tick time this large cannot be 1980-based (it would be after 2033), so it is Unix time: the
#: official Node SDK sends 1970-based times for BSE and MCX (spec 6.3, open question 3).
_UNIX_CUTOFF: Final = 1_700_000_000
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(9))
_ABSENT: Final = frozenset({"", "nan", "null", "none", "-"})
_FORMATS: Final = ("%d-%m-%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S", "%d%m%Y")


def loads(payload: str | bytes) -> Any:
    """Parse JSON with every non-integer number as a :class:`Decimal` (never a binary float)."""
    try:
        # Bare NaN/Infinity tokens (not JSON, but Python's parser takes them) mean "no value".
        return json.loads(payload, parse_float=Decimal, parse_constant=lambda _: None)
    except (ValueError, RecursionError) as exc:
        raise ValidationError(f"XTS sent malformed JSON: {exc}", code="xts_bad_payload") from None


def field(row: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    """The first of ``names`` present in ``row``, compared case-insensitively (XTS mixes
    ``ExchangeInstrumentID`` and ``ExchangeInstrumentId``)."""
    for name in names:
        if name in row:
            return row[name]
    lowered = {key.lower(): value for key, value in row.items() if isinstance(key, str)}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return default


def optional_number(value: object) -> Decimal | None:
    """A number sent as a number or a string (``"1,671.00"``); ``""``/``"NaN"``/null → None."""
    if isinstance(value, Decimal):  # the common case first: this runs for every tick number
        return value if value.is_finite() else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):
        raise ValidationError(
            f"{value!r}: a binary float reached the parser", code="xts_bad_number"
        )
    elif isinstance(value, str):
        cleaned = value.strip().replace(",", "")
        if cleaned.lower() in _ABSENT:
            return None
        try:
            number = Decimal(cleaned)
        except InvalidOperation:
            raise ValidationError(f"{value!r} is not a number", code="xts_bad_number") from None
    else:
        raise ValidationError(f"{value!r} is not a number", code="xts_bad_number")
    return number if number.is_finite() else None


def number(value: object, what: str) -> Decimal:
    found = optional_number(value)
    if found is None:
        raise ValidationError(f"{what} is missing ({value!r})", code="xts_bad_number")
    return found


def quantity(value: object, what: str = "quantity") -> int:
    """An integer quantity (``"1,500"`` is 1500); a fractional one is refused."""
    found = optional_number(value)
    if found is None:
        return 0
    if found != found.to_integral_value():
        raise ValidationError(f"{what} {value!r} is not a whole number", code="xts_bad_number")
    return int(found)


def price_units(value: object, scale: int) -> int | None:
    """A price in integer price units at ``scale``; absent → None. Digits past the scale (XTS
    averages carry them) are rounded half-even: those are reported values, not order prices."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * _POW10[scale] if 0 <= scale < len(_POW10) else value * 10**scale
    found = optional_number(value)
    if found is None:
        return None
    units = found.scaleb(scale)
    whole = int(units)
    if whole == units:
        return whole
    try:
        return to_price_units(found, scale)
    except ValidationError:
        return int(found.scaleb(scale).to_integral_value())


def text(value: object) -> str:
    return "" if value is None else str(value).strip()


def from_1980_ist(seconds: object) -> dt.datetime | None:
    """A market-data time (seconds since 1980-01-01 on the IST wall clock) in UTC.

    0/absent → None. Values past :data:`_UNIX_CUTOFF` are taken as Unix time (see there).
    """
    found = optional_number(seconds)
    if found is None or found <= 0:
        return None
    whole = int(found)
    try:
        if whole >= _UNIX_CUTOFF:
            return dt.datetime.fromtimestamp(whole, dt.UTC)
        return _EPOCH_1980 + dt.timedelta(seconds=whole - _IST_OFFSET_S)
    except (OverflowError, ValueError, OSError):
        raise ValidationError(f"time {seconds!r} is out of range", code="xts_bad_time") from None


_UNIX_1980_IST: Final = 315_532_800 - _IST_OFFSET_S


def tick_time_ns(seconds: object) -> int:
    """:func:`from_1980_ist` as Unix nanoseconds (0 when absent), without a datetime."""
    found = optional_number(seconds)
    if found is None or found <= 0:
        return 0
    whole = int(found)
    if whole < _UNIX_CUTOFF:
        whole += _UNIX_1980_IST
    return whole * 1_000_000_000


def ist_text_to_utc(value: object) -> dt.datetime | None:
    """An order/trade time (``01-01-2025 10:00:15`` or ``2025-01-01T10:00:15.237162``, IST
    unless it carries an offset) in UTC; empty and the 1980/0001 sentinels → None."""
    raw = text(value)
    if not raw:
        return None
    parsed: dt.datetime | None = None
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError:
        for fmt in _FORMATS:
            try:
                parsed = dt.datetime.strptime(raw, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise ValidationError(f"{raw!r} is not an XTS date-time", code="xts_bad_time")
    if parsed.year <= 1980:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=IST)
    return parsed.astimezone(dt.UTC)
