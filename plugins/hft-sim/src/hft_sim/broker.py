"""The ``sim`` broker: a :class:`~hft.contracts.Broker` trading on a simulated exchange.

One object is the exchange (:mod:`hft_sim.exchange`), its synthetic participants
(:mod:`hft_sim.agents`), the broker's back office (:mod:`hft_sim.accounts`) and the one clock
(:mod:`hft_sim.clock`) that drives them all.

The clock
---------
Everything happens at an instant of simulated time: market steps every ``step_ms``, an order
request reaching the exchange ``latency.order_ms`` (+ jitter) after the call, a report (order
update or fill) reaching the broker ``latency.report_ms`` after the exchange acted. Reports
travel on one ordered channel, and one order's requests reach the exchange in the order they
were made. All randomness comes from generators seeded by ``seed``, so with the ``manual`` clock
the same calls give the same market data, order ids, fills and timestamps.

With the ``realtime`` clock simulated time follows the wall clock (times ``speed``). The
:class:`~hft.contracts.Broker` contract gives a broker no task group of its own, so the clock
runs in the task that reads :meth:`SimBroker.events` (the host's event pump): while it has
nothing to hand out, it sleeps until the next work falls due and does it. Calls on the order
path first bring the simulation up to the present, so a zero-latency order is acknowledged
before ``place_order`` returns. The clock starts in :meth:`connect` and stops in :meth:`close`.
If the reader falls more than two seconds behind, the steps it missed are dropped (logged as
``sim.lagging``) rather than replayed in a burst.

With the ``manual`` clock time moves only when :meth:`SimBroker.advance` or
:meth:`SimBroker.step` is called: tests and benchmarks step the simulation without sleeping.

Orders
------
``place_order`` checks the request against the exchange's rules and the account's funds and
raises :class:`hft.BrokerRejected` with a stable code when it fails; a refused order is not
recorded and changes nothing. The codes: ``unknown_account``, ``unknown_instrument``,
``instrument_mismatch``, ``unsupported_option``, ``bad_product``, ``bad_quantity``,
``bad_lot``, ``freeze_quantity``, ``off_tick``, ``price_band``, ``trigger_crossed``,
``market_closed``, ``no_holdings``, ``insufficient_funds``.

An accepted order is ``PENDING`` at once, then ``OPEN`` when it reaches the book, then
``PARTIALLY_FILLED`` / ``FILLED`` with a :class:`~hft.model.Fill` per execution, or
``CANCELLED`` (an IOC or FOK remainder, a market order that ran out of liquidity, self-trade
prevention, a cancel) or ``EXPIRED`` (a ``DAY`` order at the day reset). ``modify_order`` and
``cancel_order`` answer ``PENDING_MODIFY`` / ``PENDING_CANCEL`` at once and the outcome when the
exchange has acted. Every status change goes through :meth:`hft.model.Order.transition`, so the
sim cannot emit a sequence the state machine forbids.

Self-trade prevention (``self_trade``, default ``cancel_incoming``): an order that would trade
with a resting order of the same sim account is cancelled (what it had filled stays filled);
the resting order keeps its place. Agents are owners too, so they never trade with themselves.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import json
import random
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.lowlevel
import attrs
import structlog

from hft import BrokerRejected, ConfigError, HftError, NetworkError, NotFound, ValidationError
from hft.contracts import Broker, BrokerEvent, EngineCodes
from hft.model import (
    TERMINAL_STATUSES,
    ConnectionEvent,
    ConnectionState,
    Fill,
    Holding,
    Instrument,
    ModifyRequest,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    Product,
    Side,
    StreamMode,
    Tick,
    TimeInForce,
    converter,
    format_price,
)
from hft_sim.accounts import Funds, MarginRates, OpenOrder, SimAccount
from hft_sim.agents import Agents, FairValue, GeometricBrownian, RandomWalk, Replay, read_ticks
from hft_sim.clock import Scheduler, from_ns, to_ns
from hft_sim.config import SimConfig
from hft_sim.exchange import Book, Exchange, engine_order_type, engine_side
from hft_sim.universe import Listing, demo_universe, load_instruments, synthetic_universe

if TYPE_CHECKING:
    from hft._plugins import PluginContext

__all__ = ["STATE_NAMESPACE", "SimBroker", "make_broker"]

log = structlog.get_logger("hft.sim")

C = EngineCodes
S = OrderStatus

#: ``PluginContext.storage`` namespace of the sim's state; the key is the broker instance name.
STATE_NAMESPACE: Final = "sim"
STATE_VERSION: Final = 1
#: Where a ``manual`` clock starts when ``start_at`` is empty: a Wednesday, at NSE's open.
MANUAL_START: Final = "2025-01-01T09:15:00+05:30"
#: How far the ``realtime`` clock may fall behind before missed steps are dropped.
MAX_LAG_NS: Final = 2_000_000_000

#: Engine owners of outside participants (the ``cross`` and ``trade`` controls): never a sim
#: account nor an agent.
OUTSIDE_SELLER: Final = 2_000_001
OUTSIDE_BUYER: Final = 2_000_002

_LIVE: Final = frozenset({S.OPEN, S.PARTIALLY_FILLED})
_TIF: Final = {
    TimeInForce.DAY: C.DAY,
    TimeInForce.GTC: C.GTC,
    TimeInForce.IOC: C.IOC,
    TimeInForce.FOK: C.FOK,
}
_REASONS: Final = {
    C.CANCEL_REQUESTED: "cancelled by the user",
    C.IOC_REMAINDER: "IOC: the unfilled remainder was cancelled",
    C.FOK_UNFILLABLE: "FOK: the order could not be filled in full",
    C.MARKET_REMAINDER: "market order: no more liquidity, the remainder was cancelled",
    C.SELF_TRADE: "self-trade prevention: it would have traded with the account's own order",
    C.EXPIRED: "end of the trading day",
}


@attrs.define(eq=False)
class _ClientOrder:
    """A sim account's order: the broker's view of it, and what the exchange has."""

    order: Order  # the broker's view; ``order_id`` is the broker order id
    account: str
    owner: int
    book: Book
    engine_id: int
    view: OrderUpdate
    x_request: OrderRequest  # the request as the exchange has it
    x_filled: int = 0
    exchange_id: str | None = None
    in_book: bool = False  # live in the engine (resting, or a stop waiting)
    triggered: bool = False
    replacing: bool = False  # a modify (or a restart) is re-entering it: no ack to report
    margin_price: int = 0  # what its unfilled quantity is valued at for margin
    gate_ns: int = 0  # the instant this order's last request reaches the exchange


class _EventStream:
    """:meth:`SimBroker.events`: its one reader also drives a ``realtime`` clock."""

    def __init__(self, broker: SimBroker) -> None:
        self._broker = broker

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> BrokerEvent:
        return await self._broker._next_event()


def make_broker(config: SimConfig, context: PluginContext) -> SimBroker:
    """The factory registered as ``sim``: relative paths are under the host's ``data_dir``."""
    return SimBroker(config, context)


