"""The market-data hub: one publisher (the host's broker pumps), many conflating subscribers.

``publish`` stamps each tick with the next sequence number of its instrument, keeps it as the
instrument's latest snapshot and hands it to every subscriber of that instrument. It never
blocks and never awaits. A subscriber holds at most one pending tick per instrument: a newer tick
replaces an undelivered one in place (conflation), so a slow subscriber costs memory bounded by
its instrument count and never slows the feed or anyone else. Subscribers drain in batches:
:meth:`Subscription.receive_batch` waits until something is pending, then takes all of it.

Bars (:meth:`MarketDataHub.publish_bar`) go to every subscriber of their instrument, whatever
its mode, with a conflation rule of their own: at most one pending bar per instrument, a newer
bar replacing an undelivered one, independently of that instrument's pending tick. Bars carry no
sequence number; the hub keeps the latest per instrument (:meth:`MarketDataHub.latest_bar`).

Connection events go to every subscriber, in order and never conflated. They are also barriers:
a tick or bar published after one is never merged into one published before it.

Single event loop, no threads: nothing here is thread-safe, and nothing needs a lock.
``docs/market_data.md`` is the transport author's guide.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Final, TypeAlias

import anyio
import attrs

from hft.model import Bar, ConnectionEvent, Depth, StreamMode, Tick

__all__ = [
    "DemandCallback",
    "HubMetrics",
    "Item",
    "MarketDataHub",
    "Subscription",
    "project",
]

#: What a subscriber receives.
Item: TypeAlias = Tick | Bar | ConnectionEvent
#: A pending entry's key: the instrument for its tick, ``("bar", instrument)`` for its bar, so
#: one dict conflates both, each with its own slot, and keeps them in arrival order.
_PendingKey: TypeAlias = str | tuple[str, str]
#: ``on_demand(added, removed)``: ``added`` maps each instrument that is newly wanted, or whose
#: highest wanted mode changed, to that mode; ``removed`` holds instruments nobody wants any more.
DemandCallback: TypeAlias = Callable[[dict[str, StreamMode], set[str]], None]

_RANK: Final[Mapping[StreamMode, int]] = {
    StreamMode.LTP: 0,
    StreamMode.QUOTE: 1,
    StreamMode.FULL: 2,
}

_TICK_FIELDS: Final = (
    "instrument",
    "mode",
    "last_price",
    "timestamp_ns",
    "last_quantity",
    "volume",
    "average_price",
    "total_buy_quantity",
    "total_sell_quantity",
    "open_interest",
    "ohlc",
    "depth",
    "seq",
)
if tuple(f.name for f in attrs.fields(Tick)) != _TICK_FIELDS:  # pragma: no cover
    # _with_seq builds a Tick positionally; a new field must be added there, not silently dropped.
    raise ImportError("hft._hub._with_seq is out of step with hft.model.Tick's fields")


def _with_seq(t: Tick, seq: int) -> Tick:
    # Positional construction costs a third of attrs.evolve, and this runs once per tick.
    return Tick(
        t.instrument,
        t.mode,
        t.last_price,
        t.timestamp_ns,
        t.last_quantity,
        t.volume,
        t.average_price,
        t.total_buy_quantity,
        t.total_sell_quantity,
        t.open_interest,
        t.ohlc,
        t.depth,
        seq,
    )


def project(tick: Tick, mode: StreamMode) -> Tick:
    """``tick`` with the fields beyond ``mode`` stripped; pure, and ``tick`` itself when nothing is.

    LTP keeps ``instrument``, ``last_price``, ``timestamp_ns`` and ``seq``. QUOTE drops the depth
    beyond the best bid and ask (which QUOTE carries, see :class:`StreamMode`). FULL keeps all.
    The result's ``mode`` is the lower of the tick's and the requested one.
    """
    if _RANK[mode] >= _RANK[tick.mode]:
        return tick
    if mode is StreamMode.LTP:
        return Tick(
            tick.instrument, StreamMode.LTP, tick.last_price, tick.timestamp_ns, seq=tick.seq
        )
    depth = tick.depth
    if depth is not None and (len(depth.bids) > 1 or len(depth.asks) > 1):
        depth = Depth(depth.bids[:1], depth.asks[:1])
    return attrs.evolve(tick, mode=StreamMode.QUOTE, depth=depth)


@attrs.frozen
class HubMetrics:
    """Counters since the hub was made; ``delivered`` and ``conflated`` include closed subscribers.

    ``delivered`` counts items handed to subscribers by a receive; ``conflated`` counts ticks (and
    bars) that replaced an undelivered one (each is one that subscriber never saw).
    """

    published: int
    connection_events: int
    delivered: int
    conflated: int
    subscribers: int
    lagged: int  # subscribers closed for not reading connection events
    instruments: int  # with a snapshot
    demanded: int  # in the subscribers' union
    bars: int = 0  # bars published


class Subscription:
    """One subscriber's instruments (each with a mode) and its pending items.

    Made by :meth:`MarketDataHub.subscribe`. Read with :meth:`receive_batch` (or ``async for``);
    change the instrument set with :meth:`add` and :meth:`remove`; :meth:`close` when done (or use
    it as a context manager). After closing, :meth:`receive_batch` returns ``[]``.
    """

    __slots__ = (
        "_closed_reason",
        "_conflated",
        "_delivered",
        "_events_pending",
        "_hub",
        "_modes",
        "_pending",
        "_ready",
        "_waiter",
        "name",
    )

    def __init__(self, hub: MarketDataHub, name: str) -> None:
        self.name = name
        self._hub = hub
        self._modes: dict[str, StreamMode] = {}
        # Ticks (and bars) since the last connection event, one of each per instrument; a dict
        # keeps first-insertion order, so a replacing tick keeps its predecessor's place.
        self._pending: dict[_PendingKey, Tick | Bar] = {}
        # Items ahead of _pending: ticks frozen by a connection event, and the events themselves.
        self._ready: list[Item] = []
        self._events_pending = 0
        self._waiter: anyio.Event | None = None
        self._delivered = 0
        self._conflated = 0
        self._closed_reason: str | None = None

    # -- the instrument set -------------------------------------------------------------------

    @property
    def modes(self) -> Mapping[str, StreamMode]:
        """Subscribed instrument → mode (a copy)."""
        return dict(self._modes)

    def add(self, instruments: Iterable[str], mode: StreamMode = StreamMode.QUOTE) -> None:
        """Subscribe to ``instruments`` at ``mode`` (changing the mode of any already subscribed).

        Each newly added or re-moded instrument's snapshot, if the hub has one, is made pending at
        once, unless a tick of it is already pending; so is a newly added instrument's latest bar.
        It may repeat a tick or bar already received.
        """
        self._check_open()
        self._hub._add(self, instruments, mode)

    def remove(self, instruments: Iterable[str]) -> None:
        """Unsubscribe from ``instruments`` and drop their pending ticks and bars; ignore unknown
        ones."""
        self._check_open()
        self._hub._remove(self, instruments)

    # -- receiving ----------------------------------------------------------------------------

    async def receive_batch(self, max_items: int | None = None) -> list[Item]:
        """Wait until something is pending, then take it all (at most ``max_items``), in order.

        Returns ``[]`` once the subscription is closed.
        """
        while True:
            batch = self.receive_nowait(max_items)
            if batch or self._closed_reason is not None:
                return batch
            # Shared, so concurrent readers all wake (one takes the batch, the rest wait again);
            # one left behind by a cancelled reader is harmless.
            if self._waiter is None:
                self._waiter = anyio.Event()
            await self._waiter.wait()

    def receive_nowait(self, max_items: int | None = None) -> list[Item]:
        """Take whatever is pending (at most ``max_items``), in order, without waiting."""
        if max_items is not None and max_items < 1:
            raise ValueError("max_items must be at least 1")
        pending, ready = self._pending, self._ready
        if max_items is None or len(ready) + len(pending) <= max_items:
            if ready:
                batch = ready
                batch.extend(pending.values())
                self._ready = []
                self._events_pending = 0
            else:
                batch = list(pending.values())
            pending.clear()
        else:
            batch = ready[:max_items]
            del ready[:max_items]
            self._events_pending -= sum(isinstance(item, ConnectionEvent) for item in batch)
            for key in list(itertools.islice(pending, max_items - len(batch))):
                batch.append(pending.pop(key))
        self._delivered += len(batch)
        self._hub._delivered += len(batch)
        return batch

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        batch = await self.receive_batch(1)
        if not batch:
            raise StopAsyncIteration
        return batch[0]

    # -- state --------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Items waiting to be received."""
        return len(self._ready) + len(self._pending)

    @property
    def delivered(self) -> int:
        return self._delivered

    @property
    def conflated(self) -> int:
        """Ticks and bars replaced before this subscriber received them."""
        return self._conflated

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def closed_reason(self) -> str | None:
        """``None`` while open; ``"closed"`` after :meth:`close`; ``"lagged"`` when the hub closed
        it for leaving too many connection events unread (subscribe again to re-snapshot)."""
        return self._closed_reason

    def close(self) -> None:
        """Unsubscribe from everything, drop what is pending and end iteration; idempotent."""
        if self._closed_reason is None:
            hub = self._hub
            hub._update_demand(hub._detach(self, "closed"))

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._closed_reason or "open"
        return f"<Subscription {self.name!r} {state} instruments={len(self._modes)}>"

    # -- used by the hub ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise anyio.ClosedResourceError(f"subscription {self.name!r} is {self._closed_reason}")

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()


