"""The simulated exchange: one matching engine per instrument, its day statistics and its rules.

Books hold every participant's orders, sim accounts' and agents' alike, and match them by
price-time priority in an engine taken from the host's matching-engine registry (``ext``), never
imported. Engines work in integer ticks; this module converts at its edges (``price // tick``
in, ``ticks * tick`` out), so everything else speaks price units (paise).

Each engine call's outcomes are handed, in order, to the handler registered for the owner of
the order they concern (the taker and the maker of a fill each get theirs). Handlers only record
what happened: they never call the exchange back, so an engine's borrowed events stay valid
while they are read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol

import attrs

from hft import BrokerRejected, ValidationError
from hft.contracts import EngineCodes, MatchingEngine
from hft.model import (
    Depth,
    DepthLevel,
    Instrument,
    InstrumentType,
    Ohlc,
    OrderRequest,
    OrderType,
    Product,
    Side,
    StreamMode,
    Tick,
)
from hft_sim.universe import Listing

__all__ = ["Book", "Exchange", "Market", "OrderHandler", "engine_order_type", "engine_side"]

C = EngineCodes
DEPTH_LEVELS: Final = 5

_PRODUCTS: Final = {
    InstrumentType.EQUITY: (Product.CNC, Product.MIS),
    InstrumentType.FUTURE: (Product.NRML, Product.MIS),
}
_ORDER_TYPES: Final = {
    OrderType.LIMIT: C.LIMIT,
    OrderType.MARKET: C.MARKET,
    OrderType.STOP: C.STOP,
    OrderType.STOP_LIMIT: C.STOP_LIMIT,
}


def engine_side(side: Side) -> int:
    return C.BUY if side is Side.BUY else C.SELL


def engine_order_type(order_type: OrderType) -> int:
    return _ORDER_TYPES[order_type]


class OrderHandler(Protocol):
    """Told what happened to one order of its owner in one engine call.

    ``kind`` and ``reason`` are :class:`~hft.contracts.EngineCodes`; ``price`` is in price units
    (the trade price for a fill); ``remaining`` is the order's open quantity afterwards.
    """

    def __call__(
        self,
        book: Book,
        order_id: int,
        kind: int,
        quantity: int,
        price: int,
        remaining: int,
        reason: int,
    ) -> None: ...


@attrs.define
class Market:
    """One instrument's trading day so far, in price units and quantity."""

    previous_close: int
    open: int
    high: int
    low: int
    last: int
    last_quantity: int = 0
    volume: int = 0
    value: int = 0  # sum of price × quantity, for the day's average price

    @classmethod
    def opening(cls, price: int) -> Market:
        return cls(price, price, price, price, price)

    def trade(self, price: int, quantity: int) -> None:
        if self.volume == 0:
            self.open = self.high = self.low = price
        elif price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.last = price
        self.last_quantity = quantity
        self.volume += quantity
        self.value += price * quantity

    def new_day(self) -> None:
        """The last price becomes the previous close; the day's figures restart from it."""
        self.previous_close = self.open = self.high = self.low = self.last
        self.last_quantity = self.volume = self.value = 0

    def to_json(self) -> list[int]:
        return [
            self.previous_close,
            self.open,
            self.high,
            self.low,
            self.last,
            self.last_quantity,
            self.volume,
            self.value,
        ]

    @classmethod
    def from_json(cls, row: Sequence[Any]) -> Market:
        return cls(*(int(v) for v in row))


