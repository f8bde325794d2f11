"""The broker conformance suite: the tests every :class:`~hft.contracts.Broker` plugin runs.

:class:`BrokerConformance` is a pytest class. A broker plugin (ours or a third party's)
subclasses it in its own tests and provides one fixture, ``harness``, that yields a
:class:`VenueHarness`: a connected broker plus the few venue-side controls the suite needs
(fill an order, reject the next one, move a price, drop the connection). A fake broker server,
a simulated exchange and :class:`~hft.testing.TestBroker` do those things in different ways,
which is all the harness hides.

The suite checks, through :meth:`Broker.events` and the books: acknowledgement, partial and full
fills, modify, cancel, rejections with reasons, that every sequence of statuses seen for an
order is legal in :data:`hft.model.TRANSITIONS`, that ``orders()`` and ``trades()`` agree with
the events, positions after fills, account isolation (when the login has several accounts),
ticks in each :class:`~hft.model.StreamMode`, unsubscribe, reconnection (``RECONNECTING`` then
``RESYNCED``, with subscriptions kept) and that ``close()`` ends the event stream. Every wait
is bounded by :attr:`BrokerConformance.timeout_s` and every test by ``test_timeout_s``, so a
broken broker fails instead of hanging. Books may trail the events briefly: they are read again
until they agree or the wait runs out. Tests run on trio, as the host does.

What a status sequence may look like: the order counts as ``PENDING`` once ``place_order`` has
returned its id; each update must then be a legal move from the status before it. An update
that repeats the current status is a refreshed view, not a move, and is allowed (brokers send
them, e.g. Kite's ``UPDATE``). ``filled_quantity`` never decreases, and a ``fill_id`` seen twice
must describe the same execution (redelivery after a reconnect is allowed, a reused id is not).

Using it in a plugin's tests (``plugins/hft-acme/tests/test_conformance.py``)::

    from collections.abc import AsyncIterator

    import attrs
    import pytest

    from hft.model import Instrument, Side
    from hft.testing import BrokerConformance, VenueHarness
    from hft_acme.broker import AcmeBroker
    from hft_acme.config import AcmeConfig

    from .fake_server import FakeAcmeServer  # speaks Acme's wire protocol on loopback


    @attrs.define
    class AcmeHarness:
        server: FakeAcmeServer
        broker: AcmeBroker
        account: str
        instrument: Instrument
        other_instrument: Instrument

        def resting_price(self, side: Side) -> int:
            # 20 ticks away from the market on the passive side: the fake never fills it alone.
            last = self.server.last_price(self.instrument.key)
            offset = 20 * self.instrument.tick_size
            return last - offset if side is Side.BUY else last + offset

        async def fill(self, broker_order_id: str, quantity: int, price: int) -> None:
            await self.server.execute(broker_order_id, quantity, price)

        async def reject_next(self, reason: str) -> None:
            self.server.reject_next_order(reason)

        async def move_price(self, instrument: Instrument) -> int:
            price = self.server.last_price(instrument.key) + instrument.tick_size
            await self.server.trade(instrument.key, price)
            return price

        async def drop_connection(self) -> None:
            await self.server.kick_stream_clients()


    class TestAcmeConformance(BrokerConformance):
        timeout_s = 10.0  # optional: the default is 5 s per wait

        @pytest.fixture
        async def harness(self) -> AsyncIterator[VenueHarness]:
            async with FakeAcmeServer.running() as server:
                config = AcmeConfig(url=server.url, user_id="AB1234", api_key="k")
                async with AcmeBroker(config, name="acme") as broker:
                    yield AcmeHarness(
                        server,
                        broker,
                        account="AB1234",
                        instrument=server.instrument("NFO:NIFTY25JANFUT"),
                        other_instrument=server.instrument("NSE:INFY"),
                    )

pytest collects the inherited ``test_*`` methods under ``TestAcmeConformance``; the suite sets
its own ``anyio_backend`` (trio). A test a venue cannot support can be skipped by overriding it
in the subclass with a ``pytest.mark.skip(reason=...)``; say why, since the contract asks for it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Sequence
from typing import (
    Any,
    ClassVar,
    Concatenate,
    Final,
    ParamSpec,
    Protocol,
    TypeVar,
    runtime_checkable,
)

import anyio
import pytest

from hft._errors import BrokerRejected, HftError
from hft.contracts import Broker, BrokerEvent
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
    Position,
    Product,
    Side,
    StreamMode,
    Tick,
)

__all__ = ["BrokerConformance", "VenueHarness"]

E = TypeVar("E")
P = ParamSpec("P")

_MAX_DEPTH: Final = 5
_client_ids = itertools.count(1)


@runtime_checkable
class VenueHarness(Protocol):
    """A connected broker and the venue-side controls the conformance suite drives.

    ``instrument`` must be tradable, with orders of one ``lot_size`` accepted for ``account``.
    ``other_instrument`` is a second subscribable instrument whose ticks travel on the same feed
    (the suite uses its ticks to know that the feed has caught up). Attributes may be plain
    attributes or properties.
    """

    @property
    def broker(self) -> Broker:
        """The broker under test, already connected; the fixture closes it afterwards."""
        ...

    @property
    def account(self) -> str:
        """A broker-side account code from ``broker.accounts()`` to place orders in."""
        ...

    @property
    def instrument(self) -> Instrument: ...

    @property
    def other_instrument(self) -> Instrument: ...

    def resting_price(self, side: Side) -> int:
        """A limit price for ``side`` on ``instrument``'s tick grid that the venue accepts and at
        which an order rests, unfilled, until :meth:`fill` fills it."""
        ...

    async def fill(self, broker_order_id: str, quantity: int, price: int) -> None:
        """Make the venue execute ``quantity`` of a resting order at ``price``."""
        ...

    async def reject_next(self, reason: str) -> None:
        """Make the venue refuse the next order placed, giving ``reason``."""
        ...

    async def move_price(self, instrument: Instrument) -> int:
        """Make ``instrument`` trade at a new last price, different from the one before, that
        fills no resting order of the suite; return it."""
        ...

    async def drop_connection(self) -> None:
        """Break the broker's streaming connection; the broker must reconnect by itself."""
        ...


