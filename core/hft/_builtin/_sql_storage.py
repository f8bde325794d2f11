"""SqlStorage: the Storage contract on SQLite (embedded default) or PostgreSQL, via sqlmodel.

Threads: the engine is SQLAlchemy's synchronous one; reads, and writes other than the SQLite
ones below, run in a worker thread (``anyio.to_thread``), so the event loop never waits on
them. Reads run concurrently, up to ``_READERS`` at a time.

Group commit: every write is a job on one queue, and one task at a time is the writer. A caller
that finds no writer becomes it: it takes every job queued since the last commit, runs them in one
transaction on the writer thread, commits (one fsync), and wakes each job's caller with its result
or error. If more jobs queued up meanwhile, it hands the writer role to the oldest one's caller
and returns. So N concurrent writes cost about one commit, one write transaction is in flight at
a time, and a write returns only once it is durable. No background task is needed, so
:meth:`SqlStorage.open` needs no task group.

A job that raises rolls its batch back; the batch is then retried one job per transaction, so
that only the culprit fails. A lost connection fails every job of the batch with
:class:`~hft.NetworkError`. A caller cancelled while its job is still queued withdraws it (it is
not written); once a writer has taken it, it commits regardless.

SQLite journal path: the OMS journal's batches (``append_order_events``: entries, with their
fills and positions) go to a process of their own (:class:`_WriterProcess`, running
``_sqlite_writer.py``), which commits them with ``synchronous=FULL`` and replies with their seqs.
A commit costs a few hundred microseconds of CPU plus the WAL sync; in that process they use the
machine's other core and no GIL the event loop needs, and the loop pays only a pickle and a
socket round trip. At 5,000 orders/s that took the loop from about 99% busy to about 70%, and
the p99 from 8-30 ms to 5-7 (bench/oms.py). The statements are built here, so the process
needs only the standard library. A batch that fails is retried one job per request, so that
only the culprit fails. If the process is found gone, it is restarted; if it dies while writing,
the outcome is unknown, so the batch fails with :class:`~hft.NetworkError` (the OMS journal
retries). If it cannot start at all, the loop path below takes the journal too.

SQLite write path on the loop: a commit's statements take a few hundred microseconds of CPU, and on
a worker thread that work (with the pool's checkout and reset) contends with the event loop for the
GIL, stalling the loop in the middle of its own work. So the order path's other small writes (fills,
positions, state, audit) are written on the event loop itself, on a connection of their own with
``synchronous=OFF``, and made durable by one ``fdatasync`` of the WAL file before any caller is told
they are written: the same guarantee as ``synchronous=FULL`` (the WAL is synced at every commit).
The sync runs on the loop too, which waits for the disk (about 0.3 ms on this project's machines): a
worker thread would cost more than that in GIL hand-offs (three per sync, each up to the switch
interval while the loop is busy) and a scheduler pass to report back, and that wait was most of an
order's latency at 5,000 orders/s (bench/oms.py). If syncs average over ``_SLOW_SYNC_S`` (a slow or
network disk), they move to a worker thread, and back once they are fast again;
``storage.slow_sync`` logs each move. That connection never checkpoints (a checkpoint without sync
could let a later WAL restart overwrite frames the database file does not hold yet on disk); a
thread checkpoints from a ``synchronous=FULL`` connection instead, which syncs the WAL before and
the database file after copying, and the writer finishes each such checkpoint between two commits
(:meth:`_LoopWriter.catch_up`) so that the WAL can start over instead of growing for as long as
commits keep coming. The loop connection never waits for a lock: if another process holds the write
lock, the batch goes to the worker thread as every other write does.

Write path on a thread: the writer thread shares the GIL with the event loop, so it does as
little Python work as it can. It runs on the driver's own connection and cursor (from
SQLAlchemy's pool), with plain SQL statements prebuilt per dialect when the store opens
(:class:`_Statements`), each run for all of a batch's rows in a few driver calls
(:class:`_Insert`). Orders are serialised once,
by the caller, which makes the entry a snapshot (:func:`_order_json`); that one JSON text goes
into both the journal row and the ``orders`` row, and each order's row is upserted once per
batch, with its last state.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import pickle
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar, cast

import anyio
import anyio.lowlevel
import attrs
import orjson
import structlog
from sqlalchemy import Connection, Dialect, Engine, Table, create_engine, event, func, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlmodel import col, select

from hft._builtin._sql_schema import (
    AccountRow,
    AuditRow,
    FillRow,
    InstrumentRow,
    OrderEventRow,
    OrderRow,
    PositionRow,
    StateRow,
    UserRow,
    UtcDateTime,
    ensure_schema,
)
from hft._errors import ConfigError, HftError, NetworkError, ValidationError
from hft._secret import redact_url
from hft.contracts import OrderEvent, Storage
from hft.model import (
    TERMINAL_STATUSES,
    Account,
    Fill,
    Instrument,
    Order,
    OrderRequest,
    Position,
    StatusChange,
    User,
    converter,
    utcnow,
)

__all__ = ["SqlStorage", "redact_url"]

T = TypeVar("T")

_READERS: Final = 8
_BUSY_TIMEOUT_MS: Final = 10_000
# The most rows a job may carry and still be written on the event loop (SQLite): well under a
# millisecond of work. Bigger ones (reconciliation's fills, the instrument master) use the thread.
_INLINE_ROWS: Final = 512
# The loop connection's commits between two checkpoints by the checkpoint thread.
_CHECKPOINT_EVERY: Final = 250
# The size a WAL file is cut back to when it starts over (it is reused, not deleted).
_WAL_SIZE_LIMIT: Final = 64 << 20
# WAL syncs run on the loop while they average (exponentially, weight 1/8) under this; slower
# disks have them on a thread until the average is back under half of it.
_SLOW_SYNC_S: Final = 0.002
_CONNECT_TIMEOUT_S: Final = 10
# An instrument master can hold 100k rows: saving it in slices lets order writes in between.
_INSTRUMENT_SLICE: Final = 2_000
# Execution option for SQLAlchemy connections that write (SQLite takes the write lock at BEGIN):
# schema setup. The writer itself runs on the driver's connection and says BEGIN IMMEDIATE.
_WRITER: Final = "hft_writer"

log = structlog.get_logger("hft.storage")
# The standard logger behind ``log``: asking it whether debug is on is a dict lookup, where a
# structlog call below the level still builds a bound logger (about 15 µs, once per commit).
_stdlib_log = logging.getLogger("hft.storage")

#: Upper bounds (seconds) of the commit-time histogram ``SqlStorage.commit_buckets`` keeps.
COMMIT_BUCKETS: Final[tuple[float, ...]] = (
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


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _fast_dumps(value: object) -> str:
    """:func:`_dumps` for the converter's output, through orjson (equal JSON, several times faster).

    orjson refuses what the standard library accepts in such output (integers beyond 64 bits,
    lone surrogates, non-string keys): those take the standard library's path.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return _dumps(value)


