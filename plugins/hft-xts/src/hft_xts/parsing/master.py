"""The instrument master (``POST /instruments/master``) and the index list, as :class:`Instrument`.

The master is one string: rows split by newlines, fields by ``|``, no header. The layout depends
on the row's kind (0-based columns; spec 5.3):

- common 0-13: segment, instrument id, instrument type, name, description, series,
  name-with-series, XTS id, band high, band low, freeze qty, tick size, lot size, multiplier;
- equity (22 fields): 14 display name, 15 ISIN, ...;
- future (type 1) and spread (type 4), 21 fields: 14 underlying id, 15 underlying name,
  16 expiry, 17 display name, ...;
- option (type 2), 23 fields: 14, 15, 16 as futures, 17 strike, 18 option type (3 CE, 4 PE),
  19 display name, ...

Rows are classified by instrument type first and checked against the minimum field count, so a
trailing column added later changes nothing. A row that fits no layout is refused with its line
number; :func:`parse_master` skips (and counts) such rows rather than losing the whole master.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Final

import attrs

from hft import ValidationError
from hft.model import Instrument, InstrumentType
from hft_xts.parsing.values import number, optional_number, quantity

__all__ = [
    "SEGMENT_CODES",
    "SEGMENT_EXCHANGES",
    "SEGMENT_NAMES",
    "MasterRow",
    "parse_index_list",
    "parse_master",
    "parse_master_line",
]

#: Segment name → market-data code (spec 4.5).
SEGMENT_CODES: Final[dict[str, int]] = {
    "NSECM": 1,
    "NSEFO": 2,
    "NSECD": 3,
    "NSECO": 4,
    "SLBM": 5,
    "NIFSC": 7,
    "BSECM": 11,
    "BSEFO": 12,
    "BSECD": 13,
    "BSECO": 14,
    "NCDEX": 21,
    "MSECM": 41,
    "MSEFO": 42,
    "MSECD": 43,
    "MCXFO": 51,
}
SEGMENT_NAMES: Final[dict[int, str]] = {code: name for name, code in SEGMENT_CODES.items()}
#: Segment name → the exchange part of hft instrument keys (``NSE:INFY``, ``NFO:NIFTY26JANFUT``).
SEGMENT_EXCHANGES: Final[dict[str, str]] = {
    "NSECM": "NSE",
    "NSEFO": "NFO",
    "NSECD": "CDS",
    "NSECO": "NCO",
    "BSECM": "BSE",
    "BSEFO": "BFO",
    "BSECD": "BCD",
    "BSECO": "BCO",
    "MCXFO": "MCX",
    "NCDEX": "NCDEX",
    "MSECM": "MSE",
    "MSEFO": "MSEFO",
    "MSECD": "MSECD",
}

_FUTURE, _OPTION, _SPREAD, _EQUITY = 1, 2, 4, 8
_MIN_FIELDS: Final = {_FUTURE: 21, _SPREAD: 21, _OPTION: 23}
_EQUITY_FIELDS: Final = 22
_OPTION_TYPES: Final = {"3": InstrumentType.CALL, "4": InstrumentType.PUT}


@attrs.frozen
class MasterRow:
    """One parsed master row: the hft instrument plus the XTS facts it does not hold."""

    instrument: Instrument
    segment_code: int
    xts_type: int
    isin: str = ""
    display_name: str = ""


def _scale_of(tick: Decimal) -> int:
    exponent = tick.normalize().as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return max(2, places)


def _expiry(value: str, line_no: int) -> dt.date:
    try:
        return dt.datetime.fromisoformat(value.strip()).date()
    except ValueError:
        raise ValidationError(
            f"master line {line_no}: expiry {value!r} is not an ISO date-time",
            code="xts_bad_master",
        ) from None


def parse_master_line(line: str, line_no: int = 1) -> MasterRow:
    """One master row as a :class:`MasterRow`; raise ValidationError naming the line if it fits
    no known layout."""
    fields = line.rstrip("\r").split("|")
    if len(fields) < 14:
        raise ValidationError(
            f"master line {line_no}: {len(fields)} fields, at least 14 expected",
            code="xts_bad_master",
        )
    segment = fields[0].strip()
    if segment not in SEGMENT_CODES:
        raise ValidationError(
            f"master line {line_no}: unknown segment {segment!r}", code="xts_bad_master"
        )
    try:
        token = int(fields[1])
        xts_type = int(fields[2])
        tick = number(fields[11], "tick size")
        lot = quantity(fields[12], "lot size")
        freeze = optional_number(fields[10])
    except (ValueError, ValidationError) as exc:
        raise ValidationError(f"master line {line_no}: {exc}", code="xts_bad_master") from None
    if tick <= 0 or lot <= 0 or token <= 0:
        raise ValidationError(
            f"master line {line_no}: token, tick size and lot size must be positive",
            code="xts_bad_master",
        )
    name, description, series = fields[3].strip(), fields[4].strip(), fields[5].strip()
    exchange = SEGMENT_EXCHANGES.get(segment, segment)
    scale = _scale_of(tick)
    tick_units = int(tick.scaleb(scale))
    # XTS sends fractional freeze quantities (6766210.1): the exchange limit is the whole part.
    freeze_qty = int(freeze) if freeze is not None and freeze >= 1 else None

    def build(
        symbol: str,
        full_name: str,
        kind: InstrumentType = InstrumentType.EQUITY,
        expiry: dt.date | None = None,
        strike: int | None = None,
    ) -> Instrument:
        return Instrument(
            exchange=exchange,
            symbol=symbol,
            token=token,
            segment=segment,
            name=full_name,
            instrument_type=kind,
            tick_size=tick_units,
            lot_size=lot,
            freeze_quantity=freeze_qty,
            price_scale=scale,
            expiry=expiry,
            strike=strike,
        )

    minimum = _MIN_FIELDS.get(xts_type)
    if minimum is None:
        if len(fields) < _EQUITY_FIELDS:
            raise ValidationError(
                f"master line {line_no}: an instrument of type {xts_type} has {len(fields)} "
                f"fields, {_EQUITY_FIELDS} expected",
                code="xts_bad_master",
            )
        # NSE lists one row per series (RELIANCE EQ, RELIANCE BE ...); EQ keeps the bare name.
        symbol = name if series == "EQ" or exchange == "BSE" else f"{name}-{series}"
        instrument = build(symbol, fields[18].strip() or name)
        return MasterRow(
            instrument, SEGMENT_CODES[segment], xts_type, fields[15].strip(), fields[14].strip()
        )
    if len(fields) < minimum:
        raise ValidationError(
            f"master line {line_no}: a type {xts_type} row has {len(fields)} fields, "
            f"{minimum} expected",
            code="xts_bad_master",
        )
    expiry = _expiry(fields[16], line_no)
    if xts_type == _OPTION:
        kind = _OPTION_TYPES.get(fields[18].strip())
        if kind is None:
            raise ValidationError(
                f"master line {line_no}: option type {fields[18]!r} is neither 3 (CE) nor 4 (PE)",
                code="xts_bad_master",
            )
        strike = number(fields[17], "strike")
        instrument = build(
            description, name, kind, expiry, int(strike.scaleb(scale).to_integral_value())
        )
        return MasterRow(instrument, SEGMENT_CODES[segment], xts_type, "", fields[19].strip())
    instrument = build(description, name, InstrumentType.FUTURE, expiry)
    return MasterRow(instrument, SEGMENT_CODES[segment], xts_type, "", fields[17].strip())


def parse_master(text: str) -> tuple[list[MasterRow], int]:
    """Every row of a master string, and how many rows were skipped as unreadable."""
    rows: list[MasterRow] = []
    skipped = 0
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(parse_master_line(line, line_no))
        except ValidationError:
            skipped += 1
    return rows, skipped


def parse_index_list(segment: str, names: list[object]) -> list[MasterRow]:
    """``/instruments/indexlist`` entries (``"NIFTY 50_26000"``) as index instruments."""
    rows: list[MasterRow] = []
    exchange = SEGMENT_EXCHANGES.get(segment, segment)
    for entry in names:
        name, sep, token = str(entry).rpartition("_")
        if not sep or not token.isdigit() or not name:
            raise ValidationError(
                f"index list entry {entry!r} is not NAME_ID", code="xts_bad_master"
            )
        instrument = Instrument(
            exchange=exchange,
            symbol=name,
            token=int(token),
            segment=segment,
            name=name,
            instrument_type=InstrumentType.INDEX,
        )
        rows.append(MasterRow(instrument, SEGMENT_CODES[segment], 0))
    return rows
