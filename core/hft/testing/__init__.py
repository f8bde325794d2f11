"""The testing kit: build hosts with an explicit plugin list, a deterministic broker, and the
broker conformance suite every broker plugin runs against itself.

Tests never pick up whatever happens to be installed: :func:`make_host` loads exactly the plugin
modules it is given (plus the core's built-ins).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hft._config import config_from_mapping, resolve_config
from hft._host import Host, Services
from hft._plugins import PluginHost
from hft.testing._broker import TestBroker, TestVenue

if TYPE_CHECKING:
    from hft.testing.conformance import BrokerConformance, VenueHarness

__all__ = [
    "BrokerConformance",
    "Host",
    "Services",
    "TestBroker",
    "TestVenue",
    "VenueHarness",
    "make_host",
]


def __getattr__(name: str) -> Any:
    # The conformance suite imports pytest: load it only when a test asks for it, so that the
    # ``test`` broker plugin (which imports this package) keeps ``hft`` start-up light.
    if name in ("BrokerConformance", "VenueHarness"):
        from hft.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module 'hft.testing' has no attribute {name!r}")


def make_host(
    plugins: Mapping[str, object] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    data_dir: Path | None = None,
) -> Host:
    """A host with exactly ``plugins`` (name → plugin module) and ``config`` (a parsed TOML tree).

    Use it as ``async with make_host(...).running() as services:``. Storage defaults to
    ``memory://`` unless the config says otherwise.
    """
    tree: dict[str, Any] = {key: dict(value) for key, value in (config or {}).items()}
    tree.setdefault("storage", {}).setdefault("url", "memory://")
    if data_dir is not None:
        tree.setdefault("host", {})["data_dir"] = str(data_dir)
    plugin_host = PluginHost.from_modules(plugins or {})
    return Host(resolve_config(config_from_mapping(tree), plugin_host), plugin_host)
