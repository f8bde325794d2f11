"""OHLC history (``GET /instruments/ohlc``): the ``dataReponse`` bar string → candles.

Bars are separated by ``,`` and their fields by ``|``: ``time|open|high|low|close|volume|oi|``
(a trailing ``|``). The time is Unix seconds of the IST wall clock read as if it were UTC
(spec 5.6), so 5 h 30 min are taken off to get the real instant.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from hft import ValidationError
from hft.model import Instrument, Ohlc
from hft_xts.parsing.marketdata import Candle
from hft_xts.parsing.values import optional_number, price_units

__all__ = ["parse_ohlc"]

_IST: Final = dt.timedelta(hours=5, minutes=30)


def parse_ohlc(bars: str, instrument: Instrument) -> list[Candle]:
    """Every bar of ``bars``, oldest first; ValidationError naming the first bad bar."""
    candles: list[Candle] = []
    for index, bar in enumerate(b for b in bars.split(",") if b.strip()):
        fields = bar.strip().split("|")
        if len(fields) < 6:
            raise ValidationError(f"OHLC bar {index}: {len(fields)} fields", code="xts_bad_ohlc")
        values = [price_units(v, instrument.price_scale) for v in fields[1:5]]
        when = optional_number(fields[0])
        if when is None or any(v is None for v in values):
            raise ValidationError(f"OHLC bar {index} lacks a time or a price", code="xts_bad_ohlc")
        volume = optional_number(fields[5]) or 0
        oi = optional_number(fields[6]) if len(fields) > 6 else None
        try:
            start = dt.datetime.fromtimestamp(int(when), dt.UTC) - _IST
        except (OverflowError, ValueError, OSError):
            raise ValidationError(
                f"OHLC bar {index}: time {fields[0]!r}", code="xts_bad_ohlc"
            ) from None
        o, h, low, c = (v or 0 for v in values)
        candles.append(Candle(instrument.key, start, Ohlc(o, h, low, c), int(volume), int(oi or 0)))
    return candles
