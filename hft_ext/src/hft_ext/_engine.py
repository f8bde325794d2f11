"""The price-time matching engine: one order book for one instrument.

This is the hot module: mypyc compiles it when ``hft-ext`` is built with a C compiler, and the
same source runs interpreted otherwise. It is plain, strictly typed Python with no imports from
the rest of ``hft``, so :func:`hft_ext.load_engine` can also load it from source beside a
compiled build.

Why it looks the way it does: the benchmark calls the engine once per operation from Python, so
the hot path avoids allocating anything per operation.

- Integers are ``i64``: machine integers once compiled (no tag checks, no boxing inside the
  engine). Every id, owner, price and quantity must therefore fit in a signed 64-bit integer;
  the compiled build raises TypeError at the call for one that does not.
- Events are objects from a pool the engine owns and overwrites on the next call, not one new
  object per outcome; :meth:`Engine.take_events` hands them over to a caller that keeps them.
- Dead orders and empty levels go to free lists and are reused.
- Orders are found by id through an open-addressing table of order objects keyed by their own
  ``order_id`` field, because a ``dict[int, ...]`` lookup boxes the id into a new ``int`` object
  on every call once compiled.
- Each side's levels are a list sorted worst to best, so the best level is ``[-1]`` and removing
  it is ``pop()``; a level is found by price through a second open-addressing table.
- A level's queue is an intrusive doubly linked list, so cancelling from the middle is O(1) and a
  partly filled order keeps its place for free.

The semantics are specified in ``docs/matching.md``.
"""

from __future__ import annotations

from typing import Final, final

from mypy_extensions import i64

# Sides.
BUY: Final = 0
SELL: Final = 1

# Order types.
LIMIT: Final = 0
MARKET: Final = 1
STOP: Final = 2
STOP_LIMIT: Final = 3

# Time in force.
GTC: Final = 0
DAY: Final = 1
IOC: Final = 2
FOK: Final = 3

# Self-trade prevention modes.
STP_ALLOW: Final = 0
STP_CANCEL_RESTING: Final = 1
STP_CANCEL_INCOMING: Final = 2

# Event kinds.
ACCEPTED: Final = 1
REJECTED: Final = 2
FILL: Final = 3
CANCELLED: Final = 4
TRIGGERED: Final = 5
MODIFIED: Final = 6

# Reasons carried by REJECTED and CANCELLED events (0 on every other event).
NO_REASON: Final = 0
UNKNOWN_ORDER: Final = 1
DUPLICATE_ORDER_ID: Final = 2
INVALID_QUANTITY: Final = 3
INVALID_SIDE: Final = 4
INVALID_ORDER_TYPE: Final = 5
INVALID_TIME_IN_FORCE: Final = 6
POST_ONLY_WOULD_CROSS: Final = 7
INVALID_POST_ONLY: Final = 8
STOP_NOT_MODIFIABLE: Final = 9
CANCEL_REQUESTED: Final = 10
IOC_REMAINDER: Final = 11
FOK_UNFILLABLE: Final = 12
MARKET_REMAINDER: Final = 13
SELF_TRADE: Final = 14
EXPIRED: Final = 15

EVENT_KIND_NAMES: Final = ("", "accepted", "rejected", "fill", "cancelled", "triggered", "modified")
REASON_NAMES: Final = (
    "",
    "unknown_order",
    "duplicate_order_id",
    "invalid_quantity",
    "invalid_side",
    "invalid_order_type",
    "invalid_time_in_force",
    "post_only_would_cross",
    "invalid_post_only",
    "stop_not_modifiable",
    "cancel_requested",
    "ioc_remainder",
    "fok_unfillable",
    "market_remainder",
    "self_trade",
    "expired",
)

# Order.flags packs the time in force (bits 0-1), post-only (bit 2) and the order type (bits 3-4).
_TIF_MASK: Final = 3
_POST_ONLY_BIT: Final = 4
_TYPE_SHIFT: Final = 3

_MIN_TABLE: Final = 1024
_MIN_LEVEL_SLOTS: Final = 256
# Free lists stop growing here; past it dead objects are left to the allocator.
_MAX_FREE: Final = 1 << 16


