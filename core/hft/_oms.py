"""Order management: authorise, validate, deduplicate, risk-check, journal, route, track.

The order path for a new order: the user may act on the account (a sim user never on a live
one) → the instrument exists at the account's broker and the price and quantity fit its grid →
a retried client order id returns the order it already created → the risk chain → the order is
journalled durably (PENDING) → the broker is called. Everything the broker says afterwards
(acks, rejects, updates, fills) drives the same state machine and is journalled too, in batches
written by one task, so durability costs one storage commit per batch rather than per event.

After a restart or a broker reconnect, :meth:`OrderManager.reconcile` compares the journal with
the broker's own order book and trades and applies what was missed.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import attrs
import structlog

from hft._config import OmsSection
from hft._errors import (
    AuthError,
    BrokerRejected,
    Conflict,
    HftError,
    NetworkError,
    NotFound,
    RiskRejected,
    ValidationError,
    is_retryable,
)
from hft._portfolio import Portfolio
from hft._resilience import Backoff, deadline
from hft.contracts import Broker, RiskContext, RiskRejection, Storage
from hft.model import (
    TRANSITIONS,
    Account,
    Fill,
    Instrument,
    ModifyRequest,
    Order,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Position,
    PositionConversion,
    Role,
    Side,
    User,
    utcnow,
)

__all__ = ["OrderEventMessage", "OrderFeed", "OrderManager", "RiskChecker"]

log = structlog.get_logger("hft.oms")

_S = OrderStatus
_LIVE_BROKER_STATES = frozenset(
    {_S.OPEN, _S.PARTIALLY_FILLED, _S.PENDING_CANCEL, _S.PENDING_MODIFY}
)


class RiskChecker(Protocol):
    """What the OMS needs of the risk engine."""

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None: ...

    def commit(self, request: OrderRequest, context: RiskContext) -> None: ...

    async def flush(self) -> None: ...


@attrs.frozen
class OrderEventMessage:
    """One journalled change of an order, as subscribers receive it."""

    seq: int
    kind: str  # created, accepted, status, fill, modified
    order: Order


class OrderFeed:
    """One subscriber's order events. Never drops one: past ``max_backlog`` undelivered events
    the feed is closed as overflowed, and the subscriber resumes from the journal by ``seq``."""

    def __init__(self, visible: Callable[[Order], bool], max_backlog: int) -> None:
        self._visible = visible
        self._max_backlog = max_backlog
        self._pending: deque[OrderEventMessage] = deque()
        self._wakeup = anyio.Event()
        self.closed = False
        self.overflowed = False
        self.replayed = 0  # events a resume took from the journal, delivered first

    def push(self, message: OrderEventMessage) -> None:
        if self.closed or not self._visible(message.order):
            return
        if len(self._pending) >= self._max_backlog:
            self.overflowed = True
            self.close()
            return
        self._pending.append(message)
        self._wakeup.set()

    def receive_nowait(self) -> list[OrderEventMessage]:
        """Take whatever is pending now (possibly nothing); raise as :meth:`receive_batch`
        does once overflowed."""
        if not self._pending and self.overflowed:
            raise Conflict("order feed overflowed; resume from the journal", code="overflow")
        batch = list(self._pending)
        self._pending.clear()
        return batch

    async def receive_batch(self) -> list[OrderEventMessage]:
        """Wait for events and take all pending; raise ``Conflict`` once overflowed, and
        ``anyio.EndOfStream`` when closed and drained."""
        while not self._pending:
            if self.overflowed:
                raise Conflict("order feed overflowed; resume from the journal", code="overflow")
            if self.closed:
                raise anyio.EndOfStream
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
        batch = list(self._pending)
        self._pending.clear()
        return batch

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def _prime(self, replayed: list[OrderEventMessage], through_seq: int) -> None:
        """Put replayed events first; drop live ones the replay already holds."""
        live = [m for m in self._pending if m.seq > through_seq]
        self.replayed = len(replayed)
        self._pending = deque(replayed + live)
        if self._pending:
            self._wakeup.set()


@attrs.define
class _Entry:
    order: Order  # a snapshot taken when the change happened
    kind: str
    done: anyio.Event | None = None  # shared by the waited entries of one batch
    seq: int = 0
    error: BaseException | None = None


class _Journal:
    """Batches order events, fills and positions into storage writes from one task.

    Someone waits on an order's first entry (it must be durable before the broker sees the
    order); nobody waits on the broker-driven ones that follow, which the broker can always
    replay through reconciliation. So a batch with no waiter lingers up to ``linger_s`` for one
    to arrive and share its commit, instead of costing a commit of its own.
    """

    def __init__(
        self,
        storage: Storage,
        on_written: Callable[[list[OrderEventMessage]], None],
        linger_s: float = 0.002,
    ):
        self._storage = storage
        self._on_written = on_written
        self._linger_s = linger_s
        self._entries: list[_Entry] = []
        self.added = 0  # entries ever added: how much orders have moved
        self._accepted: dict[str, _Entry] = {}  # order id → its unwritten "accepted" entry
        self._batch_done = anyio.Event()  # set once the batch being gathered is written
        self._fills: list[Fill] = []
        self._positions: dict[tuple[str, str, str], Position] = {}
        self._wakeup = anyio.Event()
        self._urgent = anyio.Event()  # set when a waited entry (or a flush) is pending
        self._idle = anyio.Event()
        self._idle.set()

    def add(self, order: Order, kind: str, *, wait: bool = False) -> _Entry:
        self.added += 1
        accepted = self._accepted.pop(order.order_id, None)
        if accepted is not None and not wait:
            # The broker's first update usually follows its "accepted" within the same batch;
            # it carries the broker order id too, so it takes that entry's place instead of
            # costing a second row, snapshot and event (the order's history keeps every step).
            accepted.order = _snapshot(order)
            accepted.kind = kind
            return accepted
        entry = _Entry(_snapshot(order), kind, self._batch_done if wait else None)
        self._entries.append(entry)
        if kind == "accepted" and not wait:
            self._accepted[order.order_id] = entry
        self._kick()
        if wait:
            self._urgent.set()
        return entry

    def add_fill(self, fill: Fill, position: Position) -> None:
        self._fills.append(fill)
        self.add_positions(position)

    def add_positions(self, *positions: Position) -> None:
        for position in positions:
            key = (position.account, position.instrument, str(position.product))
            self._positions[key] = position
        self._kick()

    async def write(self, order: Order, kind: str) -> int:
        """Journal a change and return once it is durable; raise if it could not be."""
        (seq,) = await self.write_all([order], kind)
        return seq

    async def write_all(self, orders: Sequence[Order], kind: str) -> list[int]:
        """Journal changes to several orders in one batch; return once all are durable."""
        entries = [self.add(order, kind, wait=True) for order in orders]
        for entry in entries:
            assert entry.done is not None
            await entry.done.wait()
            if entry.error is not None:
                raise NetworkError(
                    f"order {entry.order.order_id} could not be stored: {entry.error}"
                )
        return [entry.seq for entry in entries]

    async def flush(self) -> None:
        while self._entries or self._fills or self._positions or not self._idle.is_set():
            self._urgent.set()
            await self._idle.wait()
            await anyio.lowlevel.checkpoint()

    def _kick(self) -> None:
        # Only an idle run() waits for the wakeup; a busy one looks for entries before it idles.
        if self._idle.is_set():
            self._idle = anyio.Event()
            self._wakeup.set()

    async def _write(
        self, entries: list[_Entry], fills: list[Fill], positions: list[Position]
    ) -> None:
        """One batch, one transaction: an order is never stored FILLED without its fill."""
        seqs = await self._storage.append_order_events(
            [(e.order, e.kind) for e in entries], fills, [attrs.evolve(p) for p in positions]
        )
        for entry, seq in zip(entries, seqs, strict=True):
            entry.seq = seq

    async def run(self) -> None:
        backoff = Backoff(initial_s=0.05, max_s=5.0)
        while True:
            if not (self._entries or self._fills or self._positions):
                self._idle.set()
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                continue
            if not self._urgent.is_set():
                with anyio.move_on_after(self._linger_s):
                    await self._urgent.wait()
            self._urgent = anyio.Event()
            entries, self._entries = self._entries, []
            batch_done, self._batch_done = self._batch_done, anyio.Event()
            self._accepted.clear()
            fills, self._fills = self._fills, []
            positions, self._positions = list(self._positions.values()), {}
            try:
                with anyio.CancelScope(shield=True):
                    await self._write(entries, fills, positions)
            except HftError as exc:
                log.error("oms.journal_failed", error=str(exc), entries=len(entries))
                for entry in entries:
                    if entry.done is not None:
                        entry.error = exc
                batch_done.set()
                if not is_retryable(exc):
                    # Never going to succeed as it is: keep serving; reconciliation repairs it.
                    continue
                # Broker-driven changes are kept and retried: they are already in memory.
                self._entries[:0] = [e for e in entries if e.done is None]
                self._fills[:0] = fills
                for p in positions:
                    self._positions.setdefault((p.account, p.instrument, str(p.product)), p)
                await anyio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            batch_done.set()
            if entries:
                self._on_written([OrderEventMessage(e.seq, e.kind, e.order) for e in entries])


def _snapshot(order: Order) -> Order:
    return order.snapshot()


# Seeded once from the OS: ids need to be unique, not unpredictable, and a syscall per order
# would cost more than the rest of the id.
_id_bits = random.Random(secrets.randbits(64)).getrandbits


def new_order_id() -> str:
    """20 hex characters, time-ordered: short enough for every broker's client tag field."""
    return f"{time.time_ns() // 1000:013x}{_id_bits(28):07x}"


