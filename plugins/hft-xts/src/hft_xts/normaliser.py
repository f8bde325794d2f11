"""The ``xts.marketdata`` normaliser: XTS market-data socket payloads → ticks.

:meth:`XtsNormaliser.normalise` takes what the market-data socket carries, either a whole
socket.io event frame (``42["1501-json-full","{...}"]``, ``42["1502-json-partial","t:1_22,..."]``)
or a bare full-mode JSON payload (it names its ``MessageCode``). A bare partial-mode text names no
message code, so it goes through :meth:`XtsNormaliser.decode_partial` with the code from its event
name. A full-mode 1505 candle decodes to a one-minute :class:`~hft.model.Bar`. Unknown
instruments and message codes that are neither ticks nor candles decode to nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from hft import ValidationError
from hft.contracts import BrokerEvent
from hft.model import Bar, Instrument, Tick
from hft_xts.parsing.marketdata import (
    CANDLE,
    MarketDataDecoder,
    decode_bar,
    parse_json_message,
)
from hft_xts.stream import parse_frame

__all__ = ["XtsNormaliser", "event_code"]

_SUFFIXES: Final = ("-json-full", "-json-partial")


def event_code(name: str) -> tuple[int, bool] | None:
    """``"1502-json-partial"`` → ``(1502, True)``; None for events that are not market data."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            code = name[: -len(suffix)]
            if code.isascii() and code.isdigit():
                return int(code), suffix == "-json-partial"
    return None


class XtsNormaliser:
    """Decodes market-data payloads for ``instruments`` (keeps the partial-mode cache)."""

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self.decoder = MarketDataDecoder(instruments)

    def normalise(self, payload: bytes | str) -> list[BrokerEvent]:
        text = payload.decode("utf-8", "strict") if isinstance(payload, bytes) else payload
        if text.startswith("4"):
            frame = parse_frame(text)
            if frame.kind != "event":
                return []
            return list(self.decode_event(frame.event, frame.data))
        item = self.decode_json(text)
        return [item] if item is not None else []

    def decode_event(self, name: str, data: Any) -> Sequence[Tick | Bar]:
        """One socket event by name (``1501-json-full``) with its string payload."""
        found = event_code(name)
        if found is None:
            return ()
        code, partial = found
        if not isinstance(data, str):
            raise ValidationError(f"{name} payload is not a string", code="xts_bad_payload")
        item = self.decode_partial(code, data) if partial else self.decode_json(data)
        return (item,) if item is not None else ()

    def decode_json(self, payload: str | bytes) -> Tick | Bar | None:
        """A full-mode 15xx JSON payload as a tick, or a bar for a 1505 candle (None: neither,
        or an unknown instrument)."""
        message = parse_json_message(payload)
        if message["MessageCode"] == CANDLE:
            segment, token = message.get("ExchangeSegment"), message.get("ExchangeInstrumentID")
            if isinstance(segment, int) and isinstance(token, int):
                instrument = self.decoder.instrument(segment, token)
                if instrument is not None:
                    return decode_bar(message, instrument)
            return None
        return self.decoder.full(message)

    def decode_partial(self, code: int, text: str) -> Tick | None:
        """A partial-mode text message of message ``code``, merged into the cached snapshot."""
        return self.decoder.partial(code, text)

    def seed(self, payloads: Iterable[object]) -> None:
        """Seed the partial-mode cache from ``listQuotes`` strings (subscribe, quotes)."""
        for payload in payloads:
            if isinstance(payload, str | bytes):
                self.decoder.seed(parse_json_message(payload))
