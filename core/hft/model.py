"""The domain model every part of hft speaks: instruments, market data, orders, portfolio, users.

Numbers: prices are fixed-point integers in the instrument's price units (``price_scale`` decimal
places, so paise for scale 2); quantities are integers. Decimal strings appear only at the edges,
through :func:`to_price_units` and :func:`format_price`, which are exact and refuse anything they
cannot represent. Binary floats are refused outright.

Orders move through one state machine (:data:`TRANSITIONS`); :meth:`Order.transition` refuses any
move the table does not list.

Classes are attrs classes; :data:`converter` (cattrs) turns them into JSON-ready dicts and back.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final

import attrs
import cattrs

from hft._errors import IllegalTransition, ValidationError

__all__ = [
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Account",
    "Bar",
    "ConnectionEvent",
    "ConnectionState",
    "Depth",
    "DepthLevel",
    "Environment",
    "Fill",
    "Holding",
    "Instrument",
    "InstrumentType",
    "ModifyRequest",
    "Ohlc",
    "Order",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Position",
    "PositionConversion",
    "Product",
    "Role",
    "Side",
    "StatusChange",
    "StreamMode",
    "Tick",
    "TimeInForce",
    "User",
    "converter",
    "format_price",
    "from_price_units",
    "to_price_units",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC (the only kind of datetime the model stores)."""
    return dt.datetime.now(dt.UTC)


# ----------------------------------------------------------------------------------------------
# Fixed-point prices
# ----------------------------------------------------------------------------------------------

MAX_PRICE_SCALE: Final = 8
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(MAX_PRICE_SCALE + 1))