def _path(start: OrderStatus, goal: OrderStatus) -> list[OrderStatus] | None:
    """The shortest legal sequence of statuses from ``start`` to ``goal`` (excluding start)."""
    if start == goal:
        return []
    frontier: deque[tuple[OrderStatus, list[OrderStatus]]] = deque([(start, [])])
    seen = {start}
    while frontier:
        status, path = frontier.popleft()
        for nxt in TRANSITIONS[status]:
            if nxt == goal:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                frontier.append((nxt, [*path, nxt]))
    return None


class OrderManager:
    """The one owner of order state. Call it from the host's event loop only."""

    def __init__(
        self,
        *,
        storage: Storage,
        accounts: Mapping[str, Account],
        brokers: Mapping[str, Broker],
        instruments: Callable[[str, str], Instrument | None],
        risk: RiskChecker,
        portfolio: Portfolio,
        last_price: Callable[[str], int | None],
        config: OmsSection,
    ) -> None:
        self._storage = storage
        self._accounts = accounts
        self._brokers = brokers
        self._instrument = instruments
        self._risk = risk
        self._portfolio = portfolio
        self._last_price = last_price
        self._config = config
        self._orders: dict[str, Order] = {}
        self._by_client_id: dict[tuple[str, str], list[str]] = {}
        self._by_broker_id: dict[tuple[str, str], str] = {}
        self._live: dict[str, set[str]] = {}  # account → ids of non-terminal orders
        # Unfilled quantity of live orders per (account, instrument, side), kept up to date by
        # _track after every change, so building a risk context never scans the order book.
        self._exposure: dict[tuple[str, str, Side], int] = {}
        self._counted: dict[str, int] = {}
        # Orders known by current status, kept by every status change (for metrics).
        self._status_counts: dict[OrderStatus, int] = dict.fromkeys(OrderStatus, 0)
        self._fill_ids: set[tuple[str, str]] = set()
        self._conversions: set[tuple[str, str]] = set()  # (broker, key) of applied conversions
        self._early: dict[tuple[str, str], list[OrderUpdate | Fill]] = {}
        self._inflight: dict[str, int] = {}  # broker → placements awaiting an order id
        self._placing: set[str] = set()  # ids of orders whose place_order has not returned
        self._cancelling: set[str] = set()  # ids of orders whose cancel_order has not returned
        self._feeds: list[OrderFeed] = []
        self._last_seq = 0
        self._journal = _Journal(storage, self._publish)

    # Lifecycle --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Write the journal until cancelled (the host runs this in its task group)."""
        await self._journal.run()

    async def flush(self) -> None:
        """Wait until everything changed so far is durable."""
        await self._journal.flush()

    async def recover(self) -> int:
        """Reload orders, fills and positions from storage; return the number of open orders."""
        for order in await self._storage.load_orders():
            self._index(order)
        for fill in await self._storage.load_fills():
            self._fill_ids.add((self._broker_of(fill.account), fill.fill_id))
        self._portfolio.load(await self._storage.load_positions())
        self._last_seq = await self._storage.last_order_event_seq()
        open_orders = sum(len(ids) for ids in self._live.values())
        log.info("oms.recovered", orders=len(self._orders), open=open_orders)
        return open_orders

    def _index(self, order: Order) -> None:
        if order.order_id not in self._orders:
            self._status_counts[order.status] += 1
        self._orders[order.order_id] = order
        request = order.request
        if request.client_order_id:
            ids = self._by_client_id.setdefault((request.account, request.client_order_id), [])
            if order.order_id not in ids:
                ids.append(order.order_id)
        if order.broker_order_id:
            key = (self._broker_of(request.account), order.broker_order_id)
            self._by_broker_id[key] = order.order_id
        live = self._live.setdefault(request.account, set())
        if order.is_terminal:
            live.discard(order.order_id)
        else:
            live.add(order.order_id)
        self._track(order)

    def _track(self, order: Order) -> None:
        """Bring the exposure counters in line with ``order`` after any change to it."""
        now = 0 if order.is_terminal else order.remaining_quantity
        before = self._counted.pop(order.order_id, 0)
        if now:
            self._counted[order.order_id] = now
        if now != before:
            request = order.request
            key = (request.account, request.instrument, request.side)
            self._exposure[key] = self._exposure.get(key, 0) + now - before

    def _counts_moved(self, before: OrderStatus, after: OrderStatus) -> None:
        self._status_counts[before] -= 1
        self._status_counts[after] += 1

    @property
    def changes(self) -> int:
        """A count that grows with every journalled order change (to tell when orders are still)."""
        return self._journal.added

    def status_counts(self) -> dict[str, int]:
        """How many orders the OMS knows, by current status (every status, zeros included)."""
        return {str(status): count for status, count in self._status_counts.items()}

    def _broker_of(self, account_id: str) -> str:
        account = self._accounts.get(account_id)
        return account.broker if account else ""

    # Queries ----------------------------------------------------------------------------------

    def get(self, user: User, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None or not self._can_see(user, order.request.account):
            raise NotFound(f"no order {order_id!r}")
        return _snapshot(order)

    def orders(
        self, user: User, *, account: str | None = None, status: OrderStatus | None = None
    ) -> list[Order]:
        """The user's visible orders, oldest first, optionally filtered."""
        return [
            _snapshot(o)
            for o in self._orders.values()
            if self._can_see(user, o.request.account)
            and (account is None or o.request.account == account)
            and (status is None or o.status == status)
        ]

    def subscribe(self, user: User, *, max_backlog: int = 10_000) -> OrderFeed:
        """Order events of every order the user can see, from now on."""
        feed = OrderFeed(lambda order: self._can_see(user, order.request.account), max_backlog)
        self._feeds = [f for f in self._feeds if not f.closed]
        self._feeds.append(feed)
        return feed

    async def resume(
        self, user: User, after_seq: int, *, max_backlog: int = 10_000, max_replay: int = 100_000
    ) -> OrderFeed:
        """Order events the user can see with a journal ``seq`` above ``after_seq``: first those
        already journalled, replayed from storage, then live ones, with no gap and no repeat.

        Sequences are journal positions: increasing, not contiguous per user. Replaying more
        than ``max_replay`` events raises ``Conflict`` (``resume_too_far``); such a client
        should start afresh from ``orders()``.
        """
        feed = self.subscribe(user, max_backlog=max_backlog)
        replayed: list[OrderEventMessage] = []
        cursor = after_seq
        try:
            while page := await self._storage.order_events(cursor, limit=1000):
                cursor = page[-1].seq
                replayed.extend(
                    OrderEventMessage(e.seq, e.kind, e.order)
                    for e in page
                    if self._can_see(user, e.order.request.account)
                )
                if len(replayed) > max_replay:
                    raise Conflict(
                        f"more than {max_replay} order events since seq {after_seq}; "
                        "list the orders afresh instead",
                        code="resume_too_far",
                    )
        except BaseException:
            feed.close()  # also when cancelled: nobody will read it
            raise
        feed._prime(replayed, cursor)
        return feed

    @property
    def last_seq(self) -> int:
        """The journal sequence of the newest order event: recovered at start, then the newest
        published to subscribers (a client resuming from it misses nothing)."""
        return self._last_seq

    def _publish(self, messages: list[OrderEventMessage]) -> None:
        if messages:
            self._last_seq = max(self._last_seq, messages[-1].seq)
        for feed in self._feeds:
            for message in messages:
                feed.push(message)

    # Authorisation ----------------------------------------------------------------------------

    def _can_see(self, user: User, account_id: str) -> bool:
        account = self._accounts.get(account_id)
        return account is not None and user.can_see(account)

    def _trading_account(self, user: User, account_id: str) -> Account:
        if user.disabled:
            raise AuthError(f"user {user.username!r} is disabled", code="forbidden", status=403)
        if user.role is Role.VIEWER:
            raise AuthError("viewers cannot trade", code="forbidden", status=403)
        account = self._accounts.get(account_id)
        if account is None:
            raise NotFound(f"no account {account_id!r}")
        if not user.may_reach(account):
            if account_id in user.accounts:
                raise AuthError(
                    f"sim user {user.username!r} can never trade live account {account_id!r}",
                    code="forbidden",
                    status=403,
                )
            raise AuthError(
                f"user {user.username!r} is not granted account {account_id!r}",
                code="forbidden",
                status=403,
            )
        return account

    def _instrument_for(self, account: Account, key: str) -> Instrument:
        instrument = self._instrument(account.broker, key)
        if instrument is None:
            raise NotFound(f"unknown instrument {key!r} at broker {account.broker!r}")
        return instrument

    # Submit -----------------------------------------------------------------------------------

    async def submit(self, user: User, request: OrderRequest) -> list[Order]:
        """Place an order; returns the orders created (more than one when sliced).

        A retry with the same client order id returns the orders it created the first time;
        the same id with a different request raises ``Conflict``. Risk rejections raise
        ``RiskRejected`` and create nothing; a broker rejection returns a REJECTED order.
        """
        account = self._trading_account(user, request.account)
        if request.client_order_id:
            existing = self._by_client_id.get((request.account, request.client_order_id))
            if existing:
                orders = [self._orders[i] for i in existing]
                if _same_request(orders, request):
                    return [_snapshot(o) for o in orders]
                raise Conflict(
                    f"client order id {request.client_order_id!r} was used for another order",
                    code="duplicate_client_order_id",
                )
        instrument = self._instrument_for(account, request.instrument)
        self._validate(instrument, request)
        slices = self._slices(instrument, request)
        now = utcnow()  # one moment for the risk checks and the orders' creation
        for child in slices:
            # One child at a time, so the rate rule counts each child before the next.
            context = self._risk_context(user, account, instrument, now)
            rejection = self._risk.check(child, context)
            if rejection is not None:
                if rejection.kill_switch is not None:
                    await self._risk.flush()  # a tripped kill switch must survive a restart
                raise RiskRejected(rejection.reason, code=rejection.code)
            self._risk.commit(child, context)
        orders = [Order(new_order_id(), child, user.username, created_at=now) for child in slices]
        for order in orders:
            # Indexed before the first await, so a concurrent retry of the same client order
            # id finds every child and gets them back instead of placing anything.
            order.transition(_S.PENDING, at=now)
            self._index(order)
        try:
            await self._journal.write_all(orders, "created")
        except HftError:
            for order in orders:
                self._forget(order)
            raise
        if len(orders) == 1:
            await self._send(account, instrument, orders[0])
        else:
            async with anyio.create_task_group() as tg:
                for order in orders:
                    tg.start_soon(self._send, account, instrument, order)
        return [_snapshot(o) for o in orders]

    def _validate(self, instrument: Instrument, request: OrderRequest) -> None:
        instrument.check_quantity(request.quantity)
        for price in (request.price, request.trigger_price):
            if price is not None:
                instrument.check_price(price)
        freeze = instrument.freeze_quantity
        if freeze and request.quantity > freeze and not self._config.slice_freeze_quantity:
            raise ValidationError(
                f"{instrument.key}: quantity {request.quantity} exceeds the freeze quantity "
                f"{freeze}",
                code="freeze_quantity",
            )

    def _slices(self, instrument: Instrument, request: OrderRequest) -> list[OrderRequest]:
        freeze = instrument.freeze_quantity
        if not freeze or request.quantity <= freeze or not self._config.slice_freeze_quantity:
            return [request]
        size = freeze - freeze % instrument.lot_size
        children = []
        remaining = request.quantity
        while remaining:
            quantity = min(size, remaining)
            # Children keep the parent's client order id, so a retry finds all of them.
            children.append(
                attrs.evolve(
                    request,
                    quantity=quantity,
                    disclosed_quantity=min(request.disclosed_quantity, quantity),
                )
            )
            remaining -= quantity
        return children

    def _risk_context(
        self, user: User, account: Account, instrument: Instrument, now: dt.datetime
    ) -> RiskContext:
        live = self._live.get(account.account_id, ())
        exposure = self._exposure
        key = instrument.key
        pending_buy = exposure.get((account.account_id, key, Side.BUY), 0)
        pending_sell = exposure.get((account.account_id, key, Side.SELL), 0)
        positions = self._portfolio.positions(account.account_id)
        instruments = {key: instrument}
        for position in positions:
            known = self._instrument(account.broker, position.instrument)
            if known is not None:
                instruments[known.key] = known
        return RiskContext(
            account=account,
            user=user,
            instrument=instrument,
            position=self._portfolio.position(account.account_id, key),
            positions=positions,
            open_orders=len(live),
            pending_buy_quantity=pending_buy,
            pending_sell_quantity=pending_sell,
            last_price=self._last_price(key),
            day_pnl=self._portfolio.day_pnl(
                account.account_id, lambda held: instruments[held].price_scale
            ),
            now=now,
            monotonic_s=anyio.current_time(),
            instruments=instruments,
        )

    def _forget(self, order: Order) -> None:
        if order.order_id in self._orders:
            self._status_counts[order.status] -= 1
        order.status = _S.REJECTED  # never sent: drop it from the exposure counters too
        self._track(order)
        self._orders.pop(order.order_id, None)
        self._live.get(order.request.account, set()).discard(order.order_id)
        key = (order.request.account, order.request.client_order_id)
        if key in self._by_client_id:
            self._by_client_id[key] = [i for i in self._by_client_id[key] if i != order.order_id]

    async def _send(self, account: Account, instrument: Instrument, order: Order) -> None:
        broker = self._brokers[account.broker]
        # The broker sees hft's order id as the client id: it is what brokers echo back as a
        # tag, so reconciliation can match orders whose placement outcome was never seen.
        outbound = order.request.with_client_order_id(order.order_id)
        self._inflight[account.broker] = self._inflight.get(account.broker, 0) + 1
        self._placing.add(order.order_id)
        try:
            with deadline(self._config.broker_timeout_s, what=f"placing order {order.order_id}"):
                broker_order_id = await broker.place_order(
                    account.broker_account, instrument, outbound
                )
        except BrokerRejected as exc:
            self._move(order, _S.REJECTED, exc.message)
            log.info("order.rejected", order_id=order.order_id, reason=exc.message)
            return
        except HftError as exc:
            # The request may or may not have reached the broker: keep the order PENDING and
            # let reconciliation find it by its client id.
            order.reason = f"placement outcome unknown: {exc.message}"
            self._journal.add(order, "status")
            log.warning("order.outcome_unknown", order_id=order.order_id, error=exc.message)
            return
        else:
            self._bind(account.broker, order, broker_order_id)  # before the finally below
        finally:
            self._placing.discard(order.order_id)
            self._inflight[account.broker] -= 1
            if not self._inflight[account.broker]:
                self._drop_unclaimed(account.broker)

    def _drop_unclaimed(self, broker: str) -> None:
        """Events held for placements that never returned an id are not ours after all."""
        for key in [k for k in self._early if k[0] == broker]:
            log.info("oms.foreign_order_event", broker=broker, broker_order_id=key[1])
            del self._early[key]

    def _bind(self, broker: str, order: Order, broker_order_id: str) -> None:
        order.broker_order_id = broker_order_id
        self._by_broker_id[(broker, broker_order_id)] = order.order_id
        self._journal.add(order, "accepted")
        for event in self._early.pop((broker, broker_order_id), []):
            self._apply(broker, order, event)

    # Modify and cancel ------------------------------------------------------------------------

    def _live_order(self, user: User, order_id: str) -> tuple[Order, Account]:
        order = self._orders.get(order_id)
        if order is None or not self._can_see(user, order.request.account):
            raise NotFound(f"no order {order_id!r}")
        account = self._trading_account(user, order.request.account)
        if order.is_terminal:
            raise Conflict(f"order {order_id} is {order.status}", code="order_not_live")
        if order.broker_order_id is None:
            raise Conflict(
                f"order {order_id} is not yet acknowledged by the broker; try again",
                code="order_pending",
            )
        if order.status in (_S.PENDING_CANCEL, _S.PENDING_MODIFY):
            raise Conflict(f"order {order_id} is {order.status}", code="order_busy")
        return order, account

    async def modify(self, user: User, order_id: str, change: ModifyRequest) -> Order:
        """Ask the broker to change a live order; a refusal restores it and raises."""
        order, account = self._live_order(user, order_id)
        if order.status is _S.PENDING:
            # Known to the broker but not yet open: there is nothing to modify yet (a cancel is
            # fine, and brokers take one).
            raise Conflict(
                f"order {order_id} is not yet open at the broker; try again",
                code="order_pending",
            )
        instrument = self._instrument_for(account, order.request.instrument)
        request = order.request
        if change.quantity is not None:
            instrument.check_quantity(change.quantity)
            if change.quantity <= order.filled_quantity:
                raise ValidationError(
                    f"new quantity {change.quantity} is not above the filled quantity "
                    f"{order.filled_quantity}",
                    code="bad_quantity",
                )
        for price in (change.price, change.trigger_price):
            if price is not None:
                instrument.check_price(price)
        updated = attrs.evolve(
            request,
            quantity=change.quantity if change.quantity is not None else request.quantity,
            price=change.price if change.price is not None else request.price,
            trigger_price=(
                change.trigger_price if change.trigger_price is not None else request.trigger_price
            ),
            order_type=change.order_type or request.order_type,
            time_in_force=change.time_in_force or request.time_in_force,
        )
        previous = order.status
        order.transition(_S.PENDING_MODIFY)
        self._counts_moved(previous, order.status)
        await self._journal.write(order, "status")
        try:
            assert order.broker_order_id is not None
            with deadline(self._config.broker_timeout_s, what=f"modifying order {order_id}"):
                await self._brokers[account.broker].modify_order(
                    account.broker_account, order.broker_order_id, instrument, change
                )
        except HftError as exc:
            if order.status is _S.PENDING_MODIFY:
                self._move(order, previous, f"modify refused: {exc.message}")
            raise
        order.request = updated
        self._track(order)
        if order.status is _S.PENDING_MODIFY:
            self._move(order, previous, "modified", kind="modified")
        else:
            self._journal.add(order, "modified")
        return _snapshot(order)

    async def cancel(self, user: User, order_id: str) -> Order:
        """Ask the broker to cancel a live order; the CANCELLED state arrives from the broker."""
        order, account = self._live_order(user, order_id)
        previous = order.status
        order.transition(_S.PENDING_CANCEL)
        self._counts_moved(previous, order.status)
        self._cancelling.add(order_id)
        try:
            await self._journal.write(order, "status")
            try:
                assert order.broker_order_id is not None
                with deadline(self._config.broker_timeout_s, what=f"cancelling order {order_id}"):
                    await self._brokers[account.broker].cancel_order(
                        account.broker_account, order.broker_order_id
                    )
            except HftError as exc:
                if order.status is _S.PENDING_CANCEL:
                    self._move(order, previous, f"cancel refused: {exc.message}")
                raise
        finally:
            self._cancelling.discard(order_id)
        return _snapshot(order)

    # Broker events ----------------------------------------------------------------------------

    def on_broker_event(self, broker: str, event: OrderUpdate | Fill) -> None:
        """Apply an order update or a fill from ``broker`` (the host's event pump calls this)."""
        broker_order_id = event.broker_order_id
        order_id = self._by_broker_id.get((broker, broker_order_id))
        if order_id is None and isinstance(event, OrderUpdate) and event.client_order_id:
            order = self._orders.get(event.client_order_id)
            if order is not None and order.broker_order_id is None:
                self._bind(broker, order, broker_order_id)
                order_id = order.order_id
        if order_id is None:
            if self._inflight.get(broker):
                # Sent before place_order returned its id: applied once the id is known.
                self._early.setdefault((broker, broker_order_id), []).append(event)
            else:
                log.info("oms.foreign_order_event", broker=broker, broker_order_id=broker_order_id)
            return
        self._apply(broker, self._orders[order_id], event)

    def _apply(self, broker: str, order: Order, event: OrderUpdate | Fill) -> None:
        if isinstance(event, Fill):
            self._apply_fill(broker, order, event)
            return
        if event.exchange_order_id and order.exchange_order_id != event.exchange_order_id:
            order.exchange_order_id = event.exchange_order_id
        target = event.status
        if target == order.status or (
            target is _S.FILLED and order.filled_quantity < order.request.quantity
        ):
            # FILLED is applied by the fills themselves, so quantities and state never disagree.
            return
        if target is _S.PARTIALLY_FILLED and order.filled_quantity == 0:
            return
        if target in (_S.PENDING_CANCEL, _S.PENDING_MODIFY):
            # The broker echoing a request hft made: hft already tracked it, and moving back
            # into a pending state after the broker accepted the request would only add churn.
            return
        if target is _S.OPEN and order.order_id in self._cancelling:
            # Sent before the broker had the cancel (a modify's confirmation, say): it cannot be
            # the cancel's refusal, which cancel_order raises, so it must not undo PENDING_CANCEL.
            return
        if target in TRANSITIONS[order.status]:
            self._move(order, target, event.reason)
        elif order.status is _S.PENDING and target in _LIVE_BROKER_STATES:
            path = _path(order.status, target) or []
            for status in path:
                self._move(order, status, event.reason)
        else:
            log.info(
                "oms.stale_update",
                order_id=order.order_id,
                status=str(order.status),
                update=str(target),
            )

    def _apply_fill(self, broker: str, order: Order, fill: Fill) -> None:
        key = (broker, fill.fill_id)
        if key in self._fill_ids:
            return
        if fill.quantity > order.remaining_quantity:
            log.error(
                "oms.overfill",
                order_id=order.order_id,
                fill_id=fill.fill_id,
                quantity=fill.quantity,
            )
            return
        self._fill_ids.add(key)
        fill = attrs.evolve(fill, order_id=order.order_id, account=order.request.account)
        order.record_fill(fill.quantity, fill.price)
        self._track(order)
        position = self._portfolio.apply_fill(fill, order.request.product)
        self._journal.add_fill(fill, position)
        target = _S.FILLED if order.remaining_quantity == 0 else _S.PARTIALLY_FILLED
        if order.is_terminal:
            self._journal.add(order, "fill")  # a late fill of a cancelled order still counts
        elif target in TRANSITIONS[order.status]:
            self._move(order, target, "", kind="fill")
        else:
            for status in _path(order.status, target) or []:
                self._move(order, status, "", kind="fill")

    def _move(
        self, order: Order, status: OrderStatus, reason: str, *, kind: str = "status"
    ) -> None:
        before = order.status
        order.transition(status, reason)
        self._counts_moved(before, status)
        if order.is_terminal:
            self._live.get(order.request.account, set()).discard(order.order_id)
            self._track(order)
        self._journal.add(order, kind)

    def on_position_conversion(self, broker: str, event: PositionConversion) -> None:
        """Apply a broker's product conversion to the portfolio and journal both positions.

        A repeated ``key`` (per broker, for this process's life), an account no configured
        account maps to, or a conversion the positions cannot take is logged and changes
        nothing. Clients see the positions as they see any others; no order event is made.
        """
        if (broker, event.key) in self._conversions:
            return
        account = next(
            (
                a.account_id
                for a in self._accounts.values()
                if a.broker == broker and a.broker_account == event.account
            ),
            None,
        )
        fields = {
            "broker": broker,
            "account": event.account,
            "instrument": event.instrument,
            "source": str(event.from_product),
            "target": str(event.to_product),
            "quantity": event.quantity,
            "key": event.key,
        }
        if account is None:
            log.info("oms.foreign_conversion", **fields)
            return
        try:
            moved = self._portfolio.convert(
                account, event.instrument, event.from_product, event.to_product, event.quantity
            )
        except ValidationError as exc:
            log.warning("oms.conversion_refused", error=exc.message, **fields)
            return
        self._conversions.add((broker, event.key))
        self._journal.add_positions(*moved)
        log.info("oms.position_converted", **fields)

    # Reconciliation ---------------------------------------------------------------------------

    async def reconcile(self, broker_name: str) -> dict[str, Any]:
        """Bring every order of ``broker_name``'s accounts in line with the broker's books.

        Missed fills and transitions are applied; open orders the broker does not know are
        closed (REJECTED if never acknowledged, else EXPIRED); broker orders hft never placed
        and position differences are reported. The report is logged and stored.
        """
        broker = self._brokers[broker_name]
        changes: list[dict[str, Any]] = []
        foreign: list[str] = []
        mismatches: list[dict[str, Any]] = []
        started = utcnow()
        accounts = [a for a in self._accounts.values() if a.broker == broker_name]
        for account in accounts:
            books = await broker.orders(account.broker_account)
            trades = await broker.trades(account.broker_account)
            seen: set[str] = set()
            for update in books:
                before = self._order_for(broker_name, update)
                if before is None:
                    foreign.append(update.broker_order_id)
                    continue
                seen.add(before.order_id)
                status_before = before.status
                for fill in trades:
                    if fill.broker_order_id == update.broker_order_id:
                        self._apply(broker_name, before, fill)
                self._apply(broker_name, before, update)
                if before.status != status_before:
                    changes.append(
                        {
                            "order_id": before.order_id,
                            "from": str(status_before),
                            "to": str(before.status),
                        }
                    )
            for order_id in list(self._live.get(account.account_id, ())):
                order = self._orders[order_id]
                # Orders placed while the books were being read, or still being placed, may
                # simply be newer than the books: only older ones can be missing.
                if order_id in seen or order_id in self._placing or order.created_at >= started:
                    continue
                status_before = order.status
                if order.broker_order_id is None:
                    self._move(order, _S.REJECTED, "never reached the broker")
                else:
                    target = _S.EXPIRED
                    for status in _path(order.status, target) or []:
                        self._move(order, status, "unknown to the broker at reconciliation")
                changes.append(
                    {"order_id": order_id, "from": str(status_before), "to": str(order.status)}
                )
            ours = {p.instrument: p.quantity for p in self._portfolio.positions(account.account_id)}
            theirs: dict[str, int] = {}
            for p in await broker.positions(account.broker_account):
                theirs[p.instrument] = theirs.get(p.instrument, 0) + p.quantity
            for instrument in sorted(set(ours) | set(theirs)):
                if ours.get(instrument, 0) != theirs.get(instrument, 0):
                    mismatches.append(
                        {
                            "account": account.account_id,
                            "instrument": instrument,
                            "hft": ours.get(instrument, 0),
                            "broker": theirs.get(instrument, 0),
                        }
                    )
        await self.flush()
        report: dict[str, Any] = {
            "broker": broker_name,
            "accounts": [a.account_id for a in accounts],
            "changes": changes,
            "unknown_broker_orders": foreign,
            "position_mismatches": mismatches,
        }
        log.info(
            "oms.reconciled",
            broker=broker_name,
            changes=len(changes),
            unknown=len(foreign),
            mismatches=len(mismatches),
        )
        await self._storage.append_audit("reconciliation", report)
        return report

    def _order_for(self, broker: str, update: OrderUpdate) -> Order | None:
        order_id = self._by_broker_id.get((broker, update.broker_order_id))
        if order_id is None and update.client_order_id in self._orders:
            order = self._orders[update.client_order_id]
            if order.broker_order_id is None:
                self._bind(broker, order, update.broker_order_id)
            order_id = order.order_id
        return self._orders.get(order_id) if order_id else None


def _same_request(orders: Sequence[Order], request: OrderRequest) -> bool:
    total = sum(o.request.quantity for o in orders)
    first = orders[0].request
    return (
        total == request.quantity
        and first.instrument == request.instrument
        and first.side is request.side
        and first.order_type is request.order_type
        and first.price == request.price
        and first.trigger_price == request.trigger_price
        and first.product is request.product
    )
