"""The market-data hub: sequencing, snapshots, conflation, connection events, demand, modes."""

from __future__ import annotations

import anyio
import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from hft._hub import Item, MarketDataHub, Subscription, project
from hft.model import (
    Bar,
    ConnectionEvent,
    ConnectionState,
    Depth,
    DepthLevel,
    Ohlc,
    StreamMode,
    Tick,
)

pytestmark = pytest.mark.anyio

LTP, QUOTE, FULL = StreamMode.LTP, StreamMode.QUOTE, StreamMode.FULL
RANK = {LTP: 0, QUOTE: 1, FULL: 2}
INSTRUMENTS = [f"NSE:S{i}" for i in range(5)]


def tick(instrument: str, price: int = 100, **fields: object) -> Tick:
    return Tick(instrument, FULL, price, **fields)  # type: ignore[arg-type]


def event(state: ConnectionState, broker: str = "zerodha") -> ConnectionEvent:
    return ConnectionEvent(broker, state)


def prices(items: list[Item]) -> list[tuple[str, int, int]]:
    return [(t.instrument, t.last_price, t.seq) for t in items if isinstance(t, Tick)]


levels = st.lists(st.builds(DepthLevel, st.integers(1, 10**6), st.integers(0, 10**6)), max_size=5)
ticks = st.builds(
    Tick,
    instrument=st.sampled_from(INSTRUMENTS),
    mode=st.sampled_from(StreamMode),
    last_price=st.integers(1, 10**9),
    timestamp_ns=st.integers(0, 2**63),
    last_quantity=st.none() | st.integers(0, 10**6),
    volume=st.none() | st.integers(0, 10**9),
    average_price=st.none() | st.integers(1, 10**9),
    total_buy_quantity=st.none() | st.integers(0, 10**9),
    total_sell_quantity=st.none() | st.integers(0, 10**9),
    open_interest=st.none() | st.integers(0, 10**9),
    ohlc=st.none() | st.builds(Ohlc, *[st.integers(1, 10**9)] * 4),
    depth=st.none() | st.builds(Depth, levels.map(tuple), levels.map(tuple)),
    seq=st.integers(0, 100),
)


# --------------------------------------------------------------------------------------------
# Sequencing and snapshots
# --------------------------------------------------------------------------------------------


@given(st.lists(st.sampled_from(INSTRUMENTS), max_size=200))
def test_sequence_numbers_count_up_per_instrument_without_gaps(order: list[str]) -> None:
    hub = MarketDataHub()
    seen: dict[str, list[int]] = {}
    for i, instrument in enumerate(order):
        published = hub.publish(tick(instrument, price=i + 1))
        seen.setdefault(instrument, []).append(published.seq)
        assert hub.latest(instrument) == published
        assert hub.last_price(instrument) == i + 1
        assert hub.seq(instrument) == published.seq
    for instrument, seqs in seen.items():
        assert seqs == list(range(1, len(seqs) + 1)), instrument


@given(ticks)
def test_publish_changes_nothing_but_the_sequence_number(original: Tick) -> None:
    published = MarketDataHub().publish(original)
    assert published == attrs.evolve(original, seq=1)


def test_nothing_published_means_no_snapshot() -> None:
    hub = MarketDataHub()
    assert hub.latest("NSE:INFY") is None
    assert hub.last_price("NSE:INFY") is None
    assert hub.seq("NSE:INFY") == 0


def test_a_new_subscriber_gets_the_snapshot_at_once() -> None:
    hub = MarketDataHub()
    hub.publish(tick("A", 1))
    hub.publish(tick("A", 2))
    hub.publish(tick("B", 3))
    sub = hub.subscribe(["B", "A", "C"])
    assert prices(sub.receive_nowait()) == [("B", 3, 1), ("A", 2, 2)]
    hub.publish(tick("C", 4))
    assert prices(sub.receive_nowait()) == [("C", 4, 1)]


# --------------------------------------------------------------------------------------------
# Delivery and conflation
# --------------------------------------------------------------------------------------------


