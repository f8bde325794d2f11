"""The SQLite journal writer process: runs the statements it is sent, one transaction a request.

Started by :class:`hft._builtin._sql_storage.SqlStorage` as ``python -I -S <this file> <database>
<socket fd>``, so it needs nothing but the standard library and starts in tens of milliseconds.
It writes ``R`` once its connection is open, then serves requests until the socket closes (the
store closing, or the host process dying).

A request is a length-prefixed pickle: a list of ``(sql, parameters, counted)`` statements. They
run in one ``BEGIN IMMEDIATE`` transaction, committed with ``synchronous=FULL`` (the WAL is synced
before the reply). The reply is ``("ok", rows, last_rowid)``, where ``rows`` sums the row counts of
the ``counted`` statements and ``last_rowid`` is the rowid of the last row the last of them
inserted, or ``("error", type name, SQLite error code, message)`` after a
rollback. The pickles come from the process that started this one, over a socketpair only the two
hold.
"""

from __future__ import annotations

import pickle
import socket
import sqlite3
import struct
import sys
from typing import Any

_LENGTH = struct.Struct("!I")


def _receive(sock: socket.socket, size: int, buffer: bytearray) -> bool:
    while len(buffer) < size:
        try:
            chunk = sock.recv(1 << 20)
        except OSError:  # the other end is gone
            return False
        if not chunk:
            return False
        buffer += chunk
    return True


def _run(
    conn: sqlite3.Connection, statements: list[tuple[str, list[Any], bool]]
) -> tuple[Any, ...]:
    cursor = conn.cursor()
    try:
        cursor.execute("BEGIN IMMEDIATE")
        rows = last = 0
        for sql, parameters, counted in statements:
            cursor.execute(sql, parameters)
            if counted:
                rows += cursor.rowcount
                last = cursor.lastrowid or 0  # the last row's id after a multi-row INSERT
        cursor.execute("COMMIT")
        return ("ok", rows, last)
    except Exception as exc:
        if conn.in_transaction:
            conn.rollback()
        return ("error", type(exc).__name__, getattr(exc, "sqlite_errorcode", None), str(exc))
    finally:
        cursor.close()


def main(path: str, fd: int) -> None:
    sock = socket.socket(fileno=fd)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # SQLite checkpoints after a commit that leaves the WAL over 1,000 pages (here, between two
    # requests: nobody else commits meanwhile, so the WAL then starts over), and cuts a WAL
    # that grew longer than this back to it.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    sock.sendall(b"R")
    buffer = bytearray()
    while _receive(sock, _LENGTH.size, buffer):
        (size,) = _LENGTH.unpack_from(buffer)
        if not _receive(sock, _LENGTH.size + size, buffer):
            break
        request = pickle.loads(buffer[_LENGTH.size : _LENGTH.size + size])
        del buffer[: _LENGTH.size + size]
        reply = pickle.dumps(_run(conn, request))
        sock.sendall(_LENGTH.pack(len(reply)) + reply)
    conn.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