@final
class Event:
    """One outcome of an engine call. Which fields mean what depends on ``kind``.

    ``order_id``, ``owner``, ``side`` are those of the order the event is about (the taker for a
    fill); ``remaining`` is that order's open quantity after the event. For a fill, ``price`` is
    the trade price, ``quantity`` the traded quantity, and the ``maker_*`` fields describe the
    resting order. ``reason`` is set on rejected and cancelled events. See ``docs/matching.md``.
    """

    kind: i64
    order_id: i64
    owner: i64
    side: i64
    price: i64
    quantity: i64
    remaining: i64
    maker_id: i64
    maker_owner: i64
    maker_remaining: i64
    reason: i64
    trade_id: i64

    def __init__(self) -> None:
        self.kind = 0
        self.order_id = 0
        self.owner = 0
        self.side = 0
        self.price = 0
        self.quantity = 0
        self.remaining = 0
        self.maker_id = 0
        self.maker_owner = 0
        self.maker_remaining = 0
        self.reason = 0
        self.trade_id = 0

    def copy(self) -> Event:
        """A detached copy (events read through :meth:`Engine.event` are reused)."""
        e = Event()
        e.kind = self.kind
        e.order_id = self.order_id
        e.owner = self.owner
        e.side = self.side
        e.price = self.price
        e.quantity = self.quantity
        e.remaining = self.remaining
        e.maker_id = self.maker_id
        e.maker_owner = self.maker_owner
        e.maker_remaining = self.maker_remaining
        e.reason = self.reason
        e.trade_id = self.trade_id
        return e

    @property
    def kind_name(self) -> str:
        return EVENT_KIND_NAMES[self.kind]

    @property
    def reason_name(self) -> str:
        return REASON_NAMES[self.reason]

    def as_tuple(self) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int]:
        """Every field, in declaration order (handy for comparisons in tests)."""
        return (
            self.kind,
            self.order_id,
            self.owner,
            self.side,
            self.price,
            self.quantity,
            self.remaining,
            self.maker_id,
            self.maker_owner,
            self.maker_remaining,
            self.reason,
            self.trade_id,
        )

    def __repr__(self) -> str:
        parts = [
            f"Event({self.kind_name}",
            f"order_id={self.order_id}",
            f"owner={self.owner}",
            f"side={self.side}",
            f"price={self.price}",
            f"quantity={self.quantity}",
            f"remaining={self.remaining}",
        ]
        if self.kind == FILL:
            parts.append(f"maker_id={self.maker_id}")
            parts.append(f"maker_owner={self.maker_owner}")
            parts.append(f"maker_remaining={self.maker_remaining}")
            parts.append(f"trade_id={self.trade_id}")
        if self.reason:
            parts.append(f"reason={self.reason_name}")
        return ", ".join(parts) + ")"


@final
class OrderInfo:
    """A copy of one live order's state, as :meth:`Engine.order` reports it."""

    order_id: i64
    owner: i64
    side: i64
    price: i64
    remaining: i64
    order_type: i64
    time_in_force: i64
    stop_price: i64
    post_only: bool
    resting: bool  # False for a stop order still waiting for its trigger

    def __init__(
        self,
        order_id: i64,
        owner: i64,
        side: i64,
        price: i64,
        remaining: i64,
        order_type: i64,
        time_in_force: i64,
        stop_price: i64,
        post_only: bool,
        resting: bool,
    ) -> None:
        self.order_id = order_id
        self.owner = owner
        self.side = side
        self.price = price
        self.remaining = remaining
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.stop_price = stop_price
        self.post_only = post_only
        self.resting = resting

    def __repr__(self) -> str:
        return (
            f"OrderInfo(order_id={self.order_id}, owner={self.owner}, side={self.side}, "
            f"price={self.price}, remaining={self.remaining}, order_type={self.order_type}, "
            f"time_in_force={self.time_in_force}, stop_price={self.stop_price}, "
            f"post_only={self.post_only}, resting={self.resting})"
        )


@final
class _Order:
    """A live order: resting in a level's queue, or a stop waiting for its trigger."""

    order_id: i64
    owner: i64
    side: i64
    price: i64
    remaining: i64
    stop_price: i64
    flags: i64
    prev: _Order | None
    next: _Order | None
    level: _Level | None

    def __init__(self) -> None:
        self.order_id = 0
        self.owner = 0
        self.side = 0
        self.price = 0
        self.remaining = 0
        self.stop_price = 0
        self.flags = 0
        self.prev = None
        self.next = None
        self.level = None


