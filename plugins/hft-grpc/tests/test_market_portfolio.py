"""Quotes, tick streams (modes, conflation for a slow client), portfolio reads, deadlines, and
the drain on shutdown."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import grpc
import pytest
from hft_grpc._generated import common_pb2 as pb
from hft_grpc._generated import market_data_pb2 as md
from hft_grpc._generated import orders_pb2, portfolio_pb2

from hft.model import Bar, StreamMode, Tick

pytestmark = pytest.mark.anyio
S = grpc.StatusCode


def code_of(error: grpc.RpcError) -> str:
    return dict(error.trailing_metadata())["hft-error-code"]


async def test_quotes(harness: Any) -> None:
    me = await harness.as_user("viewer")
    reply = await harness.call(
        harness.stubs.market.Quotes,
        md.QuotesRequest(instruments=["NSE:TCS", "NSE:INFY", "NSE:TCS"]),
        metadata=me,
    )
    assert [q.instrument for q in reply.quotes] == ["NSE:TCS", "NSE:INFY"]
    assert reply.quotes[1].last_price == 150000
    assert reply.quotes[1].price_scale == 2
    for instruments, status in [
        ([], S.INVALID_ARGUMENT),
        ([f"NSE:X{i}" for i in range(51)], S.INVALID_ARGUMENT),
        (["NSE:NOPE"], S.NOT_FOUND),
        (["garbage"], S.INVALID_ARGUMENT),
    ]:
        error = await harness.fails(
            harness.stubs.market.Quotes, md.QuotesRequest(instruments=instruments), metadata=me
        )
        assert error.code() == status


def _ticks(message: md.StreamTicksResponse) -> list[md.Tick]:
    return [e.tick for e in message.events if e.HasField("tick")]


async def test_stream_ticks_in_each_mode(harness: Any) -> None:
    me = await harness.as_user("viewer")
    ltp = harness.stream(
        harness.stubs.market.StreamTicks,
        md.StreamTicksRequest(instruments=["NSE:INFY"], mode=pb.STREAM_MODE_LTP),
        metadata=me,
    )
    full = harness.stream(
        harness.stubs.market.StreamTicks,
        md.StreamTicksRequest(instruments=["NSE:INFY", "NSE:TCS"], mode=pb.STREAM_MODE_FULL),
        metadata=me,
    )
    first = await ltp.next()
    connections = [e.connection for e in first.events if e.HasField("connection")]
    assert connections[0].broker == "venue"
    assert connections[0].state == md.CONNECTION_STATE_CONNECTED
    seen: dict[str, md.Tick] = {}
    while "NSE:INFY" not in seen:
        seen.update((t.instrument, t) for t in _ticks(await full.next()))
    harness.venue.set_last_price("NSE:INFY", 150500)
    tick = None
    while tick is None or tick.last_price != 150500:
        ticks = _ticks(await ltp.next())
        tick = ticks[-1] if ticks else tick
    assert tick.mode == pb.STREAM_MODE_LTP
    assert not tick.HasField("ohlc")
    assert not tick.HasField("volume")
    assert list(tick.bids) == []
    while seen["NSE:INFY"].last_price != 150500:
        seen.update((t.instrument, t) for t in _ticks(await full.next()))
    deep = seen["NSE:INFY"]
    assert deep.mode == pb.STREAM_MODE_FULL
    assert deep.HasField("ohlc")
    assert len(deep.bids) > 1
    assert deep.bids[0].price < deep.last_price <= deep.asks[0].price
    ltp.cancel()
    full.cancel()


async def test_a_slow_client_gets_the_latest_tick_not_a_backlog(harness: Any) -> None:
    me = await harness.as_user("viewer")
    channel = grpc.insecure_channel(
        harness.address,
        options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
    )
    stubs = harness.stubs.__class__(channel)
    stream = harness.stream(
        stubs.market.StreamTicks,
        md.StreamTicksRequest(instruments=["NSE:INFY", "NSE:TCS"], mode=pb.STREAM_MODE_FULL),
        metadata=me,
    )
    await stream.next()
    hub = harness.services.hub
    published = 3000
    for i in range(published):  # the client reads nothing meanwhile
        hub.publish(Tick("NSE:INFY", StreamMode.FULL, 150000 + 5 * i))
        hub.publish(Tick("NSE:TCS", StreamMode.FULL, 400000 + 5 * i))
        if i % 100 == 0:
            await anyio.sleep(0.001)
    received: list[md.Tick] = []
    while not received or received[-1].last_price != 150000 + 5 * (published - 1):
        received.extend(t for t in _ticks(await stream.next()) if t.instrument == "NSE:INFY")
    assert len(received) < published / 2
    seqs = [t.seq for t in received]
    assert seqs == sorted(seqs)
    assert seqs[-1] == hub.seq("NSE:INFY")  # the latest, whatever was skipped
    stream.cancel()
    channel.close()


async def test_bars_are_skipped_and_the_stream_goes_on(harness: Any) -> None:
    me = await harness.as_user("viewer")
    stream = harness.stream(
        harness.stubs.market.StreamTicks,
        md.StreamTicksRequest(instruments=["NSE:INFY"], mode=pb.STREAM_MODE_LTP),
        metadata=me,
    )
    await stream.next()
    hub = harness.services.hub
    hub.publish_bar(Bar("NSE:INFY", 0, 60, 150000, 150000, 150000, 150000))
    hub.publish(Tick("NSE:INFY", StreamMode.LTP, 151000))
    ticks: list[md.Tick] = []
    while not ticks or ticks[-1].last_price != 151000:
        message = await stream.next()
        assert all(e.HasField("tick") or e.HasField("connection") for e in message.events)
        ticks.extend(_ticks(message))
    stream.cancel()


async def test_stream_refusals(harness: Any) -> None:
    me = await harness.as_user("viewer")
    for request, metadata, status in [
        (md.StreamTicksRequest(instruments=[]), me, S.INVALID_ARGUMENT),
        (md.StreamTicksRequest(instruments=["NSE:NOPE"]), me, S.NOT_FOUND),
        (md.StreamTicksRequest(instruments=["NSE:INFY"], mode=9), me, S.INVALID_ARGUMENT),
        (md.StreamTicksRequest(instruments=["NSE:INFY"]), (), S.UNAUTHENTICATED),
    ]:
        stream = harness.stream(harness.stubs.market.StreamTicks, request, metadata=metadata)
        messages, error = await stream.until_error()
        assert messages == []
        assert error.code() == status
    stream = harness.stream(
        harness.stubs.orders.StreamEvents, orders_pb2.StreamEventsRequest(), metadata=()
    )
    _, error = await stream.until_error()
    assert (error.code(), code_of(error)) == (S.UNAUTHENTICATED, "missing_credentials")


async def test_positions_holdings_accounts(harness: Any) -> None:
    me = await harness.as_user("alice")
    order = await harness.place(price="1500.00")
    await harness.settle()
    harness.venue.fill(order.broker_order_id)
    await harness.settle()
    positions = await harness.call(
        harness.stubs.portfolio.Positions, portfolio_pb2.PositionsRequest(), metadata=me
    )
    [position] = positions.positions
    assert (position.account, position.instrument, position.quantity) == ("live_a", "NSE:INFY", 1)
    assert position.average_price == "1500.00"
    assert position.buy_value == "1500.00"
    assert position.product == pb.PRODUCT_MIS
    holdings = await harness.call(
        harness.stubs.portfolio.Holdings,
        portfolio_pb2.HoldingsRequest(account="live_a"),
        metadata=me,
    )
    assert all(h.account == "live_a" for h in holdings.holdings)
    other = await harness.as_user("other")
    theirs = await harness.call(
        harness.stubs.portfolio.Positions, portfolio_pb2.PositionsRequest(), metadata=other
    )
    assert list(theirs.positions) == []
    for method, request in [
        (harness.stubs.portfolio.Positions, portfolio_pb2.PositionsRequest(account="live_a")),
        (harness.stubs.portfolio.Holdings, portfolio_pb2.HoldingsRequest(account="live_a")),
    ]:
        error = await harness.fails(method, request, metadata=other)
        assert (error.code(), code_of(error)) == (S.PERMISSION_DENIED, "forbidden")
    error = await harness.fails(
        harness.stubs.portfolio.Positions,
        portfolio_pb2.PositionsRequest(account="nope"),
        metadata=other,
    )
    assert error.code() == S.NOT_FOUND
    admin = await harness.call(
        harness.stubs.portfolio.Accounts,
        portfolio_pb2.AccountsRequest(),
        metadata=await harness.as_user("root"),
    )
    assert [a.account_id for a in admin.accounts] == ["live_a", "live_b", "sim_a"]
    assert admin.accounts[2].environment == pb.ENVIRONMENT_SIM


async def test_deadlines(harness: Any) -> None:
    me = await harness.as_user("alice")
    harness.storage.delay_s = 0.5
    error = await harness.fails(
        harness.stubs.orders.Place,
        orders_pb2.PlaceRequest(
            account="live_a", instrument="NSE:INFY", side=1, quantity=1, price="1000.00"
        ),
        metadata=me,
        timeout=0.1,
    )
    assert error.code() == S.DEADLINE_EXCEEDED
    # Once begun, a placement runs to its end: the order exists, nothing is half-done.
    harness.storage.delay_s = 0
    alice = harness.services.auth.user("alice")
    with anyio.fail_after(5):
        while not [o for o in harness.services.oms.orders(alice) if o.broker_order_id]:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    assert len(harness.services.oms.orders(alice)) == 1
    # A stream with a deadline ends with it, and its subscription is gone.
    stream = harness.stream(
        harness.stubs.market.StreamTicks,
        md.StreamTicksRequest(instruments=["NSE:INFY"]),
        metadata=me,
        timeout=0.3,
    )
    _, error = await stream.until_error()
    assert error.code() == S.DEADLINE_EXCEEDED
    with anyio.fail_after(5):
        while harness.services.hub.metrics().subscribers:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def test_shutdown_drains_calls_and_ends_streams(harness_factory: Any) -> None:
    async with harness_factory() as harness:
        me = await harness.as_user("alice")
        channel = grpc.insecure_channel(harness.address)
        stubs = harness.stubs.__class__(channel)
        ticks = harness.stream(
            stubs.market.StreamTicks, md.StreamTicksRequest(instruments=["NSE:INFY"]), metadata=me
        )
        events = harness.stream(
            stubs.orders.StreamEvents, orders_pb2.StreamEventsRequest(), metadata=me
        )
        await ticks.next()
        await events.next()
        harness.storage.delay_s = 0.5
        request = orders_pb2.PlaceRequest(
            account="live_a", instrument="NSE:INFY", side=1, quantity=1, price="1000.00"
        )
        placing = stubs.orders.Place.future(request, metadata=me, timeout=10)
        await anyio.sleep(0.1)  # the placement is in flight when the host stops
    placed = await anyio.to_thread.run_sync(placing.result)
    assert placed.orders[0].status in (pb.ORDER_STATUS_PENDING, pb.ORDER_STATUS_OPEN)
    for stream in (ticks, events):
        _, error = await stream.until_error()
        assert (error.code(), code_of(error)) == (S.UNAVAILABLE, "shutting_down")
    channel.close()


async def test_streams_per_user_are_bounded(harness_factory: Any) -> None:
    async with harness_factory(max_streams_per_user=2) as harness:
        me = await harness.as_user("viewer")
        request = md.StreamTicksRequest(instruments=["NSE:INFY"])
        first = harness.stream(harness.stubs.market.StreamTicks, request, metadata=me)
        second = harness.stream(
            harness.stubs.orders.StreamEvents, orders_pb2.StreamEventsRequest(), metadata=me
        )
        await first.next()
        await second.next()
        third = harness.stream(harness.stubs.market.StreamTicks, request, metadata=me)
        _, error = await third.until_error()
        assert (error.code(), code_of(error)) == (S.RESOURCE_EXHAUSTED, "too_many_streams")
        # Another user is not affected; a closed stream frees its place.
        other = harness.stream(
            harness.stubs.market.StreamTicks, request, metadata=await harness.as_user("alice")
        )
        await other.next()
        first.cancel()
        refusals: list[str] = []
        with anyio.fail_after(5):
            while True:
                again = harness.stream(harness.stubs.market.StreamTicks, request, metadata=me)
                try:
                    await again.next()
                    break
                except grpc.RpcError as refused:  # the close is still on its way
                    refusals.append(code_of(refused))
                    await anyio.sleep(0.05)
        assert set(refusals) <= {"too_many_streams"}
        for stream in (second, other, again):
            stream.cancel()
