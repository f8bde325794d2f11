"""What plugins implement: Broker, Normaliser, RiskRule, Storage, Transport, MatchingEngine.

A plugin builds these objects in the factories it registers through its hooks (see
:mod:`hft.hookspecs`); the host then calls them directly, never through pluggy, so the per-tick
and per-order paths cost one method call.

Each class docstring lists which methods are required and which are optional (an optional method
has a working default here).
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, TypeAlias, runtime_checkable

import attrs

from hft._errors import NotFound
from hft._plugins import PluginContext
from hft.model import (
    Account,
    Bar,
    ConnectionEvent,
    Fill,
    Holding,
    Instrument,
    ModifyRequest,
    Order,
    OrderRequest,
    OrderUpdate,
    Position,
    PositionConversion,
    StreamMode,
    Tick,
    User,
)

if TYPE_CHECKING:
    from hft._host import Services
    from hft._hub import MarketDataHub, Subscription
    from hft._oms import OrderEventMessage, OrderFeed, OrderManager

__all__ = [
    "Broker",
    "BrokerEvent",
    "EngineCodes",
    "EngineEvent",
    "MarketDataHub",
    "MatchingEngine",
    "Normaliser",
    "OrderEvent",
    "OrderEventMessage",
    "OrderFeed",
    "OrderManager",
    "PluginContext",
    "RiskContext",
    "RiskRejection",
    "RiskRule",
    "Services",
    "Storage",
    "Subscription",
    "TaskStatus",
    "Transport",
]


def __getattr__(name: str) -> object:
    # The services transports use live with the host, which imports this module: resolve them
    # on first use.
    if name == "Services":
        from hft._host import Services

        return Services
    if name in ("MarketDataHub", "Subscription"):
        from hft import _hub

        return getattr(_hub, name)
    if name in ("OrderEventMessage", "OrderFeed", "OrderManager"):
        from hft import _oms

        return getattr(_oms, name)
    raise AttributeError(f"module 'hft.contracts' has no attribute {name!r}")


#: Everything a broker's event stream yields: market data (ticks, bars) for the hub; order
#: updates, fills and position conversions for the OMS; connection changes for both.
BrokerEvent: TypeAlias = Tick | Bar | OrderUpdate | Fill | PositionConversion | ConnectionEvent


# ----------------------------------------------------------------------------------------------
# Brokers
# ----------------------------------------------------------------------------------------------


class Broker(abc.ABC):
    """A connection to one broker login (one Kite api key, one XTS user, one simulated exchange).

    A login may serve several broker-side accounts (an XTS dealer serves many ``clientID``\\ s), so
    every account-scoped call names the ``broker_account`` it is for; :meth:`accounts` lists them.

    Required: :meth:`connect`, :meth:`close`, :meth:`place_order`, :meth:`modify_order`,
    :meth:`cancel_order`, :meth:`orders`, :meth:`trades`, :meth:`positions`,
    :meth:`instruments`, :meth:`subscribe`, :meth:`unsubscribe`, :meth:`events`.

    Optional: :meth:`accounts` (default: the one account named ``"default"``), :meth:`holdings`
    (default: none), :meth:`quotes` (default: raises :class:`NotFound`).

    Two-step logins (Kite's browser redirect) happen outside the host, through the plugin's CLI
    command; :meth:`connect` then uses the stored token and raises :class:`hft.AuthError` with a
    message telling the user what to run when it is missing or expired. The host marks such a
    broker not ready and keeps running.

    Ordering: :meth:`place_order` returns once the broker has accepted the request and given an
    id; the order's later life (open, fills, cancel) arrives as :class:`OrderUpdate` and
    :class:`Fill` events, in the order the broker produced them.
    """

    #: The configured instance name (``[brokers.<name>]``), set by the factory.
    name: str = ""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Log in (or load the stored session), open streams; raise AuthError/NetworkError."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close streams and sessions; idempotent. The event stream ends after it."""

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def accounts(self) -> Sequence[str]:
        """The broker-side account codes this login may trade (known after :meth:`connect`)."""
        return ("default",)

    # Orders -----------------------------------------------------------------------------------

    @abc.abstractmethod
    async def place_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest
    ) -> str:
        """Send a new order; return the broker's order id. Raise BrokerRejected on refusal."""

    @abc.abstractmethod
    async def modify_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        request: ModifyRequest,
    ) -> None:
        """Ask the broker to change a live order; the outcome arrives as an OrderUpdate."""

    @abc.abstractmethod
    async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
        """Ask the broker to cancel a live order; the outcome arrives as an OrderUpdate."""

    # Books and portfolio ----------------------------------------------------------------------

    @abc.abstractmethod
    async def orders(self, broker_account: str) -> list[OrderUpdate]:
        """Today's order book: the latest state of every order (used for reconciliation)."""

    @abc.abstractmethod
    async def trades(self, broker_account: str) -> list[Fill]:
        """Today's fills."""

    @abc.abstractmethod
    async def positions(self, broker_account: str) -> list[Position]:
        """Net positions as the broker reports them."""

    async def holdings(self, broker_account: str) -> list[Holding]:
        """Delivery holdings; brokers without them return none."""
        return []

    # Market data ------------------------------------------------------------------------------

    @abc.abstractmethod
    async def instruments(self) -> list[Instrument]:
        """The instrument master (a plugin may cache it per day)."""

    async def quotes(self, instruments: Sequence[Instrument]) -> dict[str, Tick]:
        """A full-mode snapshot per instrument key; absent keys had no data."""
        raise NotFound(f"broker {self.name!r} does not serve quotes")

    @abc.abstractmethod
    async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
        """Start (or change the mode of) streaming for ``instruments``; survives reconnects."""

    @abc.abstractmethod
    async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
        """Stop streaming ``instruments``."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[BrokerEvent]:
        """The one stream of ticks, bars, order updates, fills, position conversions and
        connection changes.

        It has a single consumer (the host) and ends when the broker is closed.
        """


# ----------------------------------------------------------------------------------------------
# Normalisers
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class Normaliser(Protocol):
    """Turns one raw broker payload (bytes or text) into domain events.

    Required: :meth:`normalise`. Built by a factory that receives the instruments it may meet,
    so it can build its own token lookup once. Raises :class:`hft.ValidationError` on a payload
    it cannot parse; never returns partial garbage.
    """

    def normalise(self, payload: bytes | str) -> list[BrokerEvent]: ...


# ----------------------------------------------------------------------------------------------
# Risk rules
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class RiskContext:
    """What a risk rule may look at besides the order itself; built once per order by the OMS.

    - ``account``, ``user``, ``instrument``: the account the order is for, who sent it, and the
      order's instrument.
    - ``position``: the account's net position in this instrument across products, marked at
      the latest price (``None`` when it has none); ``positions``: every position of the account,
      one per instrument and product (they may include this instrument's).
    - ``open_orders``: how many live (non-terminal) orders the account has, in any instrument.
    - ``pending_buy_quantity`` / ``pending_sell_quantity``: the unfilled quantity of the
      account's live buy / sell orders in this instrument, so limits can count what could still
      fill. Both are ``>= 0``; quantities elsewhere are signed like positions (buys positive).
    - ``last_price``: this instrument's last traded price in its price units, ``None`` when none
      is known yet.
    - ``day_pnl``: the account's realised plus mark-to-market PnL today, in paise (hundredths of
      the currency; instruments quoted at another price scale are converted), negative for a loss.
    - ``now``: wall-clock time (UTC); ``monotonic_s``: a monotonic clock reading in seconds, which
      never goes backwards, for rate rules.
    - ``instruments``: instruments by key, at least those in ``positions``, so account-wide rules
      can value positions at their own price scale (empty when the OMS does not supply them).
    """

    account: Account
    user: User
    instrument: Instrument
    position: Position | None
    positions: Sequence[Position]
    open_orders: int
    pending_buy_quantity: int
    pending_sell_quantity: int
    last_price: int | None
    day_pnl: int
    now: dt.datetime
    monotonic_s: float
    instruments: Mapping[str, Instrument] = attrs.field(factory=dict)


@attrs.frozen
class RiskRejection:
    """Why a rule refused an order: a stable ``code`` and a ``reason`` a person understands.

    ``code`` is machine-readable and never reworded (clients branch on it); ``reason`` names the
    instrument or account and the numbers involved. ``kill_switch`` set to ``"halt"`` or
    ``"reduce_only"`` asks the risk engine to trip the account's kill switch to that mode as well
    (the daily loss limit does); the engine only ever makes a switch stricter this way.
    """

    code: str
    reason: str
    kill_switch: Literal["halt", "reduce_only"] | None = None


@runtime_checkable
class RiskRule(Protocol):
    """One pre-trade check.

    Required: ``code`` (the rule's stable rejection code; a rule with several failure kinds may
    reject with more specific codes, each documented) and :meth:`check`.

    Optional: ``commit(request, context) -> None``, called after the whole chain has accepted an
    order, for rules that keep state about accepted orders (an order-rate window). The engine
    looks it up once, when it builds the chain.

    The engine builds each rule once per account, so state kept on the instance is that
    account's. ``check`` runs for every order, in the order path: it must be fast, must not
    block or do I/O, and must not change state (an order it passes may still be refused by a
    later rule). It returns ``None`` to let the order through or a :class:`RiskRejection`.
    """

    @property
    def code(self) -> str: ...

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None: ...


# ----------------------------------------------------------------------------------------------
# Storage
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class OrderEvent:
    """One entry of the append-only order journal: the order as it was after this event."""

    seq: int  # assigned by storage, increasing
    order: Order
    kind: str  # "created", "status", "fill", "modified"
    at: dt.datetime


class Storage(abc.ABC):
    """A durable store. Required: every abstract method.

    Writes return once the data is durable. ``append_order_events`` is the journal: it assigns
    ``seq`` and is the write an order waits on before it reaches a broker.
    """

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending writes and disconnect; idempotent."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise NetworkError when the store cannot be reached (readiness probes use this)."""

    @abc.abstractmethod
    async def append_order_events(
        self,
        events: Sequence[tuple[Order, str]],
        fills: Sequence[Fill] = (),
        positions: Sequence[Position] = (),
    ) -> list[int]:
        """Journal ``(order, kind)`` pairs durably, in order; return their sequence numbers.

        ``fills`` and ``positions`` (as :meth:`save_fills` and :meth:`save_positions` store
        them) are written in the same transaction: after a crash an order is never FILLED
        without the fill and the position that go with it.
        """

    @abc.abstractmethod
    async def order_events(self, after_seq: int = 0, limit: int = 1000) -> list[OrderEvent]:
        """Journal entries with ``seq > after_seq``, oldest first."""

    async def last_order_event_seq(self) -> int:
        """The ``seq`` of the newest journal entry, 0 when the journal is empty.

        This default searches with :meth:`order_events` (O(log n) reads); a backend that can
        read its maximum directly should.
        """
        if not await self.order_events(0, limit=1):
            return 0
        low, high = 0, 1  # an entry exists after ``low``; find a ``high`` with none after it
        while await self.order_events(high, limit=1):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            if await self.order_events(middle, limit=1):
                low = middle
            else:
                high = middle
        return high

    @abc.abstractmethod
    async def load_orders(self, *, open_only: bool = False) -> list[Order]:
        """Every order at its latest journalled state (or only the non-terminal ones)."""

    @abc.abstractmethod
    async def save_fills(self, fills: Sequence[Fill]) -> None:
        """Record fills; a fill whose ``fill_id`` is already stored for its broker is ignored."""

    @abc.abstractmethod
    async def load_fills(self, account: str | None = None) -> list[Fill]: ...

    @abc.abstractmethod
    async def save_positions(self, positions: Sequence[Position]) -> None: ...

    @abc.abstractmethod
    async def load_positions(self, account: str | None = None) -> list[Position]: ...

    @abc.abstractmethod
    async def save_instruments(self, instruments: Sequence[Instrument]) -> None: ...

    @abc.abstractmethod
    async def load_instruments(self) -> list[Instrument]: ...

    @abc.abstractmethod
    async def save_account(self, account: Account) -> None: ...

    @abc.abstractmethod
    async def load_accounts(self) -> list[Account]: ...

    @abc.abstractmethod
    async def save_user(self, user: User, password_hash: str | None = None) -> None:
        """Insert or update a user; ``password_hash`` ``None`` keeps the stored hash."""

    @abc.abstractmethod
    async def load_users(self) -> list[User]: ...

    @abc.abstractmethod
    async def password_hash(self, username: str) -> str | None: ...

    @abc.abstractmethod
    async def append_audit(self, kind: str, payload: dict[str, object]) -> None:
        """Record an audit entry (a reconciliation report, a kill-switch change), JSON-ready."""

    @abc.abstractmethod
    async def audit_entries(self, kind: str, limit: int = 100) -> list[dict[str, object]]:
        """The newest ``limit`` entries of ``kind``, newest first, each with ``at`` added."""

    @abc.abstractmethod
    async def put_state(self, namespace: str, key: str, value: bytes) -> None:
        """Plugin-owned state (a sim account's cash, a token cache): opaque bytes by key."""

    @abc.abstractmethod
    async def get_state(self, namespace: str, key: str) -> bytes | None: ...


