"""The stored Kite session: the access token a daily login produces, kept in a 0600 file.

Kite access tokens live until 06:00 IST the next morning (or until a logout), so
``hft zerodha login`` writes one per trading day and ``hft serve`` reads it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Final

import attrs

from hft._errors import AuthError
from hft._secret import Secret

from .parsing.kite import IST

__all__ = ["StoredSession", "checksum", "default_token_file", "expiry_after", "load", "save"]

_VERSION: Final = 1
_EXPIRY: Final = dt.time(6, 0)


def checksum(api_key: str, token: str, api_secret: str) -> str:
    """SHA-256 hex of ``api_key + token + api_secret``, what ``POST /session/token`` checks."""
    return hashlib.sha256(f"{api_key}{token}{api_secret}".encode()).hexdigest()


def expiry_after(login: dt.datetime) -> dt.datetime:
    """The first 06:00 IST strictly after ``login`` (an aware datetime), in UTC."""
    local = login.astimezone(IST)
    cutoff = dt.datetime.combine(local.date(), _EXPIRY, tzinfo=IST)
    if cutoff <= local:
        cutoff += dt.timedelta(days=1)
    return cutoff.astimezone(dt.UTC)


def default_token_file(data_dir: Path, broker: str) -> Path:
    return data_dir / f"zerodha-{broker}.token"


@attrs.frozen
class StoredSession:
    api_key: str
    user_id: str
    access_token: Secret
    login_time: dt.datetime
    expires_at: dt.datetime
    user_name: str = ""

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.expires_at


def save(path: Path, session: StoredSession) -> None:
    """Write ``session`` to ``path``, readable and writable by its owner only, atomically."""
    payload = {
        "version": _VERSION,
        "api_key": session.api_key,
        "user_id": session.user_id,
        "user_name": session.user_name,
        "access_token": session.access_token.reveal(),
        "login_time": session.login_time.isoformat(),
        "expires_at": session.expires_at.isoformat(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may not have widened it, but a stale file might be
        os.write(fd, json.dumps(payload).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def load(path: Path, api_key: str, broker: str, now: dt.datetime) -> StoredSession:
    """The session stored at ``path`` for ``api_key``, still valid at ``now``.

    Raises :class:`AuthError` saying what to run when there is none, it is for another api
    key, it is unreadable, readable by others, or expired.
    """
    where = f"broker {broker!r}"
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AuthError(
            f"{where}: no Kite session in {path}; {_hint(broker)}", code="kite_login_required"
        ) from None
    except OSError as exc:
        raise AuthError(
            f"{where}: cannot read {path}: {exc.strerror}", code="kite_login_required"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuthError(
            f"{where}: {path} is readable by other users; remove it and {_hint(broker)}",
            code="kite_token_file_open",
        )
    try:
        data: Any = json.loads(raw)
        if data.get("version") != _VERSION:
            raise ValueError("unknown version")
        session = StoredSession(
            api_key=str(data["api_key"]),
            user_id=str(data["user_id"]),
            user_name=str(data.get("user_name", "")),
            access_token=Secret(str(data["access_token"])),
            login_time=dt.datetime.fromisoformat(data["login_time"]),
            expires_at=dt.datetime.fromisoformat(data["expires_at"]),
        )
        if session.expires_at.tzinfo is None or not session.access_token:
            raise ValueError("naive expiry or empty token")
    except (ValueError, TypeError, KeyError, AttributeError):
        raise AuthError(
            f"{where}: {path} is not a Kite session file; {_hint(broker)}",
            code="kite_login_required",
        ) from None
    if session.api_key != api_key:
        raise AuthError(
            f"{where}: the session in {path} is for another api key; {_hint(broker)}",
            code="kite_login_required",
        )
    if session.expired(now):
        stamp = session.expires_at.astimezone(IST).strftime("%Y-%m-%d %H:%M IST")
        raise AuthError(
            f"{where}: the Kite session expired at {stamp}; {_hint(broker)}",
            code="kite_session_expired",
        )
    return session


def _hint(broker: str) -> str:
    return f"run `hft zerodha login --broker {broker}` to log in"
