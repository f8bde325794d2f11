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

Checkpoints stay off the commit path. Left to SQLite, the commit that takes the WAL past 1,000
pages copies it into the database file and syncs that file before it returns: 3 to 30 ms, about
twenty times a second at 3,000 orders/s, a third of this process's time, and every batch queued
behind it waited that long. So the writing connection never checkpoints; every
``_CHECKPOINT_EVERY`` commits, a thread checkpoints (``PASSIVE``: it never blocks a commit) from a
connection of its own, pass after pass while commits land beside it, until one leaves at most
``_CATCH_UP_FRAMES`` pages behind. A WAL starts over from its beginning only at a commit that
finds it wholly copied, which under a steady stream of commits a thread's pass never leaves it:
so the writer copies those last pages itself, once it has replied and no request is waiting
(nothing can commit beside it then). If no such gap comes and the WAL passes
``_WAL_FRAMES_LIMIT`` pages, it does so between two requests anyway.
"""

from __future__ import annotations

import contextlib
import pickle
import select
import socket
import sqlite3
import struct
import sys
import threading
from typing import Any

_LENGTH = struct.Struct("!I")
# Commits between two checkpoints by the thread (each commit adds a few dozen WAL pages).
_CHECKPOINT_EVERY = 50
# Passes of one checkpoint while commits keep landing beside it, each copying what landed during
# the last, until that is at most _CATCH_UP_FRAMES pages: what the writer then copies itself.
_CHECKPOINT_PASSES = 10
_CATCH_UP_FRAMES = 64
# WAL pages (4 KiB) past which the writer stops waiting for the thread and catches up itself.
_WAL_FRAMES_LIMIT = 16384


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit syncs the WAL; a checkpoint syncs the WAL before copying it and the
    # database file after, so a WAL that starts over never overwrites pages the file lacks.
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _checkpoint(conn: sqlite3.Connection) -> tuple[bool, int]:
    """A ``PASSIVE`` checkpoint: whether it copied every page the WAL had when it began, and
    how many that was."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return not busy and frames == copied, frames


class _Checkpointer(threading.Thread):
    """Checkpoints when :meth:`request` is called (see the module docstring)."""

    def __init__(self, path: str) -> None:
        super().__init__(name="hft-sqlite-checkpoint", daemon=True)
        self._path = path
        self._due = threading.Event()
        self._stopping = False
        self.copied = False  # its passes are over: the writer's catch-up is due
        self.behind = False  # ... and the WAL is past the limit: due even with requests waiting

    def request(self) -> None:
        self._due.set()

    def stop(self) -> None:
        self._stopping = True
        self._due.set()
        self.join()

    def run(self) -> None:
        conn = _connect(self._path)
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stopping:
                    return
                frames = seen = 0
                for _ in range(_CHECKPOINT_PASSES):
                    try:
                        done, frames = _checkpoint(conn)
                    except sqlite3.Error:
                        break  # the writer catches up instead
                    if (done and frames - seen <= _CATCH_UP_FRAMES) or frames > _WAL_FRAMES_LIMIT:
                        break
                    seen = frames
                self.behind = frames > _WAL_FRAMES_LIMIT
                self.copied = True
        finally:
            conn.close()


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


def _waiting(sock: socket.socket, buffer: bytearray) -> bool:
    """Whether a request has (begun to) come in."""
    return bool(buffer) or bool(select.select([sock], [], [], 0)[0])


def main(path: str, fd: int) -> None:
    sock = socket.socket(fileno=fd)
    conn = _connect(path)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the thread checkpoints instead
    # A WAL that starts over longer than this is cut back to it.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    checkpointer = _Checkpointer(path)
    checkpointer.start()
    sock.sendall(b"R")
    buffer = bytearray()
    commits = 0
    try:
        while _receive(sock, _LENGTH.size, buffer):
            (size,) = _LENGTH.unpack_from(buffer)
            if not _receive(sock, _LENGTH.size + size, buffer):
                break
            request = pickle.loads(buffer[_LENGTH.size : _LENGTH.size + size])
            del buffer[: _LENGTH.size + size]
            reply = _run(conn, request)
            data = pickle.dumps(reply)
            sock.sendall(_LENGTH.pack(len(data)) + data)
            if reply[0] != "ok":
                continue
            commits += 1
            if commits % _CHECKPOINT_EVERY == 0:
                if checkpointer.is_alive():
                    checkpointer.request()
                else:  # it could not open its connection: the writer checkpoints alone
                    checkpointer.copied = checkpointer.behind = True
            if checkpointer.copied and (checkpointer.behind or not _waiting(sock, buffer)):
                # Nothing commits beside it: the WAL is then wholly copied, and the next commit
                # starts it over.
                checkpointer.copied = checkpointer.behind = False
                # If it fails, the WAL only grows until the next try: every commit is synced.
                with contextlib.suppress(sqlite3.Error):
                    _checkpoint(conn)
    finally:
        checkpointer.stop()
        conn.close()  # the last connection to close checkpoints and removes the WAL
        sock.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
