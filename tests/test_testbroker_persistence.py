"""TestVenue's state file: a venue rebuilt from its operation log is the venue that wrote it."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft import ConfigError, HftError, IllegalTransition, ValidationError
from hft._builtin.memory import MemoryStorage
from hft._plugins import PluginContext, PluginHost
from hft.model import (
    ModifyRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from hft.testing._broker import TestBroker, TestVenue
from hft.testing._plugin import TestBrokerConfig

INFY = "NSE:INFY"  # opens at 1500.00, 5-paise tick
TCS = "NSE:TCS"  # opens at 4000.00, 5-paise tick
ACCOUNTS = ("A", "B")


def request(
    side: Side,
    quantity: int,
    order_type: OrderType = OrderType.LIMIT,
    *,
    instrument: str = INFY,
    price: int | None = None,
    trigger: int | None = None,
    tif: TimeInForce = TimeInForce.DAY,
    client_order_id: str = "",
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
        client_order_id=client_order_id,
    )


def place(venue: TestVenue, order: OrderRequest, account: str = "A") -> str:
    """What a broker's ``place_order`` does, without the event loop."""
    return venue._place(account, venue.instrument(order.instrument), order)


def state(venue: TestVenue) -> dict[str, Any]:
    """Everything a venue knows that the next call could depend on or a broker could read."""
    return {
        "books": {a: venue._book(a) for a in venue.accounts},
        "trades": {a: venue._trades(a) for a in venue.accounts},
        "positions": {a: venue._positions_of(a) for a in venue.accounts},
        "orders": [(o.account, o.instrument, o.order, o.triggered) for o in venue._orders.values()],
        "lots": {k: list(b.lots) for k, b in venue._positions.items()},
        "markets": {k: attrs.astuple(m) for k, m in venue._markets.items()},
        "controls": (venue._holding, list(venue._held), list(venue._rejections)),
        "sequences": (venue._order_seq, venue._exchange_seq, venue._fill_seq),
    }


