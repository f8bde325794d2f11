"""Place, modify, cancel, get and list over gRPC, and the order-event stream with resume."""

from __future__ import annotations

from typing import Any

import anyio
import grpc
import pytest
from hft_grpc._generated import common_pb2 as pb
from hft_grpc._generated import orders_pb2

pytestmark = pytest.mark.anyio


async def test_place_modify_cancel(harness: Any) -> None:
    stubs, me = harness.stubs, await harness.as_user("alice")
    order = await harness.place(client_order_id="c-1", tag="smoke")
    assert order.status in (pb.ORDER_STATUS_PENDING, pb.ORDER_STATUS_OPEN)
    assert order.price == "1000.00"
    assert order.account == "live_a"
    assert order.user == "alice"
    assert order.tag == "smoke"
    assert not order.HasField("trigger_price")
    assert not order.HasField("average_price")
    assert order.history[0].status == pb.ORDER_STATUS_NEW
    await harness.settle()
    # A retry with the same client order id returns the same order instead of placing again.
    again = await harness.place(client_order_id="c-1", tag="smoke")
    assert again.order_id == order.order_id

    modified = await harness.call(
        stubs.orders.Modify,
        orders_pb2.ModifyRequest(order_id=order.order_id, price="1000.50", quantity=2),
        metadata=me,
    )
    assert modified.order.price == "1000.50"
    assert modified.order.quantity == 2

    cancelled = await harness.call(
        stubs.orders.Cancel, orders_pb2.CancelRequest(order_id=order.order_id), metadata=me
    )
    assert cancelled.order.status in (pb.ORDER_STATUS_PENDING_CANCEL, pb.ORDER_STATUS_CANCELLED)
    await harness.settle()
    got = await harness.call(
        stubs.orders.Get, orders_pb2.GetRequest(order_id=order.order_id), metadata=me
    )
    assert got.order.status == pb.ORDER_STATUS_CANCELLED


async def test_list_filters_and_pages(harness: Any) -> None:
    me = await harness.as_user("alice")
    ids = [(await harness.place(price=f"100{i}.00")).order_id for i in range(3)]
    await harness.place(account="sim_a")
    listed = await harness.call(
        harness.stubs.orders.List, orders_pb2.ListRequest(account="live_a", limit=2), metadata=me
    )
    assert [o.order_id for o in listed.orders] == ids[::-1][:2]  # newest first
    assert listed.total == 3
    assert listed.next_offset == 2
    rest = await harness.call(
        harness.stubs.orders.List,
        orders_pb2.ListRequest(account="live_a", limit=2, offset=2),
        metadata=me,
    )
    assert [o.order_id for o in rest.orders] == ids[:1]
    assert not rest.HasField("next_offset")
    everything = await harness.call(
        harness.stubs.orders.List, orders_pb2.ListRequest(), metadata=me
    )
    assert everything.total == 4
    # Another trader sees none of them; an admin sees all.
    theirs = await harness.call(
        harness.stubs.orders.List, orders_pb2.ListRequest(), metadata=await harness.as_user("other")
    )
    assert theirs.total == 0
    admin = await harness.call(
        harness.stubs.orders.List, orders_pb2.ListRequest(), metadata=await harness.as_user("root")
    )
    assert admin.total == 4


def _events(messages: list[orders_pb2.StreamEventsResponse]) -> list[orders_pb2.OrderEvent]:
    return [m.event for m in messages if m.HasField("event")]


async def test_order_events_in_order_and_resume_after_a_drop(harness: Any) -> None:
    stubs, me = harness.stubs, await harness.as_user("alice")
    stream = harness.stream(
        stubs.orders.StreamEvents, orders_pb2.StreamEventsRequest(), metadata=me
    )
    started = await stream.next()
    assert started.HasField("started")
    first = await harness.place()
    await harness.settle()
    seen = [(await stream.next()).event for _ in range(2)]  # created, accepted
    assert [e.order.order_id for e in seen] == [first.order_id] * 2
    assert seen[0].kind == orders_pb2.ORDER_EVENT_KIND_CREATED
    assert seen[0].seq > started.started.after_seq
    assert seen[0].seq < seen[1].seq
    stream.cancel()  # the connection drops

    # While nobody listens: another order, a fill, another user's order (never shown).
    second = await harness.place(price="1001.00")
    await harness.place(username="other", account="live_b")
    await harness.settle()
    harness.venue.fill(second.broker_order_id)
    await harness.settle()

    resumed = harness.stream(
        stubs.orders.StreamEvents,
        orders_pb2.StreamEventsRequest(after_seq=seen[-1].seq),
        metadata=me,
    )
    assert (await resumed.next()).started.after_seq == seen[-1].seq
    replayed = [(await resumed.next()).event]
    while replayed[-1].order.status != pb.ORDER_STATUS_FILLED:
        replayed.append((await resumed.next()).event)
    assert {e.order.order_id for e in replayed} == {second.order_id}
    assert replayed[0].kind == orders_pb2.ORDER_EVENT_KIND_CREATED
    # Exactly the journal's entries of alice's accounts since the drop: nothing lost, no repeat.
    journal = await harness.storage.order_events(seen[-1].seq)
    seqs = [e.seq for e in replayed]
    assert seqs == [e.seq for e in journal if e.order.request.account == "live_a"]
    # Then live, with no gap and no repeat.
    third = await harness.place(price="1002.00")
    await harness.settle()
    live = await resumed.next()
    assert live.event.order.order_id == third.order_id
    assert live.event.seq > seqs[-1]
    resumed.cancel()