@final
class _Level:
    """The FIFO queue of resting orders at one price on one side."""

    price: i64
    total: i64
    count: i64
    head: _Order | None
    tail: _Order | None

    def __init__(self) -> None:
        self.price = 0
        self.total = 0
        self.count = 0
        self.head = None
        self.tail = None


def _slot(order_id: i64, mask: i64) -> i64:
    # Multiplicative hashing scatters consecutive ids, which would otherwise fill runs of
    # consecutive slots and make linear probing slow. The product stays below 2**57, so it never
    # overflows and both builds place orders in the same slots.
    h = (order_id ^ (order_id >> 29)) & 0x1FFFFFFF
    return ((h * 0x9E3779B) >> 16) & mask


@final
class _Side:
    """One side of the book: its levels sorted worst to best, and an index of them by price.

    The index is open addressing keyed by the level's own price (prices near the touch are
    consecutive integers, so the price itself is a collision-free hash over a window).
    """

    is_bid: bool
    levels: list[_Level]
    slots: list[_Level | None]
    mask: i64

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels = []
        self.slots = [None] * _MIN_LEVEL_SLOTS
        self.mask = _MIN_LEVEL_SLOTS - 1

    def find(self, price: i64) -> _Level | None:
        slots = self.slots
        mask = self.mask
        i = price & mask
        while True:
            lv = slots[i]
            if lv is None or lv.price == price:
                return lv
            i = (i + 1) & mask

    def add(self, lv: _Level) -> None:
        """Index a new level and insert it in price order."""
        levels = self.levels
        n = len(levels)
        if (n + 1) * 2 > len(self.slots):
            self._grow()
        slots = self.slots
        mask = self.mask
        i = lv.price & mask
        while slots[i] is not None:
            i = (i + 1) & mask
        slots[i] = lv
        price = lv.price
        key = price if self.is_bid else -price
        lo = 0
        hi = n
        # New levels are mostly near the touch, at the end of the list.
        if n > 0:
            p = levels[n - 1].price
            if (p if self.is_bid else -p) < key:
                levels.append(lv)
                return
        while lo < hi:
            mid = (lo + hi) >> 1
            p = levels[mid].price
            if (p if self.is_bid else -p) < key:
                lo = mid + 1
            else:
                hi = mid
        levels.insert(lo, lv)

    def remove(self, lv: _Level) -> None:
        """Drop an empty level from the index and from the price order."""
        self._unindex(lv)
        levels = self.levels
        n = len(levels)
        if levels[n - 1] is lv:
            levels.pop()
            return
        price = lv.price
        key = price if self.is_bid else -price
        lo = 0
        hi = n
        while lo < hi:
            mid = (lo + hi) >> 1
            p = levels[mid].price
            if (p if self.is_bid else -p) < key:
                lo = mid + 1
            else:
                hi = mid
        del levels[lo]

    def remove_best(self, lv: _Level) -> None:
        """Drop the best level, which ``lv`` is and which has just emptied."""
        self.levels.pop()
        self._unindex(lv)

    def _unindex(self, lv: _Level) -> None:
        slots = self.slots
        mask = self.mask
        i = lv.price & mask
        while slots[i] is not lv:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            nxt = slots[j]
            if nxt is None:
                break
            home = nxt.price & mask
            # nxt may move back to the hole at i unless its home lies cyclically in (i, j].
            if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
                slots[i] = nxt
                i = j
        slots[i] = None

    def _grow(self) -> None:
        size = len(self.slots) * 2
        slots: list[_Level | None] = [None] * size
        mask = size - 1
        for lv in self.levels:
            i = lv.price & mask
            while slots[i] is not None:
                i = (i + 1) & mask
            slots[i] = lv
        self.slots = slots
        self.mask = mask


