"""Shared fixtures and builders; also lets the tests run from a source checkout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# When the distribution is installed (as nox installs plugins/hft-*), this changes nothing.
SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from hft_sim.broker import SimBroker  # noqa: E402
from hft_sim.config import SimConfig  # noqa: E402

from hft._builtin.memory import MemoryStorage  # noqa: E402
from hft._config import structure_section  # noqa: E402
from hft._plugins import PluginContext, PluginHost  # noqa: E402
from hft.contracts import Storage  # noqa: E402

_PLUGINS: PluginHost | None = None

#: No latency, no jitter: an order is acknowledged before ``place_order`` returns.
INSTANT = {"order_ms": 0, "report_ms": 0, "jitter_ms": 0}
#: No synthetic participants: the books hold only what a test puts there.
QUIET = {"market_makers": {"enabled": False}, "noise_takers": {"enabled": False}}


@pytest.fixture
def anyio_backend() -> str:
    """The hft host runs on trio, so async tests do too."""
    return "trio"


def engines() -> PluginHost:
    """The installed ``ext`` matching engine, found as the host finds it (its entry point)."""
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = PluginHost.load(only=["ext"])
    return _PLUGINS


def sim_config(**settings: Any) -> SimConfig:
    """A config structured the way the host structures ``[brokers.sim]`` (manual clock unless
    ``clock`` is given)."""
    settings.setdefault("clock", "manual")
    config: SimConfig = structure_section(settings, SimConfig, "brokers.sim")
    return config


def make_sim(
    storage: Storage | None = None,
    *,
    name: str = "sim",
    data_dir: Path = Path("."),
    **settings: Any,
) -> SimBroker:
    """An unconnected sim broker on ``storage`` (a fresh in-memory store by default)."""
    context = PluginContext(name, data_dir, storage or MemoryStorage("memory://"), engines())
    return SimBroker(sim_config(**settings), context)
