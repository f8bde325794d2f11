"""The Zerodha Kite Connect v3 broker: stored session, REST books and orders, the ticker stream.

``connect`` loads the access token ``hft zerodha login`` stored, checks it with
``GET /user/profile``, loads the instrument master (cached per day) and opens the ticker; a
missing, expired or invalidated token raises :class:`hft.AuthError` telling the user to log in
again, and the host keeps the broker not ready instead of retrying.

Order updates arrive as ticker text messages. They pass one at a time through a worker that
drops stale views (a status the state machine cannot reach from the last one sent, or a
smaller filled quantity) and, when the filled quantity grows, reads the order's trades first,
so each execution is reported once as a :class:`~hft.model.Fill` before the update that counts
it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import anyio
import structlog
import trio

from hft._errors import BrokerRejected, HftError, NetworkError, NotFound, ValidationError
from hft._plugins import PluginContext
from hft.contracts import Broker, BrokerEvent
from hft.model import (
    TRANSITIONS,
    ConnectionEvent,
    ConnectionState,
    Fill,
    Holding,
    Instrument,
    ModifyRequest,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Position,
    StreamMode,
    Tick,
    utcnow,
)

from . import session as sessions
from .config import ZerodhaConfig
from .normaliser import ZerodhaNormaliser
from .parsing.kite import (
    IST,
    Candle,
    SegmentMargin,
    candles_from_kite,
    fill_from_kite,
    holding_from_kite,
    instruments_from_csv,
    margins_from_kite,
    order_type_to_kite,
    position_from_kite,
    quote_to_tick,
    update_from_kite,
    validity_to_kite,
)
from .rest import KiteRest
from .stream import Ticker

__all__ = ["EXTRAS", "MAX_MODIFICATIONS", "VARIETIES", "ZerodhaBroker", "make_broker"]

log = structlog.get_logger("hft_zerodha.broker")

VARIETIES: Final = ("regular", "amo", "co", "iceberg", "auction")
#: ``OrderRequest.extras`` keys this broker understands (all strings).
EXTRAS: Final = frozenset(
    {"variety", "market_protection", "iceberg_legs", "iceberg_quantity", "validity_ttl",
     "trigger_price", "auction_number", "parent_order_id"}
)  # fmt: skip
_EVENT_BUFFER: Final = 10_000
_TRADE_READS: Final = 3  # reads of an order's trades while they trail its filled quantity
_TAG_MAX: Final = 20
#: Kite accepts at most this many modifications of one order.
MAX_MODIFICATIONS: Final = 25


def make_broker(config: ZerodhaConfig, context: PluginContext) -> ZerodhaBroker:
    return ZerodhaBroker(config, context)


class ZerodhaBroker(Broker):
    """One Kite Connect login (api key + the day's access token)."""

    def __init__(self, config: ZerodhaConfig, context: PluginContext) -> None:
        self.config = config
        self.name = context.name
        self._context = context
        self._token_file = config.token_file or sessions.default_token_file(
            context.data_dir, context.name
        )
        self._rest: KiteRest | None = None
        self._ticker: Ticker | None = None
        self._account = config.user_id
        self._instruments: dict[str, Instrument] = {}
        self._by_token: dict[int, Instrument] = {}
        self._normaliser = ZerodhaNormaliser(())
        # trio channels: the stream is trio-only anyway (trio-websocket), and they need no
        # closing when a broker is dropped unused.
        self._send, self._receive = trio.open_memory_channel[BrokerEvent](_EVENT_BUFFER)
        self._orders_in, self._orders_out = trio.open_memory_channel[Mapping[str, Any]](
            _EVENT_BUFFER
        )
        self._last: dict[str, tuple[OrderStatus, int]] = {}
        self._trade_ids: set[str] = set()
        self._varieties: dict[str, str] = {}
        self._modifications: dict[str, int] = {}
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()
        self._connected = False
        self._closed = False

    # Connection -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._closed:
            raise NetworkError(f"broker {self.name!r} is closed")
        if self._connected:
            return
        stored = sessions.load(self._token_file, self.config.api_key, self.name, utcnow())
        rest = KiteRest(self.config, stored.access_token)
        try:
            profile = await rest.call("GET", "/user/profile", "other")
            if isinstance(profile, Mapping) and isinstance(profile.get("user_id"), str):
                self._account = self.config.user_id or profile["user_id"]
            self._account = self._account or stored.user_id
            self._rest = rest
            await self._load_instruments()
            self._ticker = Ticker(
                self.config,
                stored.access_token,
                on_binary=self._on_binary,
                on_text=self._on_text,
                on_state=self._on_state,
            )
            await self._start_background(self._ticker)
        except BaseException:
            self._rest = None
            with anyio.CancelScope(shield=True):
                await rest.aclose()
            raise
        self._connected = True
        await self._emit(ConnectionEvent(self.name, ConnectionState.CONNECTED))
        log.info(
            "kite.connected",
            broker=self.name,
            account=self._account,
            instruments=len(self._instruments),
            session_expires=stored.expires_at.astimezone(IST).isoformat(),
        )

    async def _start_background(self, ticker: Ticker) -> None:
        """Run the ticker and the order worker in a system task: they outlive ``connect``'s
        caller, and ``close`` (called from another task) stops them."""
        ready = trio.Event()
        failure: list[BaseException] = []
        self._done = trio.Event()
        trio.lowlevel.spawn_system_task(self._background, ticker, ready, failure)
        await ready.wait()
        if failure:
            raise failure[0]

    async def _background(
        self, ticker: Ticker, ready: trio.Event, failure: list[BaseException]
    ) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._order_worker)
                    try:
                        await ticker.start(nursery)
                    except HftError as exc:
                        failure.append(exc)
                        nursery.cancel_scope.cancel()
                    ready.set()
        except Exception as exc:  # a system task must never raise: it would end the whole run
            log.exception("kite.background_failed", broker=self.name)
            if not ready.is_set():
                failure.append(NetworkError(f"kite: the stream failed: {type(exc).__name__}"))
            else:
                await self._emit(
                    ConnectionEvent(self.name, ConnectionState.DISCONNECTED, "stream failed")
                )
        finally:
            ready.set()
            self._done.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._scope is not None:
                self._scope.cancel()
                await self._done.wait()
            if self._rest is not None:
                await self._rest.aclose()
            if self._connected:
                await self._emit(ConnectionEvent(self.name, ConnectionState.DISCONNECTED, "closed"))
            self._connected = False
            await self._send.aclose()

    def accounts(self) -> Sequence[str]:
        return (self._account,) if self._account else ()

    def events(self) -> AsyncIterator[BrokerEvent]:
        return self._receive.__aiter__()

    async def _emit(self, event: BrokerEvent) -> None:
        # Once closed, nobody reads any more.
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self._send.send(event)

    # Stream callbacks -------------------------------------------------------------------------

    async def _on_binary(self, message: bytes) -> None:
        try:
            ticks = self._normaliser.decode(message)
        except ValidationError as exc:
            log.warning("kite.bad_frame", broker=self.name, error=exc.message, size=len(message))
            return
        for tick in ticks:
            await self._emit(tick)

    async def _on_text(self, message: str) -> None:
        try:
            data = json.loads(message, parse_float=Decimal)
        except ValueError:
            log.warning("kite.bad_text", broker=self.name, size=len(message))
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "order" and isinstance(data.get("data"), Mapping):
            await self._orders_in.send(data["data"])
        elif kind == "error":
            log.warning("kite.ticker_error", broker=self.name, message=str(data.get("data")))
        elif kind == "message":
            log.info("kite.ticker_message", broker=self.name, message=str(data.get("data")))
        # Other types (instruments_meta, app_code, ...) carry nothing we use.

    async def _on_state(self, state: ConnectionState, reason: str) -> None:
        await self._emit(ConnectionEvent(self.name, state, reason))

    # Order updates ----------------------------------------------------------------------------

    async def _order_worker(self) -> None:
        async for row in self._orders_out:
            try:
                await self._apply_order(row)
            except HftError as exc:
                log.warning("kite.bad_order_update", broker=self.name, error=str(exc))

    async def _apply_order(self, row: Mapping[str, Any]) -> None:
        update = update_from_kite(row, self.name, self._account, self._instrument)
        variety = row.get("variety")
        if isinstance(variety, str):
            self._varieties[update.broker_order_id] = variety
        last_status, last_filled = self._last.get(update.broker_order_id, (OrderStatus.PENDING, 0))
        if update.filled_quantity < last_filled or (
            update.status is not last_status and update.status not in TRANSITIONS[last_status]
        ):
            log.debug("kite.stale_update", broker=self.name, order=update.broker_order_id)
            return
        if update.filled_quantity > last_filled:
            for fill in await self._new_fills(update.broker_order_id, update.filled_quantity):
                await self._emit(fill)
        self._last[update.broker_order_id] = (update.status, update.filled_quantity)
        await self._emit(update)

    async def _new_fills(self, order_id: str, filled: int) -> list[Fill]:
        """Trades of ``order_id`` not reported yet; read again briefly while the trade book
        trails the order's filled quantity."""
        fresh: list[Fill] = []
        for attempt in range(_TRADE_READS):
            rows = await self._rest_client().call("GET", f"/orders/{order_id}/trades", "other")
            fills = [fill_from_kite(r, self._account, self._instrument) for r in _rows(rows)]
            for fill in fills:
                if fill.fill_id not in self._trade_ids:
                    self._trade_ids.add(fill.fill_id)
                    fresh.append(fill)
            if sum(f.quantity for f in fills) >= filled or attempt == _TRADE_READS - 1:
                break
            await trio.sleep(0.1 * (attempt + 1))
        return fresh

    # Orders -----------------------------------------------------------------------------------

    async def place_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest
    ) -> str:
        self._check_account(broker_account)
        variety, form = self._order_form(instrument, request)
        data = await self._rest_client().call("POST", f"/orders/{variety}", "orders", data=form)
        order_id = data.get("order_id") if isinstance(data, Mapping) else None
        if not isinstance(order_id, str | int) or isinstance(order_id, bool) or not order_id:
            raise NetworkError(
                "kite: order placed but the response has no order_id; reconciliation will find it",
                code="kite_malformed",
            )
        self._varieties[str(order_id)] = variety
        return str(order_id)

    def _order_form(
        self, instrument: Instrument, request: OrderRequest
    ) -> tuple[str, dict[str, str]]:
        extras = dict(request.extras)
        unknown = sorted(set(extras) - EXTRAS)
        if unknown:
            raise BrokerRejected(
                f"kite: unknown order extras {', '.join(unknown)} "
                f"(known: {', '.join(sorted(EXTRAS))})",
                code="kite_bad_extra",
            )
        variety = extras.pop("variety", "regular")
        if variety not in VARIETIES:
            raise BrokerRejected(
                f"kite: variety {variety!r} is not one of {', '.join(VARIETIES)}",
                code="kite_bad_extra",
            )
        tag = request.client_order_id or request.tag
        if len(tag) > _TAG_MAX or (not tag.isalnum() and tag):
            raise BrokerRejected(
                f"kite: tag {tag!r} must be at most {_TAG_MAX} letters and digits",
                code="kite_bad_tag",
            )
        form = {
            "tradingsymbol": instrument.symbol,
            "exchange": instrument.exchange,
            "transaction_type": str(request.side),
            "order_type": order_type_to_kite(request.order_type),
            "quantity": str(request.quantity),
            "product": str(request.product),
            "validity": validity_to_kite(request.time_in_force),
        }
        if tag:
            form["tag"] = tag
        if request.price is not None:
            form["price"] = instrument.format(request.price)
        if request.trigger_price is not None:
            form["trigger_price"] = instrument.format(request.trigger_price)
        if request.disclosed_quantity:
            form["disclosed_quantity"] = str(request.disclosed_quantity)
        if "trigger_price" in extras:  # a cover order's stop-loss leg rides on a LIMIT/MARKET
            form["trigger_price"] = _price_extra(instrument, extras.pop("trigger_price"))
        if "market_protection" in extras:
            form["market_protection"] = _market_protection(extras.pop("market_protection"))
        if "validity_ttl" in extras:
            form["validity"] = "TTL"
            form["validity_ttl"] = str(_int_extra("validity_ttl", extras.pop("validity_ttl"), 1))
        if variety == "iceberg":
            legs = _int_extra("iceberg_legs", extras.pop("iceberg_legs", ""), 2, 10)
            leg = _int_extra("iceberg_quantity", extras.pop("iceberg_quantity", ""), 1)
            form["iceberg_legs"], form["iceberg_quantity"] = str(legs), str(leg)
        if variety == "co" and "trigger_price" not in form:
            raise BrokerRejected(
                "kite: a cover order needs extras trigger_price", code="kite_bad_extra"
            )
        if variety == "auction":
            form["auction_number"] = extras.pop("auction_number", "")
        for leftover in ("iceberg_legs", "iceberg_quantity", "auction_number", "parent_order_id"):
            if leftover in extras:
                raise BrokerRejected(
                    f"kite: extras {leftover} does not apply to a {variety} order",
                    code="kite_bad_extra",
                )
        return variety, form

    async def modify_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        request: ModifyRequest,
    ) -> None:
        self._check_account(broker_account)
        if self._modifications.get(broker_order_id, 0) >= MAX_MODIFICATIONS:
            raise BrokerRejected(
                f"kite: order {broker_order_id} was modified {MAX_MODIFICATIONS} times, Kite's "
                "limit; cancel it and place a new one",
                code="kite_modify_limit",
            )
        variety = await self._variety(broker_order_id)
        form: dict[str, str] = {}
        if request.quantity is not None:
            form["quantity"] = str(request.quantity)
        if request.price is not None:
            form["price"] = instrument.format(request.price)
        if request.trigger_price is not None:
            form["trigger_price"] = instrument.format(request.trigger_price)
        if request.order_type is not None:
            form["order_type"] = order_type_to_kite(request.order_type)
        if request.time_in_force is not None:
            form["validity"] = validity_to_kite(request.time_in_force)
        await self._rest_client().call(
            "PUT", f"/orders/{variety}/{broker_order_id}", "changes", data=form
        )
        self._modifications[broker_order_id] = self._modifications.get(broker_order_id, 0) + 1

    async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
        self._check_account(broker_account)
        variety = await self._variety(broker_order_id)
        await self._rest_client().call("DELETE", f"/orders/{variety}/{broker_order_id}", "changes")

    async def _variety(self, order_id: str) -> str:
        known = self._varieties.get(order_id)
        if known is not None:
            return known
        history = await self.order_history(order_id)
        if not history:
            raise NotFound(f"kite: no order {order_id}")
        variety = history[-1].get("variety")
        self._varieties[order_id] = variety if isinstance(variety, str) else "regular"
        return self._varieties[order_id]

    async def order_history(self, order_id: str) -> list[Mapping[str, Any]]:
        """Every state the order went through, oldest first (Kite's raw order objects)."""
        return _rows(await self._rest_client().call("GET", f"/orders/{order_id}", "other"))

    # Books and portfolio ----------------------------------------------------------------------

    async def orders(self, broker_account: str) -> list[OrderUpdate]:
        self._check_account(broker_account)
        rows = _rows(await self._rest_client().call("GET", "/orders", "other"))
        return [update_from_kite(r, self.name, self._account, self._instrument) for r in rows]

    async def trades(self, broker_account: str) -> list[Fill]:
        self._check_account(broker_account)
        rows = _rows(await self._rest_client().call("GET", "/trades", "other"))
        return [fill_from_kite(r, self._account, self._instrument) for r in rows]

    async def positions(self, broker_account: str) -> list[Position]:
        self._check_account(broker_account)
        data = await self._rest_client().call("GET", "/portfolio/positions", "other")
        rows = _rows(data.get("net") if isinstance(data, Mapping) else None)
        return [position_from_kite(r, self._account, self._instrument) for r in rows]

    async def holdings(self, broker_account: str) -> list[Holding]:
        self._check_account(broker_account)
        rows = _rows(await self._rest_client().call("GET", "/portfolio/holdings", "other"))
        return [holding_from_kite(r, self._account, self._instrument) for r in rows]

    async def margins(self, segment: str | None = None) -> dict[str, SegmentMargin]:
        """Funds and margins in paise, by segment (``equity``, ``commodity``)."""
        if segment is not None and segment not in ("equity", "commodity"):
            raise ValidationError(f"kite: margin segment {segment!r} is not equity or commodity")
        path = "/user/margins" + (f"/{segment}" if segment else "")
        data = await self._rest_client().call("GET", path, "other")
        return margins_from_kite({segment: data} if segment else data)

    # Market data ------------------------------------------------------------------------------

    async def instruments(self) -> list[Instrument]:
        if not self._instruments:
            await self._load_instruments()
        return list(self._instruments.values())

    async def quotes(self, instruments: Sequence[Instrument]) -> dict[str, Tick]:
        data = await self._rest_client().quotes("/quote", [i.key for i in instruments])
        scales = {i.key: i.price_scale for i in instruments}
        return {k: quote_to_tick(k, v, scales[k]) for k, v in data.items() if k in scales}

    async def ohlc(self, instruments: Sequence[Instrument]) -> dict[str, Tick]:
        """Last price and the day's OHLC per instrument (quote-mode ticks without volume)."""
        return await self._light_quotes("/quote/ohlc", instruments, StreamMode.QUOTE)

    async def ltp(self, instruments: Sequence[Instrument]) -> dict[str, Tick]:
        """Last price per instrument (ltp-mode ticks)."""
        return await self._light_quotes("/quote/ltp", instruments, StreamMode.LTP)

    async def _light_quotes(
        self, route: str, instruments: Sequence[Instrument], mode: StreamMode
    ) -> dict[str, Tick]:
        data = await self._rest_client().quotes(route, [i.key for i in instruments])
        scales = {i.key: i.price_scale for i in instruments}
        ticks = {}
        for key, row in data.items():
            if key not in scales:
                continue
            full = quote_to_tick(key, row, scales[key])
            ticks[key] = Tick(
                key, mode, full.last_price, ohlc=full.ohlc if mode is StreamMode.QUOTE else None
            )
        return ticks

    async def historical(
        self,
        instrument: Instrument,
        interval: str,
        start: dt.datetime,
        end: dt.datetime,
        *,
        continuous: bool = False,
        oi: bool = False,
    ) -> list[Candle]:
        """Historical candles (``interval``: minute, 3minute, ..., 60minute, day)."""
        if interval not in _INTERVALS:
            raise ValidationError(
                f"kite: interval {interval!r} is not one of {', '.join(_INTERVALS)}"
            )
        local = [t.astimezone(IST) if t.tzinfo else t for t in (start, end)]
        data = await self._rest_client().historical(
            instrument.token, interval, local[0], local[1], continuous=continuous, oi=oi
        )
        return candles_from_kite(data, instrument.price_scale)

    async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
        ticker = self._require_ticker()
        for instrument in instruments:
            self._by_token.setdefault(instrument.token, instrument)
            self._normaliser.add(instrument)
        await ticker.subscribe([i.token for i in instruments], mode)

    async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
        await self._require_ticker().unsubscribe([i.token for i in instruments])

    @property
    def subscriptions(self) -> dict[int, StreamMode]:
        """Subscribed tokens and their modes, as the ticker will resend them on reconnect."""
        return self._ticker.subscriptions if self._ticker else {}

    # Internals --------------------------------------------------------------------------------

    def _rest_client(self) -> KiteRest:
        if self._rest is None:
            raise NetworkError(f"broker {self.name!r} is not connected", code="not_connected")
        return self._rest

    def _require_ticker(self) -> Ticker:
        if self._ticker is None or not self._connected:
            raise NetworkError(f"broker {self.name!r} is not connected", code="not_connected")
        return self._ticker

    def _check_account(self, broker_account: str) -> None:
        # "default" is what an [accounts] entry without broker_account names.
        if broker_account not in (self._account, "default"):
            raise NotFound(
                f"broker {self.name!r} logs in as {self._account!r}, not {broker_account!r}"
            )

    def _instrument(self, key: str) -> Instrument | None:
        return self._instruments.get(key)

    async def _load_instruments(self) -> None:
        """The instrument master, from today's cache file or Kite's dump (spec 3.8)."""
        cache = self._cache_file()
        if cache.exists():
            try:
                instruments = instruments_from_csv(cache.read_bytes())
            except ValidationError:
                instruments = []
            if instruments:
                self._set_instruments(instruments)
                return
        exchanges = self.config.exchanges
        rest = self._rest_client()
        if exchanges:
            parts = [
                await rest.call("GET", f"/instruments/{e}", "other", raw=True) for e in exchanges
            ]
            # One header, then every exchange's rows.
            body = b"".join(
                [parts[0].rstrip(b"\r\n") + b"\n", *(p.partition(b"\n")[2] for p in parts[1:])]
            )
        else:
            body = await rest.call("GET", "/instruments", "other", raw=True)
        instruments = instruments_from_csv(body)
        self._set_instruments(instruments)
        cache.parent.mkdir(parents=True, exist_ok=True)
        for old in cache.parent.glob(f"instruments-{self.name}-*.csv"):
            old.unlink(missing_ok=True)
        temporary = cache.with_suffix(".tmp")
        temporary.write_bytes(body)
        temporary.replace(cache)

    def _cache_file(self) -> Path:
        # Kite regenerates the dump once a day, early in the morning IST.
        today = utcnow().astimezone(IST).date().isoformat()
        return self._context.data_dir / "zerodha" / f"instruments-{self.name}-{today}.csv"

    def _set_instruments(self, instruments: list[Instrument]) -> None:
        self._instruments = {i.key: i for i in instruments}
        self._by_token = {i.token: i for i in instruments}
        self._normaliser = ZerodhaNormaliser(instruments, broker=self.name, account=self._account)


_INTERVALS: Final = (
    "minute", "3minute", "5minute", "10minute", "15minute", "30minute", "60minute", "day",
)  # fmt: skip


def _rows(data: Any) -> list[Mapping[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(r, Mapping) for r in data):
        raise ValidationError("kite: expected a list of objects", code="kite_malformed", status=502)
    return data


def _price_extra(instrument: Instrument, text: str) -> str:
    try:
        return instrument.format(instrument.price(text))
    except ValidationError as exc:
        raise BrokerRejected(
            f"kite: extras trigger_price: {exc.message}", code="kite_bad_extra"
        ) from None


def _market_protection(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if value != -1 and not (0 < value <= 100):
        raise BrokerRejected(
            f"kite: market_protection {text!r} must be -1 (automatic) or a percentage in (0, 100]",
            code="kite_bad_extra",
        )
    return text.strip()


def _int_extra(name: str, text: str, low: int, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f"at least {low}"
        raise BrokerRejected(
            f"kite: extras {name} must be a whole number {bounds}", code="kite_bad_extra"
        )
    return value
