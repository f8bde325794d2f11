"""Property tests: the engine against the reference model, with invariants after every call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import ReferenceBook

from hft_ext import (
    ACCEPTED,
    BUY,
    CANCELLED,
    DAY,
    FILL,
    FOK,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    MODIFIED,
    SELL,
    STOP,
    STOP_LIMIT,
    STP_ALLOW,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    Engine,
)

OWNERS = st.integers(min_value=1, max_value=3)
PRICES = st.integers(min_value=95, max_value=105)
QUANTITIES = st.integers(min_value=1, max_value=12)


@dataclass
class Submit:
    order_id: int
    owner: int
    side: int
    price: int
    quantity: int
    order_type: int
    tif: int
    stop_price: int
    post_only: bool


@dataclass
class Cancel:
    order_id: int


@dataclass
class Modify:
    order_id: int
    price: int
    quantity: int


@dataclass
class ExpireDay:
    pass


Call = Submit | Cancel | Modify | ExpireDay


@st.composite
def scripts(draw: st.DrawFn) -> list[Call]:
    """A sequence of calls: mostly plain limit orders, with every other kind of call mixed in.

    New orders take fresh ids (now and then a live one, to be rejected as a duplicate); cancels
    and modifies name ids seen before, so they hit live and dead orders alike.
    """
    n = draw(st.integers(min_value=1, max_value=120))
    script: list[Call] = []
    next_id = 1
    for _ in range(n):
        choice = draw(st.integers(0, 19))
        if choice < 14 or next_id == 1:
            duplicate = next_id > 1 and draw(st.integers(0, 29)) == 0
            order_id = draw(st.integers(1, next_id - 1)) if duplicate else next_id
            next_id += 0 if duplicate else 1
            plain = choice < 9
            script.append(
                Submit(
                    order_id=order_id,
                    owner=draw(OWNERS),
                    side=draw(st.sampled_from([BUY, SELL])),
                    price=draw(PRICES),
                    quantity=draw(QUANTITIES)
                    if draw(st.integers(0, 24))
                    else draw(st.sampled_from([0, -1])),
                    order_type=LIMIT
                    if plain
                    else draw(st.sampled_from([LIMIT, MARKET, STOP, STOP_LIMIT])),
                    tif=GTC if plain else draw(st.sampled_from([GTC, DAY, DAY, IOC, FOK])),
                    stop_price=draw(PRICES),
                    post_only=not plain and draw(st.integers(0, 4)) == 0,
                )
            )
        elif choice < 16:
            script.append(Cancel(draw(st.integers(1, next_id))))
        elif choice < 19:
            script.append(
                Modify(draw(st.integers(1, next_id)), draw(PRICES), draw(st.integers(-1, 12)))
            )
        else:
            script.append(ExpireDay())
    return script


modes = st.sampled_from([STP_ALLOW, STP_CANCEL_RESTING, STP_CANCEL_INCOMING])

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def apply(engine: Engine, model: ReferenceBook, call: Call) -> tuple[Any, list[Any], Any]:
    """Make the same call on both; return (engine result, model events, call)."""
    if isinstance(call, Submit):
        args = (
            call.order_id,
            call.owner,
            call.side,
            call.price,
            call.quantity,
            call.order_type,
            call.tif,
            call.stop_price,
            call.post_only,
        )
        engine.submit(*args)
        result: Any = None
        expected = model.submit(*args)
    elif isinstance(call, Cancel):
        result = engine.cancel(call.order_id)
        expected = model.cancel(call.order_id)
    elif isinstance(call, Modify):
        result = engine.modify(call.order_id, call.price, call.quantity)
        expected = model.modify(call.order_id, call.price, call.quantity)
    else:
        result = engine.expire_day()
        expected = model.expire_day()
    return result, expected, call


class Ledger:
    """Each order's open quantity, rebuilt from events alone (conservation of quantity)."""

    def __init__(self) -> None:
        self.open: dict[int, int] = {}

    def apply(self, events: Sequence[tuple[int, ...]]) -> None:
        for (
            kind,
            order_id,
            _o,
            _s,
            _p,
            quantity,
            remaining,
            maker_id,
            _mo,
            maker_rem,
            _r,
            _t,
        ) in events:
            if kind == ACCEPTED:
                assert order_id not in self.open
                self.open[order_id] = quantity
            elif kind == FILL:
                assert 0 < quantity <= self.open[order_id]
                assert quantity <= self.open[maker_id]
                self.open[order_id] -= quantity
                self.open[maker_id] -= quantity
                assert self.open[order_id] == remaining
                assert self.open[maker_id] == maker_rem
                if maker_rem == 0:
                    del self.open[maker_id]
                if remaining == 0:
                    del self.open[order_id]
            elif kind == CANCELLED:
                assert self.open.pop(order_id) == quantity
            elif kind == MODIFIED:
                assert self.open[order_id] == quantity
                self.open[order_id] = remaining


