"""The ``xts`` broker: one XTS login (Pro, or a dealer serving several ``clientID``\\ s).

Accounts
--------
A Pro (investor) login serves its own client code. A dealer login (``isInvestorClient`` false)
serves the clients of ``clients`` in config, or every client code the login returns; each is a
broker account (``[accounts.<id>] broker_account = "<clientID>"``). Dealer calls carry
``clientID`` and read books on the dealer routes (``/orders/dealerorderbook``,
``/orders/dealertradebook``, ``/portfolio/dealerpositions``).

Streams
-------
The Broker contract gives a broker no task group, so the two sockets (market data and
interactive) run in the task that reads :meth:`XtsBroker.events`, as the sim's clock does. Each
socket reconnects by itself with backoff; the first drop yields ``RECONNECTING`` and, once both
are joined again, resubscribed and the books re-read, ``RESYNCED`` (the OMS then reconciles).
XTS replays nothing, so on every join of the interactive socket the order and trade books of
the orders this broker has seen are read and whatever the socket missed is yielded.

Order updates pass a filter: a repeated identical view, a status the state machine cannot reach
from the last one yielded, or a filled quantity going down (a stale socket event racing a book
read) is dropped. Fills are yielded once per ``ExecutionID``.

Quantities: with ``quantity_unit = "lots"`` (spec open question 1) every quantity sent is divided
by the instrument's lot size (:meth:`XtsBroker.wire_quantity`) and every quantity received (order
updates, fills, positions, conversions) multiplied back (:meth:`XtsBroker._in_units`), so the rest
of hft always counts units.

A ``tradeConversion`` event that reports a done conversion is yielded as a
:class:`~hft.model.PositionConversion` (once per ``UniqueKey``; the OMS moves the quantity between
the products); a refused one is logged. ``position`` events are informational (hft's positions
come from fills, and reconciliation compares them with the broker's books) and logged at debug.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, overload
from urllib.parse import urlencode, urlsplit

import anyio
import anyio.abc
import attrs
import structlog

from hft import (
    AuthError,
    BrokerRejected,
    Conflict,
    NetworkError,
    NotFound,
    Secret,
    ValidationError,
)
from hft._resilience import Backoff
from hft.contracts import Broker, BrokerEvent
from hft.model import (
    TRANSITIONS,
    Bar,
    ConnectionEvent,
    ConnectionState,
    Fill,
    Holding,
    Instrument,
    ModifyRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Position,
    PositionConversion,
    StreamMode,
    Tick,
)
from hft_xts.config import XtsConfig
from hft_xts.normaliser import XtsNormaliser
from hft_xts.parsing.marketdata import CANDLE, DEPTH, TOUCHLINE, Candle
from hft_xts.parsing.master import SEGMENT_CODES, MasterRow, parse_index_list, parse_master
from hft_xts.parsing.ohlc import parse_ohlc
from hft_xts.parsing.orders import (
    ORDER_TYPES,
    PRODUCTS,
    TIME_IN_FORCE,
    Balance,
    balance_from_result,
    conversion_refusal,
    conversion_to_event,
    holdings_from_result,
    order_to_update,
    position_to_position,
    trade_to_fill,
)
from hft_xts.parsing.values import IST, field, loads, price_units, text
from hft_xts.parsing.values import quantity as quantity_of
from hft_xts.rest import XtsRest
from hft_xts.stream import open_socketio

if TYPE_CHECKING:
    from hft._plugins import PluginContext

__all__ = ["XtsBroker", "make_broker"]

log = structlog.get_logger("hft.xts")

_BATCH: Final = 50  # instruments per quotes/subscription call (a limit brokers quote)
_Kind = Literal["marketdata", "interactive"]


def make_broker(config: XtsConfig, context: PluginContext) -> XtsBroker:
    return XtsBroker(config, context.name, data_dir=context.data_dir)


@attrs.define
class _Seen:
    status: OrderStatus
    filled: int
    view: tuple[object, ...]


class XtsBroker(Broker):
    """See the module docstring."""

    def __init__(self, config: XtsConfig, name: str = "xts", *, data_dir: Path = Path(".")) -> None:
        self.config = config
        self.name = name
        self._data_dir = data_dir
        self.rest = XtsRest(config, name)
        self._accounts: tuple[str, ...] = ()
        self._dealer = False
        self._instruments: list[Instrument] = []
        self._by_token: dict[tuple[str, int], Instrument] = {}
        self._by_key: dict[str, Instrument] = {}
        self._normaliser = XtsNormaliser(())
        self._subs: dict[str, tuple[Instrument, int, StreamMode]] = {}  # key → (…, code, mode)
        self._extra: dict[int, dict[str, Instrument]] = {}  # other codes (1505, 1510)
        self.remaining_subscriptions: int | None = None
        self._seen: dict[str, _Seen] = {}
        self._fills: set[str] = set()
        self._conversions: set[str] = set()  # UniqueKeys of conversions yielded
        self._order_accounts: dict[str, str] = {}
        self._joins = 0  # joins of the interactive socket so far
        self._closed = anyio.Event()
        self._connected = False
        self._send: anyio.abc.ObjectSendStream[BrokerEvent] | None = None
        self._up: set[_Kind] = set()
        self._ever_up = False
        self._outage = False

    # Sessions -------------------------------------------------------------------------------

    @property
    def dealer(self) -> bool:
        """Whether this is a dealer login (known after :meth:`connect`)."""
        return self._dealer

    async def connect(self) -> None:
        if self._closed.is_set():
            raise NetworkError(f"broker {self.name!r} is closed")
        await self.rest.ensure_sessions()
        session = self.rest.interactive
        assert session is not None
        self._dealer = not session.is_investor
        if self._dealer:
            codes = session.client_codes
            wanted = self.config.clients or codes
            unknown = [c for c in wanted if codes and c not in codes]
            if unknown or not wanted:
                raise AuthError(
                    f"dealer {session.user_id} of broker {self.name!r} does not serve client(s) "
                    f"{unknown or 'any'}; it serves {list(codes)}",
                    code="xts_unknown_client",
                )
            self._accounts = tuple(dict.fromkeys(wanted))
        else:
            self._accounts = (session.client_codes[0] if session.client_codes else session.user_id,)
        if not self._instruments:
            await self._load_instruments()
        self._connected = True

    async def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.timeout_s):
            if self._connected:
                await self.rest.logout()
            await self.rest.aclose()

    def accounts(self) -> Sequence[str]:
        return self._accounts

    def _client(self, broker_account: str) -> dict[str, str]:
        """The ``clientID`` a call for ``broker_account`` carries (dealers only)."""
        if broker_account not in self._accounts:
            raise NotFound(f"broker {self.name!r} serves no account {broker_account!r}")
        return {"clientID": broker_account} if self._dealer else {}

    # Instruments ----------------------------------------------------------------------------

    def _cache_file(self, day: dt.date) -> Path:
        return self._data_dir / "xts" / f"{self.name}-instruments-{day.isoformat()}.json"

    async def _load_instruments(self) -> None:
        """The master of the configured segments (and index lists), cached for the IST day."""
        today = dt.datetime.now(IST).date()
        cache = self._cache_file(today)
        data: dict[str, Any] | None = None
        if cache.is_file():
            try:
                loaded = json.loads(cache.read_text(encoding="utf-8"))
                data = loaded if isinstance(loaded, dict) else None
            except (OSError, ValueError):
                data = None
        if data is None:
            master = await self.rest.call(
                "marketdata",
                "POST",
                "/instruments/master",
                body={"exchangeSegmentList": list(self.config.segments)},
                what="the instrument master",
            )
            indices: dict[str, list[object]] = {}
            if self.config.indices:
                for segment in ("NSECM", "BSECM"):
                    if segment not in self.config.segments:
                        continue
                    result = await self.rest.call(
                        "marketdata",
                        "GET",
                        "/instruments/indexlist",
                        params={"exchangeSegment": SEGMENT_CODES[segment]},
                        what="the index list",
                    )
                    found = (
                        field(result, "indexList", default=[])
                        if isinstance(result, Mapping)
                        else []
                    )
                    indices[segment] = list(found or [])
            data = {"master": text(master), "indices": indices}
            cache.parent.mkdir(parents=True, exist_ok=True)
            for old in cache.parent.glob(f"{self.name}-instruments-*.json"):
                old.unlink(missing_ok=True)
            cache.write_text(json.dumps(data), encoding="utf-8")
        rows, skipped = parse_master(str(data.get("master", "")))
        for segment, names in (data.get("indices") or {}).items():
            if segment in SEGMENT_CODES and isinstance(names, list):
                rows.extend(parse_index_list(segment, names))
        self._set_instruments(rows)
        log.info("xts.instruments", broker=self.name, instruments=len(rows), skipped=skipped)

    def _set_instruments(self, rows: Iterable[MasterRow]) -> None:
        by_key: dict[str, Instrument] = {}
        for row in rows:
            by_key.setdefault(row.instrument.key, row.instrument)
        self._instruments = list(by_key.values())
        self._by_token = {(i.segment, i.token): i for i in self._instruments}
        self._by_key = {i.key: i for i in self._instruments}
        self._normaliser = XtsNormaliser(self._instruments)

    def _resolve(self, segment: str, token: int) -> Instrument | None:
        return self._by_token.get((segment, token))

    async def instruments(self) -> list[Instrument]:
        if not self._instruments:
            await self._load_instruments()
        return list(self._instruments)

    # Orders ---------------------------------------------------------------------------------

    def _check(self, instrument: Instrument, request: OrderRequest) -> None:
        """Refuse what XTS or the exchange would refuse, before it costs a request."""
        try:
            instrument.check_quantity(request.quantity)
            for price in (request.price, request.trigger_price):
                if price is not None:
                    instrument.check_price(price)
        except ValidationError as exc:
            raise BrokerRejected(exc.message, code=exc.code) from None
        if request.time_in_force not in TIME_IN_FORCE:
            raise BrokerRejected(
                f"XTS takes DAY or IOC orders, not {request.time_in_force}", code="xts_unsupported"
            )
        if SEGMENT_CODES.get(instrument.segment) is None:
            raise BrokerRejected(
                f"{instrument.key} is not an XTS instrument", code="xts_unsupported"
            )
        info = self.rest.interactive.exchange_info if self.rest.interactive else {}
        allowed = field(info, instrument.segment) if info else None
        if isinstance(allowed, Mapping):
            products = field(allowed, "productType")
            if isinstance(products, list) and PRODUCTS[request.product] not in products:
                raise BrokerRejected(
                    f"{instrument.segment} takes products {products}, not {request.product}",
                    code="xts_unsupported",
                )

    @staticmethod
    def _price(instrument: Instrument, units: int | None) -> Decimal:
        return instrument.decimal(units) if units is not None else Decimal(0)

    def wire_quantity(self, instrument: Instrument, quantity: int, what: str = "quantity") -> int:
        """``quantity`` (units) as XTS is sent it: as it is, or in lots with ``quantity_unit =
        "lots"``, where a quantity that is not a whole number of lots is a ValidationError."""
        if self.config.quantity_unit == "units":
            return quantity
        lots, rest = divmod(quantity, instrument.lot_size)
        if rest:
            raise ValidationError(
                f"{instrument.key}: {what} {quantity} is not a whole number of lots of "
                f"{instrument.lot_size}, and broker {self.name!r} sends lots",
                code="xts_bad_lot",
            )
        return lots

    def _order_quantities(
        self, instrument: Instrument, quantity: int, disclosed: int
    ) -> tuple[int, int]:
        """An order's quantity and disclosed quantity on the wire; refused as BrokerRejected, as
        every order the plugin refuses before sending is, so the OMS rejects the order rather
        than leaving its outcome unknown."""
        try:
            return (
                self.wire_quantity(instrument, quantity),
                self.wire_quantity(instrument, disclosed, "disclosed quantity"),
            )
        except ValidationError as exc:
            raise BrokerRejected(exc.message, code=exc.code) from None

    @overload
    def _in_units(self, event: OrderUpdate) -> OrderUpdate: ...
    @overload
    def _in_units(self, event: Fill) -> Fill: ...
    @overload
    def _in_units(self, event: Position) -> Position: ...
    @overload
    def _in_units(self, event: PositionConversion) -> PositionConversion: ...
    def _in_units(
        self, event: OrderUpdate | Fill | Position | PositionConversion
    ) -> OrderUpdate | Fill | Position | PositionConversion:
        """A received order update, fill, position or conversion with its quantities in units."""
        if self.config.quantity_unit == "units":
            return event
        known = self._by_key.get(event.instrument)
        lot = known.lot_size if known is not None else 1  # an instrument this process lacks
        if lot == 1:
            return event
        if isinstance(event, OrderUpdate):
            return attrs.evolve(
                event,
                quantity=None if event.quantity is None else event.quantity * lot,
                filled_quantity=event.filled_quantity * lot,
                pending_quantity=None
                if event.pending_quantity is None
                else event.pending_quantity * lot,
            )
        if isinstance(event, Position):
            return attrs.evolve(
                event,
                quantity=event.quantity * lot,
                buy_quantity=event.buy_quantity * lot,
                sell_quantity=event.sell_quantity * lot,
            )
        return attrs.evolve(event, quantity=event.quantity * lot)

    async def place_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest
    ) -> str:
        client = self._client(broker_account)
        self._check(instrument, request)
        quantity, disclosed = self._order_quantities(
            instrument, request.quantity, request.disclosed_quantity
        )
        body: dict[str, Any] = {
            "exchangeSegment": instrument.segment,
            "exchangeInstrumentID": instrument.token,
            "productType": PRODUCTS[request.product],
            "orderType": ORDER_TYPES[request.order_type],
            "orderSide": request.side.value,
            "timeInForce": TIME_IN_FORCE[request.time_in_force],
            "disclosedQuantity": disclosed,
            "orderQuantity": quantity,
            "limitPrice": self._price(instrument, request.price),
            "stopPrice": self._price(instrument, request.trigger_price),
            "orderUniqueIdentifier": request.client_order_id[:20],
            "apiOrderSource": "hft",
            **client,
        }
        joins = self._joins
        result = await self.rest.call(
            "interactive", "POST", "/orders", body=body, what="the order", gate="order"
        )
        order_id = text(field(result, "AppOrderID")) if isinstance(result, Mapping) else ""
        if not order_id:
            raise NetworkError(
                "XTS accepted an order without an AppOrderID", code="xts_bad_response"
            )
        await self._placed(broker_account, [order_id], joins)
        return order_id

    async def _placed(self, broker_account: str, order_ids: list[str], joins: int) -> None:
        """Remember new orders for the catch-up after each join of the interactive socket.

        XTS may push an order's first events before the reply that names it; if the socket was
        (re)joining meanwhile, that join's catch-up could not know the order and the socket had
        not been there to hear them: read its history now instead.
        """
        for order_id in order_ids:
            self._order_accounts[order_id] = broker_account
        if self._joins == joins:
            return  # heard live, or the next join's catch-up will read it
        for order_id in order_ids:
            for update in await self.order_history(broker_account, order_id):
                await self._order_update(update)
        for fill in await self.trades(broker_account):
            if fill.broker_order_id in order_ids:
                await self._fill(fill)

    async def modify_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        request: ModifyRequest,
    ) -> None:
        client = self._client(broker_account)
        rows = await self._history_rows(broker_account, broker_order_id)
        current = rows[-1]
        order_type = request.order_type or _order_type(text(field(current, "OrderType")))
        scale = instrument.price_scale
        quantity = (
            request.quantity
            or self._in_units(order_to_update(self.name, current, self._resolve)).quantity
            or 0
        )
        price = request.price
        if price is None and order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
            price = price_units(field(current, "OrderPrice"), scale) or 0
        trigger = request.trigger_price
        if trigger is None and order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            trigger = price_units(field(current, "OrderStopPrice"), scale) or 0
        try:
            instrument.check_quantity(quantity)
            for value in (price, trigger):
                if value is not None:
                    instrument.check_price(value)
        except ValidationError as exc:
            raise BrokerRejected(exc.message, code=exc.code) from None
        tif = (
            request.time_in_force.value
            if request.time_in_force
            else text(field(current, "TimeInForce")) or "DAY"
        )
        # Every SDK sends every field: XTS treats a modify as a full replacement (spec 4.3).
        body: dict[str, Any] = {
            "appOrderID": int(broker_order_id),
            "modifiedProductType": text(field(current, "ProductType")),
            "modifiedOrderType": ORDER_TYPES[order_type],
            "modifiedOrderQuantity": self._order_quantities(instrument, quantity, 0)[0],
            "modifiedDisclosedQuantity": quantity_of(field(current, "OrderDisclosedQuantity")),
            "modifiedLimitPrice": self._price(instrument, price),
            "modifiedStopPrice": self._price(instrument, trigger),
            "modifiedTimeInForce": tif.upper(),
            "orderUniqueIdentifier": text(field(current, "OrderUniqueIdentifier")),
            **client,
        }
        await self.rest.call(
            "interactive", "PUT", "/orders", body=body, what="the modification", gate="order"
        )

    async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
        params: dict[str, Any] = {"appOrderID": broker_order_id, **self._client(broker_account)}
        await self.rest.call(
            "interactive", "DELETE", "/orders", params=params, what="the cancellation", gate="order"
        )

    async def cancel_all(self, broker_account: str, instrument: Instrument) -> None:
        """Cancel every open order of ``broker_account`` in ``instrument``."""
        body = {
            "exchangeSegment": instrument.segment,
            "exchangeInstrumentID": instrument.token,
            **self._client(broker_account),
        }
        await self.rest.call(
            "interactive", "POST", "/orders/cancelall", body=body, what="cancel-all", gate="order"
        )

    # Bracket and cover orders (where the install offers them) --------------------------------

    async def place_bracket_order(
        self,
        broker_account: str,
        instrument: Instrument,
        request: OrderRequest,
        *,
        square_off: int,
        stop_loss: int,
        trailing_stop_loss: int = 0,
    ) -> str:
        """An entry order with a target ``square_off`` and a ``stop_loss`` distance (price
        units from the entry); returns the entry's order id."""
        client = self._client(broker_account)
        self._check(instrument, request)
        for value in (square_off, stop_loss):
            try:
                instrument.check_price(value)
            except ValidationError as exc:
                raise BrokerRejected(exc.message, code=exc.code) from None
        quantity, disclosed = self._order_quantities(
            instrument, request.quantity, request.disclosed_quantity
        )
        body: dict[str, Any] = {
            "exchangeSegment": instrument.segment,
            "exchangeInstrumentID": instrument.token,
            "orderType": ORDER_TYPES[request.order_type],
            "orderSide": request.side.value,
            "disclosedQuantity": disclosed,
            "orderQuantity": quantity,
            "limitPrice": self._price(instrument, request.price),
            # Spelt without the "e" by the SDK and the sample requests (spec 4.1).
            "squarOff": self._price(instrument, square_off),
            "stopLossPrice": self._price(instrument, stop_loss),
            "trailingStoploss": self._price(instrument, trailing_stop_loss),
            "isProOrder": False,
            "apiOrderSource": "hft",
            "orderUniqueIdentifier": request.client_order_id[:20],
            **client,
        }
        joins = self._joins
        result = await self.rest.call(
            "interactive",
            "POST",
            "/orders/bracket",
            body=body,
            what="the bracket order",
            gate="order",
        )
        order_id = text(field(result, "AppOrderID")) if isinstance(result, Mapping) else ""
        if not order_id:
            raise NetworkError(
                "XTS accepted a bracket order without an id", code="xts_bad_response"
            )
        await self._placed(broker_account, [order_id], joins)
        return order_id

    async def modify_bracket_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        *,
        quantity: int,
        price: int,
        stop_loss: int,
    ) -> None:
        body: dict[str, Any] = {
            "appOrderID": int(broker_order_id),
            "orderQuantity": self._order_quantities(instrument, quantity, 0)[0],
            "limitPrice": self._price(instrument, price),
            "stopLossPrice": self._price(instrument, stop_loss),
            **self._client(broker_account),
        }
        await self.rest.call(
            "interactive",
            "PUT",
            "/orders/bracket",
            body=body,
            what="the bracket change",
            gate="order",
        )

    async def cancel_bracket_order(self, broker_account: str, entry_order_id: str) -> None:
        params = {"boEntryOrderId": entry_order_id, **self._client(broker_account)}
        await self.rest.call(
            "interactive",
            "DELETE",
            "/orders/bracket",
            params=params,
            what="the bracket cancel",
            gate="order",
        )

    async def place_cover_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest, *, stop_price: int
    ) -> tuple[str, str]:
        """An entry with a protective stop at ``stop_price``; returns (entry id, exit id)."""
        client = self._client(broker_account)
        self._check(instrument, request)
        try:
            instrument.check_price(stop_price)
        except ValidationError as exc:
            raise BrokerRejected(exc.message, code=exc.code) from None
        quantity, disclosed = self._order_quantities(
            instrument, request.quantity, request.disclosed_quantity
        )
        body: dict[str, Any] = {
            "exchangeSegment": instrument.segment,
            "exchangeInstrumentID": instrument.token,
            "orderSide": request.side.value,
            "orderType": ORDER_TYPES[request.order_type],
            "orderQuantity": quantity,
            "disclosedQuantity": disclosed,
            "limitPrice": self._price(instrument, request.price),
            "stopPrice": self._price(instrument, stop_price),
            "apiOrderSource": "hft",
            "orderUniqueIdentifier": request.client_order_id[:20],
            **client,
        }
        joins = self._joins
        result = await self.rest.call(
            "interactive", "POST", "/orders/cover", body=body, what="the cover order", gate="order"
        )
        entry = text(field(result, "EntryAppOrderID")) if isinstance(result, Mapping) else ""
        exit_ = text(field(result, "ExitAppOrderID")) if isinstance(result, Mapping) else ""
        if not entry or not exit_:
            raise NetworkError(
                "XTS accepted a cover order without its ids", code="xts_bad_response"
            )
        await self._placed(broker_account, [entry, exit_], joins)
        return entry, exit_

    async def exit_cover_order(self, broker_account: str, exit_order_id: str) -> None:
        """Exit a cover order: pass its *exit* order id."""
        body = {"appOrderID": int(exit_order_id), **self._client(broker_account)}
        await self.rest.call(
            "interactive", "PUT", "/orders/cover", body=body, what="the cover exit", gate="order"
        )

    # Books and portfolio --------------------------------------------------------------------

    async def _rows(
        self, path: str, broker_account: str, what: str, **params: Any
    ) -> list[Mapping[str, Any]]:
        result = await self.rest.call(
            "interactive",
            "GET",
            path,
            params={**params, **self._client(broker_account)},
            what=what,
            gate="query",
        )
        if isinstance(result, Mapping):
            result = field(result, "positionList", default=result)
        if result in ("", None):
            return []
        if not isinstance(result, list):
            raise ValidationError(f"XTS {what} is not a list", code="xts_bad_payload")
        rows = []
        for row in result:
            if isinstance(row, str):
                row = loads(row)  # some installs nest rows as JSON text
            if not isinstance(row, Mapping):
                raise ValidationError(f"an XTS {what} row is not an object", code="xts_bad_payload")
            rows.append(row)
        return rows

    def _mine(self, broker_account: str, account: str) -> bool:
        return account == broker_account or (
            not self._dealer and account in ("", self._accounts[0])
        )

    async def orders(self, broker_account: str) -> list[OrderUpdate]:
        path = "/orders/dealerorderbook" if self._dealer else "/orders"
        updates = [
            self._in_units(order_to_update(self.name, r, self._resolve))
            for r in await self._rows(path, broker_account, "order book")
        ]
        return [
            attrs.evolve(u, account=broker_account)
            for u in updates
            if self._mine(broker_account, u.account)
        ]

    async def _history_rows(
        self, broker_account: str, broker_order_id: str
    ) -> list[Mapping[str, Any]]:
        if not broker_order_id.isdigit():
            raise NotFound(f"{broker_order_id!r} is not an XTS order id")
        rows = await self._rows(
            "/orders", broker_account, "order history", appOrderID=broker_order_id
        )
        if not rows:
            raise NotFound(f"XTS knows no order {broker_order_id} of {broker_account}")
        return rows

    async def order_history(self, broker_account: str, broker_order_id: str) -> list[OrderUpdate]:
        """Every state the order went through, oldest first."""
        rows = await self._history_rows(broker_account, broker_order_id)
        return [
            attrs.evolve(
                self._in_units(order_to_update(self.name, r, self._resolve)),
                account=broker_account,
            )
            for r in rows
        ]

    async def trades(self, broker_account: str) -> list[Fill]:
        path = "/orders/dealertradebook" if self._dealer else "/orders/trades"
        fills = [
            self._in_units(trade_to_fill(r, self._resolve))
            for r in await self._rows(path, broker_account, "trade book")
        ]
        return [
            attrs.evolve(f, account=broker_account)
            for f in fills
            if self._mine(broker_account, f.account)
        ]

    async def positions(self, broker_account: str, *, day_wise: bool = False) -> list[Position]:
        """Net-wise positions (``day_wise=True``: today's day-wise view)."""
        path = "/portfolio/dealerpositions" if self._dealer else "/portfolio/positions"
        rows = await self._rows(
            path, broker_account, "positions", dayOrNet="DayWise" if day_wise else "NetWise"
        )
        positions = [self._in_units(position_to_position(r, self._resolve)) for r in rows]
        kept = [p for p in positions if self._mine(broker_account, p.account)]
        for position in kept:
            position.account = broker_account
        return kept

    async def holdings(self, broker_account: str) -> list[Holding]:
        result = await self.rest.call(
            "interactive",
            "GET",
            "/portfolio/holdings",
            params=self._client(broker_account),
            what="holdings",
            gate="query",
        )
        if not isinstance(result, Mapping):
            return []
        return holdings_from_result(broker_account, result, self._resolve)

    async def balance(self, broker_account: str) -> Balance:
        result = await self.rest.call(
            "interactive",
            "GET",
            "/user/balance",
            params=self._client(broker_account),
            what="balance",
            gate="query",
        )
        if not isinstance(result, Mapping):
            raise ValidationError("XTS balance is not an object", code="xts_bad_payload")
        return balance_from_result(broker_account, result)

    # Market data ----------------------------------------------------------------------------

    async def client_config(self) -> dict[str, Any]:
        """The install's ``/config/clientConfig``: segment codes, message codes, publish formats
        and broadcast modes it offers."""
        result = await self.rest.call(
            "marketdata", "GET", "/config/clientConfig", what="the client config"
        )
        if not isinstance(result, Mapping):
            raise ValidationError("XTS client config is not an object", code="xts_bad_payload")
        return dict(result)

    async def quotes(self, instruments: Sequence[Instrument]) -> dict[str, Tick]:
        normaliser = XtsNormaliser(instruments)
        ticks: dict[str, Tick] = {}
        for start in range(0, len(instruments), _BATCH):
            batch = instruments[start : start + _BATCH]
            result = await self.rest.call(
                "marketdata",
                "POST",
                "/instruments/quotes",
                body={
                    "instruments": self._md_list(batch),
                    "xtsMessageCode": DEPTH,
                    "publishFormat": "JSON",
                },
                what="quotes",
            )
            for payload in (
                (field(result, "listQuotes", default=[]) or [])
                if isinstance(result, Mapping)
                else []
            ):
                if isinstance(payload, str | bytes):
                    tick = normaliser.decode_json(payload)
                    if isinstance(tick, Tick):
                        ticks[tick.instrument] = tick
        return ticks

    async def ohlc(
        self,
        instrument: Instrument,
        start: dt.datetime,
        end: dt.datetime,
        compression: int | Literal["D", "W", "M"] = 60,
    ) -> list[Candle]:
        """Bars between ``start`` and ``end`` (aware datetimes); ``compression`` in seconds
        (1, 60, 300, 900, 3600, ...) or D/W/M."""
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ValidationError("ohlc needs aware start < end", code="xts_bad_range")

        def stamp(at: dt.datetime) -> str:
            return at.astimezone(IST).strftime("%b %d %Y %H%M%S")

        result = await self.rest.call(
            "marketdata",
            "GET",
            "/instruments/ohlc",
            params={
                "exchangeSegment": SEGMENT_CODES[instrument.segment],
                "exchangeInstrumentID": instrument.token,
                "startTime": stamp(start),
                "endTime": stamp(end),
                "compressionValue": compression,
            },
            what="OHLC history",
        )
        bars = (
            field(result, "dataReponse", "dataResponse", default="")
            if isinstance(result, Mapping)
            else ""
        )
        return parse_ohlc(text(bars), instrument)

    @staticmethod
    def _md_list(instruments: Iterable[Instrument]) -> list[dict[str, int]]:
        return [
            {"exchangeSegment": SEGMENT_CODES[i.segment], "exchangeInstrumentID": i.token}
            for i in instruments
            if i.segment in SEGMENT_CODES
        ]

    def _code(self, mode: StreamMode) -> int:
        return {
            StreamMode.LTP: self.config.ltp_message_code,
            StreamMode.QUOTE: TOUCHLINE,
            StreamMode.FULL: DEPTH,
        }[mode]

    async def subscribe_codes(self, instruments: Sequence[Instrument], code: int) -> None:
        """Subscribe ``instruments`` under one XTS message code (``POST /instruments/
        subscription``); an instrument already subscribed under it counts as done.

        The app key's quota (``Remaining_Subscription_Count``, counted in distinct instruments
        on the installs seen) is checked first: more new instruments than it allows are refused
        with ``xts_subscription_limit`` and nothing is subscribed.
        """
        streamed = set(self._subs) | {key for extra in self._extra.values() for key in extra}
        new = {i.key for i in instruments} - streamed
        if self.remaining_subscriptions is not None and len(new) > self.remaining_subscriptions:
            raise BrokerRejected(
                f"subscribing {len(new)} more instruments on broker {self.name!r}, but its app "
                f"key has {self.remaining_subscriptions} subscriptions left",
                code="xts_subscription_limit",
            )
        for start in range(0, len(instruments), _BATCH):
            batch = instruments[start : start + _BATCH]
            body = {"instruments": self._md_list(batch), "xtsMessageCode": code}
            try:
                result = await self.rest.call(
                    "marketdata",
                    "POST",
                    "/instruments/subscription",
                    body=body,
                    what="the subscription",
                )
            except Conflict:
                continue  # e-session-0002: the MD session already streams it (spec 5.5)
            if isinstance(result, Mapping):
                remaining = field(result, "Remaining_Subscription_Count")
                if remaining is not None and text(remaining).isdigit():
                    self.remaining_subscriptions = int(text(remaining))
                self._normaliser.seed(field(result, "listQuotes", default=[]) or [])

    async def unsubscribe_codes(self, instruments: Sequence[Instrument], code: int) -> None:
        """Stop ``instruments`` under one message code (``PUT /instruments/subscription``)."""
        for start in range(0, len(instruments), _BATCH):
            body = {
                "instruments": self._md_list(instruments[start : start + _BATCH]),
                "xtsMessageCode": code,
            }
            await self.rest.call(
                "marketdata",
                "PUT",
                "/instruments/subscription",
                body=body,
                what="the unsubscription",
            )

    async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
        code = self._code(mode)
        moving: dict[int, list[Instrument]] = {}
        for instrument in instruments:
            old = self._subs.get(instrument.key)
            if old is not None and old[1] != code:
                moving.setdefault(old[1], []).append(instrument)
        for old_code, batch in moving.items():
            await self.unsubscribe_codes(batch, old_code)
        await self.subscribe_codes(instruments, code)
        for instrument in instruments:
            self._subs[instrument.key] = (instrument, code, mode)
        if "marketdata" in self._up:
            # Start each instrument with its current state rather than its next change.
            await self._snapshot(instruments, code)

    async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
        by_code: dict[int, list[Instrument]] = {}
        for instrument in instruments:
            old = self._subs.pop(instrument.key, None)
            if old is not None:
                by_code.setdefault(old[1], []).append(old[0])
        for code, batch in by_code.items():
            await self.unsubscribe_codes(batch, code)

    async def subscribe_extra(self, instruments: Sequence[Instrument], code: int) -> None:
        """Subscribe a code that is not a tick mode (1510 open interest, 1505 candles); kept
        across reconnects."""
        await self.subscribe_codes(instruments, code)
        self._extra.setdefault(code, {}).update({i.key: i for i in instruments})

    # The event stream -----------------------------------------------------------------------

    async def events(self) -> AsyncIterator[BrokerEvent]:
        """See :meth:`Broker.events`. Read it to the end, or close it (``aclosing``) in the task
        that reads it: the sockets run in that task's nursery."""
        if self._closed.is_set():
            return
        send, receive = anyio.create_memory_object_stream[BrokerEvent](10_000)
        self._send = send
        self._up.clear()
        self._ever_up = self._outage = False  # a new reader hears CONNECTED first
        try:
            async with send, anyio.create_task_group() as tasks:
                tasks.start_soon(self._socket, "marketdata")
                tasks.start_soon(self._socket, "interactive")

                async def stop_on_close() -> None:
                    await self._closed.wait()
                    tasks.cancel_scope.cancel()

                tasks.start_soon(stop_on_close)
                async with receive:
                    async for event in receive:
                        try:
                            yield event
                        except GeneratorExit:
                            # aclose() by the reader: stop the sockets here, in the reader's
                            # task (the nursery would otherwise wrap GeneratorExit in a group).
                            tasks.cancel_scope.cancel()
                            return
        finally:
            self._send = None
            self._up.clear()

    async def _emit(self, event: BrokerEvent) -> None:
        if self._send is not None:
            # The stream may end while a caller of subscribe() is still emitting a snapshot.
            with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                await self._send.send(event)

    async def _socket(self, kind: _Kind) -> None:
        """Keep one socket joined: connect, resync, run; on failure report, back off, retry."""
        config = self.config
        backoff = Backoff(
            config.reconnect_initial_s, max(config.reconnect_max_s, config.reconnect_initial_s)
        )
        stale: Secret | None = None
        while True:
            reason = ""
            token: Secret | None = None
            try:
                token = await self.rest.token(kind, stale=stale)
                stale = None
                url = self._socket_url(kind, token.reveal())
                async with open_socketio(
                    url, stall_s=config.stall_s, ssl_context=self._ssl(url)
                ) as socket:
                    await self._joined(kind)
                    backoff.reset()
                    handler = (
                        self._on_md_event if kind == "marketdata" else self._on_interactive_event
                    )
                    await socket.run(handler)
            except AuthError as exc:
                if exc.code == "xts_login_refused":
                    log.error("xts.login_refused", broker=self.name, api=kind, error=exc.message)
                    await self._down(kind, exc.message, fatal=True)
                    return
                stale = token
                reason = exc.message
            except _Logout:
                stale = token
                reason = "the server ended the session"
            except (NetworkError, ValidationError) as exc:
                reason = exc.message
            except Exception as exc:  # a long-lived feed must outlive a surprise; say what it was
                log.exception("xts.socket_error", broker=self.name, api=kind)
                reason = type(exc).__name__
            log.warning("xts.socket_down", broker=self.name, api=kind, reason=reason)
            await self._down(kind, reason)
            await anyio.sleep(backoff.next_delay())

    def _ssl(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("wss:"):
            return None
        context = ssl.create_default_context()
        if not self.config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _socket_url(self, kind: _Kind, token: str) -> str:
        if kind == "marketdata":
            origin, path = self.rest.origin, self.rest.marketdata_socket_path
            user = self.rest.marketdata.user_id if self.rest.marketdata else ""
            extra = {"publishFormat": "JSON", "broadcastMode": self.config.broadcast_mode}
        else:
            origin, path = self.rest.interactive_origin, self.rest.interactive_socket_path
            user = self.rest.interactive.user_id if self.rest.interactive else ""
            extra = {"apiType": "INTERACTIVE"}
        parts = urlsplit(origin)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urlencode(
            {
                "EIO": "3",
                "transport": "websocket",
                "token": token,
                "userID": user,
                **extra,
            }
        )
        return f"{scheme}://{parts.netloc}{path}/?{query}"

    async def _joined(self, kind: _Kind) -> None:
        if kind == "marketdata":
            by_code: dict[int, list[Instrument]] = {}
            for instrument, code, _ in list(self._subs.values()):
                by_code.setdefault(code, []).append(instrument)
            for code, extra in self._extra.items():
                by_code.setdefault(code, []).extend(extra.values())
            for code, batch in by_code.items():
                await self.subscribe_codes(batch, code)
                await self._snapshot(batch, code)
        else:
            self._joins += 1
            await self._sync_books()
        self._up.add(kind)
        if self._up == {"marketdata", "interactive"}:
            if not self._ever_up:
                self._ever_up = True
                await self._emit(ConnectionEvent(self.name, ConnectionState.CONNECTED))
            elif self._outage:
                await self._emit(ConnectionEvent(self.name, ConnectionState.RESYNCED))
            self._outage = False

    async def _snapshot(self, instruments: Sequence[Instrument], code: int) -> None:
        """Yield the current state of ``instruments`` after a (re)join: the socket pushes only
        changes, and what changed while it was down is otherwise lost (this also seeds the
        partial-mode cache)."""
        for start in range(0, len(instruments), _BATCH):
            body = {
                "instruments": self._md_list(instruments[start : start + _BATCH]),
                "xtsMessageCode": code,
                "publishFormat": "JSON",
            }
            result = await self.rest.call(
                "marketdata", "POST", "/instruments/quotes", body=body, what="quotes"
            )
            quotes = field(result, "listQuotes", default=[]) if isinstance(result, Mapping) else []
            for payload in quotes or []:
                if isinstance(payload, str | bytes):
                    item = self._normaliser.decode_json(payload)
                    if isinstance(item, Bar):
                        await self._on_bar(item)
                    elif item is not None:
                        await self._on_tick(item)

    async def _down(self, kind: _Kind, reason: str, *, fatal: bool = False) -> None:
        self._up.discard(kind)
        if fatal:
            await self._emit(ConnectionEvent(self.name, ConnectionState.DISCONNECTED, reason))
        elif not self._outage:
            self._outage = True
            await self._emit(ConnectionEvent(self.name, ConnectionState.RECONNECTING, reason))

    async def _sync_books(self) -> None:
        """Yield what the interactive socket missed for the orders this broker has seen (each
        is in ``_order_accounts`` from its placement or its first event)."""
        known = self._order_accounts
        for account in sorted(set(known.values()) & set(self._accounts)):
            for update in await self.orders(account):
                if update.broker_order_id in known:
                    await self._order_update(update)
            for fill in await self.trades(account):
                if fill.broker_order_id in known:
                    await self._fill(fill)

    async def _on_md_event(self, name: str, data: Any) -> None:
        if name == "logout":
            raise _Logout
        try:
            ticks = self._normaliser.decode_event(name, data)
        except ValidationError as exc:
            log.warning("xts.bad_tick", broker=self.name, socket_event=name, error=exc.message)
            return
        for item in ticks:
            if isinstance(item, Bar):
                await self._on_bar(item)
            else:
                await self._on_tick(item)

    async def _on_bar(self, bar: Bar) -> None:
        # Only what is subscribed (subscribe_extra(..., 1505)): a late candle after an
        # unsubscription is dropped, as ticks are.
        if bar.instrument in self._extra.get(CANDLE, {}):
            await self._emit(bar)

    async def _on_tick(self, tick: Tick) -> None:
        sub = self._subs.get(tick.instrument)
        # Only what is subscribed, in its current mode: a late message of the old code
        # after a mode change or an unsubscribe is dropped.
        if sub is None:
            return
        mode = sub[2]
        if mode is StreamMode.LTP and tick.mode is not mode and sub[1] == TOUCHLINE:
            # ltp_message_code = 1501 on installs without 1512.
            tick = Tick(
                tick.instrument,
                mode,
                tick.last_price,
                tick.timestamp_ns,
                tick.last_quantity,
                open_interest=tick.open_interest,
            )
        if tick.mode is mode:
            await self._emit(tick)

    async def _on_interactive_event(self, name: str, data: Any) -> None:
        if name == "logout":
            raise _Logout
        if name not in ("order", "trade", "position", "tradeConversion"):
            return
        try:
            row = loads(data) if isinstance(data, str | bytes) else data
            if not isinstance(row, Mapping):
                raise ValidationError(f"{name} event is not an object", code="xts_bad_payload")
            if name == "order":
                await self._order_update(
                    self._in_units(order_to_update(self.name, row, self._resolve))
                )
            elif name == "trade":
                await self._fill(self._in_units(trade_to_fill(row, self._resolve)))
            elif name == "tradeConversion":
                await self._conversion(row)
            else:
                # Informational: positions come from fills, and reconciliation compares them
                # with the broker's books.
                log.debug("xts.position_event", broker=self.name)
        except ValidationError as exc:
            log.warning("xts.bad_event", broker=self.name, socket_event=name, error=exc.message)

    def _account_of(self, account: str) -> str | None:
        if account in self._accounts:
            return account
        return None if self._dealer else self._accounts[0]

    async def _order_update(self, update: OrderUpdate) -> None:
        account = self._account_of(update.account)
        if account is None:
            return  # a client of the dealer this broker does not serve
        update = attrs.evolve(update, account=account)
        order_id = update.broker_order_id
        view = (
            update.status,
            update.filled_quantity,
            update.quantity,
            update.price,
            update.pending_quantity,
        )
        seen = self._seen.get(order_id)
        if seen is not None:
            legal = update.status is seen.status or update.status in TRANSITIONS[seen.status]
            if view == seen.view or not legal or update.filled_quantity < seen.filled:
                return
        elif update.status is OrderStatus.PENDING and update.filled_quantity == 0:
            self._seen[order_id] = _Seen(update.status, 0, view)
            self._order_accounts.setdefault(order_id, account)
            return  # PendingNew repeats what place_order's return already said
        self._seen[order_id] = _Seen(update.status, update.filled_quantity, view)
        self._order_accounts.setdefault(order_id, account)
        await self._emit(update)

    async def _conversion(self, row: Mapping[str, Any]) -> None:
        key = text(field(row, "UniqueKey"))
        refused = conversion_refusal(row)
        if refused is not None:
            log.warning("xts.conversion_refused", broker=self.name, key=key, reason=refused)
            return
        event = self._in_units(conversion_to_event(self.name, row, self._resolve))
        account = self._account_of(event.account)
        if account is None or event.key in self._conversions:
            return  # a client of the dealer this broker does not serve, or a repeat
        self._conversions.add(event.key)
        await self._emit(attrs.evolve(event, account=account))

    async def _fill(self, fill: Fill) -> None:
        account = self._account_of(fill.account)
        if account is None or fill.fill_id in self._fills:
            return
        self._fills.add(fill.fill_id)
        await self._emit(attrs.evolve(fill, account=account))


class _Logout(Exception):
    """The server sent ``logout``: the session is gone (another login with the same key)."""


def _order_type(value: str) -> OrderType:
    found = {
        "market": OrderType.MARKET,
        "limit": OrderType.LIMIT,
        "stopmarket": OrderType.STOP,
        "stoplimit": OrderType.STOP_LIMIT,
    }.get(value.replace(" ", "").lower())
    if found is None:
        raise ValidationError(f"unknown XTS order type {value!r}", code="xts_bad_payload")
    return found
