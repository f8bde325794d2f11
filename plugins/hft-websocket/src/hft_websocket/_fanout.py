"""Market data from the hub to every connection: one hub subscription per mode, our own fan-out.

The hub delivers each mode's union of instruments to one :class:`~hft._hub.Subscription`; a
pump per mode encodes each tick once (a shared :class:`Encoded`: binary record built at once,
JSON on first use) and stores it in the pending dict of every connection that wants that
instrument at that mode. A pending dict holds one entry per instrument, so a connection that is
behind is conflated to the latest tick and never slows the pump or its neighbours.

Bars reach a connection through the pump of the mode it has the instrument at, encoded once as
the JSON of a ``bar`` message (whatever the connection's encoding), and are conflated the same
way in a pending dict of their own: a connection that is behind gets the newest bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

import anyio
import orjson

from hft._hub import MarketDataHub, Subscription
from hft.model import Bar, StreamMode, Tick
from hft_websocket import codec
from hft_websocket._protocol import bar_json, tick_json

__all__ = ["Encoded", "Fanout", "Sink"]

MODE_CODE: Final = {
    StreamMode.LTP: codec.LTP,
    StreamMode.QUOTE: codec.QUOTE,
    StreamMode.FULL: codec.FULL,
}
_RANK: Final = {StreamMode.LTP: 0, StreamMode.QUOTE: 1, StreamMode.FULL: 2}
_N = codec.NULL
_EMPTY_LEVEL: Final = (_N, 0, 0)


def _v(value: int | None) -> int:
    return _N if value is None else value


class Encoded:
    """One tick as one mode's subscribers receive it; shared by every connection."""

    __slots__ = ("_json", "iid", "mode", "record", "scale", "tick")

    def __init__(self, tick: Tick, mode: StreamMode, iid: int, scale: int) -> None:
        self.tick = tick
        # A tick the broker streamed at a lower mode (before a mode change reached it) is sent
        # as what it is, not padded with nulls under a higher mode's name.
        self.mode = mode if _RANK[tick.mode] >= _RANK[mode] else tick.mode
        self.iid = iid
        self.scale = scale
        self._json: bytes | None = None
        self.record = _record(tick, self.mode, iid)

    def json(self) -> bytes:
        if self._json is None:
            self._json = orjson.dumps(tick_json(self.tick, self.iid, self.mode, self.scale))
        return self._json


def _record(t: Tick, mode: StreamMode, iid: int) -> bytes:
    if mode is StreamMode.LTP:
        return codec.pack_ltp(iid, t.seq, t.last_price, t.timestamp_ns)
    depth = t.depth
    bids = depth.bids if depth else ()
    asks = depth.asks if depth else ()
    ohlc = t.ohlc
    quote = (
        _v(t.last_quantity),
        _v(t.volume),
        _v(t.average_price),
        _v(t.total_buy_quantity),
        _v(t.total_sell_quantity),
        _v(t.open_interest),
        *((ohlc.open, ohlc.high, ohlc.low, ohlc.close) if ohlc else (_N, _N, _N, _N)),
        *((bids[0].price, bids[0].quantity) if bids else (_N, 0)),
        *((asks[0].price, asks[0].quantity) if asks else (_N, 0)),
    )
    if mode is StreamMode.QUOTE:
        return codec.pack_quote(iid, t.seq, t.last_price, t.timestamp_ns, quote)
    levels: list[int] = []
    for side in (bids, asks):
        for i in range(codec.DEPTH_LEVELS):
            levels.extend(
                (side[i].price, side[i].quantity, side[i].orders) if i < len(side) else _EMPTY_LEVEL
            )
    return codec.pack_full(iid, t.seq, t.last_price, t.timestamp_ns, quote, levels)


class Sink(Protocol):
    """What the fan-out needs of a connection.

    The fan-out stores each tick for the connection (replacing an undelivered one of the same
    instrument); the connection takes all it holds when it sends.
    """

    #: Whether the connection takes binary records (else :attr:`market`).
    binary: bool
    #: JSON connections: instrument → the latest undelivered tick.
    market: dict[str, Encoded]
    #: Binary connections: mode → instrument → the latest undelivered record of that mode.
    records: dict[StreamMode, dict[str, bytes]]
    #: instrument → the latest undelivered bar, as the JSON of its ``bar`` object.
    bars: dict[str, bytes]
    #: instrument → the mode this connection has it at; kept by :class:`Fanout`.
    modes: dict[str, StreamMode]

    def wake(self) -> None: ...


