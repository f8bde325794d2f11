"""The Storage contract, run against every backend: memory://, SQLite in a file, and PostgreSQL.

PostgreSQL is the server on this machine (``HFT_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``); each test gets a fresh schema through the URL's
``options=-csearch_path=...``. Those tests are skipped when the server does not answer, except
under ``CI``, where that is a failure.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import anyio
import attrs
import psycopg
import pytest
import sqlalchemy
import structlog.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hft import ConfigError, NetworkError, ValidationError
from hft._builtin import _sql_schema, _sql_storage, _sqlite_writer
from hft._builtin._sql_storage import SqlStorage, redact_url
from hft._host import open_storage
from hft._plugins import PluginHost
from hft.contracts import Storage
from hft.model import (
    Account,
    Environment,
    Fill,
    Instrument,
    InstrumentType,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Product,
    Role,
    Side,
    StatusChange,
    TimeInForce,
    User,
    converter,
)

pytestmark = pytest.mark.anyio

POSTGRES_URL = os.environ.get("HFT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["memory", "sqlite", "postgresql"]
DURABLE = ["sqlite", "postgresql"]
T0 = dt.datetime(2026, 11, 20, 9, 15, tzinfo=dt.UTC)
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


# ----------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL URL, once the server has answered."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        reason = f"PostgreSQL at {redact_url(POSTGRES_URL)} does not answer: {detail}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must test PostgreSQL)")
        pytest.skip(f"{reason}; start it or set HFT_TEST_POSTGRES_URL")
    return POSTGRES_URL


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL whose tables land in a schema of their own, dropped after the test."""
    server: str = request.getfixturevalue("postgres_server")
    schema = f"hft_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in server else "?"
    try:
        yield f"{server}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _url_for(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'hft.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request.param, request, tmp_path)


@pytest.fixture(params=DURABLE)
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request.param, request, tmp_path)


@pytest.fixture(scope="session")
def plugins() -> PluginHost:
    return PluginHost.from_modules({})


def make_storage(url: str, plugins: PluginHost) -> Storage:
    """A backend chosen by URL scheme, exactly as the host chooses it."""
    return open_storage(url, plugins)


@pytest.fixture
async def storage(url: str, plugins: PluginHost) -> AsyncIterator[Storage]:
    store = make_storage(url, plugins)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------


def order(order_id: str = "o1") -> Order:
    request = OrderRequest(
        account="acc1",
        instrument="NSE:INFY",
        side=Side.BUY,
        quantity=10,
        price=150_000,
        client_order_id=f"c-{order_id}",
    )
    return Order(order_id=order_id, request=request, user="alice", created_at=T0)


def fill(
    fill_id: str, broker_order_id: str = "b1", *, quantity: int = 5, account: str = "acc1"
) -> Fill:
    return Fill(
        fill_id=fill_id,
        broker_order_id=broker_order_id,
        account=account,
        instrument="NSE:INFY",
        side=Side.BUY,
        quantity=quantity,
        price=150_000,
        at=T0,
        order_id="o1",
    )


INFY = Instrument(exchange="NSE", symbol="INFY", token=408065, name="Infosys")
NIFTY = Instrument(
    exchange="NFO",
    symbol="NIFTY26NOVFUT",
    token=13238786,
    instrument_type=InstrumentType.FUTURE,
    tick_size=10,
    lot_size=75,
    expiry=dt.date(2026, 11, 26),
)


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------


def test_sql_schemes_are_registered_as_builtins(plugins: PluginHost) -> None:
    assert {"memory", "sqlite", "postgresql", "postgres"} <= set(plugins.storages.names())
    assert plugins.storages.get("sqlite").plugin == "sql"
    assert isinstance(make_storage("postgres://u@h/db", plugins), SqlStorage)


