"""Synthetic participants: a fair-value process per instrument, market makers, noise takers and
tick-file replay.

Every instrument has a hidden *fair value* that moves once per simulation step:

- ``gbm``: geometric Brownian motion, ``F·exp((μ − σ²/2)·dt + σ·√dt·Z)``;
- ``random_walk``: arithmetic, ``F + F₀·σ·√dt·Z``;
- ``replay``: the prices of a recorded tick file, at its own pace times ``replay_speed``.

``dt`` is the step in *trading years* (252 days of 6¼ hours), so a volatility means what it
means for a real instrument over trading time. Fair value never leaves the circuit band.

Around it, per instrument:

- a **market maker** quotes ``levels`` price levels a side, the best ``half_spread_ticks`` from
  fair value and ``level_spacing_ticks`` apart, each worth about ``level_notional_paise``. It
  re-quotes only what changed: levels that left the ladder are cancelled, new ones added, and a
  level traded below half its size is topped up (which sends it to the back of its queue);
- a **noise taker** sends immediate-or-cancel orders at the touch, on average
  ``trades_per_minute`` a simulated minute, each worth about ``trade_notional_paise``, buying
  more often when the book's mid is below fair value and selling more often when above, so the
  last price follows fair value;
- a replayed instrument has no noise taker: each row of its file is traded at its price and
  quantity (after the market maker has re-quoted around it), so its last price is the file's
  unless a participant's order stands in the way at a better price.

The model keeps fair value as a float; every price that reaches a book is an integer number of
ticks. All randomness comes from one ``random.Random`` per instrument, seeded from the sim's
seed and the instrument's key, so an instrument's path does not depend on the rest of the
universe.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final, Protocol

import attrs

from hft import ConfigError, ValidationError
from hft.contracts import EngineCodes
from hft.model import to_price_units
from hft_sim.config import FairValueConfig, MarketMakerConfig, NoiseTakerConfig
from hft_sim.exchange import Book, Exchange
from hft_sim.universe import PRICE_SCALE

__all__ = [
    "MARKET_MAKER",
    "NOISE_TAKER",
    "REPLAY_BUYER",
    "REPLAY_SELLER",
    "TRADING_YEAR_S",
    "Agents",
    "FairValue",
    "GeometricBrownian",
    "RandomWalk",
    "Replay",
    "ReplayRow",
    "read_ticks",
]

C = EngineCodes

#: Seconds of trading in a year: 252 sessions of 6 h 15 min.
TRADING_YEAR_S: Final = 252 * 6.25 * 3600

#: Engine owners of the agents. Sim accounts are owners 1, 2, ...; agents sit far above them.
MARKET_MAKER: Final = 1_000_001
NOISE_TAKER: Final = 1_000_002
REPLAY_SELLER: Final = 1_000_003
REPLAY_BUYER: Final = 1_000_004


class FairValue(Protocol):
    """A fair-value process: ``value`` in price units, moved by :meth:`advance`."""

    value: float

    def advance(self, dt_s: float, elapsed_ns: int) -> Sequence[tuple[int, int]]:
        """Move on by ``dt_s`` simulated seconds (``elapsed_ns`` since the process started);
        return the trades to print as ``(price, quantity)``: none for a model."""
        ...


class GeometricBrownian:
    """Geometric Brownian motion with annualised volatility and drift."""

    def __init__(
        self, value: float, volatility_pct: float, drift_pct: float, rng: random.Random
    ) -> None:
        self.value = value
        self._sigma = volatility_pct / 100
        self._mu = drift_pct / 100
        self._rng = rng

    def advance(self, dt_s: float, elapsed_ns: int) -> Sequence[tuple[int, int]]:
        dt_years = dt_s / TRADING_YEAR_S
        sigma = self._sigma
        shock = sigma * math.sqrt(dt_years) * self._rng.gauss(0.0, 1.0)
        self.value *= math.exp((self._mu - sigma * sigma / 2) * dt_years + shock)
        return ()


class RandomWalk:
    """Arithmetic random walk: normal steps of the starting value times the volatility."""

    def __init__(self, value: float, volatility_pct: float, rng: random.Random) -> None:
        self.value = value
        self._scale = value * volatility_pct / 100
        self._rng = rng

    def advance(self, dt_s: float, elapsed_ns: int) -> Sequence[tuple[int, int]]:
        self.value += self._scale * math.sqrt(dt_s / TRADING_YEAR_S) * self._rng.gauss(0.0, 1.0)
        return ()


@attrs.frozen
class ReplayRow:
    """One recorded trade: its time from the file's first row, price (paise) and quantity."""

    offset_ns: int
    price: int
    quantity: int


