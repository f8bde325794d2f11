"""A deterministic in-process venue, and the :class:`~hft.contracts.Broker` that trades on it.

:class:`TestVenue` is an exchange and a broker's back office in one object: a small instrument
universe with last prices, every account's orders and fills, and positions built from those
fills. :class:`TestBroker` is one login's connection to a venue and honours the whole ``Broker``
contract. The venue outlives its brokers, so a crash test can abandon a broker (and its host),
connect a new one to the same venue and reconcile against the books; kept in a ``state_file``, it
outlives the process too (see *Persistence*).

Nothing here is random and no decision reads the clock: the same calls give the same events, ids
and books. Timestamps come from ``clock`` (the wall clock unless a test passes its own), read
once per call that changes the venue: everything one call does carries the same time.

How an order lives
------------------
``place_order`` checks the request at once and raises :class:`~hft.BrokerRejected` with a stable
``code`` when the venue would refuse it outright, the way a broker's REST API answers an input
error; nothing is recorded then. The codes: ``unknown_account``, ``unknown_instrument``,
``instrument_mismatch``, ``not_tradable`` (an index), ``bad_lot``, ``freeze_quantity``,
``off_tick``, ``trigger_crossed`` (a stop whose trigger the last price has already passed) and
``unsupported_option`` (any ``extras``). :meth:`TestVenue.reject_next` produces the other kind
of refusal: the order is accepted, given an id, and then rejected by an ``OrderUpdate`` with the
reason, like an RMS or exchange rejection.

An accepted order is acknowledged before ``place_order`` returns: a ``PENDING`` update then an
``OPEN`` one (stop orders waiting for their trigger are ``OPEN`` too). From then on:

- by default the venue fills nothing by itself. A test fills an order with :meth:`TestVenue.fill`
  or moves the market with :meth:`TestVenue.set_last_price`, which triggers stops whose trigger
  it reaches and fills every resting order it makes marketable, in full: a limit order at its
  own price, a market (or triggered stop-market) order at the new last price;
- with ``instant=True`` the venue skips the ``PENDING`` update and fills an order that is
  marketable on arrival at once, in full, at the last price (a market order always is). This
  is the mode for throughput benchmarks and for a host that should simply work;
- either way an ``IOC`` or ``FOK`` order is settled on acknowledgement: filled at the last price
  when marketable, else cancelled.

:meth:`TestVenue.hold_acks` keeps new orders ``PENDING`` until :meth:`TestVenue.ack` or
:meth:`TestVenue.reject`. A cancel goes ``PENDING_CANCEL`` → ``CANCELLED``; a modify goes
``PENDING_MODIFY`` → back to ``OPEN`` (or ``PARTIALLY_FILLED``), and is refused with
:class:`~hft.BrokerRejected` while the order is not yet acknowledged or no longer live, or when the
new quantity does not exceed what is already filled. :meth:`TestVenue.expire_day_orders` ends the
session: every live ``DAY`` order becomes ``EXPIRED``. Every status change goes through
:meth:`hft.model.Order.transition`, so the venue cannot emit a sequence the state machine forbids.

Events
------
Every connected broker receives every order update and fill (one login sees all its accounts,
as an XTS dealer does), and ticks for the instruments it subscribed, in the mode it asked for;
subscribing sends a snapshot tick at once. Each broker has an unbounded event buffer, so venue
controls never block; its consumer must keep reading :meth:`TestBroker.events`, or take what is
buffered with :meth:`TestBroker.take_events` (handy in tests that step the venue synchronously).

:meth:`TestVenue.disconnect` takes the stream down: brokers emit ``RECONNECTING``, and until
:meth:`TestVenue.resync` nothing is delivered and nothing is replayed later, though the venue
keeps trading and the REST-like calls (orders, trades, positions, placing) keep working.
``resync`` emits ``RESYNCED`` and a snapshot tick per subscription: the books are the truth to
reconcile against. :meth:`TestVenue.drop_connection` does both at once.

Persistence
-----------
A real broker outlives the host that trades on it; a crash test needs a venue that does as well.
With ``state_file`` the venue is kept as an append-only operation log, one JSON object per line:
a header with what the venue was built from (accounts, mode, instruments and opening prices),
then every call that changed it (``place``, ``modify``, ``cancel``, ``set_last_price``, ``fill``,
``reject_next``, ``hold_acks``, ``ack``, ``reject``, ``expire_day_orders``) with its arguments
and its instant. A record is flushed and fsynced before the call returns, as a broker's
acknowledgement is durable; a refused call changes nothing and is not logged. Connection controls
are not logged: a stream belongs to a process, and a rebuilt venue starts connected.

A venue built on an existing file replays it before any broker can attach, so no event is sent,
and since the venue is deterministic it comes back with the same order ids, exchange ids, fill
ids, timestamps, books and positions. A torn last line (a crash mid-write, so never
acknowledged) is dropped; a file written by a venue built differently raises
:class:`~hft.ConfigError`, and one that does not replay raises :class:`~hft.ValidationError`.
Without a file nothing is written and no record is even built.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import anyio.lowlevel
import attrs

from hft._errors import BrokerRejected, ConfigError, NetworkError, NotFound, ValidationError
from hft.contracts import Broker, BrokerEvent
from hft.model import (
    ConnectionEvent,
    ConnectionState,
    Depth,
    DepthLevel,
    Fill,
    Instrument,
    InstrumentType,
    ModifyRequest,
    Ohlc,
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
    utcnow,
)

__all__ = ["DEFAULT_UNIVERSE", "TestBroker", "TestVenue"]

_NIFTY_EXPIRY: Final = dt.date(2025, 1, 30)

#: The default instruments and their opening prices (price units, scale 2): NSE equities with
#: 5-paise and 1-paisa ticks, the NIFTY 50 index (not tradable) and a NIFTY future (lot 75).
DEFAULT_UNIVERSE: Final[Mapping[Instrument, int]] = {
    Instrument("NSE", "INFY", 408065, "NSE", "INFOSYS", tick_size=5): 150000,
    Instrument("NSE", "RELIANCE", 738561, "NSE", "RELIANCE INDUSTRIES", tick_size=5): 125000,
    Instrument("NSE", "TCS", 2953217, "NSE", "TATA CONSULTANCY SERV", tick_size=5): 400000,
    Instrument("NSE", "IDEA", 3677697, "NSE", "VODAFONE IDEA", tick_size=1): 750,
    Instrument(
        "NSE", "NIFTY 50", 256265, "INDICES", "NIFTY 50", InstrumentType.INDEX, tick_size=5
    ): 2345000,
    Instrument(
        "NFO",
        "NIFTY25JANFUT",
        13238786,
        "NFO-FUT",
        "NIFTY",
        InstrumentType.FUTURE,
        tick_size=5,
        lot_size=75,
        freeze_quantity=1800,
        expiry=_NIFTY_EXPIRY,
    ): 2350000,
}

_LIVE: Final = frozenset({OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
_ACKED: Final = frozenset({OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
_STOPS: Final = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
_DEPTH_LEVELS: Final = 5
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LOG_VERSION: Final = 1

_T = TypeVar("_T")


@attrs.define
class _Market:
    """One instrument's trading day so far."""

    instrument: Instrument
    previous_close: int
    open: int
    last: int
    high: int
    low: int
    last_quantity: int = 0
    volume: int = 0

    def trade(self, price: int, quantity: int) -> None:
        self.last, self.last_quantity = price, quantity
        self.high, self.low = max(self.high, price), min(self.low, price)
        self.volume += quantity