def test_loading_plugins_does_not_import_sqlalchemy() -> None:
    # The backend is imported when a store is built: `hft --help` must not pay for sqlmodel.
    code = (
        "import sys; from hft._plugins import PluginHost; PluginHost.from_modules({}); "
        "sys.exit(1 if {'sqlalchemy', 'sqlmodel'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ----------------------------------------------------------------------------------------------
# The journal and orders
# ----------------------------------------------------------------------------------------------


async def test_journal_seqs_increase_and_events_are_snapshots(storage: Storage) -> None:
    o = order("o1")
    first = await storage.append_order_events([(o, "created")])
    o.transition(OrderStatus.PENDING, at=T0)
    o.transition(OrderStatus.OPEN, at=T0)
    second = await storage.append_order_events([(o, "status"), (order("o2"), "created")])
    o.record_fill(4, 150_000)
    o.transition(OrderStatus.PARTIALLY_FILLED, at=T0)
    third = await storage.append_order_events([(o, "fill")])

    seqs = first + second + third
    assert len(seqs) == 4
    assert seqs == sorted(set(seqs))  # strictly increasing, unique
    events = await storage.order_events()
    assert [e.seq for e in events] == seqs
    assert [(e.order.order_id, e.kind) for e in events] == [
        ("o1", "created"),
        ("o1", "status"),
        ("o2", "created"),
        ("o1", "fill"),
    ]
    # Each entry is the order as it was when journalled, not as it is now.
    assert [e.order.status for e in events if e.order.order_id == "o1"] == [
        OrderStatus.NEW,
        OrderStatus.OPEN,
        OrderStatus.PARTIALLY_FILLED,
    ]
    assert events[-1].order == o
    for event in events:
        assert event.at.tzinfo is not None
        assert abs(event.at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)


async def test_order_events_pages_after_seq(storage: Storage) -> None:
    seqs = []
    for i in range(7):
        seqs += await storage.append_order_events([(order(f"o{i}"), "created")])
    page = await storage.order_events(after_seq=seqs[1], limit=3)
    assert [e.seq for e in page] == seqs[2:5]
    rest = await storage.order_events(after_seq=page[-1].seq, limit=100)
    assert [e.seq for e in rest] == seqs[5:]
    assert await storage.order_events(after_seq=seqs[-1]) == []
    assert await storage.append_order_events([]) == []


async def test_the_newest_journal_seq_is_known_directly_and_by_the_default_search(
    storage: Storage,
) -> None:
    assert await storage.last_order_event_seq() == 0
    assert await Storage.last_order_event_seq(storage) == 0
    seqs: list[int] = []
    for count in (1, 2, 5, 1):  # lands on powers of two and between them
        seqs += await storage.append_order_events(
            [(order(f"o{len(seqs) + i}"), "created") for i in range(count)]
        )
        assert await storage.last_order_event_seq() == seqs[-1]
        assert await Storage.last_order_event_seq(storage) == seqs[-1]


async def test_one_large_append_keeps_its_order(storage: Storage) -> None:
    # 100 orders, three entries each: more rows than one SQLite statement carries, and each
    # order three times in the batch (its row is written once, with the last state).
    orders = [order(f"o{i:03d}") for i in range(100)]
    events = [(o.snapshot(), "created") for o in orders]
    for o in orders:
        o.transition(OrderStatus.PENDING, at=T0)
        events.append((o.snapshot(), "accepted"))
        o.transition(OrderStatus.OPEN, at=T0)
        events.append((o.snapshot(), "status"))
    seqs = await storage.append_order_events(events)

    assert len(seqs) == 300
    assert seqs == sorted(set(seqs))
    journal = await storage.order_events(after_seq=seqs[0] - 1, limit=1000)
    assert [(e.seq, e.order, e.kind) for e in journal] == [
        (seq, o, kind) for seq, (o, kind) in zip(seqs, events, strict=True)
    ]
    assert await storage.load_orders() == orders  # first-seen order, latest state
    assert await storage.load_orders(open_only=True) == orders


async def test_load_orders_returns_latest_state(storage: Storage) -> None:
    live, done = order("live"), order("done")
    await storage.append_order_events([(live, "created"), (done, "created")])
    for o in (live, done):
        o.transition(OrderStatus.PENDING, at=T0)
        o.transition(OrderStatus.OPEN, at=T0)
    done.record_fill(10, 150_000)
    done.transition(OrderStatus.FILLED, at=T0)
    await storage.append_order_events([(live, "status"), (done, "fill")])

    assert await storage.load_orders() == [live, done]
    assert await storage.load_orders(open_only=True) == [live]


# ----------------------------------------------------------------------------------------------
# Fills, positions, reference data, users
# ----------------------------------------------------------------------------------------------


async def test_duplicate_fills_are_ignored(storage: Storage) -> None:
    await storage.save_fills([fill("t1")])
    # Same broker trade again (even with different numbers), plus a new one and another broker's.
    await storage.save_fills([fill("t1", quantity=9), fill("t2"), fill("t1", "b2", account="acc2")])
    await storage.save_fills([])
    assert await storage.load_fills() == [
        fill("t1"),
        fill("t2"),
        fill("t1", "b2", account="acc2"),
    ]
    assert await storage.load_fills("acc2") == [fill("t1", "b2", account="acc2")]
    assert await storage.load_fills("nobody") == []


async def test_positions_are_upserted_by_account_instrument_product(storage: Storage) -> None:
    p1 = Position(account="acc1", instrument="NSE:INFY", quantity=10, buy_quantity=10)
    await storage.save_positions([p1])
    p1.quantity, p1.sell_quantity, p1.realised_pnl = 4, 6, Decimal("1200.5")
    p2 = Position(account="acc1", instrument="NSE:INFY", product=Product.CNC, quantity=-3)
    p3 = Position(account="acc2", instrument="NFO:NIFTY26NOVFUT", last_price=2_400_000)
    await storage.save_positions([p1, p2, p3])
    p1.quantity = 999  # saved positions are copies

    loaded = await storage.load_positions()
    assert [(p.account, p.instrument, p.product) for p in loaded] == [
        ("acc1", "NSE:INFY", Product.MIS),
        ("acc1", "NSE:INFY", Product.CNC),
        ("acc2", "NFO:NIFTY26NOVFUT", Product.MIS),
    ]
    assert loaded[0].quantity == 4
    assert loaded[0].realised_pnl == Decimal("1200.5")
    assert await storage.load_positions("acc2") == [p3]


async def test_journal_fills_and_positions_are_written_together(
    durable_url: str, plugins: PluginHost
) -> None:
    filled = order("o1")
    filled.transition(OrderStatus.PENDING)
    filled.transition(OrderStatus.OPEN)
    filled.record_fill(10, 150_000)
    filled.transition(OrderStatus.FILLED)
    position = Position(account="acc1", instrument="NSE:INFY", quantity=10, buy_quantity=10)
    store = make_storage(durable_url, plugins)
    await store.open()
    (seq,) = await store.append_order_events(
        [(filled, "fill")], [fill("t1", quantity=10)], [position]
    )
    await store.close()

    store = make_storage(durable_url, plugins)  # what a restart finds
    await store.open()
    try:
        assert [e.seq for e in await store.order_events()] == [seq]
        assert [o.status for o in await store.load_orders()] == [OrderStatus.FILLED]
        assert [f.fill_id for f in await store.load_fills()] == ["t1"]
        assert [p.quantity for p in await store.load_positions()] == [10]
    finally:
        await store.close()


async def test_instruments_and_accounts_round_trip(storage: Storage) -> None:
    await storage.save_instruments([INFY, NIFTY])
    renamed = attrs.evolve(INFY, name="Infosys Ltd")
    await storage.save_instruments([renamed])
    assert sorted(await storage.load_instruments(), key=lambda i: i.key) == [NIFTY, renamed]

    live = Account("kite1", "kite", "AB1234", Environment.LIVE, name="Main")
    sim = Account("paper", "sim", "default", Environment.SIM)
    await storage.save_account(live)
    await storage.save_account(sim)
    await storage.save_account(attrs.evolve(live, name="Renamed"))
    accounts = sorted(await storage.load_accounts(), key=lambda a: a.account_id)
    assert accounts == [attrs.evolve(live, name="Renamed"), sim]


async def test_save_user_keeps_the_hash_when_none(storage: Storage) -> None:
    alice = User("alice", Role.TRADER, Environment.LIVE, accounts=("kite1",))
    await storage.save_user(alice, "$argon2id$one")
    promoted = attrs.evolve(alice, role=Role.ADMIN)
    await storage.save_user(promoted)
    assert await storage.password_hash("alice") == "$argon2id$one"
    assert await storage.load_users() == [promoted]

    await storage.save_user(promoted, "$argon2id$two")
    assert await storage.password_hash("alice") == "$argon2id$two"

    bot = User("bot", Role.VIEWER, Environment.SIM)
    await storage.save_user(bot)
    assert await storage.password_hash("bot") is None
    assert await storage.password_hash("nobody") is None
    assert sorted(u.username for u in await storage.load_users()) == ["alice", "bot"]


# ----------------------------------------------------------------------------------------------
# Audit and plugin state
# ----------------------------------------------------------------------------------------------


async def test_audit_entries_newest_first_with_at(storage: Storage) -> None:
    for i in range(3):
        await storage.append_audit("reconcile", {"n": i, "detail": {"orders": [i]}})
    await storage.append_audit("kill_switch", {"on": True})

    entries = await storage.audit_entries("reconcile")
    assert [e["n"] for e in entries] == [2, 1, 0]
    assert entries[0]["detail"] == {"orders": [2]}
    ats = [dt.datetime.fromisoformat(str(e["at"])) for e in entries]
    assert all(at.tzinfo is not None for at in ats)
    assert ats == sorted(ats, reverse=True)
    assert [e["n"] for e in await storage.audit_entries("reconcile", limit=2)] == [2, 1]
    assert [e["on"] for e in await storage.audit_entries("kill_switch")] == [True]
    assert await storage.audit_entries("nothing") == []


async def test_audit_refuses_payload_that_is_not_json(storage: Storage) -> None:
    with pytest.raises(TypeError):
        await storage.append_audit("bad", {"when": object()})
    assert await storage.audit_entries("bad") == []


async def test_state_round_trips_bytes(storage: Storage) -> None:
    blob = bytes(range(256)) * 4
    await storage.put_state("sim", "cash", blob)
    await storage.put_state("sim", "empty", b"")
    await storage.put_state("kite", "cash", b"other")
    assert await storage.get_state("sim", "cash") == blob
    assert await storage.get_state("sim", "empty") == b""
    await storage.put_state("sim", "cash", b"\x00\xff")
    assert await storage.get_state("sim", "cash") == b"\x00\xff"
    assert await storage.get_state("kite", "cash") == b"other"
    assert await storage.get_state("sim", "missing") is None


# ----------------------------------------------------------------------------------------------
# Concurrency and group commit
# ----------------------------------------------------------------------------------------------


async def test_concurrent_writes_are_durable_and_group_committed(
    url: str, plugins: PluginHost
) -> None:
    store = make_storage(url, plugins)
    await store.open()
    results: dict[int, list[int]] = {}

    async def append(i: int) -> None:
        results[i] = await store.append_order_events([(order(f"o{i}"), "created")])

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(append, i)
    seqs = [seq for i in range(200) for seq in results[i]]
    assert len(set(seqs)) == 200
    if isinstance(store, SqlStorage):
        # Concurrent writes of other kinds share commits (journal batches come gathered).
        commits, writes = store.commits, store.writes
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(store.put_state, "ns", f"k{i}", b"v")
        assert store.writes - writes == 100
        assert store.commits - commits < 10  # many writes shared one commit
    await store.close()

    if url != "memory://":  # durable: a new process (here, a new backend) sees every append
        store = make_storage(url, plugins)
        await store.open()
    journal = {e.seq: e.order.order_id for e in await store.order_events(limit=1000)}
    assert journal == {results[i][0]: f"o{i}" for i in range(200)}
    await store.close()


async def test_cancelled_writers_leave_the_store_usable(storage: Storage) -> None:
    done: dict[int, list[int]] = {}

    async def append(i: int) -> None:
        done[i] = await storage.append_order_events([(order(f"o{i}"), "created")])

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(append, i)
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        # No caller is left holding the writer role: the next write goes through.
        after = await storage.append_order_events([(order("after"), "created")])
    journal = {e.order.order_id: e.seq for e in await storage.order_events(limit=1000)}
    assert journal["after"] == after[0]
    assert all(journal[f"o{i}"] == seqs[0] for i, seqs in done.items())


async def test_a_failing_write_does_not_fail_its_batch(
    durable_url: str, plugins: PluginHost
) -> None:
    store = make_storage(durable_url, plugins)
    await store.open()
    outcomes: dict[str, BaseException | None] = {}

    async def run(name: str, write: object) -> None:
        try:
            await write  # type: ignore[misc]
        except Exception as exc:
            outcomes[name] = exc
        else:
            outcomes[name] = None

    # A token beyond 64 bits fits neither SQLite's INTEGER nor PostgreSQL's BIGINT.
    too_big = Instrument(exchange="NSE", symbol="HUGE", token=2**70)
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(run, f"o{i}", store.append_order_events([(order(f"o{i}"), "created")]))
        tg.start_soon(run, "huge", store.save_instruments([too_big]))
        tg.start_soon(run, "infy", store.save_instruments([INFY]))

    assert isinstance(outcomes.pop("huge"), ValidationError)
    assert set(outcomes.values()) == {None}
    assert len(await store.load_orders()) == 20
    assert await store.load_instruments() == [INFY]
    await store.close()


# ----------------------------------------------------------------------------------------------
# Durability, lifecycle, errors
# ----------------------------------------------------------------------------------------------


async def test_everything_survives_close_and_reopen(durable_url: str, plugins: PluginHost) -> None:
    o = order("o1")
    alice = User("alice", Role.ADMIN, Environment.LIVE, accounts=("kite1",))
    account = Account("kite1", "kite", "AB1234", Environment.LIVE)
    position = Position(account="kite1", instrument="NSE:INFY", quantity=5)

    store = make_storage(durable_url, plugins)
    await store.open()
    seqs = await store.append_order_events([(o, "created")])
    await store.save_fills([fill("t1")])
    await store.save_positions([position])
    await store.save_instruments([INFY])
    await store.save_account(account)
    await store.save_user(alice, "$argon2id$hash")
    await store.append_audit("reconcile", {"ok": True})
    await store.put_state("sim", "cash", b"\x00\x01")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(NetworkError):
        await store.append_order_events([(o, "status")])

    again = make_storage(durable_url, plugins)
    await again.open()
    await again.ping()
    assert [(e.seq, e.order) for e in await again.order_events()] == [(seqs[0], o)]
    assert await again.load_orders(open_only=True) == [o]
    assert await again.load_fills() == [fill("t1")]
    assert await again.load_positions() == [position]
    assert await again.load_instruments() == [INFY]
    assert await again.load_accounts() == [account]
    assert await again.load_users() == [alice]
    assert await again.password_hash("alice") == "$argon2id$hash"
    assert [e["ok"] for e in await again.audit_entries("reconcile")] == [True]
    assert await again.get_state("sim", "cash") == b"\x00\x01"
    # New seqs continue after the old ones.
    assert (await again.append_order_events([(o, "status")]))[0] > seqs[0]
    await again.close()
    with pytest.raises(NetworkError):
        await again.ping()


async def test_close_commits_writes_already_queued(durable_url: str, plugins: PluginHost) -> None:
    store = make_storage(durable_url, plugins)
    await store.open()
    outcome: dict[int, list[int] | NetworkError] = {}

    async def append(i: int) -> None:
        try:
            outcome[i] = await store.append_order_events([(order(f"o{i}"), "created")])
        except NetworkError as exc:
            outcome[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(append, i)
        tg.start_soon(store.close)
        tg.start_soon(store.close)  # a second close waits for the first
        for i in range(30, 60):
            tg.start_soon(append, i)

    store = make_storage(durable_url, plugins)
    await store.open()
    journal = {e.order.order_id for e in await store.order_events(limit=1000)}
    for i, result in outcome.items():
        if isinstance(result, NetworkError):  # asked after close began: refused, not lost
            assert result.code == "storage_closed"
            assert f"o{i}" not in journal
        else:
            assert f"o{i}" in journal
    await store.close()


async def test_sqlite_settings(tmp_path: Path) -> None:
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    # White-box: durability settings cannot be observed through the contract.
    engine = store._engine
    assert engine is not None
    with engine.connect() as conn:
        found = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    await store.close()
    assert found == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 10_000,
    }


async def test_sqlite_small_writes_go_on_the_loop_and_sync_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fdatasync = os.fdatasync
    loop_thread = threading.current_thread()

    def fdatasync(fd: int) -> None:
        assert threading.current_thread() is loop_thread  # a fast disk: synced on the loop
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    writer = store._loop_writer  # white-box: which connection wrote is not in the contract
    assert writer is not None
    found = {
        name: writer.connection.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("synchronous", "wal_autocheckpoint", "busy_timeout", "foreign_keys")
    }
    off, manual = 0, 0
    assert found == {
        "synchronous": off,
        "wal_autocheckpoint": manual,
        "busy_timeout": 0,
        "foreign_keys": 1,
    }
    await store.append_audit("check", {"n": 1})  # an order-path write that is not the journal
    # Durable before it returned: the WAL holding it was synced, and another connection sees it.
    assert synced == [str(tmp_path / "hft.db-wal")]
    assert writer.connection.in_transaction is False
    with sqlite3.connect(tmp_path / "hft.db") as other:
        assert other.execute("SELECT kind FROM audit").fetchall() == [("check",)]
    other.close()
    await store.close()


async def test_sqlite_wal_syncs_move_to_a_thread_while_the_disk_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdatasync = os.fdatasync
    loop_thread = threading.current_thread()
    delay_s = 0.01
    on_loop: list[bool] = []

    def fdatasync(fd: int) -> None:
        on_loop.append(threading.current_thread() is loop_thread)
        if delay_s:  # a slow disk; else an instant one, whatever this machine's disk is
            time.sleep(delay_s)
            real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    with structlog.testing.capture_logs() as logs:
        for i in range(10):  # a 10 ms disk: the average passes 2 ms within a few syncs
            await store.append_audit("slow", {"n": i})
        moves = [(e["on"], e["log_level"]) for e in logs if e["event"] == "storage.slow_sync"]
        assert moves == [("thread", "warning")]
        assert on_loop[0] is True
        assert on_loop[-1] is False  # later syncs ran on a worker thread
        delay_s = 0.0
        for i in range(30):  # fast again: back on the loop once the average has come down
            await store.append_audit("fast", {"n": i})
    moves = [e["on"] for e in logs if e["event"] == "storage.slow_sync"]
    assert moves == ["thread", "loop"]
    assert on_loop[-1] is True
    # Every write acknowledged is there.
    assert len(await store.audit_entries("slow")) + len(await store.audit_entries("fast")) == 40
    await store.close()


async def test_sqlite_wal_sync_failure_fails_the_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fdatasync", broken)
        with pytest.raises(NetworkError, match="sync failed"):
            await store.put_state("ns", "k", b"1")
    # Not acknowledged, and the store goes on working.
    await store.put_state("ns", "k", b"2")
    assert await store.get_state("ns", "k") == b"2"
    await store.close()


async def test_sqlite_writes_go_to_the_thread_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    await store.put_state("ns", "k", b"1")
    blocker = sqlite3.connect(tmp_path / "hft.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # as another process writing would
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as writes:
                writes.start_soon(store.put_state, "ns", "k", b"2")
                await anyio.sleep(0.3)
                before = ticks
                blocker.execute("COMMIT")
        tg.cancel_scope.cancel()
    blocker.close()
    # The loop kept running while the write waited for the lock: a loop blocked on it would
    # tick once at most (about 30 times on a quiet machine; a loaded one stalls some ticks).
    assert before >= 3
    assert await store.get_state("ns", "k") == b"2"
    await store.close()


async def _checkpointing_every_5_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SqlStorage:
    """An open SQLite store whose loop writer checkpoints every 5 commits."""
    monkeypatch.setattr(_sql_storage, "_CHECKPOINT_EVERY", 5)
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    return store


async def test_sqlite_loop_commits_are_checkpointed_by_a_synced_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _checkpointing_every_5_commits(tmp_path, monkeypatch)
    writer = store._loop_writer
    assert writer is not None
    for i in range(5):
        await store.append_audit("check", {"n": i})
    assert writer._checkpointer is not None
    await anyio.to_thread.run_sync(writer._checkpointer.join)
    # Everything written so far is in the database file itself, without its WAL.
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "hft.db").write_bytes((tmp_path / "hft.db").read_bytes())
    with sqlite3.connect(tmp_path / "copy" / "hft.db") as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (5,)
    conn.close()
    await store.close()
    # Closed: the WAL is gone (checkpointed into the file) and the file has every entry.
    assert not (tmp_path / "hft.db-wal").exists()
    with sqlite3.connect(tmp_path / "hft.db") as conn:
        assert conn.execute("SELECT count(*) FROM audit").fetchone() == (5,)
    conn.close()


async def test_sqlite_wal_starts_over_under_a_steady_stream_of_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _checkpointing_every_5_commits(tmp_path, monkeypatch)
    wal = tmp_path / "hft.db-wal"
    for i in range(1000):  # back to back, so the checkpoint thread always runs beside writes
        await store.append_audit("check", {"n": i})
    # Each commit adds a few 4 KiB frames: a WAL that never started over would hold all 1,000
    # commits' (about 12 MB); one that starts over after every few checkpoints holds a few
    # dozen commits' at most.
    assert wal.stat().st_size < 2_000_000
    assert len(await store.audit_entries("check", limit=2000)) == 1000
    await store.close()


async def test_sqlite_journal_is_written_by_the_writer_process(tmp_path: Path) -> None:
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    process = store._process  # white-box: which process wrote is not in the contract
    assert process is not None
    assert process.alive
    seqs = []
    for i in range(600):
        seqs += await store.append_order_events(
            [(order(f"o{i}"), "created")], [fill(f"t{i}")] if i % 100 == 0 else ()
        )
    assert process.requests == 600
    assert seqs == list(range(1, 601))
    # Durable and visible at once to another connection; the fills went in the same commits.
    with sqlite3.connect(tmp_path / "hft.db") as other:
        assert other.execute("SELECT count(*) FROM order_events").fetchone() == (600,)
        assert other.execute("SELECT count(*) FROM fills").fetchone() == (6,)
    other.close()
    # The process's checkpoints start the WAL over: about 21 MB went through it.
    assert (tmp_path / "hft.db-wal").stat().st_size < 8_000_000
    await store.close()
    assert not process.alive  # closing the store ends the process


def _drive_writer(db: Path, requests: int, in_flight: int) -> None:
    """Run the writer process's loop on a thread (so that a test can change its limits) and send
    it ``requests`` of ten 3 KB rows (about ten WAL pages each), ``in_flight`` at a time; checks
    that the WAL started over (about 24 MB go through it for 600 requests) and that every row is
    in the file after close."""
    with sqlite3.connect(db) as setup:
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data TEXT)")
    setup.close()
    ours, theirs = socket.socketpair()
    writer = threading.Thread(target=_sqlite_writer.main, args=(str(db), theirs.detach()))
    writer.start()
    replies = ours.makefile("rb")
    assert replies.read(1) == b"R"
    statement = ("INSERT INTO t (data) VALUES (?)", ["x" * 3000], True)
    request = pickle.dumps([statement] * 10)
    frame = len(request).to_bytes(4, "big") + request
    sent = received = 0
    while received < requests:
        while sent < requests and sent - received < in_flight:
            ours.sendall(frame)
            sent += 1
        size = int.from_bytes(replies.read(4), "big")
        assert pickle.loads(replies.read(size))[:2] == ("ok", 10)
        received += 1
    # A WAL that never started over would hold every request's pages.
    assert db.with_name(db.name + "-wal").stat().st_size < 12_000_000
    ours.close()
    replies.close()
    writer.join(10)
    assert not writer.is_alive()
    with sqlite3.connect(db) as other:
        assert other.execute("SELECT count(*) FROM t").fetchone() == (requests * 10,)
    other.close()
    assert not db.with_name(db.name + "-wal").exists()  # closed: checkpointed into the file


