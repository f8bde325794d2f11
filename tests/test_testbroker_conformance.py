"""TestBroker: the broker conformance suite run against it, and its own venue controls."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import anyio
import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft import BrokerRejected, ConfigError, HftError, IllegalTransition, NetworkError, NotFound
from hft._builtin.memory import MemoryStorage
from hft._plugins import PluginContext, PluginHost
from hft.contracts import BrokerEvent
from hft.model import (
    TRANSITIONS,
    ConnectionEvent,
    ConnectionState,
    Fill,
    Instrument,
    ModifyRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Product,
    Side,
    StreamMode,
    Tick,
    TimeInForce,
)
from hft.testing import make_host
from hft.testing._broker import TestBroker, TestVenue
from hft.testing._plugin import TestBrokerConfig
from hft.testing.conformance import BrokerConformance

FUTURE = "NFO:NIFTY25JANFUT"
INFY = "NSE:INFY"


@attrs.define
class Harness:
    """The conformance harness for a TestBroker: the venue's controls, awaited."""

    broker: TestBroker
    account: str
    instrument: Instrument
    other_instrument: Instrument
    # Resting prices are fixed from the opening price so later price moves cannot shift them.
    opening: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.opening = self.broker.venue.last_price(self.instrument)

    def resting_price(self, side: Side) -> int:
        offset = 20 * self.instrument.tick_size
        return self.opening - offset if side is Side.BUY else self.opening + offset

    async def fill(self, broker_order_id: str, quantity: int, price: int) -> None:
        self.broker.venue.fill(broker_order_id, quantity, price)

    async def reject_next(self, reason: str) -> None:
        self.broker.venue.reject_next(reason)

    async def move_price(self, instrument: Instrument) -> int:
        price = self.broker.venue.last_price(instrument) + instrument.tick_size
        self.broker.venue.set_last_price(instrument, price)
        return price

    async def drop_connection(self) -> None:
        self.broker.venue.drop_connection()


