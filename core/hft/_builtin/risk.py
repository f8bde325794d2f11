"""The built-in pre-trade risk rules, registered like any plugin's (``docs/risk.md``).

Every rule is enabled by default. ``lot_and_tick`` and ``freeze_quantity`` check exchange facts
and are always active; the others hold numeric limits that default to ``None`` (no limit), so
they let everything through until a limit is configured. A limit the operator writes therefore
applies without a separate ``enabled = true``, and ``enabled = false`` still switches a rule off
(for one account, say).

Units: quantities are in shares or contracts; money limits are in paise (``..._paise``), compared
exactly with values in the instrument's price units (price × quantity) by cross-multiplying with
its price scale; the price band is in basis points of the last traded price.

Market orders carry no price: value-based checks use the last traded price, and reject with
``no_last_price`` when a limit is configured but no last price is known (fail closed).
"""

from __future__ import annotations

from collections import deque
from typing import Final, Literal

import attrs

import hft
from hft._risk import reduces_position
from hft.contracts import RiskContext, RiskRejection
from hft.hookspecs import RegisterRiskRule
from hft.model import Instrument, OrderRequest, Side, format_price

__all__ = [
    "DailyLossLimit",
    "DailyLossLimitConfig",
    "FreezeQuantity",
    "LotAndTick",
    "MaxAccountPosition",
    "MaxAccountPositionConfig",
    "MaxOpenOrders",
    "MaxOpenOrdersConfig",
    "MaxOrderQuantity",
    "MaxOrderQuantityConfig",
    "MaxOrderValue",
    "MaxOrderValueConfig",
    "MaxPosition",
    "MaxPositionConfig",
    "OrderRate",
    "OrderRateConfig",
    "PriceBand",
    "PriceBandConfig",
]

#: Money limits are in paise: two decimal places of the currency.
PAISE_SCALE: Final = 2
#: Account-wide sums bring every instrument to this scale, so that mixed scales add up exactly.
_COMMON_SCALE: Final = 8
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(_COMMON_SCALE + 1))
#: By price scale: the factor that brings a value at that scale to ``_COMMON_SCALE``.
_TO_COMMON: Final[tuple[int, ...]] = tuple(
    10 ** (_COMMON_SCALE - i) for i in range(_COMMON_SCALE + 1)
)
NO_LAST_PRICE: Final = "no_last_price"


# ----------------------------------------------------------------------------------------------
# Helpers: exact money comparison and readable numbers (only rejections format anything)
# ----------------------------------------------------------------------------------------------


