"""``[brokers.<name>]`` keys of the ``sim`` broker: every one has a default.

Field names carry their units (``_ms``, ``_s``, ``_pct``, ``_paise``). Nested tables
(``[brokers.sim.market_makers]``) group the keys of one model. The README lists every key with
its meaning; a test keeps the two in step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs

__all__ = [
    "DEFAULT_ACCOUNT",
    "DEFAULT_CASH_PAISE",
    "FairValueConfig",
    "LatencyConfig",
    "MarginConfig",
    "MarketMakerConfig",
    "NoiseTakerConfig",
    "RulesConfig",
    "SimAccountConfig",
    "SimConfig",
]

#: The account a sim broker serves when the config names none (the core's default account
#: ``sim`` trades broker account ``default``).
DEFAULT_ACCOUNT: Final = "default"
#: ₹10,00,000.00.
DEFAULT_CASH_PAISE: Final = 1_000_000_00


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _percent(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 100:
        raise ValueError(f"{attribute.name} must lie in 0..100, got {value}")


def _clock_time(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        dt.time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{attribute.name} must be a time like 09:15, got {value!r}") from None


def _start_at(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value:
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{attribute.name} must be an ISO 8601 date-time, got {value!r}"
            ) from None


def _accounts(
    _: object, attribute: attrs.Attribute[Any], value: Mapping[str, SimAccountConfig]
) -> None:
    if not value or not all(value):
        raise ValueError(f"{attribute.name} must name one or more accounts")


@attrs.frozen
class SimAccountConfig:
    """``[brokers.<name>.accounts.<code>]``: one simulated trading account."""

    #: Cash the account starts with, and returns to on a funds reset.
    cash_paise: int = attrs.field(default=DEFAULT_CASH_PAISE, validator=_non_negative)


@attrs.frozen
class FairValueConfig:
    """``[brokers.<name>.fair_value]``: the hidden price every agent trades around."""

    #: ``gbm``: geometric Brownian motion; ``random_walk``: arithmetic (normal steps scaled by
    #: the opening price).
    model: Literal["gbm", "random_walk"] = "gbm"
    #: Annualised volatility for every instrument; 0 keeps each instrument's own (the demo
    #: universe's run from 14 % for index futures to 60 % for a penny stock).
    volatility_annual_pct: float = attrs.field(default=0.0, validator=_non_negative)
    #: Annualised drift (GBM) for every instrument.
    drift_annual_pct: float = 0.0
    #: Instrument key → CSV tick file (``timestamp,price,qty``) to replay instead of a model;
    #: relative paths are under the host's ``data_dir``.
    replay: Mapping[str, Path] = attrs.field(factory=dict)
    #: Replay speed: 1.0 plays the file at its recorded pace, 10.0 ten times faster.
    replay_speed: float = attrs.field(default=1.0, validator=_positive)
    #: Start a replay over when its file ends (else the price stays at the last row).
    replay_loop: bool = True


@attrs.frozen
class MarketMakerConfig:
    """``[brokers.<name>.market_makers]``: one quoting agent per instrument."""

    enabled: bool = True
    #: Price levels quoted on each side (5 fills a full-mode depth).
    levels: int = attrs.field(default=5, validator=_non_negative)
    #: Distance of the best bid and ask from fair value, in ticks (at least one).
    half_spread_ticks: int = attrs.field(default=1, validator=_positive)
    #: Distance between consecutive levels, in ticks.
    level_spacing_ticks: int = attrs.field(default=1, validator=_positive)
    #: Value quoted per level (randomised ×0.5-1.5, at least one lot), in paise.
    level_notional_paise: int = attrs.field(default=2_00_000_00, validator=_positive)


@attrs.frozen
class NoiseTakerConfig:
    """``[brokers.<name>.noise_takers]``: random market-taking flow per instrument."""

    enabled: bool = True
    #: Average trades per instrument per simulated minute (Poisson).
    trades_per_minute: float = attrs.field(default=60.0, validator=_non_negative)
    #: Average value of one trade (randomised ×0.2-1.8, at least one lot), in paise.
    trade_notional_paise: int = attrs.field(default=50_000_00, validator=_positive)


@attrs.frozen
class LatencyConfig:
    """``[brokers.<name>.latency]``: delays on the order path, in simulated time."""

    #: From a place, modify or cancel call to the exchange acting on it.
    order_ms: float = attrs.field(default=2.0, validator=_non_negative)
    #: From the exchange acting to the broker's update or fill event.
    report_ms: float = attrs.field(default=1.0, validator=_non_negative)
    #: Uniform random extra delay (0..jitter) on each order request, from the seeded generator.
    jitter_ms: float = attrs.field(default=1.0, validator=_non_negative)


@attrs.frozen
class RulesConfig:
    """``[brokers.<name>.rules]``: exchange rules beyond tick, lot and freeze quantity."""

    #: Circuit limits around the previous close for every instrument; 0 keeps each
    #: instrument's own (demo: 20 % for equities, 10 % for index futures).
    price_band_pct: float = attrs.field(default=0.0, validator=_percent)
    #: Trade only between ``market_open`` and ``market_close`` (exchange time); off, the
    #: market never closes and the day turns at midnight.
    market_hours: bool = False
    market_open: str = attrs.field(default="09:15", validator=_clock_time)
    market_close: str = attrs.field(default="15:30", validator=_clock_time)
    #: Exchange time zone as an offset from UTC (IST is +330).
    utc_offset_minutes: int = 330


@attrs.frozen
class MarginConfig:
    """``[brokers.<name>.margin]``: what an order or position blocks (CNC always pays 100 %)."""

    #: Intraday (MIS) margin, percent of notional, equities and futures alike.
    mis_pct: float = attrs.field(default=20.0, validator=_percent)
    #: Overnight futures (NRML) margin, percent of notional.
    nrml_pct: float = attrs.field(default=15.0, validator=_percent)


@attrs.frozen
class SimConfig:
    """``[brokers.<name>]`` keys of the ``sim`` broker."""

    #: Seed of every random choice: same seed, same orders → same market and fills.
    seed: int = 42
    #: ``realtime``: simulated time follows the wall clock (times ``speed``);
    #: ``manual``: time moves only when :meth:`SimBroker.advance` or ``step`` is called.
    clock: Literal["realtime", "manual"] = "realtime"
    #: Simulated time between market updates (fair value, quotes, noise trades, ticks).
    step_ms: float = attrs.field(default=200.0, validator=_positive)
    #: Simulated seconds per real second in ``realtime`` mode.
    speed: float = attrs.field(default=1.0, validator=_positive)
    #: Simulated start instant (ISO 8601); empty means now in ``realtime`` mode and
    #: 2025-01-01T09:15:00+05:30 in ``manual`` mode, so manual runs repeat exactly.
    start_at: str = attrs.field(default="", validator=_start_at)
    #: ``demo``: about twenty NSE equities and index futures; ``synthetic``:
    #: ``synthetic_instruments`` made-up equities (for load tests).
    universe: Literal["demo", "synthetic"] = "demo"
    synthetic_instruments: int = attrs.field(default=1000, validator=_positive)
    #: A CSV of instruments that replaces the universe (see the README for its columns);
    #: relative paths are under the host's ``data_dir``.
    instruments_file: Path | None = None
    #: Account code → its settings.
    accounts: Mapping[str, SimAccountConfig] = attrs.field(
        factory=lambda: {DEFAULT_ACCOUNT: SimAccountConfig()}, validator=_accounts
    )
    #: What the exchange does when an order would trade with the same account's order.
    self_trade: Literal["cancel_incoming", "cancel_resting", "allow"] = "cancel_incoming"
    #: Keep accounts, orders, trades and prices in the host's storage across restarts.
    persist: bool = True
    #: How often the state is written while it changes, in real time.
    persist_interval_ms: float = attrs.field(default=1000.0, validator=_positive)
    #: How often ``hft serve`` logs a ``sim.market`` line (0 turns it off), in real time.
    market_log_interval_s: float = attrs.field(default=5.0, validator=_non_negative)
    #: How many instruments that line shows.
    market_log_instruments: int = attrs.field(default=5, validator=_non_negative)
    fair_value: FairValueConfig = FairValueConfig()
    market_makers: MarketMakerConfig = MarketMakerConfig()
    noise_takers: NoiseTakerConfig = NoiseTakerConfig()
    latency: LatencyConfig = LatencyConfig()
    rules: RulesConfig = RulesConfig()
    margin: MarginConfig = MarginConfig()