class _EventLog:
    """Everything the broker's event stream yields during one test.

    :meth:`pump` is the stream's one consumer and runs beside the test, so a wait that times out
    never cancels the broker's own iterator (an async generator would die of it).
    """

    def __init__(self, broker: Broker, timeout_s: float) -> None:
        self.broker = broker
        self.events: list[BrokerEvent] = []
        self.ended = False
        self._timeout_s = timeout_s
        self._changed = anyio.Event()

    async def pump(self) -> None:
        stream = self.broker.events()
        try:
            async for event in stream:
                self.events.append(event)
                self._notify()
            self.ended = True
            self._notify()
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    def mark(self) -> int:
        """The position of the next event: pass it as ``after`` to wait for later ones only."""
        return len(self.events)

    async def wait_for(
        self,
        kind: type[E],
        what: str,
        predicate: Callable[[E], bool],
        *,
        after: int = 0,
    ) -> tuple[int, E]:
        """The first event of ``kind`` from ``after`` on that satisfies ``predicate``."""
        index = after
        try:
            with anyio.fail_after(self._timeout_s):
                while True:
                    while index < len(self.events):
                        event = self.events[index]
                        if isinstance(event, kind) and predicate(event):
                            return index, event
                        index += 1
                    if self.ended:
                        raise AssertionError(
                            f"the event stream ended before {what}{self._recent()}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {self._timeout_s} s{self._recent()}") from None

    async def status(
        self, broker_order_id: str, status: OrderStatus, *, after: int = 0
    ) -> tuple[int, OrderUpdate]:
        return await self.wait_for(
            OrderUpdate,
            f"{status} update for order {broker_order_id}",
            lambda u: u.broker_order_id == broker_order_id and u.status is status,
            after=after,
        )

    async def fill(self, broker_order_id: str, *, skip: Collection[str] = ()) -> Fill:
        _, fill = await self.wait_for(
            Fill,
            f"fill of order {broker_order_id} (other than {sorted(skip)})",
            lambda f: f.broker_order_id == broker_order_id and f.fill_id not in skip,
        )
        return fill

    async def tick(self, key: str, price: int, *, after: int = 0) -> tuple[int, Tick]:
        return await self.wait_for(
            Tick,
            f"tick for {key} at {price}",
            lambda t: t.instrument == key and t.last_price == price,
            after=after,
        )

    async def connection(self, state: ConnectionState, *, after: int = 0) -> int:
        index, _ = await self.wait_for(
            ConnectionEvent, f"{state} connection event", lambda c: c.state is state, after=after
        )
        return index

    async def end(self) -> None:
        """Wait for the stream to end, keeping what it still yields."""
        try:
            with anyio.fail_after(self._timeout_s):
                while not self.ended:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"the event stream did not end within {self._timeout_s} s"
            ) from None

    def updates(self, broker_order_id: str) -> list[OrderUpdate]:
        return [
            e
            for e in self.events
            if isinstance(e, OrderUpdate) and e.broker_order_id == broker_order_id
        ]

    def fills(self, broker_order_id: str) -> list[Fill]:
        return [
            e for e in self.events if isinstance(e, Fill) and e.broker_order_id == broker_order_id
        ]

    def ticks(self, key: str, *, after: int = 0) -> list[Tick]:
        return [e for e in self.events[after:] if isinstance(e, Tick) and e.instrument == key]

    def check(self) -> None:
        """The rules every stream keeps, over everything seen (see the module docstring)."""
        statuses: dict[str, list[OrderStatus]] = {}
        filled: dict[str, int] = {}
        fills: dict[str, Fill] = {}
        for event in self.events:
            if isinstance(event, OrderUpdate | ConnectionEvent):
                assert event.broker == self.broker.name, (
                    f"event names broker {event.broker!r}, not {self.broker.name!r}: {event!r}"
                )
            if isinstance(event, OrderUpdate):
                seen = statuses.setdefault(event.broker_order_id, [OrderStatus.PENDING])
                current = seen[-1]
                seen.append(event.status)
                assert event.status is current or event.status in TRANSITIONS[current], (
                    f"order {event.broker_order_id}: {current} -> {event.status} is not a legal "
                    f"transition (statuses seen: {' -> '.join(seen)})"
                )
                previous = filled.get(event.broker_order_id, 0)
                assert event.filled_quantity >= previous, (
                    f"order {event.broker_order_id}: filled quantity went from {previous} down "
                    f"to {event.filled_quantity}"
                )
                filled[event.broker_order_id] = event.filled_quantity
            elif isinstance(event, Fill):
                earlier = fills.setdefault(event.fill_id, event)
                same = (earlier.broker_order_id, earlier.side, earlier.quantity, earlier.price)
                assert same == (event.broker_order_id, event.side, event.quantity, event.price), (
                    f"fill id {event.fill_id} names two executions: {earlier!r} and {event!r}"
                )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _recent(self) -> str:
        shown = self.events[-15:]
        lines = "\n  ".join(repr(e) for e in shown) or "(none)"
        return f"; the last {len(shown)} of {len(self.events)} events:\n  {lines}"