def test_sqlite_writer_wal_starts_over_with_a_request_always_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pipelined, so one request is always waiting and the writer never finds a gap to finish a
    # checkpoint in: it must do so anyway once the WAL passes its limit.
    monkeypatch.setattr(_sqlite_writer, "_CHECKPOINT_EVERY", 5)
    monkeypatch.setattr(_sqlite_writer, "_WAL_FRAMES_LIMIT", 200)
    _drive_writer(tmp_path / "w.db", 600, in_flight=8)


def test_sqlite_writer_checkpoints_alone_without_its_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checkpoint thread gone (as if it could not open its connection): the writer
    # checkpoints by itself, and its WAL still starts over.
    monkeypatch.setattr(_sqlite_writer._Checkpointer, "run", lambda self: None)
    monkeypatch.setattr(_sqlite_writer, "_CHECKPOINT_EVERY", 5)
    _drive_writer(tmp_path / "w.db", 600, in_flight=1)


async def test_sqlite_writer_process_lost_mid_write_fails_it_and_is_restarted(
    tmp_path: Path,
) -> None:
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    process = store._process
    assert process is not None
    await store.append_order_events([(order("o1"), "created")])
    assert process._process is not None
    process._process.kill()
    await anyio.to_thread.run_sync(process._process.wait)
    # Found gone before the next write: restarted, and the write goes through.
    await store.append_order_events([(order("o2"), "created")])
    assert process.alive
    # Lost while writing: the outcome is unknown, so the caller is told it failed.
    assert process._socket is not None
    process._socket.shutdown(socket.SHUT_RDWR)
    with pytest.raises(NetworkError, match="writer process"):
        await store.append_order_events([(order("o3"), "created")])
    await store.append_order_events([(order("o4"), "created")])  # and the next one restarts it
    assert {"o1", "o2", "o4"} <= {o.order_id for o in await store.load_orders()}
    await store.close()