class Clock:
    """A clock that moves on a millisecond per reading, from wherever a test sets it."""

    def __init__(self, year: int = 2025) -> None:
        self.now = dt.datetime(year, 1, 2, 9, 15, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(milliseconds=1)
        return self.now


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------------------------
# A scripted day, rebuilt
# ----------------------------------------------------------------------------------------------


def trading_day(venue: TestVenue) -> dict[str, str]:
    """One of everything the log records; returns the order ids by role."""
    ids = {
        "resting": place(venue, request(Side.BUY, 5, price=149000, client_order_id="c1")),
        "partial": place(venue, request(Side.SELL, 4, price=151000), account="B"),
        "stop": place(venue, request(Side.SELL, 2, OrderType.STOP, trigger=148000)),
        "tcs": place(venue, request(Side.BUY, 3, instrument=TCS, price=399500), account="B"),
    }
    venue.fill(ids["partial"], 1)
    venue.fill(ids["tcs"], 3, 399500)
    venue.reject_next("RMS: no margin")
    ids["rejected"] = place(venue, request(Side.BUY, 1, price=149500))
    venue.hold_acks()
    ids["held"] = place(venue, request(Side.BUY, 1, price=149500), account="B")
    ids["held_rejected"] = place(venue, request(Side.SELL, 1, price=152000))
    ids["held_acked"] = place(venue, request(Side.SELL, 1, price=152000))
    venue.reject(ids["held_rejected"], "exchange: price band")
    venue.ack(ids["held_acked"])
    venue.hold_acks(False)  # acks "held"
    venue._modify("A", ids["resting"], venue.instrument(INFY), ModifyRequest(quantity=6))
    venue._cancel("A", ids["held_acked"])
    venue.set_last_price(INFY, 147900)  # triggers the stop: a market sell fills at 1479.00
    ids["ioc"] = place(venue, request(Side.SELL, 2, price=147000, tif=TimeInForce.IOC))
    ids["day_end"] = place(venue, request(Side.BUY, 1, price=140000, tif=TimeInForce.DAY), "B")
    venue.expire_day_orders()
    return ids


@pytest.mark.parametrize("instant", [False, True], ids=["scripted", "instant"])
def test_a_rebuilt_venue_has_the_same_books_orders_trades_and_positions(
    tmp_path: Path, instant: bool
) -> None:
    path = tmp_path / "venue.log"
    clock = Clock()
    venue = TestVenue(accounts=ACCOUNTS, instant=instant, clock=clock, state_file=path)
    assert venue.state_file == path
    trading_day(venue)
    venue.hold_acks()
    held = place(venue, request(Side.BUY, 1, price=140000))
    venue.reject_next("RMS: still no margin")  # queued: the rebuilt venue must honour it too

    copy = tmp_path / "copy.log"  # the twins must not write to one file
    copy.write_bytes(path.read_bytes())
    # Years later by its clock: every timestamp it has must come from the log.
    later = Clock(2030)
    rebuilt = TestVenue(accounts=ACCOUNTS, instant=instant, clock=later, state_file=copy)
    assert state(rebuilt) == state(venue)
    assert venue._trades("A")  # the day did trade
    assert venue._positions_of("B")
    # It carries on exactly as the original would: the queued rejection, the held order, the ids.
    later.now = clock.now
    for twin in (venue, rebuilt):
        rejected = place(twin, request(Side.BUY, 1, price=149000))
        twin.ack(held)
        assert twin._orders[rejected].order.status is OrderStatus.REJECTED
        twin.hold_acks(False)
        twin.fill(held)
        twin.set_last_price(TCS, 401000)
    assert state(rebuilt) == state(venue)
    assert path.read_bytes() == copy.read_bytes()


def test_the_log_is_one_durable_record_per_call_and_refusals_leave_no_trace(
    tmp_path: Path,
) -> None:
    path = tmp_path / "deep" / "venue.log"  # the directory is made
    venue = TestVenue(accounts=ACCOUNTS, state_file=path)
    (header,) = lines(path)
    assert (header["op"], header["accounts"], header["instant"]) == ("venue", ["A", "B"], False)
    order_id = place(venue, request(Side.BUY, 2, price=149000))
    fill = venue.fill(order_id, 1)
    with pytest.raises(HftError):
        place(venue, request(Side.BUY, 3, price=149001))  # off the tick grid
    with pytest.raises(HftError):
        venue.fill("TB99999999")
    with pytest.raises(ValidationError):
        venue.reject_next("")
    venue.disconnect()
    venue.resync()  # connection controls are not logged
    records = lines(path)
    assert [r["op"] for r in records] == ["venue", "place", "fill"]
    assert records[1]["request"]["price"] == 149000
    assert records[2] == {
        "op": "fill",
        "order": order_id,
        "quantity": 1,
        "price": None,
        "at": fill.at.isoformat(),
    }


def test_a_venue_without_a_state_file_writes_nothing(tmp_path: Path) -> None:
    venue = TestVenue(accounts=ACCOUNTS)
    trading_day(venue)
    assert venue.state_file is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.anyio
async def test_replay_sends_no_events_and_a_new_broker_finds_the_books(tmp_path: Path) -> None:
    path = tmp_path / "venue.log"
    venue = TestVenue(accounts=ACCOUNTS, state_file=path)
    async with TestBroker(venue, name="before") as broker:
        order_id = await broker.place_order(
            "A", venue.instrument(INFY), request(Side.BUY, 4, price=149000)
        )
        venue.fill(order_id, 1)
        before = await broker.orders("A"), await broker.trades("A")
    rebuilt = TestVenue(accounts=ACCOUNTS, state_file=path)
    async with TestBroker(rebuilt, name="before") as restarted:
        events = restarted.take_events()
        assert [type(e).__name__ for e in events] == ["ConnectionEvent"]
        assert (await restarted.orders("A"), await restarted.trades("A")) == before


def test_a_torn_last_line_is_dropped_and_the_log_continues(tmp_path: Path) -> None:
    path = tmp_path / "venue.log"
    venue = TestVenue(accounts=ACCOUNTS, state_file=path)
    first = place(venue, request(Side.BUY, 1, price=149000))
    intact = path.read_bytes()
    with path.open("ab") as file:  # the process died while appending the next record
        file.write(b'{"op":"place","account":"A","instrum')
    rebuilt = TestVenue(accounts=ACCOUNTS, state_file=path)
    assert path.read_bytes() == intact
    second = place(rebuilt, request(Side.BUY, 1, price=149000))
    assert (first, second) == ("TB00000001", "TB00000002")
    assert [r["op"] for r in lines(path)] == ["venue", "place", "place"]
    assert state(TestVenue(accounts=ACCOUNTS, state_file=path)) == state(rebuilt)


def test_a_log_of_another_venue_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "venue.log"
    place(TestVenue(accounts=ACCOUNTS, state_file=path), request(Side.BUY, 1, price=149000))
    with pytest.raises(ConfigError, match="accounts differ"):
        TestVenue(accounts=("A",), state_file=path)
    with pytest.raises(ConfigError, match="instant differ"):
        TestVenue(accounts=ACCOUNTS, instant=True, state_file=path)
    universe = {TestVenue().instrument(INFY): 150000}
    with pytest.raises(ConfigError, match="instruments differ"):
        TestVenue(universe, accounts=ACCOUNTS, state_file=path)


def test_a_corrupt_log_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "venue.log"
    TestVenue(accounts=ACCOUNTS, state_file=path)
    with path.open("a") as file:
        file.write("not json\n")
    with pytest.raises(ValidationError, match=r"venue\.log:2: not a venue operation record"):
        TestVenue(accounts=ACCOUNTS, state_file=path)
    path.write_text(path.read_text().splitlines()[0] + '\n{"op":"fill","order":"TB1"}\n')
    with pytest.raises(ValidationError, match=r"venue\.log:2: cannot replay 'fill'") as info:
        TestVenue(accounts=ACCOUNTS, state_file=path)
    assert info.value.code == "bad_state_file"


def test_the_plugin_keeps_its_venue_under_the_data_dir(tmp_path: Path) -> None:
    from hft.testing import _plugin

    registration = PluginHost.from_modules({"testing": _plugin}).brokers.get("test")
    context = PluginContext("paper", tmp_path, MemoryStorage("memory://"))
    config = TestBrokerConfig(accounts=ACCOUNTS, state_file=Path("venues/paper.log"))
    broker = registration.factory(config, context)
    assert isinstance(broker, TestBroker)
    assert broker.venue.state_file == tmp_path / "venues" / "paper.log"
    order_id = place(broker.venue, request(Side.BUY, 1, price=149000))
    again = registration.factory(config, context)  # a restarted host
    assert isinstance(again, TestBroker)
    assert [u.broker_order_id for u in again.venue._book("A")] == [order_id]
    assert TestBrokerConfig().state_file is None


# ----------------------------------------------------------------------------------------------
# Any sequence of calls, rebuilt
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class Place:
    account: str
    instrument: str
    side: Side
    quantity: int
    kind: str
    offset: int

    def run(self, venue: TestVenue, ids: list[str]) -> None:
        opening = {INFY: 150000, TCS: 400000}[self.instrument]
        price = opening + 5 * self.offset
        if self.kind == "market":
            order = request(self.side, self.quantity, OrderType.MARKET, instrument=self.instrument)
        elif self.kind == "stop":
            order = request(
                self.side, self.quantity, OrderType.STOP, instrument=self.instrument, trigger=price
            )
        else:
            tif = TimeInForce.IOC if self.kind == "ioc" else TimeInForce.DAY
            order = request(
                self.side, self.quantity, instrument=self.instrument, price=price, tif=tif
            )
        ids.append(place(venue, order, self.account))


@attrs.frozen
class OnOrder:
    """A control aimed at one of the last few orders placed (``index`` 0 is the latest)."""

    action: str  # fill, fill_all, modify, cancel, ack, reject
    index: int
    quantity: int
    offset: int

    def run(self, venue: TestVenue, ids: list[str]) -> None:
        if not ids:
            return
        order_id = ids[-1 - self.index % len(ids)]
        venue_order = venue._orders[order_id]
        account, instrument = venue_order.account, venue_order.instrument
        price = venue.last_price(instrument) + 5 * self.offset
        if self.action == "fill":
            venue.fill(order_id, self.quantity, price)
        elif self.action == "fill_all":
            venue.fill(order_id)
        elif self.action == "modify":
            venue._modify(
                account, order_id, instrument, ModifyRequest(quantity=self.quantity, price=price)
            )
        elif self.action == "cancel":
            venue._cancel(account, order_id)
        elif self.action == "ack":
            venue.ack(order_id)
        else:
            venue.reject(order_id, "exchange: rejected")


@attrs.frozen
class Control:
    action: str  # move, reject_next, hold, release, expire
    instrument: str
    offset: int

    def run(self, venue: TestVenue, ids: list[str]) -> None:
        if self.action == "move":
            venue.set_last_price(
                self.instrument, venue.last_price(self.instrument) + 5 * self.offset
            )
        elif self.action == "reject_next":
            venue.reject_next()
        elif self.action == "hold":
            venue.hold_acks()
        elif self.action == "release":
            venue.hold_acks(False)
        else:
            venue.expire_day_orders()


Operation = Place | OnOrder | Control
_instrument, _offset = st.sampled_from([INFY, TCS]), st.integers(-4, 4)
_operations = st.lists(
    st.one_of(
        st.builds(
            Place,
            st.sampled_from(ACCOUNTS),
            _instrument,
            st.sampled_from(Side),
            st.integers(1, 5),
            st.sampled_from(["limit", "limit", "market", "stop", "ioc"]),
            _offset,
        ),
        st.builds(
            OnOrder,
            st.sampled_from(["fill", "fill_all", "modify", "cancel", "ack", "reject"]),
            st.integers(0, 3),
            st.integers(1, 5),
            _offset,
        ),
        st.builds(
            Control,
            st.sampled_from(["move", "move", "reject_next", "hold", "hold", "release", "expire"]),
            _instrument,
            _offset,
        ),
    ),
    max_size=30,
)


def run(venue: TestVenue, operations: list[Operation], ids: list[str]) -> None:
    for operation in operations:
        try:
            operation.run(venue, ids)
        except IllegalTransition:
            raise
        except HftError:
            continue  # a refusal: nothing changed, nothing logged


@settings(max_examples=100, deadline=None)
@given(instant=st.booleans(), operations=_operations, more=_operations)
def test_any_sequence_of_calls_replays_to_the_same_venue(
    instant: bool, operations: list[Operation], more: list[Operation]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "venue.log"
        clock = Clock()
        venue = TestVenue(accounts=ACCOUNTS, instant=instant, clock=clock, state_file=path)
        ids: list[str] = []
        run(venue, operations, ids)
        copy = Path(directory) / "copy.log"
        copy.write_bytes(path.read_bytes())
        later = Clock(2030)
        rebuilt = TestVenue(accounts=ACCOUNTS, instant=instant, clock=later, state_file=copy)
        assert state(rebuilt) == state(venue)
        # Both carry on alike, and the rebuilt one's log, holding both halves, replays too.
        later.now = clock.now
        run(venue, more, list(ids))
        run(rebuilt, more, list(ids))
        assert state(rebuilt) == state(venue)
        again = TestVenue(accounts=ACCOUNTS, instant=instant, state_file=copy)
        assert state(again) == state(rebuilt)