# ----------------------------------------------------------------------------------------------
# Transports
# ----------------------------------------------------------------------------------------------


class Transport(abc.ABC):
    """A server the host runs for clients (HTTP, WebSocket, gRPC). Required: :meth:`serve`."""

    name: str = ""

    @abc.abstractmethod
    async def serve(self, services: Services, task_status: TaskStatus) -> None:
        """Bind, call ``task_status.started(address)``, then serve until cancelled.

        On cancellation, stop accepting, drain in-flight requests briefly, and return.
        """


class TaskStatus(Protocol):
    """anyio's ``task_status`` argument, as far as a transport needs it."""

    def started(self, value: object = None) -> None: ...


# ----------------------------------------------------------------------------------------------
# Matching engines
# ----------------------------------------------------------------------------------------------


class EngineCodes:
    """The integer codes a :class:`MatchingEngine` takes and reports, by name.

    Engines work in plain integers so the per-order path allocates nothing; these names are
    what callers write instead of the numbers. ``docs/matching.md`` defines each one.
    """

    # Sides.
    BUY = 0
    SELL = 1

    # Order types.
    LIMIT = 0
    MARKET = 1
    STOP = 2  # becomes a market order when triggered
    STOP_LIMIT = 3  # becomes a limit order at its price when triggered

    # Time in force.
    GTC = 0
    DAY = 1  # cancelled by ``expire_day``
    IOC = 2
    FOK = 3

    # Self-trade prevention (the engine factory's ``self_trade`` option).
    STP_ALLOW = 0
    STP_CANCEL_RESTING = 1
    STP_CANCEL_INCOMING = 2

    # Event kinds.
    ACCEPTED = 1
    REJECTED = 2
    FILL = 3
    CANCELLED = 4
    TRIGGERED = 5
    MODIFIED = 6

    # Reasons on REJECTED and CANCELLED events (0 on every other event).
    NO_REASON = 0
    UNKNOWN_ORDER = 1
    DUPLICATE_ORDER_ID = 2
    INVALID_QUANTITY = 3
    INVALID_SIDE = 4
    INVALID_ORDER_TYPE = 5
    INVALID_TIME_IN_FORCE = 6
    POST_ONLY_WOULD_CROSS = 7
    INVALID_POST_ONLY = 8
    STOP_NOT_MODIFIABLE = 9
    CANCEL_REQUESTED = 10
    IOC_REMAINDER = 11
    FOK_UNFILLABLE = 12
    MARKET_REMAINDER = 13
    SELF_TRADE = 14
    EXPIRED = 15


