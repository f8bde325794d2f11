"""Interactive API objects → the hft model: orders, trades, positions, holdings, balance.

Order-book rows, order-history rows and ``order`` socket events share one shape (spec 4.6), so
:func:`order_to_update` reads all three; ``trade`` events and trade-book rows go through
:func:`trade_to_fill`. Positions come in two schemas (REST ``positionList`` and the ``position``
event), both read by :func:`position_to_position`. ``tradeConversion`` events (a product
conversion, spec 6.6) go through :func:`conversion_refusal` and :func:`conversion_to_event`.
Enum tables raise on unknown request values and map unknown *response* statuses to open (spec
4.5: expect strings not in the table).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import attrs

from hft import ValidationError
from hft.model import (
    Fill,
    Holding,
    Instrument,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionConversion,
    Product,
    Side,
    TimeInForce,
    utcnow,
)
from hft_xts.parsing.values import (
    field,
    ist_text_to_utc,
    optional_number,
    price_units,
    quantity,
    text,
)

__all__ = [
    "ORDER_TYPES",
    "PRODUCTS",
    "Balance",
    "Resolver",
    "balance_from_result",
    "conversion_refusal",
    "conversion_to_event",
    "holdings_from_result",
    "map_status",
    "order_to_update",
    "position_to_position",
    "trade_to_fill",
]

#: ``(segment name, exchange instrument id)`` → the instrument, if this process knows it.
Resolver = Callable[[str, int], Instrument | None]

S = OrderStatus
#: XTS order status → hft status (spec 4.5). ``New``/``Replaced`` with fills are partly filled.
_STATUSES: Final[dict[str, OrderStatus]] = {
    "pendingnew": S.PENDING,
    "new": S.OPEN,
    "open": S.OPEN,
    "replaced": S.OPEN,
    "triggerpending": S.OPEN,
    "partiallyfilled": S.PARTIALLY_FILLED,
    "filled": S.FILLED,
    "pendingreplace": S.PENDING_MODIFY,
    "pendingcancel": S.PENDING_CANCEL,
    "cancelled": S.CANCELLED,
    "canceled": S.CANCELLED,
    "rejected": S.REJECTED,
    "expired": S.EXPIRED,
}
#: hft order type → the request string XTS takes (responses use mixed case, see below).
ORDER_TYPES: Final[dict[OrderType, str]] = {
    OrderType.MARKET: "MARKET",
    OrderType.LIMIT: "LIMIT",
    OrderType.STOP: "STOPMARKET",
    OrderType.STOP_LIMIT: "STOPLIMIT",
}
PRODUCTS: Final[dict[Product, str]] = {
    Product.MIS: "MIS",
    Product.NRML: "NRML",
    Product.CNC: "CNC",
    Product.MTF: "MTF",
}
_PRODUCTS_BACK: Final[dict[str, Product]] = {
    **{v: k for k, v in PRODUCTS.items()},
    # Cover and bracket legs are intraday positions.
    "CO": Product.MIS,
    "BO": Product.MIS,
}
TIME_IN_FORCE: Final[dict[TimeInForce, str]] = {TimeInForce.DAY: "DAY", TimeInForce.IOC: "IOC"}


def map_status(status: str, filled: int) -> OrderStatus:
    """The hft status of an XTS status string; unknown strings count as open (spec 4.5)."""
    found = _STATUSES.get(status.replace(" ", "").lower(), S.OPEN)
    if found is S.OPEN and filled > 0:
        return S.PARTIALLY_FILLED
    return found


def _side(value: object) -> Side:
    raw = text(value).upper()
    if raw in ("BUY", "B", "49"):
        return Side.BUY
    if raw in ("SELL", "S", "50"):
        return Side.SELL
    raise ValidationError(f"order side {value!r} is neither buy nor sell", code="xts_bad_payload")


def product(value: object) -> Product:
    raw = text(value).upper()
    if raw not in _PRODUCTS_BACK:
        raise ValidationError(f"unknown XTS product type {value!r}", code="xts_bad_payload")
    return _PRODUCTS_BACK[raw]


def _key_and_scale(row: Mapping[str, Any], resolve: Resolver) -> tuple[str, int]:
    segment = text(field(row, "ExchangeSegment"))
    token = quantity(field(row, "ExchangeInstrumentID", "ExchangeInstrumentId"), "instrument id")
    instrument = resolve(segment, token)
    if instrument is None:
        return f"{segment}:{token}", 2
    return instrument.key, instrument.price_scale


def _when(row: Mapping[str, Any], *names: str) -> dt.datetime:
    for name in names:
        # The ``*API`` twins are the documented DD-MM-YYYY form: prefer them (spec 4.6).
        for candidate in (f"{name}API", name):
            at = ist_text_to_utc(field(row, candidate))
            if at is not None:
                return at
    return utcnow()


def order_to_update(broker: str, row: Mapping[str, Any], resolve: Resolver) -> OrderUpdate:
    """An order-book row, order-history row or ``order`` event as an :class:`OrderUpdate`."""
    order_id = text(field(row, "AppOrderID"))
    if not order_id:
        raise ValidationError("an XTS order has no AppOrderID", code="xts_bad_payload")
    key, scale = _key_and_scale(row, resolve)
    filled = quantity(field(row, "CumulativeQuantity"), "cumulative quantity")
    status = map_status(text(field(row, "OrderStatus")), filled)
    average = optional_number(field(row, "OrderAverageTradedPriceAPI"))
    if average is None:
        average = optional_number(field(row, "OrderAverageTradedPrice"))
    return OrderUpdate(
        broker=broker,
        account=text(field(row, "ClientID")),
        broker_order_id=order_id,
        status=status,
        instrument=key,
        quantity=quantity(field(row, "OrderQuantity"), "order quantity") or None,
        price=price_units(field(row, "OrderPrice"), scale) or None,
        filled_quantity=filled,
        pending_quantity=quantity(field(row, "LeavesQuantity"), "leaves quantity"),
        average_price=average.scaleb(scale) if average and filled else None,
        client_order_id=text(field(row, "OrderUniqueIdentifier")),
        exchange_order_id=text(field(row, "ExchangeOrderID")) or None,
        reason=text(field(row, "CancelRejectReason")),
        at=_when(row, "LastUpdateDateTime", "ExchangeTransactTime", "OrderGeneratedDateTime"),
    )


def trade_to_fill(row: Mapping[str, Any], resolve: Resolver) -> Fill:
    """A trade-book row or ``trade`` event as a :class:`Fill` (``ExecutionID`` is its id)."""
    fill_id = text(field(row, "ExecutionID"))
    order_id = text(field(row, "AppOrderID"))
    if not fill_id or not order_id:
        raise ValidationError(
            "an XTS trade needs ExecutionID and AppOrderID", code="xts_bad_payload"
        )
    key, scale = _key_and_scale(row, resolve)
    qty = quantity(field(row, "LastTradedQuantity"), "traded quantity")
    price = price_units(field(row, "LastTradedPrice"), scale)
    if qty <= 0 or price is None or price <= 0:
        raise ValidationError(f"trade {fill_id} has no quantity or price", code="xts_bad_payload")
    return Fill(
        fill_id=fill_id,
        broker_order_id=order_id,
        account=text(field(row, "ClientID")),
        instrument=key,
        side=_side(field(row, "OrderSideAPI") or field(row, "OrderSide")),
        quantity=qty,
        price=price,
        at=_when(row, "LastExecutionTransactTime", "ExchangeTransactTime"),
    )


def _units(value: object, scale: int) -> Decimal:
    found = optional_number(value)
    return Decimal(0) if found is None else found.scaleb(scale)


def position_to_position(row: Mapping[str, Any], resolve: Resolver) -> Position:
    """A ``positionList`` row or a ``position`` event as a :class:`Position` (price units)."""
    key, scale = _key_and_scale(row, resolve)
    account = text(field(row, "AccountID", "ClientID"))
    net = field(row, "Quantity", "NetPosition")
    bought = field(row, "OpenBuyQuantity", "LongPosition")
    sold = field(row, "OpenSellQuantity", "ShortPosition")
    buy_qty, sell_qty = quantity(bought), quantity(sold)
    net_qty = quantity(net) if net is not None else buy_qty - sell_qty
    buy_value = int(_units(field(row, "BuyAmount", "BuyValue"), scale))
    sell_value = int(_units(field(row, "SellAmount", "SellValue"), scale))
    average_field = "BuyAveragePrice" if net_qty >= 0 else "SellAveragePrice"
    return Position(
        account=account,
        instrument=key,
        product=product(field(row, "ProductType")),
        quantity=net_qty,
        average_price=_units(field(row, average_field), scale) if net_qty else Decimal(0),
        realised_pnl=_units(field(row, "RealizedMTM"), scale),
        buy_quantity=buy_qty,
        buy_value=buy_value,
        sell_quantity=sell_qty,
        sell_value=sell_value,
    )


_TRUE: Final = frozenset({"true", "1", "yes", "success"})
_REFUSED: Final = frozenset({"rejected", "failed", "failure", "error", "cancelled"})


def conversion_refusal(row: Mapping[str, Any]) -> str | None:
    """Why a ``tradeConversion`` event says the conversion did not happen, or None if it did.

    Only an explicit success counts: ``Success`` true (a boolean, or text such as ``"true"``)
    and no ``Status`` saying it was refused. The reason is XTS's own (``ErrorMessage``,
    ``RejectionReason``) when it gives one.
    """
    success = field(row, "Success")
    ok = success is True or text(success).lower() in _TRUE
    status = text(field(row, "Status")).replace(" ", "").lower()
    if ok and status not in _REFUSED:
        return None
    return (
        text(field(row, "ErrorMessage"))
        or text(field(row, "RejectionReason"))
        or text(field(row, "Status"))
        or f"Success is {success!r}"
    )


def conversion_to_event(
    broker: str, row: Mapping[str, Any], resolve: Resolver
) -> PositionConversion:
    """A successful ``tradeConversion`` event as a :class:`PositionConversion` (account: the
    event's ``ClientID``).

    The quantity moved is ``TargetQty`` (``OriginalQty`` when that is absent), in the wire's
    unit, signed by ``OrderSide``: a conversion of a long (buy) position moves ``+q``, of a
    short one ``-q``. Numbers may be text; a missing ``UniqueKey``, product, side or quantity
    is a :class:`ValidationError`.
    """
    key = text(field(row, "UniqueKey"))
    if not key:
        raise ValidationError("a tradeConversion has no UniqueKey", code="xts_bad_payload")
    moved = quantity(field(row, "TargetQty"), "converted quantity") or quantity(
        field(row, "OriginalQty"), "converted quantity"
    )
    if moved <= 0:
        raise ValidationError(f"tradeConversion {key} moves no quantity", code="xts_bad_payload")
    instrument, _ = _key_and_scale(row, resolve)
    side = _side(field(row, "OrderSide"))
    try:
        at = ist_text_to_utc(field(row, "NOWTimeStamp")) or utcnow()
    except ValidationError:
        at = utcnow()  # the time is informational; an odd format must not lose the conversion
    return PositionConversion(
        broker=broker,
        account=text(field(row, "ClientID", "UserId", "AccountID")),
        instrument=instrument,
        from_product=product(field(row, "OriginalProduct")),
        to_product=product(field(row, "TargetProduct")),
        quantity=side.sign * moved,
        key=key,
        at=at,
    )


def holdings_from_result(
    account: str, result: Mapping[str, Any], resolve: Resolver
) -> list[Holding]:
    """``/portfolio/holdings`` → holdings; the instrument is found by its NSE (else BSE) id."""
    holdings: list[Holding] = []
    for group in field(result, "RMSHoldingList", default=[]) or []:
        entries = field(group, "Holdings", default={}) if isinstance(group, Mapping) else {}
        if not isinstance(entries, Mapping):
            raise ValidationError("XTS holdings are not keyed by ISIN", code="xts_bad_payload")
        for isin, entry in entries.items():
            if not isinstance(entry, Mapping):
                raise ValidationError(f"holding {isin!r} is not an object", code="xts_bad_payload")
            instrument = None
            for segment, name in (
                ("NSECM", "ExchangeNSEInstrumentId"),
                ("BSECM", "ExchangeBSEInstrumentId"),
            ):
                token = quantity(field(entry, name))
                if token > 0 and (instrument := resolve(segment, token)) is not None:
                    break
            key = instrument.key if instrument else f"ISIN:{isin}"
            scale = instrument.price_scale if instrument else 2
            holdings.append(
                Holding(
                    account=account,
                    instrument=key,
                    quantity=quantity(field(entry, "HoldingQuantity")),
                    average_price=_units(field(entry, "BuyAvgPrice"), scale),
                    isin=text(field(entry, "ISIN")) or str(isin),
                )
            )
    return holdings


@attrs.frozen
class Balance:
    """The account's limits (``/user/balance`` ``RMSSubLimits``), in paise; None when XTS sent
    ``"NaN"`` or nothing."""

    account: str
    cash_available: int | None
    collateral: int | None
    margin_utilized: int | None
    net_margin_available: int | None
    mtm: int | None


def balance_from_result(account: str, result: Mapping[str, Any]) -> Balance:
    rows = field(result, "BalanceList", default=[]) or []
    if not rows or not isinstance(rows[0], Mapping):
        raise ValidationError("XTS balance has no BalanceList", code="xts_bad_payload")
    limits = field(rows[0], "limitObject", default={}) or {}
    sub = field(limits, "RMSSubLimits", default={}) or {}

    def paise(name: str) -> int | None:
        return price_units(field(sub, name), 2)

    return Balance(
        account,
        paise("cashAvailable"),
        paise("collateral"),
        paise("marginUtilized"),
        paise("netMarginAvailable"),
        paise("MTM"),
    )