class TestTestBrokerConformance(BrokerConformance):
    """The suite, in both of the venue's modes, on a two-account (dealer-style) login."""

    @pytest.fixture(params=[False, True], ids=["scripted", "instant"])
    async def harness(self, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        venue = TestVenue(accounts=("DLR01", "DLR02"), instant=request.param)
        async with TestBroker(venue, name="test-venue") as broker:
            yield Harness(broker, "DLR01", venue.instrument(FUTURE), venue.instrument(INFY))


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def statuses(events: list[BrokerEvent], order_id: str) -> list[OrderStatus]:
    return [
        e.status for e in events if isinstance(e, OrderUpdate) and e.broker_order_id == order_id
    ]


def fills(events: list[BrokerEvent]) -> list[Fill]:
    return [e for e in events if isinstance(e, Fill)]


def order(
    side: Side,
    quantity: int,
    order_type: OrderType = OrderType.LIMIT,
    *,
    instrument: str = INFY,
    price: int | None = None,
    trigger: int | None = None,
    tif: TimeInForce = TimeInForce.DAY,
) -> OrderRequest:
    return OrderRequest(
        account="acct",
        instrument=instrument,
        side=side,
        quantity=quantity,
        order_type=order_type,
        price=price,
        trigger_price=trigger,
        time_in_force=tif,
    )


@pytest.fixture
async def broker() -> AsyncIterator[TestBroker]:
    """A connected broker on a fresh scripted venue with accounts A and B; INFY opens at 1500."""
    async with TestBroker(TestVenue(accounts=("A", "B"))) as broker:
        broker.take_events()  # the CONNECTED event
        yield broker


async def place(broker: TestBroker, request: OrderRequest, account: str = "A") -> str:
    instrument = broker.venue.instrument(request.instrument)
    return await broker.place_order(account, instrument, request)


# ----------------------------------------------------------------------------------------------
# Acknowledgement and filling, per mode
# ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_instant_mode_acks_open_at_once_and_fills_marketable_orders() -> None:
    async with TestBroker(TestVenue(accounts=("A",), instant=True)) as broker:
        broker.take_events()
        resting = await place(broker, order(Side.BUY, 10, price=149000))
        market = await place(broker, order(Side.BUY, 5, OrderType.MARKET))
        crossing = await place(broker, order(Side.SELL, 3, price=149500))
        events = broker.take_events()
        assert statuses(events, resting) == [OrderStatus.OPEN]
        assert statuses(events, market) == [OrderStatus.OPEN, OrderStatus.FILLED]
        assert statuses(events, crossing) == [OrderStatus.OPEN, OrderStatus.FILLED]
        # Both filled at the last price: a marketable limit gets the better price.
        assert [(f.broker_order_id, f.quantity, f.price) for f in fills(events)] == [
            (market, 5, 150000),
            (crossing, 3, 150000),
        ]


@pytest.mark.anyio
async def test_scripted_mode_fills_nothing_until_the_market_moves(broker: TestBroker) -> None:
    market = await place(broker, order(Side.BUY, 5, OrderType.MARKET))
    limit = await place(broker, order(Side.BUY, 2, price=149000))
    far = await place(broker, order(Side.BUY, 2, price=148000))
    events = broker.take_events()
    for order_id in (market, limit, far):
        assert statuses(events, order_id) == [OrderStatus.PENDING, OrderStatus.OPEN]
    assert not fills(events)

    broker.venue.set_last_price(INFY, 148900)
    events = broker.take_events()
    assert not [e for e in events if isinstance(e, Tick)]  # nothing subscribed
    # The market order fills at the new last price, the limit order at its own price.
    assert [(f.broker_order_id, f.price) for f in fills(events)] == [
        (market, 148900),
        (limit, 149000),
    ]
    assert statuses(events, far) == []


@pytest.mark.anyio
async def test_ioc_orders_are_settled_on_acknowledgement(broker: TestBroker) -> None:
    missed = await place(broker, order(Side.BUY, 1, price=149000, tif=TimeInForce.IOC))
    taken = await place(broker, order(Side.BUY, 1, price=151000, tif=TimeInForce.IOC))
    events = broker.take_events()
    assert statuses(events, missed) == [OrderStatus.PENDING, OrderStatus.CANCELLED]
    assert statuses(events, taken) == [OrderStatus.PENDING, OrderStatus.FILLED]
    assert [(f.broker_order_id, f.price) for f in fills(events)] == [(taken, 150000)]


# ----------------------------------------------------------------------------------------------
# Stops
# ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_stop_triggers_when_the_price_reaches_it(broker: TestBroker) -> None:
    stop_loss = await place(broker, order(Side.SELL, 4, OrderType.STOP, trigger=149000))
    breakout = await place(
        broker, order(Side.BUY, 2, OrderType.STOP_LIMIT, price=151100, trigger=151000)
    )
    broker.take_events()

    broker.venue.set_last_price(INFY, 149500)
    assert broker.take_events() == []  # neither trigger reached

    broker.venue.set_last_price(INFY, 148950)  # gaps through the sell stop's trigger
    events = broker.take_events()
    assert statuses(events, stop_loss) == [OrderStatus.FILLED]
    assert [(f.side, f.quantity, f.price) for f in fills(events)] == [(Side.SELL, 4, 148950)]

    broker.venue.set_last_price(INFY, 151050)  # triggers the stop-limit, which then crosses
    events = broker.take_events()
    assert statuses(events, breakout) == [OrderStatus.FILLED]
    assert [(f.side, f.price) for f in fills(events)] == [(Side.BUY, 151100)]


@pytest.mark.anyio
async def test_a_stop_whose_trigger_has_passed_is_refused(broker: TestBroker) -> None:
    with pytest.raises(BrokerRejected) as caught:
        await place(broker, order(Side.BUY, 1, OrderType.STOP, trigger=149000))
    assert caught.value.code == "trigger_crossed"


# ----------------------------------------------------------------------------------------------
# Refusals, modify and the order life cycle
# ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("account", "request_", "code"),
    [
        ("Z", order(Side.BUY, 1, price=149000), "unknown_account"),
        ("A", order(Side.BUY, 1, price=149001, instrument="NSE:NOPE"), "unknown_instrument"),
        ("A", order(Side.BUY, 1, price=149001), "off_tick"),
        ("A", order(Side.BUY, 50, price=2340000, instrument=FUTURE), "bad_lot"),
        ("A", order(Side.BUY, 1875, price=2340000, instrument=FUTURE), "freeze_quantity"),
        ("A", order(Side.BUY, 1, price=2340000, instrument="NSE:NIFTY 50"), "not_tradable"),
        (
            "A",
            attrs.evolve(order(Side.BUY, 1, price=149000), extras={"iceberg": "2"}),
            "unsupported_option",
        ),
    ],
)
async def test_invalid_orders_are_refused_and_leave_no_trace(
    broker: TestBroker, account: str, request_: OrderRequest, code: str
) -> None:
    venue = broker.venue
    known = request_.instrument in {i.key for i in venue.instruments}
    instrument = venue.instrument(request_.instrument) if known else Instrument("NSE", "NOPE", 1)
    with pytest.raises(BrokerRejected) as caught:
        await broker.place_order(account, instrument, request_)
    assert caught.value.code == code
    assert caught.value.message
    assert await broker.orders("A") == []
    assert broker.take_events() == []


