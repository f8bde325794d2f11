"""The ``sim.market`` log line of ``hft serve``: proof, in the log, that the market is moving.

At start-up every sim broker's whole universe is subscribed on the host's market-data hub
(so the broker streams it, exactly as it would for a client), and every
``market_log_interval_s`` a line shows a handful of instruments as the hub last saw them: last
price, best bid/ask and volume.

No task is started for it. The line is written from a listener the host calls for each event of
that broker (:meth:`hft._host.Services.add_listener`), at most once per interval: a host with
no ticks flowing has nothing new to show, and at shutdown there is nothing to cancel, only a
flag to lower.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

import structlog

from hft.contracts import BrokerEvent
from hft.model import StreamMode, Tick
from hft_sim.broker import SimBroker

if TYPE_CHECKING:
    from hft._host import Services
    from hft._hub import Subscription

__all__ = ["MarketLog", "start", "stop"]

log = structlog.get_logger("hft.sim")

# Per running host (by identity: Services is not hashable), the lines it writes.
_RUNNING: Final[dict[int, list[MarketLog]]] = {}


class MarketLog:
    """One sim broker's ``sim.market`` line."""

    def __init__(self, services: Services, name: str, broker: SimBroker) -> None:
        config = broker.config
        self.name: Final = name
        self._interval_s = config.market_log_interval_s
        self._services = services
        books = list(broker.exchange)
        self._instruments = {book.key: book.instrument for book in books}
        count = min(config.market_log_instruments, len(books))
        # Spread over the universe, so the sample mixes equities and futures.
        self._shown = [books[i * len(books) // count].key for i in range(count)]
        self._subscription: Subscription = services.hub.subscribe(
            list(self._instruments), StreamMode.QUOTE, name=f"sim.market:{name}"
        )
        self._latest: dict[str, Tick] = {}
        self._published = services.hub.metrics().published
        self._due = time.monotonic() + self._interval_s
        self._active = True
        services.add_listener(self._on_event)

    def _on_event(self, broker: str, event: BrokerEvent) -> None:
        if not self._active or broker != self.name:
            return
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self._interval_s
        self.write()

    def write(self) -> None:
        """Log the line now."""
        for item in self._subscription.receive_nowait():
            if isinstance(item, Tick):
                self._latest[item.instrument] = item
        published = self._services.hub.metrics().published
        sample: dict[str, str] = {}
        for key in self._shown:
            tick = self._latest.get(key)
            if tick is not None:
                sample[self._instruments[key].symbol] = self._describe(tick)
        log.info(
            "sim.market",
            broker=self.name,
            instruments=len(self._instruments),
            ticks=published - self._published,
            **sample,
        )
        self._published = published

    def _describe(self, tick: Tick) -> str:
        fmt = self._instruments[tick.instrument].format
        bid, ask = tick.best_bid, tick.best_ask
        touch = f"{fmt(bid.price) if bid else '-'}/{fmt(ask.price) if ask else '-'}"
        return f"{fmt(tick.last_price)} [{touch}] vol {tick.volume or 0}"

    def close(self) -> None:
        """Stop writing the line. The subscription ends with the host's hub: closing it here
        would change the hub's demand mid-shutdown and have the host unsubscribe brokers that
        are about to close."""
        self._active = False


def start(services: Services) -> list[MarketLog]:
    """Start the line for every sim broker of the host that wants one."""
    lines = [
        MarketLog(services, name, handle.broker)
        for name, handle in services.brokers.items()
        if isinstance(handle.broker, SimBroker)
        and handle.broker.config.market_log_interval_s > 0
        and handle.broker.config.market_log_instruments > 0
    ]
    if lines:
        _RUNNING[id(services)] = lines
    return lines


def stop(services: Services) -> None:
    """Stop the host's lines and close their subscriptions."""
    for line in _RUNNING.pop(id(services), ()):
        line.close()
