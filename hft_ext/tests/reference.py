"""A slow, obviously correct model of the matching semantics in ``docs/matching.md``.

No clever structures: the book is one list of orders, re-sorted by priority whenever it is
read. The property tests drive it and the engine with the same calls and demand the same events
and the same book after every call.
"""

from __future__ import annotations

from dataclasses import dataclass

from hft_ext import (
    ACCEPTED,
    BUY,
    CANCEL_REQUESTED,
    CANCELLED,
    DAY,
    DUPLICATE_ORDER_ID,
    EXPIRED,
    FILL,
    FOK,
    FOK_UNFILLABLE,
    GTC,
    INVALID_ORDER_TYPE,
    INVALID_POST_ONLY,
    INVALID_QUANTITY,
    INVALID_SIDE,
    INVALID_TIME_IN_FORCE,
    IOC,
    IOC_REMAINDER,
    LIMIT,
    MARKET,
    MARKET_REMAINDER,
    MODIFIED,
    POST_ONLY_WOULD_CROSS,
    REJECTED,
    SELF_TRADE,
    SELL,
    STOP,
    STOP_LIMIT,
    STOP_NOT_MODIFIABLE,
    STP_ALLOW,
    STP_CANCEL_INCOMING,
    TRIGGERED,
    UNKNOWN_ORDER,
)

EventTuple = tuple[int, int, int, int, int, int, int, int, int, int, int, int]


@dataclass(eq=False)
class RefOrder:
    order_id: int
    owner: int
    side: int
    price: int
    quantity: int
    order_type: int
    tif: int
    stop_price: int
    post_only: bool
    seq: int


