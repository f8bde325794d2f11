"""The JSON shapes of the REST API (pydantic, so the OpenAPI document is exact).

These models exist only at the edge: the core speaks attrs models. Prices and money travel as
decimal strings in currency units (``"1500.05"``), never as JSON numbers; quantities are integers.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from hft.model import (
    Environment,
    InstrumentType,
    OrderStatus,
    OrderType,
    Product,
    Role,
    Side,
    StreamMode,
    TimeInForce,
)

#: A price or an amount of money: a decimal string, never a binary float.
DecimalString = Annotated[
    str,
    Field(
        pattern=r"^-?[0-9]{1,15}(\.[0-9]{1,12})?$",
        max_length=32,
        examples=["1500.05"],
        description="A decimal number as a string (currency units, e.g. rupees).",
    ),
]
PriceIn = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,12}(\.[0-9]{1,8})?$",
        max_length=24,
        examples=["1500.05"],
        description="A positive decimal price as a string; it must lie on the instrument's tick.",
    ),
]
Quantity = Annotated[int, Field(strict=True, gt=0, le=1_000_000_000)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
InstrumentKey = Annotated[
    str,
    Field(
        min_length=3,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]{1,16}:[^\x00-\x1f\x7f]{1,64}$",
        examples=["NSE:INFY"],
        description="EXCHANGE:SYMBOL",
    ),
]
Password = Annotated[str, Field(min_length=1, max_length=256)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Errors -----------------------------------------------------------------------------------------


class FieldError(BaseModel):
    path: str = Field(description="Where in the request, e.g. `body.price` or `query.limit`.")
    message: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable; never reworded.")
    message: str = Field(description="For people.")
    correlation_id: str | None = Field(description="Also in the `X-Correlation-ID` header.")
    fields: list[FieldError] | None = Field(
        default=None, description="For `invalid` requests: each offending field."
    )


class ErrorBody(BaseModel):
    """Every error answer has this shape."""

    error: ErrorDetail


# Auth -------------------------------------------------------------------------------------------


class LoginIn(_In):
    username: Name
    password: Password


class RefreshIn(_In):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class LogoutIn(_In):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)] | None = None


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = Field(examples=["bearer"])
    expires_in_s: float = Field(description="Seconds until the access token expires.")


class PasswordChangeIn(_In):
    current_password: Password
    new_password: Password


class PasswordSetIn(_In):
    password: Password


class ApiKeyIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=64)]


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None


class ApiKeyCreatedOut(BaseModel):
    key: str = Field(description="The secret key; shown only in this answer.")
    info: ApiKeyOut


# Users ------------------------------------------------------------------------------------------


class UserOut(BaseModel):
    username: str
    role: Role
    kind: Environment = Field(description="`sim` users never reach live accounts.")
    accounts: list[str]
    disabled: bool


class UserIn(_In):
    username: Name
    password: Password
    role: Role
    kind: Environment
    accounts: Annotated[list[Name], Field(max_length=256)] = []


class UserPatch(_In):
    role: Role | None = None
    disabled: bool | None = None


# Accounts and portfolio -------------------------------------------------------------------------


class AccountOut(BaseModel):
    account_id: str
    broker: str
    broker_account: str
    environment: Environment
    name: str


class AccountIn(_In):
    account_id: Name
    broker: Name
    broker_account: Name = "default"
    environment: Environment | None = Field(
        default=None, description="Defaults to the broker's environment."
    )
    name: Annotated[str, Field(max_length=128)] = ""


class PositionOut(BaseModel):
    account: str
    instrument: str
    product: Product
    quantity: int = Field(description="Net; negative when short.")
    average_price: DecimalString
    last_price: DecimalString | None
    realised_pnl: DecimalString
    unrealised_pnl: DecimalString
    buy_quantity: int
    buy_value: DecimalString
    sell_quantity: int
    sell_value: DecimalString


class HoldingOut(BaseModel):
    account: str
    instrument: str
    quantity: int
    t1_quantity: int
    average_price: DecimalString
    last_price: DecimalString | None
    isin: str


class PnlOut(BaseModel):
    account: str
    realised: DecimalString
    unrealised: DecimalString
    total: DecimalString = Field(description="Realised plus mark-to-market, in rupees.")
    positions: list[PositionOut]


class TradeOut(BaseModel):
    fill_id: str
    order_id: str
    broker_order_id: str
    account: str
    instrument: str
    side: Side
    quantity: int
    price: DecimalString
    at: dt.datetime


# Orders -----------------------------------------------------------------------------------------


class OrderIn(_In):
    """A new order. `price` is required for LIMIT and STOP_LIMIT orders, `trigger_price` for
    STOP and STOP_LIMIT ones; neither is allowed otherwise."""

    account: Name
    instrument: InstrumentKey
    side: Side
    quantity: Quantity
    order_type: OrderType = OrderType.LIMIT
    price: PriceIn | None = None
    trigger_price: PriceIn | None = None
    product: Product = Product.MIS
    time_in_force: TimeInForce = TimeInForce.DAY
    disclosed_quantity: Annotated[int, Field(strict=True, ge=0, le=1_000_000_000)] = 0
    client_order_id: Annotated[
        str,
        Field(
            max_length=64,
            pattern=r"^[A-Za-z0-9_.:-]*$",
            description="Your id for the order: a retry with the same id never places twice.",
        ),
    ] = ""
    tag: Annotated[str, Field(max_length=64)] = ""
    extras: Annotated[
        dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]],
        Field(max_length=16, description="Broker-specific options, checked by the broker."),
    ] = {}


class OrderPatch(_In):
    """A change to a live order; fields left out stay as they are."""

    quantity: Quantity | None = None
    price: PriceIn | None = None
    trigger_price: PriceIn | None = None
    order_type: OrderType | None = None
    time_in_force: TimeInForce | None = None


class StatusChangeOut(BaseModel):
    status: OrderStatus
    at: dt.datetime
    reason: str


class OrderOut(BaseModel):
    order_id: str
    account: str
    instrument: str
    side: Side
    quantity: int
    order_type: OrderType
    price: DecimalString | None
    trigger_price: DecimalString | None
    product: Product
    time_in_force: TimeInForce
    disclosed_quantity: int
    client_order_id: str
    tag: str
    status: OrderStatus
    filled_quantity: int
    remaining_quantity: int
    average_price: DecimalString | None
    broker_order_id: str | None
    exchange_order_id: str | None
    reason: str
    user: str
    created_at: dt.datetime
    history: list[StatusChangeOut]


class PlacedOut(BaseModel):
    orders: list[OrderOut] = Field(
        description="Usually one; several when the order was sliced at the freeze quantity."
    )


class Page(BaseModel):
    total: int = Field(description="Items matching the filters.")
    offset: int
    limit: int
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null at end.")


class OrderPage(Page):
    items: list[OrderOut]


class TradePage(Page):
    items: list[TradeOut]


# Instruments and market data --------------------------------------------------------------------


class InstrumentOut(BaseModel):
    key: str
    broker: str
    exchange: str
    symbol: str
    token: int
    segment: str
    name: str
    instrument_type: InstrumentType
    tick_size: DecimalString
    lot_size: int
    freeze_quantity: int | None
    price_scale: int
    expiry: dt.date | None
    strike: DecimalString | None


class DepthLevelOut(BaseModel):
    price: DecimalString
    quantity: int
    orders: int


class OhlcOut(BaseModel):
    open: DecimalString
    high: DecimalString
    low: DecimalString
    close: DecimalString


class QuoteOut(BaseModel):
    instrument: str
    mode: StreamMode
    last_price: DecimalString
    seq: int = Field(description="The hub's per-instrument sequence number (0: from the broker).")
    timestamp_ns: int
    last_quantity: int | None
    volume: int | None
    average_price: DecimalString | None
    open_interest: int | None
    ohlc: OhlcOut | None
    bids: list[DepthLevelOut]
    asks: list[DepthLevelOut]


class QuotesOut(BaseModel):
    quotes: dict[str, QuoteOut] = Field(description="By instrument key; absent: no data yet.")


class WatchIn(_In):
    instrument: InstrumentKey


class WatchlistOut(BaseModel):
    instruments: list[str]
    quotes: dict[str, QuoteOut] = Field(description="The latest quote of each, where known.")


# Risk -------------------------------------------------------------------------------------------

KillSwitchModeName = Literal["off", "reduce_only", "halt"]


class KillSwitchIn(_In):
    mode: KillSwitchModeName
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class KillSwitchOut(BaseModel):
    mode: KillSwitchModeName
    reason: str
    by: str
    at: dt.datetime | None


class AccountKillSwitchOut(KillSwitchOut):
    account: str
    effective: KillSwitchModeName = Field(
        description="What applies to the account's orders: the stricter of its own and global."
    )


class KillSwitchesOut(BaseModel):
    global_: KillSwitchOut = Field(alias="global")
    accounts: dict[str, KillSwitchOut]

    model_config = ConfigDict(populate_by_name=True)


class RiskRuleOut(BaseModel):
    rule: str
    enabled: bool
    settings: dict[str, object] | None


class RiskRuleIn(_In):
    enabled: bool
    settings: dict[str, object] = Field(
        default_factory=dict,
        description="The rule's settings, replacing its current ones (keys left out take the "
        'rule\'s defaults), e.g. `{"max_quantity": 500}` for `max_order_quantity`.',
    )
    account: str | None = Field(
        default=None, description="Change this account's rule only; omitted: the global rule."
    )
    reason: Annotated[str, Field(max_length=500)] = ""


class RiskLimitsOut(BaseModel):
    rules: list[RiskRuleOut] = Field(description="The global chain, in the order it runs.")
    accounts: dict[str, list[RiskRuleOut]] = Field(
        description="Accounts with their own chain (values merged over the global ones)."
    )


# Operations -------------------------------------------------------------------------------------


class ComponentOut(BaseModel):
    ready: bool
    reason: str | None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="`degraded` while not ready.")
    version: str
    uptime_s: float
    components: dict[str, ComponentOut]


class ReadyOut(BaseModel):
    status: Literal["ready", "not_ready"]
    components: dict[str, ComponentOut] = Field(
        description="`storage` and `broker:<name>`: each ready or not, and why not."
    )


class LiveOut(BaseModel):
    status: Literal["alive"]