async def test_a_fast_subscriber_sees_every_tick_in_order() -> None:
    hub = MarketDataHub()
    got: list[Item] = []
    published: list[Tick] = []
    async with anyio.create_task_group() as tg:
        sub = hub.subscribe(INSTRUMENTS, FULL)

        async def read() -> None:
            while batch := await sub.receive_batch():
                got.extend(batch)

        tg.start_soon(read)
        for i in range(500):
            await trio.testing.wait_all_tasks_blocked()  # the reader gets its turn each time
            published.append(hub.publish(tick(INSTRUMENTS[i * 7 % 5], price=i)))
        await trio.testing.wait_all_tasks_blocked()
        sub.close()
    assert got == published
    assert sub.conflated == 0
    assert sub.delivered == 500


async def test_a_slow_subscriber_is_conflated_and_slows_nobody() -> None:
    hub = MarketDataHub()
    slow = hub.subscribe(INSTRUMENTS)
    fast = hub.subscribe(INSTRUMENTS)
    fast_got: list[Item] = []
    published: list[Tick] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            while batch := await fast.receive_batch():
                fast_got.extend(batch)

        tg.start_soon(read)
        for i in range(10_000):
            await trio.testing.wait_all_tasks_blocked()  # the fast reader drains each time
            # The publisher never yields to the scheduler, so it cannot have waited for anyone.
            with trio.testing.assert_no_checkpoints():
                published.append(hub.publish(tick(INSTRUMENTS[(i * 3) % 5], price=i)))
            assert slow.pending <= 5
        await trio.testing.wait_all_tasks_blocked()
        fast.close()

    assert fast_got == published
    latest = {t.instrument: t for t in published}
    first_seen = list(dict.fromkeys(t.instrument for t in published))
    assert slow.receive_nowait() == [latest[i] for i in first_seen]
    assert slow.conflated == 10_000 - 5
    assert slow.receive_nowait() == []


def test_pending_ticks_keep_their_place_when_replaced() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A", "B", "C"])
    for instrument, price in [("A", 1), ("B", 2), ("C", 3), ("A", 4), ("B", 5)]:
        hub.publish(tick(instrument, price))
    assert prices(sub.receive_nowait()) == [("A", 4, 2), ("B", 5, 2), ("C", 3, 1)]


def test_receive_takes_at_most_max_items_in_order() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A", "B", "C"])
    hub.publish(tick("A", 1))
    hub.publish_connection(event(ConnectionState.RECONNECTING))
    hub.publish(tick("B", 2))
    hub.publish(tick("C", 3))
    first = sub.receive_nowait(max_items=2)
    assert prices(first) == [("A", 1, 1)]
    assert isinstance(first[1], ConnectionEvent)
    hub.publish_connection(event(ConnectionState.RESYNCED))  # one event was read: room for this
    assert prices(sub.receive_nowait(max_items=1)) == [("B", 2, 1)]
    rest = sub.receive_nowait()
    assert prices(rest) == [("C", 3, 1)]
    assert isinstance(rest[1], ConnectionEvent)
    assert rest[1].state is ConnectionState.RESYNCED
    with pytest.raises(ValueError, match="max_items"):
        sub.receive_nowait(max_items=0)


async def test_receive_batch_waits_for_the_first_item_then_takes_everything() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A", "B"])
    batches: list[list[Item]] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            batches.append(await sub.receive_batch())

        tg.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        assert batches == []
        hub.publish(tick("A", 1))
        hub.publish(tick("B", 2))  # queued behind the first: one batch, one frame
        hub.publish(tick("A", 3))
    assert [prices(b) for b in batches] == [[("A", 3, 2), ("B", 2, 1)]]


async def test_a_cancelled_receive_leaves_the_subscription_usable() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A"])
    with anyio.move_on_after(0.01):
        await sub.receive_batch()
    hub.publish(tick("A", 7))
    assert prices(await sub.receive_batch()) == [("A", 7, 1)]


async def test_concurrent_readers_share_the_items() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A"])
    got: list[Item] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            got.extend(await sub.receive_batch())

        tg.start_soon(read)
        tg.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        hub.publish(tick("A", 1))
        await trio.testing.wait_all_tasks_blocked()
        hub.publish(tick("A", 2))
    assert prices(got) == [("A", 1, 1), ("A", 2, 2)]


# --------------------------------------------------------------------------------------------
# The instrument set
# --------------------------------------------------------------------------------------------


