"""The host behind ``hft serve``: storage, brokers, services and transports in one task group.

Start-up order: open storage → recover orders, fills and positions → build brokers (connecting in
the background, so a broker that is down or needs a fresh login is reported "not ready" without
stopping the host; once connected its instruments are loaded and its orders reconciled) → load
users and tokens (on a first start, create the first users) → start every enabled transport →
``hft_startup`` hooks. Shutdown runs the other way round: transports stop accepting,
``hft_shutdown`` hooks run, brokers close, the journal flushes, storage closes.

Broker events are pumped one broker at a time into the market-data hub (ticks, bars, connection
changes) and the OMS (order updates, fills, position conversions); a ``RESYNCED`` connection
event triggers reconciliation.
"""

from __future__ import annotations

import gc
import inspect
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.abc
import attrs
import structlog

from hft._auth import PASSWORD_FILE, AuthService
from hft._config import BrokerSection, Config
from hft._errors import AuthError, HftError, PluginError
from hft._hub import MarketDataHub
from hft._oms import OrderManager
from hft._plugins import PluginContext, PluginHost
from hft._portfolio import PAISE_SCALE, Portfolio
from hft._resilience import Backoff
from hft._risk import RiskEngine
from hft._secret import redact_url
from hft.contracts import Broker, BrokerEvent, Storage, Transport
from hft.model import (
    Account,
    Bar,
    ConnectionEvent,
    ConnectionState,
    Environment,
    Fill,
    Instrument,
    OrderUpdate,
    PositionConversion,
    StreamMode,
    Tick,
)

__all__ = ["BrokerHandle", "Host", "Services", "open_storage", "redact_url"]

log = structlog.get_logger("hft.host")


@attrs.define
class BrokerHandle:
    """One configured broker instance and what the host knows about its health."""

    name: str
    broker: Broker
    section: BrokerSection
    ready: bool = False
    error: str | None = None
    events_seen: int = 0
    instruments: dict[str, Instrument] = attrs.field(factory=dict)
    subscribed: dict[str, StreamMode] = attrs.field(factory=dict)