class MarketDataHub:
    """Latest snapshot and sequence number per instrument, and fan-out to conflating subscribers.

    ``on_demand`` (set by the host) is called synchronously whenever the union of subscribed
    instruments, or the highest mode wanted for one, changes; :attr:`demand` is that union now.
    ``max_connection_events`` bounds each subscriber's unread connection events: one that falls
    further behind is closed with reason ``"lagged"`` rather than shown a gapped history.
    """

    def __init__(
        self, *, on_demand: DemandCallback | None = None, max_connection_events: int = 256
    ) -> None:
        if max_connection_events < 1:
            raise ValueError("max_connection_events must be at least 1")
        self.on_demand = on_demand
        self.max_connection_events = max_connection_events
        self._latest: dict[str, Tick] = {}
        self._bars: dict[str, Bar] = {}
        self._routes: dict[str, list[Subscription]] = {}  # instrument → its subscribers
        self._demand: dict[str, StreamMode] = {}
        self._subscribers: dict[Subscription, None] = {}  # ordered set
        self._connections: dict[str, ConnectionEvent] = {}
        self._published = 0
        self._bars_published = 0
        self._connection_events = 0
        self._delivered = 0
        self._retired_conflated = 0
        self._lagged = 0

    # -- the feed side ------------------------------------------------------------------------

    def publish(self, tick: Tick) -> Tick:
        """Sequence ``tick``, store it as the snapshot, hand it to its subscribers; return it."""
        instrument = tick.instrument
        previous = self._latest.get(instrument)
        tick = _with_seq(tick, previous.seq + 1 if previous is not None else 1)
        self._latest[instrument] = tick
        self._published += 1
        # Hot loop: per subscriber a lookup and a store, and a wake-up only if it sat waiting.
        for sub in self._routes.get(instrument, ()):
            pending = sub._pending
            if instrument in pending:
                pending[instrument] = tick
                sub._conflated += 1
            else:
                pending[instrument] = tick
                if sub._waiter is not None:
                    sub._wake()
        return tick

    def publish_bar(self, bar: Bar) -> None:
        """Keep ``bar`` as its instrument's latest and hand it to every subscriber of that
        instrument (any mode); an undelivered bar of the instrument is replaced. Never blocks."""
        instrument = bar.instrument
        self._bars[instrument] = bar
        self._bars_published += 1
        key = ("bar", instrument)
        for sub in self._routes.get(instrument, ()):
            pending = sub._pending
            if key in pending:
                sub._conflated += 1
                pending[key] = bar
            else:
                pending[key] = bar
                if sub._waiter is not None:
                    sub._wake()

    def publish_connection(self, event: ConnectionEvent) -> None:
        """Record a broker's connection state and deliver it to every subscriber, in order."""
        self._connections[event.broker] = event
        self._connection_events += 1
        limit = self.max_connection_events
        unwanted: list[str] = []
        for sub in list(self._subscribers):
            if sub._events_pending >= limit:
                self._lagged += 1
                unwanted += self._detach(sub, "lagged")
                continue
            ready = sub._ready
            if sub._pending:
                # A barrier: later ticks must not merge into ticks from before the event.
                ready.extend(sub._pending.values())
                sub._pending.clear()
            ready.append(event)
            sub._events_pending += 1
            sub._wake()
        self._update_demand(unwanted)

    # -- queries ------------------------------------------------------------------------------

    def latest(self, instrument: str) -> Tick | None:
        """The last tick published for ``instrument`` (with its sequence number), if any."""
        return self._latest.get(instrument)

    def latest_bar(self, instrument: str) -> Bar | None:
        """The last bar published for ``instrument``, if any."""
        return self._bars.get(instrument)

    def last_price(self, instrument: str) -> int | None:
        tick = self._latest.get(instrument)
        return tick.last_price if tick is not None else None

    def seq(self, instrument: str) -> int:
        """The sequence number of ``instrument``'s last tick; 0 before the first."""
        tick = self._latest.get(instrument)
        return tick.seq if tick is not None else 0

    @property
    def connections(self) -> Mapping[str, ConnectionEvent]:
        """Broker name → its latest connection event (a copy)."""
        return dict(self._connections)

    @property
    def demand(self) -> Mapping[str, StreamMode]:
        """Instrument → highest mode, over every open subscription (a copy)."""
        return dict(self._demand)

    def metrics(self) -> HubMetrics:
        subs = self._subscribers
        return HubMetrics(
            published=self._published,
            connection_events=self._connection_events,
            delivered=self._delivered,
            conflated=self._retired_conflated + sum(s._conflated for s in subs),
            subscribers=len(subs),
            lagged=self._lagged,
            instruments=len(self._latest),
            demanded=len(self._demand),
            bars=self._bars_published,
        )

    # -- the subscriber side ------------------------------------------------------------------

    def subscribe(
        self,
        instruments: Iterable[str] = (),
        mode: StreamMode = StreamMode.QUOTE,
        *,
        name: str = "",
    ) -> Subscription:
        """A new subscription to ``instruments`` at ``mode``; their snapshots are pending at once.

        ``name`` only labels it (in ``repr`` and errors).
        """
        sub = Subscription(self, name)
        self._subscribers[sub] = None
        self._add(sub, instruments, mode)
        return sub

    def _add(self, sub: Subscription, instruments: Iterable[str], mode: StreamMode) -> None:
        modes = sub._modes
        changed: list[str] = []
        for instrument in instruments:
            old = modes.get(instrument)
            if old is mode:
                continue
            modes[instrument] = mode
            if old is None:
                self._routes.setdefault(instrument, []).append(sub)
                bar = self._bars.get(instrument)
                if bar is not None and ("bar", instrument) not in sub._pending:
                    sub._pending[("bar", instrument)] = bar
                    sub._wake()
            changed.append(instrument)
            snapshot = self._latest.get(instrument)
            if snapshot is not None and instrument not in sub._pending:
                sub._pending[instrument] = snapshot
                sub._wake()
        self._update_demand(changed)

    def _remove(self, sub: Subscription, instruments: Iterable[str]) -> None:
        self._update_demand(self._unroute(sub, instruments))

    def _unroute(self, sub: Subscription, instruments: Iterable[str]) -> list[str]:
        """Drop ``instruments`` from ``sub`` and its pending items; the ones it had, for demand."""
        modes, pending = sub._modes, sub._pending
        removed: list[str] = []
        for instrument in instruments:
            if modes.pop(instrument, None) is None:
                continue
            removed.append(instrument)
            pending.pop(instrument, None)
            pending.pop(("bar", instrument), None)
            routes = self._routes[instrument]
            routes.remove(sub)
            if not routes:
                del self._routes[instrument]
        if removed and sub._ready:
            gone = set(removed)
            sub._ready = [
                item
                for item in sub._ready
                if not (isinstance(item, Tick | Bar) and item.instrument in gone)
            ]
        return removed

    def _detach(self, sub: Subscription, reason: str) -> list[str]:
        """Close ``sub`` and drop all it holds; the instruments it had, for demand."""
        del self._subscribers[sub]
        sub._closed_reason = reason
        sub._ready = []
        sub._pending.clear()
        sub._events_pending = 0
        # A detached subscription is routed nothing more, so its conflation count is final.
        self._retired_conflated += sub._conflated
        sub._wake()
        return self._unroute(sub, list(sub._modes))

    def _update_demand(self, instruments: Iterable[str]) -> None:
        added: dict[str, StreamMode] = {}
        removed: set[str] = set()
        demand = self._demand
        for instrument in instruments:
            routes = self._routes.get(instrument)
            if not routes:
                if demand.pop(instrument, None) is not None:
                    removed.add(instrument)
                continue
            top = max((s._modes[instrument] for s in routes), key=_RANK.__getitem__)
            if demand.get(instrument) is not top:
                demand[instrument] = added[instrument] = top
        if (added or removed) and self.on_demand is not None:
            self.on_demand(added, removed)
