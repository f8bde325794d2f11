"""The OMS through its interface, on a running host with the deterministic test broker."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

import hft
from hft import AuthError, Conflict, NotFound, RiskRejected, ValidationError
from hft._builtin.memory import MemoryStorage
from hft._oms import OrderEventMessage, OrderFeed, _Journal
from hft.model import (
    Bar,
    Environment,
    ModifyRequest,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PositionConversion,
    Product,
    Role,
    Side,
    User,
)
from hft.testing import Services, make_host
from hft.testing._broker import TestBroker, TestVenue

S = OrderStatus
ALICE = User("alice", Role.TRADER, Environment.LIVE, accounts=("live1", "paper"))
SIMON = User("simon", Role.TRADER, Environment.SIM, accounts=("paper", "live1"))
VIEWER = User("vera", Role.VIEWER, Environment.LIVE, accounts=("live1",))
ADMIN = User("root", Role.ADMIN, Environment.LIVE)


class Shared:
    """One venue and one store that outlive hosts, so a test can restart the host."""

    def __init__(self, **venue_options: Any) -> None:
        self.venue = TestVenue(accounts=("A1", "P1"), **venue_options)
        self.storage = MemoryStorage("shared://")

    def plugin(self) -> types.SimpleNamespace:
        def hft_register_brokers(register: Any) -> None:
            register("venue", lambda config, context: TestBroker(self.venue, name=context.name))

        def hft_register_storage(register: Any) -> None:
            register("shared", lambda url: self.storage)

        return types.SimpleNamespace(
            hft_register_brokers=hft.hookimpl(hft_register_brokers),
            hft_register_storage=hft.hookimpl(hft_register_storage),
        )


CONFIG: dict[str, Any] = {
    "storage": {"url": "shared://"},
    "brokers": {"v": {"plugin": "venue"}},
    "accounts": {
        "live1": {"broker": "v", "broker_account": "A1", "environment": "live"},
        "paper": {"broker": "v", "broker_account": "P1", "environment": "sim"},
    },
}


async def eventually(condition: Callable[[], Awaitable[bool]], timeout_s: float = 5) -> None:
    """Poll ``condition`` until it holds (the host works in background tasks)."""
    with anyio.fail_after(timeout_s):
        while not await condition():  # noqa: ASYNC110 - polling state owned by other tasks
            await anyio.sleep(0.001)


async def _ready(services: Services) -> None:
    async def ready() -> bool:
        return all(h.ready for h in services.brokers.values())

    await eventually(ready)


@pytest.fixture
def shared() -> Shared:
    return Shared()


@pytest.fixture
async def services(shared: Shared) -> AsyncIterator[Services]:
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as running:
        await _ready(running)
        yield running


def buy(quantity: int = 10, price: int | None = 150_000, **fields: Any) -> OrderRequest:
    order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
    values: dict[str, Any] = {
        "account": "live1",
        "instrument": "NSE:INFY",
        "side": Side.BUY,
        "quantity": quantity,
        "order_type": order_type,
        "price": price,
    }
    values.update(fields)
    return OrderRequest(**values)


async def settle(services: Services) -> None:
    """Let events flow and the journal write."""
    for _ in range(5):
        await anyio.sleep(0.001)
    await services.oms.flush()


async def submit_one(services: Services, request: OrderRequest, user: User = ALICE) -> Order:
    (order,) = await services.oms.submit(user, request)
    await settle(services)
    return services.oms.get(user, order.order_id)


@pytest.mark.anyio
async def test_an_order_is_durable_before_the_broker_sees_it(
    services: Services, shared: Shared
) -> None:
    seen_by_broker: list[list[Order]] = []
    original = shared.venue._place

    def place(*args: Any) -> str:
        seen_by_broker.append(list(shared.storage._orders.values()))
        return original(*args)

    shared.venue._place = place  # type: ignore[method-assign]
    order = await submit_one(services, buy())
    assert [o.order_id for o in seen_by_broker[0]] == [order.order_id]
    assert seen_by_broker[0][0].status is S.PENDING
    assert order.status is S.OPEN
    assert [h.status for h in order.history] == [S.NEW, S.PENDING, S.OPEN]


@pytest.mark.anyio
async def test_order_events_reach_the_owner_in_journal_order(
    services: Services, shared: Shared
) -> None:
    feed = services.oms.subscribe(ALICE)
    other = services.oms.subscribe(User("bob", Role.TRADER, Environment.LIVE, accounts=("x",)))
    order = await submit_one(services, buy())
    shared.venue.fill(order.broker_order_id or "", 4)
    shared.venue.fill(order.broker_order_id or "", 6)
    await settle(services)
    messages = await feed.receive_batch()
    # The broker's first update takes the place of the "accepted" entry when it arrives before
    # that entry is written; either way the broker order id is known from the second event on.
    if messages[1].kind == "accepted":
        assert messages[1].order.status is S.PENDING
        del messages[1]
    assert [m.order.status for m in messages] == [
        S.PENDING,
        S.OPEN,
        S.PARTIALLY_FILLED,
        S.FILLED,
    ]
    assert messages[0].kind == "created"
    assert messages[0].order.broker_order_id is None
    assert all(m.order.broker_order_id == order.broker_order_id for m in messages[1:])
    assert [h.status for h in messages[-1].order.history] == [
        S.NEW,
        S.PENDING,
        S.OPEN,
        S.PARTIALLY_FILLED,
        S.FILLED,
    ]
    seqs = [m.seq for m in messages]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    journal = await services.storage.order_events(after_seq=seqs[0] - 1)
    assert [e.seq for e in journal] == seqs
    with anyio.move_on_after(0.01):
        await other.receive_batch()
        pytest.fail("bob saw alice's order")


@pytest.mark.anyio
async def test_a_resumed_feed_replays_what_was_missed_then_goes_live_without_a_repeat(
    services: Services, shared: Shared
) -> None:
    first = await submit_one(services, buy())
    await settle(services)
    seen = await services.oms.resume(ALICE, 0)
    before = [m.seq for m in await seen.receive_batch()]
    assert before
    assert before[-1] == services.oms.last_seq
    seen.close()

    # Events happen while the client is away, then it resumes from the last one it saw.
    shared.venue.fill(first.broker_order_id or "", 10)
    second = await submit_one(services, buy())
    await settle(services)
    bob = User("bob", Role.TRADER, Environment.LIVE, accounts=("x",))
    assert [m async for m in _drain(await services.oms.resume(bob, 0))] == []
    resumed = await services.oms.resume(ALICE, before[-1])
    await submit_one(services, buy())  # live, after the resume
    await settle(services)
    assert resumed.replayed > 0
    messages = [m async for m in _drain(resumed)]
    seqs = [m.seq for m in messages]
    assert seqs == sorted(set(seqs))
    assert seqs[0] > before[-1]
    journal = [e.seq for e in await services.storage.order_events(before[-1])]
    assert seqs == journal
    changes = {(m.order.order_id, m.order.status) for m in messages}
    assert (first.order_id, S.FILLED) in changes
    assert second.order_id in {order_id for order_id, _ in changes}


async def _drain(feed: OrderFeed) -> AsyncIterator[OrderEventMessage]:
    """Everything the feed holds now, without waiting for more."""
    with anyio.move_on_after(0.05):
        while True:
            for message in await feed.receive_batch():
                yield message


@pytest.mark.anyio
async def test_after_a_restart_the_newest_seq_is_the_journals_so_a_resume_from_it_misses_nothing(
    shared: Shared,
) -> None:
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as first:
        await _ready(first)
        await submit_one(first, buy())
        head = first.oms.last_seq
    assert head == await shared.storage.last_order_event_seq() > 0
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as second:
        await _ready(second)
        assert second.oms.last_seq >= head
        feed = await second.oms.resume(ALICE, second.oms.last_seq)
        order = await submit_one(second, buy())
        messages = [m async for m in _drain(feed)]
        assert {m.order.order_id for m in messages} == {order.order_id}
        assert messages[0].seq > head


@pytest.mark.anyio
async def test_an_order_the_broker_holds_pending_may_be_cancelled_but_not_yet_modified(
    services: Services, shared: Shared
) -> None:
    shared.venue.hold_acks()
    order = await submit_one(services, buy())
    assert order.status is S.PENDING
    assert order.broker_order_id is not None
    with pytest.raises(Conflict) as info:
        await services.oms.modify(ALICE, order.order_id, ModifyRequest(price=149_000))
    assert info.value.code == "order_pending"
    assert services.oms.get(ALICE, order.order_id).status is S.PENDING
    await services.oms.cancel(ALICE, order.order_id)
    await settle(services)
    assert services.oms.get(ALICE, order.order_id).status is S.CANCELLED


@pytest.mark.anyio
async def test_resuming_too_far_back_is_refused_with_a_code(services: Services) -> None:
    for _ in range(3):
        await submit_one(services, buy())
    await settle(services)

    def open_feeds() -> int:
        return sum(not feed.closed for feed in services.oms._feeds)

    before = open_feeds()
    with pytest.raises(Conflict) as info:
        await services.oms.resume(ALICE, 0, max_replay=2)
    assert info.value.code == "resume_too_far"
    assert open_feeds() == before  # the feed it had opened is closed


@pytest.mark.anyio
async def test_a_retried_client_order_id_never_creates_a_second_order(services: Services) -> None:
    first = await services.oms.submit(ALICE, buy(client_order_id="c-1"))
    again = await services.oms.submit(ALICE, buy(client_order_id="c-1"))
    assert [o.order_id for o in again] == [o.order_id for o in first]
    assert len(services.oms.orders(ALICE)) == 1
    with pytest.raises(Conflict) as info:
        await services.oms.submit(ALICE, buy(quantity=20, client_order_id="c-1"))
    assert info.value.code == "duplicate_client_order_id"
    assert len(services.oms.orders(ALICE)) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_fields", "error", "code"),
    [
        ({"price": 150_003}, ValidationError, "off_tick"),
        (
            {"instrument": "NFO:NIFTY25JANFUT", "quantity": 10, "price": 2_400_000},
            ValidationError,
            "bad_lot",
        ),
        ({"instrument": "NSE:NOPE"}, NotFound, "not_found"),
        ({"account": "ghost"}, NotFound, "not_found"),
    ],
)
async def test_bad_orders_are_refused_and_change_nothing(
    services: Services, request_fields: dict[str, Any], error: type[Exception], code: str
) -> None:
    before = await services.storage.order_events()
    with pytest.raises(error) as info:
        await services.oms.submit(ALICE, buy(**request_fields))
    assert getattr(info.value, "code", None) == code
    assert services.oms.orders(ADMIN) == []
    assert await services.storage.order_events() == before


@pytest.mark.anyio
async def test_authorisation_is_enforced_in_the_oms(services: Services) -> None:
    with pytest.raises(AuthError, match="viewers cannot trade"):
        await services.oms.submit(VIEWER, buy())
    with pytest.raises(AuthError, match="sim user 'simon' can never trade live account 'live1'"):
        await services.oms.submit(SIMON, buy())
    with pytest.raises(AuthError, match="not granted"):
        await services.oms.submit(User("bob", Role.TRADER, Environment.LIVE, accounts=()), buy())
    disabled = User("dee", Role.TRADER, Environment.LIVE, accounts=("live1",), disabled=True)
    with pytest.raises(AuthError, match="disabled"):
        await services.oms.submit(disabled, buy())
    # The sim user trades its sim account, and sees none of the live account's orders.
    (paper,) = await services.oms.submit(SIMON, buy(account="paper"))
    (live,) = await services.oms.submit(ALICE, buy())
    assert [o.order_id for o in services.oms.orders(SIMON)] == [paper.order_id]
    with pytest.raises(NotFound):
        services.oms.get(SIMON, live.order_id)
    with pytest.raises(NotFound):
        await services.oms.cancel(SIMON, live.order_id)
    assert {o.order_id for o in services.oms.orders(ADMIN)} == {paper.order_id, live.order_id}
    assert services.oms.get(VIEWER, live.order_id).order_id == live.order_id


@pytest.mark.anyio
async def test_fills_update_the_order_and_the_position(services: Services, shared: Shared) -> None:
    order = await submit_one(services, buy(quantity=10, price=150_000))
    shared.venue.fill(order.broker_order_id or "", 4, 150_000)
    shared.venue.fill(order.broker_order_id or "", 6, 149_990)
    await settle(services)
    done = services.oms.get(ALICE, order.order_id)
    assert done.status is S.FILLED
    assert done.filled_quantity == 10
    assert done.filled_value == 4 * 150_000 + 6 * 149_990
    (position,) = services.portfolio.positions("live1")
    assert position.quantity == 10
    assert position.buy_value == done.filled_value
    stored = await services.storage.load_positions("live1")
    assert [(p.instrument, p.quantity) for p in stored] == [("NSE:INFY", 10)]
    assert len(await services.storage.load_fills("live1")) == 2


@pytest.mark.anyio
async def test_a_broker_rejection_is_a_rejected_order_with_the_reason(
    services: Services, shared: Shared
) -> None:
    shared.venue.reject_next("RMS: insufficient margin")
    order = await submit_one(services, buy())
    assert order.status is S.REJECTED
    assert order.reason == "RMS: insufficient margin"


@pytest.mark.anyio
async def test_modify_and_cancel_go_through_the_broker(services: Services, shared: Shared) -> None:
    order = await submit_one(services, buy(quantity=10, price=150_000))
    modified = await services.oms.modify(
        ALICE, order.order_id, ModifyRequest(quantity=5, price=149_500)
    )
    await settle(services)
    modified = services.oms.get(ALICE, order.order_id)
    assert (modified.request.quantity, modified.request.price) == (5, 149_500)
    assert modified.status is S.OPEN
    assert S.PENDING_MODIFY in [h.status for h in modified.history]
    with pytest.raises(ValidationError):
        await services.oms.modify(ALICE, order.order_id, ModifyRequest(price=149_501))
    await services.oms.cancel(ALICE, order.order_id)
    await settle(services)
    cancelled = services.oms.get(ALICE, order.order_id)
    assert cancelled.status is S.CANCELLED
    with pytest.raises(Conflict) as info:
        await services.oms.cancel(ALICE, order.order_id)
    assert info.value.code == "order_not_live"


@pytest.mark.anyio
async def test_a_stale_open_update_does_not_undo_a_cancel_in_flight(
    services: Services, shared: Shared
) -> None:
    order = await submit_one(services, buy(quantity=10, price=150_000))
    await settle(services)
    live = services.oms.get(ALICE, order.order_id)
    assert live.status is S.OPEN
    assert live.broker_order_id is not None
    returned: list[Order] = []

    async def cancel() -> None:
        returned.append(await services.oms.cancel(ALICE, order.order_id))

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel)
        with anyio.fail_after(5):
            # Seen at once: the cancel is then waiting for its journal entry, not yet sent.
            while services.oms.get(ALICE, order.order_id).status is not S.PENDING_CANCEL:
                await anyio.lowlevel.checkpoint()
        # An OPEN the broker sent before it had the cancel (a modify's confirmation, say).
        stale = OrderUpdate("v", "A1", live.broker_order_id, S.OPEN)
        services.oms.on_broker_event("v", stale)
        assert services.oms.get(ALICE, order.order_id).status is S.PENDING_CANCEL
    assert returned[0].status in (S.PENDING_CANCEL, S.CANCELLED)
    await settle(services)
    assert services.oms.get(ALICE, order.order_id).status is S.CANCELLED


@pytest.mark.anyio
async def test_freeze_quantity_rejects_or_slices(shared: Shared) -> None:
    sliced_config = {**CONFIG, "oms": {"slice_freeze_quantity": True}}
    request = buy(
        instrument="NFO:NIFTY25JANFUT", quantity=75 * 30, price=2_350_000, client_order_id="big"
    )
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as services:
        await _ready(services)
        with pytest.raises(ValidationError) as info:
            await services.oms.submit(ALICE, request)
        assert info.value.code == "freeze_quantity"
    async with make_host({"shared": shared.plugin()}, sliced_config).running() as services:
        await _ready(services)
        children = await services.oms.submit(ALICE, request)
        freeze = services.instrument("v", "NFO:NIFTY25JANFUT").freeze_quantity  # type: ignore[union-attr]
        assert freeze is not None
        assert sum(c.request.quantity for c in children) == 75 * 30
        assert all(c.request.quantity <= freeze for c in children)
        assert len(children) > 1
        retried = await services.oms.submit(ALICE, request)
        assert [c.order_id for c in retried] == [c.order_id for c in children]
        # Two concurrent submits of one client order id: one set of children, seen by both.
        twin = attrs.evolve(request, client_order_id="twin")
        results: list[list[str]] = []

        async def send() -> None:
            results.append([o.order_id for o in await services.oms.submit(ALICE, twin)])

        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            tg.start_soon(send)
        assert results[0] == results[1]
        assert len(
            [o for o in services.oms.orders(ALICE) if o.request.client_order_id == "twin"]
        ) == len(results[0])


@pytest.mark.anyio
async def test_missed_events_are_reconciled_after_a_reconnect(
    services: Services, shared: Shared
) -> None:
    order = await submit_one(services, buy(quantity=10, price=150_000))
    shared.venue.disconnect("network blip")
    shared.venue.fill(order.broker_order_id or "", 10, 150_000)  # the stream is down: missed
    await settle(services)
    assert services.oms.get(ALICE, order.order_id).status is S.OPEN
    assert services.readiness()["broker:v"] == "network blip"
    shared.venue.resync()

    async def ready() -> bool:
        return services.readiness()["broker:v"] is None

    await eventually(ready)
    await settle(services)
    assert services.oms.get(ALICE, order.order_id).status is S.FILLED
    (report, *_) = await services.storage.audit_entries("reconciliation")
    assert {"order_id": order.order_id, "from": "OPEN", "to": "FILLED"} in report["changes"]
    assert report["position_mismatches"] == []


@pytest.mark.anyio
async def test_a_restarted_host_recovers_and_reconciles(shared: Shared) -> None:
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as services:
        await _ready(services)
        (resting,) = await services.oms.submit(
            ALICE, buy(quantity=5, price=150_000, client_order_id="r")
        )
        (filled,) = await services.oms.submit(ALICE, buy(quantity=3, price=None))
        await settle(services)
        shared.venue.fill(filled.broker_order_id or "", 3, 150_100)
        await settle(services)
    # While the host is down the venue keeps trading.
    shared.venue.fill(services.oms.get(ALICE, resting.order_id).broker_order_id or "", 5, 150_000)
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as services:
        await _ready(services)
        await settle(services)
        assert services.oms.get(ALICE, resting.order_id).status is S.FILLED
        assert services.oms.get(ALICE, filled.order_id).status is S.FILLED
        (position,) = services.portfolio.positions("live1")
        assert position.quantity == 8
        assert position.buy_value == 5 * 150_000 + 3 * 150_100
        again = await services.oms.submit(
            ALICE, buy(quantity=5, price=150_000, client_order_id="r")
        )
        assert [o.order_id for o in again] == [resting.order_id]


@pytest.mark.anyio
async def test_orders_placed_elsewhere_are_reported_not_adopted(
    services: Services, shared: Shared
) -> None:
    outsider = TestBroker(shared.venue, name="outsider")
    await outsider.connect()
    instrument = shared.venue.instrument("NSE:INFY")
    foreign = await outsider.place_order("A1", instrument, buy())
    shared.venue.drop_connection()

    async def reported() -> bool:
        entries = await services.storage.audit_entries("reconciliation", limit=1)
        return bool(entries) and foreign in entries[0]["unknown_broker_orders"]  # type: ignore[operator]

    await eventually(reported)
    assert services.oms.orders(ADMIN) == []
    await outsider.close()


@pytest.mark.anyio
async def test_risk_rejections_carry_a_code_and_create_nothing(shared: Shared) -> None:
    config = {**CONFIG, "risk": {"max_order_quantity": {"enabled": True, "max_quantity": 100}}}
    async with make_host({"shared": shared.plugin()}, config).running() as services:
        await _ready(services)
        with pytest.raises(RiskRejected) as info:
            await services.oms.submit(ALICE, buy(quantity=101))
        assert info.value.code == "max_order_quantity"
        assert services.oms.orders(ALICE) == []
        (ok,) = await services.oms.submit(ALICE, buy(quantity=100))
        assert ok.status in (S.PENDING, S.OPEN)


@pytest.mark.anyio
async def test_the_brokers_first_update_takes_the_place_of_an_unwritten_accepted_entry() -> None:
    storage = MemoryStorage("memory://")
    written: list[OrderEventMessage] = []
    journal = _Journal(storage, written.extend, linger_s=0.05)
    order = Order("o1", buy(), "alice")
    order.transition(S.PENDING)
    other = Order("o2", buy(), "alice")
    other.transition(S.PENDING)
    async with anyio.create_task_group() as tg:
        tg.start_soon(journal.run)
        await journal.write_all([order, other], "created")
        # Both changes wait in the same batch: one row, with the later state.
        order.broker_order_id = "B1"
        journal.add(order, "accepted")
        other.broker_order_id = "B2"
        journal.add(other, "accepted")
        order.transition(S.OPEN)
        journal.add(order, "status")
        await journal.flush()
        # Once the accepted entry is written, the next update is an entry of its own.
        other.transition(S.OPEN)
        journal.add(other, "status")
        await journal.flush()
        tg.cancel_scope.cancel()
    stored = [(e.order.order_id, e.kind, e.order.status) for e in await storage.order_events()]
    assert stored == [
        ("o1", "created", S.PENDING),
        ("o2", "created", S.PENDING),
        ("o1", "status", S.OPEN),
        ("o2", "accepted", S.PENDING),
        ("o2", "status", S.OPEN),
    ]
    assert [(m.seq, m.kind) for m in written] == [
        (i + 1, kind) for i, (_, kind, _) in enumerate(stored)
    ]


# Position conversions and bars, routed by the host --------------------------------------------


def conversion(quantity: int, key: str = "k1", account: str = "A1") -> PositionConversion:
    return PositionConversion("v", account, "NSE:INFY", Product.MIS, Product.NRML, quantity, key)


@pytest.mark.anyio
async def test_the_host_routes_a_conversion_to_the_oms_which_journals_it_once() -> None:
    shared = Shared()
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as services:
        await _ready(services)
        order = await submit_one(services, buy(quantity=10, price=150_000, product=Product.MIS))
        shared.venue.fill(order.broker_order_id or "", 10, 150_000)
        await settle(services)
        services.dispatch("v", conversion(6))
        services.dispatch("v", conversion(6))  # the same key again: applied once
        services.dispatch("v", conversion(100, key="k2"))  # more than held: refused
        services.dispatch("v", conversion(1, key="k3", account="NOBODY"))  # no such account
        await settle(services)
        held = {p.product: p.quantity for p in services.portfolio.positions("live1")}
        assert held == {Product.MIS: 4, Product.NRML: 6}
        order_events = len(await services.storage.order_events())
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as services:
        await _ready(services)
        stored = {p.product: p.quantity for p in await services.storage.load_positions("live1")}
        assert stored == {Product.MIS: 4, Product.NRML: 6}
        held = {p.product: p.quantity for p in services.portfolio.positions("live1")}
        assert held == {Product.MIS: 4, Product.NRML: 6}
        # A conversion is not an order event: nothing new in the journal clients resume from.
        assert len(await services.storage.order_events()) == order_events


@pytest.mark.anyio
async def test_the_host_routes_bars_to_the_hub() -> None:
    shared = Shared()
    async with make_host({"shared": shared.plugin()}, CONFIG).running() as services:
        sub = services.hub.subscribe(["NSE:INFY"])
        bar = Bar("NSE:INFY", 1_737_345_600 * 10**9, 60, 100, 110, 95, 105, volume=7)
        services.dispatch("v", bar)
        assert services.hub.latest_bar("NSE:INFY") == bar
        assert bar in sub.receive_nowait()
        sub.close()