def to_price_units(value: str | Decimal | int, scale: int) -> int:
    """Convert a decimal price to integer price units with ``scale`` decimal places, exactly.

    ``"1234.05"`` at scale 2 is ``123405``. A value with more precision than the scale allows,
    a non-finite value, or a binary float raises :class:`ValidationError`; nothing is rounded.
    """
    if isinstance(value, float | bool):
        raise ValidationError(f"price {value!r}: binary floats are not accepted, use a string")
    if not 0 <= scale <= MAX_PRICE_SCALE:
        raise ValidationError(f"price scale {scale} is outside 0..{MAX_PRICE_SCALE}")
    if isinstance(value, int):
        return value * _POW10[scale]
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else value
    except InvalidOperation:
        raise ValidationError(f"price {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise ValidationError(f"price {value!r} is not a finite number")
    units = number.scaleb(scale)
    if units != units.to_integral_value():
        raise ValidationError(f"price {value!r} has more than {scale} decimal places")
    return int(units)


def from_price_units(units: int, scale: int) -> Decimal:
    """The exact decimal value of ``units`` price units at ``scale`` decimal places."""
    return Decimal(units).scaleb(-scale)


def format_price(units: int, scale: int) -> str:
    """``units`` as a decimal string with ``scale`` decimal places: ``123405`` → ``"1234.05"``."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10**scale)
    return f"{sign}{whole}.{frac:0{scale}d}" if scale else f"{sign}{whole}"


# ----------------------------------------------------------------------------------------------
# Enumerations
# ----------------------------------------------------------------------------------------------


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell: the direction a fill moves the net position."""
        return 1 if self is Side.BUY else -1


class OrderType(enum.StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"  # stop-market: becomes a market order when the trigger price trades (SL-M)
    STOP_LIMIT = "STOP_LIMIT"  # becomes a limit order at ``price`` when triggered (SL)


class TimeInForce(enum.StrEnum):
    DAY = "DAY"
    IOC = "IOC"
    GTC = "GTC"
    FOK = "FOK"


class Product(enum.StrEnum):
    CNC = "CNC"  # delivery equity
    MIS = "MIS"  # intraday, squared off by the broker
    NRML = "NRML"  # overnight derivatives
    MTF = "MTF"  # margin trading facility


class InstrumentType(enum.StrEnum):
    EQUITY = "EQ"
    FUTURE = "FUT"
    CALL = "CE"
    PUT = "PE"
    INDEX = "INDEX"


class StreamMode(enum.StrEnum):
    """How much market data a subscription carries."""

    LTP = "ltp"  # last traded price only
    QUOTE = "quote"  # ltp, volume, best bid/ask, ohlc
    FULL = "full"  # quote plus five levels of depth


class Environment(enum.StrEnum):
    LIVE = "live"
    SIM = "sim"


class Role(enum.StrEnum):
    ADMIN = "admin"
    TRADER = "trader"
    VIEWER = "viewer"


class ConnectionState(enum.StrEnum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    RESYNCED = "resynced"  # reconnected and resubscribed: orders must be reconciled now
    DISCONNECTED = "disconnected"


# ----------------------------------------------------------------------------------------------
# Instruments and market data
# ----------------------------------------------------------------------------------------------


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValidationError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class Instrument:
    """A tradable (or index) instrument as hft knows it, broker-neutral.

    ``key`` (``"NSE:INFY"``) is how every other object refers to it. ``token`` is the broker's
    numeric id; ``tick_size`` is in price units, ``lot_size`` and ``freeze_quantity`` in units of
    quantity (shares or contracts).
    """

    exchange: str
    symbol: str
    token: int
    segment: str = ""
    name: str = ""
    instrument_type: InstrumentType = InstrumentType.EQUITY
    tick_size: int = attrs.field(default=5, validator=_positive)
    lot_size: int = attrs.field(default=1, validator=_positive)
    freeze_quantity: int | None = None
    price_scale: int = attrs.field(default=2, validator=attrs.validators.in_(range(9)))
    expiry: dt.date | None = None
    strike: int | None = None

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    def price(self, value: str | Decimal | int) -> int:
        """Parse a decimal price for this instrument, refusing one off its tick grid."""
        units = to_price_units(value, self.price_scale)
        self.check_price(units)
        return units

    def check_price(self, units: int) -> None:
        """Refuse a non-positive price or one that is not a multiple of the tick size."""
        if units <= 0:
            raise ValidationError(f"{self.key}: price must be positive")
        if units % self.tick_size:
            raise ValidationError(
                f"{self.key}: price {self.format(units)} is not a multiple of the tick size "
                f"{self.format(self.tick_size)}",
                code="off_tick",
            )

    def check_quantity(self, quantity: int) -> None:
        """Refuse a non-positive quantity or one that is not a whole number of lots."""
        if quantity <= 0:
            raise ValidationError(f"{self.key}: quantity must be positive", code="bad_quantity")
        if quantity % self.lot_size:
            raise ValidationError(
                f"{self.key}: quantity {quantity} is not a multiple of lot size {self.lot_size}",
                code="bad_lot",
            )

    def format(self, units: int) -> str:
        """Price units as this instrument's decimal string."""
        return format_price(units, self.price_scale)

    def decimal(self, units: int) -> Decimal:
        return from_price_units(units, self.price_scale)


@attrs.frozen
class DepthLevel:
    price: int
    quantity: int
    orders: int = 0


@attrs.frozen
class Depth:
    """Best levels first on both sides (five for a full-mode tick)."""

    bids: tuple[DepthLevel, ...] = ()
    asks: tuple[DepthLevel, ...] = ()


@attrs.frozen
class Ohlc:
    open: int
    high: int
    low: int
    close: int


@attrs.frozen
class Tick:
    """One market-data update for one instrument; fields beyond ``last_price`` depend on ``mode``.

    ``seq`` is the per-instrument sequence number the market-data hub assigns (0 from a broker).
    """

    instrument: str
    mode: StreamMode
    last_price: int
    timestamp_ns: int = 0
    last_quantity: int | None = None
    volume: int | None = None
    average_price: int | None = None
    total_buy_quantity: int | None = None
    total_sell_quantity: int | None = None
    open_interest: int | None = None
    ohlc: Ohlc | None = None
    depth: Depth | None = None
    seq: int = 0

    @property
    def best_bid(self) -> DepthLevel | None:
        return self.depth.bids[0] if self.depth and self.depth.bids else None

    @property
    def best_ask(self) -> DepthLevel | None:
        return self.depth.asks[0] if self.depth and self.depth.asks else None


@attrs.frozen
class Bar:
    """One OHLC bar of an instrument as a broker streams it (a 1505 candle on XTS).

    ``start_ns`` is the bar's start (Unix nanoseconds, UTC) and ``interval_s`` its length;
    prices are in the instrument's price units, like :class:`Tick`. The hub keeps the latest
    bar per instrument and conflates bars separately from ticks; bars carry no sequence number.
    """

    instrument: str
    start_ns: int
    interval_s: int = attrs.field(validator=_positive)
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    open_interest: int | None = None


@attrs.frozen
class ConnectionEvent:
    """A change in a broker's connection; ``RESYNCED`` asks the OMS to reconcile."""

    broker: str
    state: ConnectionState
    reason: str = ""
    at: dt.datetime = attrs.field(factory=utcnow)


# ----------------------------------------------------------------------------------------------
# Orders and the order state machine
# ----------------------------------------------------------------------------------------------


class OrderStatus(enum.StrEnum):
    NEW = "NEW"  # accepted by hft, not yet sent
    PENDING = "PENDING"  # sent to the broker, not yet acknowledged
    OPEN = "OPEN"  # resting at the broker/exchange (including untriggered stops)
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    PENDING_MODIFY = "PENDING_MODIFY"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


_S = OrderStatus
TERMINAL_STATUSES: Final = frozenset({_S.FILLED, _S.CANCELLED, _S.REJECTED, _S.EXPIRED})
_LIVE_EXITS = frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED})

#: Every legal move of an order's status. A status absent from a set is unreachable from the key.
TRANSITIONS: Final[Mapping[OrderStatus, frozenset[OrderStatus]]] = {
    _S.NEW: frozenset({_S.PENDING, _S.REJECTED}),
    _S.PENDING: _LIVE_EXITS | {_S.OPEN, _S.REJECTED, _S.PENDING_CANCEL},
    _S.OPEN: _LIVE_EXITS | {_S.PENDING_CANCEL, _S.PENDING_MODIFY},
    _S.PARTIALLY_FILLED: _LIVE_EXITS | {_S.PENDING_CANCEL, _S.PENDING_MODIFY},
    # A cancel or modify the broker refuses returns the order to where it was.
    _S.PENDING_CANCEL: _LIVE_EXITS | {_S.OPEN},
    _S.PENDING_MODIFY: _LIVE_EXITS | {_S.OPEN, _S.PENDING_CANCEL},
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}


@attrs.frozen
class OrderRequest:
    """What a client asks for. ``price`` and ``trigger_price`` are in price units.

    ``extras`` carries broker-specific options (``market_protection``, iceberg legs, ...) that the
    account's broker plugin validates; the core passes them through untouched.
    """

    account: str
    instrument: str
    side: Side
    quantity: int
    order_type: OrderType = OrderType.LIMIT
    price: int | None = None
    trigger_price: int | None = None
    product: Product = Product.MIS
    time_in_force: TimeInForce = TimeInForce.DAY
    disclosed_quantity: int = 0
    client_order_id: str = ""
    tag: str = ""
    extras: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        needs_price = self.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        needs_trigger = self.order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
        if needs_price and self.price is None:
            raise ValidationError(f"a {self.order_type} order needs a price", code="missing_price")
        if not needs_price and self.price is not None:
            raise ValidationError(
                f"a {self.order_type} order takes no price", code="unexpected_price"
            )
        if needs_trigger and self.trigger_price is None:
            raise ValidationError(
                f"a {self.order_type} order needs a trigger price", code="missing_trigger"
            )
        if not needs_trigger and self.trigger_price is not None:
            raise ValidationError(
                f"a {self.order_type} order takes no trigger price", code="unexpected_trigger"
            )
        if self.quantity <= 0:
            raise ValidationError("quantity must be positive", code="bad_quantity")
        if not 0 <= self.disclosed_quantity <= self.quantity:
            raise ValidationError("disclosed quantity must lie in 0..quantity", code="bad_quantity")

    def with_client_order_id(self, client_order_id: str) -> OrderRequest:
        """This request under another client order id (what ``attrs.evolve`` does, at a third
        of its cost: the OMS makes one per order it sends)."""
        return OrderRequest(
            self.account,
            self.instrument,
            self.side,
            self.quantity,
            self.order_type,
            self.price,
            self.trigger_price,
            self.product,
            self.time_in_force,
            self.disclosed_quantity,
            client_order_id,
            self.tag,
            self.extras,
        )


@attrs.frozen
class ModifyRequest:
    """A change to a live order; ``None`` leaves that field as it is."""

    quantity: int | None = None
    price: int | None = None
    trigger_price: int | None = None
    order_type: OrderType | None = None
    time_in_force: TimeInForce | None = None

    def __attrs_post_init__(self) -> None:
        if attrs.astuple(self) == (None,) * 5:
            raise ValidationError("a modify request must change something", code="empty_modify")
        if self.quantity is not None and self.quantity <= 0:
            raise ValidationError("quantity must be positive", code="bad_quantity")


@attrs.frozen
class StatusChange:
    status: OrderStatus
    at: dt.datetime
    reason: str = ""


@attrs.define
class Order:
    """An order as hft tracks it. Mutated only by :meth:`transition` and :meth:`record_fill`."""

    order_id: str
    request: OrderRequest
    user: str
    status: OrderStatus = OrderStatus.NEW
    broker_order_id: str | None = None
    exchange_order_id: str | None = None
    filled_quantity: int = 0
    filled_value: int = 0  # sum of price * quantity over fills, in price units
    reason: str = ""
    created_at: dt.datetime = attrs.field(factory=utcnow)
    history: list[StatusChange] = attrs.field(factory=list)

    def __attrs_post_init__(self) -> None:
        if not self.history:
            self.history.append(StatusChange(self.status, self.created_at))

    @property
    def remaining_quantity(self) -> int:
        return self.request.quantity - self.filled_quantity

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def average_price(self) -> Decimal | None:
        """Volume-weighted fill price in price units (exact, possibly fractional)."""
        return Decimal(self.filled_value) / self.filled_quantity if self.filled_quantity else None

    def snapshot(self) -> Order:
        """A copy that later changes to this order do not affect (cheap: fields are immutable
        but for the history list, which is copied)."""
        return Order(
            self.order_id,
            self.request,
            self.user,
            self.status,
            self.broker_order_id,
            self.exchange_order_id,
            self.filled_quantity,
            self.filled_value,
            self.reason,
            self.created_at,
            list(self.history),
        )

    def can_transition(self, status: OrderStatus) -> bool:
        return status in TRANSITIONS[self.status]

    def transition(
        self, status: OrderStatus, reason: str = "", at: dt.datetime | None = None
    ) -> None:
        """Move to ``status``; raise :class:`IllegalTransition` if the state machine forbids it.

        A repeated ``PARTIALLY_FILLED`` is legal (another partial fill); no other self-loop is.
        """
        if status not in TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"order {self.order_id}: {self.status} -> {status} is not a legal transition"
            )
        self.status = status
        if reason:
            self.reason = reason
        self.history.append(StatusChange(status, at or utcnow(), reason))

    def record_fill(self, quantity: int, price: int) -> None:
        """Add a fill's quantity and value; refuse one that would overfill the order."""
        if quantity <= 0 or quantity > self.remaining_quantity:
            raise ValidationError(
                f"order {self.order_id}: fill of {quantity}, {self.remaining_quantity} remaining",
                code="overfill",
            )
        self.filled_quantity += quantity
        self.filled_value += quantity * price