@pytest.mark.anyio
async def test_a_venue_rejection_is_an_update_with_the_reason(broker: TestBroker) -> None:
    broker.venue.reject_next("RMS: insufficient funds")
    order_id = await place(broker, order(Side.BUY, 1, price=149000))
    events = broker.take_events()
    assert statuses(events, order_id) == [OrderStatus.PENDING, OrderStatus.REJECTED]
    (book,) = await broker.orders("A")
    assert (book.status, book.reason) == (OrderStatus.REJECTED, "RMS: insufficient funds")
    # Only the next order was rejected.
    accepted = await place(broker, order(Side.BUY, 1, price=149000))
    assert statuses(broker.take_events(), accepted) == [OrderStatus.PENDING, OrderStatus.OPEN]


@pytest.mark.anyio
async def test_a_modified_price_is_the_one_that_trades(broker: TestBroker) -> None:
    infy = broker.venue.instrument(INFY)
    order_id = await place(broker, order(Side.BUY, 2, price=149000))
    await broker.modify_order("A", order_id, infy, ModifyRequest(price=148500, quantity=3))
    events = broker.take_events()
    assert statuses(events, order_id) == [
        OrderStatus.PENDING,
        OrderStatus.OPEN,
        OrderStatus.PENDING_MODIFY,
        OrderStatus.OPEN,
    ]
    assert isinstance(events[-1], OrderUpdate)
    assert events[-1].pending_quantity == 3

    broker.venue.set_last_price(INFY, 148800)  # through the old price, not the new one
    assert fills(broker.take_events()) == []
    broker.venue.set_last_price(INFY, 148500)
    assert [(f.quantity, f.price) for f in fills(broker.take_events())] == [(3, 148500)]


@pytest.mark.anyio
async def test_modify_and_cancel_refuse_what_the_venue_cannot_do(broker: TestBroker) -> None:
    infy = broker.venue.instrument(INFY)
    order_id = await place(broker, order(Side.BUY, 4, price=149000))
    broker.venue.fill(order_id, 2)
    with pytest.raises(BrokerRejected, match="already filled") as caught:
        await broker.modify_order("A", order_id, infy, ModifyRequest(quantity=2))
    assert caught.value.code == "bad_quantity"
    with pytest.raises(BrokerRejected) as caught:
        await broker.modify_order("A", order_id, infy, ModifyRequest(price=149003))
    assert caught.value.code == "off_tick"
    with pytest.raises(NotFound):
        await broker.cancel_order("B", order_id)  # another account's order
    await broker.cancel_order("A", order_id)
    with pytest.raises(BrokerRejected) as caught:
        await broker.cancel_order("A", order_id)
    assert caught.value.code == "order_not_live"
    assert statuses(broker.take_events(), order_id)[-3:] == [
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.CANCELLED,
    ]


@pytest.mark.anyio
async def test_held_acknowledgements_keep_orders_pending(broker: TestBroker) -> None:
    venue = broker.venue
    venue.hold_acks()
    first = await place(broker, order(Side.BUY, 1, price=149000))
    second = await place(broker, order(Side.BUY, 1, price=149000))
    third = await place(broker, order(Side.BUY, 1, price=149000))
    with pytest.raises(BrokerRejected) as caught:
        await broker.modify_order("A", first, venue.instrument(INFY), ModifyRequest(price=148000))
    assert caught.value.code == "order_pending"
    venue.ack(first)
    venue.reject(second, "exchange: price band")
    venue.hold_acks(False)  # acknowledges the rest
    events = broker.take_events()
    assert statuses(events, first) == [OrderStatus.PENDING, OrderStatus.OPEN]
    assert statuses(events, second) == [OrderStatus.PENDING, OrderStatus.REJECTED]
    assert statuses(events, third) == [OrderStatus.PENDING, OrderStatus.OPEN]


@pytest.mark.anyio
async def test_the_end_of_the_session_expires_day_orders_only(broker: TestBroker) -> None:
    day = await place(broker, order(Side.BUY, 1, price=149000))
    gtc = await place(broker, order(Side.BUY, 1, price=149000, tif=TimeInForce.GTC))
    broker.venue.expire_day_orders()
    book = {u.broker_order_id: u.status for u in await broker.orders("A")}
    assert book == {day: OrderStatus.EXPIRED, gtc: OrderStatus.OPEN}


