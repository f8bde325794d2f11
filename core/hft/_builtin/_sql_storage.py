"""SqlStorage: the Storage contract on SQLite (embedded default) or PostgreSQL, via sqlmodel.

Threads: the engine is SQLAlchemy's synchronous one; every database call runs in a worker
thread (``anyio.to_thread``), so the event loop never waits on the database. Reads run
concurrently, up to ``_READERS`` at a time.

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

Write path: every write statement is plain SQL prebuilt once per dialect when the store opens
(:class:`_Statements`) and run for all of a batch's rows in one driver call: ``executemany`` on
SQLite, one ``INSERT ... SELECT FROM unnest(arrays)`` on PostgreSQL. Orders are serialised once,
on the caller's side (so the entry is a snapshot), by :func:`_order_json`; that one JSON text
goes into both the journal row and the ``orders`` row, and each order's row is upserted once per
batch, with its last state. The writer thread then does little Python work per row, which
matters: it shares the GIL with the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar, cast

import anyio
import anyio.lowlevel
import attrs
import orjson
import structlog
from sqlalchemy import Connection, CursorResult, Dialect, Engine, Table, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
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
    ensure_schema,
)
from hft._errors import ConfigError, HftError, NetworkError, ValidationError
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
_CONNECT_TIMEOUT_S: Final = 10
# An instrument master can hold 100k rows: saving it in slices lets order writes in between.
_INSTRUMENT_SLICE: Final = 2_000
# Execution option that marks the writer's connections (SQLite takes the write lock at BEGIN).
_WRITER: Final = "hft_writer"

log = structlog.get_logger("hft.storage")


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_QUERY_PASSWORD: Final = re.compile(r"(?i)(password=)[^&]*")


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs (``postgresql://u:***@h/db``)."""
    base, sep, query = url.partition("?")
    scheme, colons, rest = base.partition("://")
    credentials, at, location = rest.rpartition("@")
    if at and ":" in credentials:
        base = f"{scheme}{colons}{credentials.split(':', 1)[0]}:***@{location}"
    return base + sep + _QUERY_PASSWORD.sub(r"\1***", query)


# ----------------------------------------------------------------------------------------------
# Jobs for the writer
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class _JournalRow:
    order_id: str
    account: str
    client_order_id: str
    status: str
    is_terminal: bool
    kind: str
    at: dt.datetime
    order: dict[str, Any]  # the unstructured order: a snapshot taken when the caller asked


@attrs.define(eq=False)
class _Job:
    """One caller's write: journal rows (merged with the batch's others) or an ``apply``.

    ``wake`` is set when the job is done, or when its caller is to take over as the writer.
    """

    journal: Sequence[_JournalRow] = ()
    apply: Callable[[Connection], None] | None = None
    wake: anyio.Event = attrs.Factory(anyio.Event)
    seqs: list[int] = attrs.Factory(list)
    error: Exception | None = None
    done: bool = False

    def fail(self, error: Exception) -> None:
        self.error = error
        self.done = True


def _upsert(
    conn: Connection, model: type[Any], keys: Sequence[str], update: Sequence[str] | None
) -> Executable:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET update (or DO NOTHING when ``None``)."""
    if conn.dialect.name == "postgresql":
        pg = pg_insert(model)
        if update is None:
            return pg.on_conflict_do_nothing(index_elements=keys)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={c: pg.excluded[c] for c in update}
        )
    lite = sqlite_insert(model)
    if update is None:
        return lite.on_conflict_do_nothing(index_elements=keys)
    return lite.on_conflict_do_update(
        index_elements=keys, set_={c: lite.excluded[c] for c in update}
    )


def _last_per_key(rows: Iterable[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    # One upsert statement may not touch a row twice on PostgreSQL: keep each key's last value.
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        latest[tuple(row[k] for k in keys)] = row
    return list(latest.values())


def _append_journal(conn: Connection, rows: Sequence[_JournalRow]) -> list[int]:
    """Upsert each order's latest state, then append the events; return their seqs in order."""
    data = [_dumps(row.order) for row in rows]
    orders = _last_per_key(
        (
            {
                "order_id": row.order_id,
                "account": row.account,
                "client_order_id": row.client_order_id,
                "status": row.status,
                "is_terminal": row.is_terminal,
                "updated_at": row.at,
                "data": text_,
            }
            for row, text_ in zip(rows, data, strict=True)
        ),
        "order_id",
    )
    columns = ("account", "client_order_id", "status", "is_terminal", "updated_at", "data")
    conn.execute(_upsert(conn, OrderRow, ("order_id",), columns), orders)
    events = [
        {"order_id": row.order_id, "kind": row.kind, "at": row.at, "data": text_}
        for row, text_ in zip(rows, data, strict=True)
    ]
    stmt = insert(OrderEventRow).returning(col(OrderEventRow.seq), sort_by_parameter_order=True)
    # The primary key is never NULL; the model types it optional only because inserts omit it.
    return cast("list[int]", list(conn.execute(stmt, events).scalars()))


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


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