class ReferenceBook:
    def __init__(self, self_trade: int = STP_ALLOW) -> None:
        self.self_trade = self_trade
        self.resting: list[RefOrder] = []
        self.stops: list[RefOrder] = []
        self.seq = 0
        self.last: int | None = None
        self.trade_id = 0
        self.events: list[EventTuple] = []

    # Reading the book -------------------------------------------------------------------

    def side_queue(self, side: int) -> list[RefOrder]:
        """Resting orders of ``side`` in priority order."""
        orders = [o for o in self.resting if o.side == side]
        if side == BUY:
            return sorted(orders, key=lambda o: (-o.price, o.seq))
        return sorted(orders, key=lambda o: (o.price, o.seq))

    def queue(self, side: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
        levels: list[tuple[int, list[tuple[int, int, int]]]] = []
        for o in self.side_queue(side):
            if not levels or levels[-1][0] != o.price:
                levels.append((o.price, []))
            levels[-1][1].append((o.order_id, o.owner, o.quantity))
        return levels

    def stop_queue(self, side: int) -> list[RefOrder]:
        """Waiting stops of ``side`` in trigger order."""
        orders = [o for o in self.stops if o.side == side]
        if side == BUY:
            return sorted(orders, key=lambda o: (o.stop_price, o.seq))
        return sorted(orders, key=lambda o: (-o.stop_price, o.seq))

    def best(self, side: int) -> int | None:
        queue = self.side_queue(side)
        return queue[0].price if queue else None

    def find(self, order_id: int) -> RefOrder | None:
        for o in self.resting + self.stops:
            if o.order_id == order_id:
                return o
        return None

    def crosses(self, side: int, price: int) -> bool:
        best = self.best(SELL if side == BUY else BUY)
        if best is None:
            return False
        return best <= price if side == BUY else best >= price

    # Calls --------------------------------------------------------------------------------

    def submit(
        self,
        order_id: int,
        owner: int,
        side: int,
        price: int,
        quantity: int,
        order_type: int = LIMIT,
        tif: int = GTC,
        stop_price: int = 0,
        post_only: bool = False,
    ) -> list[EventTuple]:
        self.events = []
        reason = 0
        if quantity <= 0:
            reason = INVALID_QUANTITY
        elif side not in (BUY, SELL):
            reason = INVALID_SIDE
        elif order_type not in (LIMIT, MARKET, STOP, STOP_LIMIT):
            reason = INVALID_ORDER_TYPE
        elif tif not in (GTC, DAY, IOC, FOK):
            reason = INVALID_TIME_IN_FORCE
        elif post_only and (order_type != LIMIT or tif in (IOC, FOK)):
            reason = INVALID_POST_ONLY
        elif self.find(order_id) is not None:
            reason = DUPLICATE_ORDER_ID
        elif post_only and self.crosses(side, price):
            reason = POST_ONLY_WOULD_CROSS
        if reason:
            self.emit(REJECTED, order_id, owner, side, price, quantity, 0, reason=reason)
            return self.events
        if order_type in (MARKET, STOP):
            price = 0
        self.emit(ACCEPTED, order_id, owner, side, price, quantity, quantity)
        order = RefOrder(
            order_id, owner, side, price, quantity, order_type, tif, stop_price, post_only, 0
        )
        if order_type in (STOP, STOP_LIMIT):
            order.seq = self.next_seq()
            self.stops.append(order)
        else:
            self.enter(order)
        self.run_triggers()
        return self.events

    def cancel(self, order_id: int) -> list[EventTuple]:
        self.events = []
        o = self.find(order_id)
        if o is None:
            self.emit(REJECTED, order_id, 0, 0, 0, 0, 0, reason=UNKNOWN_ORDER)
            return self.events
        self.emit(CANCELLED, o.order_id, o.owner, o.side, o.price, o.quantity, 0, CANCEL_REQUESTED)
        self.drop(o)
        return self.events

    def modify(self, order_id: int, price: int, quantity: int) -> list[EventTuple]:
        self.events = []
        o = self.find(order_id)
        if o is None:
            self.emit(REJECTED, order_id, 0, 0, price, quantity, 0, reason=UNKNOWN_ORDER)
            return self.events
        reason = 0
        if o in self.stops:
            reason = STOP_NOT_MODIFIABLE
        elif quantity <= 0:
            reason = INVALID_QUANTITY
        elif o.post_only and self.crosses(o.side, price):
            reason = POST_ONLY_WOULD_CROSS
        if reason:
            self.emit(REJECTED, o.order_id, o.owner, o.side, price, quantity, o.quantity, reason)
            return self.events
        old = o.quantity
        self.emit(MODIFIED, o.order_id, o.owner, o.side, price, old, quantity)
        if price == o.price and quantity <= old:
            o.quantity = quantity
            return self.events
        self.drop(o)
        o.price = price
        o.quantity = quantity
        o.order_type = LIMIT
        self.enter(o)
        self.run_triggers()
        return self.events

    def expire_day(self) -> list[EventTuple]:
        self.events = []
        doomed = [
            o
            for o in self.side_queue(BUY)
            + self.side_queue(SELL)
            + self.stop_queue(BUY)
            + self.stop_queue(SELL)
            if o.tif == DAY
        ]
        for o in doomed:
            self.emit(CANCELLED, o.order_id, o.owner, o.side, o.price, o.quantity, 0, EXPIRED)
            self.drop(o)
        return self.events

    # Matching -----------------------------------------------------------------------------

    def enter(self, o: RefOrder) -> bool:
        """Match ``o`` and rest or cancel what is left; return whether anything traded."""
        is_market = o.order_type in (MARKET, STOP)
        opposite = self.side_queue(SELL if o.side == BUY else BUY)
        if o.tif == FOK and not self.fillable(o, opposite, is_market):
            self.emit(
                CANCELLED, o.order_id, o.owner, o.side, o.price, o.quantity, 0, FOK_UNFILLABLE
            )
            return False
        traded = False
        stopped_by_self_trade = False
        for m in opposite:
            if o.quantity == 0:
                break
            if not is_market and not self.price_ok(o, m.price):
                break
            if self.self_trade != STP_ALLOW and m.owner == o.owner:
                if self.self_trade == STP_CANCEL_INCOMING:
                    stopped_by_self_trade = True
                    break
                self.emit(
                    CANCELLED, m.order_id, m.owner, m.side, m.price, m.quantity, 0, SELF_TRADE
                )
                self.drop(m)
                continue
            qty = min(o.quantity, m.quantity)
            o.quantity -= qty
            m.quantity -= qty
            self.trade_id += 1
            self.last = m.price
            traded = True
            self.events.append(
                (
                    FILL,
                    o.order_id,
                    o.owner,
                    o.side,
                    m.price,
                    qty,
                    o.quantity,
                    m.order_id,
                    m.owner,
                    m.quantity,
                    0,
                    self.trade_id,
                )
            )
            if m.quantity == 0:
                self.drop(m)
        if o.quantity > 0:
            left = o.quantity
            if stopped_by_self_trade:
                self.emit(CANCELLED, o.order_id, o.owner, o.side, o.price, left, 0, SELF_TRADE)
            elif is_market:
                self.emit(
                    CANCELLED, o.order_id, o.owner, o.side, o.price, left, 0, MARKET_REMAINDER
                )
            elif o.tif in (IOC, FOK):
                self.emit(CANCELLED, o.order_id, o.owner, o.side, o.price, left, 0, IOC_REMAINDER)
            else:
                o.seq = self.next_seq()
                o.order_type = LIMIT
                self.resting.append(o)
        return traded

    def fillable(self, o: RefOrder, opposite: list[RefOrder], is_market: bool) -> bool:
        available = 0
        for m in opposite:
            if not is_market and not self.price_ok(o, m.price):
                break
            if self.self_trade != STP_ALLOW and m.owner == o.owner:
                if self.self_trade == STP_CANCEL_INCOMING:
                    break
                continue
            available += m.quantity
        return available >= o.quantity

    @staticmethod
    def price_ok(o: RefOrder, maker_price: int) -> bool:
        return maker_price <= o.price if o.side == BUY else maker_price >= o.price

    def run_triggers(self) -> None:
        """Trigger and enter stops until no trade triggers another."""
        pending: list[RefOrder] = []
        look = True  # after a new stop or a trade, look at the waiting stops
        while True:
            if look and self.last is not None:
                last = self.last
                fired = [o for o in self.stop_queue(BUY) if o.stop_price <= last]
                fired += [o for o in self.stop_queue(SELL) if o.stop_price >= last]
                for o in fired:
                    self.stops.remove(o)
                pending += fired
            if not pending:
                return
            o = pending.pop(0)
            self.emit(TRIGGERED, o.order_id, o.owner, o.side, o.stop_price, o.quantity, o.quantity)
            look = self.enter(o)

    # Helpers ------------------------------------------------------------------------------

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def drop(self, o: RefOrder) -> None:
        if o in self.stops:
            self.stops.remove(o)
        else:
            self.resting.remove(o)

    def emit(
        self,
        kind: int,
        order_id: int,
        owner: int,
        side: int,
        price: int,
        quantity: int,
        remaining: int,
        reason: int = 0,
    ) -> None:
        self.events.append(
            (kind, order_id, owner, side, price, quantity, remaining, 0, 0, 0, reason, 0)
        )