@attrs.frozen
class OrderUpdate:
    """A broker's view of one of its orders, already mapped onto :class:`OrderStatus`.

    ``account`` is the broker-side account code (a dealer login serves several).
    ``client_order_id`` is whatever tag the broker echoes back, if any.
    """

    broker: str
    account: str
    broker_order_id: str
    status: OrderStatus
    instrument: str = ""
    quantity: int | None = None  # the order's quantity as the broker now has it
    price: int | None = None  # its limit price as the broker now has it, in price units
    filled_quantity: int = 0
    pending_quantity: int | None = None
    average_price: Decimal | None = None  # in price units, as the broker reports it
    client_order_id: str = ""
    exchange_order_id: str | None = None
    reason: str = ""
    at: dt.datetime = attrs.field(factory=utcnow)


@attrs.frozen
class Fill:
    """One execution. ``fill_id`` is the broker's trade id, unique per broker."""

    fill_id: str
    broker_order_id: str
    account: str
    instrument: str
    side: Side
    quantity: int
    price: int
    at: dt.datetime = attrs.field(factory=utcnow)
    order_id: str = ""  # hft's order id, once the OMS has matched the fill to an order


# ----------------------------------------------------------------------------------------------
# Portfolio, accounts and users
# ----------------------------------------------------------------------------------------------