def _bounded(
    test: Callable[Concatenate[BrokerConformance, P], Awaitable[None]],
) -> Callable[Concatenate[BrokerConformance, P], Coroutine[Any, Any, None]]:
    """Fail the test when it runs past ``test_timeout_s`` (pytest still sees its signature)."""

    @functools.wraps(test)
    async def bounded(self: BrokerConformance, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            with anyio.fail_after(self.test_timeout_s):
                await test(self, *args, **kwargs)
        except TimeoutError:
            raise AssertionError(
                f"{test.__name__} ran past {self.test_timeout_s} s: a broker or harness call "
                "never returned"
            ) from None

    return bounded


class BrokerConformance:
    """The conformance tests; subclass it and provide a ``harness`` fixture (see the module doc).

    :cvar timeout_s: the longest any single wait (for an event or a book to agree) may take.
    :cvar test_timeout_s: the longest a whole test may take, so a broker call that never
        returns fails the test instead of hanging the run.
    :cvar poll_interval_s: how often the books are read again while waiting for them to agree.
    :cvar settle_s: how long a test lets straggling events arrive before it compares the books
        with the events, and before it checks the stream's rules at its end.
    """

    timeout_s: ClassVar[float] = 5.0
    test_timeout_s: ClassVar[float] = 60.0
    poll_interval_s: ClassVar[float] = 0.02
    settle_s: ClassVar[float] = 0.02

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The host runs on trio, so every broker is tested on trio."""
        return "trio"

    # Connecting -------------------------------------------------------------------------------

    @pytest.mark.anyio
    @_bounded
    async def test_connected_broker_lists_accounts_and_instruments(
        self, harness: VenueHarness
    ) -> None:
        assert isinstance(harness, VenueHarness)
        accounts = list(harness.broker.accounts())
        assert accounts, "accounts() is empty after connect()"
        assert harness.account in accounts
        assert len(set(accounts)) == len(accounts), f"accounts() repeats a code: {accounts}"
        keys = {i.key for i in await harness.broker.instruments()}
        assert harness.instrument.key in keys
        assert harness.other_instrument.key in keys
        for side in Side:
            harness.instrument.check_price(harness.resting_price(side))

    # Placing and acknowledging ----------------------------------------------------------------

    @pytest.mark.anyio
    @_bounded
    async def test_placed_order_is_acknowledged_open(self, harness: VenueHarness) -> None:
        async with self._watch(harness) as log:
            client_order_id = _client_order_id()
            request = self._limit(harness, Side.BUY, harness.instrument.lot_size, client_order_id)
            first = await harness.broker.place_order(harness.account, harness.instrument, request)
            assert isinstance(first, str)
            assert first, "place_order returned an empty order id"
            _, update = await log.status(first, OrderStatus.OPEN)
            assert update.account == harness.account
            assert update.instrument in ("", harness.instrument.key)
            assert update.filled_quantity == 0
            assert update.client_order_id in ("", client_order_id)
            second = await self._open(harness, log, Side.BUY, harness.instrument.lot_size)
            assert second != first, "two orders got the same broker order id"
            await self._books_agree(harness, log, [first, second])

    # Fills ------------------------------------------------------------------------------------

    @pytest.mark.anyio
    @_bounded
    async def test_partial_then_full_fill(self, harness: VenueHarness) -> None:
        lot = harness.instrument.lot_size
        price = harness.resting_price(Side.BUY)
        async with self._watch(harness) as log:
            order_id = await self._open(harness, log, Side.BUY, 2 * lot)

            mark = log.mark()
            await harness.fill(order_id, lot, price)
            _, partial = await log.status(order_id, OrderStatus.PARTIALLY_FILLED, after=mark)
            assert partial.filled_quantity == lot
            assert partial.pending_quantity in (None, lot)
            first = await log.fill(order_id)

            mark = log.mark()
            await harness.fill(order_id, lot, price)
            _, done = await log.status(order_id, OrderStatus.FILLED, after=mark)
            assert done.filled_quantity == 2 * lot
            assert done.pending_quantity in (None, 0)
            assert done.average_price is None or done.average_price == price
            second = await log.fill(order_id, skip={first.fill_id})

            assert first.fill_id, "a fill has an empty fill_id"
            assert first.fill_id != second.fill_id, "two executions share a fill_id"
            for fill in (first, second):
                self._assert_fill(harness, fill, order_id, Side.BUY, lot, price)
            await self._books_agree(harness, log, [order_id])

    @pytest.mark.anyio
    @_bounded
    async def test_sell_fill(self, harness: VenueHarness) -> None:
        lot = harness.instrument.lot_size
        price = harness.resting_price(Side.SELL)
        async with self._watch(harness) as log:
            order_id = await self._open(harness, log, Side.SELL, lot)
            mark = log.mark()
            await harness.fill(order_id, lot, price)
            _, done = await log.status(order_id, OrderStatus.FILLED, after=mark)
            assert done.filled_quantity == lot
            self._assert_fill(harness, await log.fill(order_id), order_id, Side.SELL, lot, price)
            await self._books_agree(harness, log, [order_id])

    @pytest.mark.anyio
    @_bounded
    async def test_positions_follow_fills(self, harness: VenueHarness) -> None:
        lot = harness.instrument.lot_size
        before = await self._position(harness, harness.account)
        async with self._watch(harness) as log:
            buy = await self._open(harness, log, Side.BUY, 2 * lot)
            mark = log.mark()
            await harness.fill(buy, 2 * lot, harness.resting_price(Side.BUY))
            await log.status(buy, OrderStatus.FILLED, after=mark)
            sell = await self._open(harness, log, Side.SELL, lot)
            mark = log.mark()
            await harness.fill(sell, lot, harness.resting_price(Side.SELL))
            await log.status(sell, OrderStatus.FILLED, after=mark)

            async def moved() -> None:
                after = await self._position(harness, harness.account)
                assert after[0] == before[0] + lot, f"net quantity {before[0]} -> {after[0]}"
                assert after[1] == before[1] + 2 * lot, f"bought {before[1]} -> {after[1]}"
                assert after[2] == before[2] + lot, f"sold {before[2]} -> {after[2]}"

            await self._eventually(moved)
            await self._books_agree(harness, log, [buy, sell])

    # Modify and cancel ------------------------------------------------------------------------

    @pytest.mark.anyio
    @_bounded
    async def test_modify_quantity_and_price(self, harness: VenueHarness) -> None:
        lot = harness.instrument.lot_size
        # One tick further from the market than the resting price: still resting.
        new_price = harness.resting_price(Side.BUY) - harness.instrument.tick_size
        async with self._watch(harness) as log:
            order_id = await self._open(harness, log, Side.BUY, 2 * lot)
            mark = log.mark()
            await harness.broker.modify_order(
                harness.account,
                order_id,
                harness.instrument,
                ModifyRequest(quantity=3 * lot, price=new_price),
            )
            _, update = await log.status(order_id, OrderStatus.OPEN, after=mark)
            assert update.pending_quantity in (None, 3 * lot)
            # Filling three lots proves the venue took the new quantity.
            mark = log.mark()
            await harness.fill(order_id, 3 * lot, new_price)
            _, done = await log.status(order_id, OrderStatus.FILLED, after=mark)
            assert done.filled_quantity == 3 * lot
            fill = await log.fill(order_id)
            self._assert_fill(harness, fill, order_id, Side.BUY, 3 * lot, new_price)
            await self._books_agree(harness, log, [order_id])

    @pytest.mark.anyio
    @_bounded
    async def test_cancel_open_order(self, harness: VenueHarness) -> None:
        async with self._watch(harness) as log:
            order_id = await self._open(harness, log, Side.BUY, harness.instrument.lot_size)
            mark = log.mark()
            await harness.broker.cancel_order(harness.account, order_id)
            _, update = await log.status(order_id, OrderStatus.CANCELLED, after=mark)
            assert update.filled_quantity == 0
            await self._books_agree(harness, log, [order_id])

    @pytest.mark.anyio
    @_bounded
    async def test_cancel_partially_filled_order(self, harness: VenueHarness) -> None:
        lot = harness.instrument.lot_size
        async with self._watch(harness) as log:
            order_id = await self._open(harness, log, Side.BUY, 2 * lot)
            mark = log.mark()
            await harness.fill(order_id, lot, harness.resting_price(Side.BUY))
            await log.status(order_id, OrderStatus.PARTIALLY_FILLED, after=mark)
            await log.fill(order_id)
            mark = log.mark()
            await harness.broker.cancel_order(harness.account, order_id)
            _, update = await log.status(order_id, OrderStatus.CANCELLED, after=mark)
            assert update.filled_quantity == lot
            await self._books_agree(harness, log, [order_id])

    @pytest.mark.anyio
    @_bounded
    async def test_cancel_unknown_order_fails(self, harness: VenueHarness) -> None:
        with pytest.raises(HftError):
            await harness.broker.cancel_order(harness.account, "999999999999999999")

    @pytest.mark.anyio
    @_bounded
    async def test_filled_order_stays_filled_when_cancelled(self, harness: VenueHarness) -> None:
        lot = harness.instrument.lot_size
        async with self._watch(harness) as log:
            order_id = await self._open(harness, log, Side.BUY, lot)
            mark = log.mark()
            await harness.fill(order_id, lot, harness.resting_price(Side.BUY))
            await log.status(order_id, OrderStatus.FILLED, after=mark)
            await log.fill(order_id)
            # Refusing is right; accepting and doing nothing is tolerated. Cancelling is not.
            with contextlib.suppress(HftError):
                await harness.broker.cancel_order(harness.account, order_id)
            await self._books_agree(harness, log, [order_id])
            book = {u.broker_order_id: u for u in await harness.broker.orders(harness.account)}
            assert book[order_id].status is OrderStatus.FILLED

    # Rejections -------------------------------------------------------------------------------

    @pytest.mark.anyio
    @_bounded
    async def test_venue_rejection_has_a_reason(self, harness: VenueHarness) -> None:
        await harness.reject_next("conformance: insufficient funds")
        request = self._limit(harness, Side.BUY, harness.instrument.lot_size)
        await self._expect_rejection(harness, request)

    @pytest.mark.anyio
    @_bounded
    async def test_off_tick_price_is_rejected(self, harness: VenueHarness) -> None:
        if harness.instrument.tick_size == 1:
            pytest.skip("every price is on the tick grid of this instrument")
        request = self._limit(harness, Side.BUY, harness.instrument.lot_size)
        assert request.price is not None
        off_tick = OrderRequest(
            account=request.account,
            instrument=request.instrument,
            side=request.side,
            quantity=request.quantity,
            price=request.price + 1,
        )
        await self._expect_rejection(harness, off_tick)

    @pytest.mark.anyio
    @_bounded
    async def test_off_lot_quantity_is_rejected(self, harness: VenueHarness) -> None:
        lot = harness.instrument.lot_size
        if lot == 1:
            pytest.skip("every quantity is a whole number of lots of this instrument")
        await self._expect_rejection(harness, self._limit(harness, Side.BUY, lot + 1))

    # Accounts ---------------------------------------------------------------------------------

    @pytest.mark.anyio
    @_bounded
    async def test_accounts_are_isolated(self, harness: VenueHarness) -> None:
        others = [a for a in harness.broker.accounts() if a != harness.account]
        if not others:
            pytest.skip("the login serves a single account")
        other = others[0]
        lot = harness.instrument.lot_size
        before = await self._position(harness, other)
        async with self._watch(harness) as log:
            order_id = await self._open(harness, log, Side.BUY, lot)
            mark = log.mark()
            await harness.fill(order_id, lot, harness.resting_price(Side.BUY))
            await log.status(order_id, OrderStatus.FILLED, after=mark)
            fill = await log.fill(order_id)
            await self._books_agree(harness, log, [order_id])
        assert order_id not in {u.broker_order_id for u in await harness.broker.orders(other)}
        assert fill.fill_id not in {f.fill_id for f in await harness.broker.trades(other)}
        assert await self._position(harness, other) == before

    # Market data ------------------------------------------------------------------------------

    @pytest.mark.anyio
    @pytest.mark.parametrize("mode", list(StreamMode))
    @_bounded
    async def test_subscription_streams_ticks_in_its_mode(
        self, harness: VenueHarness, mode: StreamMode
    ) -> None:
        instrument = harness.instrument
        async with self._watch(harness) as log:
            await harness.broker.subscribe([instrument], mode)
            mark = log.mark()
            price = await harness.move_price(instrument)
            _, tick = await log.tick(instrument.key, price, after=mark)
            self._assert_tick(tick, mode)

    @pytest.mark.anyio
    @_bounded
    async def test_subscribing_again_changes_the_mode(self, harness: VenueHarness) -> None:
        instrument = harness.instrument
        async with self._watch(harness) as log:
            await harness.broker.subscribe([instrument], StreamMode.LTP)
            await harness.broker.subscribe([instrument], StreamMode.FULL)
            mark = log.mark()
            price = await harness.move_price(instrument)
            _, tick = await log.tick(instrument.key, price, after=mark)
            self._assert_tick(tick, StreamMode.FULL)

    @pytest.mark.anyio
    @_bounded
    async def test_unsubscribe_stops_ticks(self, harness: VenueHarness) -> None:
        gone, kept = harness.instrument, harness.other_instrument
        async with self._watch(harness) as log:
            await harness.broker.subscribe([gone, kept], StreamMode.LTP)
            mark = log.mark()
            await log.tick(gone.key, await harness.move_price(gone), after=mark)
            await harness.broker.unsubscribe([gone])
            mark = log.mark()
            stray_price = await harness.move_price(gone)
            # Ticks share one feed, so once this one arrives a tick for ``gone`` would have too.
            await log.tick(kept.key, await harness.move_price(kept), after=mark)
            strays = [t for t in log.ticks(gone.key, after=mark) if t.last_price == stray_price]
            assert not strays, f"ticks kept coming after unsubscribe: {strays}"

    # Connection -------------------------------------------------------------------------------

    @pytest.mark.anyio
    @_bounded
    async def test_reconnect_resyncs_and_keeps_subscriptions(self, harness: VenueHarness) -> None:
        instrument = harness.instrument
        lot = instrument.lot_size
        async with self._watch(harness) as log:
            await harness.broker.subscribe([instrument], StreamMode.QUOTE)
            mark = log.mark()
            await log.tick(instrument.key, await harness.move_price(instrument), after=mark)
            before = await self._open(harness, log, Side.BUY, lot)

            mark = log.mark()
            await harness.drop_connection()
            reconnecting = await log.connection(ConnectionState.RECONNECTING, after=mark)
            resynced = await log.connection(ConnectionState.RESYNCED, after=reconnecting + 1)

            price = await harness.move_price(instrument)
            _, tick = await log.tick(instrument.key, price, after=resynced + 1)
            assert tick.mode is StreamMode.QUOTE
            after = await self._open(harness, log, Side.BUY, lot)
            await self._books_agree(harness, log, [before, after])

    @pytest.mark.anyio
    @_bounded
    async def test_close_ends_the_event_stream(self, harness: VenueHarness) -> None:
        async with self._watch(harness) as log:
            await harness.broker.close()
            await log.end()
            await harness.broker.close()  # idempotent

    # Helpers ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _watch(self, harness: VenueHarness) -> AsyncIterator[_EventLog]:
        """Consume the broker's events for one test, and check the stream's rules at the end."""
        log = _EventLog(harness.broker, self.timeout_s)
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(log.pump)
                try:
                    yield log
                    await self._settle()
                    log.check()
                finally:
                    task_group.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # Report a failed assertion (or a skip) as itself, not inside a task-group wrapper.
            leaves = _leaves(group)
            if len(leaves) == 1 and isinstance(leaves[0], _UNWRAPPED):
                raise leaves[0] from None
            raise

    async def _settle(self) -> None:
        """Give events the broker sent after the last one a test waited for time to arrive."""
        await anyio.sleep(self.settle_s)

    @staticmethod
    def _limit(
        harness: VenueHarness, side: Side, quantity: int, client_order_id: str = ""
    ) -> OrderRequest:
        return OrderRequest(
            account=harness.account,
            instrument=harness.instrument.key,
            side=side,
            quantity=quantity,
            order_type=OrderType.LIMIT,
            price=harness.resting_price(side),
            product=Product.MIS,
            client_order_id=client_order_id or _client_order_id(),
        )

    async def _open(self, harness: VenueHarness, log: _EventLog, side: Side, quantity: int) -> str:
        """Place a resting limit order and wait for it to be acknowledged ``OPEN``."""
        request = self._limit(harness, side, quantity)
        order_id = await harness.broker.place_order(harness.account, harness.instrument, request)
        await log.status(order_id, OrderStatus.OPEN)
        return order_id

    async def _expect_rejection(self, harness: VenueHarness, request: OrderRequest) -> None:
        """The broker refuses ``request`` with a reason: raised, or as a REJECTED update."""
        async with self._watch(harness) as log:
            refusal: BrokerRejected | None = None
            try:
                order_id = await harness.broker.place_order(
                    harness.account, harness.instrument, request
                )
            except BrokerRejected as exc:
                refusal = exc
            if refusal is not None:
                assert refusal.message, "BrokerRejected carries no message"
                return
            _, update = await log.status(order_id, OrderStatus.REJECTED)
            assert update.reason, f"order {order_id} was rejected without a reason"
            await self._books_agree(harness, log, [order_id])

    async def _books_agree(
        self, harness: VenueHarness, log: _EventLog, order_ids: Sequence[str]
    ) -> None:
        """``orders()`` and ``trades()`` show what the events said about these orders."""
        broker, account = harness.broker, harness.account
        await self._settle()
        log.check()  # an illegal sequence is the clearer report when the books disagree too

        async def agree() -> None:
            book = {u.broker_order_id: u for u in await broker.orders(account)}
            trades = await broker.trades(account)
            by_id = {f.fill_id: f for f in trades}
            for order_id in order_ids:
                updates = log.updates(order_id)
                assert updates, f"no update was seen for order {order_id}"
                last = updates[-1]
                entry = book.get(order_id)
                assert entry is not None, f"order {order_id} is missing from orders()"
                assert entry.account == account
                assert (entry.status, entry.filled_quantity) == (
                    last.status,
                    last.filled_quantity,
                ), f"orders() shows {entry!r}, the events last said {last!r}"
                if entry.status is OrderStatus.REJECTED:
                    assert entry.reason, f"orders() shows {order_id} rejected without a reason"
                for fill in log.fills(order_id):
                    booked = by_id.get(fill.fill_id)
                    assert booked is not None, f"fill {fill.fill_id} is missing from trades()"
                    assert (booked.broker_order_id, booked.side, booked.quantity, booked.price) == (
                        fill.broker_order_id,
                        fill.side,
                        fill.quantity,
                        fill.price,
                    ), f"trades() shows {booked!r}, the event said {fill!r}"
                traded = sum(f.quantity for f in trades if f.broker_order_id == order_id)
                assert traded == entry.filled_quantity, (
                    f"trades() hold {traded} of order {order_id}, orders() says "
                    f"{entry.filled_quantity} filled"
                )

        await self._eventually(agree)

    async def _position(self, harness: VenueHarness, account: str) -> tuple[int, int, int]:
        """Net, bought and sold quantity of ``instrument`` (MIS) in ``account``."""
        rows: list[Position] = [
            p
            for p in await harness.broker.positions(account)
            if p.instrument == harness.instrument.key and p.product is Product.MIS
        ]
        for row in rows:
            assert row.account == account, f"positions({account!r}) returned {row!r}"
        return (
            sum(p.quantity for p in rows),
            sum(p.buy_quantity for p in rows),
            sum(p.sell_quantity for p in rows),
        )

    async def _eventually(self, check: Callable[[], Awaitable[None]]) -> None:
        """Run ``check`` until it stops failing, for at most ``timeout_s``.

        Books may trail the event stream by a moment (a broker that builds positions from its
        own feed, say), so they are read again rather than required to agree at once.
        """
        deadline = anyio.current_time() + self.timeout_s
        while True:
            try:
                with anyio.fail_after(self.timeout_s):
                    await check()
            except AssertionError:
                if anyio.current_time() >= deadline:
                    raise
            else:
                return
            await anyio.sleep(self.poll_interval_s)

    @staticmethod
    def _assert_fill(
        harness: VenueHarness, fill: Fill, order_id: str, side: Side, quantity: int, price: int
    ) -> None:
        expected = (order_id, harness.account, harness.instrument.key, side, quantity, price)
        actual = (
            fill.broker_order_id,
            fill.account,
            fill.instrument,
            fill.side,
            fill.quantity,
            fill.price,
        )
        assert actual == expected, f"fill {fill!r} does not match {expected}"
        assert fill.fill_id, "a fill has an empty fill_id"

    @staticmethod
    def _assert_tick(tick: Tick, mode: StreamMode) -> None:
        assert tick.mode is mode, f"subscribed in {mode}, got a {tick.mode} tick"
        assert tick.last_price > 0
        if mode is StreamMode.LTP:
            return
        assert tick.volume is not None, f"a {mode} tick has no volume: {tick!r}"
        touch = tick.best_bid is not None or tick.best_ask is not None
        assert tick.ohlc is not None or touch, (
            f"a {mode} tick has neither ohlc nor bid/ask: {tick!r}"
        )
        if mode is StreamMode.QUOTE:
            return
        depth = tick.depth
        assert depth is not None, f"a full tick has no depth: {tick!r}"
        assert depth.bids or depth.asks, f"a full tick has empty depth: {tick!r}"
        for levels, descending in ((depth.bids, True), (depth.asks, False)):
            assert len(levels) <= _MAX_DEPTH, f"more than {_MAX_DEPTH} depth levels: {tick!r}"
            prices = [level.price for level in levels if level.quantity > 0]
            ordered = sorted(prices, reverse=descending)
            assert prices == ordered, f"depth levels are not best first: {tick!r}"
            assert len(set(prices)) == len(prices), f"a depth price repeats: {tick!r}"


_UNWRAPPED: Final = (Exception, pytest.skip.Exception, pytest.fail.Exception)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def _client_order_id() -> str:
    # Short and alphanumeric: Kite tags and XTS orderUniqueIdentifier allow at most 20 chars.
    return f"conf{next(_client_ids):08d}"