class SimBroker(Broker):
    """A login to the simulated exchange, serving every configured sim account."""

    def __init__(self, config: SimConfig, context: PluginContext) -> None:
        self.config: Final = config
        self.name = context.name
        self._context = context
        self._step_ns = int(config.step_ms * 1_000_000)
        self._realtime = config.clock == "realtime"
        latency = config.latency
        self._order_ns = int(latency.order_ms * 1_000_000)
        self._report_ns = int(latency.report_ms * 1_000_000)
        self._jitter_ns = int(latency.jitter_ms * 1_000_000)
        self._rates = MarginRates.from_percent(config.margin.mis_pct, config.margin.nrml_pct)
        rules = config.rules
        self._utc_offset = dt.timedelta(minutes=rules.utc_offset_minutes)
        self._open_time = dt.time.fromisoformat(rules.market_open)
        self._close_time = dt.time.fromisoformat(rules.market_close)

        listings, fair_values = self._universe(config, context.data_dir)
        band_pct = rules.price_band_pct

        def band_bps(listing: Listing) -> int:
            return round((band_pct or listing.price_band_pct) * 100)

        self.exchange: Final = Exchange(
            listings,
            lambda: context.matching_engine("ext", self_trade=config.self_trade),
            band_bps,
        )
        self._agents = Agents(
            self.exchange,
            fair_values,
            config.seed,
            config.fair_value,
            config.market_makers,
            config.noise_takers,
        )
        self._latency_rng = random.Random(f"{config.seed}:latency")

        self.exchange.register(OUTSIDE_SELLER, _untracked)
        self.exchange.register(OUTSIDE_BUYER, _untracked)
        self._owners: dict[str, int] = {}
        for owner, code in enumerate(config.accounts, start=1):
            self._owners[code] = owner
            self.exchange.register(owner, self._on_client_event)
        self._accounts: dict[str, SimAccount] = {
            code: SimAccount.new(code, account.cash_paise)
            for code, account in config.accounts.items()
        }
        self._other_accounts: dict[str, Any] = {}  # persisted accounts no longer configured
        self._orders: dict[str, _ClientOrder] = {}
        self._by_engine_id: dict[int, _ClientOrder] = {}
        self._live: dict[str, dict[str, _ClientOrder]] = {code: {} for code in config.accounts}
        self._trades: dict[str, list[Fill]] = {code: [] for code in config.accounts}
        self._order_seq = 0
        self._fill_seq = 0
        self._exchange_seq = 0
        self._orphan_marks: dict[str, int] = {}

        self._clock: Scheduler | None = None
        self._anchor_real = 0.0
        self._anchor_sim = 0
        self._agents_start_ns = 0
        self._last_report_ns = 0
        self._trading_date = dt.date.min
        self._settled = False
        self._open = True
        self._last_lag_log = -1e9

        self._subscriptions: dict[str, StreamMode] = {}
        self._buffer: collections.deque[BrokerEvent] = collections.deque()
        self._waker: anyio.Event | None = None
        self._connected = False
        self._closed = False
        self._ended = False
        self._down = False
        self._state_dirty = False
        self._last_save = 0.0
        # What a client has been told (acks, order updates, fills) must survive a crash: such
        # changes are counted, and none is reported before a save that covers it has landed.
        self._client_changes = 0
        self._saved_changes = 0
        self._save_lock = anyio.Lock()  # one save at a time, so an older state never lands last

    # Universe ---------------------------------------------------------------------------------

    @staticmethod
    def _universe(config: SimConfig, data_dir: Path) -> tuple[list[Listing], dict[str, FairValue]]:
        if config.instruments_file is not None:
            listings = load_instruments(data_dir / config.instruments_file)
        elif config.universe == "synthetic":
            listings = synthetic_universe(config.synthetic_instruments, config.seed)
        else:
            listings = demo_universe()
        by_key = {listing.key: listing for listing in listings}
        model = config.fair_value
        unknown = sorted(set(model.replay) - set(by_key))
        if unknown:
            raise ConfigError(f"fair_value.replay: the universe does not list {', '.join(unknown)}")
        fair_values: dict[str, FairValue] = {}
        for i, listing in enumerate(listings):
            key = listing.key
            path = model.replay.get(key)
            if path is not None:
                instrument = listing.instrument
                rows = read_ticks(data_dir / path, instrument.tick_size, instrument.lot_size)
                # The file's first price is the replay's previous close, so its band fits it.
                listings[i] = attrs.evolve(listing, price=rows[0].price)
                fair_values[key] = Replay(rows, model.replay_speed, model.replay_loop)
                continue
            rng = random.Random(f"{config.seed}:fair:{key}")
            volatility = model.volatility_annual_pct or listing.volatility_annual_pct
            if model.model == "gbm":
                fair_values[key] = GeometricBrownian(
                    float(listing.price), volatility, model.drift_annual_pct, rng
                )
            else:
                fair_values[key] = RandomWalk(float(listing.price), volatility, rng)
        return listings, fair_values

    # Connection -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._closed:
            raise NetworkError(f"broker {self.name!r} is closed")
        if self._connected:
            return
        state: dict[str, Any] | None = None
        if self.config.persist:
            raw = await self._context.storage.get_state(STATE_NAMESPACE, self.name)
            if raw:
                try:
                    state = json.loads(raw)
                except ValueError:
                    raise ConfigError(
                        f"the stored state of sim broker {self.name!r} is not JSON"
                    ) from None
        start_ns = self._start_ns()
        if state is not None:
            start_ns = max(start_ns, int(state.get("sim_time_ns", 0)))
        self._clock = Scheduler(start_ns, self._step_ns)
        self._agents_start_ns = start_ns
        self._last_report_ns = start_ns
        self._trading_date = self._date(start_ns)
        if state is not None:
            self._restore(state)
        self._session(start_ns)
        self._reenter()
        self._anchor_real = anyio.current_time()
        self._anchor_sim = start_ns
        self._connected = True
        self._emit(ConnectionEvent(self.name, ConnectionState.CONNECTED, at=from_ns(start_ns)))
        self._run_due()
        log.info(
            "sim.connected",
            broker=self.name,
            clock=self.config.clock,
            seed=self.config.seed,
            instruments=len(self.exchange),
            accounts=list(self._accounts),
            restored=state is not None,
            sim_time=from_ns(start_ns).isoformat(),
        )
        await self._save()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._connected:
            self._connected = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self._save_or_log(running=False)
            self._emit(
                ConnectionEvent(self.name, ConnectionState.DISCONNECTED, "closed", self._now())
            )
        self._ended = True
        self._wake()

    def accounts(self) -> Sequence[str]:
        return tuple(self._accounts)

    def disconnect(self, reason: str = "connection dropped") -> None:
        """Take the stream down: ``RECONNECTING``, then nothing until :meth:`resync`.

        The exchange keeps trading and the book calls keep answering meanwhile.
        """
        if self._down or not self._connected:
            return
        self._emit(ConnectionEvent(self.name, ConnectionState.RECONNECTING, reason, self._now()))
        self._down = True

    def resync(self) -> None:
        """Bring the stream back: ``RESYNCED``, then a snapshot tick per subscription."""
        if not self._down:
            return
        self._down = False
        now = self._require_clock().now_ns
        self._emit(ConnectionEvent(self.name, ConnectionState.RESYNCED, at=from_ns(now)))
        for key, mode in self._subscriptions.items():
            self._emit(self.exchange.books[key].snapshot(mode, now))

    def drop_connection(self, reason: str = "connection dropped") -> None:
        """A short outage: :meth:`disconnect` then :meth:`resync`."""
        self.disconnect(reason)
        self.resync()

    # Orders -----------------------------------------------------------------------------------

    async def place_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest
    ) -> str:
        await self._ready()
        self._run_due()
        account = self._accounts.get(broker_account)
        if account is None:
            raise BrokerRejected(
                f"account {broker_account!r} is not a sim account of {self.name!r}",
                code="unknown_account",
            )
        book = self.exchange.book(instrument.key)
        if book is None:
            raise BrokerRejected(f"unknown instrument {instrument.key}", code="unknown_instrument")
        if request.instrument != book.key:
            raise BrokerRejected(
                f"request names {request.instrument}, not {book.key}", code="instrument_mismatch"
            )
        if request.extras:
            raise BrokerRejected(
                f"unsupported order options: {', '.join(sorted(request.extras))}",
                code="unsupported_option",
            )
        book.check(request)
        self._check_open(book)
        margin = self._check_funds(account, book, request, None)

        clock = self._require_clock()
        self._order_seq += 1
        broker_order_id = f"S{self._order_seq:09d}"
        now = from_ns(clock.now_ns)
        order = Order(broker_order_id, request, user=broker_account, created_at=now)
        order.transition(S.PENDING, at=now)
        rec = _ClientOrder(
            order,
            broker_account,
            self._owners[broker_account],
            book,
            self.exchange.new_id(),
            self._initial_view(broker_order_id),
            request,
            margin_price=margin.price,
        )
        account.add_order(margin)
        self._orders[broker_order_id] = rec
        self._by_engine_id[rec.engine_id] = rec
        self._live[broker_account][broker_order_id] = rec
        self._publish(rec)
        self._request(rec, lambda: self._arrive(rec))
        self._run_due()
        await self._durable()
        return broker_order_id

    async def modify_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        request: ModifyRequest,
    ) -> None:
        await self._ready()
        self._run_due()
        rec = self._owned(broker_account, broker_order_id)
        book = rec.book
        if instrument.key != book.key:
            raise BrokerRejected(
                f"order {broker_order_id} is for {book.key}, not {instrument.key}",
                code="instrument_mismatch",
            )
        order = rec.order
        if order.status is S.PENDING:
            raise BrokerRejected(
                f"order {broker_order_id} is not acknowledged yet", code="order_pending"
            )
        if order.status not in _LIVE:
            raise BrokerRejected(
                f"order {broker_order_id} is {order.status}", code="order_not_live"
            )
        current = order.request
        kind = request.order_type or current.order_type
        priced = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        stop = kind in (OrderType.STOP, OrderType.STOP_LIMIT)
        try:
            changed = attrs.evolve(
                current,
                quantity=request.quantity or current.quantity,
                order_type=kind,
                price=(request.price or current.price) if priced else None,
                trigger_price=(request.trigger_price or current.trigger_price) if stop else None,
                time_in_force=request.time_in_force or current.time_in_force,
            )
        except ValidationError as exc:
            raise BrokerRejected(exc.message, code=exc.code) from None
        if changed.quantity <= order.filled_quantity:
            raise BrokerRejected(
                f"order {broker_order_id}: quantity {changed.quantity} does not exceed the "
                f"{order.filled_quantity} already filled",
                code="bad_quantity",
            )
        retrigger = stop and (
            changed.trigger_price != current.trigger_price or kind is not current.order_type
        )
        if retrigger or not rec.triggered:
            book.check(changed)
        else:  # a triggered stop-limit: its trigger has been reached on purpose
            book.check(attrs.evolve(changed, order_type=OrderType.LIMIT, trigger_price=None))
        self._check_open(book)
        self._check_funds(self._accounts[broker_account], book, changed, rec)
        order.transition(S.PENDING_MODIFY, at=self._now())
        self._publish(rec)
        self._request(rec, lambda: self._arrive_modify(rec, changed))
        self._run_due()
        await self._durable()

    async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
        await self._ready()
        self._run_due()
        rec = self._owned(broker_account, broker_order_id)
        status = rec.order.status
        if status.is_terminal:
            raise BrokerRejected(f"order {broker_order_id} is {status}", code="order_not_live")
        if status is S.PENDING_CANCEL:
            raise BrokerRejected(
                f"order {broker_order_id} is already being cancelled", code="cancel_pending"
            )
        rec.order.transition(S.PENDING_CANCEL, at=self._now())
        self._publish(rec)
        self._request(rec, lambda: self._arrive_cancel(rec))
        self._run_due()
        await self._durable()

    # Books and portfolio ----------------------------------------------------------------------

    async def orders(self, broker_account: str) -> list[OrderUpdate]:
        await self._ready()
        self._account_or_404(broker_account)
        return [rec.view for rec in self._orders.values() if rec.account == broker_account]

    async def trades(self, broker_account: str) -> list[Fill]:
        await self._ready()
        self._account_or_404(broker_account)
        return list(self._trades[broker_account])

    async def positions(self, broker_account: str) -> list[Position]:
        await self._ready()
        return self._account_or_404(broker_account).position_list(self._mark)

    async def holdings(self, broker_account: str) -> list[Holding]:
        await self._ready()
        return self._account_or_404(broker_account).holding_list(self._mark)

    def funds(self, broker_account: str) -> Funds:
        """The account's cash, PnL and margin as the broker reckons them now."""
        return self._account_or_404(broker_account).funds(self._mark, self._rates)

    def equity(self, broker_account: str) -> int:
        """What the account would be worth with everything closed at the last prices."""
        return self._account_or_404(broker_account).equity(self._mark)

    # Admin ------------------------------------------------------------------------------------

    def top_up(self, broker_account: str, paise: int) -> int:
        """Add ``paise`` of cash (negative withdraws, never below zero); return the new cash."""
        account = self._account_or_404(broker_account)
        try:
            account.top_up(paise)
        except ValueError as exc:
            raise ValidationError(str(exc), code="insufficient_cash") from None
        self._state_dirty = True
        log.info("sim.funds_topped_up", broker=self.name, account=broker_account, paise=paise)
        return account.cash

    def reset_funds(self, broker_account: str) -> int:
        """Cash back to the configured starting amount, today's realised PnL to zero."""
        account = self._account_or_404(broker_account)
        account.starting_cash = self.config.accounts[broker_account].cash_paise
        account.reset_funds()
        self._state_dirty = True
        log.info("sim.funds_reset", broker=self.name, account=broker_account, cash=account.cash)
        return account.cash

    def end_day(self) -> None:
        """End the trading day now: expire ``DAY`` orders, settle every account, and begin the
        next day at once (see :mod:`hft_sim.accounts` for the settlement rules)."""
        self._require_clock()
        self._end_day()
        self._run_due()

    # Market data ------------------------------------------------------------------------------

    async def instruments(self) -> list[Instrument]:
        await self._ready()
        return [book.instrument for book in self.exchange]

    async def quotes(self, instruments: Sequence[Instrument]) -> dict[str, Tick]:
        await self._ready()
        now = self._require_clock().now_ns
        books = self.exchange.books
        return {
            i.key: books[i.key].snapshot(StreamMode.FULL, now)
            for i in instruments
            if i.key in books
        }

    async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
        await self._ready()
        books = self.exchange.books
        for instrument in instruments:
            if instrument.key not in books:
                raise NotFound(f"the sim does not list {instrument.key}")
        now = self._require_clock().now_ns
        for instrument in instruments:
            self._subscriptions[instrument.key] = mode
            self._emit(books[instrument.key].snapshot(mode, now))

    async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
        await self._ready()
        for instrument in instruments:
            self._subscriptions.pop(instrument.key, None)

    def events(self) -> AsyncIterator[BrokerEvent]:
        return _EventStream(self)

    def take_events(self) -> list[BrokerEvent]:
        """Remove and return what is buffered, for code that steps a ``manual`` clock itself
        instead of reading :meth:`events`."""
        taken = list(self._buffer)
        self._buffer.clear()
        return taken

    # Simulation controls ----------------------------------------------------------------------

    @property
    def now(self) -> dt.datetime:
        """The simulated time."""
        return self._now()

    def advance(self, ms: float) -> int:
        """Run a ``manual`` clock forward by ``ms`` simulated milliseconds; return the steps run."""
        clock = self._manual_clock()
        return clock.run_until(clock.now_ns + int(ms * 1_000_000), self._market_step)

    def step(self, count: int = 1) -> None:
        """Run a ``manual`` clock to the end of the ``count``-th next market step."""
        clock = self._manual_clock()
        clock.run_until(clock.next_step_ns + (count - 1) * self._step_ns, self._market_step)

    def order(self, broker_order_id: str) -> Order:
        """A copy of the broker's view of one of its orders (request, status, fills)."""
        rec = self._orders.get(broker_order_id)
        if rec is None:
            raise NotFound(f"no order {broker_order_id!r}")
        return rec.order.snapshot()

    def book(self, key: str) -> Book:
        """The exchange's book for ``key``."""
        book = self.exchange.book(key)
        if book is None:
            raise NotFound(f"the sim does not list {key}")
        return book

    def fair_value(self, key: str) -> float:
        """The hidden fair value of ``key`` in price units."""
        self.book(key)
        return self._agents.fair_value(key)

    def set_fair_value(self, key: str, price: int) -> None:
        """Move ``key``'s fair value (agents follow from the next step)."""
        book = self.book(key)
        book.instrument.check_price(price)
        self._agents.set_fair_value(key, float(price))

    def cross(self, key: str, side: Side, quantity: int, price: int) -> None:
        """An outside participant sends an immediate-or-cancel order: it trades with whatever
        the book holds at ``price`` or better, and the rest is cancelled."""
        book = self.book(key)
        book.instrument.check_price(price)
        self._require_clock()
        owner = OUTSIDE_BUYER if side is Side.BUY else OUTSIDE_SELLER
        self.exchange.submit(
            book, self.exchange.new_id(), owner, engine_side(side), price, quantity, C.LIMIT, C.IOC
        )
        self._run_due()

    def trade(self, key: str, price: int, quantity: int | None = None) -> None:
        """Print a trade at ``price`` between two outside participants (one rests, the other
        takes); it trades first with any order in the book at ``price`` or better."""
        book = self.book(key)
        book.instrument.check_price(price)
        self._require_clock()
        size = quantity or book.instrument.lot_size
        exchange = self.exchange
        seller = exchange.new_id()
        exchange.submit(book, seller, OUTSIDE_SELLER, C.SELL, price, size)
        exchange.submit(book, exchange.new_id(), OUTSIDE_BUYER, C.BUY, price, size, C.LIMIT, C.IOC)
        exchange.cancel(book, seller)
        self._run_due()

    async def save(self) -> None:
        """Write the state to storage now (it is also written periodically and on close)."""
        await self._save()

    # The clock --------------------------------------------------------------------------------

    def _start_ns(self) -> int:
        text = self.config.start_at or (MANUAL_START if not self._realtime else "")
        if text:
            start = dt.datetime.fromisoformat(text)
            if start.tzinfo is None:
                start = start.replace(tzinfo=dt.timezone(self._utc_offset))
            return to_ns(start)
        return to_ns(dt.datetime.now(dt.UTC))

    def _require_clock(self) -> Scheduler:
        if self._clock is None:
            raise NetworkError(f"broker {self.name!r} is not connected")
        return self._clock

    def _manual_clock(self) -> Scheduler:
        clock = self._require_clock()
        if self._realtime:
            raise ValidationError("the sim's clock is realtime: it cannot be stepped by hand")
        return clock

    def _now(self) -> dt.datetime:
        return from_ns(self._require_clock().now_ns)

    def _real_now_ns(self) -> int:
        elapsed = anyio.current_time() - self._anchor_real
        return self._anchor_sim + int(elapsed * 1e9 * self.config.speed)

    def _run_due(self) -> None:
        """Do everything due by now: the wall clock's now (realtime) or the clock's (manual)."""
        clock = self._require_clock()
        if not self._realtime:
            clock.run_until(clock.now_ns, self._market_step)
            return
        target = self._real_now_ns()
        skipped = clock.skip_steps(target - MAX_LAG_NS)
        if skipped:
            now = anyio.current_time()
            if now - self._last_lag_log > 10:
                self._last_lag_log = now
                log.warning("sim.lagging", broker=self.name, skipped_steps=skipped)
        clock.run_until(target, self._market_step)

    async def _next_event(self) -> BrokerEvent:
        await anyio.lowlevel.checkpoint()  # even a busy stream lets other tasks run
        buffer = self._buffer
        while not buffer:
            if self._ended:
                raise StopAsyncIteration
            if not (self._realtime and self._connected):
                await self._sleep(None)
                continue
            self._run_due()
            if buffer:
                break
            now = anyio.current_time()
            interval = self.config.persist_interval_ms / 1000
            if self._state_dirty and self.config.persist and now - self._last_save >= interval:
                await self._save_or_log()
                continue
            clock = self._require_clock()
            delay = max(0.0, (clock.next_due_ns - self._real_now_ns()) / 1e9 / self.config.speed)
            if self._state_dirty and self.config.persist:
                delay = min(delay, max(0.0, self._last_save + interval - now))
            await self._sleep(delay)
        if not isinstance(buffer[0], (Tick, ConnectionEvent)):
            await self._durable_or_wait()
        return buffer.popleft()

    async def _sleep(self, delay: float | None) -> None:
        waker = self._waker = anyio.Event()
        if delay is None:
            await waker.wait()
            return
        with anyio.move_on_after(delay):
            await waker.wait()

    def _wake(self) -> None:
        waker = self._waker
        if waker is not None:
            self._waker = None
            waker.set()

    def _emit(self, event: BrokerEvent) -> None:
        if not isinstance(event, (Tick, ConnectionEvent)):
            self._client_changes += 1
        if self._ended or (self._down and not isinstance(event, ConnectionEvent)):
            return
        self._buffer.append(event)
        self._wake()

    # The market step and the trading day ------------------------------------------------------

    def _market_step(self) -> None:
        clock = self._require_clock()
        now = clock.now_ns
        self._session(now)
        if self._open:
            self._agents.step(self._step_ns / 1e9, now - self._agents_start_ns)
        subscriptions = self._subscriptions
        for book in self.exchange:
            if book.dirty:
                book.dirty = False
                mode = subscriptions.get(book.key)
                if mode is not None:
                    self._emit(book.snapshot(mode, now))
        self._state_dirty = True

    def _date(self, ns: int) -> dt.date:
        return (from_ns(ns) + self._utc_offset).date()

    def _session(self, now_ns: int) -> None:
        """Turn the day and open or close the market as simulated time passes."""
        local = from_ns(now_ns) + self._utc_offset
        date = local.date()
        hours = self.config.rules.market_hours
        if not self._settled and (
            date > self._trading_date
            or (hours and date == self._trading_date and local.time() >= self._close_time)
        ):
            self._end_day()
            self._settled = True
        if self._settled and date > self._trading_date:
            self._trading_date, self._settled = date, False
        self._open = (
            not self._settled
            and date == self._trading_date
            and (not hours or self._open_time <= local.time() < self._close_time)
        )

    def _end_day(self) -> None:
        """Expire ``DAY`` orders; settle accounts once their last reports are in (at once
        while connecting, when no order is in a book yet)."""
        for account_orders in self._live.values():
            for rec in list(account_orders.values()):
                # Orders not in a book (restored, not yet re-entered) expire here directly.
                if not rec.in_book and rec.order.request.time_in_force is TimeInForce.DAY:
                    self._finish(rec, S.EXPIRED, _REASONS[C.EXPIRED])
        if not self._connected:
            self._settle_day()
            return
        for book in self.exchange:
            self.exchange.expire_day(book)
        self._require_clock().at(self._report_at(), self._settle_day)

    def _settle_day(self) -> None:
        for account in self._accounts.values():
            account.end_day(self._mark)
        for book in self.exchange:
            book.market.new_day()
            book.set_band()
            book.dirty = True
        # Today's book restarts with the orders still live (GTC ones and any in flight).
        self._orders = {oid: rec for oid, rec in self._orders.items() if not rec.order.is_terminal}
        for trades in self._trades.values():
            trades.clear()
        self._by_engine_id = {rec.engine_id: rec for rec in self._orders.values()}
        self._state_dirty = True
        log.info("sim.day_reset", broker=self.name, sim_time=self._now().isoformat())

    # Exchange side ----------------------------------------------------------------------------

    def _request(self, rec: _ClientOrder, action: Callable[[], None]) -> None:
        """Schedule one of ``rec``'s requests at the exchange, after the order latency."""
        clock = self._require_clock()
        delay = self._order_ns
        if self._jitter_ns:
            delay += int(self._latency_rng.random() * self._jitter_ns)
        rec.gate_ns = max(clock.now_ns + delay, rec.gate_ns)
        clock.at(rec.gate_ns, action)
        self._wake()

    def _report_at(self) -> int:
        """When a report made now reaches the broker: reports travel in order."""
        self._last_report_ns = max(
            self._require_clock().now_ns + self._report_ns, self._last_report_ns
        )
        return self._last_report_ns

    def _report(self, deliver: Callable[[], None]) -> None:
        self._require_clock().at(self._report_at(), deliver)

    def _arrive(self, rec: _ClientOrder) -> None:
        """A new order reaches the exchange."""
        if rec.order.is_terminal:  # the broker expired it while it travelled (a day reset)
            return
        request = rec.x_request
        book = rec.book
        if not self._open:
            self._report(lambda: self._finish(rec, S.REJECTED, "the market is closed"))
            return
        for price in (request.price, request.trigger_price):
            if price is not None and not book.in_band(price):
                reason = (
                    f"price {book.instrument.format(price)} is outside today's band "
                    f"{book.instrument.format(book.band_low)}-"
                    f"{book.instrument.format(book.band_high)}"
                )
                self._report(functools.partial(self._finish, rec, S.REJECTED, reason))
                return
        self._exchange_seq += 1
        rec.exchange_id = f"X{self._exchange_seq:012d}"
        self._enter(rec, request, request.quantity - rec.x_filled)

    def _enter(self, rec: _ClientOrder, request: OrderRequest, quantity: int) -> None:
        order_type = request.order_type
        if rec.triggered and order_type is OrderType.STOP_LIMIT:
            order_type = OrderType.LIMIT  # already triggered before a restart
        self.exchange.submit(
            rec.book,
            rec.engine_id,
            rec.owner,
            engine_side(request.side),
            request.price or 0,
            quantity,
            engine_order_type(order_type),
            _TIF[request.time_in_force],
            request.trigger_price or 0,
        )

    def _arrive_modify(self, rec: _ClientOrder, changed: OrderRequest) -> None:
        if not rec.in_book:
            self._report(lambda: self._modify_refused(rec, "the order is no longer open"))
            return
        open_quantity = changed.quantity - rec.x_filled
        if open_quantity <= 0:
            filled = rec.x_filled
            self._report(lambda: self._modify_refused(rec, f"{filled} are already filled"))
            return
        old = rec.x_request
        rec.x_request = changed
        in_place = (
            changed.order_type is old.order_type
            and changed.time_in_force is old.time_in_force
            and changed.trigger_price == old.trigger_price
            and (
                changed.order_type is OrderType.LIMIT
                or (changed.order_type is OrderType.STOP_LIMIT and rec.triggered)
            )
        )
        if in_place:
            assert changed.price is not None  # a limit-type request always has one
            if not self.exchange.modify(rec.book, rec.engine_id, changed.price, open_quantity):
                rec.x_request = old
                self._report(lambda: self._modify_refused(rec, "the exchange refused it"))
            return
        # Another type, time in force or trigger: the exchange takes it as a new entry.
        rec.replacing = True
        try:
            self.exchange.cancel(rec.book, rec.engine_id)
            rec.triggered = False
            self._report(lambda: self._modified(rec, changed))
            self._enter(rec, changed, open_quantity)
        finally:
            rec.replacing = False

    def _arrive_cancel(self, rec: _ClientOrder) -> None:
        if not rec.in_book or not self.exchange.cancel(rec.book, rec.engine_id):
            self._report(lambda: self._cancel_refused(rec))

    def _on_client_event(
        self,
        book: Book,
        order_id: int,
        kind: int,
        quantity: int,
        price: int,
        remaining: int,
        reason: int,
    ) -> None:
        """What the engine did with a sim account's order, turned into reports."""
        rec = self._by_engine_id.get(order_id)
        if rec is None:
            return
        if kind == C.FILL:
            rec.x_filled += quantity
            rec.in_book = remaining > 0
            self._fill_seq += 1
            fill_id = f"F{self._fill_seq:012d}"
            self._report(lambda: self._filled(rec, fill_id, quantity, price))
        elif kind == C.ACCEPTED:
            rec.in_book = True
            if not rec.replacing:
                self._report(lambda: self._opened(rec))
        elif kind == C.CANCELLED:
            rec.in_book = False
            if rec.replacing and reason == C.CANCEL_REQUESTED:
                return
            status = S.EXPIRED if reason == C.EXPIRED else S.CANCELLED
            text = _REASONS.get(reason, "cancelled by the exchange")
            self._report(lambda: self._finish(rec, status, text))
        elif kind == C.MODIFIED:
            changed = rec.x_request
            self._report(lambda: self._modified(rec, changed))
        elif kind == C.TRIGGERED:
            rec.triggered = True
        elif kind == C.REJECTED and not rec.in_book:
            self._report(lambda: self._finish(rec, S.REJECTED, "rejected by the exchange"))

    # Broker side: reports arriving ------------------------------------------------------------

    def _opened(self, rec: _ClientOrder) -> None:
        order = rec.order
        order.exchange_order_id = rec.exchange_id
        if order.status is S.PENDING:
            order.transition(S.OPEN, at=self._now())
        self._publish(rec)

    def _filled(self, rec: _ClientOrder, fill_id: str, quantity: int, price: int) -> None:
        order = rec.order
        request = order.request
        now = self._now()
        order.exchange_order_id = rec.exchange_id
        if order.status is S.PENDING:
            order.transition(S.OPEN, at=now)
        order.record_fill(quantity, price)
        account = self._accounts[rec.account]
        account.remove_order(self._margin_order(rec, quantity))
        account.apply_fill(rec.book.key, request.product, request.side, quantity, price)
        fill = Fill(
            fill_id=fill_id,
            broker_order_id=order.order_id,
            account=rec.account,
            instrument=rec.book.key,
            side=request.side,
            quantity=quantity,
            price=price,
            at=now,
        )
        self._trades[rec.account].append(fill)
        self._emit(fill)
        if not order.is_terminal:
            done = order.remaining_quantity == 0
            order.transition(S.FILLED if done else S.PARTIALLY_FILLED, at=now)
        self._publish(rec)

    def _finish(self, rec: _ClientOrder, status: OrderStatus, reason: str) -> None:
        order = rec.order
        if order.is_terminal:
            return
        if not order.can_transition(status):
            status = S.CANCELLED  # e.g. a cancel was pending when the exchange refused it
        order.transition(status, reason, at=self._now())
        self._publish(rec)

    def _modified(self, rec: _ClientOrder, changed: OrderRequest) -> None:
        order = rec.order
        if order.is_terminal:
            return
        account = self._accounts[rec.account]
        account.remove_order(self._margin_order(rec, order.remaining_quantity))
        order.request = changed
        rec.margin_price = self._order_price(rec.book, changed)
        account.add_order(self._margin_order(rec, order.remaining_quantity))
        if order.status is S.PENDING_MODIFY:
            order.transition(self._live_status(order), at=self._now())
        self._publish(rec)

    def _modify_refused(self, rec: _ClientOrder, why: str) -> None:
        order = rec.order
        if order.status is S.PENDING_MODIFY:
            order.transition(self._live_status(order), f"modify refused: {why}", at=self._now())
            self._publish(rec)

    def _cancel_refused(self, rec: _ClientOrder) -> None:
        order = rec.order
        if order.status is S.PENDING_CANCEL:
            reason = "cancel refused: the order is no longer open"
            order.transition(self._live_status(order), reason, at=self._now())
            self._publish(rec)

    @staticmethod
    def _live_status(order: Order) -> OrderStatus:
        return S.PARTIALLY_FILLED if order.filled_quantity else S.OPEN

    def _publish(self, rec: _ClientOrder) -> None:
        """Refresh ``rec``'s view and stream it."""
        order = rec.order
        request = order.request
        terminal = order.status in TERMINAL_STATUSES
        rec.view = OrderUpdate(
            broker=self.name,
            account=rec.account,
            broker_order_id=order.order_id,
            status=order.status,
            instrument=rec.book.key,
            quantity=request.quantity,
            price=request.price,
            filled_quantity=order.filled_quantity,
            pending_quantity=0 if terminal else order.remaining_quantity,
            average_price=order.average_price,
            client_order_id=request.client_order_id,
            exchange_order_id=order.exchange_order_id,
            reason=order.reason,
            at=order.history[-1].at,
        )
        if terminal and self._live[rec.account].pop(order.order_id, None) is not None:
            remaining = order.remaining_quantity
            if remaining:
                self._accounts[rec.account].remove_order(self._margin_order(rec, remaining))
        self._state_dirty = True
        self._emit(rec.view)

    def _initial_view(self, broker_order_id: str) -> OrderUpdate:
        return OrderUpdate(self.name, "", broker_order_id, S.PENDING)

    # Checks -----------------------------------------------------------------------------------

    async def _ready(self) -> None:
        await anyio.lowlevel.checkpoint()  # a scheduling point, as a real broker's I/O would be
        if self._closed:
            raise NetworkError(f"broker {self.name!r} is closed")
        if not self._connected:
            raise NetworkError(f"broker {self.name!r} is not connected")

    def _account_or_404(self, code: str) -> SimAccount:
        account = self._accounts.get(code)
        if account is None:
            raise NotFound(f"account {code!r} is not a sim account of {self.name!r}")
        return account

    def _owned(self, broker_account: str, broker_order_id: str) -> _ClientOrder:
        self._account_or_404(broker_account)
        rec = self._orders.get(broker_order_id)
        if rec is None or rec.account != broker_account:
            raise NotFound(f"no order {broker_order_id!r} in account {broker_account!r}")
        return rec

    def _check_open(self, book: Book) -> None:
        if not self._open:
            raise BrokerRejected(
                f"{book.key}: the market is closed (open {self.config.rules.market_open}-"
                f"{self.config.rules.market_close})",
                code="market_closed",
            )

    def _mark(self, key: str) -> int:
        book = self.exchange.books.get(key)
        if book is not None:
            return book.market.last
        return self._orphan_marks.get(key, 0)

    def _order_price(self, book: Book, request: OrderRequest) -> int:
        if request.order_type is OrderType.STOP:
            return request.trigger_price or book.market.last
        return request.price or book.market.last

    def _margin_order(self, rec: _ClientOrder, quantity: int) -> OpenOrder:
        request = rec.order.request
        return OpenOrder(rec.book.key, request.product, request.side, quantity, rec.margin_price)

    def _check_funds(
        self,
        account: SimAccount,
        book: Book,
        request: OrderRequest,
        replacing: _ClientOrder | None,
    ) -> OpenOrder:
        """Refuse ``request`` if the account cannot deliver or afford it; return what it will
        count for in margin."""
        filled = replacing.order.filled_quantity if replacing is not None else 0
        new = OpenOrder(
            book.key,
            request.product,
            request.side,
            request.quantity - filled,
            self._order_price(book, request),
        )
        old = None
        if replacing is not None:
            old = self._margin_order(replacing, replacing.order.remaining_quantity)
        if request.product is Product.CNC and request.side is Side.SELL:
            selling = account.pending(book.key, Product.CNC, Side.SELL)
            if old is not None and old.product is Product.CNC and old.side is Side.SELL:
                selling -= old.quantity
            sellable = account.sellable(book.key) - selling
            if new.quantity > sellable:
                raise BrokerRejected(
                    f"{book.key}: a CNC sell of {new.quantity} needs shares; account "
                    f"{account.code!r} can deliver {max(0, sellable)}",
                    code="no_holdings",
                )
        needed = account.margin_change(self._rates, new, old)
        if needed > 0:
            available = account.funds(self._mark, self._rates).available
            if needed > available:
                raise BrokerRejected(
                    f"insufficient funds in account {account.code!r}: the order needs "
                    f"₹{format_price(needed, 2)} of margin, "
                    f"₹{format_price(max(0, available), 2)} is available",
                    code="insufficient_funds",
                )
        return new

    # Persistence ------------------------------------------------------------------------------

    async def _save(self, *, running: bool = True, unless_covers: int | None = None) -> None:
        if not self.config.persist or self._clock is None:
            return
        async with self._save_lock:
            if unless_covers is not None and self._saved_changes >= unless_covers:
                return  # the save this one queued behind already stored those changes
            changes = self._client_changes
            data = json.dumps(self._state(running), separators=(",", ":")).encode()
            self._state_dirty = False  # a change made while this is written sets it again
            try:
                await self._context.storage.put_state(STATE_NAMESPACE, self.name, data)
            except BaseException:
                self._state_dirty = True
                raise
            self._saved_changes = max(self._saved_changes, changes)
            self._last_save = anyio.current_time()

    async def _durable(self) -> None:
        """Return once every client-visible change so far is stored; raise if it cannot be.

        Callers that arrive while a save is being written share the next one (group commit).
        """
        wanted = self._client_changes
        while self.config.persist and self._clock is not None and self._saved_changes < wanted:
            await self._save(unless_covers=wanted)

    async def _durable_or_wait(self) -> None:
        """:meth:`_durable` for the event stream: a store that fails holds the client's
        events back (they are never reported unsaved) and is retried, never fatal."""
        backoff = 0.05
        while True:
            try:
                await self._durable()
                return
            except HftError as exc:
                log.warning("sim.save_failed", broker=self.name, error=str(exc))
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _save_or_log(self, *, running: bool = True) -> None:
        """Save; a store that fails is retried at the next interval, never fatal to the feed."""
        try:
            await self._save(running=running)
        except HftError as exc:
            self._last_save = anyio.current_time()
            log.warning("sim.save_failed", broker=self.name, error=str(exc))

    def _state(self, running: bool) -> dict[str, Any]:
        clock = self._require_clock()
        accounts = dict(self._other_accounts)
        accounts.update({code: a.to_json() for code, a in self._accounts.items()})
        return {
            "version": STATE_VERSION,
            "running": running,
            "saved_at": dt.datetime.now(dt.UTC).isoformat(),
            "sim_time_ns": clock.now_ns,
            "trading_date": self._trading_date.isoformat(),
            "settled": self._settled,
            "seq": [self._order_seq, self._fill_seq, self._exchange_seq],
            "accounts": accounts,
            "markets": {
                book.key: [*book.market.to_json(), self._agents.fair_value(book.key)]
                for book in self.exchange
            },
            "orders": [self._order_json(rec) for rec in self._orders.values()],
            "trades": [converter.unstructure(f) for t in self._trades.values() for f in t],
        }

    @staticmethod
    def _order_json(rec: _ClientOrder) -> dict[str, Any]:
        order = rec.order
        return {
            "id": order.order_id,
            "account": rec.account,
            "request": converter.unstructure(order.request),
            "status": str(order.status),
            "filled_quantity": order.filled_quantity,
            "filled_value": order.filled_value,
            "reason": order.reason,
            "created_at": order.created_at.isoformat(),
            "updated_at": order.history[-1].at.isoformat(),
            "exchange_id": rec.exchange_id,
            "triggered": rec.triggered,
            "margin_price": rec.margin_price,
        }

    def _restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ConfigError(
                f"the stored state of sim broker {self.name!r} has version "
                f"{state.get('version')!r}; this hft-sim reads version {STATE_VERSION}"
            )
        for code, data in state.get("accounts", {}).items():
            if code in self._accounts:
                self._accounts[code] = SimAccount.from_json(code, data)
            else:
                self._other_accounts[code] = data
        if "trading_date" in state:
            self._trading_date = dt.date.fromisoformat(state["trading_date"])
            self._settled = bool(state.get("settled", False))
        seq = state.get("seq", [0, 0, 0])
        self._order_seq, self._fill_seq, self._exchange_seq = (int(v) for v in seq)
        for key, row in state.get("markets", {}).items():
            book = self.exchange.book(key)
            if book is None:
                self._orphan_marks[key] = int(row[4])
                continue
            book.market = book.market.from_json(row[:8])
            book.set_band()
            self._agents.set_fair_value(key, float(row[8]))
        for row in state.get("orders", ()):
            self._restore_order(row)
        for row in state.get("trades", ()):
            fill = converter.structure(row, Fill)
            if fill.account in self._trades:
                self._trades[fill.account].append(fill)

    def _restore_order(self, row: dict[str, Any]) -> None:
        account = row["account"]
        request = converter.structure(row["request"], OrderRequest)
        book = self.exchange.book(request.instrument)
        if account not in self._accounts or book is None:
            return
        created = dt.datetime.fromisoformat(row["created_at"])
        order = Order(
            row["id"],
            request,
            user=account,
            status=S(row["status"]),
            exchange_order_id=row.get("exchange_id"),
            filled_quantity=int(row["filled_quantity"]),
            filled_value=int(row["filled_value"]),
            reason=row.get("reason", ""),
            created_at=created,
        )
        order.history[-1] = attrs.evolve(
            order.history[-1], at=dt.datetime.fromisoformat(row["updated_at"])
        )
        rec = _ClientOrder(
            order,
            account,
            self._owners[account],
            book,
            self.exchange.new_id(),
            self._initial_view(order.order_id),
            request,
            x_filled=order.filled_quantity,
            exchange_id=row.get("exchange_id"),
            triggered=bool(row.get("triggered", False)),
        )
        self._orders[order.order_id] = rec
        self._by_engine_id[rec.engine_id] = rec
        if not order.is_terminal:
            self._live[account][order.order_id] = rec
            rec.margin_price = int(row.get("margin_price") or self._order_price(book, request))
            self._accounts[account].add_order(self._margin_order(rec, order.remaining_quantity))
        self._publish_quietly(rec)

    def _publish_quietly(self, rec: _ClientOrder) -> None:
        down, self._down = self._down, True
        try:
            self._publish(rec)
        finally:
            self._down = down

    def _reenter(self) -> None:
        """Put restored live orders back in the books, oldest first."""
        for rec in list(self._orders.values()):
            order = rec.order
            if order.is_terminal:
                continue
            status = order.status
            if status is S.PENDING:
                self._request(rec, functools.partial(self._arrive, rec))
                continue
            rec.replacing = True
            try:
                self._enter(rec, order.request, order.remaining_quantity)
            finally:
                rec.replacing = False
            if status is S.PENDING_MODIFY:
                # The modify was lost with the process that took it.
                reason = "modify lost in a restart"
                order.transition(self._live_status(order), reason, at=self._now())
                self._publish(rec)
            elif status is S.PENDING_CANCEL:
                self._request(rec, functools.partial(self._arrive_cancel, rec))


def _untracked(
    book: Book, order_id: int, kind: int, quantity: int, price: int, remaining: int, reason: int
) -> None:
    """Outside participants' orders are immediate or cancelled at once: nothing to track."""