def test_add_remove_and_mode_changes() -> None:
    hub = MarketDataHub()
    hub.publish(tick("A", 1))
    hub.publish(tick("B", 2))
    sub = hub.subscribe(["A"], LTP)
    assert sub.modes == {"A": LTP}
    assert prices(sub.receive_nowait()) == [("A", 1, 1)]

    sub.add(["A"], LTP)  # no change: no snapshot again
    assert sub.receive_nowait() == []
    sub.add(["A", "B"], FULL)  # a mode change re-delivers the snapshot, at the new mode's fields
    assert sub.modes == {"A": FULL, "B": FULL}
    assert prices(sub.receive_nowait()) == [("A", 1, 1), ("B", 2, 1)]

    hub.publish(tick("A", 3))
    hub.publish(tick("B", 4))
    sub.remove(["A", "Z"])  # the pending A goes; an unknown instrument is ignored
    assert sub.modes == {"B": FULL}
    hub.publish(tick("A", 5))
    assert prices(sub.receive_nowait()) == [("B", 4, 2)]


def test_add_does_not_duplicate_a_pending_tick() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A"], LTP)
    hub.publish(tick("A", 1))
    sub.add(["A"], QUOTE)
    assert prices(sub.receive_nowait()) == [("A", 1, 1)]
    assert sub.conflated == 0


def test_remove_drops_ticks_held_back_by_a_connection_event() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A", "B"])
    hub.publish(tick("A", 1))
    hub.publish(tick("B", 2))
    hub.publish_connection(event(ConnectionState.RECONNECTING))
    sub.remove(["A"])
    items = sub.receive_nowait()
    assert prices(items) == [("B", 2, 1)]
    assert isinstance(items[1], ConnectionEvent)


# --------------------------------------------------------------------------------------------
# Connection events
# --------------------------------------------------------------------------------------------


async def test_connection_events_reach_every_subscriber_in_order() -> None:
    hub = MarketDataHub()
    states = [
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RESYNCED,
        ConnectionState.DISCONNECTED,
    ]
    subs = [hub.subscribe(), hub.subscribe(["A"]), hub.subscribe(["A", "B"], LTP)]
    got: dict[int, list[ConnectionState]] = {i: [] for i in range(len(subs))}
    async with anyio.create_task_group() as tg:

        async def read(i: int, sub: Subscription) -> None:
            async for item in sub:
                if isinstance(item, ConnectionEvent):
                    got[i].append(item.state)

        for i, sub in enumerate(subs):
            tg.start_soon(read, i, sub)
        for state in states:
            hub.publish(tick("A"))  # ticks in between never swallow an event
            hub.publish_connection(event(state))
            hub.publish(tick("A"))
        await trio.testing.wait_all_tasks_blocked()
        for sub in subs:
            sub.close()
    assert got == {i: states for i in range(len(subs))}
    assert hub.connections["zerodha"].state is ConnectionState.DISCONNECTED
    assert hub.metrics().connection_events == 4


def test_a_connection_event_is_a_barrier_to_conflation() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A", "B"])
    hub.publish(tick("A", 1))
    hub.publish(tick("B", 2))
    hub.publish_connection(event(ConnectionState.RECONNECTING))
    hub.publish(tick("A", 3))
    hub.publish(tick("A", 4))
    items = sub.receive_nowait()
    assert [type(i).__name__ for i in items] == ["Tick", "Tick", "ConnectionEvent", "Tick"]
    assert prices(items) == [("A", 1, 1), ("B", 2, 1), ("A", 4, 3)]
    assert sub.conflated == 1


async def test_a_subscriber_that_leaves_too_many_events_unread_is_closed_as_lagged() -> None:
    demand: list[tuple[dict[str, StreamMode], set[str]]] = []
    hub = MarketDataHub(on_demand=lambda a, r: demand.append((a, r)), max_connection_events=2)
    lagging = hub.subscribe(["A"])
    reading = hub.subscribe(["A"])
    hub.publish(tick("A", 1))
    for state in [ConnectionState.RECONNECTING, ConnectionState.CONNECTED]:
        hub.publish_connection(event(state))
        assert len(reading.receive_nowait()) in (1, 2)
    assert not lagging.closed
    hub.publish_connection(event(ConnectionState.RECONNECTING))
    assert lagging.closed_reason == "lagged"
    assert not reading.closed
    assert hub.metrics().lagged == 1
    # Closed: what it had is dropped (it must re-snapshot anyway) and it gets nothing new.
    hub.publish(tick("A", 2))
    assert lagging.pending == 0
    assert await lagging.receive_batch() == []
    with pytest.raises(anyio.ClosedResourceError, match="lagged"):
        lagging.add(["B"])
    reading.close()
    assert demand[-1] == ({}, {"A"})


