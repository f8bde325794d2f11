"""Discovery with real installed distributions (tests/plugins/*, installed by ``nox -s tests``)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from hft import PluginError
from hft._config import config_from_mapping, resolve_config
from hft._plugins import PluginHost


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


if not (_installed("hft-example") and _installed("hft-broken")):
    reason = "the test plugins in tests/plugins are not installed (run through `nox -s tests`)"
    if os.environ.get("CI") or os.environ.get("HFT_TEST_PLUGINS_INSTALLED"):
        raise RuntimeError(reason)  # in CI a missing install is a failure, never a skip
    pytest.skip(reason, allow_module_level=True)


def hft(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hft", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def plugins_json(**kwargs: Any) -> dict[str, dict[str, Any]]:
    result = hft("plugins", "list", "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_plugins_list_reports_installed_and_broken_plugins(tmp_path: Path) -> None:
    rows = plugins_json(cwd=tmp_path)
    example = rows["example"]
    assert example["distribution"] == "hft-example"
    assert example["version"] == "1.2.3"
    assert example["error"] is None
    assert example["details"] == "example build"
    assert set(example["hooks"]) == {
        "hft_register_commands",
        "hft_register_risk_rules",
        "hft_describe",
    }
    broken = rows["broken"]
    assert broken["distribution"] == "hft-broken"
    assert "fails on import on purpose" in broken["error"]
    assert broken["hooks"] == []
    for row in rows.values():
        assert set(row) >= {"name", "distribution", "version", "hooks", "error"}


def test_plugins_list_table_shows_the_load_error(tmp_path: Path) -> None:
    result = hft("plugins", "list", cwd=tmp_path)
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("broken"))
    assert "ERROR: RuntimeError: hft-broken fails on import on purpose" in line


def test_a_plugin_command_is_discovered_and_called(tmp_path: Path) -> None:
    result = hft("example-hello", "--name", "asha", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from the example plugin, asha"
    assert "example-hello" in hft("--help", cwd=tmp_path).stdout


def test_hft_plugins_restricts_what_loads(tmp_path: Path) -> None:
    rows = plugins_json(env={"HFT_PLUGINS": "example"}, cwd=tmp_path)
    assert "example" in rows
    assert "broken" not in rows
    assert "memory" in rows  # built-ins always load
    assert "example-hello" not in hft("--help", env={"HFT_PLUGINS": "broken"}, cwd=tmp_path).stdout


def test_disabled_plugins_do_not_load(tmp_path: Path) -> None:
    (tmp_path / "hft.toml").write_text('[host]\ndisabled_plugins = ["broken"]\n')
    assert "broken" not in plugins_json(cwd=tmp_path)


def test_a_required_plugin_that_fails_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "hft.toml").write_text('[host]\nrequired_plugins = ["broken"]\n')
    result = hft("config", "check", cwd=tmp_path)
    assert result.returncode == 1
    assert "required plugin 'broken' failed to load" in result.stderr
    with pytest.raises(PluginError, match="required plugin 'broken'"):
        PluginHost.load(required=["broken"])


def test_version_lists_plugins_with_their_details(tmp_path: Path) -> None:
    result = hft("version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("hft ")
    assert "example: hft-example 1.2.3 [example build]" in result.stdout
    assert "broken: hft-broken 0.0.1 (failed to load)" in result.stdout


def test_an_installed_risk_rule_is_configured_through_its_own_type() -> None:
    plugins = PluginHost.load()
    assert plugins.risk_rules.get("example_odd_quantity").plugin == "example"
    config = resolve_config(
        config_from_mapping({"risk": {"example_odd_quantity": {"enabled": True, "message": "no"}}}),
        plugins,
    )
    rule_config = config.risk["example_odd_quantity"]
    assert rule_config.enabled
    rule = plugins.risk_rules.get("example_odd_quantity").factory(rule_config.settings)
    assert rule.code == "example_odd_quantity"
    assert rule.config.message == "no"


@pytest.mark.anyio
async def test_an_installed_risk_rule_plugin_is_applied_by_the_oms(tmp_path: Path) -> None:
    from hft import RiskRejected
    from hft._host import Host
    from hft.model import Environment, OrderRequest, Role, Side, User

    plugins = PluginHost.load(only=["example", "test"])  # discovered through entry points
    tree = {
        "storage": {"url": "memory://"},
        "host": {"data_dir": str(tmp_path)},
        "brokers": {"t": {"plugin": "test", "instant": True}},
        "risk": {"example_odd_quantity": {"enabled": True, "message": "no odd lots here"}},
    }
    host = Host(resolve_config(config_from_mapping(tree), plugins), plugins)
    trader = User("t", Role.TRADER, Environment.LIVE, accounts=("t",))
    async with host.running() as services:
        with anyio.fail_after(5):
            while not services.brokers["t"].ready:  # noqa: ASYNC110 - state of another task
                await anyio.sleep(0.001)

        def request(quantity: int) -> OrderRequest:
            return OrderRequest("t", "NSE:INFY", Side.BUY, quantity, price=150_000)

        with pytest.raises(RiskRejected) as info:
            await services.oms.submit(trader, request(3))
        assert (info.value.code, info.value.message) == ("example_odd_quantity", "no odd lots here")
        (order,) = await services.oms.submit(trader, request(4))
        assert order.request.quantity == 4
