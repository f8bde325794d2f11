"""The SQL storage schema: tables as sqlmodel classes, a version row, and ordered migrations.

Every table keeps the full object as JSON text (``data``, written through the model's converter)
plus the columns queries filter, sort or deduplicate on. JSON is stored as text rather than a
native JSON type so that both dialects hold exactly what was written (PostgreSQL's ``jsonb``
refuses some strings the model allows, such as ``"\\u0000"``).

Versioning: a fresh database gets the current tables and ``schema_version`` = 1 plus the number
of :data:`MIGRATIONS` steps. An older one has each pending :data:`MIGRATIONS` step applied in order,
then any missing tables created, all in the caller's transaction, so an upgrade applies whole or
not at all. A step only alters tables that existed at its version; new tables need no step, since
``create_all`` adds them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Final

import attrs
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, insert, select, update

from hft._errors import ConfigError

__all__ = [
    "METADATA",
    "MIGRATIONS",
    "Migration",
    "ensure_schema",
]


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on both dialects (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("storage only accepts timezone-aware datetimes")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets 64-bit identities.
_Serial = BigInteger().with_variant(Integer(), "sqlite")


class _Table(SQLModel, registry=registry()):
    """Base of hft's tables: a private registry keeps an application's SQLModel.metadata clean."""


class SchemaVersionRow(_Table, table=True):
    __tablename__ = "schema_version"

    id: int = Field(default=1, primary_key=True)
    version: int


class UserRow(_Table, table=True):
    __tablename__ = "users"

    username: str = Field(primary_key=True)
    password_hash: str | None = None
    data: str = Field(sa_type=Text)


class AccountRow(_Table, table=True):
    __tablename__ = "accounts"

    account_id: str = Field(primary_key=True)
    broker: str
    environment: str
    data: str = Field(sa_type=Text)


class InstrumentRow(_Table, table=True):
    __tablename__ = "instruments"
    __table_args__ = (Index("ix_instruments_exchange_token", "exchange", "token"),)

    key: str = Field(primary_key=True)
    exchange: str
    symbol: str
    token: int = Field(sa_type=BigInteger)
    data: str = Field(sa_type=Text)


class OrderRow(_Table, table=True):
    """Each order at its latest journalled state; ``id`` keeps first-seen order."""

    __tablename__ = "orders"
    __table_args__ = (UniqueConstraint("order_id", name="uq_orders_order_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=_Serial)
    order_id: str
    account: str = Field(index=True)
    client_order_id: str = Field(index=True)
    # Not indexed (since version 2): they change at every journalled step, so an index on
    # either costs a B-tree delete and insert per step, and no query filters on them.
    status: str
    is_terminal: bool = Field(index=True)
    updated_at: dt.datetime = Field(sa_type=UtcDateTime)
    data: str = Field(sa_type=Text)


class OrderEventRow(_Table, table=True):
    """The append-only journal; ``seq`` is what clients resume from."""

    __tablename__ = "order_events"
    # AUTOINCREMENT on SQLite: a seq is never reused, even after the newest row is deleted.
    __table_args__ = {"sqlite_autoincrement": True}

    seq: int | None = Field(default=None, primary_key=True, sa_type=_Serial)
    order_id: str = Field(
        sa_column_args=[ForeignKey("orders.order_id", name="fk_order_events_order_id")],
        index=True,
    )
    kind: str
    at: dt.datetime = Field(sa_type=UtcDateTime)
    data: str = Field(sa_type=Text)


class FillRow(_Table, table=True):
    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("broker_order_id", "fill_id", name="uq_fills_broker_order_fill"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_Serial)
    broker_order_id: str
    fill_id: str
    account: str = Field(index=True)
    order_id: str = Field(index=True)
    at: dt.datetime = Field(sa_type=UtcDateTime)
    data: str = Field(sa_type=Text)


class PositionRow(_Table, table=True):
    __tablename__ = "positions"
    __table_args__ = (
        UniqueConstraint("account", "instrument", "product", name="uq_positions_key"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_Serial)
    account: str = Field(index=True)
    instrument: str
    product: str
    data: str = Field(sa_type=Text)


class AuditRow(_Table, table=True):
    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_kind_id", "kind", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=_Serial)
    kind: str
    at: dt.datetime = Field(sa_type=UtcDateTime)
    data: str = Field(sa_type=Text)


class StateRow(_Table, table=True):
    __tablename__ = "state"

    namespace: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    value: bytes = Field(sa_type=LargeBinary)


METADATA: Final = _Table.metadata


# ----------------------------------------------------------------------------------------------
# Versions and migrations
# ----------------------------------------------------------------------------------------------


@attrs.frozen
class Migration:
    """One upgrade step: ``apply`` takes a database at ``version - 1`` to ``version``."""

    version: int
    summary: str
    apply: Callable[[Connection], object]


def _drop_order_write_indexes(conn: Connection) -> None:
    for name in ("ix_orders_status", "ix_orders_updated_at"):
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")


#: The upgrade steps after version 1, oldest first; the current version is 1 + len(MIGRATIONS).
#: To change an existing table, change its class above and append a step, e.g.
#: ``Migration(3, "orders.venue", lambda c: c.exec_driver_sql("ALTER TABLE orders ADD v TEXT"))``
MIGRATIONS: Sequence[Migration] = (
    Migration(2, "orders: drop the status and updated_at indexes", _drop_order_write_indexes),
)

# Serialises schema changes between processes sharing one PostgreSQL database ("hftschem").
_PG_LOCK_KEY: Final = 0x6866_7473_6368_656D


def ensure_schema(conn: Connection) -> tuple[int, int]:
    """Create or upgrade the schema inside ``conn``'s transaction; return (found, now) versions.

    ``found`` is 0 for an empty database. A database already at the current version is left
    untouched. Raises :class:`ConfigError` for a database newer than this code, or one holding
    hft's tables without a version row.
    """
    steps = tuple(MIGRATIONS)
    target = 1 + len(steps)
    for number, step in enumerate(steps, start=2):
        if step.version != number:
            raise ConfigError(
                f"migration {step.summary!r} is numbered {step.version}, not {number}"
            )
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    existing = set(inspect(conn).get_table_names()) & set(METADATA.tables)
    found = 0
    if SchemaVersionRow.__tablename__ in existing:
        found = conn.execute(select(SchemaVersionRow.version)).scalar_one_or_none() or 0
    if found == target:
        return found, found
    if found > target:
        raise ConfigError(
            f"the database is at schema version {found} but this hft knows only up to {target}; "
            "upgrade hft",
            code="schema_too_new",
        )
    if found == 0 and existing - {SchemaVersionRow.__tablename__}:
        raise ConfigError(
            f"the database holds hft tables ({', '.join(sorted(existing))}) but no schema "
            "version; refusing to guess how to upgrade them",
            code="schema_unknown",
        )
    if found:
        for step in steps[found - 1 :]:
            step.apply(conn)
    METADATA.create_all(conn, checkfirst=True)
    if found:
        conn.execute(update(SchemaVersionRow).values(version=target))
    else:
        conn.execute(insert(SchemaVersionRow).values(id=1, version=target))
    return found, target