# --------------------------------------------------------------------------------------------
# Closing
# --------------------------------------------------------------------------------------------


async def test_close_ends_iteration_and_wakes_a_waiting_reader() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A"])
    got: list[Item] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            async for item in sub:
                got.append(item)

        tg.start_soon(read)
        hub.publish(tick("A", 1))
        await trio.testing.wait_all_tasks_blocked()
        sub.close()
    assert prices(got) == [("A", 1, 1)]
    assert sub.closed_reason == "closed"
    assert await sub.receive_batch() == []
    sub.close()  # idempotent


def test_the_context_manager_closes_and_releases_demand() -> None:
    hub = MarketDataHub()
    with hub.subscribe(["A"], name="ws-1") as sub:
        hub.publish(tick("A"))
        assert hub.demand == {"A": QUOTE}
        assert "ws-1" in repr(sub)
    assert sub.closed
    assert hub.demand == {}
    assert sub.pending == 0
    assert hub.metrics().subscribers == 0
    with pytest.raises(anyio.ClosedResourceError, match="closed"):
        sub.remove(["A"])


def test_metrics_count_publishes_deliveries_and_conflation() -> None:
    hub = MarketDataHub()
    a = hub.subscribe(["A"])
    b = hub.subscribe(["A", "B"])
    for price in range(1, 4):
        hub.publish(tick("A", price))
    hub.publish(tick("B"))
    a.receive_nowait()
    a.close()
    b.receive_nowait()
    metrics = hub.metrics()
    assert (metrics.published, metrics.delivered, metrics.conflated) == (4, 3, 4)
    assert (a.delivered, a.conflated, b.delivered, b.conflated) == (1, 2, 2, 2)
    assert (metrics.subscribers, metrics.instruments, metrics.demanded) == (1, 2, 2)


# --------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------


def test_project_strips_the_fields_beyond_the_mode() -> None:
    full = Tick(
        "A",
        FULL,
        100,
        timestamp_ns=5,
        last_quantity=1,
        volume=10,
        ohlc=Ohlc(1, 2, 3, 4),
        depth=Depth(
            (DepthLevel(99, 1), DepthLevel(98, 2)), (DepthLevel(101, 1), DepthLevel(102, 2))
        ),
        seq=9,
    )
    assert project(full, FULL) is full
    assert project(full, LTP) == Tick("A", LTP, 100, timestamp_ns=5, seq=9)
    quote = project(full, QUOTE)
    assert quote.mode is QUOTE
    assert quote.depth == Depth((DepthLevel(99, 1),), (DepthLevel(101, 1),))
    assert (quote.best_bid, quote.best_ask) == (full.best_bid, full.best_ask)
    assert attrs.evolve(quote, mode=FULL, depth=full.depth) == full
    ltp_tick = Tick("A", LTP, 100)
    assert project(ltp_tick, FULL) is ltp_tick


@given(ticks, st.sampled_from(StreamMode), st.sampled_from(StreamMode))
def test_project_composes_and_never_raises_the_mode(
    t: Tick, m1: StreamMode, m2: StreamMode
) -> None:
    once = project(t, m1)
    assert RANK[once.mode] == min(RANK[t.mode], RANK[m1])
    assert (once.instrument, once.last_price, once.timestamp_ns, once.seq) == (
        t.instrument,
        t.last_price,
        t.timestamp_ns,
        t.seq,
    )
    lower = m1 if RANK[m1] <= RANK[m2] else m2
    assert project(once, m2) == project(t, lower)


# --------------------------------------------------------------------------------------------
# Generated operation sequences against a simple model
# --------------------------------------------------------------------------------------------


@attrs.define
class Model:
    """What one subscription should hold, kept the naive way: a list of items in order."""

    modes: dict[str, StreamMode] = attrs.field(factory=dict)
    items: list[Item] = attrs.field(factory=list)
    closed: str | None = None

    def after_last_event(self, instrument: str) -> int | None:
        for i in range(len(self.items) - 1, -1, -1):
            item = self.items[i]
            if isinstance(item, ConnectionEvent):
                return None
            if item.instrument == instrument:
                return i
        return None


