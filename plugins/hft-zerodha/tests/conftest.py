"""Shared fixtures: a fake Kite server on loopback and a broker connected to it."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

# When the distribution is installed (as nox installs plugins/hft-*), this changes nothing.
SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from hft_zerodha import session as sessions  # noqa: E402
from hft_zerodha.broker import ZerodhaBroker  # noqa: E402
from hft_zerodha.config import ZerodhaConfig  # noqa: E402

from hft._builtin.memory import MemoryStorage  # noqa: E402
from hft._config import structure_section  # noqa: E402
from hft._plugins import PluginContext  # noqa: E402
from hft._secret import Secret  # noqa: E402
from hft.model import utcnow  # noqa: E402

from .fake_kite import API_KEY, API_SECRET, USER_ID, FakeKite  # noqa: E402

#: Fast reconnection and stall detection, so the tests spend little time waiting.
FAST: dict[str, Any] = {
    "stall_timeout_s": 1.0,
    "reconnect_initial_s": 0.05,
    "reconnect_max_s": 0.2,
    "retry_initial_s": 0.05,
}


@pytest.fixture
def anyio_backend() -> str:
    """The hft host runs on trio, so async tests do too."""
    return "trio"


def kite_config(server: FakeKite, **settings: Any) -> ZerodhaConfig:
    """A config structured the way the host structures ``[brokers.zerodha]``."""
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "api_url": server.url,
        "ws_url": server.ws_url,
        "login_url": server.url + "/connect/login",
        **FAST,
    }
    values.update(settings)
    config: ZerodhaConfig = structure_section(values, ZerodhaConfig, "brokers.zerodha")
    return config


def store_token(
    data_dir: Path, token: str, *, name: str = "zerodha", expires_in_s: float = 3600
) -> Path:
    path = sessions.default_token_file(data_dir, name)
    now = utcnow()
    sessions.save(
        path,
        sessions.StoredSession(
            api_key=API_KEY,
            user_id=USER_ID,
            access_token=Secret(token),
            login_time=now - dt.timedelta(hours=1),
            expires_at=now + dt.timedelta(seconds=expires_in_s),
            user_name="Test User",
        ),
    )
    return path


def make_broker(server: FakeKite, data_dir: Path, **settings: Any) -> ZerodhaBroker:
    context = PluginContext("zerodha", data_dir, MemoryStorage("memory://"))
    return ZerodhaBroker(kite_config(server, **settings), context)


@contextlib.asynccontextmanager
async def connected(
    tmp_path: Path, *, server_options: dict[str, Any] | None = None, **settings: Any
) -> AsyncIterator[tuple[FakeKite, ZerodhaBroker]]:
    async with FakeKite.running(**(server_options or {})) as server:
        store_token(tmp_path, server.issue_access_token())
        broker = make_broker(server, tmp_path, **settings)
        await broker.connect()
        try:
            yield server, broker
        finally:
            await broker.close()