@attrs.define
class Services:
    """What the running host offers plugins and transports."""

    config: Config
    plugins: PluginHost
    storage: Storage
    brokers: dict[str, BrokerHandle]
    accounts: dict[str, Account]
    data_dir: Path
    hub: MarketDataHub
    portfolio: Portfolio
    risk: RiskEngine
    oms: OrderManager
    auth: AuthService
    transports: dict[str, str] = attrs.field(factory=dict)  # name → bound address
    #: Instruments as storage had them at start (brokers save theirs on connecting), so that
    #: an instrument of an old order or position is known while its broker is down.
    stored_instruments: dict[str, Instrument] = attrs.field(factory=dict)
    #: Gauges plugins publish (``add_gauge``): name → (help text, read function).
    gauges: dict[str, tuple[str, Callable[[], float]]] = attrs.field(factory=dict)
    _listeners: list[Callable[[str, BrokerEvent], None]] = attrs.field(factory=list)

    def instrument(self, broker: str, key: str) -> Instrument | None:
        """``key`` (``NSE:INFY``) as ``broker`` lists it, once that broker has connected."""
        handle = self.brokers.get(broker)
        return handle.instruments.get(key) if handle else None

    def price_scale(self, key: str, broker: str | None = None) -> int:
        """The decimal places of ``key``'s prices: as ``broker`` lists it when given, else as
        the first broker listing it, else as storage last had it; 2 (paise) when none does."""
        if broker is not None:
            known = self.instrument(broker, key)
            if known is not None:
                return known.price_scale
        for handle in self.brokers.values():
            found = handle.instruments.get(key)
            if found is not None:
                return found.price_scale
        stored = self.stored_instruments.get(key)
        return stored.price_scale if stored is not None else PAISE_SCALE

    async def watchlist(self, username: str) -> list[str]:
        """The user's market watch (instrument keys, in the order added); every transport
        shares it, so a WebSocket client subscribes to what the user added over HTTP."""
        raw = await self.storage.get_state(WATCHLIST_NAMESPACE, username)
        if raw is None:
            return []
        return [str(key) for key in json.loads(raw).get("instruments", [])]

    async def set_watchlist(self, username: str, instruments: list[str]) -> None:
        payload = json.dumps({"version": 1, "instruments": instruments}).encode()
        await self.storage.put_state(WATCHLIST_NAMESPACE, username, payload)

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Publish a value a metrics transport reads on each scrape (``hft-http`` serves them
        on ``/metrics``); ``name`` is a Prometheus metric name such as
        ``hft_websocket_connections``. Names are unique."""
        if name in self.gauges:
            raise PluginError(f"a gauge named {name!r} is already published")
        self.gauges[name] = (help_text, read)

    def add_listener(self, listener: Callable[[str, BrokerEvent], None]) -> None:
        """Call ``listener(broker_name, event)`` for every broker event (keep it quick)."""
        self._listeners.append(listener)

    def readiness(self) -> dict[str, str | None]:
        """Component name → ``None`` when ready, else why not."""
        status: dict[str, str | None] = {"storage": None}
        for name, handle in self.brokers.items():
            status[f"broker:{name}"] = None if handle.ready else (handle.error or "connecting")
        return status

    def dispatch(self, broker: str, event: BrokerEvent) -> None:
        """Route one broker event to the hub or the OMS, then to listeners."""
        if isinstance(event, Tick):
            self.hub.publish(event)
        elif isinstance(event, OrderUpdate | Fill):
            self.oms.on_broker_event(broker, event)
        elif isinstance(event, Bar):
            self.hub.publish_bar(event)
        elif isinstance(event, PositionConversion):
            self.oms.on_position_conversion(broker, event)
        elif isinstance(event, ConnectionEvent):
            self.hub.publish_connection(event)
        for listener in self._listeners:
            listener(broker, event)


WATCHLIST_NAMESPACE: Final = "watch"


_runtime_tuned = False

#: How long the loop may hold the GIL while another thread waits for it (Python's default is
#: 5 ms). The storage writer, and transports that run their own thread (gRPC), each need it for
#: a moment per commit or call: with the default, a busy loop holds them off so long that
#: commits lag and a thread-run transport can stall outright under load.
SWITCH_INTERVAL_S = 0.0005


#: A young collection runs every this many net allocations of tracked objects (Python: 700).
GC_YOUNG_THRESHOLD = 2_000
#: The older collection the thresholds leave out waits until no order has changed for this long,
GC_QUIET_S = 30.0
#: ... and until this many young collections have promoted objects since it last ran.
GC_MIN_YOUNG = 50
_NEVER: Final = 1 << 30


def _tune_runtime() -> None:
    """Keep the garbage collector and the GIL out of the order path's tail latency.

    What start-up built (modules, config, instrument masters) lives as long as the process, so
    it is frozen out of the collector's sight. After that, only young collections run by
    themselves: whatever survives one is mostly a day's orders, and scanning those is what pauses
    the loop (a gen-1 collection took 86 ms at 5,000 orders/s, with 200,000 objects from the last
    40 s of orders). Garbage without cycles is still freed at once, and cyclic garbage young
    enough (nearly all of it) by the next young collection; the rest waits for
    :func:`_collect_when_quiet`. The GIL is handed to a waiting thread after
    :data:`SWITCH_INTERVAL_S`. Once per process (a test process starts many hosts).
    """
    global _runtime_tuned
    if not _runtime_tuned:
        _runtime_tuned = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, _NEVER, _NEVER)
        sys.setswitchinterval(SWITCH_INTERVAL_S)


async def _collect_when_quiet(
    oms: OrderManager, quiet_s: float = GC_QUIET_S, min_young: int = GC_MIN_YOUNG
) -> None:
    """Collect the generation young collections promote into, once orders have been still for
    ``quiet_s`` (and young collections have promoted enough since the last time to be worth
    it): it reclaims the cyclic garbage that outlived a young collection, such as a long
    connection's, at a time its pause (about 5 ms per 1,000 orders since the last one) keeps no
    order waiting. Not the oldest generation: what survives this collection is the day's state,
    and walking all of it would pause the loop for seconds on a big day."""
    seen = oms.changes
    still_since = anyio.current_time()
    while True:
        await anyio.sleep(min(1.0, quiet_s))
        now = anyio.current_time()
        if oms.changes != seen:
            seen, still_since = oms.changes, now
        elif now - still_since >= quiet_s and gc.get_count()[1] >= min_young:
            started = time.perf_counter()
            collected = gc.collect(1)
            log.info(
                "host.gc_quiet",
                collected=collected,
                pause_ms=round((time.perf_counter() - started) * 1e3, 1),
            )


def open_storage(url: str, plugins: PluginHost) -> Storage:
    """An unopened backend for ``url``, chosen by its scheme."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in plugins.storages:
        known = ", ".join(plugins.storages.names()) or "none installed"
        raise PluginError(f"storage.url: no storage backend for scheme {scheme!r} (known: {known})")
    return plugins.storages.get(scheme).factory(url)


