"""The built-in SQL storage plugin: ``sqlite:///path/hft.db`` and ``postgresql://...`` URLs.

Hook implementations only. The backend (:mod:`hft._builtin._sql_storage`) is imported when a
store is built, not when plugins load: sqlmodel and SQLAlchemy take a second to import, which
every ``hft`` command would otherwise pay.
"""

from __future__ import annotations

import hft
from hft.contracts import Storage
from hft.hookspecs import RegisterStorage


def open_sql_storage(url: str) -> Storage:
    """An unopened SQL backend for ``url`` (``sqlite``, ``postgresql`` or ``postgres``)."""
    from hft._builtin._sql_storage import SqlStorage

    return SqlStorage(url)


@hft.hookimpl
def hft_register_storage(register: RegisterStorage) -> None:
    for scheme in ("sqlite", "postgresql", "postgres"):
        register(scheme, open_sql_storage)
