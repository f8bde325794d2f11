"""The ``zerodha.ticker`` normaliser: KiteTicker payloads → hft events.

Binary frames become ticks named by instrument key; a text frame's order postback becomes an
:class:`~hft.model.OrderUpdate`. Errors, messages and unknown text types give no event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Final

from hft._errors import ValidationError
from hft.contracts import BrokerEvent
from hft.model import Instrument, Tick

from .parsing.kite import update_from_kite
from .parsing.ticks import decode_ticks

__all__ = ["NAME", "ZerodhaNormaliser"]

NAME: Final = "zerodha.ticker"


class ZerodhaNormaliser:
    """Built once per connection with the instruments it may meet (their tokens name ticks)."""

    def __init__(
        self, instruments: Iterable[Instrument], *, broker: str = "zerodha", account: str = ""
    ) -> None:
        self.broker = broker
        self.account = account
        self._keys: dict[int, str] = {}
        self._instruments: dict[str, Instrument] = {}
        for instrument in instruments:
            self.add(instrument)

    def add(self, instrument: Instrument) -> None:
        self._keys[instrument.token] = instrument.key
        self._instruments[instrument.key] = instrument

    def decode(self, message: bytes) -> list[Tick]:
        """The ticks of one binary frame (see :func:`hft_zerodha.decode_ticks`)."""
        return decode_ticks(message, self._keys)

    def normalise(self, payload: bytes | str) -> list[BrokerEvent]:
        if isinstance(payload, bytes | bytearray | memoryview):
            return list(decode_ticks(bytes(payload), self._keys))
        try:
            data = json.loads(payload, parse_float=Decimal)
        except (ValueError, RecursionError):
            raise ValidationError(
                "kite ticker: a text frame is not JSON", code="kite_malformed"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise ValidationError("kite ticker: a text frame has no type", code="kite_malformed")
        if data["type"] != "order":
            return []
        order = data.get("data")
        if not isinstance(order, dict):
            raise ValidationError(
                "kite ticker: an order message has no order object", code="kite_malformed"
            )
        return [update_from_kite(order, self.broker, self.account, self._instruments.get)]