async def test_a_slow_reader_is_told_to_resume_never_skipped(harness_factory: Any) -> None:
    async with harness_factory(order_backlog=5) as harness:
        me = await harness.as_user("alice")
        # A client that reads nothing, with a tiny HTTP/2 window: the server's writes stall.
        channel = grpc.insecure_channel(
            harness.address,
            options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
        )
        stubs = harness.stubs.__class__(channel)
        stream = harness.stream(
            stubs.orders.StreamEvents, orders_pb2.StreamEventsRequest(), metadata=me
        )
        started = (await stream.next()).started.after_seq
        for i in range(40):
            await harness.place(price=f"{1000 + i}.00")
        await harness.settle()
        messages, error = await stream.until_error()
        received = [m.event for m in messages]
        assert error.code() == grpc.StatusCode.ABORTED
        assert ("hft-error-code", "overflow") in error.trailing_metadata()
        # What did arrive is a gapless prefix of the journal: the client resumes after it.
        journal = await harness.storage.order_events(started)
        assert [e.seq for e in received] == [e.seq for e in journal][: len(received)]
        assert len(received) < len(journal)
        channel.close()


async def test_order_events_across_a_host_restart(harness_factory: Any) -> None:
    async with harness_factory() as first:
        placed = await first.place()
        await first.settle()
        await first.call(
            first.stubs.orders.Cancel,
            orders_pb2.CancelRequest(order_id=placed.order_id),
            metadata=await first.as_user("alice"),
        )
        alice = first.services.auth.user("alice")
        with anyio.fail_after(5):  # nothing open: the restarted OMS publishes nothing at start
            while first.services.oms.get(alice, placed.order_id).status != "CANCELLED":
                await first.settle()
        await first.settle()
        storage = first.storage
        kept = (await storage.order_events(0))[0].seq  # a client saw this before the restart
    async with harness_factory(storage=storage) as harness:
        me = await harness.as_user("alice")
        await harness.settle()  # reconciling with the (new) venue may journal more
        journal = await storage.order_events(0)
        head = journal[-1].seq
        stubs = harness.stubs.orders
        # From now: the resume point is the journal's head, whatever the restart.
        fresh = harness.stream(stubs.StreamEvents, orders_pb2.StreamEventsRequest(), metadata=me)
        assert (await fresh.next()).started.after_seq == head
        # An older seq replays what the client missed before the restart, then goes live.
        resumed = harness.stream(
            stubs.StreamEvents, orders_pb2.StreamEventsRequest(after_seq=kept), metadata=me
        )
        await resumed.next()
        expected = [e.seq for e in journal if e.seq > kept]
        assert [(await resumed.next()).event.seq for _ in expected] == expected
        order = await harness.place(price="1001.00")
        assert (await fresh.next()).event.order.order_id == order.order_id
        assert (await resumed.next()).event.seq > head
        fresh.cancel()
        resumed.cancel()
        # A seq this journal never reached is refused, never silently skipped up to.
        ahead = harness.stream(
            stubs.StreamEvents,
            orders_pb2.StreamEventsRequest(after_seq=head + 10_000),
            metadata=me,
        )
        _, error = await ahead.until_error()
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE
        assert ("hft-error-code", "seq_ahead") in error.trailing_metadata()


async def test_a_client_gone_while_its_stream_opens_leaves_nothing_behind(harness: Any) -> None:
    me = await harness.as_user("alice")
    await harness.place()
    await harness.settle()
    harness.storage.read_delay_s = 0.3  # the replay is slow
    stream = harness.stream(
        harness.stubs.orders.StreamEvents,
        orders_pb2.StreamEventsRequest(after_seq=0),
        metadata=me,
    )
    await anyio.sleep(0.1)
    stream.cancel()  # gone before the replay ends
    oms = harness.services.oms
    # White-box, as no interface shows it: no order feed is left subscribed.
    with anyio.fail_after(5):
        while any(not feed.closed for feed in oms._feeds):  # noqa: ASYNC110
            await anyio.sleep(0.05)
