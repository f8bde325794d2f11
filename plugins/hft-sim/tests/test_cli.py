"""``hft sim funds``: the admin command, on the configured storage, with no host running."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import anyio
import pytest
from hft_sim.broker import STATE_NAMESPACE

from hft._cli import main
from hft._host import open_storage
from hft._plugins import PluginHost
from hft.contracts import Storage

from .conftest import make_sim


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HFT_PLUGINS", "ext,sim")
    path = tmp_path / "hft.toml"
    path.write_text(
        f"""
[storage]
url = "sqlite:///{tmp_path / "hft.db"}"

[brokers.paper]
plugin = "sim"
environment = "sim"
clock = "manual"
accounts = {{ default = {{}}, rich = {{ cash_paise = 500000000 }} }}
""",
        encoding="utf-8",
    )
    return path


def hft(config: Path, *args: str) -> int:
    return main(["--config", str(config), "sim", "funds", *args])


def store(config: Path) -> Storage:
    """The storage the config names, as ``hft`` opens it (unopened)."""
    return open_storage(f"sqlite:///{config.parent / 'hft.db'}", PluginHost.load(only=[]))


def test_show_add_withdraw_reset(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hft(config, "default") == 0
    assert "paper/default: cash ₹1000000.00" in capsys.readouterr().out
    assert hft(config, "default", "--add", "100000.50") == 0
    assert "cash ₹1100000.50" in capsys.readouterr().out
    assert hft(config, "default", "--withdraw", "0.50") == 0
    assert "cash ₹1100000.00" in capsys.readouterr().out
    assert hft(config, "rich", "--reset") == 0
    assert "paper/rich: cash ₹5000000.00" in capsys.readouterr().out
    assert hft(config, "default", "--reset") == 0
    assert "cash ₹1000000.00" in capsys.readouterr().out


def test_the_broker_starts_with_what_the_command_wrote(config: Path) -> None:
    assert hft(config, "default", "--add", "2500") == 0

    async def check() -> None:
        storage = store(config)
        await storage.open()
        try:
            broker = make_sim(storage, name="paper", accounts={"default": {}})
            await broker.connect()
            assert broker.funds("default").cash == 1_002_500_00
            broker.top_up("default", 1_00)
            await broker.close()
        finally:
            await storage.close()

    anyio.run(check, backend="trio")
    assert hft(config, "default") == 0


def test_errors(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hft(config, "nobody") == 1
    assert "no sim account 'nobody' (configured: default, rich)" in capsys.readouterr().err
    assert hft(config, "default", "--withdraw", "2000000") == 1
    assert "cannot withdraw" in capsys.readouterr().err
    assert main(["--config", str(config), "sim", "funds", "default", "--broker", "x"]) == 1
    assert "no sim broker named 'x' (configured: paper)" in capsys.readouterr().err
    assert hft(config, "default", "--add", "1.001") == 1
    assert "more than 2 decimal places" in capsys.readouterr().err


def test_refuses_while_a_host_runs(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def running() -> None:
        storage = store(config)
        await storage.open()
        state = {"version": 1, "running": True, "saved_at": dt.datetime.now(dt.UTC).isoformat()}
        await storage.put_state(STATE_NAMESPACE, "paper", json.dumps(state).encode())
        await storage.close()

    anyio.run(running, backend="trio")
    assert hft(config, "default", "--add", "5") == 1
    assert "a host is running sim broker 'paper'" in capsys.readouterr().err
    assert hft(config, "default") == 0  # showing is harmless
    assert hft(config, "default", "--add", "5", "--force") == 0
    assert "cash ₹1000005.00" in capsys.readouterr().out
