"""Examples of each rule in docs/matching.md, run against both builds."""

from __future__ import annotations

import pytest

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
    INVALID_ORDER_TYPE,
    INVALID_POST_ONLY,
    INVALID_QUANTITY,
    INVALID_SIDE,
    INVALID_TIME_IN_FORCE,
    IOC,
    IOC_REMAINDER,
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
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    TRIGGERED,
    UNKNOWN_ORDER,
    Engine,
    Event,
)


def kinds(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.kind_name, e.order_id) for e in events]


def test_resting_orders_and_top_of_book(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 7, BUY, 99, 5)
    assert [e.as_tuple() for e in engine.take_events()] == [
        (ACCEPTED, 1, 7, BUY, 99, 5, 5, 0, 0, 0, 0, 0)
    ]
    engine.submit(2, 7, SELL, 101, 3)
    engine.submit(3, 8, BUY, 99, 2)
    assert (engine.best_bid(), engine.best_ask(), engine.last_trade_price()) == (99, 101, None)
    assert engine.depth(BUY, 5) == [(99, 7, 2)]
    assert engine.queue(BUY) == [(99, [(1, 7, 5), (3, 8, 2)])]
    assert engine.live_orders == 3


def test_taker_trades_at_resting_prices_in_time_priority(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 101, 2)
    engine.submit(2, 2, SELL, 100, 2)
    engine.submit(3, 3, SELL, 100, 2)
    engine.submit(4, 4, BUY, 101, 5)
    fills = [e for e in engine.take_events() if e.kind == FILL]
    assert [(f.maker_id, f.price, f.quantity, f.remaining, f.maker_remaining) for f in fills] == [
        (2, 100, 2, 3, 0),
        (3, 100, 2, 1, 0),
        (1, 101, 1, 0, 1),
    ]
    assert [f.trade_id for f in fills] == [1, 2, 3]
    assert engine.last_trade_price() == 101
    assert engine.queue(SELL) == [(101, [(1, 1, 1)])]
    assert (engine.n_fills, engine.filled_qty) == (3, 5)


def test_partly_filled_order_keeps_its_place(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 100, 5)
    engine.submit(2, 2, SELL, 100, 5)
    engine.submit(3, 3, BUY, 100, 2)
    assert engine.queue(SELL) == [(100, [(1, 1, 3), (2, 2, 5)])]


def test_limit_remainder_rests_at_its_price(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 100, 2)
    engine.submit(2, 2, BUY, 102, 5)
    assert engine.queue(BUY) == [(102, [(2, 2, 3)])]
    assert engine.best_ask() is None


def test_ioc_and_market_remainders_are_cancelled(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 100, 2)
    engine.submit(2, 2, BUY, 100, 5, time_in_force=IOC)
    last = engine.take_events()[-1]
    assert (last.kind, last.order_id, last.quantity, last.reason) == (
        CANCELLED,
        2,
        3,
        IOC_REMAINDER,
    )
    engine.submit(3, 1, SELL, 100, 2)
    engine.submit(4, 2, BUY, 0, 5, MARKET)
    events = engine.take_events()
    assert events[0].price == 0
    assert (events[-1].kind, events[-1].quantity, events[-1].reason) == (
        CANCELLED,
        3,
        MARKET_REMAINDER,
    )
    assert engine.live_orders == 0


def test_fok_is_all_or_nothing(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 100, 2)
    engine.submit(2, 1, SELL, 101, 2)
    engine.submit(3, 2, BUY, 100, 3, time_in_force=FOK)
    assert [(e.kind, e.reason) for e in engine.take_events()] == [
        (ACCEPTED, 0),
        (CANCELLED, FOK_UNFILLABLE),
    ]
    assert engine.depth(SELL, 2) == [(100, 2, 1), (101, 2, 1)]
    engine.submit(4, 2, BUY, 101, 3, time_in_force=FOK)
    assert [e.kind for e in engine.take_events()] == [ACCEPTED, FILL, FILL]
    assert engine.depth(SELL, 2) == [(101, 1, 1)]


def test_post_only_is_rejected_when_it_would_cross(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 100, 2)
    engine.submit(2, 2, BUY, 100, 1, post_only=True)
    rejected = engine.take_events()[0]
    assert (rejected.kind, rejected.reason_name) == (REJECTED, "post_only_would_cross")
    assert rejected.reason == POST_ONLY_WOULD_CROSS
    engine.submit(3, 2, BUY, 99, 1, post_only=True)
    assert engine.take_events()[0].kind == ACCEPTED
    engine.submit(4, 2, BUY, 99, 1, time_in_force=IOC, post_only=True)
    assert engine.take_events()[0].reason == INVALID_POST_ONLY