# ----------------------------------------------------------------------------------------------
# The backend
# ----------------------------------------------------------------------------------------------


class SqlStorage(Storage):
    """The SQL backend; ``commits`` and ``writes`` count transactions and the jobs they held."""

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
        self._engine: Engine | None = None
        self._writer_engine: Engine | None = None
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
        self._engine = engine
        self._writer_engine = engine.execution_options(**{_WRITER: True})
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
            self._engine = self._writer_engine = None
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
        if _is_unreachable(exc):
            return NetworkError(
                f"storage {self._where}: {self._reason(exc)}", code="storage_unreachable"
            )
        if isinstance(exc, sa_exc.DataError | OverflowError):  # OverflowError: SQLite's int64
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
        # Let the tasks woken by the last commit run first: those that write again at once join
        # this batch instead of waiting a whole commit for the next one.
        await anyio.lowlevel.cancel_shielded_checkpoint()
        batch, self._pending = self._pending, []
        try:
            # Shielded: once taken, a batch commits and its callers learn the outcome.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._commit, batch, limiter=self._write_limiter)
        finally:
            for job in batch:
                if not job.done:  # only if the thread itself could not run
                    job.fail(HftError("storage writer failed", code="storage_unknown"))
                job.wake.set()
            self._hand_over()

    def _hand_over(self) -> None:
        if self._pending:
            self._pending[0].wake.set()  # not done: its caller becomes the writer
        else:
            self._writing = False

    def _commit(self, batch: list[_Job]) -> None:
        """Writer thread: commit ``batch`` in one transaction, or isolate the job that fails."""
        try:
            self._transact(batch)
            return
        except Exception as exc:
            if len(batch) == 1 or _is_unreachable(exc):
                log.warning("storage.commit_failed", jobs=len(batch), error=self._reason(exc))
                for job in batch:
                    job.fail(self._hft_error(exc))
                return
            log.warning("storage.batch_retried", jobs=len(batch), error=self._reason(exc))
        for job in batch:
            try:
                self._transact([job])
            except Exception as exc:
                log.warning("storage.commit_failed", jobs=1, error=self._reason(exc))
                job.fail(self._hft_error(exc))

    def _transact(self, batch: list[_Job]) -> None:
        engine = self._writer_engine
        assert engine is not None, "the writer runs only while the storage is open"
        started = time.perf_counter()
        work = [job for job in batch if job.journal or job.apply is not None]
        if work:  # close() submits an empty job only to wait for the queue to drain
            with engine.begin() as conn:
                journal = [job for job in work if job.journal]
                if journal:
                    rows = [row for job in journal for row in job.journal]
                    seqs = iter(_append_journal(conn, rows))
                    for job in journal:
                        job.seqs = [next(seqs) for _ in job.journal]
                for job in work:
                    if job.apply is not None:
                        job.apply(conn)
            self.commits += 1
            self.writes += len(work)
            log.debug(
                "storage.commit", jobs=len(work), ms=round((time.perf_counter() - started) * 1e3, 3)
            )
        for job in batch:
            job.done = True

    # Orders ------------------------------------------------------------------------------------

    async def append_order_events(self, events: Sequence[tuple[Order, str]]) -> list[int]:
        if not events:
            return []
        at = utcnow()
        # Orders are mutable: unstructuring now snapshots them as they were when journalled.
        rows = [
            _JournalRow(
                order_id=order.order_id,
                account=order.request.account,
                client_order_id=order.request.client_order_id,
                status=order.status.value,
                is_terminal=order.is_terminal,
                kind=kind,
                at=at,
                order=converter.unstructure(order),
            )
            for order, kind in events
        ]
        job = _Job(journal=rows)
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

    async def load_orders(self, *, open_only: bool = False) -> list[Order]:
        query = select(col(OrderRow.data)).order_by(col(OrderRow.id))
        if open_only:
            query = query.where(col(OrderRow.is_terminal).is_(False))
        return await self._read(lambda conn: _structure_all(conn, query, Order))

    # Fills and positions -----------------------------------------------------------------------

    async def save_fills(self, fills: Sequence[Fill]) -> None:
        if not fills:
            return
        frozen = tuple(fills)  # Fill is immutable: it can be serialised later, in the writer

        def apply(conn: Connection) -> None:
            rows = [
                {
                    "broker_order_id": f.broker_order_id,
                    "fill_id": f.fill_id,
                    "account": f.account,
                    "order_id": f.order_id,
                    "at": f.at,
                    "data": _dumps(converter.unstructure(f)),
                }
                for f in frozen
            ]
            conn.execute(_upsert(conn, FillRow, ("broker_order_id", "fill_id"), None), rows)

        await self._write(_Job(apply=apply))

    async def load_fills(self, account: str | None = None) -> list[Fill]:
        query = select(col(FillRow.data)).order_by(col(FillRow.id))
        if account is not None:
            query = query.where(col(FillRow.account) == account)
        return await self._read(lambda conn: _structure_all(conn, query, Fill))

    async def save_positions(self, positions: Sequence[Position]) -> None:
        if not positions:
            return
        # Positions are mutable: snapshot them now.
        snapshot = [
            {
                "account": p.account,
                "instrument": p.instrument,
                "product": p.product.value,
                "data": converter.unstructure(p),
            }
            for p in positions
        ]

        def apply(conn: Connection) -> None:
            rows = [{**row, "data": _dumps(row["data"])} for row in snapshot]
            keys = ("account", "instrument", "product")
            conn.execute(_upsert(conn, PositionRow, keys, ("data",)), _last_per_key(rows, *keys))

        await self._write(_Job(apply=apply))

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

            def apply(conn: Connection, part: tuple[Instrument, ...] = part) -> None:
                rows = [
                    {
                        "key": i.key,
                        "exchange": i.exchange,
                        "symbol": i.symbol,
                        "token": i.token,
                        "data": _dumps(converter.unstructure(i)),
                    }
                    for i in part
                ]
                update = ("exchange", "symbol", "token", "data")
                stmt = _upsert(conn, InstrumentRow, ("key",), update)
                conn.execute(stmt, _last_per_key(rows, "key"))

            await self._write(_Job(apply=apply))

    async def load_instruments(self) -> list[Instrument]:
        query = select(col(InstrumentRow.data)).order_by(col(InstrumentRow.key))
        return await self._read(lambda conn: _structure_all(conn, query, Instrument))

    async def save_account(self, account: Account) -> None:
        row = {
            "account_id": account.account_id,
            "broker": account.broker,
            "environment": account.environment.value,
            "data": _dumps(converter.unstructure(account)),
        }

        def apply(conn: Connection) -> None:
            update = ("broker", "environment", "data")
            conn.execute(_upsert(conn, AccountRow, ("account_id",), update), [row])

        await self._write(_Job(apply=apply))

    async def load_accounts(self) -> list[Account]:
        query = select(col(AccountRow.data)).order_by(col(AccountRow.account_id))
        return await self._read(lambda conn: _structure_all(conn, query, Account))

    # Users -------------------------------------------------------------------------------------

    async def save_user(self, user: User, password_hash: str | None = None) -> None:
        row = {
            "username": user.username,
            "password_hash": password_hash,
            "data": _dumps(converter.unstructure(user)),
        }
        # No new hash: update everything but the stored one (a new user gets none).
        update = ("data",) if password_hash is None else ("data", "password_hash")

        def apply(conn: Connection) -> None:
            conn.execute(_upsert(conn, UserRow, ("username",), update), [row])

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
        row = {"kind": kind, "at": utcnow(), "data": _dumps(payload)}

        def apply(conn: Connection) -> None:
            conn.execute(insert(AuditRow), [row])

        await self._write(_Job(apply=apply))

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
        row = {"namespace": namespace, "key": key, "value": bytes(value)}

        def apply(conn: Connection) -> None:
            conn.execute(_upsert(conn, StateRow, ("namespace", "key"), ("value",)), [row])

        await self._write(_Job(apply=apply))

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