@attrs.define
class Position:
    """Net position in one instrument and product, with average-cost accounting.

    ``average_price`` is the average entry price of the open quantity and ``realised_pnl`` the
    PnL closed so far, both exact decimals in price units (× quantity for PnL). ``buy_*`` and
    ``sell_*`` are the day's cumulative traded quantities and values (price units × quantity).
    """

    account: str
    instrument: str
    product: Product = Product.MIS
    quantity: int = 0  # net, negative when short
    average_price: Decimal = Decimal(0)
    realised_pnl: Decimal = Decimal(0)
    buy_quantity: int = 0
    buy_value: int = 0
    sell_quantity: int = 0
    sell_value: int = 0
    last_price: int | None = None

    @property
    def unrealised_pnl(self) -> Decimal:
        """Mark-to-market PnL of the open quantity at ``last_price``."""
        if not self.quantity or self.last_price is None:
            return Decimal(0)
        return (self.last_price - self.average_price) * self.quantity

    @property
    def total_pnl(self) -> Decimal:
        return self.realised_pnl + self.unrealised_pnl

    def apply_fill(self, side: Side, quantity: int, price: int) -> None:
        """Book one fill: extend the position at a new average, or close part of it at a profit
        or loss against the average (flipping through zero opens the rest at ``price``)."""
        if quantity <= 0:
            raise ValidationError(f"fill quantity must be positive, got {quantity}")
        if side is Side.BUY:
            self.buy_quantity += quantity
            self.buy_value += quantity * price
        else:
            self.sell_quantity += quantity
            self.sell_value += quantity * price
        signed = side.sign * quantity
        held = self.quantity
        if held == 0 or (held > 0) == (signed > 0):
            total = abs(held) + quantity
            self.average_price = (self.average_price * abs(held) + price * quantity) / total
            self.quantity = held + signed
            return
        closing = min(quantity, abs(held))
        direction = 1 if held > 0 else -1
        self.realised_pnl += (price - self.average_price) * closing * direction
        self.quantity = held + signed
        if self.quantity == 0:
            self.average_price = Decimal(0)
        elif (self.quantity > 0) != (held > 0):
            self.average_price = Decimal(price)


