"""XTS market-data messages (15xx) → :class:`~hft.model.Tick`, full JSON and partial text.

Two pure parsers take outside input and are fuzzed: :func:`parse_json_message` (one full-mode
JSON payload, numbers as exact decimals) and :func:`parse_partial_message` (one partial-mode text
message: ``t:1_22,ltp:1567.95,bi:0|1428|1567.9|10``). :class:`MarketDataDecoder` turns them into
ticks: it keeps, per (message code, instrument), the latest full state, because a partial message
carries only what changed and must be merged into a snapshot (spec 6.5).

Which message code gives which tick:

- 1512 LTP → an ``ltp`` tick;
- 1501 touchline → a ``quote`` tick (last trade, volume, day OHLC, best bid and ask);
- 1502 market depth → a ``full`` tick (the touchline plus five levels each side);
- 1510 open interest → the instrument's latest tick again, with ``open_interest`` set;
- 1505 candles → not a tick: :func:`decode_bar` gives a :class:`~hft.model.Bar` (one minute),
  :func:`decode_candle` the same bar as a :class:`Candle`.

Times are seconds since 1980 on the IST wall clock (:func:`~hft_xts.parsing.values.from_1980_ist`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import attrs

from hft import ValidationError
from hft.model import Bar, Depth, DepthLevel, Instrument, Ohlc, StreamMode, Tick
from hft_xts.parsing.master import SEGMENT_CODES
from hft_xts.parsing.values import field, loads, optional_number, price_units, tick_time_ns

__all__ = [
    "CANDLE",
    "CANDLE_INTERVAL_S",
    "DEPTH",
    "LTP",
    "OPEN_INTEREST",
    "TOUCHLINE",
    "Candle",
    "MarketDataDecoder",
    "decode_bar",
    "decode_candle",
    "parse_json_message",
    "parse_partial_message",
]

TOUCHLINE: Final = 1501
DEPTH: Final = 1502
CANDLE: Final = 1505
OPEN_INTEREST: Final = 1510
LTP: Final = 1512
#: 1505 candles are one-minute bars (the message names no interval).
CANDLE_INTERVAL_S: Final = 60
_MODES: Final = {LTP: StreamMode.LTP, TOUCHLINE: StreamMode.QUOTE, DEPTH: StreamMode.FULL}

#: Partial-mode keys → full-mode field names (spec 6.5); ``o`` is OpenInterest in 1510.
_PARTIAL_KEYS: Final = {
    "ltp": "LastTradedPrice",
    "ltq": "LastTradedQunatity",
    "tb": "TotalBuyQuantity",
    "ts": "TotalSellQuantity",
    "v": "TotalTradedQuantity",
    "ap": "AverageTradedPrice",
    "ltt": "LastTradedTime",
    "lut": "LastUpdateTime",
    "pc": "PercentChange",
    "o": "Open",
    "h": "High",
    "l": "Low",
    "c": "Close",
    "vp": "TotalValueTraded",
}
_TOUCH_FIELDS: Final = (
    "LastTradedPrice",
    "LastTradedQunatity",
    "LastTradedQuantity",
    "TotalBuyQuantity",
    "TotalSellQuantity",
    "TotalTradedQuantity",
    "AverageTradedPrice",
    "LastTradedTime",
    "LastUpdateTime",
    "PercentChange",
    "Open",
    "High",
    "Low",
    "Close",
    "TotalValueTraded",
)
_MAX_LEVELS: Final = 5


def parse_json_message(payload: str | bytes) -> dict[str, Any]:
    """One full-mode payload as a dict (decimals, never floats); ValidationError if it is not a
    JSON object with an integer ``MessageCode``."""
    message = loads(payload)
    if not isinstance(message, dict):
        raise ValidationError(
            "an XTS market-data message must be a JSON object", code="xts_bad_payload"
        )
    code = message.get("MessageCode")
    if not isinstance(code, int) or isinstance(code, bool):
        raise ValidationError(
            f"an XTS market-data message needs an integer MessageCode, got {code!r}",
            code="xts_bad_payload",
        )
    return message


def parse_partial_message(text: str) -> dict[str, str]:
    """One partial-mode message as ``{key: value}`` (values still text).

    Pairs are split on ``,`` and each on its **first** ``:`` (1105 values hold times with
    colons); whitespace is stripped and empty values are skipped, as the official SDK does. The
    ``t`` key (``<segment>_<instrument>``) is required.
    """
    pairs: dict[str, str] = {}
    for chunk in text.split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        key, sep, value = chunk.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ValidationError(
                f"partial message pair {chunk[:40]!r} is not key:value", code="xts_bad_payload"
            )
        if value:
            pairs[key] = value
    target = pairs.get("t", "")
    segment, sep, instrument = target.partition("_")
    if not sep or not (segment.isascii() and segment.isdigit()) or not instrument:
        raise ValidationError(
            f"partial message has no valid t:<segment>_<instrument> ({target[:40]!r})",
            code="xts_bad_payload",
        )
    return pairs


@attrs.frozen
class Candle:
    """A 1505 bar. ``start`` is the bar time in UTC (XTS sends the IST wall clock as if it were
    Unix time, as in OHLC history)."""

    instrument: str
    start: dt.datetime
    ohlc: Ohlc
    volume: int
    open_interest: int


def _levels(rows: object, scale: int, descending: bool) -> tuple[DepthLevel, ...]:
    if not isinstance(rows, list):
        return ()
    levels: list[DepthLevel] = []
    for row in rows[:_MAX_LEVELS]:
        if not isinstance(row, Mapping):
            raise ValidationError("a depth level must be an object", code="xts_bad_payload")
        size = optional_number(row["Size"] if "Size" in row else field(row, "Size"))
        price = price_units(row["Price"] if "Price" in row else field(row, "Price"), scale)
        if not size or not price or size <= 0 or price <= 0:
            continue  # XTS pads missing levels with zeros
        orders = optional_number(row.get("TotalOrders")) or Decimal(0)
        levels.append(DepthLevel(price, int(size), int(orders)))
    # Best first and one entry per price, whatever order the partial updates left them in.
    by_price = {level.price: level for level in levels}
    return tuple(sorted(by_price.values(), key=lambda lv: lv.price, reverse=descending))


def _checked(value: str) -> Decimal | None:
    """A partial-mode value as a number (None when empty or NaN), refused when it is not one."""
    return optional_number(value)


def _whole(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = optional_number(value)
    return None if found is None else int(found)


class MarketDataDecoder:
    """Decodes full and partial messages for a set of instruments; keeps the partial-mode cache.

    Messages for instruments it was not built with decode to ``None`` (the socket carries what
    the session subscribed, which may be more than this process knows).
    """

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_token: dict[tuple[int, int], Instrument] = {}
        for instrument in instruments:
            code = SEGMENT_CODES.get(instrument.segment)
            if code is not None:
                self._by_token[(code, instrument.token)] = instrument
        self._state: dict[tuple[int, int, int], dict[str, Any]] = {}
        self._seq: dict[tuple[int, int, int], int] = {}
        self._last: dict[str, Tick] = {}

    def instrument(self, segment: int, token: int) -> Instrument | None:
        return self._by_token.get((segment, token))

    # Full mode ------------------------------------------------------------------------------

    def full(self, message: Mapping[str, Any]) -> Tick | None:
        """A tick from one parsed full-mode message (see the module doc for each code)."""
        code = message.get("MessageCode")
        segment = _whole(field(message, "ExchangeSegment"))
        token = _whole(field(message, "ExchangeInstrumentID"))
        if not isinstance(code, int) or segment is None or token is None:
            raise ValidationError(
                "a market-data message needs MessageCode, ExchangeSegment and ExchangeInstrumentID",
                code="xts_bad_payload",
            )
        key = (code, segment, token)
        seq = _whole(message.get("SequenceNumber"))
        if seq is not None and seq > 0 and self._seq.get(key) == seq:
            return None  # XTS repeats messages with the same sequence number
        state = self._canonical(message)
        tick = self._tick(code, segment, token, state)
        self._state[key] = state
        if seq is not None and seq > 0:
            self._seq[key] = seq
        return tick

    def seed(self, message: Mapping[str, Any]) -> None:
        """Remember a snapshot (a ``listQuotes`` entry) so later partial messages merge into it."""
        code, segment, token = (
            message.get("MessageCode"),
            _whole(field(message, "ExchangeSegment")),
            _whole(field(message, "ExchangeInstrumentID")),
        )
        if isinstance(code, int) and segment is not None and token is not None:
            self._state[(code, segment, token)] = self._canonical(message)

    # Partial mode ---------------------------------------------------------------------------

    def partial(self, code: int, text: str) -> Tick | None:
        """A tick from one partial-mode message of message code ``code``, merged into the
        latest state of its instrument. Every value is checked before anything is merged, so a
        bad message changes nothing."""
        pairs = parse_partial_message(text)
        segment_text, _, token_text = pairs["t"].partition("_")
        if not (token_text.isascii() and token_text.isdigit()):
            return None  # 1504 names indices instead of ids; indices also stream on 1501
        segment, token = int(segment_text), int(token_text)
        updates: dict[str, Any] = {}
        levels: dict[str, dict[int, dict[str, Any]]] = {"Bids": {}, "Asks": {}}
        for short, value in pairs.items():
            if short in ("bi", "ai"):
                levels["Bids" if short == "bi" else "Asks"].update(self._levels_of(value))
            elif short == "o" and code == OPEN_INTEREST:
                updates["OpenInterest"] = _checked(value)
            elif short in _PARTIAL_KEYS:
                updates[_PARTIAL_KEYS[short]] = _checked(value)
        key = (code, segment, token)
        state = dict(self._state.get(key) or {"Bids": [], "Asks": []})
        state.update(updates)
        for side, changes in levels.items():
            if changes:
                merged = list(state.get(side) or [])
                for index, level in changes.items():
                    while len(merged) <= index:
                        merged.append({"Size": 0, "Price": 0, "TotalOrders": 0})
                    merged[index] = level
                state[side] = merged
        tick = self._tick(code, segment, token, state)
        self._state[key] = state
        return tick

    @staticmethod
    def _levels_of(value: str) -> dict[int, dict[str, Any]]:
        # ``index|size|price|orders`` groups, one per changed level, index 0 the best (spec 6.5).
        numbers = value.split("|")
        if len(numbers) % 4:
            raise ValidationError(
                f"depth update {value[:40]!r} is not groups of index|size|price|orders",
                code="xts_bad_payload",
            )
        levels: dict[int, dict[str, Any]] = {}
        for at in range(0, len(numbers), 4):
            index = _whole(numbers[at])
            if index is None or not 0 <= index < _MAX_LEVELS:
                raise ValidationError(f"depth level index {numbers[at]!r}", code="xts_bad_payload")
            levels[index] = {
                "Size": _checked(numbers[at + 1]),
                "Price": _checked(numbers[at + 2]),
                "TotalOrders": _checked(numbers[at + 3]),
            }
        return levels

    # Building ticks -------------------------------------------------------------------------

    @staticmethod
    def _canonical(message: Mapping[str, Any]) -> dict[str, Any]:
        """Touchline fields flat at the top (1501 nests them, snapshots do not), ``Bids`` and
        ``Asks`` as level lists (1501's BidInfo/AskInfo become level 0)."""
        state = dict(message)
        touch = field(message, "Touchline")
        if isinstance(touch, Mapping):
            state.update(touch)
        bids, asks = field(message, "Bids"), field(message, "Asks")
        bid_info, ask_info = field(state, "BidInfo"), field(state, "AskInfo")
        state["Bids"] = (
            list(bids)
            if isinstance(bids, list)
            else ([bid_info] if isinstance(bid_info, Mapping) else [])
        )
        state["Asks"] = (
            list(asks)
            if isinstance(asks, list)
            else ([ask_info] if isinstance(ask_info, Mapping) else [])
        )
        return state

    def _tick(self, code: int, segment: int, token: int, state: dict[str, Any]) -> Tick | None:
        instrument = self._by_token.get((segment, token))
        if instrument is None:
            return None
        if code == OPEN_INTEREST:
            last = self._last.get(instrument.key)
            oi = _whole(field(state, "OpenInterest"))
            if last is None or oi is None:
                return None
            tick = attrs.evolve(last, open_interest=oi)
            self._last[instrument.key] = tick
            return tick
        mode = _MODES.get(code)
        if mode is None:
            return None
        scale = instrument.price_scale
        last_price = price_units(field(state, "LastTradedPrice"), scale)
        if last_price is None:
            return None
        stamp = tick_time_ns(
            state.get("LastUpdateTime")
            or state.get("ExchangeTimeStamp")
            or state.get("LastTradedTime")
        )
        # The wire spells it LastTradedQunatity; some relays "correct" it.
        last_qty = _whole(field(state, "LastTradedQunatity", "LastTradedQuantity"))
        if mode is StreamMode.LTP:
            tick = Tick(instrument.key, mode, last_price, stamp, last_quantity=last_qty)
        else:
            ohlc = None
            values = [price_units(field(state, k), scale) for k in ("Open", "High", "Low", "Close")]
            if all(v is not None for v in values):
                o, h, low, c = (v or 0 for v in values)
                ohlc = Ohlc(o, h, low, c)
            depth = Depth(
                _levels(state.get("Bids"), scale, True), _levels(state.get("Asks"), scale, False)
            )
            if mode is StreamMode.QUOTE:
                depth = Depth(depth.bids[:1], depth.asks[:1])
            tick = Tick(
                instrument.key,
                mode,
                last_price,
                stamp,
                last_quantity=last_qty,
                volume=_whole(field(state, "TotalTradedQuantity")) or 0,
                average_price=price_units(field(state, "AverageTradedPrice"), scale),
                total_buy_quantity=_whole(field(state, "TotalBuyQuantity")),
                total_sell_quantity=_whole(field(state, "TotalSellQuantity")),
                ohlc=ohlc,
                depth=depth,
            )
        previous = self._last.get(instrument.key)
        if previous is not None and previous.open_interest is not None:
            tick = attrs.evolve(tick, open_interest=previous.open_interest)
        self._last[instrument.key] = tick
        return tick


def decode_candle(message: Mapping[str, Any], instrument: Instrument) -> Candle:
    """A parsed 1505 message as a :class:`Candle` for ``instrument``."""
    scale = instrument.price_scale
    values = [price_units(field(message, k), scale) for k in ("Open", "High", "Low", "Close")]
    bar_time = _whole(field(message, "BarTime"))
    if any(v is None for v in values) or bar_time is None:
        raise ValidationError(
            "a candle needs BarTime, Open, High, Low and Close", code="xts_bad_payload"
        )
    o, h, low, c = (v or 0 for v in values)
    try:
        start = dt.datetime.fromtimestamp(bar_time, dt.UTC) - dt.timedelta(hours=5, minutes=30)
    except (OverflowError, ValueError, OSError):
        raise ValidationError(f"BarTime {bar_time} is out of range", code="xts_bad_time") from None
    return Candle(
        instrument.key,
        start,
        Ohlc(o, h, low, c),
        _whole(field(message, "BarVolume")) or 0,
        _whole(field(message, "OpenInterest")) or 0,
    )


def decode_bar(message: Mapping[str, Any], instrument: Instrument) -> Bar:
    """A parsed 1505 message as a one-minute :class:`~hft.model.Bar` for ``instrument``
    (``open_interest`` None when the message has none); ValidationError as
    :func:`decode_candle`."""
    candle = decode_candle(message, instrument)
    ohlc = candle.ohlc
    return Bar(
        instrument.key,
        int(candle.start.timestamp()) * 1_000_000_000,
        CANDLE_INTERVAL_S,
        ohlc.open,
        ohlc.high,
        ohlc.low,
        ohlc.close,
        candle.volume,
        _whole(field(message, "OpenInterest")),
    )