# ----------------------------------------------------------------------------------------------
# Accounts and positions
# ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_order_in_one_account_never_shows_in_another(broker: TestBroker) -> None:
    order_id = await place(broker, order(Side.BUY, 3, price=149000), account="A")
    broker.venue.fill(order_id)
    assert [u.broker_order_id for u in await broker.orders("A")] == [order_id]
    assert [f.broker_order_id for f in await broker.trades("A")] == [order_id]
    assert [p.quantity for p in await broker.positions("A")] == [3]
    assert await broker.orders("B") == []
    assert await broker.trades("B") == []
    assert await broker.positions("B") == []
    with pytest.raises(NotFound):
        await broker.orders("C")
    # A dealer login hears every account's events, each naming its account.
    assert {e.account for e in broker.take_events() if isinstance(e, OrderUpdate | Fill)} == {"A"}


@pytest.mark.anyio
async def test_positions_realise_pnl_first_in_first_out(broker: TestBroker) -> None:
    venue = broker.venue
    for side, quantity, price in [
        (Side.BUY, 2, 100000),
        (Side.BUY, 1, 110000),
        (Side.SELL, 4, 120000),  # closes 2 @ 1000.00 and 1 @ 1100.00, opens 1 short
        (Side.BUY, 1, 115000),  # covers the short
    ]:
        limit = 200000 if side is Side.BUY else 100000
        order_id = await place(broker, order(side, quantity, price=limit))
        venue.fill(order_id, quantity, price)
    venue.set_last_price(INFY, 118000)
    (position,) = await broker.positions("A")
    assert (position.quantity, position.buy_quantity, position.sell_quantity) == (0, 4, 4)
    assert position.buy_value == 2 * 100000 + 110000 + 115000
    assert position.sell_value == 4 * 120000
    assert position.realised_pnl == 2 * 20000 + 10000 + 5000
    assert position.last_price == 118000
    assert position.product is Product.MIS


# ----------------------------------------------------------------------------------------------
# Streams, outages and restarts
# ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_outage_loses_events_but_the_books_keep_the_truth(broker: TestBroker) -> None:
    venue = broker.venue
    await broker.subscribe([venue.instrument(INFY)], StreamMode.LTP)
    order_id = await place(broker, order(Side.BUY, 2, price=149000))
    broker.take_events()

    venue.disconnect("socket closed")
    venue.fill(order_id)
    venue.set_last_price(INFY, 149100)
    late = await place(broker, order(Side.BUY, 1, price=149000))  # REST still works
    events = broker.take_events()
    assert [(type(e), getattr(e, "state", None)) for e in events] == [
        (ConnectionEvent, ConnectionState.RECONNECTING)
    ]

    venue.resync()
    events = broker.take_events()
    assert isinstance(events[0], ConnectionEvent)
    assert events[0].state is ConnectionState.RESYNCED
    (snapshot,) = events[1:]
    assert isinstance(snapshot, Tick)
    assert (snapshot.instrument, snapshot.last_price) == (INFY, 149100)
    book = {u.broker_order_id: u.status for u in await broker.orders("A")}
    assert book == {order_id: OrderStatus.FILLED, late: OrderStatus.OPEN}
    assert [f.broker_order_id for f in await broker.trades("A")] == [order_id]


@pytest.mark.anyio
async def test_a_new_broker_on_the_same_venue_finds_the_books() -> None:
    venue = TestVenue()
    async with TestBroker(venue, name="before") as broker:
        order_id = await place(broker, order(Side.BUY, 2, price=149000), account="default")
        venue.fill(order_id, 1)
    # The host died; a restarted one connects afresh and reconciles.
    async with TestBroker(venue, name="after") as restarted:
        (update,) = await restarted.orders("default")
    assert (update.broker, update.broker_order_id) == ("after", order_id)
    assert (update.status, update.filled_quantity, update.pending_quantity) == (
        OrderStatus.PARTIALLY_FILLED,
        1,
        1,
    )
    assert update.average_price == Decimal(149000)