@attrs.frozen
class PositionConversion:
    """A broker moved open quantity of a position from one product to another (MIS → NRML).

    ``account`` is the broker-side account code, as on :class:`Fill`. ``quantity`` is signed
    like a position: ``+q`` moves ``q`` of a long position, ``-q`` of a short one. ``key`` is
    unique per broker, so a repeated event is recognised and applied once. Only conversions
    the broker confirmed are events; a refused one never becomes one.
    """

    broker: str
    account: str
    instrument: str
    from_product: Product
    to_product: Product
    quantity: int
    key: str
    at: dt.datetime = attrs.field(factory=utcnow)

    def __attrs_post_init__(self) -> None:
        if not self.quantity:
            raise ValidationError("a position conversion must move some quantity")
        if self.from_product is self.to_product:
            raise ValidationError(f"a position conversion from {self.from_product} to itself")
        if not self.key:
            raise ValidationError("a position conversion needs a unique key")


@attrs.frozen
class Holding:
    """Delivery holdings (demat), as the broker reports them."""

    account: str
    instrument: str
    quantity: int
    average_price: Decimal  # in price units
    t1_quantity: int = 0
    isin: str = ""
    last_price: int | None = None


@attrs.frozen
class Account:
    """A trading account: ``broker`` is a configured broker, ``broker_account`` its code there."""

    account_id: str
    broker: str
    broker_account: str
    environment: Environment
    name: str = ""


@attrs.frozen
class User:
    """A person or bot. A ``SIM`` user may only ever reach ``SIM`` accounts."""

    username: str
    role: Role
    kind: Environment
    accounts: tuple[str, ...] = ()
    disabled: bool = False

    def may_reach(self, account: Account) -> bool:
        """Whether this user may act on ``account`` (granted, and sim never reaches live)."""
        if self.disabled or account.account_id not in self.accounts:
            return False
        return not (self.kind is Environment.SIM and account.environment is Environment.LIVE)

    def can_see(self, account: Account) -> bool:
        """Whether this user may read ``account``: admins see every account, others what they
        may reach. Every transport applies this one rule to reads."""
        if self.disabled:
            return False
        return self.role is Role.ADMIN or self.may_reach(account)


# ----------------------------------------------------------------------------------------------
# (Un)structuring
# ----------------------------------------------------------------------------------------------


def _make_converter() -> cattrs.Converter:
    from cattrs.preconf.json import make_converter

    conv = make_converter()
    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), lambda member: member.value
    )
    conv.register_unstructure_hook(Decimal, str)
    conv.register_structure_hook(Decimal, lambda value, _: Decimal(str(value)))
    conv.register_unstructure_hook(dt.date, dt.date.isoformat)
    conv.register_structure_hook(dt.date, lambda value, _: dt.date.fromisoformat(value))
    return conv


#: The cattrs converter for the model: ``converter.unstructure(order)`` gives a JSON-ready dict.
converter: Final = _make_converter()