def test_stop_orders_trigger_on_the_last_trade(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 101, 5)
    engine.submit(2, 1, SELL, 103, 5)
    engine.submit(10, 2, BUY, 0, 4, STOP, stop_price=101)
    engine.submit(11, 2, BUY, 102, 4, STOP_LIMIT, stop_price=101)
    assert engine.stops(BUY) == [(10, 101, 4), (11, 101, 4)]
    engine.submit(3, 3, BUY, 101, 1)  # trades at 101: both stops trigger, oldest first
    events = engine.take_events()
    assert kinds(events) == [
        ("accepted", 3),
        ("fill", 3),
        ("triggered", 10),
        ("fill", 10),
        ("triggered", 11),
    ]
    triggered = [e for e in events if e.kind == TRIGGERED]
    assert [(e.order_id, e.price) for e in triggered] == [(10, 101), (11, 101)]
    assert engine.stops(BUY) == []
    # 10 took all that was left at 101; 11 (limit 102) finds only 103 and rests.
    assert engine.queue(BUY) == [(102, [(11, 2, 4)])]


def test_stop_triggers_at_once_when_the_last_trade_is_through_it(
    engine_class: type[Engine],
) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 100, 5)
    engine.submit(2, 2, BUY, 100, 1)
    engine.submit(3, 3, SELL, 0, 2, STOP, stop_price=101)  # last 100 <= 101: triggers now
    assert kinds(engine.take_events()) == [("accepted", 3), ("triggered", 3), ("cancelled", 3)]


def test_triggered_stops_cascade(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, BUY, 100, 1)
    engine.submit(2, 1, BUY, 99, 1)
    engine.submit(3, 1, BUY, 98, 1)
    engine.submit(10, 2, SELL, 0, 1, STOP, stop_price=100)
    engine.submit(11, 3, SELL, 0, 1, STOP, stop_price=99)
    engine.submit(4, 4, SELL, 100, 1)  # 100 trades -> 10 sells at 99 -> 11 sells at 98
    fills = [(e.order_id, e.price) for e in engine.take_events() if e.kind == FILL]
    assert fills == [(4, 100), (10, 99), (11, 98)]
    assert engine.last_trade_price() == 98


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (STP_CANCEL_RESTING, [("accepted", 3), ("cancelled", 1), ("fill", 3)]),
        (STP_CANCEL_INCOMING, [("accepted", 3), ("cancelled", 3)]),
    ],
)
def test_self_trade_prevention(
    engine_class: type[Engine], mode: int, expected: list[tuple[str, int]]
) -> None:
    engine = engine_class(mode)
    engine.submit(1, 5, SELL, 100, 2)
    engine.submit(2, 6, SELL, 100, 2)
    engine.submit(3, 5, BUY, 100, 2)
    events = engine.take_events()
    assert kinds(events) == expected
    assert all(e.reason == SELF_TRADE for e in events if e.kind == CANCELLED)


def test_self_trade_allowed_by_default(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 5, SELL, 100, 2)
    engine.submit(2, 5, BUY, 100, 2)
    fill = engine.take_events()[1]
    assert (fill.kind, fill.owner, fill.maker_owner) == (FILL, 5, 5)


def test_cancel(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, BUY, 99, 5)
    assert engine.cancel(1) is True
    event = engine.take_events()[0]
    assert (event.kind, event.quantity, event.remaining, event.reason) == (
        CANCELLED,
        5,
        0,
        CANCEL_REQUESTED,
    )
    assert engine.cancel(1) is False
    assert engine.take_events()[0].as_tuple() == (
        REJECTED,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        UNKNOWN_ORDER,
        0,
    )
    assert engine.best_bid() is None


def test_modify_priority(engine_class: type[Engine]) -> None:
    engine = engine_class()
    for order_id in (1, 2, 3):
        engine.submit(order_id, order_id, BUY, 99, 5)
    assert engine.modify(1, 99, 4) is True  # smaller: keeps its place
    assert engine.take_events()[0].as_tuple()[:7] == (MODIFIED, 1, 1, BUY, 99, 5, 4)
    assert engine.queue(BUY) == [(99, [(1, 1, 4), (2, 2, 5), (3, 3, 5)])]
    engine.modify(2, 99, 6)  # larger: to the back
    assert engine.queue(BUY) == [(99, [(1, 1, 4), (3, 3, 5), (2, 2, 6)])]
    engine.modify(1, 98, 4)  # new price: back of the new level
    assert engine.queue(BUY) == [(99, [(3, 3, 5), (2, 2, 6)]), (98, [(1, 1, 4)])]