async def test_sqlite_a_failing_journal_write_fails_alone(durable_url: str) -> None:
    if not durable_url.startswith("sqlite"):
        pytest.skip("the writer process serves SQLite")
    store = SqlStorage(durable_url)
    await store.open()
    outcomes: dict[str, BaseException | None] = {}

    async def append(order_id: str) -> None:
        try:
            await store.append_order_events([(order(order_id), "created")])
        except Exception as exc:
            outcomes[order_id] = exc
        else:
            outcomes[order_id] = None

    bad = "bad\ud800"  # a lone surrogate: the driver cannot encode it
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(append, f"o{i}")
        tg.start_soon(append, bad)
    assert outcomes.pop(bad) is not None
    assert outcomes == {f"o{i}": None for i in range(5)}  # the batch was retried job by job
    assert {o.order_id for o in await store.load_orders()} == {f"o{i}" for i in range(5)}
    await store.close()


async def test_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SqlStorage("sqlite:///state/hft.db")
    await store.open()
    await store.put_state("ns", "k", b"v")
    await store.close()
    assert (tmp_path / "state" / "hft.db").is_file()


async def test_sqlite_timestamps_are_stored_as_sqlalchemy_writes_them(tmp_path: Path) -> None:
    store = SqlStorage(f"sqlite:///{tmp_path / 'hft.db'}")
    await store.open()
    await store.append_order_events([(order("o1"), "created")])
    await store.save_fills([fill("t1")])
    await store.append_audit("reconcile", {})
    await store.close()
    # White-box: the writer binds its own values. They must be SQLAlchemy's SQLite DATETIME text
    # in UTC (what its reads parse, and what sorts by time), not the driver's isoformat.
    with sqlite3.connect(tmp_path / "hft.db") as conn:
        stamps = [
            conn.execute(f"SELECT {column} FROM {table}").fetchone()[0]
            for table, column in [
                ("order_events", "at"),
                ("orders", "updated_at"),
                ("fills", "at"),
                ("audit", "at"),
            ]
        ]
    conn.close()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", s) for s in stamps), stamps
    assert stamps[2] == "2026-11-20 09:15:00.000000"  # the fill's own time, T0


