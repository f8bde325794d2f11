"""Domain objects (attrs, fixed-point) to API shapes (pydantic, decimal strings) and back.

Every price is converted with its instrument's ``price_scale``; amounts of money (PnL, traded
value) are price units times quantity, so the same scale applies.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from hft._auth import ApiKeyInfo
from hft.model import (
    Account,
    DepthLevel,
    Fill,
    Holding,
    Instrument,
    ModifyRequest,
    Order,
    OrderRequest,
    Position,
    Tick,
    User,
    format_price,
    to_price_units,
)
from hft_http import _schemas as s

__all__ = [
    "Scale",
    "account_out",
    "api_key_out",
    "decimal_string",
    "holding_out",
    "instrument_out",
    "modify_request",
    "order_out",
    "order_request",
    "position_out",
    "quote_out",
    "trade_out",
    "user_out",
]

#: ``scale(instrument_key)``: the instrument's price scale (decimal places).
Scale = Callable[[str], int]


def decimal_string(value: Decimal | int, scale: int) -> str:
    """Price units (possibly fractional, e.g. an average) as a decimal string in currency units."""
    if isinstance(value, int):
        return format_price(value, scale)
    if value == value.to_integral_value():
        return format_price(int(value), scale)
    # A fraction of a price unit (an average): every digit, so more places than the scale.
    return format(value.scaleb(-scale).normalize(), "f")


def _opt(value: int | None, scale: int) -> str | None:
    return None if value is None else format_price(value, scale)


def order_request(body: s.OrderIn, instrument: Instrument | None) -> OrderRequest:
    """The core's request for ``body``; prices parsed at ``instrument``'s scale (2 if unknown).

    An unknown instrument is left for the OMS to refuse with its own error.
    """
    scale = instrument.price_scale if instrument is not None else 2
    return OrderRequest(
        account=body.account,
        instrument=body.instrument,
        side=body.side,
        quantity=body.quantity,
        order_type=body.order_type,
        price=_parse(body.price, scale),
        trigger_price=_parse(body.trigger_price, scale),
        product=body.product,
        time_in_force=body.time_in_force,
        disclosed_quantity=body.disclosed_quantity,
        client_order_id=body.client_order_id,
        tag=body.tag,
        extras=dict(body.extras),
    )


def modify_request(body: s.OrderPatch, scale: int) -> ModifyRequest:
    return ModifyRequest(
        quantity=body.quantity,
        price=_parse(body.price, scale),
        trigger_price=_parse(body.trigger_price, scale),
        order_type=body.order_type,
        time_in_force=body.time_in_force,
    )


def _parse(value: str | None, scale: int) -> int | None:
    return None if value is None else to_price_units(value, scale)


def order_out(order: Order, scale: int) -> s.OrderOut:
    request = order.request
    average = order.average_price
    return s.OrderOut(
        order_id=order.order_id,
        account=request.account,
        instrument=request.instrument,
        side=request.side,
        quantity=request.quantity,
        order_type=request.order_type,
        price=_opt(request.price, scale),
        trigger_price=_opt(request.trigger_price, scale),
        product=request.product,
        time_in_force=request.time_in_force,
        disclosed_quantity=request.disclosed_quantity,
        client_order_id=request.client_order_id,
        tag=request.tag,
        status=order.status,
        filled_quantity=order.filled_quantity,
        remaining_quantity=order.remaining_quantity,
        average_price=None if average is None else decimal_string(average, scale),
        broker_order_id=order.broker_order_id,
        exchange_order_id=order.exchange_order_id,
        reason=order.reason,
        user=order.user,
        created_at=order.created_at,
        history=[
            s.StatusChangeOut(status=h.status, at=h.at, reason=h.reason) for h in order.history
        ],
    )


def trade_out(fill: Fill, scale: int) -> s.TradeOut:
    return s.TradeOut(
        fill_id=fill.fill_id,
        order_id=fill.order_id,
        broker_order_id=fill.broker_order_id,
        account=fill.account,
        instrument=fill.instrument,
        side=fill.side,
        quantity=fill.quantity,
        price=format_price(fill.price, scale),
        at=fill.at,
    )


def position_out(position: Position, scale: int) -> s.PositionOut:
    return s.PositionOut(
        account=position.account,
        instrument=position.instrument,
        product=position.product,
        quantity=position.quantity,
        average_price=decimal_string(position.average_price, scale),
        last_price=_opt(position.last_price, scale),
        realised_pnl=decimal_string(position.realised_pnl, scale),
        unrealised_pnl=decimal_string(position.unrealised_pnl, scale),
        buy_quantity=position.buy_quantity,
        buy_value=format_price(position.buy_value, scale),
        sell_quantity=position.sell_quantity,
        sell_value=format_price(position.sell_value, scale),
    )


def holding_out(holding: Holding, scale: int) -> s.HoldingOut:
    return s.HoldingOut(
        account=holding.account,
        instrument=holding.instrument,
        quantity=holding.quantity,
        t1_quantity=holding.t1_quantity,
        average_price=decimal_string(holding.average_price, scale),
        last_price=_opt(holding.last_price, scale),
        isin=holding.isin,
    )


def account_out(account: Account) -> s.AccountOut:
    return s.AccountOut(
        account_id=account.account_id,
        broker=account.broker,
        broker_account=account.broker_account,
        environment=account.environment,
        name=account.name,
    )


def user_out(user: User) -> s.UserOut:
    return s.UserOut(
        username=user.username,
        role=user.role,
        kind=user.kind,
        accounts=list(user.accounts),
        disabled=user.disabled,
    )


def instrument_out(instrument: Instrument, broker: str) -> s.InstrumentOut:
    scale = instrument.price_scale
    return s.InstrumentOut(
        key=instrument.key,
        broker=broker,
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        token=instrument.token,
        segment=instrument.segment,
        name=instrument.name,
        instrument_type=instrument.instrument_type,
        tick_size=format_price(instrument.tick_size, scale),
        lot_size=instrument.lot_size,
        freeze_quantity=instrument.freeze_quantity,
        price_scale=scale,
        expiry=instrument.expiry,
        strike=_opt(instrument.strike, scale),
    )


def quote_out(tick: Tick, scale: int) -> s.QuoteOut:
    depth = tick.depth
    ohlc = tick.ohlc
    return s.QuoteOut(
        instrument=tick.instrument,
        mode=tick.mode,
        last_price=format_price(tick.last_price, scale),
        seq=tick.seq,
        timestamp_ns=tick.timestamp_ns,
        last_quantity=tick.last_quantity,
        volume=tick.volume,
        average_price=_opt(tick.average_price, scale),
        open_interest=tick.open_interest,
        ohlc=None
        if ohlc is None
        else s.OhlcOut(
            open=format_price(ohlc.open, scale),
            high=format_price(ohlc.high, scale),
            low=format_price(ohlc.low, scale),
            close=format_price(ohlc.close, scale),
        ),
        bids=[_level(d, scale) for d in (depth.bids if depth else ())],
        asks=[_level(d, scale) for d in (depth.asks if depth else ())],
    )


def api_key_out(info: ApiKeyInfo) -> s.ApiKeyOut:
    return s.ApiKeyOut(
        key_id=info.key_id,
        name=info.name,
        created_at=info.created_at,
        last_used_at=info.last_used_at,
    )


def _level(level: DepthLevel, scale: int) -> s.DepthLevelOut:
    return s.DepthLevelOut(
        price=format_price(level.price, scale), quantity=level.quantity, orders=level.orders
    )