@pytest.mark.anyio
async def test_ticks_carry_what_their_mode_promises(broker: TestBroker) -> None:
    future = broker.venue.instrument(FUTURE)
    await broker.subscribe([future], StreamMode.FULL)
    broker.venue.set_last_price(future, 2350500)
    snapshot, tick = broker.take_events()
    assert isinstance(snapshot, Tick)
    assert isinstance(tick, Tick)
    assert (snapshot.last_price, tick.last_price, tick.last_quantity) == (2350000, 2350500, 75)
    assert tick.depth is not None
    assert [level.price for level in tick.depth.bids] == [2350500 - 5 * n for n in range(1, 6)]
    assert tick.ohlc is not None
    assert (tick.ohlc.open, tick.ohlc.high, tick.ohlc.close) == (2350000, 2350500, 2350000)
    quotes = await broker.quotes([future, Instrument("NSE", "NOPE", 1)])
    assert list(quotes) == [FUTURE]
    assert quotes[FUTURE].depth == tick.depth


@pytest.mark.anyio
async def test_calls_need_a_connection() -> None:
    broker = TestBroker()
    with pytest.raises(NetworkError, match="not connected"):
        await broker.orders("default")
    venue = broker.venue
    venue.disconnect()
    with pytest.raises(NetworkError, match="unreachable"):
        await broker.connect()
    venue.resync()
    await broker.connect()
    await broker.close()
    with pytest.raises(NetworkError, match="closed"):
        await broker.connect()
    assert [e.state for e in broker.take_events() if isinstance(e, ConnectionEvent)] == [
        ConnectionState.CONNECTED,
        ConnectionState.DISCONNECTED,
    ]


@pytest.mark.anyio
async def test_the_same_calls_give_the_same_events() -> None:
    def clock() -> dt.datetime:
        return dt.datetime(2025, 1, 2, 9, 15, tzinfo=dt.UTC)

    async def session() -> list[BrokerEvent]:
        venue = TestVenue(accounts=("A",), clock=clock)
        async with TestBroker(venue) as broker:
            infy = venue.instrument(INFY)
            await broker.subscribe([infy], StreamMode.QUOTE)
            first = await place(broker, order(Side.BUY, 5, price=149000))
            await place(broker, order(Side.SELL, 2, OrderType.STOP, trigger=148000))
            venue.fill(first, 2)
            await broker.modify_order("A", first, infy, ModifyRequest(quantity=6))
            venue.set_last_price(infy, 147900)
            venue.drop_connection()
        return broker.take_events()

    assert await session() == await session()


# ----------------------------------------------------------------------------------------------
# Any sequence of calls keeps the books and the events consistent
# ----------------------------------------------------------------------------------------------


def _price(offset: int) -> int:
    return 150000 + 5 * offset  # INFY opens at 1500.00 with a 5-paise tick


@attrs.frozen
class Place:
    side: Side
    quantity: int
    kind: str
    offset: int

    async def run(self, broker: TestBroker, ids: list[str]) -> None:
        price = _price(self.offset)
        if self.kind == "market":
            request = order(self.side, self.quantity, OrderType.MARKET)
        elif self.kind == "stop":
            request = order(self.side, self.quantity, OrderType.STOP, trigger=price)
        else:
            tif = TimeInForce.IOC if self.kind == "ioc" else TimeInForce.DAY
            request = order(self.side, self.quantity, price=price, tif=tif)
        ids.append(await place(broker, request))


@attrs.frozen
class FillSome:
    index: int
    quantity: int

    async def run(self, broker: TestBroker, ids: list[str]) -> None:
        if ids:
            broker.venue.fill(ids[self.index % len(ids)], self.quantity)


@attrs.frozen
class Modify:
    index: int
    quantity: int
    offset: int

    async def run(self, broker: TestBroker, ids: list[str]) -> None:
        if ids:
            change = ModifyRequest(quantity=self.quantity, price=_price(self.offset))
            infy = broker.venue.instrument(INFY)
            await broker.modify_order("A", ids[self.index % len(ids)], infy, change)


@attrs.frozen
class Cancel:
    index: int

    async def run(self, broker: TestBroker, ids: list[str]) -> None:
        if ids:
            await broker.cancel_order("A", ids[self.index % len(ids)])


@attrs.frozen
class Move:
    offset: int

    async def run(self, broker: TestBroker, ids: list[str]) -> None:
        broker.venue.set_last_price(INFY, _price(self.offset))


@attrs.frozen
class Drop:
    async def run(self, broker: TestBroker, ids: list[str]) -> None:
        broker.venue.drop_connection()


@attrs.frozen
class Expire:
    async def run(self, broker: TestBroker, ids: list[str]) -> None:
        broker.venue.expire_day_orders()