async def test_the_writer_reconnects_after_postgres_drops_it(postgres_url: str) -> None:
    name = f"hft_test_{uuid.uuid4().hex[:12]}"
    store = SqlStorage(f"{postgres_url}&application_name={name}")
    await store.open()
    await store.append_order_events([(order("o1"), "created")])
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    assert dropped
    # The pool checks a connection before the writer gets it, so no write is lost to this.
    await store.append_order_events([(order("o2"), "created")])
    assert [o.order_id for o in await store.load_orders()] == ["o1", "o2"]
    await store.close()


async def test_unreachable_postgres_is_a_network_error_without_the_password() -> None:
    store = SqlStorage("postgresql://trader:s3cret-pw@127.0.0.1:1/hft")
    with structlog.testing.capture_logs() as logs, pytest.raises(NetworkError) as caught:
        await store.open()
    assert caught.value.code == "storage_unreachable"
    assert "s3cret-pw" not in str(caught.value)
    assert "trader:***@127.0.0.1:1" in str(caught.value)
    assert "s3cret-pw" not in repr(logs)
    with pytest.raises(NetworkError):
        await store.ping()


@pytest.mark.parametrize(
    "bad",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://u:s3cret-pw@host:notaport/db",
        "mysql://u:s3cret-pw@host/db",
    ],
)
def test_bad_urls_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SqlStorage(bad)
    assert "s3cret-pw" not in str(caught.value)