def check_invariants(engine: Engine, model: ReferenceBook, ledger: Ledger) -> None:
    bid, ask = engine.best_bid(), engine.best_ask()
    assert bid is None or ask is None or bid < ask, "book crossed after matching"
    seq = {o.order_id: o.seq for o in model.resting}
    resting_total = 0
    resting_ids: set[int] = set()
    for side in (BUY, SELL):
        levels = engine.queue(side)
        prices = [price for price, _ in levels]
        assert prices == sorted(prices, reverse=side == BUY), "levels out of price order"
        depth = engine.depth(side, len(levels) + 1)
        for (price, orders), (d_price, d_qty, d_count) in zip(levels, depth, strict=True):
            assert orders, "empty level left in the book"
            assert (price, sum(q for _, _, q in orders), len(orders)) == (d_price, d_qty, d_count)
            arrival = [seq[order_id] for order_id, _, _ in orders]
            assert arrival == sorted(arrival), "queue not FIFO within its level"
            for order_id, _owner, remaining in orders:
                assert ledger.open[order_id] == remaining, "quantity not conserved"
                resting_total += remaining
                resting_ids.add(order_id)
    waiting = {order_id for side in (BUY, SELL) for order_id, _, _ in engine.stops(side)}
    assert set(ledger.open) == resting_ids | waiting, "live orders differ from the event ledger"
    assert engine.live_orders == len(resting_ids)
    assert resting_total == sum(ledger.open[i] for i in resting_ids)


def compare(engine: Engine, model: ReferenceBook) -> None:
    for side in (BUY, SELL):
        assert engine.queue(side) == model.queue(side)
        assert engine.stops(side) == [
            (o.order_id, o.stop_price, o.quantity) for o in model.stop_queue(side)
        ]
    assert engine.best_bid() == model.best(BUY)
    assert engine.best_ask() == model.best(SELL)
    assert engine.last_trade_price() == model.last


@PROPERTY_SETTINGS
@given(mode=modes, script=scripts())
def test_engine_matches_reference(
    engine_class: type[Engine], mode: int, script: list[Call]
) -> None:
    engine = engine_class(mode)
    model = ReferenceBook(mode)
    ledger = Ledger()
    fills = 0
    filled = 0
    for call in script:
        result, expected, _ = apply(engine, model, call)
        events = [e.as_tuple() for e in engine.take_events()]
        assert events == expected, call
        ledger.apply(events)
        fills += sum(1 for e in events if e[0] == FILL)
        filled += sum(e[5] for e in events if e[0] == FILL)
        if isinstance(call, Cancel | Modify):
            assert result == (events[0][0] != 2), "return value disagrees with the events"
        compare(engine, model)
        check_invariants(engine, model, ledger)
    assert (engine.n_fills, engine.filled_qty) == (fills, filled)


@PROPERTY_SETTINGS
@given(script=scripts())
def test_builds_agree(engine_class: type[Engine], script: list[Call]) -> None:
    """Whichever build runs, the borrowed-event path and the taken-event path agree."""
    engine = engine_class(STP_CANCEL_RESTING)
    model = ReferenceBook(STP_CANCEL_RESTING)
    for call in script:
        _, expected, _ = apply(engine, model, call)
        borrowed = [engine.event(i).as_tuple() for i in range(engine.event_count)]
        assert borrowed == expected
        taken = engine.take_events()
        assert [e.as_tuple() for e in taken] == expected
        assert engine.event_count == 0