class Replay:
    """Plays recorded trades back at ``speed`` times their recorded pace, looping if asked."""

    def __init__(self, rows: Sequence[ReplayRow], speed: float, loop: bool) -> None:
        if not rows:
            raise ValueError("a replay needs at least one row")
        self.value = float(rows[0].price)
        self._rows = rows
        self._speed = speed
        self._loop = loop
        self._next = 0
        self._base_ns = 0  # replay time at which the current pass started
        # A pass lasts as long as its rows plus the mean gap between them, so a loop does not
        # print the last and first rows at the same instant.
        span = rows[-1].offset_ns
        self._period_ns = span + (span // (len(rows) - 1) if len(rows) > 1 else 1_000_000_000)

    def advance(self, dt_s: float, elapsed_ns: int) -> Sequence[tuple[int, int]]:
        now = int(elapsed_ns * self._speed)
        rows = self._rows
        due: list[tuple[int, int]] = []
        while True:
            if self._next == len(rows):
                if not self._loop:
                    break
                self._next = 0
                self._base_ns += self._period_ns
            row = rows[self._next]
            if self._base_ns + row.offset_ns > now:
                break
            due.append((row.price, row.quantity))
            self._next += 1
        if due:
            self.value = float(due[-1][0])
        return due


def read_ticks(path: Path, tick_size: int, lot_size: int) -> list[ReplayRow]:
    """Rows of a tick CSV: a ``timestamp,price,qty`` header, then one trade per line.

    ``timestamp`` is an ISO 8601 date-time or seconds since the epoch (decimals allowed); only
    the gaps between rows matter, and they must not be negative. ``price`` is decimal rupees on
    the instrument's tick grid; ``qty`` a positive whole number of lots. Raise
    :class:`hft.ConfigError` naming the line of the first bad row.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"replay file {path}: {exc.strerror or exc}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["timestamp", "price", "qty"]:
        raise ConfigError(f"replay file {path}: the first row must be timestamp,price,qty")
    out: list[ReplayRow] = []
    first: int | None = None
    previous = 0
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            if len(row) != 3:
                raise ValueError(f"expected 3 columns, got {len(row)}")
            stamp = _timestamp_ns(row[0].strip())
            price = to_price_units(row[1].strip(), PRICE_SCALE)
            quantity = int(row[2].strip())
            if price <= 0 or price % tick_size:
                raise ValueError(f"price {row[1].strip()} is not on the tick grid")
            if quantity <= 0 or quantity % lot_size:
                raise ValueError(f"qty {quantity} is not a positive multiple of lot {lot_size}")
        except (ValueError, ValidationError) as exc:
            raise ConfigError(f"replay file {path}:{line}: {exc}") from None
        if first is None:
            first = stamp
        offset = stamp - first
        if offset < previous:
            raise ConfigError(f"replay file {path}:{line}: timestamp goes backwards")
        previous = offset
        out.append(ReplayRow(offset, price, quantity))
    if not out:
        raise ConfigError(f"replay file {path}: has no rows")
    return out


def _timestamp_ns(text: str) -> int:
    try:
        return int(Decimal(text) * 1_000_000_000)
    except InvalidOperation:
        pass
    stamp = dt.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)  # only differences matter
    return (
        int((stamp - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1)) * 1000
    )


@attrs.define
class _Quote:
    order_id: int
    price: int  # ticks
    size: int
    remaining: int


class _Instrument:
    """The agents of one instrument."""

    def __init__(
        self,
        book: Book,
        fair: FairValue,
        rng: random.Random,
        maker: MarketMakerConfig | None,
        taker: NoiseTakerConfig | None,
    ) -> None:
        self.book = book
        self.fair = fair
        self.rng = rng
        self.maker = maker
        self.taker = taker
        self.bids: dict[int, _Quote] = {}
        self.asks: dict[int, _Quote] = {}
        self.anchor: tuple[int, int] | None = None  # (best bid, best ask) last quoted, in ticks
        self.touched = False  # a quote traded or vanished since the last re-quote


class Agents:
    """Every instrument's agents, stepped together by the broker's clock."""

    def __init__(
        self,
        exchange: Exchange,
        fair_values: dict[str, FairValue],
        seed: int,
        fair_value: FairValueConfig,
        market_makers: MarketMakerConfig,
        noise_takers: NoiseTakerConfig,
    ) -> None:
        self._exchange = exchange
        self._agents: dict[str, _Instrument] = {}
        self._quotes: dict[int, tuple[_Instrument, dict[int, _Quote], _Quote]] = {}
        maker = market_makers if market_makers.enabled and market_makers.levels else None
        taker = noise_takers if noise_takers.enabled and noise_takers.trades_per_minute else None
        for book in exchange:
            replayed = book.key in fair_value.replay
            self._agents[book.key] = _Instrument(
                book,
                fair_values[book.key],
                random.Random(f"{seed}:agents:{book.key}"),
                maker,
                None if replayed else taker,
            )
        exchange.register(MARKET_MAKER, self._on_quote)
        exchange.register(NOISE_TAKER, _ignore)
        exchange.register(REPLAY_SELLER, _ignore)
        exchange.register(REPLAY_BUYER, _ignore)

    def fair_value(self, key: str) -> float:
        return self._agents[key].fair.value

    def set_fair_value(self, key: str, value: float) -> None:
        self._agents[key].fair.value = value

    def step(self, dt_s: float, elapsed_ns: int) -> None:
        """One step of every instrument, in universe order."""
        for agent in self._agents.values():
            book = agent.book
            fair = agent.fair
            prints = fair.advance(dt_s, elapsed_ns)
            fair.value = min(max(fair.value, book.band_low), book.band_high)
            for price, quantity in prints:
                price = min(max(price, book.band_low), book.band_high)
                fair.value = price
                self._quote(agent)
                self._print(book, price, quantity)
            self._quote(agent)
            if agent.taker is not None:
                self._take(agent, agent.taker, dt_s)

    # Market maker -----------------------------------------------------------------------------

    def _quote(self, agent: _Instrument) -> None:
        config = agent.maker
        if config is None:
            return
        book = agent.book
        tick = book.tick
        fair = agent.fair.value / tick
        best_bid = math.ceil(fair) - config.half_spread_ticks
        best_ask = math.floor(fair) + config.half_spread_ticks
        anchor = (best_bid, best_ask)
        if anchor == agent.anchor and not agent.touched:
            return
        agent.anchor, agent.touched = anchor, False
        low, high = book.band_low // tick, book.band_high // tick
        spacing = config.level_spacing_ticks
        reach = config.levels * spacing
        # Ranges test membership in O(1): the ladder is every ``spacing``-th tick from the best.
        ladders = (
            (C.BUY, agent.bids, range(best_bid, best_bid - reach, -spacing)),
            (C.SELL, agent.asks, range(best_ask, best_ask + reach, spacing)),
        )
        exchange = self._exchange
        for _, quotes, wanted in ladders:
            for price in [p for p in quotes if p not in wanted or not low <= p <= high]:
                exchange.cancel(book, quotes[price].order_id)
        for side, quotes, wanted in ladders:
            for price in wanted:
                if not low <= price <= high:
                    continue
                quote = quotes.get(price)
                if quote is None:
                    size = self._size(agent, price * tick, config.level_notional_paise, 0.5, 1.5)
                    quote = _Quote(exchange.new_id(), price, size, size)
                    quotes[price] = quote
                    self._quotes[quote.order_id] = (agent, quotes, quote)
                    exchange.submit(book, quote.order_id, MARKET_MAKER, side, price * tick, size)
                elif quote.remaining * 2 < quote.size:
                    exchange.modify(book, quote.order_id, price * tick, quote.size)

    def _on_quote(
        self,
        book: Book,
        order_id: int,
        kind: int,
        quantity: int,
        price: int,
        remaining: int,
        reason: int,
    ) -> None:
        entry = self._quotes.get(order_id)
        if entry is None:
            return
        agent, quotes, quote = entry
        if kind == C.FILL or kind == C.MODIFIED:
            quote.remaining = remaining
            agent.touched = True
            if remaining:
                return
        elif kind != C.CANCELLED and kind != C.REJECTED:
            return
        agent.touched = True
        del self._quotes[order_id]
        if quotes.get(quote.price) is quote:
            del quotes[quote.price]

    # Noise taker and replay -------------------------------------------------------------------

    def _take(self, agent: _Instrument, config: NoiseTakerConfig, dt_s: float) -> None:
        rng = agent.rng
        rate = config.trades_per_minute * dt_s / 60
        count = int(rate) + (1 if rng.random() < rate - int(rate) else 0)
        book = agent.book
        for _ in range(count):
            bid, ask = book.best_bid(), book.best_ask()
            if bid is None and ask is None:
                return
            mid = (bid + ask) / 2 if bid is not None and ask is not None else agent.fair.value
            lean = max(-0.3, min(0.3, 0.1 * (agent.fair.value - mid) / book.tick))
            buy = rng.random() < 0.5 + lean
            price = ask if buy else bid
            if price is None:
                continue
            size = self._size(agent, price, config.trade_notional_paise, 0.2, 1.8)
            self._exchange.submit(
                book,
                self._exchange.new_id(),
                NOISE_TAKER,
                C.BUY if buy else C.SELL,
                price,
                size,
                C.LIMIT,
                C.IOC,
            )

    def _print(self, book: Book, price: int, quantity: int) -> None:
        """Trade ``quantity`` at ``price`` between the replay's two owners."""
        exchange = self._exchange
        seller = exchange.new_id()
        exchange.submit(book, seller, REPLAY_SELLER, C.SELL, price, quantity)
        exchange.submit(
            book, exchange.new_id(), REPLAY_BUYER, C.BUY, price, quantity, C.LIMIT, C.IOC
        )
        exchange.cancel(book, seller)

    @staticmethod
    def _size(agent: _Instrument, price: int, notional: int, low: float, high: float) -> int:
        instrument = agent.book.instrument
        lot = instrument.lot_size
        lots = max(1, round(notional * agent.rng.uniform(low, high) / (price * lot)))
        size = lots * lot
        freeze = instrument.freeze_quantity
        if freeze is not None and size > freeze:
            size = freeze // lot * lot
        return size


def _ignore(
    book: Book, order_id: int, kind: int, quantity: int, price: int, remaining: int, reason: int
) -> None:
    """Agents that do not track their orders (immediate-or-cancel takers, replay prints)."""
