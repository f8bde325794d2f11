"""The plugin as the host loads it: its registrations, the normaliser hook, and its README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import hft_zerodha.plugin
from hft_zerodha.config import ZerodhaConfig

from hft._builtin.memory import MemoryStorage
from hft._plugins import PluginContext, PluginHost
from hft.model import Instrument, OrderStatus, OrderUpdate, StreamMode, Tick

from . import kite_frames as kf

README = Path(__file__).resolve().parents[1] / "README.md"


def test_registrations() -> None:
    host = PluginHost.from_modules({"zerodha": hft_zerodha.plugin})
    assert host.brokers.get("zerodha").config is ZerodhaConfig
    assert "zerodha.ticker" in host.normalisers
    assert "zerodha" in host.commands


def test_the_installed_entry_point_is_found() -> None:
    host = PluginHost.load(only=["zerodha"])
    assert host.plugins["zerodha"].error is None
    assert "zerodha" in host.brokers


def test_the_normaliser_hook_builds_a_normaliser_for_instruments(tmp_path: Path) -> None:
    host = PluginHost.from_modules({"zerodha": hft_zerodha.plugin})
    context = PluginContext("x", tmp_path, MemoryStorage("memory://"), host)
    infy = Instrument("NSE", "INFY", 408065)
    normaliser = context.normaliser("zerodha.ticker", [infy])
    frame = kf.frame([kf.ltp(kf.Packet(token=408065, last_price=157370)), kf.HEARTBEAT[:0]])
    assert normaliser.normalise(frame) == [Tick("NSE:INFY", StreamMode.LTP, 157370)]
    message = {
        "type": "order",
        "data": {
            "order_id": "1",
            "status": "COMPLETE",
            "exchange": "NSE",
            "tradingsymbol": "INFY",
            "quantity": 2,
            "filled_quantity": 2,
            "average_price": 1573.7,
        },
    }
    (update,) = normaliser.normalise(json.dumps(message))
    assert isinstance(update, OrderUpdate)
    assert (update.status, update.average_price) == (OrderStatus.FILLED, 157370)
    assert normaliser.normalise(json.dumps({"type": "message", "data": "hi"})) == []


def test_the_readme_documents_every_config_key() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    keys = {field.name for field in attrs.fields(ZerodhaConfig)}
    assert keys <= documented, f"undocumented: {sorted(keys - documented)}"
    for needed in ("decode_ticks", "hft zerodha login", "hft zerodha logout", 'plugin = "zerodha"'):
        assert needed in text