@final
class Engine:
    """A price-time priority order book for one instrument.

    Prices are integer ticks and quantities positive integers. Every public call that changes
    the book first clears the event buffer, then records its outcomes there; read them with
    :meth:`take_events` (handed over to the caller) or :meth:`event` (borrowed, overwritten by
    the next call). Bad requests never raise: they produce a REJECTED event.
    """

    n_fills: i64
    filled_qty: i64

    def __init__(self, self_trade: i64 = STP_ALLOW) -> None:
        if self_trade < STP_ALLOW or self_trade > STP_CANCEL_INCOMING:
            raise ValueError(f"unknown self-trade prevention mode {self_trade}")
        self._stp: i64 = self_trade
        self._bids = _Side(True)
        self._asks = _Side(False)
        self._table: list[_Order | None] = [None] * _MIN_TABLE
        self._mask: i64 = _MIN_TABLE - 1
        self._live: i64 = 0  # orders in the table: resting plus waiting stops
        self._resting: i64 = 0
        self._buy_stops: list[_Order] = []  # descending stop price: next to trigger last
        self._sell_stops: list[_Order] = []  # ascending stop price: next to trigger last
        self._pending: list[_Order] = []  # triggered stops not yet entered
        self._pool: list[Event] = []
        self._n: i64 = 0
        self._free_order: _Order | None = None
        self._n_free_orders: i64 = 0
        self._free_levels: list[_Level] = []
        self._last: i64 = 0
        self._has_last = False
        self._traded = False  # set by _match; tells the caller to look at the stops
        self._trade_id: i64 = 0
        self.n_fills = 0
        self.filled_qty = 0

    # Queries ------------------------------------------------------------------------------

    @property
    def self_trade(self) -> i64:
        return self._stp

    @property
    def live_orders(self) -> i64:
        """Orders resting in the book (waiting stops are not counted)."""
        return self._resting

    @property
    def waiting_stops(self) -> i64:
        return self._live - self._resting

    @property
    def event_count(self) -> i64:
        """How many events the last call produced (and :meth:`take_events` has not taken)."""
        return self._n

    def event(self, index: int) -> Event:
        """Event ``index`` of the last call, borrowed: the engine overwrites it on its next call."""
        if index < 0 or index >= self._n:
            raise IndexError(f"event index {index} out of range ({self._n} events)")
        return self._pool[index]

    def take_events(self) -> list[Event]:
        """The last call's events, handed over: the engine will not touch them again."""
        n = self._n
        pool = self._pool
        taken = pool[:n]
        del pool[:n]
        self._n = 0
        return taken

    def best_bid(self) -> int | None:
        levels = self._bids.levels
        return levels[-1].price if levels else None

    def best_ask(self) -> int | None:
        levels = self._asks.levels
        return levels[-1].price if levels else None

    def last_trade_price(self) -> int | None:
        return self._last if self._has_last else None

    def depth(self, side: int, levels: int) -> list[tuple[int, int, int]]:
        """Top ``levels`` price levels of ``side``, best first, as ``(price, quantity, orders)``."""
        book = (self._bids if side == BUY else self._asks).levels
        out: list[tuple[int, int, int]] = []
        i = len(book) - 1
        while i >= 0 and len(out) < levels:
            lv = book[i]
            out.append((lv.price, lv.total, lv.count))
            i -= 1
        return out

    def queue(self, side: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
        """L3: each level of ``side``, best first: ``(price, [(order_id, owner, remaining)])``."""
        book = (self._bids if side == BUY else self._asks).levels
        out: list[tuple[int, list[tuple[int, int, int]]]] = []
        i = len(book) - 1
        while i >= 0:
            lv = book[i]
            orders: list[tuple[int, int, int]] = []
            o = lv.head
            while o is not None:
                orders.append((o.order_id, o.owner, o.remaining))
                o = o.next
            out.append((lv.price, orders))
            i -= 1
        return out

    def stops(self, side: int) -> list[tuple[int, int, int]]:
        """Waiting stops of ``side`` in trigger order, as ``(order_id, stop_price, quantity)``."""
        lst = self._buy_stops if side == BUY else self._sell_stops
        out: list[tuple[int, int, int]] = []
        i = len(lst) - 1
        while i >= 0:
            o = lst[i]
            out.append((o.order_id, o.stop_price, o.remaining))
            i -= 1
        return out

    def order(self, order_id: i64) -> OrderInfo | None:
        """A copy of the live order ``order_id``, or ``None`` when no live order has that id."""
        o = self._find(order_id)
        if o is None:
            return None
        return OrderInfo(
            o.order_id,
            o.owner,
            o.side,
            o.price,
            o.remaining,
            o.flags >> _TYPE_SHIFT,
            o.flags & _TIF_MASK,
            o.stop_price,
            (o.flags & _POST_ONLY_BIT) != 0,
            o.level is not None,
        )

    # Requests -----------------------------------------------------------------------------

    def submit(
        self,
        order_id: i64,
        owner: i64,
        side: i64,
        price: i64,
        quantity: i64,
        order_type: i64 = LIMIT,
        time_in_force: i64 = GTC,
        stop_price: i64 = 0,
        post_only: bool = False,
    ) -> None:
        """Enter a new order; its outcomes become this call's events."""
        self._n = 0
        reason = NO_REASON
        if quantity <= 0:
            reason = INVALID_QUANTITY
        elif side != BUY and side != SELL:
            reason = INVALID_SIDE
        elif order_type < LIMIT or order_type > STOP_LIMIT:
            reason = INVALID_ORDER_TYPE
        elif time_in_force < GTC or time_in_force > FOK:
            reason = INVALID_TIME_IN_FORCE
        elif post_only and (order_type != LIMIT or time_in_force >= IOC):
            reason = INVALID_POST_ONLY
        elif self._find(order_id) is not None:
            reason = DUPLICATE_ORDER_ID
        elif post_only and self._crosses(side, price):
            reason = POST_ONLY_WOULD_CROSS
        if reason != NO_REASON:
            self._event(REJECTED, order_id, owner, side, price, quantity, 0, reason)
            return
        if order_type in (MARKET, STOP):
            price = 0
        self._event(ACCEPTED, order_id, owner, side, price, quantity, quantity, NO_REASON)
        flags = time_in_force | (_POST_ONLY_BIT if post_only else 0) | (order_type << _TYPE_SHIFT)
        if order_type in (STOP, STOP_LIMIT):
            o = self._new_order(order_id, owner, side, price, quantity, flags)
            o.stop_price = stop_price
            self._insert(o)
            self._park_stop(o)
            if self._has_last:
                self._collect_triggers()
                self._run_triggers()
            return
        self._enter(
            order_id, owner, side, price, quantity, order_type == MARKET, time_in_force, flags
        )
        if self._traded:
            self._run_triggers()

    def cancel(self, order_id: i64) -> bool:
        """Cancel a live order, resting or waiting; False, with a REJECTED event, if none."""
        self._n = 0
        o = self._find(order_id)
        if o is None:
            self._event(REJECTED, order_id, 0, 0, 0, 0, 0, UNKNOWN_ORDER)
            return False
        self._event(
            CANCELLED, o.order_id, o.owner, o.side, o.price, o.remaining, 0, CANCEL_REQUESTED
        )
        if o.level is not None:
            self._unlink(o)
        else:
            self._unpark_stop(o)
        self._remove(o)
        return True

    def modify(self, order_id: i64, price: i64, quantity: i64) -> bool:
        """Set a resting order's price and open quantity; False, with a REJECTED event, if refused.

        The same price and a smaller quantity keep the order's place in its queue; any other
        change moves it to the back of the queue at ``price``, where it may trade first.
        """
        self._n = 0
        o = self._find(order_id)
        if o is None:
            self._event(REJECTED, order_id, 0, 0, price, quantity, 0, UNKNOWN_ORDER)
            return False
        reason = NO_REASON
        if o.level is None:
            reason = STOP_NOT_MODIFIABLE
        elif quantity <= 0:
            reason = INVALID_QUANTITY
        elif (o.flags & _POST_ONLY_BIT) != 0 and self._crosses(o.side, price):
            reason = POST_ONLY_WOULD_CROSS
        if reason != NO_REASON:
            self._event(REJECTED, o.order_id, o.owner, o.side, price, quantity, o.remaining, reason)
            return False
        lv = o.level
        assert lv is not None
        old = o.remaining
        if price == o.price and quantity <= old:
            o.remaining = quantity
            lv.total -= old - quantity
            self._event(MODIFIED, o.order_id, o.owner, o.side, price, old, quantity, NO_REASON)
            return True
        self._event(MODIFIED, o.order_id, o.owner, o.side, price, old, quantity, NO_REASON)
        order_id = o.order_id
        owner = o.owner
        side = o.side
        flags = o.flags
        self._unlink(o)
        self._remove(o)
        self._enter(order_id, owner, side, price, quantity, False, flags & _TIF_MASK, flags)
        if self._traded:
            self._run_triggers()
        return True

    def expire_day(self) -> i64:
        """End the trading day: cancel every DAY order, resting or waiting, with reason EXPIRED.

        Bids go first, then asks, each best level first and in queue order; then waiting buy
        stops, then sell stops, each in trigger order. Returns how many were cancelled.
        """
        self._n = 0
        doomed: list[_Order] = []
        for sd in (self._bids, self._asks):
            levels = sd.levels
            i = len(levels) - 1
            while i >= 0:
                o = levels[i].head
                while o is not None:
                    if (o.flags & _TIF_MASK) == DAY:
                        doomed.append(o)
                    o = o.next
                i -= 1
        for stops in (self._buy_stops, self._sell_stops):
            i = len(stops) - 1
            while i >= 0:
                if (stops[i].flags & _TIF_MASK) == DAY:
                    doomed.append(stops[i])
                i -= 1
        for o in doomed:
            self._event(CANCELLED, o.order_id, o.owner, o.side, o.price, o.remaining, 0, EXPIRED)
            if o.level is not None:
                self._unlink(o)
            else:
                self._unpark_stop(o)
            self._remove(o)
        return len(doomed)

    # Matching -----------------------------------------------------------------------------

    def _crosses(self, side: i64, price: i64) -> bool:
        if side == BUY:
            asks = self._asks.levels
            return len(asks) > 0 and asks[-1].price <= price
        bids = self._bids.levels
        return len(bids) > 0 and bids[-1].price >= price

    def _enter(
        self,
        order_id: i64,
        owner: i64,
        side: i64,
        price: i64,
        quantity: i64,
        is_market: bool,
        tif: i64,
        flags: i64,
    ) -> None:
        """Match an accepted order, then rest or cancel what is left of it."""
        self._traded = False
        if tif == FOK and not self._fillable(owner, side, price, quantity, is_market):
            self._event(CANCELLED, order_id, owner, side, price, quantity, 0, FOK_UNFILLABLE)
            return
        rem = self._match(order_id, owner, side, price, quantity, is_market)
        if rem == 0:
            return
        if rem < 0:  # self-trade prevention stopped the order
            self._event(CANCELLED, order_id, owner, side, price, -rem, 0, SELF_TRADE)
        elif is_market:
            self._event(CANCELLED, order_id, owner, side, price, rem, 0, MARKET_REMAINDER)
        elif tif >= IOC:
            self._event(CANCELLED, order_id, owner, side, price, rem, 0, IOC_REMAINDER)
        else:
            o = self._new_order(order_id, owner, side, price, rem, flags & ~(3 << _TYPE_SHIFT))
            self._insert(o)
            self._rest(o)

    def _match(
        self, order_id: i64, owner: i64, side: i64, price: i64, quantity: i64, is_market: bool
    ) -> i64:
        """Trade ``quantity`` against the opposite side; return what is left.

        A negative result ``-q`` means self-trade prevention cancelled the incoming order with
        ``q`` left.
        """
        sd = self._asks if side == BUY else self._bids
        book = sd.levels
        stp = self._stp
        rem = quantity
        while rem > 0 and len(book) > 0:
            lv = book[-1]
            lp = lv.price
            if not is_market and (lp > price if side == BUY else lp < price):
                break
            m = lv.head
            while m is not None and rem > 0:
                nxt = m.next
                if stp != STP_ALLOW and m.owner == owner:
                    if stp == STP_CANCEL_INCOMING:
                        return -rem
                    self._event(
                        CANCELLED, m.order_id, m.owner, m.side, lp, m.remaining, 0, SELF_TRADE
                    )
                    self._unlink_in_match(m, lv)
                    self._remove(m)
                    m = nxt
                    continue
                q = m.remaining
                f = q if q < rem else rem
                rem -= f
                q -= f
                m.remaining = q
                lv.total -= f
                self._last = lp
                self._has_last = True
                self._traded = True
                self._trade_id += 1
                self.n_fills += 1
                self.filled_qty += f
                ev = self._next_event()
                ev.kind = FILL
                ev.order_id = order_id
                ev.owner = owner
                ev.side = side
                ev.price = lp
                ev.quantity = f
                ev.remaining = rem
                ev.maker_id = m.order_id
                ev.maker_owner = m.owner
                ev.maker_remaining = q
                ev.reason = NO_REASON
                ev.trade_id = self._trade_id
                if q == 0:
                    self._unlink_in_match(m, lv)
                    self._remove(m)
                m = nxt
            if lv.head is None:
                sd.remove_best(lv)
                self._free_level(lv)
        return rem

    def _fillable(self, owner: i64, side: i64, price: i64, quantity: i64, is_market: bool) -> bool:
        """Whether a FOK order would fill completely, counting what self-trade prevention allows."""
        book = (self._asks if side == BUY else self._bids).levels
        stp = self._stp
        need = quantity
        i = len(book) - 1
        while i >= 0:
            lv = book[i]
            lp = lv.price
            if not is_market and (lp > price if side == BUY else lp < price):
                return False
            if stp == STP_ALLOW:
                need -= lv.total
                if need <= 0:
                    return True
            else:
                m = lv.head
                while m is not None:
                    if m.owner == owner:
                        if stp == STP_CANCEL_INCOMING:
                            return False
                    else:
                        need -= m.remaining
                        if need <= 0:
                            return True
                    m = m.next
            i -= 1
        return False

    # Stops --------------------------------------------------------------------------------

    def _park_stop(self, o: _Order) -> None:
        if o.side == BUY:
            stops = self._buy_stops
            key = -o.stop_price
        else:
            stops = self._sell_stops
            key = o.stop_price
        # Binary search for the first stop whose key is >= key: the new stop goes before the
        # stops at the same price, which are older and so trigger first (from the end).
        lo = 0
        hi = len(stops)
        while lo < hi:
            mid = (lo + hi) >> 1
            s = stops[mid]
            k = -s.stop_price if o.side == BUY else s.stop_price
            if k < key:
                lo = mid + 1
            else:
                hi = mid
        stops.insert(lo, o)

    def _unpark_stop(self, o: _Order) -> None:
        stops = self._buy_stops if o.side == BUY else self._sell_stops
        i = len(stops) - 1
        while i >= 0:
            if stops[i] is o:
                del stops[i]
                return
            i -= 1

    def _collect_triggers(self) -> None:
        last = self._last
        pending = self._pending
        buys = self._buy_stops
        while len(buys) > 0 and buys[-1].stop_price <= last:
            pending.append(buys.pop())
        sells = self._sell_stops
        while len(sells) > 0 and sells[-1].stop_price >= last:
            pending.append(sells.pop())

    def _run_triggers(self) -> None:
        """Enter triggered stops one by one until no trade triggers another."""
        pending = self._pending
        i = 0
        while True:
            if self._traded:
                self._traded = False
                self._collect_triggers()
            if i >= len(pending):
                break
            o = pending[i]
            i += 1
            order_id = o.order_id
            owner = o.owner
            side = o.side
            price = o.price
            quantity = o.remaining
            flags = o.flags
            self._event(
                TRIGGERED, order_id, owner, side, o.stop_price, quantity, quantity, NO_REASON
            )
            self._remove(o)
            order_type = flags >> _TYPE_SHIFT
            self._enter(
                order_id,
                owner,
                side,
                price,
                quantity,
                order_type == STOP,
                flags & _TIF_MASK,
                flags,
            )
        pending.clear()
        self._traded = False

    # Book structure -----------------------------------------------------------------------

    def _rest(self, o: _Order) -> None:
        """Append ``o`` to the queue at its price, creating the level if needed."""
        sd = self._bids if o.side == BUY else self._asks
        lv = sd.find(o.price)
        if lv is None:
            lv = self._new_level(o.price)
            sd.add(lv)
        tail = lv.tail
        o.prev = tail
        o.next = None
        if tail is None:
            lv.head = o
        else:
            tail.next = o
        lv.tail = o
        lv.total += o.remaining
        lv.count += 1
        o.level = lv
        self._resting += 1

    def _unlink_in_match(self, o: _Order, lv: _Level) -> None:
        """Take ``o`` out of its queue during matching; the caller drops the level once empty."""
        prev = o.prev
        nxt = o.next
        if prev is None:
            lv.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            lv.tail = prev
        else:
            nxt.prev = prev
        lv.total -= o.remaining
        lv.count -= 1
        o.level = None
        o.prev = None
        o.next = None
        self._resting -= 1

    def _unlink(self, o: _Order) -> None:
        """Take ``o`` out of its queue, dropping the level if it empties."""
        lv = o.level
        assert lv is not None
        self._unlink_in_match(o, lv)
        if lv.head is None:
            (self._bids if o.side == BUY else self._asks).remove(lv)
            self._free_level(lv)

    def _new_level(self, price: i64) -> _Level:
        free = self._free_levels
        lv = free.pop() if len(free) > 0 else _Level()
        lv.price = price
        lv.total = 0
        lv.count = 0
        lv.head = None
        lv.tail = None
        return lv

    def _free_level(self, lv: _Level) -> None:
        if len(self._free_levels) < _MAX_FREE:
            self._free_levels.append(lv)

    def _new_order(
        self, order_id: i64, owner: i64, side: i64, price: i64, remaining: i64, flags: i64
    ) -> _Order:
        o = self._free_order
        if o is None:
            o = _Order()
        else:
            self._free_order = o.next
            self._n_free_orders -= 1
            o.next = None
        o.order_id = order_id
        o.owner = owner
        o.side = side
        o.price = price
        o.remaining = remaining
        o.stop_price = 0
        o.flags = flags
        return o

    # Order table: open addressing with linear probing over order objects ------------------

    def _find(self, order_id: i64) -> _Order | None:
        table = self._table
        mask = self._mask
        i = _slot(order_id, mask)
        while True:
            o = table[i]
            if o is None or o.order_id == order_id:
                return o
            i = (i + 1) & mask

    def _insert(self, o: _Order) -> None:
        if (self._live + 1) * 2 > len(self._table):
            self._grow()
        table = self._table
        mask = self._mask
        i = _slot(o.order_id, mask)
        while table[i] is not None:
            i = (i + 1) & mask
        table[i] = o
        self._live += 1

    def _remove(self, o: _Order) -> None:
        """Drop ``o`` from the table (backward-shift deletion, no tombstones) and recycle it."""
        table = self._table
        mask = self._mask
        i = _slot(o.order_id, mask)
        while table[i] is not o:
            i = (i + 1) & mask
        j = i
        while True:
            j = (j + 1) & mask
            nxt = table[j]
            if nxt is None:
                break
            home = _slot(nxt.order_id, mask)
            # nxt may move back to the hole at i unless its home lies cyclically in (i, j].
            if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
                table[i] = nxt
                i = j
        table[i] = None
        self._live -= 1
        if self._n_free_orders < _MAX_FREE:
            o.next = self._free_order
            o.prev = None
            o.level = None
            self._free_order = o
            self._n_free_orders += 1

    def _grow(self) -> None:
        old = self._table
        size = len(old) * 2
        table: list[_Order | None] = [None] * size
        mask = size - 1
        for o in old:
            if o is not None:
                i = _slot(o.order_id, mask)
                while table[i] is not None:
                    i = (i + 1) & mask
                table[i] = o
        self._table = table
        self._mask = mask

    # Events -------------------------------------------------------------------------------

    def _next_event(self) -> Event:
        n = self._n
        pool = self._pool
        if n == len(pool):
            pool.append(Event())
        self._n = n + 1
        return pool[n]

    def _event(
        self,
        kind: i64,
        order_id: i64,
        owner: i64,
        side: i64,
        price: i64,
        quantity: i64,
        remaining: i64,
        reason: i64,
    ) -> None:
        ev = self._next_event()
        ev.kind = kind
        ev.order_id = order_id
        ev.owner = owner
        ev.side = side
        ev.price = price
        ev.quantity = quantity
        ev.remaining = remaining
        ev.maker_id = 0
        ev.maker_owner = 0
        ev.maker_remaining = 0
        ev.reason = reason
        ev.trade_id = 0
