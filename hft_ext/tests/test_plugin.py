"""The plugin as the host sees it: discovery, the engine factory, the bench command."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

import pytest

import hft
import hft_ext
from hft._plugins import PluginHost
from hft_ext import BUY, SELL, STP_CANCEL_RESTING, plugin
from hft_ext._bench import book_checksum, read_workload, replay

WORKLOAD_PY = Path(__file__).resolve().parents[3] / "shared" / "bench" / "workload.py"


def test_entry_point_names_the_plugin_module() -> None:
    (entry_point,) = [
        ep for ep in importlib.metadata.entry_points(group="hft.plugins") if ep.name == "ext"
    ]
    assert entry_point.value == "hft_ext.plugin"
    assert entry_point.load() is plugin


def test_host_registers_the_engine_and_describes_the_build() -> None:
    host = PluginHost.from_modules({"ext": plugin}, builtins=False)
    engine = host.engines.get("ext").factory(self_trade="cancel_resting")
    assert engine.self_trade == STP_CANCEL_RESTING
    info = host.plugins["ext"]
    assert info.details == ("compiled (mypyc)" if hft_ext.COMPILED else "interpreted")
    assert "hft_register_matching_engines" in info.hooks
    assert "bench" in host.commands


def test_factory_options() -> None:
    assert type(plugin.make_engine(interpreted=True)).__module__ in {
        "hft_ext._engine",
        "hft_ext._engine_interpreted",
    }
    with pytest.raises(hft.ConfigError, match="self_trade"):
        plugin.make_engine(self_trade="sometimes")
    with pytest.raises(hft.ConfigError, match="no option"):
        plugin.make_engine(depth=3)


def test_compiled_flag_matches_the_loaded_module() -> None:
    assert hft_ext._engine.__file__.endswith((".so", ".pyd")) == hft_ext.COMPILED
    assert hft_ext.load_engine(interpreted=True)().__class__.__name__ == "Engine"


def _write_oflow(path: Path, ops: list[tuple[int, int, int, int, int]]) -> None:
    import struct

    record = struct.Struct("<BBIiI")
    body = b"".join(record.pack(*op) for op in ops)
    path.write_bytes(b"OFLOW1\0\0" + struct.pack("<Q", len(ops)) + body)


def test_replay_and_checksum(tmp_path: Path, engine_class: type[hft_ext.Engine]) -> None:
    path = tmp_path / "ops.bin"
    # (op, side, order_id, price, quantity): two asks, a bid, a cancel, a crossing limit, a market.
    _write_oflow(
        path,
        [
            (0, SELL, 1, 101, 5),
            (0, SELL, 2, 102, 5),
            (0, BUY, 3, 99, 5),
            (1, SELL, 2, 102, 0),
            (2, BUY, 4, 101, 7),
            (3, SELL, 5, 0, 3),
        ],
    )
    ops = read_workload(path)
    engine = engine_class()
    replay(engine, ops)
    # 4 buys 5 at 101 and rests 2; the market sell takes 2 from 4 and 1 from 3.
    assert engine.queue(BUY) == [(99, [(3, 0, 4)])]
    assert (engine.n_fills, engine.filled_qty, engine.live_orders) == (3, 8, 1)
    h = 1469598103934665603
    for value in (BUY, 99, 3, 4):
        h = ((h ^ value) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    assert book_checksum(engine) == h


def test_read_workload_refuses_other_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(b"NOTOFLOW" + bytes(8))
    with pytest.raises(ValueError, match="not an OFLOW1"):
        read_workload(path)


@pytest.mark.skipif(
    not WORKLOAD_PY.is_file(), reason="shared/bench/workload.py is not beside the repo"
)
@pytest.mark.parametrize("interpreted", [False, True], ids=["installed", "interpreted"])
def test_bench_command_reproduces_the_standard_workload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interpreted: bool
) -> None:
    spec = importlib.util.spec_from_file_location("shared_workload", WORKLOAD_PY)
    assert spec is not None
    assert spec.loader is not None
    workload = importlib.util.module_from_spec(spec)
    sys.modules["shared_workload"] = workload  # its NamedTuple needs the module registered
    try:
        spec.loader.exec_module(workload)
    finally:
        del sys.modules["shared_workload"]
    ops, summary, _ = workload.generate(20_000, seed=3)
    path = tmp_path / "ops.bin"
    workload.save_bin(ops, str(path))
    parser = argparse.ArgumentParser()
    plugin._configure_bench(parser)
    argv = ["matching", "--workload", str(path), "--json", "--repeat", "1"]
    args = parser.parse_args(argv + (["--interpreted"] if interpreted else []))
    assert plugin._run_bench(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ops"] == 20_000
    assert result["compiled"] == (hft_ext.COMPILED and not interpreted)
    assert (result["n_fills"], result["filled_qty"]) == (summary.n_fills, summary.filled_qty)
    assert (result["live_orders"], result["checksum"]) == (summary.live_orders, summary.checksum)


def test_memory_command(capsys: pytest.CaptureFixture[str]) -> None:
    from hft_ext import _cli

    assert _cli.main(["matching-memory", "--orders", "2000", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["orders"] == 2000
    assert 0 < result["bytes_per_order"] < 2000