@attrs.define(eq=False)
class _VenueOrder:
    account: str
    instrument: Instrument
    order: Order  # order_id is the broker order id; its transitions police the state machine
    update: OrderUpdate  # the latest view, as orders() reports it
    triggered: bool = False

    @property
    def marketable_as(self) -> OrderType | None:
        """The type the order trades as right now, or None while a stop waits for its trigger."""
        kind = self.order.request.order_type
        if kind in _STOPS and not self.triggered:
            return None
        return {OrderType.STOP: OrderType.MARKET, OrderType.STOP_LIMIT: OrderType.LIMIT}.get(
            kind, kind
        )


@attrs.define
class _PositionBook:
    position: Position
    # Open lots, oldest first, as (signed quantity, price): realised PnL is matched FIFO, which
    # keeps it an exact integer.
    lots: collections.deque[tuple[int, int]] = attrs.field(factory=collections.deque)

    def add(self, side: Side, quantity: int, price: int) -> None:
        p = self.position
        if side is Side.BUY:
            p.buy_quantity += quantity
            p.buy_value += quantity * price
        else:
            p.sell_quantity += quantity
            p.sell_value += quantity * price
        remaining = quantity
        while remaining and self.lots and (self.lots[0][0] > 0) != (side is Side.BUY):
            lot_quantity, lot_price = self.lots[0]
            matched = min(remaining, abs(lot_quantity))
            direction = 1 if lot_quantity > 0 else -1
            p.realised_pnl += matched * (price - lot_price) * direction
            remaining -= matched
            if matched == abs(lot_quantity):
                self.lots.popleft()
            else:
                self.lots[0] = (lot_quantity - matched * direction, lot_price)
        if remaining:
            self.lots.append((remaining * side.sign, price))
        p.quantity += quantity * side.sign