# ----------------------------------------------------------------------------------------------
# Orders as JSON
# ----------------------------------------------------------------------------------------------


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(field.name for field in attrs.fields(cls))


# The fields _order_json spells out, in the converter's order. Should the model change, orders go
# through the converter (correct, only slower) until _order_json is updated; a test checks this.
_ORDER_FIELDS: Final = (
    "order_id",
    "request",
    "user",
    "status",
    "broker_order_id",
    "exchange_order_id",
    "filled_quantity",
    "filled_value",
    "reason",
    "created_at",
    "history",
)
_REQUEST_FIELDS: Final = (
    "account",
    "instrument",
    "side",
    "quantity",
    "order_type",
    "price",
    "trigger_price",
    "product",
    "time_in_force",
    "disclosed_quantity",
    "client_order_id",
    "tag",
    "extras",
)
_FAST_ORDERS: Final = (
    _field_names(Order) == _ORDER_FIELDS
    and _field_names(OrderRequest) == _REQUEST_FIELDS
    and _field_names(StatusChange) == ("status", "at", "reason")
)
_UTC: Final = dt.UTC


def _moment(value: dt.datetime) -> object:
    # orjson writes a UTC datetime exactly as isoformat() does, at a fraction of the cost; other
    # zones keep isoformat() (orjson would drop the seconds of an offset such as +05:53:28).
    return value if value.tzinfo is _UTC else value.isoformat()


def _order_json(order: Order) -> str:
    """``order`` as the JSON text of ``converter.unstructure(order)``, built directly.

    This is most of the journal's serialisation cost, so it skips the converter's generic
    dispatch: enum members and UTC datetimes go to orjson as they are. Anything orjson refuses
    (integers beyond 64 bits, lone surrogates, odd ``extras``) takes the converter's path.
    """
    if _FAST_ORDERS and type(order) is Order:
        r = order.request
        extras = r.extras
        document = {
            "order_id": order.order_id,
            "request": {
                "account": r.account,
                "instrument": r.instrument,
                "side": r.side,
                "quantity": r.quantity,
                "order_type": r.order_type,
                "price": r.price,
                "trigger_price": r.trigger_price,
                "product": r.product,
                "time_in_force": r.time_in_force,
                "disclosed_quantity": r.disclosed_quantity,
                "client_order_id": r.client_order_id,
                "tag": r.tag,
                "extras": extras if type(extras) is dict else dict(extras),
            },
            "user": order.user,
            "status": order.status,
            "broker_order_id": order.broker_order_id,
            "exchange_order_id": order.exchange_order_id,
            "filled_quantity": order.filled_quantity,
            "filled_value": order.filled_value,
            "reason": order.reason,
            "created_at": _moment(order.created_at),
            "history": [
                {"status": change.status, "at": _moment(change.at), "reason": change.reason}
                for change in order.history
            ],
        }
        try:
            return orjson.dumps(document).decode()
        except TypeError:
            pass
    return _dumps(converter.unstructure(order))


# ----------------------------------------------------------------------------------------------
# Jobs for the writer
# ----------------------------------------------------------------------------------------------


# One journal entry as the caller's side prepares it: order_id, account, client_order_id, status,
# is_terminal, kind, and the order's JSON (a snapshot: orders are mutable). A tuple: cheapest.
_Entry: TypeAlias = tuple[str, str, str, str, bool, str, str]


@attrs.define(eq=False)
class _Job:
    """One caller's write: journal entries (merged with the batch's others) or an ``apply``.

    ``wake`` is set when the job is done, or when its caller is to take over as the writer.
    """

    journal: Sequence[_Entry] = ()
    at: dt.datetime | None = None  # when the journal entries were appended
    apply: Callable[[DBAPICursor, _Statements], None] | None = None
    inline: bool = False  # small enough to write on the event loop (SQLite, see the docstring)
    gathered: bool = False  # its caller batched it: commit it at once, without waiting for more
    # Rows for other tables, in the same transaction: (name of a _Statements insert, rows).
    inserts: Sequence[tuple[str, Sequence[tuple[Any, ...]]]] = ()
    wake: anyio.Event = attrs.Factory(anyio.Event)
    seqs: list[int] = attrs.Factory(list)
    error: Exception | None = None
    done: bool = False

    def fail(self, error: Exception) -> None:
        self.error = error
        self.done = True


# The most rows one SQLite statement carries: 128 rows of at most 7 columns stay within SQLite's
# oldest limit on bound values (999).
_MAX_ROWS: Final = 128