class Book:
    """One instrument's order book, market statistics and circuit band."""

    def __init__(self, listing: Listing, engine: MatchingEngine, band_bps: int) -> None:
        self.listing: Final = listing
        self.instrument: Final[Instrument] = listing.instrument
        self.key: Final = listing.key
        self.tick: Final = listing.instrument.tick_size
        self.engine: Final = engine
        self.market = Market.opening(listing.price)
        self.band_bps: Final = band_bps
        self.band_low = self.band_high = listing.price
        self.set_band()
        #: Something changed since the last tick went out (a trade, a quote, an order).
        self.dirty = True
        # The depth levels of the last snapshot by engine level: most survive to the next one,
        # and reusing them is much cheaper than building frozen objects again.
        self._levels: dict[tuple[int, int, int], DepthLevel] = {}

    def set_band(self) -> None:
        """Circuit limits: ``band_bps`` either side of the previous close, on the tick grid."""
        reference, tick = self.market.previous_close, self.tick
        low = reference * (10_000 - self.band_bps)
        high = reference * (10_000 + self.band_bps)
        step = tick * 10_000
        self.band_low = max(tick, -(-low // step) * tick)
        self.band_high = high // step * tick

    def in_band(self, price: int) -> bool:
        return self.band_low <= price <= self.band_high

    def best_bid(self) -> int | None:
        ticks = self.engine.best_bid()
        return None if ticks is None else ticks * self.tick

    def best_ask(self) -> int | None:
        ticks = self.engine.best_ask()
        return None if ticks is None else ticks * self.tick

    # Rules ------------------------------------------------------------------------------------

    def check(self, request: OrderRequest) -> None:
        """Refuse ``request`` with :class:`hft.BrokerRejected` if the exchange's rules forbid it.

        Codes: ``bad_product``, ``bad_quantity``, ``bad_lot``, ``freeze_quantity``,
        ``off_tick``, ``price_band``, ``trigger_crossed``.
        """
        instrument = self.instrument
        if request.product not in _PRODUCTS[instrument.instrument_type]:
            allowed = " or ".join(_PRODUCTS[instrument.instrument_type])
            raise BrokerRejected(
                f"{instrument.key}: product {request.product} is not offered for "
                f"{instrument.instrument_type} instruments; use {allowed}",
                code="bad_product",
            )
        try:
            instrument.check_quantity(request.quantity)
            for price in (request.price, request.trigger_price):
                if price is not None:
                    instrument.check_price(price)
        except ValidationError as exc:
            raise BrokerRejected(exc.message, code=exc.code) from None
        freeze = instrument.freeze_quantity
        if freeze is not None and request.quantity > freeze:
            raise BrokerRejected(
                f"{instrument.key}: quantity {request.quantity} exceeds the freeze quantity "
                f"{freeze}",
                code="freeze_quantity",
            )
        for what, price in (("price", request.price), ("trigger price", request.trigger_price)):
            if price is not None and not self.in_band(price):
                raise BrokerRejected(
                    f"{instrument.key}: {what} {instrument.format(price)} is outside the price "
                    f"band {instrument.format(self.band_low)}-{instrument.format(self.band_high)}",
                    code="price_band",
                )
        trigger = request.trigger_price
        last = self.market.last
        if trigger is not None and (
            last >= trigger if request.side is Side.BUY else last <= trigger
        ):
            raise BrokerRejected(
                f"{instrument.key}: a {request.side} stop's trigger {instrument.format(trigger)} "
                f"has already been reached (last {instrument.format(last)})",
                code="trigger_crossed",
            )

    # Market data ------------------------------------------------------------------------------

    def snapshot(self, mode: StreamMode, timestamp_ns: int) -> Tick:
        """A tick of the book as it is now, carrying what ``mode`` asks for."""
        market = self.market
        if mode is StreamMode.LTP:
            return Tick(self.key, mode, market.last, timestamp_ns)
        bids = self.engine.depth(C.BUY, DEPTH_LEVELS)
        asks = self.engine.depth(C.SELL, DEPTH_LEVELS)
        shown = DEPTH_LEVELS if mode is StreamMode.FULL else 1
        previous: dict[tuple[int, int, int], DepthLevel] = self._levels
        current: dict[tuple[int, int, int], DepthLevel] = {}
        depth = Depth(
            self._depth_levels(bids[:shown], previous, current),
            self._depth_levels(asks[:shown], previous, current),
        )
        self._levels = current
        volume = market.volume
        return Tick(
            self.key,
            mode,
            market.last,
            timestamp_ns,
            last_quantity=market.last_quantity,
            volume=volume,
            average_price=market.value // volume if volume else None,
            total_buy_quantity=sum(level[1] for level in bids),
            total_sell_quantity=sum(level[1] for level in asks),
            ohlc=Ohlc(market.open, market.high, market.low, market.previous_close),
            depth=depth,
        )

    def _depth_levels(
        self,
        levels: Sequence[tuple[int, int, int]],
        previous: dict[tuple[int, int, int], DepthLevel],
        current: dict[tuple[int, int, int], DepthLevel],
    ) -> tuple[DepthLevel, ...]:
        out = []
        for level in levels:
            depth_level = previous.get(level)
            if depth_level is None:
                price, quantity, orders = level
                depth_level = DepthLevel(price * self.tick, quantity, orders)
            current[level] = depth_level
            out.append(depth_level)
        return tuple(out)


class Exchange:
    """Every book, and the routing of engine outcomes to their owners' handlers."""

    def __init__(
        self,
        listings: Sequence[Listing],
        engine_factory: Callable[[], MatchingEngine],
        band_bps: Callable[[Listing], int],
    ) -> None:
        self.books: Final[dict[str, Book]] = {
            listing.key: Book(listing, engine_factory(), band_bps(listing)) for listing in listings
        }
        self._handlers: dict[int, OrderHandler] = {}
        self._next_id = 0

    def __iter__(self) -> Iterator[Book]:
        return iter(self.books.values())

    def __len__(self) -> int:
        return len(self.books)

    def book(self, key: str) -> Book | None:
        return self.books.get(key)

    def register(self, owner: int, handler: OrderHandler) -> None:
        """Send the outcomes of ``owner``'s orders to ``handler``."""
        self._handlers[owner] = handler

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # Requests ---------------------------------------------------------------------------------

    def submit(
        self,
        book: Book,
        order_id: int,
        owner: int,
        side: int,
        price: int,
        quantity: int,
        order_type: int = C.LIMIT,
        time_in_force: int = C.GTC,
        stop_price: int = 0,
    ) -> None:
        tick = book.tick
        book.engine.submit(
            order_id,
            owner,
            side,
            price // tick,
            quantity,
            order_type,
            time_in_force,
            stop_price // tick,
        )
        self._dispatch(book)

    def cancel(self, book: Book, order_id: int) -> bool:
        done = book.engine.cancel(order_id)
        self._dispatch(book)
        return done

    def modify(self, book: Book, order_id: int, price: int, quantity: int) -> bool:
        done = book.engine.modify(order_id, price // book.tick, quantity)
        self._dispatch(book)
        return done

    def expire_day(self, book: Book) -> None:
        book.engine.expire_day()
        self._dispatch(book)

    def _dispatch(self, book: Book) -> None:
        engine = book.engine
        count = engine.event_count
        if not count:
            return
        book.dirty = True
        tick = book.tick
        market = book.market
        handlers = self._handlers
        for i in range(count):
            ev = engine.event(i)  # borrowed: valid until this engine's next call
            kind = ev.kind
            if kind == C.FILL:
                price = ev.price * tick
                quantity = ev.quantity
                market.trade(price, quantity)
                handlers[ev.owner](book, ev.order_id, kind, quantity, price, ev.remaining, 0)
                handlers[ev.maker_owner](
                    book, ev.maker_id, kind, quantity, price, ev.maker_remaining, 0
                )
            else:
                # A refused cancel or modify of an order the engine no longer has names no
                # owner (0): the caller learns of it from the call's return value.
                handler = handlers.get(ev.owner)
                if handler is not None:
                    handler(
                        book,
                        ev.order_id,
                        kind,
                        ev.quantity,
                        ev.price * tick,
                        ev.remaining,
                        ev.reason,
                    )