class _OperationLog:
    """A venue's state file: one JSON object per line, the first describing the venue.

    Each record is written, flushed and fsynced before the operation it records returns, as a
    real broker's acknowledgement is durable. A crash can only tear the last line, and that
    operation never returned: :meth:`load` cuts it off.
    """

    def __init__(self, path: Path) -> None:
        self.path: Final = path

    def load(self) -> list[dict[str, Any]]:
        """Every complete record, oldest first (none when the file is missing or empty)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            with self.path.open("r+b") as file:
                file.truncate(complete)
                os.fsync(file.fileno())
        records: list[dict[str, Any]] = []
        for line, raw in enumerate(data[:complete].splitlines(), start=1):
            try:
                record = json.loads(raw)
            except ValueError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("op"), str):
                raise ValidationError(
                    f"{self.path}:{line}: not a venue operation record", code="bad_state_file"
                )
            records.append(record)
        return records

    def start(self, header: Mapping[str, Any]) -> None:
        """Begin a new log with ``header``, durably: the file's directory entry too."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.append(header)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def append(self, record: Mapping[str, Any]) -> None:
        line = memoryview(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            while line:
                line = line[os.write(fd, line) :]
            os.fsync(fd)
        finally:
            os.close(fd)


class TestVenue:
    """The venue behind :class:`TestBroker`: market, books, positions and the controls tests drive.

    :param instruments: the universe, each instrument with its opening price in price units
        (also taken as the previous close).
    :param accounts: the broker-side account codes one login may trade.
    :param instant: acknowledge without a ``PENDING`` update and fill marketable orders at once.
    :param clock: where timestamps come from; nothing the venue decides depends on it.
    :param state_file: keep the venue in this operation log (see *Persistence* above): replay it
        if it exists, then append every change. ``None`` keeps the venue in memory only.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        instruments: Mapping[Instrument, int] = DEFAULT_UNIVERSE,
        accounts: Sequence[str] = ("default",),
        *,
        instant: bool = False,
        clock: Callable[[], dt.datetime] = utcnow,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if not accounts or len(set(accounts)) != len(accounts):
            raise ValidationError("a venue needs one or more distinct account codes")
        self.instant: Final = instant
        self.accounts: Final[tuple[str, ...]] = tuple(accounts)
        self._clock = clock
        self._markets: dict[str, _Market] = {}
        for instrument, price in instruments.items():
            instrument.check_price(price)
            self._markets[instrument.key] = _Market(instrument, price, price, price, price, price)
        self._orders: dict[str, _VenueOrder] = {}
        self._fills: list[Fill] = []
        self._positions: dict[tuple[str, str, Product], _PositionBook] = {}
        self._sessions: list[TestBroker] = []
        self._down = False
        self._holding = False
        self._held: list[str] = []
        self._rejections: collections.deque[str] = collections.deque()
        self._order_seq = 0
        self._exchange_seq = 0
        self._fill_seq = 0
        # The instant of the operation under way: every timestamp it makes is this one, so that
        # a replayed operation stamps its orders and fills exactly as the original did.
        self._now: dt.datetime | None = None
        self._log: _OperationLog | None = None
        if state_file is not None:
            self._log = _OperationLog(Path(state_file))
            self._restore(instruments)

    @property
    def state_file(self) -> Path | None:
        """The operation log the venue is kept in, or ``None`` when it lives in memory only."""
        return self._log.path if self._log is not None else None

    # Market -----------------------------------------------------------------------------------

    @property
    def instruments(self) -> list[Instrument]:
        """The universe, in the order it was given."""
        return [m.instrument for m in self._markets.values()]

    def instrument(self, key: str) -> Instrument:
        """The instrument with ``key`` (``"NSE:INFY"``); raise NotFound for any other."""
        return self._market(key).instrument

    def last_price(self, instrument: Instrument | str) -> int:
        return self._market(instrument).last

    def set_last_price(self, instrument: Instrument | str, price: int) -> None:
        """Trade one lot at ``price``: ticks go out, stops trigger, marketable orders fill."""
        key = self._market(instrument).instrument.key
        self._operation(
            lambda: self._set_last_price(key, price),
            lambda: {"op": "set_last_price", "instrument": key, "price": price},
        )

    # Order controls ---------------------------------------------------------------------------

    def reject_next(self, reason: str = "RMS: margin exceeds available funds") -> None:
        """Accept the next order placed, then reject it with ``reason`` (calls queue up)."""
        if not reason:
            raise ValidationError("a rejection needs a reason")
        self._operation(
            lambda: self._rejections.append(reason),
            lambda: {"op": "reject_next", "reason": reason},
        )

    def hold_acks(self, hold: bool = True) -> None:
        """Keep new orders ``PENDING`` until :meth:`ack` (``hold=False`` acks every held order)."""
        self._operation(lambda: self._hold_acks(hold), lambda: {"op": "hold_acks", "hold": hold})

    def ack(self, broker_order_id: str) -> None:
        """Acknowledge a held ``PENDING`` order."""
        self._operation(
            lambda: self._ack(broker_order_id), lambda: {"op": "ack", "order": broker_order_id}
        )

    def reject(self, broker_order_id: str, reason: str) -> None:
        """Reject a held ``PENDING`` order with ``reason``."""
        if not reason:
            raise ValidationError("a rejection needs a reason")
        self._operation(
            lambda: self._reject(broker_order_id, reason),
            lambda: {"op": "reject", "order": broker_order_id, "reason": reason},
        )

    def fill(
        self, broker_order_id: str, quantity: int | None = None, price: int | None = None
    ) -> Fill:
        """Execute ``quantity`` (default: all that remains) at ``price`` and return the fill.

        ``price`` defaults to the order's limit price, else the last price. The fill does not
        move the last price; :meth:`set_last_price` does that.
        """
        return self._operation(
            lambda: self._fill(broker_order_id, quantity, price),
            lambda: {"op": "fill", "order": broker_order_id, "quantity": quantity, "price": price},
        )

    def expire_day_orders(self) -> None:
        """End the session: every live ``DAY`` order becomes ``EXPIRED``."""
        self._operation(self._expire_day_orders, lambda: {"op": "expire_day_orders"})

    # Connection controls ----------------------------------------------------------------------

    def disconnect(self, reason: str = "connection dropped") -> None:
        """Take every broker's stream down; they emit ``RECONNECTING`` and then hear nothing."""
        if self._down:
            return
        for session in list(self._sessions):
            session._connection(ConnectionState.RECONNECTING, reason)
        self._down = True

    def resync(self) -> None:
        """Bring the streams back: ``RESYNCED``, then a snapshot tick per subscription."""
        if not self._down:
            return
        self._down = False
        for session in list(self._sessions):
            session._connection(ConnectionState.RESYNCED, "")
            session._snapshot()

    def drop_connection(self, reason: str = "connection dropped") -> None:
        """A short outage: :meth:`disconnect` then :meth:`resync`."""
        self.disconnect(reason)
        self.resync()

    # What the brokers call ---------------------------------------------------------------------

    def _place(self, account: str, instrument: Instrument, request: OrderRequest) -> str:
        key = instrument.key
        return self._operation(
            lambda: self._place_order(account, key, request),
            lambda: {
                "op": "place",
                "account": account,
                "instrument": key,
                "request": converter.unstructure(request),
            },
        )

    def _modify(
        self, account: str, broker_order_id: str, instrument: Instrument, request: ModifyRequest
    ) -> None:
        key = instrument.key
        self._operation(
            lambda: self._modify_order(account, broker_order_id, key, request),
            lambda: {
                "op": "modify",
                "account": account,
                "order": broker_order_id,
                "instrument": key,
                "change": converter.unstructure(request),
            },
        )

    def _cancel(self, account: str, broker_order_id: str) -> None:
        self._operation(
            lambda: self._cancel_order(account, broker_order_id),
            lambda: {"op": "cancel", "account": account, "order": broker_order_id},
        )

    def _place_order(self, account: str, key: str, request: OrderRequest) -> str:
        if account not in self.accounts:
            raise BrokerRejected(
                f"account {account!r} is not served by this login", code="unknown_account"
            )
        market = self._markets.get(key)
        if market is None:
            raise BrokerRejected(f"unknown instrument {key}", code="unknown_instrument")
        instrument = market.instrument  # the venue's definition, not the caller's copy
        if request.instrument != instrument.key:
            raise BrokerRejected(
                f"request names {request.instrument}, not {instrument.key}",
                code="instrument_mismatch",
            )
        if instrument.instrument_type is InstrumentType.INDEX:
            raise BrokerRejected(
                f"{instrument.key} is an index and cannot be traded", code="not_tradable"
            )
        if request.extras:
            raise BrokerRejected(
                f"unsupported order options: {', '.join(sorted(request.extras))}",
                code="unsupported_option",
            )
        self._check(market, request, triggered=False)

        self._order_seq += 1
        broker_order_id = f"TB{self._order_seq:08d}"
        now = self._stamp()
        order = Order(broker_order_id, request, user=account, created_at=now)
        order.transition(OrderStatus.PENDING, at=now)
        venue_order = _VenueOrder(
            account, instrument, order, self._view(account, instrument, order, now)
        )
        self._orders[broker_order_id] = venue_order
        if not self.instant:
            self._broadcast(venue_order.update)
        if self._rejections:
            self._set_status(venue_order, OrderStatus.REJECTED, self._rejections.popleft())
        elif self._holding:
            self._held.append(broker_order_id)
        else:
            self._acknowledge(venue_order)
        return broker_order_id

    def _modify_order(
        self, account: str, broker_order_id: str, key: str, request: ModifyRequest
    ) -> None:
        venue_order = self._owned(account, broker_order_id)
        order = venue_order.order
        if key != venue_order.instrument.key:
            raise BrokerRejected(
                f"order {broker_order_id} is for {venue_order.instrument.key}, not {key}",
                code="instrument_mismatch",
            )
        if order.status is OrderStatus.PENDING:
            raise BrokerRejected(
                f"order {broker_order_id} is not acknowledged yet", code="order_pending"
            )
        if order.status not in _ACKED:
            raise BrokerRejected(
                f"order {broker_order_id} is {order.status}", code="order_not_live"
            )
        current = order.request
        kind = request.order_type or current.order_type
        keeps_price = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        keeps_trigger = kind in _STOPS
        try:
            changed = attrs.evolve(
                current,
                quantity=request.quantity or current.quantity,
                order_type=kind,
                price=(request.price or current.price) if keeps_price else None,
                trigger_price=(request.trigger_price or current.trigger_price)
                if keeps_trigger
                else None,
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
        # A stop whose trigger or type changes waits for its trigger again.
        retrigger = kind in _STOPS and (
            changed.trigger_price != current.trigger_price or kind is not current.order_type
        )
        triggered = venue_order.triggered and not retrigger
        self._check(self._markets[venue_order.instrument.key], changed, triggered=triggered)

        self._set_status(venue_order, OrderStatus.PENDING_MODIFY)
        order.request = changed
        venue_order.triggered = triggered
        self._set_status(venue_order, self._live_status(order))
        if self.instant:
            self._take_liquidity(venue_order)

    def _cancel_order(self, account: str, broker_order_id: str) -> None:
        venue_order = self._owned(account, broker_order_id)
        if venue_order.order.status not in _LIVE:
            raise BrokerRejected(
                f"order {broker_order_id} is {venue_order.order.status}", code="order_not_live"
            )
        if broker_order_id in self._held:
            self._held.remove(broker_order_id)
        self._set_status(venue_order, OrderStatus.PENDING_CANCEL)
        self._set_status(venue_order, OrderStatus.CANCELLED, "cancelled by the user")

    def _book(self, account: str) -> list[OrderUpdate]:
        self._check_account(account)
        return [o.update for o in self._orders.values() if o.account == account]

    def _trades(self, account: str) -> list[Fill]:
        self._check_account(account)
        return [f for f in self._fills if f.account == account]

    def _positions_of(self, account: str) -> list[Position]:
        self._check_account(account)
        return [
            attrs.evolve(book.position, last_price=self._markets[key].last)
            for (owner, key, _), book in self._positions.items()
            if owner == account
        ]

    def _tick(self, instrument: Instrument | str, mode: StreamMode) -> Tick:
        market = self._market(instrument)
        stamp = (self._stamp() - _EPOCH) // dt.timedelta(microseconds=1) * 1000
        tick = Tick(market.instrument.key, mode, market.last, timestamp_ns=stamp)
        if mode is StreamMode.LTP:
            return tick
        levels = 1 if mode is StreamMode.QUOTE else _DEPTH_LEVELS
        depth = self._depth(market, levels)
        return attrs.evolve(
            tick,
            last_quantity=market.last_quantity,
            volume=market.volume,
            total_buy_quantity=sum(level.quantity for level in depth.bids),
            total_sell_quantity=sum(level.quantity for level in depth.asks),
            ohlc=Ohlc(market.open, market.high, market.low, market.previous_close),
            depth=depth,
        )

    def _attach(self, session: TestBroker) -> None:
        if self._down:
            raise NetworkError("the test venue is unreachable (disconnected)")
        self._sessions.append(session)

    def _detach(self, session: TestBroker) -> None:
        if session in self._sessions:
            self._sessions.remove(session)

    # Operations: what the public controls and the broker calls do, and how they are logged -----

    def _operation(self, run: Callable[[], _T], record: Callable[[], dict[str, Any]]) -> _T:
        """Run one externally caused change at one instant; log it once it has succeeded.

        A refused call changes nothing (every check comes before the first change), so only
        calls that return are logged. The record is built only when there is a log.
        """
        if self._now is not None:  # inside another operation, or replaying: logged by the outer
            return run()
        now = self._now = self._clock()
        try:
            result = run()
        finally:
            self._now = None
        if self._log is not None:
            entry = record()
            entry["at"] = now.isoformat()
            self._log.append(entry)
        return result

    def _stamp(self) -> dt.datetime:
        return self._now if self._now is not None else self._clock()

    def _set_last_price(self, key: str, price: int) -> None:
        market = self._market(key)
        market.instrument.check_price(price)
        market.trade(price, market.instrument.lot_size)
        self._broadcast_tick(market)
        for venue_order in list(self._orders.values()):
            if venue_order.instrument.key != market.instrument.key:
                continue
            if venue_order.order.status not in _ACKED:
                continue
            self._trigger(venue_order)
            kind = venue_order.marketable_as
            if kind is OrderType.MARKET:
                self._execute(venue_order, venue_order.order.remaining_quantity, price)
            elif kind is OrderType.LIMIT and self._crosses(venue_order, price):
                limit = venue_order.order.request.price
                assert limit is not None  # a limit-type request always has one
                self._execute(venue_order, venue_order.order.remaining_quantity, limit)

    def _hold_acks(self, hold: bool) -> None:
        self._holding = hold
        if not hold:
            for broker_order_id in list(self._held):
                self._ack(broker_order_id)

    def _ack(self, broker_order_id: str) -> None:
        venue_order = self._pending(broker_order_id)
        self._held.remove(broker_order_id)
        self._acknowledge(venue_order)

    def _reject(self, broker_order_id: str, reason: str) -> None:
        venue_order = self._pending(broker_order_id)
        self._held.remove(broker_order_id)
        self._set_status(venue_order, OrderStatus.REJECTED, reason)

    def _fill(self, broker_order_id: str, quantity: int | None, price: int | None) -> Fill:
        venue_order = self._order(broker_order_id)
        order = venue_order.order
        if order.status not in _LIVE:
            raise ValidationError(
                f"order {broker_order_id} is {order.status}, nothing to fill", code="order_not_live"
            )
        if price is None:
            price = order.request.price or self.last_price(venue_order.instrument)
        venue_order.instrument.check_price(price)
        quantity = order.remaining_quantity if quantity is None else quantity
        fill = self._execute(venue_order, quantity, price)
        if broker_order_id in self._held:  # the exchange filled it before the ack came back
            self._held.remove(broker_order_id)
        return fill

    def _expire_day_orders(self) -> None:
        for venue_order in list(self._orders.values()):
            order = venue_order.order
            if order.status in _LIVE and order.request.time_in_force is TimeInForce.DAY:
                if order.order_id in self._held:
                    self._held.remove(order.order_id)
                self._set_status(venue_order, OrderStatus.EXPIRED, "end of the trading session")

    # Persistence ------------------------------------------------------------------------------

    def _header(self, instruments: Mapping[Instrument, int]) -> dict[str, Any]:
        """The log's first record: what the venue was built with, which replay depends on."""
        header = {
            "op": "venue",
            "version": _LOG_VERSION,
            "accounts": list(self.accounts),
            "instant": self.instant,
            "instruments": [[converter.unstructure(i), p] for i, p in instruments.items()],
        }
        normalised: dict[str, Any] = json.loads(json.dumps(header))
        return normalised

    def _restore(self, instruments: Mapping[Instrument, int]) -> None:
        """Replay the log, if any, else start one. No session is attached yet: nothing is sent."""
        assert self._log is not None
        header = self._header(instruments)
        records = self._log.load()
        if not records:
            self._log.start(header)
            return
        path = self._log.path
        if records[0] != header:
            differ = [k for k in header if records[0].get(k) != header[k]] or ["op"]
            raise ConfigError(
                f"{path} was written by another venue (its {', '.join(differ)} differ); "
                "configure the venue as it was, or start a new state file"
            )
        for line, record in enumerate(records[1:], start=2):
            try:
                self._now = dt.datetime.fromisoformat(record["at"])
                self._redo(record)
            except Exception as exc:
                raise ValidationError(
                    f"{path}:{line}: cannot replay {record.get('op')!r}: {exc}",
                    code="bad_state_file",
                ) from exc
            finally:
                self._now = None

    def _redo(self, record: Mapping[str, Any]) -> None:
        match record["op"]:
            case "place":
                request = converter.structure(record["request"], OrderRequest)
                self._place_order(record["account"], record["instrument"], request)
            case "modify":
                change = converter.structure(record["change"], ModifyRequest)
                self._modify_order(record["account"], record["order"], record["instrument"], change)
            case "cancel":
                self._cancel_order(record["account"], record["order"])
            case "set_last_price":
                self._set_last_price(record["instrument"], record["price"])
            case "reject_next":
                self._rejections.append(record["reason"])
            case "hold_acks":
                self._hold_acks(record["hold"])
            case "ack":
                self._ack(record["order"])
            case "reject":
                self._reject(record["order"], record["reason"])
            case "fill":
                self._fill(record["order"], record["quantity"], record["price"])
            case "expire_day_orders":
                self._expire_day_orders()
            case op:
                raise ValidationError(f"unknown operation {op!r}")

    # Internals --------------------------------------------------------------------------------

    def _market(self, instrument: Instrument | str) -> _Market:
        key = instrument if isinstance(instrument, str) else instrument.key
        try:
            return self._markets[key]
        except KeyError:
            raise NotFound(f"the test venue does not list {key}") from None

    def _order(self, broker_order_id: str) -> _VenueOrder:
        try:
            return self._orders[broker_order_id]
        except KeyError:
            raise NotFound(f"no order {broker_order_id!r} at the test venue") from None

    def _owned(self, account: str, broker_order_id: str) -> _VenueOrder:
        self._check_account(account)
        venue_order = self._orders.get(broker_order_id)
        if venue_order is None or venue_order.account != account:
            raise NotFound(f"no order {broker_order_id!r} in account {account!r}")
        return venue_order

    def _pending(self, broker_order_id: str) -> _VenueOrder:
        if broker_order_id not in self._held:
            raise ValidationError(f"order {broker_order_id} is not held pending", code="not_held")
        return self._order(broker_order_id)

    def _check_account(self, account: str) -> None:
        if account not in self.accounts:
            raise NotFound(f"account {account!r} is not served by this login")

    def _check(self, market: _Market, request: OrderRequest, *, triggered: bool) -> None:
        instrument = market.instrument
        try:
            instrument.check_quantity(request.quantity)
            for price in (request.price, request.trigger_price):
                if price is not None:
                    instrument.check_price(price)
        except ValidationError as exc:
            raise BrokerRejected(exc.message, code=exc.code) from None
        freeze = instrument.freeze_quantity
        if freeze is not None and request.quantity > freeze:
            raise BrokerRejected(
                f"{instrument.key}: quantity {request.quantity} exceeds the freeze limit {freeze}",
                code="freeze_quantity",
            )
        trigger = request.trigger_price
        if (
            trigger is not None
            and not triggered
            and self._reached(request.side, trigger, market.last)
        ):
            raise BrokerRejected(
                f"{instrument.key}: a {request.side} stop's trigger {instrument.format(trigger)} "
                f"has already been reached (last {instrument.format(market.last)})",
                code="trigger_crossed",
            )

    @staticmethod
    def _reached(side: Side, trigger: int, last: int) -> bool:
        return last >= trigger if side is Side.BUY else last <= trigger

    @staticmethod
    def _crosses(venue_order: _VenueOrder, price: int) -> bool:
        request = venue_order.order.request
        assert request.price is not None  # only asked of limit-type orders
        return price <= request.price if request.side is Side.BUY else price >= request.price

    def _trigger(self, venue_order: _VenueOrder) -> None:
        request = venue_order.order.request
        if request.order_type in _STOPS and not venue_order.triggered:
            assert request.trigger_price is not None  # a stop request always has one
            last = self.last_price(venue_order.instrument)
            venue_order.triggered = self._reached(request.side, request.trigger_price, last)

    def _take_liquidity(self, venue_order: _VenueOrder) -> bool:
        """Fill the rest of an arriving order at the last price if it is marketable."""
        self._trigger(venue_order)
        kind = venue_order.marketable_as
        last = self.last_price(venue_order.instrument)
        if kind is OrderType.MARKET or (
            kind is OrderType.LIMIT and self._crosses(venue_order, last)
        ):
            self._execute(venue_order, venue_order.order.remaining_quantity, last)
            return True
        return False

    def _acknowledge(self, venue_order: _VenueOrder) -> None:
        order = venue_order.order
        self._reach_exchange(order)
        if order.request.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            if not self._take_liquidity(venue_order):
                self._set_status(
                    venue_order,
                    OrderStatus.CANCELLED,
                    f"{order.request.time_in_force} order found no match",
                )
            return
        self._set_status(venue_order, OrderStatus.OPEN)
        if self.instant:
            self._take_liquidity(venue_order)

    def _reach_exchange(self, order: Order) -> None:
        if order.exchange_order_id is None:
            self._exchange_seq += 1
            order.exchange_order_id = f"X{self._exchange_seq:012d}"

    def _execute(self, venue_order: _VenueOrder, quantity: int, price: int) -> Fill:
        order = venue_order.order
        order.record_fill(quantity, price)
        self._reach_exchange(order)
        now = self._stamp()
        self._fill_seq += 1
        request = order.request
        fill = Fill(
            fill_id=f"TT{self._fill_seq:08d}",
            broker_order_id=order.order_id,
            account=venue_order.account,
            instrument=venue_order.instrument.key,
            side=request.side,
            quantity=quantity,
            price=price,
            at=now,
        )
        self._fills.append(fill)
        position_key = (venue_order.account, fill.instrument, request.product)
        book = self._positions.get(position_key)
        if book is None:
            book = self._positions[position_key] = _PositionBook(
                Position(venue_order.account, fill.instrument, request.product)
            )
        book.add(request.side, quantity, price)
        self._markets[fill.instrument].volume += quantity
        self._broadcast(fill)
        self._set_status(
            venue_order,
            self._live_status(order) if order.remaining_quantity else OrderStatus.FILLED,
        )
        return fill

    @staticmethod
    def _live_status(order: Order) -> OrderStatus:
        return OrderStatus.PARTIALLY_FILLED if order.filled_quantity else OrderStatus.OPEN

    def _set_status(self, venue_order: _VenueOrder, status: OrderStatus, reason: str = "") -> None:
        now = self._stamp()
        venue_order.order.transition(status, reason, at=now)
        venue_order.update = self._view(
            venue_order.account, venue_order.instrument, venue_order.order, now
        )
        self._broadcast(venue_order.update)

    @staticmethod
    def _view(account: str, instrument: Instrument, order: Order, at: dt.datetime) -> OrderUpdate:
        return OrderUpdate(
            broker="",  # each broker stamps its own name
            account=account,
            broker_order_id=order.order_id,
            status=order.status,
            instrument=instrument.key,
            filled_quantity=order.filled_quantity,
            pending_quantity=0 if order.is_terminal else order.remaining_quantity,
            average_price=order.average_price,
            client_order_id=order.request.client_order_id,
            exchange_order_id=order.exchange_order_id,
            reason=order.reason,
            at=at,
        )

    def _depth(self, market: _Market, levels: int) -> Depth:
        tick, lot = market.instrument.tick_size, market.instrument.lot_size
        bids = tuple(
            DepthLevel(market.last - n * tick, 10 * n * lot, n)
            for n in range(1, levels + 1)
            if market.last - n * tick > 0
        )
        asks = tuple(
            DepthLevel(market.last + n * tick, 10 * n * lot, n) for n in range(1, levels + 1)
        )
        return Depth(bids, asks)

    def _broadcast(self, event: OrderUpdate | Fill) -> None:
        if self._down:
            return
        for session in self._sessions:
            session._deliver(event)

    def _broadcast_tick(self, market: _Market) -> None:
        if self._down:
            return
        for session in self._sessions:
            session._deliver_tick(market.instrument.key)


class _EventChannel:
    """A broker's event stream: unbounded, one consumer, ends once closed and drained.

    Unbounded so that venue controls, plain synchronous calls, never block.
    """

    def __init__(self) -> None:
        self._buffer: collections.deque[BrokerEvent] = collections.deque()
        self._closed = False
        self._waiter: anyio.Event | None = None

    def put(self, event: BrokerEvent) -> None:
        if not self._closed:
            self._buffer.append(event)
            self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def take(self) -> list[BrokerEvent]:
        taken = list(self._buffer)
        self._buffer.clear()
        return taken

    def __aiter__(self) -> _EventChannel:
        return self

    async def __anext__(self) -> BrokerEvent:
        await anyio.lowlevel.checkpoint()  # even a busy stream lets other tasks run
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = anyio.Event()
            await self._waiter.wait()
        return self._buffer.popleft()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None


class TestBroker(Broker):
    """One login's connection to a :class:`TestVenue` (a fresh default venue when none is given).

    The venue's controls are on :attr:`venue`. Calls before :meth:`connect` or after
    :meth:`close` raise :class:`~hft.NetworkError`; a closed broker does not reconnect (connect a
    new one to the same venue, as a restarted host would).
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, venue: TestVenue | None = None, *, name: str = "test") -> None:
        self.venue: Final = venue if venue is not None else TestVenue()
        self.name = name
        self._events = _EventChannel()
        self._subscriptions: dict[str, StreamMode] = {}
        self._connected = False
        self._closed = False

    async def connect(self) -> None:
        if self._closed:
            raise NetworkError(f"broker {self.name!r} is closed")
        if self._connected:
            return
        self.venue._attach(self)
        self._connected = True
        self._connection(ConnectionState.CONNECTED, "")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._connected:
            self._connected = False
            self.venue._detach(self)
            self._connection(ConnectionState.DISCONNECTED, "closed")
        self._events.close()

    def accounts(self) -> Sequence[str]:
        return self.venue.accounts

    async def place_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest
    ) -> str:
        await self._require_connection()
        return self.venue._place(broker_account, instrument, request)

    async def modify_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        request: ModifyRequest,
    ) -> None:
        await self._require_connection()
        self.venue._modify(broker_account, broker_order_id, instrument, request)

    async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
        await self._require_connection()
        self.venue._cancel(broker_account, broker_order_id)

    async def orders(self, broker_account: str) -> list[OrderUpdate]:
        await self._require_connection()
        return [attrs.evolve(u, broker=self.name) for u in self.venue._book(broker_account)]

    async def trades(self, broker_account: str) -> list[Fill]:
        await self._require_connection()
        return self.venue._trades(broker_account)

    async def positions(self, broker_account: str) -> list[Position]:
        await self._require_connection()
        return self.venue._positions_of(broker_account)

    async def instruments(self) -> list[Instrument]:
        await self._require_connection()
        return self.venue.instruments

    async def quotes(self, instruments: Sequence[Instrument]) -> dict[str, Tick]:
        await self._require_connection()
        return {
            i.key: self.venue._tick(i, StreamMode.FULL)
            for i in instruments
            if i.key in self.venue._markets
        }

    async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
        await self._require_connection()
        for instrument in instruments:
            self.venue.instrument(instrument.key)  # NotFound before anything changes
        for instrument in instruments:
            self._subscriptions[instrument.key] = mode
            if not self.venue._down:
                self._deliver_tick(instrument.key)

    async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
        await self._require_connection()
        for instrument in instruments:
            self._subscriptions.pop(instrument.key, None)

    def events(self) -> AsyncIterator[BrokerEvent]:
        return self._events

    def take_events(self) -> list[BrokerEvent]:
        """Remove and return the events buffered so far, for tests that step the venue
        synchronously instead of reading :meth:`events`."""
        return self._events.take()

    # Called by the venue ----------------------------------------------------------------------

    def _deliver(self, event: BrokerEvent) -> None:
        if isinstance(event, OrderUpdate):
            event = attrs.evolve(event, broker=self.name)
        self._events.put(event)

    def _deliver_tick(self, key: str) -> None:
        mode = self._subscriptions.get(key)
        if mode is not None:
            self._deliver(self.venue._tick(key, mode))

    def _connection(self, state: ConnectionState, reason: str) -> None:
        self._deliver(ConnectionEvent(self.name, state, reason, at=self.venue._clock()))

    def _snapshot(self) -> None:
        for key in self._subscriptions:
            self._deliver_tick(key)

    async def _require_connection(self) -> None:
        await anyio.lowlevel.checkpoint()  # a scheduling point, as a real broker's I/O would be
        if self._closed:
            raise NetworkError(f"broker {self.name!r} is closed")
        if not self._connected:
            raise NetworkError(f"broker {self.name!r} is not connected")
