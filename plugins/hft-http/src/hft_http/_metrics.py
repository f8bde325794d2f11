"""Prometheus metrics: what this transport observes, plus what the core exposes, read at scrape.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so two hosts in one process
(tests) never share counters. Metric names and what each counts are listed in the README.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

import anyio
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from hft import Conflict
from hft._host import Services
from hft.contracts import BrokerEvent
from hft.model import (
    ConnectionEvent,
    ConnectionState,
    Environment,
    Order,
    OrderStatus,
    Role,
    User,
    utcnow,
)

__all__ = ["CONTENT_TYPE", "Metrics"]

log = structlog.get_logger("hft.http")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Latencies in the order path run from tens of microseconds (a rejection) to seconds (a slow
# broker): buckets from 100 µs to 10 s.
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# The OMS's view of every order, for the scrape-time gauges and the order-event feed: an admin
# sees every account. It never trades and is not a stored user.
_OBSERVER = User("hft-http-metrics", Role.ADMIN, Environment.LIVE)
_MODE_LEVEL = {"off": 0, "reduce_only": 1, "halt": 2}
# The broker's first answer to an order.
_ANSWERS = frozenset(
    {OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.REJECTED}
)


class Metrics:
    """The registry of one app, with the metrics the transport updates itself."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "hft_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "hft_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "hft_http_rate_limited", "Requests refused with 429 by the per-user limit.", registry=r
        )
        self.order_submit_seconds = Histogram(
            "hft_order_submit_latency_seconds",
            "Order placement through this transport: validation, risk, journal and the broker's "
            "acknowledgement (or refusal).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.order_ack_seconds = Histogram(
            "hft_order_ack_latency_seconds",
            "Every order (any transport): from creation to the broker's first answer "
            "(open, filled or rejected).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.journal_seconds = Histogram(
            "hft_order_journal_latency_seconds",
            "Every new order: from creation to its journal entry being durable in storage "
            "(the storage write the order path waits on).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.order_events = Counter(
            "hft_order_events",
            "Journalled order events (any transport), by kind.",
            ["kind"],
            registry=r,
        )
        self.broker_connection_events = Counter(
            "hft_broker_connection_events",
            "Broker connection changes, by broker and state.",
            ["broker", "state"],
            registry=r,
        )
        self.broker_reconnects = Counter(
            "hft_broker_reconnects",
            "Completed broker reconnections (the stream came back and was resynced).",
            ["broker"],
            registry=r,
        )
        r.register(_CoreCollector(services))
        services.add_listener(self._on_broker_event)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def _on_broker_event(self, broker: str, event: BrokerEvent) -> None:
        if isinstance(event, ConnectionEvent):
            self.broker_connection_events.labels(broker, str(event.state)).inc()
            if event.state is ConnectionState.RESYNCED:
                self.broker_reconnects.labels(broker).inc()

    async def watch_orders(self) -> None:
        """Count order events and measure latencies from the OMS's feed until cancelled."""
        while True:
            feed = self.services.oms.subscribe(_OBSERVER)
            try:
                while True:
                    batch = await feed.receive_batch()
                    for message in batch:
                        self._observe(message.kind, message.order)
            except Conflict:
                # Fell too far behind (a burst of events while the loop was busy): counts
                # missed meanwhile are lost, the next ones are counted again.
                log.warning("http.metrics_feed_overflowed")
            except anyio.EndOfStream:
                return
            finally:
                feed.close()

    def _observe(self, kind: str, order: Order) -> None:
        # Order histories carry wall-clock times, so latencies are measured on the wall clock.
        self.order_events.labels(kind).inc()
        history = order.history
        if kind == "created":
            self.journal_seconds.observe(_seconds(utcnow() - history[-1].at))
        elif kind in ("status", "fill", "accepted"):
            answered = [h for h in history if h.status in _ANSWERS]
            # Only at the first answer: later changes of the same order are not acks.
            if len(answered) == 1 and history[-1] is answered[0]:
                self.order_ack_seconds.observe(_seconds(answered[0].at - order.created_at))


def _seconds(delta: dt.timedelta) -> float:
    return max(0.0, delta.total_seconds())


class _CoreCollector(Collector):
    """Values the core keeps, read when Prometheus scrapes."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the label values are only known at collection

    def collect(self) -> Iterator[Metric]:
        services = self._services
        orders = GaugeMetricFamily(
            "hft_orders", "Orders known to the OMS, by current status.", labels=["status"]
        )
        for status, count in services.oms.status_counts().items():
            orders.add_metric([status], count)
        yield orders

        rejections = CounterMetricFamily(
            "hft_risk_rejections",
            "Orders refused by the risk engine (any transport), by rejection code.",
            labels=["code"],
        )
        for code, count in sorted(services.risk.rejections.items()):
            rejections.add_metric([code], count)
        yield rejections

        yield from _storage_metrics(services)

        hub = services.hub.metrics()
        for name, value, text in (
            ("hft_market_data_ticks", hub.published, "Ticks published to the market-data hub."),
            (
                "hft_market_data_connection_events",
                hub.connection_events,
                "Broker connection events passed through the hub.",
            ),
            ("hft_market_data_delivered", hub.delivered, "Items handed to hub subscribers."),
            (
                "hft_market_data_conflated",
                hub.conflated,
                "Ticks replaced before a slow subscriber read them.",
            ),
            (
                "hft_market_data_lagged_subscribers",
                hub.lagged,
                "Subscribers closed for not reading connection events.",
            ),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], value)
            yield counter
        for name, (text, read) in sorted(services.gauges.items()):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], read())
            yield gauge

        subscribers = GaugeMetricFamily(
            "hft_market_data_subscribers",
            "Open market-data subscriptions (WebSocket, gRPC and other transports' clients).",
        )
        subscribers.add_metric([], hub.subscribers)
        yield subscribers

        ready = GaugeMetricFamily(
            "hft_broker_ready", "1 while the broker is connected and reconciled.", labels=["broker"]
        )
        events = CounterMetricFamily(
            "hft_broker_events", "Events received from the broker's stream.", labels=["broker"]
        )
        for name, handle in services.brokers.items():
            ready.add_metric([name], 1 if handle.ready else 0)
            events.add_metric([name], handle.events_seen)
        yield ready
        yield events

        switch = GaugeMetricFamily(
            "hft_kill_switch",
            'Kill-switch level (0 off, 1 reduce_only, 2 halt), global (account="") and per '
            "account.",
            labels=["account"],
        )
        switch.add_metric([""], _MODE_LEVEL[str(services.risk.kill_switch().mode)])
        for account in services.accounts:
            mode = services.risk.kill_switch(account).mode
            switch.add_metric([account], _MODE_LEVEL[str(mode)])
        yield switch


def _storage_metrics(services: Services) -> Iterator[Metric]:
    """The storage's commit times, when the backend keeps them (the SQL one does)."""
    storage = services.storage
    bounds = getattr(storage, "commit_bounds", None)
    buckets = getattr(storage, "commit_buckets", None)
    total = getattr(storage, "commit_seconds", None)
    if not isinstance(bounds, tuple) or not isinstance(buckets, list):
        return
    if not isinstance(total, float) or len(buckets) != len(bounds) + 1:
        return
    histogram = HistogramMetricFamily(
        "hft_storage_commit_seconds",
        "Storage write transactions (group commits: journal entries, fills, state), by the time "
        "each took to commit.",
        buckets=[(repr(float(b)), int(c)) for b, c in zip(bounds, buckets, strict=False)]
        + [("+Inf", int(buckets[-1]))],
        sum_value=total,
    )
    yield histogram