def test_redact_url() -> None:
    assert redact_url("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert (
        redact_url("postgresql://u@h/db?password=pw&x=1") == "postgresql://u@h/db?password=***&x=1"
    )
    assert redact_url("sqlite:///hft.db") == "sqlite:///hft.db"


# ----------------------------------------------------------------------------------------------
# Schema versions and migrations
# ----------------------------------------------------------------------------------------------


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _schema(url: str) -> tuple[int, dict[str, list[str]]]:
    """The stored schema version and every table's columns, read behind the backend's back."""
    engine = sqlalchemy.create_engine(_sa_url(url))
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version FROM schema_version").scalar_one()
            inspector = sqlalchemy.inspect(conn)
            columns = {
                table: sorted(c["name"] for c in inspector.get_columns(table))
                for table in inspector.get_table_names()
            }
    finally:
        engine.dispose()
    return version, columns


def _add_venue(conn: sqlalchemy.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE orders ADD COLUMN venue VARCHAR DEFAULT 'NSE' NOT NULL")


def _broken_step(conn: sqlalchemy.Connection) -> None:
    raise RuntimeError("this step fails")


async def _open_close(url: str) -> list[MutableMapping[str, Any]]:
    with structlog.testing.capture_logs() as logs:
        store = SqlStorage(url)
        await store.open()
        await store.close()
    return [e for e in logs if e["event"] == "storage.migrated"]


async def test_reopening_a_current_database_changes_nothing(durable_url: str) -> None:
    assert await _open_close(durable_url) == []
    created = _schema(durable_url)
    assert created[0] == 1 + len(_sql_schema.MIGRATIONS)
    assert set(created[1]) == set(_sql_schema.METADATA.tables)
    assert await _open_close(durable_url) == []
    assert _schema(durable_url) == created


async def test_an_older_database_is_upgraded_in_place(
    durable_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlStorage(durable_url)
    await store.open()
    await store.append_order_events([(order("o1"), "created")])
    await store.close()
    current, before = _schema(durable_url)

    # A later hft: its next version adds a column.
    later = current + 1
    steps = (*_sql_schema.MIGRATIONS, _sql_schema.Migration(later, "orders.venue", _add_venue))
    monkeypatch.setattr(_sql_schema, "MIGRATIONS", steps)
    assert await _open_close(durable_url) == [
        {
            "event": "storage.migrated",
            "log_level": "info",
            "url": durable_url,
            "from_version": current,
            "to_version": later,
        }
    ]
    version, columns = _schema(durable_url)
    assert version == later
    assert columns["orders"] == sorted([*before["orders"], "venue"])
    assert await _open_close(durable_url) == []  # now current: nothing to do

    store = SqlStorage(durable_url)
    await store.open()
    assert [o.order_id for o in await store.load_orders()] == ["o1"]
    await store.close()


async def test_a_failed_upgrade_changes_nothing(
    durable_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _open_close(durable_url)
    before = _schema(durable_url)
    current = before[0]
    steps = (
        *_sql_schema.MIGRATIONS,
        _sql_schema.Migration(current + 1, "orders.venue", _add_venue),
        _sql_schema.Migration(current + 2, "broken", _broken_step),
    )
    monkeypatch.setattr(_sql_schema, "MIGRATIONS", steps)
    with pytest.raises(RuntimeError, match="this step fails"):
        await SqlStorage(durable_url).open()
    assert _schema(durable_url) == before  # the whole upgrade rolled back, the good step too


def _order_indexes(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(_sa_url(url))
    try:
        with engine.connect() as conn:
            return {i["name"] for i in sqlalchemy.inspect(conn).get_indexes("orders")}
    finally:
        engine.dispose()


async def test_version_1_loses_the_order_status_and_updated_at_indexes(
    durable_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A version 1 database as hft 1 left it: with the two indexes, and an order in it.
    with monkeypatch.context() as patch:
        patch.setattr(_sql_schema, "MIGRATIONS", ())
        store = SqlStorage(durable_url)
        await store.open()
        await store.append_order_events([(order("o1"), "created")])
        await store.close()
    engine = sqlalchemy.create_engine(_sa_url(durable_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_orders_status ON orders (status)")
        conn.exec_driver_sql("CREATE INDEX ix_orders_updated_at ON orders (updated_at)")
    engine.dispose()
    assert _schema(durable_url)[0] == 1
    assert {"ix_orders_status", "ix_orders_updated_at"} <= _order_indexes(durable_url)

    migrated = await _open_close(durable_url)
    assert [(e["from_version"], e["to_version"]) for e in migrated] == [(1, 2)]
    indexes = _order_indexes(durable_url)
    assert not indexes & {"ix_orders_status", "ix_orders_updated_at"}
    assert {"ix_orders_account", "ix_orders_is_terminal"} <= indexes  # the others stay
    store = SqlStorage(durable_url)
    await store.open()
    assert [o.order_id for o in await store.load_orders(open_only=True)] == ["o1"]
    await store.close()


async def test_a_newer_database_is_refused(durable_url: str) -> None:
    await _open_close(durable_url)
    engine = sqlalchemy.create_engine(_sa_url(durable_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_version SET version = 99")
    engine.dispose()
    with pytest.raises(ConfigError) as caught:
        await SqlStorage(durable_url).open()
    assert caught.value.code == "schema_too_new"


# ----------------------------------------------------------------------------------------------
# Property: any order round-trips unchanged
# ----------------------------------------------------------------------------------------------

# PostgreSQL text cannot hold NUL; the indexed id columns are plain text. Other strings go into
# the JSON document, where NUL is escaped, so they may hold anything.
ids = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
moments = st.datetimes(
    min_value=dt.datetime(1990, 1, 1),
    max_value=dt.datetime(2100, 1, 1),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]),
)
units = st.integers(min_value=1, max_value=10**18)


@st.composite
def orders(draw: st.DrawFn) -> Order:
    order_type = draw(st.sampled_from(OrderType))
    quantity = draw(st.integers(min_value=1, max_value=10**9))
    request = OrderRequest(
        account=draw(ids),
        instrument=draw(texts),
        side=draw(st.sampled_from(Side)),
        quantity=quantity,
        order_type=order_type,
        price=draw(units) if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        trigger_price=draw(units) if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        product=draw(st.sampled_from(Product)),
        time_in_force=draw(st.sampled_from(TimeInForce)),
        disclosed_quantity=draw(st.integers(min_value=0, max_value=quantity)),
        client_order_id=draw(ids),
        tag=draw(texts),
        extras=draw(st.dictionaries(texts, texts, max_size=3)),
    )
    history = draw(
        st.lists(st.builds(StatusChange, st.sampled_from(OrderStatus), moments, texts), min_size=1)
    )
    return Order(
        order_id=draw(ids),
        request=request,
        user=draw(texts),
        status=history[-1].status,
        broker_order_id=draw(st.none() | ids),
        exchange_order_id=draw(st.none() | texts),
        filled_quantity=draw(st.integers(min_value=0, max_value=quantity)),
        filled_value=draw(st.integers(min_value=0, max_value=10**30)),
        reason=draw(texts),
        created_at=draw(moments),
        history=history,
    )


@settings(
    max_examples=40,
    deadline=None,
    # One store serves every example on purpose: opening one per example would dominate.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(o=orders())
async def test_any_order_round_trips_unchanged(storage: Storage, o: Order) -> None:
    [seq] = await storage.append_order_events([(o, "created")])
    [event] = await storage.order_events(after_seq=seq - 1, limit=1)
    assert event.order == o
    assert event.kind == "created"
    stored = {x.order_id: x for x in await storage.load_orders()}
    assert stored[o.order_id] == o


@settings(max_examples=300, deadline=None)
@given(o=orders())
def test_orders_are_written_as_the_converter_writes_them(o: Order) -> None:
    # The journal's fast serialisation must give the converter's JSON text exactly, so that
    # reads (and databases written before it) see one format.
    assert _sql_storage._FAST_ORDERS, "Order's fields changed: update _sql_storage._order_json"
    assert _sql_storage._order_json(o) == _sql_storage._dumps(converter.unstructure(o))


def test_order_json_falls_back_to_the_converter() -> None:
    o = order("o1")
    o.filled_value = 10**30  # beyond orjson's 64 bits
    o.history.append(StatusChange(OrderStatus.PENDING, dt.datetime(2026, 11, 20, tzinfo=IST)))
    expected = _sql_storage._dumps(converter.unstructure(o))
    assert _sql_storage._order_json(o) == expected
    mapping = attrs.evolve(o, request=attrs.evolve(o.request, extras=MappingProxyType({"a": "b"})))
    assert _sql_storage._order_json(mapping) == _sql_storage._dumps(converter.unstructure(mapping))


positions = st.builds(
    Position,
    account=ids,
    instrument=ids,
    product=st.sampled_from(Product),
    quantity=st.integers(min_value=-(10**12), max_value=10**12),
    # Average prices are exact quotients: many digits, any sign of exponent.
    average_price=st.decimals(allow_nan=False, allow_infinity=False, places=20),
    realised_pnl=st.decimals(allow_nan=False, allow_infinity=False),
    buy_value=st.integers(min_value=0, max_value=10**30),
    last_price=st.none() | units,
)


@settings(max_examples=200, deadline=None)
@given(p=positions)
def test_positions_are_written_as_the_converter_writes_them(p: Position) -> None:
    value = converter.unstructure(p)
    assert _sql_storage._fast_dumps(value) == _sql_storage._dumps(value)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(p=positions)
async def test_any_position_round_trips_unchanged(storage: Storage, p: Position) -> None:
    await storage.save_positions([p])
    stored = {(x.account, x.instrument, x.product): x for x in await storage.load_positions()}
    assert stored[(p.account, p.instrument, p.product)] == p