class _Insert:
    """One INSERT (or upsert) prebuilt for one dialect, run for many rows in few driver calls.

    ``INSERT ... (columns) ... [ON CONFLICT (conflict) DO UPDATE SET update | DO NOTHING]``.

    SQLite: multi-row ``VALUES`` lists of 1, 2, 4 ... 128 rows, a batch split along the binary
    digits of its size, so a batch is a handful of statements, each prepared once per connection
    and then cached by the driver. ``executemany`` would step once per row, and the driver gives
    up the GIL at every step, to take it back behind the event loop.

    PostgreSQL: one statement for all rows, one array per column:
    ``INSERT ... SELECT ... FROM unnest(arrays) WITH ORDINALITY ... ORDER BY ordinality``.

    Rows are inserted in the order given (so serial values follow that order). An upsert's rows
    must have distinct keys: one PostgreSQL statement may not update a row twice.
    """

    def __init__(
        self,
        dialect: Dialect,
        model: type[Any],
        columns: Sequence[str],
        conflict: Sequence[str] = (),
        update: Sequence[str] | None = None,
        returning: str | None = None,
    ) -> None:
        table = cast(Table, model.__table__)
        quote = dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in columns)
        self.columnar = dialect.name == "postgresql"
        tail = ""
        if conflict:
            tail += f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO "
            if update:
                tail += "UPDATE SET " + ", ".join(
                    f"{quote(c)} = excluded.{quote(c)}" for c in update
                )
            else:
                tail += "NOTHING"
        if returning is not None:
            tail += f" RETURNING {quote(returning)}"
        self._head = f"INSERT INTO {quote(table.name)} ({names}) "
        self._tail = tail
        if self.columnar:
            arrays = ", ".join(f"%b::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
            self._row = (
                f"SELECT {names} FROM unnest({arrays}) WITH ORDINALITY AS hft_rows({names}, hft_n) "
                "ORDER BY hft_n"
            )
        else:
            self._row = f"({', '.join('?' for _ in columns)})"
        self._sql: dict[int, str] = {}

    def sql(self, rows: int) -> str:
        """The statement for ``rows`` rows (SQLite; PostgreSQL's takes any number)."""
        sql = self._sql.get(rows)
        if sql is None:
            if self.columnar:
                sql = f"{self._head}{self._row}{self._tail}"
            else:
                sql = f"{self._head}VALUES {', '.join([self._row] * rows)}{self._tail}"
            self._sql[rows] = sql
        return sql

    def run(self, cursor: DBAPICursor, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert ``rows`` (tuples in ``columns`` order); return how many rows were written."""
        if not rows:
            return 0
        if self.columnar:
            arrays = tuple(list(column) for column in zip(*rows, strict=True))
            cursor.execute(self.sql(0), arrays)
            return int(cursor.rowcount)
        written = 0
        for sql, values in self.statements(rows):
            cursor.execute(sql, values)
            written += cursor.rowcount
        return written

    def statements(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
        """SQLite: the statements and parameters that insert ``rows``."""
        out = []
        start, total = 0, len(rows)
        while start < total:
            size = min(1 << ((total - start).bit_length() - 1), _MAX_ROWS)
            out.append(
                (self.sql(size), list(itertools.chain.from_iterable(rows[start : start + size])))
            )
            start += size
        return out


class _Statements:
    """Every write statement, prebuilt for one dialect (SQLAlchemy Core would compile per batch)."""

    def __init__(self, dialect: Dialect) -> None:
        self.sqlite = dialect.name == "sqlite"
        # Datetimes as SQLAlchemy binds them for a UtcDateTime column: aware UTC on PostgreSQL,
        # SQLAlchemy's own UTC text on SQLite (not the driver's isoformat, which differs).
        bind = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        self.moment: Callable[[dt.datetime], Any] = bind or (lambda value: value)
        order = ("account", "client_order_id", "status", "is_terminal", "updated_at", "data")
        # An order's account and client id never change: leaving them out of the update spares
        # SQLite rewriting their index entries on every state change.
        changing = ("status", "is_terminal", "updated_at", "data")
        self.orders = _Insert(dialect, OrderRow, ("order_id", *order), ("order_id",), changing)
        event = ("order_id", "kind", "at", "data")
        self.events = _Insert(
            dialect, OrderEventRow, event, returning=None if self.sqlite else "seq"
        )
        fill = ("broker_order_id", "fill_id", "account", "order_id", "at", "data")
        self.fills = _Insert(dialect, FillRow, fill, ("broker_order_id", "fill_id"))
        position = ("account", "instrument", "product")
        self.positions = _Insert(dialect, PositionRow, (*position, "data"), position, ("data",))
        instrument = ("exchange", "symbol", "token", "data")
        self.instruments = _Insert(
            dialect, InstrumentRow, ("key", *instrument), ("key",), instrument
        )
        account = ("broker", "environment", "data")
        self.accounts = _Insert(
            dialect, AccountRow, ("account_id", *account), ("account_id",), account
        )
        user = ("username", "password_hash", "data")
        self.users = _Insert(dialect, UserRow, user, ("username",), ("data",))
        self.users_with_hash = _Insert(
            dialect, UserRow, user, ("username",), ("data", "password_hash")
        )
        self.audit = _Insert(dialect, AuditRow, ("kind", "at", "data"))
        self.state = _Insert(
            dialect, StateRow, ("namespace", "key", "value"), ("namespace", "key"), ("value",)
        )

    def journal_rows(
        self, jobs: Sequence[_Job]
    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The ``orders`` rows (each order once, at its last state) and ``order_events`` rows."""
        orders: dict[str, tuple[Any, ...]] = {}
        events: list[tuple[Any, ...]] = []
        for job in jobs:
            assert job.at is not None, "journal jobs carry their time"
            at = self.moment(job.at)
            for order_id, account, client_order_id, status, terminal, kind, data in job.journal:
                # Assigning an existing key keeps its place: rows get ids in first-seen order.
                orders[order_id] = (order_id, account, client_order_id, status, terminal, at, data)
                events.append((order_id, kind, at, data))
        return list(orders.values()), events

    def append_journal(self, cursor: DBAPICursor, jobs: Sequence[_Job]) -> list[int]:
        """Upsert each order's last state once, then append every entry; return their seqs."""
        orders, events = self.journal_rows(jobs)
        self.orders.run(cursor, orders)
        written = self.events.run(cursor, events)
        if not self.sqlite:
            # Serial values are drawn in insertion order, which is the entries' order.
            return sorted(seq for (seq,) in cursor.fetchall())
        if written != len(events):
            raise HftError(f"journal: {written} rows written for {len(events)} entries")
        # One writer and no triggers: SQLite's AUTOINCREMENT gave the rows consecutive seqs
        # (each one more than the largest ever used), the last of which is last_insert_rowid().
        cursor.execute("SELECT last_insert_rowid()")
        (last,) = cursor.fetchall()[0]
        return list(range(last - len(events) + 1, last + 1))


def _last_per_key(rows: Iterable[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    # One upsert statement may not touch a row twice on PostgreSQL: keep each key's last value
    # (the key being the first ``width`` columns), in first-seen order.
    latest: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for row in rows:
        latest[row[:width]] = row
    return list(latest.values())


# ----------------------------------------------------------------------------------------------
# Engines
# ----------------------------------------------------------------------------------------------


def _parse(url: str) -> URL:
    """The SQLAlchemy URL for an hft storage URL, with its driver fixed; no I/O."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        # The parser's message may repeat the URL, password included.
        raise ConfigError(f"storage.url {redact_url(url)!r} is not a database URL") from None
    scheme = parsed.drivername.split("+", 1)[0]
    if scheme == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigError(
                "storage.url: an in-memory SQLite database is not durable; use a file "
                "(sqlite:///path/hft.db) or memory:// for throwaway sessions"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    if scheme in ("postgresql", "postgres"):
        defaults = {"connect_timeout": str(_CONNECT_TIMEOUT_S), "application_name": "hft"}
        missing = {k: v for k, v in defaults.items() if k not in parsed.query}
        return parsed.set(drivername="postgresql+psycopg").update_query_dict(missing)
    raise ConfigError(
        f"storage.url {redact_url(url)!r}: the SQL backend serves sqlite and postgresql"
    )


def _on_sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    # The sqlite3 module's own transaction handling is off: we emit BEGIN (see _on_sqlite_begin),
    # so that DDL is transactional and the writer takes the write lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("storage.wal_unavailable", journal_mode=mode)
        # FULL: in WAL mode NORMAL may lose the last commits on power loss; FULL syncs each one.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Connection) -> None:
    writer = conn.get_execution_options().get(_WRITER, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def _create_engine(url: URL) -> Engine:
    common: dict[str, Any] = {
        "pool_size": _READERS + 1,
        "max_overflow": 4,
        "hide_parameters": True,  # SQL errors must not quote values (password hashes, tokens)
    }
    if url.get_backend_name() == "sqlite":
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **common)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, **common)


def _is_unreachable(exc: BaseException, dbapi: Any = None) -> bool:
    """Whether ``exc`` says the database is out of reach: SQLAlchemy's errors, or the driver's own
    (``dbapi``, its module) from the writer, which runs on the raw connection."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    return dbapi is not None and isinstance(exc, dbapi.OperationalError | dbapi.InterfaceError)


class _Busy(Exception):
    """The loop connection found the write lock taken (by another process): use the thread."""


class _LoopWriter:
    """The SQLite connection the event loop writes on, its WAL sync and its checkpoints (see the
    module docstring). ``engine`` gives the ``synchronous=FULL`` connections checkpoints use."""

    def __init__(self, path: str, engine: Engine) -> None:
        self._wal = f"{path}-wal"
        self._engine = engine
        # Opened and closed on worker threads, used on the loop: one user at a time.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 0")  # the loop never waits for a lock
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = OFF")  # sync() syncs the WAL itself
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
            conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        self.connection = conn
        self._wal_fd: int | None = None
        #: The WAL syncs' average duration (s), and whether they run on the loop (see sync()).
        self.sync_s = 0.0
        self.on_loop = True
        self._commits = 0
        self._checkpointer: threading.Thread | None = None
        self.catch_up_due = False  # a checkpoint has run: finish it (catch_up) between commits

    def sync(self) -> None:
        """Make every commit made so far durable; on the loop while :attr:`on_loop` says so,
        else on a worker thread (one caller at a time: the writer)."""
        if self._wal_fd is None:
            # Kept open: the loop connection keeps the WAL file (a checkpoint rewinds it, and
            # only the last connection's close deletes it).
            self._wal_fd = os.open(self._wal, os.O_RDONLY)
        started = time.perf_counter()
        os.fdatasync(self._wal_fd)
        self.sync_s += (time.perf_counter() - started - self.sync_s) / 8
        if self.on_loop and self.sync_s > _SLOW_SYNC_S:
            self.on_loop = False
            log.warning("storage.slow_sync", average_ms=round(self.sync_s * 1e3, 2), on="thread")
        elif not self.on_loop and self.sync_s < _SLOW_SYNC_S / 2:
            self.on_loop = True
            log.info("storage.slow_sync", average_ms=round(self.sync_s * 1e3, 2), on="loop")

    def committed(self) -> None:
        """Count a commit; every ``_CHECKPOINT_EVERY``, start a checkpoint unless one runs, and
        once it has run, ask the writer for a :meth:`catch_up`."""
        self._commits += 1
        checkpointer = self._checkpointer
        if checkpointer is not None and not checkpointer.is_alive():
            self._checkpointer = None
            self.catch_up_due = True
        if self._commits >= _CHECKPOINT_EVERY and self._checkpointer is None:
            self._commits = 0
            self._checkpointer = threading.Thread(
                target=self._checkpoint, name="hft-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def catch_up(self) -> None:
        """Worker thread, while the writer role is held (no commit can come in between):
        checkpoint what was written while the thread checkpointed, from a
        ``synchronous=FULL`` connection. The WAL is then wholly in the (synced) database file,
        and the next commit starts it over from its beginning (cut back to
        ``_WAL_SIZE_LIMIT``): under a steady stream of commits, a thread's checkpoint never
        catches up, and the WAL would grow without end."""
        self.catch_up_due = False
        self._checkpoint()

    def _checkpoint(self) -> None:
        try:
            conn = self._engine.raw_connection()
            try:
                # PASSIVE: never blocks the writer; FULL (the pool's setting) syncs the WAL
                # before copying it and the database file after.
                cursor = conn.cursor()
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                cursor.close()
            finally:
                conn.close()
        except Exception as exc:  # the next one retries; the WAL only grows meanwhile
            log.warning("storage.checkpoint_failed", error=str(exc))

    def close(self) -> None:
        """Worker thread: wait for a checkpoint, then close (the last connection to close
        checkpoints the WAL, which must then sync the database file)."""
        if self._checkpointer is not None:
            self._checkpointer.join()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        self.connection.execute("PRAGMA synchronous = FULL")
        self.connection.close()


class _ProcessGone(Exception):
    """The writer process ended, or its socket broke: what it was writing is not known."""


_LENGTH: Final = struct.Struct("!I")
_RECEIVE_SIZE: Final = 1 << 16
_WRITER_SCRIPT: Final = Path(__file__).with_name("_sqlite_writer.py")
_WRITER_START_S: Final = 10.0


def _writer_error(reply: tuple[Any, ...]) -> Exception:
    """The exception the writer process reported, rebuilt as the driver's own type."""
    _, name, code, message = reply
    kind = getattr(sqlite3, name, None) or getattr(builtins, name, None)
    error: Exception
    try:
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            raise TypeError(name)
        error = kind(message)
    except TypeError:  # not an exception class, or one that a message alone cannot build
        error = RuntimeError(f"{name}: {message}")
    if code is not None:
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


class _WriterProcess:
    """The SQLite journal writer in a process of its own (``_sqlite_writer.py``), so that the
    commit's CPU and its WAL sync are off the event loop's core and its GIL. One request at a
    time (the storage's writer role): a list of ``(sql, parameters, counted)`` statements, run
    in one transaction and synced before the reply."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._buffer = bytearray()  # received from the process, not yet read
        self.requests = 0

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def start(self) -> None:
        """Start the process and wait until its connection is open."""
        await self.stop()
        ours, theirs = socket.socketpair()
        command = [
            sys.executable,
            "-I",
            "-S",
            str(_WRITER_SCRIPT),
            self._path,
            str(theirs.fileno()),
        ]

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)

        try:
            self._process = await anyio.to_thread.run_sync(spawn)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        self._buffer = bytearray()
        try:
            with anyio.fail_after(_WRITER_START_S):
                if await self._read(1) != b"R":
                    raise _ProcessGone("the writer process did not start")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise

    async def run(self, statements: list[tuple[str, list[Any], bool]]) -> tuple[Any, ...]:
        """Run ``statements`` in one transaction; the process's reply (module docstring of
        ``_sqlite_writer``). Raises :class:`_ProcessGone` if the process or its socket fails."""
        sock = self._socket
        if sock is None:  # whether the process lives is checked once per batch, by the caller
            raise _ProcessGone("the writer process is not running")
        data = pickle.dumps(statements, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            view = memoryview(_LENGTH.pack(len(data)) + data)
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    await anyio.wait_writable(sock)
            # Nothing to read before the commit is synced: wait rather than try a recv now.
            await anyio.wait_readable(sock)
            (size,) = _LENGTH.unpack(await self._read(_LENGTH.size))
            reply: tuple[Any, ...] = pickle.loads(await self._read(size))
        except OSError as exc:
            raise _ProcessGone(str(exc)) from None
        self.requests += 1
        return reply

    async def _read(self, size: int) -> bytes:
        """The next ``size`` bytes from the process. A read takes whatever has arrived, so a
        reply's header and body usually come in one ``recv``; the rest waits in the buffer."""
        sock = self._socket
        assert sock is not None
        buffer = self._buffer
        while len(buffer) < size:
            try:
                chunk = sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(sock)
                continue
            if not chunk:
                raise _ProcessGone("the writer process closed its socket")
            buffer += chunk
        data = bytes(buffer[:size])
        del buffer[:size]
        return data

    async def stop(self) -> None:
        """Close the socket (the process then closes its connection and exits) and reap it."""
        sock, process = self._socket, self._process
        self._socket = self._process = None
        if sock is not None:
            sock.close()
        if process is not None:
            try:
                await anyio.to_thread.run_sync(process.wait, _WRITER_START_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await anyio.to_thread.run_sync(process.wait)


def _loop_writer_path(url: URL) -> str | None:
    """The database file a loop writer may open: a plain SQLite file, not memory or a URI."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or url.query:
        return None
    return database


# ----------------------------------------------------------------------------------------------
# The backend
# ----------------------------------------------------------------------------------------------


class SqlStorage(Storage):
    """The SQL backend; ``commits`` and ``writes`` count transactions and the jobs they held."""

    #: The upper bounds of ``commit_buckets``.
    commit_bounds: Final = COMMIT_BUCKETS

    def __init__(self, url: str) -> None:
        self.url = url
        self._sa_url = _parse(url)
        self._where = redact_url(url)
        # Masked in error text: the parsed password and the raw one (they differ when unquoted).
        raw = url.partition("?")[0].partition("://")[2].rpartition("@")[0].partition(":")[2]
        found = {s for s in (raw, self._sa_url.password) if isinstance(s, str) and s}
        self._secrets = sorted(found, key=len, reverse=True)  # longest first
        self.commits = 0
        self.writes = 0
        #: Time each commit took, in seconds: cumulative counts per upper bound of
        #: :data:`COMMIT_BUCKETS` (the last one counts every commit) and their sum, for metrics.
        self.commit_buckets = [0] * (len(COMMIT_BUCKETS) + 1)
        self.commit_seconds = 0.0
        self._engine: Engine | None = None
        self._loop_writer: _LoopWriter | None = None  # SQLite files only
        self._process: _WriterProcess | None = None  # SQLite files only: the journal's writer
        self._statements: _Statements | None = None
        self._dbapi: Any = None  # the driver module (sqlite3, psycopg): its exception classes
        self._closing = False
        self._pending: list[_Job] = []
        self._writing = False  # a task is the writer (see the module docstring)
        self._write_limiter: anyio.CapacityLimiter | None = None
        self._read_limiter: anyio.CapacityLimiter | None = None
        self._closed: anyio.Event | None = None

    # Lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._engine is not None:
            return
        engine = _create_engine(self._sa_url)
        try:
            found, now = await anyio.to_thread.run_sync(self._prepare, engine)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(engine.dispose)
            raise
        path = _loop_writer_path(self._sa_url)
        if path is not None:
            self._loop_writer = await anyio.to_thread.run_sync(_LoopWriter, path, engine)
            process = _WriterProcess(path)
            try:
                await process.start()
            except (OSError, _ProcessGone, TimeoutError) as exc:
                # The loop writer takes the journal too: slower under load, just as durable.
                log.warning("storage.writer_process_failed", error=str(exc))
                await process.stop()
            else:
                self._process = process
        self._engine = engine
        self._statements = _Statements(engine.dialect)
        self._dbapi = engine.dialect.loaded_dbapi
        self._write_limiter = anyio.CapacityLimiter(1)
        self._read_limiter = anyio.CapacityLimiter(_READERS)
        self._closed = anyio.Event()
        self._closing = False
        if found not in (0, now):
            log.info("storage.migrated", url=self._where, from_version=found, to_version=now)
        log.info("storage.opened", url=self._where, backend=engine.dialect.name, schema_version=now)

    def _prepare(self, engine: Engine) -> tuple[int, int]:
        with self._translated(), engine.execution_options(**{_WRITER: True}).begin() as conn:
            versions = ensure_schema(conn)
            if conn.dialect.name == "postgresql":
                setting = conn.execute(text("SHOW synchronous_commit")).scalar()
                if setting == "off":
                    log.warning("storage.not_durable", url=self._where, synchronous_commit=setting)
            return versions

    async def close(self) -> None:
        engine, closed = self._engine, self._closed
        if engine is None or closed is None:
            return
        # The host closes storage while shutting down (cancelled): queued writes must still land.
        with anyio.CancelScope(shield=True):
            if self._closing:  # a concurrent close() is flushing: wait for it
                await closed.wait()
                return
            self._closing = True  # refuse new writes; those already queued still commit
            # Queued behind every earlier job, so its completion means all of them are durable.
            await self._submit(_Job())
            self._engine = self._statements = None
            if self._process is not None:
                await self._process.stop()
                self._process = None
            if self._loop_writer is not None:
                await anyio.to_thread.run_sync(self._loop_writer.close)
                self._loop_writer = None
            await anyio.to_thread.run_sync(engine.dispose)
            closed.set()
        log.info("storage.closed", url=self._where, commits=self.commits, writes=self.writes)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(text("SELECT 1")).scalar_one())

    # Plumbing ----------------------------------------------------------------------------------

    def _closed_error(self) -> NetworkError:
        return NetworkError(f"storage {self._where} is not open", code="storage_closed")

    def _reason(self, exc: BaseException) -> str:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return reason or type(exc).__name__

    def _hft_error(self, exc: Exception) -> Exception:
        """The error a caller sees for ``exc``: hft's own for known database failures."""
        if _is_unreachable(exc, self._dbapi):
            return NetworkError(
                f"storage {self._where}: {self._reason(exc)}", code="storage_unreachable"
            )
        # OverflowError: SQLite's int64. The writer sees the driver's DataError, not SQLAlchemy's.
        refused = sa_exc.DataError | OverflowError
        if isinstance(exc, refused) or (self._dbapi and isinstance(exc, self._dbapi.DataError)):
            return ValidationError(f"storage refused a value: {self._reason(exc)}")
        return exc

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except HftError:
            raise
        except Exception as exc:
            error = self._hft_error(exc)
            if error is exc:
                raise
            # Not chained: the driver's exception may describe the connection in detail.
            raise error from None

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        engine = self._engine
        if engine is None:
            raise self._closed_error()
        return await anyio.to_thread.run_sync(
            self._run_read, engine, fn, limiter=self._read_limiter
        )

    def _run_read(self, engine: Engine, fn: Callable[[Connection], T]) -> T:
        with self._translated(), engine.connect() as conn:
            return fn(conn)

    def _open_statements(self) -> _Statements:
        if self._statements is None:
            raise self._closed_error()
        return self._statements

    async def _write(self, job: _Job) -> None:
        if self._engine is None or self._closing:
            raise self._closed_error()
        await self._submit(job)

    async def _submit(self, job: _Job) -> None:
        self._pending.append(job)
        if self._writing:
            try:
                await job.wake.wait()
            except BaseException:
                if job in self._pending:
                    self._pending.remove(job)  # still queued: withdrawn, never written
                    if job.wake.is_set():
                        self._hand_over()  # it had just been made the writer: pass that on
                raise
        else:
            self._writing = True
        if not job.done:
            await self._lead()
        if job.error is not None:
            raise job.error

    async def _lead(self) -> None:
        """As the writer: commit everything queued, wake its callers, pass the role on."""
        if not (len(self._pending) == 1 and self._pending[0].gathered):
            # Let the tasks that are about to write run first, so that they join this batch:
            # with the sync on the loop, nothing else would make them wait and share a commit.
            # Not for a batch its caller gathered (the OMS journal's): a scheduler pass is a
            # millisecond and more under load, and it would be on every order's latency.
            await anyio.lowlevel.cancel_shielded_checkpoint()
        batch, self._pending = self._pending, []
        try:
            # Shielded: once taken, a batch commits and its callers learn the outcome.
            with anyio.CancelScope(shield=True):
                writer = self._loop_writer
                if self._process is not None and all(job.gathered for job in batch):
                    await self._commit_in_process(self._process, batch)
                elif writer is not None and all(job.inline for job in batch):
                    await self._commit_on_loop(writer, batch)
                else:
                    await anyio.to_thread.run_sync(self._commit, batch, limiter=self._write_limiter)
        finally:
            for job in batch:
                if not job.done:  # only if the thread itself could not run
                    job.fail(HftError("storage writer failed", code="storage_unknown"))
                job.wake.set()
            writer = self._loop_writer
            if writer is not None and writer.catch_up_due:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(writer.catch_up, limiter=self._write_limiter)
            self._hand_over()

    async def _commit_in_process(self, process: _WriterProcess, batch: list[_Job]) -> None:
        """Commit journal jobs in the writer process: all in one transaction, or, if that one
        fails, one transaction per job, so that only the culprit fails."""
        if not process.alive:
            log.warning("storage.writer_process_restarted")
            try:
                await process.start()
            except (OSError, _ProcessGone, TimeoutError) as exc:
                for job in batch:
                    job.fail(NetworkError(f"storage {self._where}: writer process: {exc}"))
                return
        started = time.perf_counter()
        groups = [batch] if len(batch) == 1 else [batch, *([job] for job in batch)]
        for group in groups:
            statements, entries = self._journal_statements(group)
            try:
                reply = await process.run(statements)
            except _ProcessGone as exc:
                # Committed or not, nobody knows: the caller retries; the next batch restarts it.
                log.error("storage.writer_process_lost", url=self._where, error=str(exc))
                for job in batch:
                    if not job.done:
                        job.fail(NetworkError(f"storage {self._where}: writer process: {exc}"))
                await process.stop()
                return
            if reply[0] == "ok" and reply[1] != entries:
                # Committed, yet not as built (one writer and no triggers: never seen). Not
                # retried, which would write the entries twice.
                mismatch = HftError(
                    f"journal: {reply[1]} rows written for {entries} entries",
                    code="storage_unknown",
                )
                log.error("storage.commit_failed", jobs=len(group), error=str(mismatch))
                for job in group:
                    job.fail(mismatch)
                if group is batch:
                    return
                continue
            if reply[0] == "ok":
                last = reply[2]
                seqs = list(range(last - entries + 1, last + 1))
                for job in group:
                    job.seqs, seqs = seqs[: len(job.journal)], seqs[len(job.journal) :]
                    job.done = True
                self.commits += 1
                self.writes += len(group)
                self._observe(time.perf_counter() - started)
                if group is batch:
                    return
                continue
            error = _writer_error(reply)
            if len(group) == 1:
                log.warning("storage.commit_failed", jobs=1, error=self._reason(error))
                group[0].fail(self._hft_error(error))
            else:
                log.warning("storage.batch_retried", jobs=len(group), error=self._reason(error))

    def _journal_statements(
        self, jobs: Sequence[_Job]
    ) -> tuple[list[tuple[str, list[Any], bool]], int]:
        """The writer process's statements for journal jobs, and how many entries they add."""
        statements = self._open_statements()
        orders, events = statements.journal_rows(jobs)
        out = [(sql, values, False) for sql, values in statements.orders.statements(orders)]
        out += [(sql, values, True) for sql, values in statements.events.statements(events)]
        for job in jobs:
            for name, rows in job.inserts:
                insert: _Insert = getattr(statements, name)
                out += [(sql, values, False) for sql, values in insert.statements(rows)]
        return out, len(events)

    async def _commit_on_loop(self, writer: _LoopWriter, batch: list[_Job]) -> None:
        """Commit ``batch`` on the loop connection, then sync the WAL (on the loop unless the
        disk is slow); the jobs' callers are woken only after the sync (module docstring)."""
        started = time.perf_counter()
        try:
            self._commit(batch, writer.connection)
        except _Busy:
            await anyio.to_thread.run_sync(self._commit, batch, limiter=self._write_limiter)
            return
        written = [job for job in batch if job.error is None]
        if not written:
            return
        try:
            if writer.on_loop:
                writer.sync()
            else:
                await anyio.to_thread.run_sync(writer.sync, limiter=self._write_limiter)
        except OSError as exc:
            # Written but perhaps not durable: nobody may be told it is stored.
            log.error("storage.sync_failed", url=self._where, error=str(exc))
            for job in written:
                job.fail(NetworkError(f"storage {self._where}: sync failed: {exc}"))
            return
        writer.committed()
        self._observe(time.perf_counter() - started)

    def _hand_over(self) -> None:
        if self._pending:
            self._pending[0].wake.set()  # not done: its caller becomes the writer
        else:
            self._writing = False

    def _commit(self, batch: list[_Job], conn: Any = None) -> None:
        """Commit ``batch`` in one transaction, or isolate the job that fails: on the writer
        thread, or on the loop with the loop connection ``conn`` (which raises ``_Busy``)."""
        try:
            self._transact(batch, conn)
            return
        except _Busy:
            raise
        except Exception as exc:
            if len(batch) == 1 or _is_unreachable(exc, self._dbapi):
                log.warning("storage.commit_failed", jobs=len(batch), error=self._reason(exc))
                for job in batch:
                    job.fail(self._hft_error(exc))
                return
            log.warning("storage.batch_retried", jobs=len(batch), error=self._reason(exc))
        for job in batch:
            try:
                self._transact([job], conn)
            except Exception as exc:
                log.warning("storage.commit_failed", jobs=1, error=self._reason(exc))
                job.fail(self._hft_error(exc))

    def _transact(self, batch: list[_Job], loop_conn: Any = None) -> None:
        engine, statements = self._engine, self._statements
        assert engine is not None, "the writer runs only while the storage is open"
        assert statements is not None
        started = time.perf_counter()
        work = [job for job in batch if job.journal or job.inserts or job.apply is not None]
        if work:  # close() submits an empty job only to wait for the queue to drain
            # The driver's own connection and cursor: SQLAlchemy's Connection would add its
            # execution machinery to every statement, all of it on the GIL the event loop needs.
            conn = loop_conn if loop_conn is not None else engine.raw_connection()
            try:
                cursor = conn.cursor()
                try:
                    if statements.sqlite:  # the sqlite3 module's transactions are off
                        try:
                            cursor.execute("BEGIN IMMEDIATE")
                        except sqlite3.OperationalError as exc:
                            if (
                                loop_conn is not None
                                and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY
                            ):
                                raise _Busy from None
                            raise
                    journal = [job for job in work if job.journal]
                    if journal:
                        seqs = statements.append_journal(cursor, journal)
                        start = 0
                        for job in journal:
                            job.seqs = seqs[start : start + len(job.journal)]
                            start += len(job.journal)
                    for job in work:
                        for name, rows in job.inserts:
                            getattr(statements, name).run(cursor, rows)
                        if job.apply is not None:
                            job.apply(cursor, statements)
                finally:
                    cursor.close()
                conn.commit()
            except BaseException as exc:
                if loop_conn is None and _is_unreachable(exc, self._dbapi):
                    conn.invalidate(exc)  # the pool replaces it
                elif not isinstance(exc, _Busy):
                    with contextlib.suppress(Exception):
                        conn.rollback()
                raise
            finally:
                if loop_conn is None:
                    conn.close()  # back to the pool
            self.commits += 1
            self.writes += len(work)
            if loop_conn is None:  # the loop's commits are timed once their WAL is synced
                self._observe(time.perf_counter() - started)
        for job in batch:
            job.done = True

    def _observe(self, elapsed: float) -> None:
        self.commit_seconds += elapsed
        buckets = self.commit_buckets
        for i in range(bisect.bisect_left(COMMIT_BUCKETS, elapsed), len(buckets)):
            buckets[i] += 1
        if _stdlib_log.isEnabledFor(logging.DEBUG):
            log.debug("storage.commit", ms=round(elapsed * 1e3, 3))

    # Orders ------------------------------------------------------------------------------------

    async def append_order_events(
        self,
        events: Sequence[tuple[Order, str]],
        fills: Sequence[Fill] = (),
        positions: Sequence[Position] = (),
    ) -> list[int]:
        if not (events or fills or positions):
            return []
        # Orders are mutable: serialising now snapshots them as they were when journalled. The
        # loop pays for it, but the writer thread would hold the same GIL for the same work.
        entries = [
            (
                order.order_id,
                order.request.account,
                order.request.client_order_id,
                order.status.value,
                order.status in TERMINAL_STATUSES,
                kind,
                _order_json(order),
            )
            for order, kind in events
        ]
        fill_rows = self._fill_rows(fills)
        position_rows = self._position_rows(positions)
        # One job is one transaction: the journal, fills and positions land together.
        job = _Job(
            journal=entries,
            at=utcnow(),
            inserts=[
                (name, rows)
                for name, rows in (("fills", fill_rows), ("positions", position_rows))
                if rows
            ],
            inline=len(entries) + len(fill_rows) + len(position_rows) <= _INLINE_ROWS,
            gathered=True,  # by the OMS journal, the one caller
        )
        await self._write(job)
        return job.seqs

    async def order_events(self, after_seq: int = 0, limit: int = 1000) -> list[OrderEvent]:
        query = (
            select(
                col(OrderEventRow.seq),
                col(OrderEventRow.kind),
                col(OrderEventRow.at),
                col(OrderEventRow.data),
            )
            .where(col(OrderEventRow.seq) > after_seq)
            .order_by(col(OrderEventRow.seq))
            .limit(max(limit, 0))
        )

        def read(conn: Connection) -> list[OrderEvent]:
            return [
                OrderEvent(
                    seq=cast(int, seq),
                    order=converter.structure(json.loads(data), Order),
                    kind=kind,
                    at=at,
                )
                for seq, kind, at, data in conn.execute(query)
            ]

        return await self._read(read)

    async def last_order_event_seq(self) -> int:
        query = select(func.max(col(OrderEventRow.seq)))
        return await self._read(lambda conn: int(conn.execute(query).scalar() or 0))

    async def load_orders(self, *, open_only: bool = False) -> list[Order]:
        query = select(col(OrderRow.data)).order_by(col(OrderRow.id))
        if open_only:
            query = query.where(col(OrderRow.is_terminal).is_(False))
        return await self._read(lambda conn: _structure_all(conn, query, Order))

    # Fills and positions -----------------------------------------------------------------------

    async def save_fills(self, fills: Sequence[Fill]) -> None:
        if not fills:
            return
        rows = self._fill_rows(fills)

        def apply(cursor: DBAPICursor, statements: _Statements) -> None:
            statements.fills.run(cursor, rows)

        await self._write(_Job(apply=apply, inline=len(rows) <= _INLINE_ROWS))

    def _fill_rows(self, fills: Sequence[Fill]) -> list[tuple[Any, ...]]:
        # Serialised here, like every write: the writer thread is best kept short.
        moment = self._open_statements().moment
        return [
            (
                f.broker_order_id,
                f.fill_id,
                f.account,
                f.order_id,
                moment(f.at),
                _fast_dumps(converter.unstructure(f)),
            )
            for f in fills
        ]

    async def load_fills(self, account: str | None = None) -> list[Fill]:
        query = select(col(FillRow.data)).order_by(col(FillRow.id))
        if account is not None:
            query = query.where(col(FillRow.account) == account)
        return await self._read(lambda conn: _structure_all(conn, query, Fill))

    async def save_positions(self, positions: Sequence[Position]) -> None:
        if not positions:
            return
        rows = self._position_rows(positions)

        def apply(cursor: DBAPICursor, statements: _Statements) -> None:
            statements.positions.run(cursor, rows)

        await self._write(_Job(apply=apply, inline=len(rows) <= _INLINE_ROWS))

    @staticmethod
    def _position_rows(positions: Sequence[Position]) -> list[tuple[Any, ...]]:
        # Positions are mutable: serialise them now.
        return _last_per_key(
            (
                (p.account, p.instrument, p.product.value, _fast_dumps(converter.unstructure(p)))
                for p in positions
            ),
            3,
        )

    async def load_positions(self, account: str | None = None) -> list[Position]:
        query = select(col(PositionRow.data)).order_by(col(PositionRow.id))
        if account is not None:
            query = query.where(col(PositionRow.account) == account)
        return await self._read(lambda conn: _structure_all(conn, query, Position))

    # Reference data ----------------------------------------------------------------------------

    async def save_instruments(self, instruments: Sequence[Instrument]) -> None:
        frozen = tuple(instruments)
        for start in range(0, len(frozen), _INSTRUMENT_SLICE):
            part = frozen[start : start + _INSTRUMENT_SLICE]

            def apply(
                cursor: DBAPICursor, statements: _Statements, part: tuple[Instrument, ...] = part
            ) -> None:
                rows = (
                    (i.key, i.exchange, i.symbol, i.token, _fast_dumps(converter.unstructure(i)))
                    for i in part
                )
                statements.instruments.run(cursor, _last_per_key(rows, 1))

            await self._write(_Job(apply=apply))

    async def load_instruments(self) -> list[Instrument]:
        query = select(col(InstrumentRow.data)).order_by(col(InstrumentRow.key))
        return await self._read(lambda conn: _structure_all(conn, query, Instrument))

    async def save_account(self, account: Account) -> None:
        row = (
            account.account_id,
            account.broker,
            account.environment.value,
            _dumps(converter.unstructure(account)),
        )

        def apply(cursor: DBAPICursor, statements: _Statements) -> None:
            statements.accounts.run(cursor, [row])

        await self._write(_Job(apply=apply))

    async def load_accounts(self) -> list[Account]:
        query = select(col(AccountRow.data)).order_by(col(AccountRow.account_id))
        return await self._read(lambda conn: _structure_all(conn, query, Account))

    # Users -------------------------------------------------------------------------------------

    async def save_user(self, user: User, password_hash: str | None = None) -> None:
        row = (user.username, password_hash, _dumps(converter.unstructure(user)))

        def apply(cursor: DBAPICursor, statements: _Statements) -> None:
            # No new hash: update everything but the stored one (a new user gets none).
            upsert = statements.users if password_hash is None else statements.users_with_hash
            upsert.run(cursor, [row])

        await self._write(_Job(apply=apply))

    async def load_users(self) -> list[User]:
        query = select(col(UserRow.data)).order_by(col(UserRow.username))
        return await self._read(lambda conn: _structure_all(conn, query, User))

    async def password_hash(self, username: str) -> str | None:
        query = select(col(UserRow.password_hash)).where(col(UserRow.username) == username)
        return await self._read(lambda conn: conn.execute(query).scalar_one_or_none())

    # Audit and plugin state --------------------------------------------------------------------

    async def append_audit(self, kind: str, payload: dict[str, object]) -> None:
        # Serialised now: a payload that is not JSON fails here, and later mutation cannot leak in.
        row = (kind, self._open_statements().moment(utcnow()), _dumps(payload))

        def apply(cursor: DBAPICursor, statements: _Statements) -> None:
            statements.audit.run(cursor, [row])

        await self._write(_Job(apply=apply, inline=True))

    async def audit_entries(self, kind: str, limit: int = 100) -> list[dict[str, object]]:
        query = (
            select(col(AuditRow.at), col(AuditRow.data))
            .where(col(AuditRow.kind) == kind)
            .order_by(col(AuditRow.id).desc())
            .limit(max(limit, 0))
        )

        def read(conn: Connection) -> list[dict[str, object]]:
            return [{**json.loads(data), "at": at.isoformat()} for at, data in conn.execute(query)]

        return await self._read(read)

    async def put_state(self, namespace: str, key: str, value: bytes) -> None:
        row = (namespace, key, bytes(value))

        def apply(cursor: DBAPICursor, statements: _Statements) -> None:
            statements.state.run(cursor, [row])

        await self._write(_Job(apply=apply, inline=True))

    async def get_state(self, namespace: str, key: str) -> bytes | None:
        query = select(col(StateRow.value)).where(
            col(StateRow.namespace) == namespace, col(StateRow.key) == key
        )

        def read(conn: Connection) -> bytes | None:
            value = conn.execute(query).scalar_one_or_none()
            return None if value is None else bytes(value)

        return await self._read(read)


def _structure_all(conn: Connection, query: Any, cls: type[T]) -> list[T]:
    return [converter.structure(json.loads(data), cls) for data in conn.execute(query).scalars()]