class EngineEvent(Protocol):
    """One outcome of a :class:`MatchingEngine` call. Every field is always set.

    ``order_id``, ``owner`` and ``side`` are those of the order the event is about (the
    incoming, taking order for a fill); ``remaining`` is that order's open quantity after the
    event. ``price`` and ``quantity`` depend on ``kind``; ``maker_id``, ``maker_owner``,
    ``maker_remaining`` and ``trade_id`` are set on fills only (0 otherwise); ``reason`` on
    rejections and cancellations only. The table per kind is in ``docs/matching.md``.
    """

    @property
    def kind(self) -> int: ...

    @property
    def order_id(self) -> int: ...

    @property
    def owner(self) -> int: ...

    @property
    def side(self) -> int: ...

    @property
    def price(self) -> int: ...

    @property
    def quantity(self) -> int: ...

    @property
    def remaining(self) -> int: ...

    @property
    def maker_id(self) -> int: ...

    @property
    def maker_owner(self) -> int: ...

    @property
    def maker_remaining(self) -> int: ...

    @property
    def reason(self) -> int: ...

    @property
    def trade_id(self) -> int: ...

    def copy(self) -> EngineEvent:
        """A detached copy of a borrowed event."""
        ...


class MatchingEngine(Protocol):
    """A price-time priority order book for one instrument, built by a registered factory.

    Prices are integer ticks, quantities positive integers, ids and owners integers; all fit in
    a signed 64-bit integer. Codes are those of :class:`EngineCodes`.

    Every method is required. Each call that changes the book (:meth:`submit`, :meth:`cancel`,
    :meth:`modify`, :meth:`expire_day`) first clears the event buffer and then records its
    outcomes in it, in the order they happened. :meth:`take_events` hands them to the caller,
    who owns them from then on; :meth:`event` lends one without copying, valid only until the
    next call. A bad request never raises: it produces a REJECTED event with a reason.
    ``hft-ext``'s ``docs/matching.md`` gives the semantics precisely.
    """

    @property
    def n_fills(self) -> int:
        """Fills since the engine was built."""
        ...

    @property
    def filled_qty(self) -> int:
        """Quantity traded since the engine was built."""
        ...

    @property
    def self_trade(self) -> int:
        """The self-trade prevention mode (``EngineCodes.STP_*``)."""
        ...

    @property
    def live_orders(self) -> int:
        """Orders resting in the book (waiting stops excluded)."""
        ...

    @property
    def waiting_stops(self) -> int: ...

    @property
    def event_count(self) -> int:
        """Events of the last call not yet taken."""
        ...

    def submit(
        self,
        order_id: int,
        owner: int,
        side: int,
        price: int,
        quantity: int,
        order_type: int = 0,
        time_in_force: int = 0,
        stop_price: int = 0,
        post_only: bool = False,
    ) -> None:
        """Enter a new order (``price`` is ignored for market and stop-market orders)."""
        ...

    def cancel(self, order_id: int) -> bool:
        """Cancel a live order; False, with a REJECTED event, when there is none."""
        ...

    def modify(self, order_id: int, price: int, quantity: int) -> bool:
        """Set a resting order's price and open quantity; False, with a REJECTED event, if not."""
        ...

    def expire_day(self) -> int:
        """Cancel every DAY order; return how many."""
        ...

    def take_events(self) -> Sequence[EngineEvent]:
        """The last call's events, handed over to the caller."""
        ...

    def event(self, index: int) -> EngineEvent:
        """The last call's event ``index``, borrowed until the next call."""
        ...

    def best_bid(self) -> int | None: ...

    def best_ask(self) -> int | None: ...

    def last_trade_price(self) -> int | None: ...

    def depth(self, side: int, levels: int) -> Sequence[tuple[int, int, int]]:
        """L2: the best ``levels`` levels of ``side`` as ``(price, quantity, orders)``."""
        ...

    def queue(self, side: int) -> Sequence[tuple[int, Sequence[tuple[int, int, int]]]]:
        """L3: each level of ``side``, best first: ``(price, [(order_id, owner, remaining)])``."""
        ...

    def stops(self, side: int) -> Sequence[tuple[int, int, int]]:
        """Waiting stops of ``side`` in trigger order, as ``(order_id, stop_price, quantity)``."""
        ...
