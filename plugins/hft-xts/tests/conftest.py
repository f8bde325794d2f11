"""Shared fixtures: the fake XTS server and brokers logged in to it as Pro or dealer."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

# When the distribution is installed (as nox installs plugins/hft-*), this changes nothing.
SRC = Path(__file__).resolve().parents[1] / "src"
HERE = Path(__file__).resolve().parent
for path in (SRC, HERE):  # HERE: the fake server module, named xts_fake to stay unique
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from hft_xts.broker import XtsBroker  # noqa: E402
from hft_xts.config import XtsConfig  # noqa: E402
from xts_fake import FakeXts  # noqa: E402

from hft._config import structure_section  # noqa: E402

PRO = {"interactive_app_key": "pro-key", "interactive_secret_key": "pro-secret"}
DEALER = {"interactive_app_key": "dealer-key", "interactive_secret_key": "dealer-secret"}
MD = {"marketdata_app_key": "md-key", "marketdata_secret_key": "md-secret"}
#: The fake answers at once: no reason to wait like the real rate limits make us.
FAST = {
    "query_rate_per_s": 1000.0,
    "order_rate_per_s": 1000.0,
    "reconnect_initial_s": 0.05,
    "reconnect_max_s": 0.2,
}


@pytest.fixture
def anyio_backend() -> str:
    """The hft host runs on trio, so async tests do too."""
    return "trio"


def xts_config(url: str, login: dict[str, str] = PRO, **settings: Any) -> XtsConfig:
    """A config structured the way the host structures ``[brokers.xts]``."""
    data = {"url": url, **login, **MD, **FAST, **settings}
    config: XtsConfig = structure_section(data, XtsConfig, "brokers.xts")
    return config


@pytest.fixture
async def server() -> AsyncIterator[FakeXts]:
    async with FakeXts.running() as fake:
        yield fake


def make_broker(url: str, tmp: Path, login: dict[str, str] = PRO, **settings: Any) -> XtsBroker:
    return XtsBroker(xts_config(url, login, **settings), "xts", data_dir=tmp)


class Events:
    """Reads a broker's event stream beside a test and waits for what it expects."""

    def __init__(self, broker: XtsBroker) -> None:
        self.broker = broker
        self.seen: list[Any] = []

    async def pump(self) -> None:
        async for event in self.broker.events():
            self.seen.append(event)

    async def wait(self, predicate: Any, timeout_s: float = 5.0) -> Any:
        with anyio.fail_after(timeout_s):
            while True:
                for event in self.seen:
                    if predicate(event):
                        return event
                await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def streaming(broker: XtsBroker) -> AsyncIterator[Events]:
    """The broker's events collected while the block runs (connects it first)."""
    await broker.connect()
    events = Events(broker)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(events.pump)
            yield events
            tasks.cancel_scope.cancel()
    finally:
        await broker.close()