def test_modify_to_a_crossing_price_trades(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 101, 2)
    engine.submit(2, 2, BUY, 99, 5)
    engine.modify(2, 101, 5)
    assert kinds(engine.take_events()) == [("modified", 2), ("fill", 2)]
    assert engine.queue(BUY) == [(101, [(2, 2, 3)])]


def test_modify_rejections(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, SELL, 101, 2)
    engine.submit(2, 2, BUY, 99, 5, post_only=True)
    engine.submit(3, 2, BUY, 0, 5, STOP, stop_price=105)
    cases = [
        (9, 99, 1, UNKNOWN_ORDER),
        (2, 99, 0, INVALID_QUANTITY),
        (2, 101, 5, POST_ONLY_WOULD_CROSS),
        (3, 99, 1, STOP_NOT_MODIFIABLE),
    ]
    for order_id, price, quantity, reason in cases:
        assert engine.modify(order_id, price, quantity) is False
        event = engine.take_events()[0]
        assert (event.kind, event.reason) == (REJECTED, reason)
    assert engine.queue(BUY) == [(99, [(2, 2, 5)])]


def test_submit_rejections(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, BUY, 99, 5)
    engine.submit(1, 1, BUY, 99, 5)
    assert engine.take_events()[0].reason == DUPLICATE_ORDER_ID
    engine.submit(2, 1, BUY, 99, 0)
    assert engine.event(0).reason == INVALID_QUANTITY
    engine.submit(3, 1, 2, 99, 1)
    assert engine.event(0).reason == INVALID_SIDE
    engine.submit(4, 1, BUY, 99, 1, 9)
    assert engine.event(0).reason == INVALID_ORDER_TYPE
    engine.submit(5, 1, BUY, 99, 1, 0, 9)
    assert engine.event(0).reason == INVALID_TIME_IN_FORCE
    assert engine.event(0).kind == REJECTED
    assert engine.live_orders == 1


def test_expire_day_cancels_day_orders_only(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, BUY, 99, 5, time_in_force=DAY)
    engine.submit(2, 1, BUY, 99, 5)
    engine.submit(3, 1, SELL, 0, 5, STOP, time_in_force=DAY, stop_price=90)
    assert engine.expire_day() == 2
    events = engine.take_events()
    assert [(e.order_id, e.reason) for e in events] == [(1, EXPIRED), (3, EXPIRED)]
    assert engine.queue(BUY) == [(99, [(2, 1, 5)])]
    assert engine.waiting_stops == 0


def test_events_are_per_call_and_owned_once_taken(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 1, BUY, 99, 5)
    borrowed = engine.event(0)
    taken = engine.take_events()
    assert engine.event_count == 0
    engine.submit(2, 1, BUY, 98, 5)
    assert taken[0].order_id == 1  # handed over: never reused
    assert engine.event_count == 1
    assert engine.event(0).order_id == 2
    assert borrowed is taken[0]
    copy = engine.event(0).copy()
    engine.submit(3, 1, BUY, 97, 5)
    assert copy.order_id == 2
    with pytest.raises(IndexError):
        engine.event(1)
    assert "accepted" in repr(engine.event(0))


def test_order_lookup(engine_class: type[Engine]) -> None:
    engine = engine_class()
    engine.submit(1, 4, BUY, 99, 5, time_in_force=DAY, post_only=True)
    engine.submit(2, 4, SELL, 98, 5, STOP_LIMIT, stop_price=97)
    info = engine.order(1)
    assert info is not None
    assert (info.price, info.remaining, info.time_in_force, info.post_only, info.resting) == (
        99,
        5,
        DAY,
        True,
        True,
    )
    stop = engine.order(2)
    assert stop is not None
    assert (stop.order_type, stop.stop_price, stop.resting) == (STOP_LIMIT, 97, False)
    assert engine.order(3) is None


def test_many_orders_grow_the_tables(engine_class: type[Engine]) -> None:
    engine = engine_class()
    for order_id in range(1, 5001):
        engine.submit(order_id * 4096, 1, BUY, 1000 + order_id % 700, 1)
    assert engine.live_orders == 5000
    for order_id in range(1, 5001, 2):
        assert engine.cancel(order_id * 4096)
    assert engine.live_orders == 2500
    assert all(engine.order(i * 4096) is not None for i in range(2, 5001, 2))
    assert sum(q for _, q, _ in engine.depth(BUY, 10_000)) == 2500


def test_unknown_self_trade_mode_is_an_error(engine_class: type[Engine]) -> None:
    with pytest.raises(ValueError, match="self-trade"):
        engine_class(7)