def _optional_positive(
    _: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


def _grouped(text: str) -> str:
    """Indian digit grouping of a decimal string: ``"1250000.00"`` → ``"12,50,000.00"``."""
    sign = "-" if text.startswith("-") else ""
    whole, dot, fraction = text.lstrip("-").partition(".")
    if len(whole) > 3:
        head, tail = whole[:-3], whole[-3:]
        pairs = [head[max(i - 2, 0) : i] for i in range(len(head), 0, -2)]
        whole = ",".join([*reversed(pairs), tail])
    return f"{sign}{whole}{dot}{fraction}"


def _quantity(quantity: int) -> str:
    return _grouped(str(quantity))


def _money(paise: int) -> str:
    return _grouped(format_price(paise, PAISE_SCALE))


def _value(instrument: Instrument, units: int) -> str:
    """A value in ``instrument``'s price units (price × quantity) as a decimal amount."""
    return _grouped(instrument.format(units))


def _exceeds_paise(value: int, scale: int, limit_paise: int) -> bool:
    """Whether ``value`` (price units at ``scale``) is above ``limit_paise``, exactly."""
    if scale >= PAISE_SCALE:
        return value > limit_paise * _POW10[scale - PAISE_SCALE]
    return value * _POW10[PAISE_SCALE - scale] > limit_paise


def _reference_price(request: OrderRequest, last_price: int | None) -> int | None:
    """The price an order is valued at: its limit price, else its trigger, else the last trade."""
    if request.price is not None:
        return request.price
    if request.trigger_price is not None:
        return request.trigger_price
    return last_price


def _projected(request: OrderRequest, context: RiskContext) -> tuple[int, int]:
    """The net position on the order's side before and after it, counting live orders.

    For a buy: position + pending buys, then + this order; for a sell the same with sells.
    Both are the worst case should every live order on that side fill.
    """
    position = context.position
    held = position.quantity if position is not None else 0
    if request.side is Side.BUY:
        before = held + context.pending_buy_quantity
        return before, before + request.quantity
    before = held - context.pending_sell_quantity
    return before, before - request.quantity


def _no_price(context: RiskContext, what: str) -> RiskRejection:
    return RiskRejection(
        NO_LAST_PRICE,
        f"{context.instrument.key}: no last traded price is known to check the order against "
        f"the {what}",
    )


# ----------------------------------------------------------------------------------------------
# Instrument facts: always active
# ----------------------------------------------------------------------------------------------


class LotAndTick:
    """Quantity a whole number of lots; price and trigger positive and on the tick grid.

    Codes: ``bad_lot``, ``bad_price``, ``off_tick``.
    """

    __slots__ = ()
    code: Final = "lot_and_tick"

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        instrument = context.instrument
        if request.quantity % instrument.lot_size:
            return RiskRejection(
                "bad_lot",
                f"{instrument.key}: quantity {_quantity(request.quantity)} is not a multiple of "
                f"the lot size {_quantity(instrument.lot_size)}",
            )
        for label, price in (("price", request.price), ("trigger price", request.trigger_price)):
            if price is None:
                continue
            if price <= 0:
                return RiskRejection(
                    "bad_price",
                    f"{instrument.key}: {label} {instrument.format(price)} is not positive",
                )
            if price % instrument.tick_size:
                return RiskRejection(
                    "off_tick",
                    f"{instrument.key}: {label} {instrument.format(price)} is not a multiple of "
                    f"the tick size {instrument.format(instrument.tick_size)}",
                )
        return None


class FreezeQuantity:
    """Refuse an order above the instrument's exchange freeze quantity (exactly at it passes).

    With ``[oms] slice_freeze_quantity = true`` the OMS splits such orders first and each child
    goes through the chain, so this rule only sees the quantity it is given. Code:
    ``freeze_quantity``.
    """

    __slots__ = ()
    code: Final = "freeze_quantity"

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        freeze = context.instrument.freeze_quantity
        if not freeze or request.quantity <= freeze:
            return None
        return RiskRejection(
            self.code,
            f"{context.instrument.key}: quantity {_quantity(request.quantity)} is above the "
            f"freeze quantity {_quantity(freeze)}; split it into orders of at most "
            f"{_quantity(freeze)}",
        )


# ----------------------------------------------------------------------------------------------
# Per-order limits
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class MaxOrderQuantityConfig:
    """``[risk.max_order_quantity]``."""

    #: The largest quantity one order may have, in shares or contracts (None: no limit).
    max_quantity: int | None = attrs.field(default=None, validator=_optional_positive)


class MaxOrderQuantity:
    """Refuse an order whose quantity is above ``max_quantity``. Code: ``max_order_quantity``."""

    __slots__ = ("_limit",)
    code: Final = "max_order_quantity"

    def __init__(self, config: MaxOrderQuantityConfig) -> None:
        self._limit = config.max_quantity

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        limit = self._limit
        if limit is None or request.quantity <= limit:
            return None
        return RiskRejection(
            self.code,
            f"{context.instrument.key}: order quantity {_quantity(request.quantity)} exceeds the "
            f"limit {_quantity(limit)}",
        )


@attrs.frozen
class MaxOrderValueConfig:
    """``[risk.max_order_value]``."""

    #: The largest value (price × quantity) one order may have, in paise (None: no limit).
    max_value_paise: int | None = attrs.field(default=None, validator=_optional_positive)


class MaxOrderValue:
    """Refuse an order worth more than ``max_value_paise``.

    The order is valued at its limit price, else its trigger price, else the last traded price.
    Codes: ``max_order_value``, ``no_last_price``.
    """

    __slots__ = ("_limit",)
    code: Final = "max_order_value"

    def __init__(self, config: MaxOrderValueConfig) -> None:
        self._limit = config.max_value_paise

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        limit = self._limit
        if limit is None:
            return None
        price = _reference_price(request, context.last_price)
        if price is None:
            return _no_price(context, f"order value limit {_money(limit)}")
        instrument = context.instrument
        value = price * request.quantity
        if not _exceeds_paise(value, instrument.price_scale, limit):
            return None
        return RiskRejection(
            self.code,
            f"{instrument.key}: order value {_value(instrument, value)} exceeds the limit "
            f"{_money(limit)}",
        )


@attrs.frozen
class PriceBandConfig:
    """``[risk.price_band]``."""

    #: How far a limit price may be from the last traded price, in basis points (100 = 1%;
    #: None: no band).
    max_deviation_bps: int | None = attrs.field(default=None, validator=_optional_positive)


class PriceBand:
    """Refuse a limit price more than ``max_deviation_bps`` away from the last traded price.

    Orders without a limit price (market, stop-market) pass; a limit order when no last price
    is known is refused. Codes: ``price_band``, ``no_last_price``.
    """

    __slots__ = ("_bps",)
    code: Final = "price_band"

    def __init__(self, config: PriceBandConfig) -> None:
        self._bps = config.max_deviation_bps

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        bps = self._bps
        price = request.price
        if bps is None or price is None:
            return None
        last = context.last_price
        if last is None:
            return _no_price(context, f"price band of ±{format_price(bps, 2)}%")
        # |price - last| / last > bps / 10_000, cross-multiplied to stay in integers.
        if abs(price - last) * 10_000 <= bps * last:
            return None
        instrument = context.instrument
        off_hundredths = -(
            -abs(price - last) * 10_000 // last
        )  # rounded up, never shown as in-band
        direction = "above" if price > last else "below"
        return RiskRejection(
            self.code,
            f"{instrument.key}: price {_grouped(instrument.format(price))} is "
            f"{format_price(off_hundredths, 2)}% {direction} the last traded price "
            f"{_grouped(instrument.format(last))}; the band is ±{format_price(bps, 2)}%",
        )


# ----------------------------------------------------------------------------------------------
# Exposure limits
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class MaxPositionConfig:
    """``[risk.max_position]``: limits on the net position in any one instrument."""

    #: The largest absolute net position, in shares or contracts (None: no limit).
    max_quantity: int | None = attrs.field(default=None, validator=_optional_positive)
    #: The largest absolute net position value (quantity × last price), in paise (None: no limit).
    max_value_paise: int | None = attrs.field(default=None, validator=_optional_positive)


class MaxPosition:
    """Refuse an order that would take the net position in its instrument past a limit.

    The position counted is the current net position plus the account's live orders on the
    order's side plus the order (the worst case). An order that does not increase that absolute
    position passes, so exposure can always be reduced. The value is marked at the last traded
    price, else the order's price. Codes: ``max_position_quantity``, ``max_position_value``,
    ``no_last_price``.
    """

    __slots__ = ("_quantity", "_value")
    code: Final = "max_position"

    def __init__(self, config: MaxPositionConfig) -> None:
        self._quantity = config.max_quantity
        self._value = config.max_value_paise

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        max_quantity, max_value = self._quantity, self._value
        if max_quantity is None and max_value is None:
            return None
        before, after = _projected(request, context)
        size = abs(after)
        if size <= abs(before):
            return None
        instrument = context.instrument
        if max_quantity is not None and size > max_quantity:
            return RiskRejection(
                "max_position_quantity",
                f"{instrument.key}: the net position could reach {_quantity(after)}, beyond "
                f"the limit ±{_quantity(max_quantity)}",
            )
        if max_value is not None:
            mark = context.last_price
            if mark is None:
                mark = _reference_price(request, None)
                if mark is None:
                    return _no_price(context, f"position value limit {_money(max_value)}")
            value = size * mark
            if _exceeds_paise(value, instrument.price_scale, max_value):
                return RiskRejection(
                    "max_position_value",
                    f"{instrument.key}: the net position could be worth "
                    f"{_value(instrument, value)}, beyond the limit {_money(max_value)}",
                )
        return None


@attrs.frozen
class MaxAccountPositionConfig:
    """``[risk.max_account_position]``: limits on the account's positions added together."""

    #: The largest sum of absolute net positions over all instruments, in shares or contracts
    #: (None: no limit).
    max_quantity: int | None = attrs.field(default=None, validator=_optional_positive)
    #: The largest sum of absolute position values (marked at last prices), in paise
    #: (None: no limit).
    max_value_paise: int | None = attrs.field(default=None, validator=_optional_positive)


class MaxAccountPosition:
    """Refuse an order that would take the account's gross position past a limit.

    Gross means the absolute net positions of every instrument added up; the order's instrument
    counts as :class:`MaxPosition` counts it (with its live orders on that side and the order),
    the others at their current net positions. An order that does not increase the absolute
    position in its instrument passes. Other positions are valued at their last price (else
    their average price) and their own price scale, taken from ``context.instruments``; one that
    cannot be valued refuses the order. Codes: ``max_account_position_quantity``,
    ``max_account_position_value``, ``no_last_price``, ``unknown_instrument``.
    """

    __slots__ = ("_quantity", "_value")
    code: Final = "max_account_position"

    def __init__(self, config: MaxAccountPositionConfig) -> None:
        self._quantity = config.max_quantity
        self._value = config.max_value_paise

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        max_quantity, max_value = self._quantity, self._value
        if max_quantity is None and max_value is None:
            return None
        before, after = _projected(request, context)
        size = abs(after)
        if size <= abs(before):
            return None
        instrument = context.instrument
        key = instrument.key
        known = context.instruments
        total_quantity = size
        total_value = 0  # at _COMMON_SCALE; every position is brought to it
        # One pass over the positions: this loop is most of the chain's cost.
        for position in context.positions:
            quantity = position.quantity
            if not quantity or position.instrument == key:
                continue
            if quantity < 0:
                quantity = -quantity
            total_quantity += quantity
            if max_value is not None:
                price = position.last_price
                if price is None:
                    price = int(position.average_price or 0)
                other = known.get(position.instrument)
                if other is None or price <= 0:
                    return _unvalued(context, position.instrument, other is None)
                total_value += quantity * price * _TO_COMMON[other.price_scale]
        account = context.account.account_id
        if max_quantity is not None and total_quantity > max_quantity:
            return RiskRejection(
                "max_account_position_quantity",
                f"account {account}: positions could add up to {_quantity(total_quantity)} "
                f"(including {_quantity(size)} {key}), beyond the limit "
                f"{_quantity(max_quantity)}",
            )
        if max_value is None:
            return None
        mark = context.last_price
        if mark is None:
            mark = _reference_price(request, None)
            if mark is None:
                return _no_price(context, f"account position value limit {_money(max_value)}")
        total_value += size * mark * _TO_COMMON[instrument.price_scale]
        if total_value <= max_value * _TO_COMMON[PAISE_SCALE]:
            return None
        shown = -(-total_value // _TO_COMMON[PAISE_SCALE])  # in paise, rounded up
        return RiskRejection(
            "max_account_position_value",
            f"account {account}: positions could be worth {_money(shown)} (including "
            f"{_quantity(size)} {key}), beyond the limit {_money(max_value)}",
        )


def _unvalued(context: RiskContext, instrument: str, unknown: bool) -> RiskRejection:
    account = context.account.account_id
    if unknown:
        return RiskRejection(
            "unknown_instrument",
            f"account {account}: cannot value the position in {instrument} (the instrument "
            "is not known to the risk check)",
        )
    return RiskRejection(
        NO_LAST_PRICE,
        f"account {account}: cannot value the position in {instrument} (no last or average price)",
    )


@attrs.frozen
class MaxOpenOrdersConfig:
    """``[risk.max_open_orders]``."""

    #: How many live orders the account may have at once, the new one included (None: no limit).
    max_open_orders: int | None = attrs.field(default=None, validator=_optional_positive)


class MaxOpenOrders:
    """Refuse an order when the account already has ``max_open_orders`` live orders.

    Code: ``max_open_orders``.
    """

    __slots__ = ("_limit",)
    code: Final = "max_open_orders"

    def __init__(self, config: MaxOpenOrdersConfig) -> None:
        self._limit = config.max_open_orders

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        limit = self._limit
        if limit is None or context.open_orders < limit:
            return None
        return RiskRejection(
            self.code,
            f"account {context.account.account_id} has {_quantity(context.open_orders)} open "
            f"orders; the limit is {_quantity(limit)}",
        )


# ----------------------------------------------------------------------------------------------
# Order rate
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class OrderRateConfig:
    """``[risk.order_rate]``: sliding-window limits on orders the account sends."""

    #: Orders per any one-second window (None: no limit).
    max_per_second: int | None = attrs.field(default=None, validator=_optional_positive)
    #: Orders per any sixty-second window (None: no limit).
    max_per_minute: int | None = attrs.field(default=None, validator=_optional_positive)


class OrderRate:
    """Refuse an order when the account already sent the limit within the last second/minute.

    Only orders the whole chain accepted count (they are recorded by ``commit``); windows are
    sliding, over ``context.monotonic_s``. Each window keeps the times of the last N accepted
    orders only: the window is full exactly when the N-th latest is younger than the window.
    Codes: ``order_rate_per_second``, ``order_rate_per_minute``.
    """

    __slots__ = ("_minute", "_second")
    code: Final = "order_rate"

    def __init__(self, config: OrderRateConfig) -> None:
        self._second: deque[float] | None = (
            deque(maxlen=config.max_per_second) if config.max_per_second else None
        )
        self._minute: deque[float] | None = (
            deque(maxlen=config.max_per_minute) if config.max_per_minute else None
        )

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        now = context.monotonic_s
        for window, span_s, times in (
            ("second", 1.0, self._second),
            ("minute", 60.0, self._minute),
        ):
            if times is not None and len(times) == times.maxlen and now - times[0] < span_s:
                return RiskRejection(
                    f"order_rate_per_{window}",
                    f"account {context.account.account_id} has sent {len(times)} orders in the "
                    f"last {window}, the limit per {window}; retry in "
                    f"{span_s - (now - times[0]):.2f} s",
                )
        return None

    def commit(self, request: OrderRequest, context: RiskContext) -> None:
        now = context.monotonic_s
        if self._second is not None:
            self._second.append(now)
        if self._minute is not None:
            self._minute.append(now)


# ----------------------------------------------------------------------------------------------
# Daily loss limit
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class DailyLossLimitConfig:
    """``[risk.daily_loss_limit]``."""

    #: The loss (realised plus mark-to-market, today) at which the account stops, in paise
    #: (None: no limit).
    max_loss_paise: int | None = attrs.field(default=None, validator=_optional_positive)
    #: The kill-switch mode the account is tripped to when the limit is reached.
    kill_switch: Literal["halt", "reduce_only"] = "halt"


class DailyLossLimit:
    """Refuse orders once the day's PnL is at or below ``-max_loss_paise``, and trip the switch.

    The rejection asks the engine to set the account's kill switch (``halt`` by default), so the
    account stays stopped even if prices recover, until an admin clears it. With ``kill_switch =
    "reduce_only"`` orders that reduce the position still pass. The limit is checked when an
    order arrives. Code: ``daily_loss_limit``.
    """

    __slots__ = ("_limit", "_mode")
    code: Final = "daily_loss_limit"

    def __init__(self, config: DailyLossLimitConfig) -> None:
        self._limit = config.max_loss_paise
        self._mode: Literal["halt", "reduce_only"] = config.kill_switch

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        limit = self._limit
        if limit is None or context.day_pnl > -limit:
            return None
        if self._mode == "reduce_only" and reduces_position(request, context):
            return None
        mode = "halted" if self._mode == "halt" else "reduce-only"
        return RiskRejection(
            self.code,
            f"account {context.account.account_id}: the day's PnL {_money(context.day_pnl)} has "
            f"reached the daily loss limit of {_money(limit)}; the account is now {mode}",
            kill_switch=self._mode,
        )


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------


@hft.hookimpl
def hft_register_risk_rules(register: RegisterRiskRule) -> None:
    # Registration order is the default chain order: the loss limit first, so that any order
    # after a breach trips the kill switch; then the instrument facts; then the limits.
    register(
        "daily_loss_limit", DailyLossLimit, config=DailyLossLimitConfig, enabled_by_default=True
    )
    register("lot_and_tick", lambda _config: LotAndTick(), enabled_by_default=True)
    register("freeze_quantity", lambda _config: FreezeQuantity(), enabled_by_default=True)
    register(
        "max_order_quantity",
        MaxOrderQuantity,
        config=MaxOrderQuantityConfig,
        enabled_by_default=True,
    )
    register("max_order_value", MaxOrderValue, config=MaxOrderValueConfig, enabled_by_default=True)
    register("price_band", PriceBand, config=PriceBandConfig, enabled_by_default=True)
    register("max_position", MaxPosition, config=MaxPositionConfig, enabled_by_default=True)
    register(
        "max_account_position",
        MaxAccountPosition,
        config=MaxAccountPositionConfig,
        enabled_by_default=True,
    )
    register("max_open_orders", MaxOpenOrders, config=MaxOpenOrdersConfig, enabled_by_default=True)
    register("order_rate", OrderRate, config=OrderRateConfig, enabled_by_default=True)