Operation = Place | FillSome | Modify | Cancel | Move | Drop | Expire
_index, _quantity, _offset = st.integers(0, 9), st.integers(1, 5), st.integers(-4, 4)
_operations = st.lists(
    st.one_of(
        st.builds(
            Place,
            st.sampled_from(Side),
            _quantity,
            st.sampled_from(["limit", "market", "stop", "ioc"]),
            _offset,
        ),
        st.builds(FillSome, _index, _quantity),
        st.builds(Modify, _index, _quantity, _offset),
        st.builds(Cancel, _index),
        st.builds(Move, _offset),
        st.builds(Drop),
        st.builds(Expire),
    ),
    max_size=25,
)


async def _replay(instant: bool, operations: list[Operation]) -> None:
    async with TestBroker(TestVenue(accounts=("A",), instant=instant)) as broker:
        ids: list[str] = []
        for operation in operations:
            try:
                await operation.run(broker, ids)
            except IllegalTransition:
                raise  # the venue tried a move the state machine forbids
            except HftError:
                continue  # a refusal: fine
        events = broker.take_events()
        book = {u.broker_order_id: u for u in await broker.orders("A")}
        trades = await broker.trades("A")
        positions = await broker.positions("A")

    last: dict[str, OrderStatus] = {}
    for event in events:
        if isinstance(event, OrderUpdate):
            previous = last.get(event.broker_order_id, OrderStatus.PENDING)
            assert event.status is previous or event.status in TRANSITIONS[previous]
            last[event.broker_order_id] = event.status
    # Outages here are instantaneous, so the stream told everything the books know.
    assert {k: u.status for k, u in book.items()} == last
    assert fills(events) == trades
    for order_id, update in book.items():
        traded = sum(f.quantity for f in trades if f.broker_order_id == order_id)
        assert update.filled_quantity == traded
    assert sum(p.quantity for p in positions) == sum(f.quantity * f.side.sign for f in trades)


@settings(max_examples=150, deadline=None)
@given(instant=st.booleans(), operations=_operations)
def test_any_sequence_of_calls_keeps_books_and_events_consistent(
    instant: bool, operations: list[Operation]
) -> None:
    anyio.run(_replay, instant, operations, backend="trio")


# ----------------------------------------------------------------------------------------------
# The plugin
# ----------------------------------------------------------------------------------------------


def test_the_plugin_registers_the_test_broker(tmp_path: Path) -> None:
    from hft.testing import _plugin

    host = PluginHost.from_modules({"testing": _plugin})
    registration = host.brokers.get("test")
    assert registration.config is TestBrokerConfig
    context = PluginContext("paper", tmp_path, MemoryStorage("memory://"))
    broker = registration.factory(TestBrokerConfig(instant=True, accounts=("A", "B")), context)
    assert isinstance(broker, TestBroker)
    assert (broker.name, broker.venue.instant, tuple(broker.accounts())) == (
        "paper",
        True,
        ("A", "B"),
    )
    with pytest.raises(ValueError, match="distinct"):
        TestBrokerConfig(accounts=("A", "A"))


@pytest.mark.anyio
async def test_a_host_configured_with_the_test_broker_trades_on_it(tmp_path: Path) -> None:
    from hft.testing import _plugin

    config = {
        "brokers": {"paper": {"plugin": "test", "environment": "sim", "accounts": ["D1", "D2"]}}
    }
    host = make_host({"testing": _plugin}, config, data_dir=tmp_path)
    seen: list[BrokerEvent] = []
    async with host.running() as services:
        services.add_listener(lambda name, event: seen.append(event))
        await anyio.wait_all_tasks_blocked()
        assert services.readiness()["broker:paper"] is None
        broker = services.brokers["paper"].broker
        assert isinstance(broker, TestBroker)
        assert tuple(broker.accounts()) == ("D1", "D2")
        order_id = await place(broker, order(Side.BUY, 1, price=149000), account="D2")
        await anyio.wait_all_tasks_blocked()
    updates = [e for e in seen if isinstance(e, OrderUpdate)]
    assert [(u.broker, u.broker_order_id, u.status) for u in updates] == [
        ("paper", order_id, OrderStatus.PENDING),
        ("paper", order_id, OrderStatus.OPEN),
    ]


def test_a_bad_config_is_reported_with_its_path(tmp_path: Path) -> None:
    from hft.testing import _plugin

    config = {"brokers": {"paper": {"plugin": "test", "accounts": []}}}
    with pytest.raises(ConfigError, match=r"brokers\.paper"):
        make_host({"testing": _plugin}, config, data_dir=tmp_path)