class Host:
    """Runs one configured hft host until cancelled or asked to stop."""

    def __init__(self, config: Config, plugins: PluginHost) -> None:
        self.config = config
        self.plugins = plugins
        self.services: Services | None = None
        self._stop = anyio.Event()
        self._tasks: anyio.abc.TaskGroup | None = None
        self._stopping = False

    def stop(self) -> None:
        """Begin a clean shutdown (what SIGINT/SIGTERM do)."""
        self._stop.set()

    async def serve(self, *, handle_signals: bool = True) -> None:
        """Run until :meth:`stop` (or SIGINT/SIGTERM); raise HftError if start-up fails."""
        # Signals are caught from before start-up, so one arriving early still shuts down cleanly.
        receiver = (
            anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
            if handle_signals
            else nullcontext(None)
        )
        with receiver as signals:
            async with self.running(), anyio.create_task_group() as tg:
                if signals is not None:
                    tg.start_soon(self._watch_signals, signals)
                await self._stop.wait()
                tg.cancel_scope.cancel()

    async def _watch_signals(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            log.info("host.signal", signal=signal.Signals(signum).name)
            self.stop()
            return

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Services]:
        """Start everything, yield the services, and shut down cleanly on exit.

        A single failure (a start-up error, or an error in the ``async with`` body) comes out as
        itself rather than wrapped in an exception group.
        """
        try:
            async with self._running() as services:
                yield services
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            if len(leaves) == 1 and isinstance(leaves[0], Exception):
                raise leaves[0] from None
            raise

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Services]:
        config = self.config
        data_dir = config.host.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        storage = open_storage(config.storage.url, self.plugins)
        await storage.open()
        try:
            services = await self._build_services(storage)
            self.services = services
            async with anyio.create_task_group() as root:
                self._tasks = root
                root.start_soon(services.oms.run)
                root.start_soon(services.auth.run)
                root.start_soon(_collect_when_quiet, services.oms)
                for handle in services.brokers.values():
                    root.start_soon(self._run_broker, services, handle)
                started = False
                try:
                    async with anyio.create_task_group() as transports:
                        await self._start_transports(services, transports)
                        await self._call_lifecycle("hft_startup", services)
                        started = True
                        log.info(
                            "host.started",
                            storage=redact_url(config.storage.url),
                            brokers=sorted(services.brokers),
                            accounts=sorted(services.accounts),
                            transports=services.transports,
                            plugins=sorted(
                                n for n, p in self.plugins.plugins.items() if not p.error
                            ),
                        )
                        _tune_runtime()
                        try:
                            yield services
                        finally:
                            self._stopping = True
                            log.info("host.stopping")
                            transports.cancel_scope.cancel()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._shut_down(services, started=started)
                    root.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await storage.close()
            log.info("host.stopped")

    async def _shut_down(self, services: Services, *, started: bool) -> None:
        """Everything after transports stop: hooks, brokers, the journal. Each step is bounded."""
        timeout = self.config.host.shutdown_timeout_s
        if started:
            with anyio.move_on_after(timeout):
                await self._call_lifecycle("hft_shutdown", services)
        with anyio.move_on_after(timeout):
            await services.auth.flush()
        for handle in services.brokers.values():
            with anyio.move_on_after(timeout):
                await handle.broker.close()
        with anyio.move_on_after(timeout):
            await services.oms.flush()

    async def _build_services(self, storage: Storage) -> Services:
        config = self.config
        hub = MarketDataHub()
        portfolio = Portfolio(hub.last_price)
        risk = RiskEngine.from_config(config, self.plugins)
        await risk.load(storage)
        brokers: dict[str, BrokerHandle] = {}
        for name, section in config.brokers.items():
            factory = self.plugins.brokers.get(section.plugin).factory
            broker = factory(
                section.settings, PluginContext(name, config.host.data_dir, storage, self.plugins)
            )
            broker.name = name
            brokers[name] = BrokerHandle(name, broker, section)
        accounts = await self._accounts(storage)

        def instrument(broker: str, key: str) -> Instrument | None:
            handle = brokers.get(broker)
            return handle.instruments.get(key) if handle else None

        oms = OrderManager(
            storage=storage,
            accounts=accounts,
            brokers={name: handle.broker for name, handle in brokers.items()},
            instruments=instrument,
            risk=risk,
            portfolio=portfolio,
            last_price=hub.last_price,
            config=config.oms,
        )
        await oms.recover()
        auth = AuthService(storage, config.auth)
        await auth.load()
        await self._bootstrap_users(auth)
        services = Services(
            config=config,
            plugins=self.plugins,
            storage=storage,
            brokers=brokers,
            accounts=accounts,
            data_dir=config.host.data_dir,
            hub=hub,
            portfolio=portfolio,
            risk=risk,
            oms=oms,
            auth=auth,
            stored_instruments={i.key: i for i in await storage.load_instruments()},
        )
        hub.on_demand = lambda added, removed: self._on_demand(services, added, removed)
        return services

    async def _bootstrap_users(self, auth: AuthService) -> None:
        """On a first start, an admin and a sim trader, so that a newcomer can log in at once."""
        if self.config.storage.url.split(":", 1)[0] == "memory":
            return  # a store that forgets everything at exit would mint a new admin every start
        sim_account = next(
            (a for a, s in self.config.accounts.items() if s.environment is Environment.SIM), None
        )
        password = await auth.bootstrap(self.config.host.data_dir, sim_account=sim_account)
        if password is not None:
            # Shown once, and on stdout: the structured log may be shipped off this machine.
            trader = f", and the sim trader 'trader' for {sim_account!r}" if sim_account else ""
            print(
                f"hft: first start: created the user 'admin' with the password {password}{trader}"
                f"\nhft: their passwords are in {self.config.host.data_dir / PASSWORD_FILE}"
                " (readable only by you)",
                flush=True,
            )

    async def _start_transports(self, services: Services, transports: anyio.abc.TaskGroup) -> None:
        for name, section in self.config.transports.items():
            if not section.enabled:
                continue
            context = PluginContext(name, services.data_dir, services.storage, self.plugins)
            transport = self.plugins.transports.get(name).factory(section.settings, context)
            transport.name = name
            address = await transports.start(self._run_transport, transport, services)
            services.transports[name] = str(address)

    async def _accounts(self, storage: Storage) -> dict[str, Account]:
        accounts = {a.account_id: a for a in await storage.load_accounts()}
        for account_id, section in self.config.accounts.items():
            account = Account(
                account_id=account_id,
                broker=section.broker,
                broker_account=section.broker_account,
                environment=section.environment,
                name=section.name,
            )
            if accounts.get(account_id) != account:
                await storage.save_account(account)
            accounts[account_id] = account
        return accounts

    async def _run_transport(
        self, transport: Transport, services: Services, *, task_status: Any
    ) -> None:
        await transport.serve(services, task_status)

    # Brokers ----------------------------------------------------------------------------------

    async def _run_broker(self, services: Services, handle: BrokerHandle) -> None:
        """Connect (retrying network failures with backoff), load, reconcile, pump events."""
        max_s = self.config.host.broker_retry_max_s
        backoff = Backoff(initial_s=min(0.5, max_s), max_s=max_s)
        while True:
            try:
                await handle.broker.connect()
                instruments = await handle.broker.instruments()
            except AuthError as exc:
                # A login problem needs a person (e.g. ``hft zerodha login``): retrying would only
                # earn a lockout, so the broker stays not ready and the host keeps serving.
                handle.ready, handle.error = False, exc.message
                log.error("broker.login_required", broker=handle.name, error=exc.message)
                return
            except HftError as exc:
                handle.ready, handle.error = False, exc.message
                delay = backoff.next_delay()
                log.warning(
                    "broker.connect_failed", broker=handle.name, error=str(exc), retry_in_s=delay
                )
                await anyio.sleep(delay)
                continue
            break
        handle.instruments = {i.key: i for i in instruments}
        await services.storage.save_instruments(instruments)
        log.info(
            "broker.connected",
            broker=handle.name,
            accounts=list(handle.broker.accounts()),
            instruments=len(instruments),
        )
        await self._reconcile(services, handle.name)
        handle.ready, handle.error = True, None
        await self._sync_subscriptions(services, handle)
        async for event in handle.broker.events():
            handle.events_seen += 1
            if isinstance(event, ConnectionEvent):
                self._on_connection(services, handle, event)
            services.dispatch(handle.name, event)
        handle.ready = False

    def _on_connection(
        self, services: Services, handle: BrokerHandle, event: ConnectionEvent
    ) -> None:
        log.info(
            "broker.connection", broker=handle.name, state=str(event.state), reason=event.reason
        )
        if event.state is ConnectionState.RESYNCED:
            # Ready again only once the books agree: reconcile first.
            handle.error = "reconciling"
            assert self._tasks is not None
            self._tasks.start_soon(self._resynced, services, handle)
        else:
            handle.ready = event.state is ConnectionState.CONNECTED
            handle.error = None if handle.ready else (event.reason or str(event.state))

    async def _resynced(self, services: Services, handle: BrokerHandle) -> None:
        await self._reconcile(services, handle.name)
        handle.ready, handle.error = True, None

    async def _reconcile(self, services: Services, broker: str) -> None:
        try:
            await services.oms.reconcile(broker)
        except HftError as exc:
            log.error("oms.reconcile_failed", broker=broker, error=str(exc))

    def _on_demand(
        self, services: Services, added: dict[str, StreamMode], removed: set[str]
    ) -> None:
        if self._tasks is None or self._stopping:
            return  # not started, or shutting down: brokers are closing
        for handle in services.brokers.values():
            if handle.ready:
                self._tasks.start_soon(self._sync_subscriptions, services, handle)

    async def _sync_subscriptions(self, services: Services, handle: BrokerHandle) -> None:
        """Make the broker stream what the hub's subscribers want of its instruments.

        An instrument is streamed from the first connected broker (in config order) that lists
        it, so the hub never interleaves two feeds of one instrument.
        """
        wanted: dict[StreamMode, list[Instrument]] = {}
        keep: dict[str, StreamMode] = {}
        for key, mode in services.hub.demand.items():
            owner = next(
                (h for h in services.brokers.values() if h.ready and key in h.instruments), None
            )
            if owner is handle:
                keep[key] = mode
                if handle.subscribed.get(key) != mode:
                    wanted.setdefault(mode, []).append(handle.instruments[key])
        dropped = [handle.instruments[k] for k in handle.subscribed if k not in keep]
        handle.subscribed = keep
        try:
            for mode, instruments in wanted.items():
                await handle.broker.subscribe(instruments, mode)
            if dropped:
                await handle.broker.unsubscribe(dropped)
        except HftError as exc:
            log.warning("broker.subscribe_failed", broker=handle.name, error=str(exc))

    async def _call_lifecycle(self, hook_name: str, services: Services) -> None:
        # pluggy's own call order: last registered first, tryfirst/trylast honoured.
        for impl in reversed(getattr(self.plugins.pm.hook, hook_name).get_hookimpls()):
            try:
                result: Awaitable[None] | None = impl.function(services=services)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.error(
                    "host.lifecycle_failed",
                    hook=hook_name,
                    plugin=impl.plugin_name,
                    error=repr(exc),
                )
                if hook_name == "hft_startup":
                    raise PluginError(
                        f"plugin {impl.plugin_name!r} failed during start-up: {exc}"
                    ) from exc


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves
