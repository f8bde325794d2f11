"""The instruments the simulated exchange lists: the demo universe, a synthetic one, or a CSV.

A :class:`Listing` is an :class:`~hft.model.Instrument` plus what the simulation needs to start
it: a reference price (the previous close), a volatility and a circuit-limit band.

The demo universe looks like a slice of the Indian market: sixteen NSE equities from a ₹7.50
penny stock to a ₹1,30,000 share, with tick sizes by price as NSE sets them for equities
(₹0.01 below ₹250, ₹0.05 to ₹1,000, ₹0.10 to ₹5,000, ₹0.50 to ₹10,000, ₹1 to ₹20,000, ₹5
above), and four near-month index futures with their lot sizes and freeze quantities. Prices,
volatilities and bands are round illustrative figures, not market data.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Final

import attrs

from hft import ConfigError, ValidationError
from hft.model import Instrument, InstrumentType, to_price_units

__all__ = [
    "INSTRUMENT_COLUMNS",
    "Listing",
    "demo_universe",
    "equity_tick_size",
    "load_instruments",
    "synthetic_universe",
]

#: Prices of every listing are in paise (price scale 2): the sim keeps money in paise too.
PRICE_SCALE: Final = 2

#: Columns of an instruments CSV, in this order (a header row is required).
INSTRUMENT_COLUMNS: Final = (
    "exchange",
    "symbol",
    "instrument_type",
    "price",
    "tick_size",
    "lot_size",
    "freeze_quantity",
    "price_band_pct",
    "volatility_annual_pct",
)

# (upper bound of the price in paise, tick size in paise), by NSE's equity schedule.
_EQUITY_TICKS: Final = (
    (250_00, 1),
    (1_000_00, 5),
    (5_000_00, 10),
    (10_000_00, 50),
    (20_000_00, 100),
)
_TOP_TICK: Final = 500


@attrs.frozen
class Listing:
    """One listed instrument and how its simulation starts.

    ``price`` is the reference price in paise (the previous close, from which the circuit band
    is computed); ``volatility_annual_pct`` drives the fair-value model; ``price_band_pct`` is
    the circuit limit either side of the previous close.
    """

    instrument: Instrument
    price: int
    volatility_annual_pct: float
    price_band_pct: float

    def __attrs_post_init__(self) -> None:
        instrument = self.instrument
        if instrument.price_scale != PRICE_SCALE:
            raise ValidationError(f"{instrument.key}: the sim quotes every price in paise")
        if instrument.instrument_type not in (InstrumentType.EQUITY, InstrumentType.FUTURE):
            raise ValidationError(f"{instrument.key}: the sim lists equities and futures only")
        instrument.check_price(self.price)
        if not 0 < self.price_band_pct <= 100:
            raise ValidationError(f"{instrument.key}: price band must lie in (0, 100] percent")
        if self.volatility_annual_pct < 0:
            raise ValidationError(f"{instrument.key}: volatility must not be negative")

    @property
    def key(self) -> str:
        return self.instrument.key


def equity_tick_size(price: int) -> int:
    """The tick size (paise) NSE sets for an equity trading at ``price`` paise."""
    for bound, tick in _EQUITY_TICKS:
        if price < bound:
            return tick
    return _TOP_TICK


def _equity(token: int, symbol: str, name: str, rupees: str, vol: float) -> Listing:
    price = to_price_units(rupees, PRICE_SCALE)
    instrument = Instrument(
        "NSE", symbol, token, "NSE", name, tick_size=equity_tick_size(price), lot_size=1
    )
    return Listing(instrument, price, vol, 20.0)


def _future(
    token: int, symbol: str, name: str, rupees: str, lot: int, freeze: int, vol: float
) -> Listing:
    instrument = Instrument(
        "NFO",
        symbol,
        token,
        "NFO-FUT",
        name,
        InstrumentType.FUTURE,
        tick_size=5,
        lot_size=lot,
        freeze_quantity=freeze,
    )
    return Listing(instrument, to_price_units(rupees, PRICE_SCALE), vol, 10.0)


def demo_universe() -> list[Listing]:
    """Twenty instruments: sixteen NSE equities and four near-month index futures (``-I``)."""
    return [
        _equity(1, "RELIANCE", "RELIANCE INDUSTRIES", "1250.00", 22.0),
        _equity(2, "TCS", "TATA CONSULTANCY SERV", "3450.00", 20.0),
        _equity(3, "HDFCBANK", "HDFC BANK", "1700.00", 18.0),
        _equity(4, "INFY", "INFOSYS", "1500.00", 24.0),
        _equity(5, "ICICIBANK", "ICICI BANK", "1300.00", 20.0),
        _equity(6, "SBIN", "STATE BANK OF INDIA", "800.00", 26.0),
        _equity(7, "BHARTIARTL", "BHARTI AIRTEL", "1600.00", 22.0),
        _equity(8, "ITC", "ITC", "420.00", 18.0),
        _equity(9, "LT", "LARSEN & TOUBRO", "3500.00", 22.0),
        _equity(10, "HINDUNILVR", "HINDUSTAN UNILEVER", "2350.00", 18.0),
        _equity(11, "AXISBANK", "AXIS BANK", "1100.00", 25.0),
        _equity(12, "TATASTEEL", "TATA STEEL", "150.00", 32.0),
        _equity(13, "ASIANPAINT", "ASIAN PAINTS", "2300.00", 22.0),
        _equity(14, "MARUTI", "MARUTI SUZUKI INDIA", "12000.00", 24.0),
        _equity(15, "MRF", "MRF", "130000.00", 22.0),
        _equity(16, "IDEA", "VODAFONE IDEA", "7.50", 60.0),
        _future(101, "NIFTY-I", "NIFTY", "23500.00", 75, 1800, 14.0),
        _future(102, "BANKNIFTY-I", "BANKNIFTY", "51000.00", 35, 900, 17.0),
        _future(103, "FINNIFTY-I", "FINNIFTY", "23800.00", 65, 1800, 16.0),
        _future(104, "MIDCPNIFTY-I", "MIDCPNIFTY", "12000.00", 140, 2800, 18.0),
    ]


def synthetic_universe(count: int, seed: int) -> list[Listing]:
    """``count`` made-up NSE equities (``SYN00001``...) priced log-uniformly ₹50-₹5,000."""
    rng = random.Random(f"{seed}:universe")
    listings = []
    for i in range(1, count + 1):
        rupees = Decimal(50 * (100 ** rng.random())).quantize(Decimal("0.01"))
        tick = equity_tick_size(int(rupees * 100))
        paise = int(rupees * 100) // tick * tick
        instrument = Instrument(
            "NSE", f"SYN{i:05d}", 900_000 + i, "NSE", f"SYNTHETIC {i}", tick_size=tick
        )
        listings.append(Listing(instrument, paise, 15.0 + 30.0 * rng.random(), 20.0))
    return listings


def load_instruments(path: Path) -> list[Listing]:
    """Listings from a CSV with the :data:`INSTRUMENT_COLUMNS` header.

    ``instrument_type`` is ``EQ`` or ``FUT``; prices and tick sizes are decimal rupees; an
    empty ``tick_size`` takes the equity schedule, an empty ``freeze_quantity`` means none.
    Raise :class:`hft.ConfigError` naming the line of the first bad row.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"instruments_file {path}: {exc.strerror or exc}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or tuple(c.strip().lower() for c in rows[0]) != INSTRUMENT_COLUMNS:
        raise ConfigError(
            f"instruments_file {path}: the first row must be {','.join(INSTRUMENT_COLUMNS)}"
        )
    listings: list[Listing] = []
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            listing = _listing_from_row(row, token=line - 1)
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"instruments_file {path}:{line}: {exc}") from None
        if listing.key in seen:
            raise ConfigError(f"instruments_file {path}:{line}: {listing.key} is listed twice")
        seen.add(listing.key)
        listings.append(listing)
    if not listings:
        raise ConfigError(f"instruments_file {path}: lists no instruments")
    return listings


def _listing_from_row(row: Sequence[str], token: int) -> Listing:
    if len(row) != len(INSTRUMENT_COLUMNS):
        raise ValueError(f"expected {len(INSTRUMENT_COLUMNS)} columns, got {len(row)}")
    cells = dict(zip(INSTRUMENT_COLUMNS, (c.strip() for c in row), strict=True))
    kind = InstrumentType(cells["instrument_type"])
    price = to_price_units(cells["price"], PRICE_SCALE)
    tick_text = cells["tick_size"]
    tick = to_price_units(tick_text, PRICE_SCALE) if tick_text else equity_tick_size(price)
    freeze_text = cells["freeze_quantity"]
    instrument = Instrument(
        cells["exchange"],
        cells["symbol"],
        token,
        cells["exchange"],
        cells["symbol"],
        kind,
        tick_size=tick,
        lot_size=int(cells["lot_size"]),
        freeze_quantity=int(freeze_text) if freeze_text else None,
    )
    return Listing(
        instrument,
        price,
        float(cells["volatility_annual_pct"]),
        float(cells["price_band_pct"]),
    )