class Fanout:
    """Routes each mode's ticks to the connections that want them; see the module docstring."""

    def __init__(self, hub: MarketDataHub, scale_of: Callable[[str], int]) -> None:
        self._hub = hub
        self._scale_of = scale_of
        self._ids: dict[str, int] = {}
        self._scales: dict[str, int] = {}
        self._subs: dict[StreamMode, Subscription] = {
            mode: hub.subscribe(name=f"websocket.{mode}") for mode in MODE_CODE
        }
        self._routes: dict[StreamMode, dict[str, dict[Sink, None]]] = {m: {} for m in MODE_CODE}
        self.delivered = 0

    def iid(self, key: str) -> int:
        """``key``'s id in binary records, fixed for the life of the process."""
        iid = self._ids.get(key)
        if iid is None:
            iid = self._ids[key] = len(self._ids) + 1
            self._scales[key] = self._scale_of(key)
        return iid

    def scale(self, key: str) -> int:
        self.iid(key)
        return self._scales[key]

    def add(self, sink: Sink, keys: Iterable[str], mode: StreamMode) -> None:
        """Route ``keys`` at ``mode`` to ``sink`` and make each one's snapshot pending for it."""
        routes = self._routes[mode]
        fresh: list[str] = []
        for key in keys:
            old = sink.modes.get(key)
            if old is mode:
                continue
            if old is not None:
                self._unroute(sink, key, old)
            sink.modes[key] = mode
            iid = self.iid(key)
            sinks = routes.get(key)
            if sinks is None:
                # New to this mode: the hub sends the mode's subscription the snapshot, and the
                # pump hands it on; pushing it here too would repeat it.
                routes[key] = {sink: None}
                fresh.append(key)
                continue
            sinks[sink] = None
            latest = self._hub.latest(key)
            if latest is not None:
                _put(sink, key, Encoded(latest, mode, iid, self._scales[key]))
            bar = self._hub.latest_bar(key)
            if bar is not None and old is None:
                sink.bars[key] = self._bar(bar)
                sink.wake()
        if fresh:
            self._subs[mode].add(fresh, mode)

    def remove(self, sink: Sink, keys: Iterable[str]) -> list[str]:
        """Stop routing ``keys`` to ``sink``; the ones it had."""
        removed = []
        for key in keys:
            mode = sink.modes.pop(key, None)
            if mode is not None:
                self._unroute(sink, key, mode)
                sink.market.pop(key, None)
                sink.bars.pop(key, None)
                for pending in sink.records.values():
                    pending.pop(key, None)
                removed.append(key)
        return removed

    def _bar(self, bar: Bar) -> bytes:
        key = bar.instrument
        return orjson.dumps(bar_json(bar, self.iid(key), self._scales[key]))

    def drop(self, sink: Sink) -> None:
        self.remove(sink, list(sink.modes))

    def _unroute(self, sink: Sink, key: str, mode: StreamMode) -> None:
        routes = self._routes[mode]
        sinks = routes[key]
        del sinks[sink]
        if not sinks:
            del routes[key]
            self._subs[mode].remove([key])

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for mode in MODE_CODE:
                    tg.start_soon(self._pump, mode)
        finally:
            for sub in self._subs.values():
                sub.close()

    async def _pump(self, mode: StreamMode) -> None:
        sub = self._subs[mode]
        routes = self._routes[mode]
        ids, scales = self._ids, self._scales
        while True:
            batch = await sub.receive_batch()
            if not batch:
                return  # closed
            delivered = 0
            touched: dict[Sink, None] = {}
            for tick in batch:
                if not isinstance(tick, Tick):
                    if isinstance(tick, Bar) and (sinks := routes.get(tick.instrument)):
                        encoded = self._bar(tick)
                        for sink in sinks:
                            sink.bars[tick.instrument] = encoded
                        touched.update(sinks)
                        delivered += len(sinks)
                    continue  # broker connection events are not part of the protocol
                key = tick.instrument
                sinks = routes.get(key)
                if not sinks:
                    continue
                entry = Encoded(tick, mode, ids[key], scales[key])
                delivered += len(sinks)
                if entry.mode is not mode:
                    for sink in sinks:
                        _put(sink, key, entry, wake=False)
                    touched.update(sinks)
                    continue
                # The hot loop: one dict store per interested connection, of bytes shared by
                # every binary connection.
                record = entry.record
                for sink in sinks:
                    if sink.binary:
                        sink.records[mode][key] = record
                    else:
                        sink.market[key] = entry
                touched.update(sinks)
            # Once per connection per batch, so that a batch goes out as one frame.
            for sink in touched:
                sink.wake()
            self.delivered += delivered


def _put(sink: Sink, key: str, entry: Encoded, *, wake: bool = True) -> None:
    """Make ``entry`` the sink's pending tick of ``key``, whatever mode the one it replaces had."""
    if sink.binary:
        for mode, pending in sink.records.items():
            if mode is not entry.mode:
                pending.pop(key, None)
        sink.records[entry.mode][key] = entry.record
    else:
        sink.market[key] = entry
    if wake:
        sink.wake()