LIMIT = 3


class HubMachine(RuleBasedStateMachine):
    subs = Bundle("subs")

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[dict[str, StreamMode], set[str]]] = []
        self.hub = MarketDataHub(
            on_demand=lambda a, r: self.calls.append((a, r)), max_connection_events=LIMIT
        )
        self.models: dict[Subscription, Model] = {}
        self.latest: dict[str, Tick] = {}
        self.mirror: dict[str, StreamMode] = {}  # the host's view, built from the callbacks
        self.price = 0

    def union(self) -> dict[str, StreamMode]:
        union: dict[str, StreamMode] = {}
        for model in self.models.values():
            if model.closed is None:
                for instrument, mode in model.modes.items():
                    if instrument not in union or RANK[mode] > RANK[union[instrument]]:
                        union[instrument] = mode
        return union

    def changing_demand(self, before: dict[str, StreamMode]) -> None:
        """Check the callbacks since ``before`` were the exact difference, in one call or none."""
        after = self.union()
        added = {i: m for i, m in after.items() if before.get(i) != m}
        removed = set(before) - set(after)
        expected = [(added, removed)] if added or removed else []
        assert self.calls == expected
        self.calls.clear()
        for instrument in removed:
            del self.mirror[instrument]
        self.mirror.update(added)

    def model_add(self, model: Model, instruments: list[str], mode: StreamMode) -> None:
        for instrument in instruments:
            if model.modes.get(instrument) is mode:
                continue
            model.modes[instrument] = mode
            if instrument in self.latest and model.after_last_event(instrument) is None:
                model.items.append(self.latest[instrument])

    @rule(
        target=subs,
        instruments=st.lists(st.sampled_from(INSTRUMENTS), max_size=4),
        mode=st.sampled_from(StreamMode),
    )
    def subscribe(self, instruments: list[str], mode: StreamMode) -> Subscription:
        before = self.union()
        sub = self.hub.subscribe(instruments, mode)
        self.models[sub] = model = Model()
        self.model_add(model, instruments, mode)
        self.changing_demand(before)
        return sub

    @rule(
        sub=subs,
        instruments=st.lists(st.sampled_from(INSTRUMENTS), max_size=4),
        mode=st.sampled_from(StreamMode),
    )
    def add(self, sub: Subscription, instruments: list[str], mode: StreamMode) -> None:
        model = self.models[sub]
        if model.closed is not None:
            with pytest.raises(anyio.ClosedResourceError):
                sub.add(instruments, mode)
            return
        before = self.union()
        sub.add(instruments, mode)
        self.model_add(model, instruments, mode)
        self.changing_demand(before)

    @rule(sub=subs, instruments=st.lists(st.sampled_from(INSTRUMENTS), max_size=4))
    def remove(self, sub: Subscription, instruments: list[str]) -> None:
        model = self.models[sub]
        if model.closed is not None:
            with pytest.raises(anyio.ClosedResourceError):
                sub.remove(instruments)
            return
        before = self.union()
        sub.remove(instruments)
        for instrument in instruments:
            model.modes.pop(instrument, None)
        model.items = [
            i for i in model.items if not (isinstance(i, Tick) and i.instrument in instruments)
        ]
        self.changing_demand(before)

    @rule(sub=consumes(subs))
    def close(self, sub: Subscription) -> None:
        model = self.models[sub]
        before = self.union()
        sub.close()
        if model.closed is None:
            model.closed = "closed"
        model.modes.clear()
        model.items.clear()
        self.changing_demand(before)

    @rule(instrument=st.sampled_from(INSTRUMENTS))
    def publish(self, instrument: str) -> None:
        self.price += 1
        published = self.hub.publish(tick(instrument, self.price))
        previous = self.latest.get(instrument)
        assert published.seq == (previous.seq + 1 if previous else 1)
        self.latest[instrument] = published
        for model in self.models.values():
            if model.closed is None and instrument in model.modes:
                at = model.after_last_event(instrument)
                if at is None:
                    model.items.append(published)
                else:
                    model.items[at] = published

    @rule(state=st.sampled_from(ConnectionState))
    def connection(self, state: ConnectionState) -> None:
        before = self.union()
        published = event(state)
        self.hub.publish_connection(published)
        for model in self.models.values():
            if model.closed is not None:
                continue
            if sum(isinstance(i, ConnectionEvent) for i in model.items) >= LIMIT:
                model.closed = "lagged"
                model.modes.clear()
                model.items.clear()
            else:
                model.items.append(published)
        self.changing_demand(before)

    @rule(sub=subs, max_items=st.none() | st.integers(1, 4))
    def receive(self, sub: Subscription, max_items: int | None) -> None:
        model = self.models[sub]
        n = len(model.items) if max_items is None else max_items
        expected, model.items = model.items[:n], model.items[n:]
        assert sub.receive_nowait(max_items) == expected

    @precondition(lambda self: self.models)
    @invariant()
    def agrees(self) -> None:
        assert self.hub.demand == self.union() == self.mirror
        for sub, model in self.models.items():
            assert sub.closed_reason == model.closed
            assert sub.modes == model.modes
            assert sub.pending == len(model.items)
            assert len(model.items) <= len(INSTRUMENTS) * (LIMIT + 1) + LIMIT


HubMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_hub_against_a_model = HubMachine.TestCase


# --------------------------------------------------------------------------------------------
# Bars
# --------------------------------------------------------------------------------------------


def bar(instrument: str, close: int = 100, start_ns: int = 0) -> Bar:
    return Bar(instrument, start_ns, 60, close, close, close, close, volume=close)


async def test_bars_reach_subscribers_of_their_instrument_in_any_mode() -> None:
    hub = MarketDataHub()
    ltp, full, other = hub.subscribe(["A"], LTP), hub.subscribe(["A"], FULL), hub.subscribe(["B"])
    published = bar("A", 5)
    with trio.testing.assert_no_checkpoints():
        hub.publish_bar(published)
    assert ltp.receive_nowait() == [published]
    assert full.receive_nowait() == [published]
    assert other.receive_nowait() == []
    assert hub.latest_bar("A") == published
    assert hub.latest_bar("B") is None
    assert hub.latest("A") is None  # a bar is not a tick: no last price, no sequence
    assert hub.seq("A") == 0
    assert hub.metrics().bars == 1


def test_a_slow_subscriber_keeps_only_the_newest_bar_beside_its_newest_tick() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A", "B"])
    hub.publish_bar(bar("A", 1, start_ns=0))
    hub.publish(tick("A", 10))
    hub.publish_bar(bar("B", 2))
    hub.publish_bar(bar("A", 3, start_ns=60))
    hub.publish(tick("A", 11))
    got = sub.receive_nowait()
    # One bar and one tick per instrument, each kept in the place of the first it replaced.
    assert got == [bar("A", 3, start_ns=60), hub.latest("A"), bar("B", 2)]
    assert sub.conflated == 2


def test_a_new_subscriber_gets_the_latest_bar_and_unsubscribing_drops_it() -> None:
    hub = MarketDataHub()
    hub.publish_bar(bar("A", 1))
    hub.publish_bar(bar("A", 2))
    sub = hub.subscribe(["A"])
    assert sub.receive_nowait() == [bar("A", 2)]
    sub.add(["A"], FULL)  # a mode change is not a new instrument: the bar is not repeated
    assert sub.receive_nowait() == []
    hub.publish_bar(bar("A", 3))
    sub.remove(["A"])
    assert sub.receive_nowait() == []


def test_connection_events_are_barriers_for_bars_too() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A"])
    hub.publish_bar(bar("A", 1))
    hub.publish_connection(event(ConnectionState.RECONNECTING))
    hub.publish_bar(bar("A", 2))
    got = sub.receive_nowait()
    assert got[0] == bar("A", 1)
    assert isinstance(got[1], ConnectionEvent)
    assert got[2] == bar("A", 2)


async def test_receive_batch_wakes_for_a_bar() -> None:
    hub = MarketDataHub()
    sub = hub.subscribe(["A"])
    got: list[Item] = []
    async with anyio.create_task_group() as tg:

        async def read() -> None:
            got.extend(await sub.receive_batch())

        tg.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        hub.publish_bar(bar("A", 7))
    assert got == [bar("A", 7)]
