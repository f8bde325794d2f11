"""The host: start-up order, broker health, event dispatch, transports and lifecycle hooks."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
import trio.testing

import hft
from hft import AuthError, NetworkError, PluginError
from hft.contracts import Broker, BrokerEvent, Transport
from hft.model import (
    ConnectionEvent,
    ConnectionState,
    Environment,
    Fill,
    Instrument,
    ModifyRequest,
    OrderRequest,
    OrderUpdate,
    Position,
    StreamMode,
    Tick,
)
from hft.testing import make_host


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


class ScriptedBroker(Broker):
    """Fails ``connect`` with the queued errors, then streams whatever the test sends."""

    def __init__(self, failures: Sequence[Exception] = ()) -> None:
        self.failures = list(failures)
        self.connect_calls = 0
        self.closed = False
        self.streaming = False
        self.send, self._receive = anyio.create_memory_object_stream[BrokerEvent](100)

    async def connect(self) -> None:
        self.connect_calls += 1
        if self.failures:
            raise self.failures.pop(0)

    async def close(self) -> None:
        self.closed = True
        await self.send.aclose()
        if not self.streaming:
            self._receive.close()  # events() never ran (a failed login): nobody else will

    async def events(self) -> AsyncIterator[BrokerEvent]:  # type: ignore[override]
        if self.closed:
            return  # closed before the host started reading: an empty stream
        self.streaming = True
        async with self._receive:
            async for event in self._receive:
                yield event

    async def place_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest
    ) -> str:
        return "1"

    async def modify_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        request: ModifyRequest,
    ) -> None:
        pass

    async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
        pass

    async def orders(self, broker_account: str) -> list[OrderUpdate]:
        return []

    async def trades(self, broker_account: str) -> list[Fill]:
        return []

    async def positions(self, broker_account: str) -> list[Position]:
        return []

    async def instruments(self) -> list[Instrument]:
        return []

    async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
        pass

    async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
        pass


@attrs.frozen
class EchoConfig:
    greeting: str = "hello"


class EchoTransport(Transport):
    """A real TCP server on loopback that greets each client."""

    def __init__(self, config: EchoConfig) -> None:
        self.config = config

    async def serve(self, services: Any, task_status: Any) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_status.started(f"127.0.0.1:{port}")

        async def greet(stream: anyio.abc.SocketStream) -> None:
            async with stream:
                await stream.send(self.config.greeting.encode())

        async with listener:
            await listener.serve(greet)


def make_plugin(brokers: dict[str, ScriptedBroker], calls: list[str]) -> types.SimpleNamespace:
    def hft_register_brokers(register: Any) -> None:
        register("scripted", lambda config, context: brokers[context.name])

    def hft_register_transports(register: Any) -> None:
        register("echo", lambda config, context: EchoTransport(config), config=EchoConfig)

    def hft_startup(services: Any) -> None:
        calls.append(f"startup:{sorted(services.transports)}")

    async def hft_shutdown(services: Any) -> None:
        await anyio.lowlevel.checkpoint()
        calls.append("shutdown")

    return types.SimpleNamespace(
        **{
            name: hft.hookimpl(fn)
            for name, fn in {
                "hft_register_brokers": hft_register_brokers,
                "hft_register_transports": hft_register_transports,
                "hft_startup": hft_startup,
                "hft_shutdown": hft_shutdown,
            }.items()
        }
    )


def config(*brokers: str, **extra: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {"brokers": {name: {"plugin": "scripted"} for name in brokers}}
    tree.update(extra)
    return tree


@pytest.mark.anyio
async def test_transports_serve_while_running_and_lifecycle_hooks_run_in_order() -> None:
    calls: list[str] = []
    host = make_host(
        {"p": make_plugin({}, calls)}, config(transports={"echo": {"greeting": "namaste"}})
    )
    async with host.running() as services:
        assert calls == ["startup:['echo']"]
        host_, port = services.transports["echo"].rsplit(":", 1)
        async with await anyio.connect_tcp(host_, int(port)) as client:
            assert await client.receive() == b"namaste"
    assert calls == ["startup:['echo']", "shutdown"]
    with pytest.raises(OSError, match=r"refused|connect"):
        await anyio.connect_tcp(host_, int(port))


@pytest.mark.anyio
async def test_a_broker_needing_login_is_not_ready_and_is_not_retried() -> None:
    broker = ScriptedBroker([AuthError("zerodha: access token expired; run `hft zerodha login`")])
    host = make_host({"p": make_plugin({"z": broker}, [])}, config("z"))
    async with host.running() as services:
        await anyio.sleep(300)
        assert broker.connect_calls == 1
        assert services.readiness() == {
            "storage": None,
            "broker:z": "zerodha: access token expired; run `hft zerodha login`",
        }
    assert broker.closed


@pytest.mark.anyio
async def test_a_broker_that_is_down_is_retried_with_backoff_until_ready() -> None:
    broker = ScriptedBroker([NetworkError("refused"), NetworkError("refused")])
    host = make_host({"p": make_plugin({"b": broker}, [])}, config("b"))
    async with host.running() as services:
        assert services.readiness()["broker:b"] == "refused"
        await anyio.sleep(30)  # virtual time: two backoff delays pass
        assert broker.connect_calls == 3
        assert services.readiness() == {"storage": None, "broker:b": None}


@pytest.mark.anyio
async def test_broker_events_reach_listeners_and_connection_state_drives_readiness() -> None:
    broker = ScriptedBroker()
    host = make_host({"p": make_plugin({"b": broker}, [])}, config("b"))
    seen: list[tuple[str, BrokerEvent]] = []
    async with host.running() as services:
        services.add_listener(lambda name, event: seen.append((name, event)))
        tick = Tick("NSE:INFY", StreamMode.LTP, last_price=150005)
        await broker.send.send(tick)
        await broker.send.send(ConnectionEvent("b", ConnectionState.RECONNECTING, "socket closed"))
        await anyio.sleep(0.01)
        latest = services.hub.latest("NSE:INFY")
        assert latest is not None
        assert (latest.last_price, latest.seq) == (150005, 1)
        assert services.readiness()["broker:b"] == "socket closed"
        await broker.send.send(ConnectionEvent("b", ConnectionState.RESYNCED))
        await anyio.sleep(0.01)
        assert services.readiness()["broker:b"] is None
    assert [name for name, _ in seen] == ["b", "b", "b"]
    assert seen[0][1] == tick


@pytest.mark.anyio
async def test_configured_accounts_are_stored() -> None:
    host = make_host(
        {"p": make_plugin({"b": ScriptedBroker()}, [])},
        config(
            "b", accounts={"paper": {"broker": "b", "environment": "sim", "broker_account": "X1"}}
        ),
    )
    async with host.running() as services:
        stored = await services.storage.load_accounts()
    assert [(a.account_id, a.broker_account, a.environment) for a in stored] == [
        ("paper", "X1", Environment.SIM)
    ]


@pytest.mark.anyio
async def test_an_unknown_storage_scheme_fails_start_up_clearly() -> None:
    host = make_host({}, {"storage": {"url": "mongodb://x"}})
    with pytest.raises(
        PluginError, match="no storage backend for scheme 'mongodb' \\(known: memory, sqlite"
    ):
        async with host.running():
            pass


@pytest.mark.anyio
async def test_a_failing_startup_hook_fails_start_up_and_closes_brokers() -> None:
    broker = ScriptedBroker()

    def hft_register_brokers(register: Any) -> None:
        register("scripted", lambda config, context: broker)

    def hft_startup(services: Any) -> None:
        raise RuntimeError("cannot warm cache")

    plugin = types.SimpleNamespace(
        hft_register_brokers=hft.hookimpl(hft_register_brokers),
        hft_startup=hft.hookimpl(hft_startup),
    )
    with pytest.raises(PluginError, match="'bad' failed during start-up: cannot warm cache"):
        async with make_host({"bad": plugin}, config("b")).running():
            pass
    assert broker.closed


@pytest.mark.anyio
async def test_a_gauge_name_is_published_once() -> None:
    async with make_host({"p": make_plugin({}, [])}, config()).running() as services:
        services.add_gauge("hft_test_things", "Things.", lambda: 3)
        with pytest.raises(PluginError, match="hft_test_things"):
            services.add_gauge("hft_test_things", "Others.", lambda: 4)
        help_text, read = services.gauges["hft_test_things"]
        assert (help_text, read()) == ("Things.", 3)
