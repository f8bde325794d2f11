"""Risk rules changed at runtime: ``RiskEngine.set_rule``, through the OMS, and across restarts."""

from __future__ import annotations

import json
import types
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

import hft
from hft import ConfigError, NotFound, RiskRejected
from hft._builtin.memory import MemoryStorage
from hft._config import config_from_mapping, resolve_config
from hft._host import open_storage
from hft._plugins import PluginHost
from hft._risk import RiskEngine
from hft.contracts import Storage
from hft.model import Environment, OrderRequest, OrderStatus, Role, Side, User
from hft.testing import Services, make_host
from hft.testing import _plugin as test_broker_plugin

TRADER = User("tara", Role.TRADER, Environment.LIVE, accounts=("acct", "own"))
INFY = "NSE:INFY"


def _dummy_broker_plugin() -> types.SimpleNamespace:
    def hft_register_brokers(register: Any) -> None:
        register("dummy", lambda config, context: None)

    return types.SimpleNamespace(hft_register_brokers=hft.hookimpl(hft_register_brokers))


pytestmark = pytest.mark.anyio

PLUGINS = PluginHost.from_modules({"dummy": _dummy_broker_plugin()})


def engine_for(tree: dict[str, Any], plugins: PluginHost = PLUGINS) -> RiskEngine:
    if "accounts" in tree:
        tree = {"brokers": {"b": {"plugin": "dummy"}}, **tree}
    return RiskEngine.from_config(resolve_config(config_from_mapping(tree), plugins), plugins)


def limit(engine: RiskEngine, account: str | None = None) -> int | None:
    quantity: int | None = engine.sections(account)["max_order_quantity"].settings.max_quantity
    return quantity


ACCOUNTS = {
    "plain": {"broker": "b"},
    "own": {"broker": "b", "risk": {"max_order_quantity": {"max_quantity": 7}}},
}


# The engine ---------------------------------------------------------------------------------


async def test_a_global_change_reaches_accounts_without_their_own_value() -> None:
    engine = engine_for(
        {"risk": {"max_order_quantity": {"max_quantity": 100}}, "accounts": ACCOUNTS}
    )
    section = await engine.set_rule(
        "max_order_quantity", enabled=True, settings={"max_quantity": 10}, by="root"
    )
    assert section.enabled
    assert section.settings.max_quantity == 10
    assert limit(engine) == 10
    assert limit(engine, "plain") == 10
    assert limit(engine, "runtime") == 10  # an account created at runtime: the global chain
    assert limit(engine, "own") == 7  # its own config value wins over the global change
    assert engine.own_accounts() == ["own"]


async def test_an_account_change_reaches_that_account_only() -> None:
    engine = engine_for({"accounts": ACCOUNTS})
    await engine.set_rule(
        "max_order_quantity", enabled=True, settings={"max_quantity": 3}, account="plain", by="r"
    )
    assert limit(engine, "plain") == 3
    assert limit(engine) is None
    assert limit(engine, "other") is None
    assert engine.own_accounts() == ["own", "plain"]
    # A later global change does not undo the account's own override.
    await engine.set_rule(
        "max_order_quantity", enabled=True, settings={"max_quantity": 50}, by="root"
    )
    assert limit(engine, "plain") == 3
    assert limit(engine, "other") == 50


async def test_disabling_a_rule_takes_it_out_of_the_chain() -> None:
    engine = engine_for({})
    assert "price_band" in engine.rule_names("acct")
    await engine.set_rule("price_band", enabled=False, settings={}, by="root")
    assert "price_band" not in engine.rule_names("acct")
    assert engine.sections()["price_band"].enabled is False
    await engine.set_rule("price_band", enabled=True, settings={}, by="root")
    assert engine.rule_names("acct") == engine_for({}).rule_names("acct")  # chain order kept


@pytest.mark.parametrize(
    ("name", "settings", "error", "fragment"),
    [
        (
            "max_order_quantity",
            {"max_quanity": 5},
            ConfigError,
            "risk.max_order_quantity.max_quanity",
        ),
        ("max_order_quantity", {"max_quantity": -1}, ConfigError, "max_quantity"),
        ("max_order_quantity", {"max_quantity": "many"}, ConfigError, "max_quantity"),
        ("daily_loss_limit", {"kill_switch": "panic"}, ConfigError, "kill_switch"),
        ("lot_and_tick", {"strict": True}, ConfigError, "risk.lot_and_tick.strict"),
        ("no_such_rule", {}, NotFound, "no_such_rule"),
    ],
)
async def test_bad_settings_change_nothing(
    name: str, settings: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    storage = MemoryStorage("memory://")
    engine = engine_for({"risk": {"max_order_quantity": {"max_quantity": 100}}})
    await engine.load(storage)
    before = (engine.sections(), engine.rule_names("acct"))
    with pytest.raises(error) as info:
        await engine.set_rule(name, enabled=True, settings=settings, by="root")
    assert fragment in str(info.value)
    if isinstance(info.value, ConfigError):
        assert info.value.status == 400
        assert info.value.code == "risk_settings_invalid"
    assert (engine.sections(), engine.rule_names("acct")) == before
    assert await storage.get_state("risk", "limits") is None
    assert await storage.audit_entries("risk_limits") == []


async def test_a_change_is_stored_and_audited() -> None:
    storage = MemoryStorage("memory://")
    engine = engine_for({})
    await engine.load(storage)
    await engine.set_rule(
        "max_order_value",
        enabled=True,
        settings={"max_value_paise": 1_000_00},
        account="acct",
        by="root",
        reason="new desk limit",
    )
    stored = json.loads(await storage.get_state("risk", "limits") or b"")
    assert stored["accounts"]["acct"]["max_order_value"]["settings"] == {"max_value_paise": 100000}
    assert stored["accounts"]["acct"]["max_order_value"]["by"] == "root"
    (entry,) = await storage.audit_entries("risk_limits")
    assert entry["rule"] == "max_order_value"
    assert entry["account"] == "acct"
    assert entry["reason"] == "new desk limit"
    assert entry["by"] == "root"


# Through the OMS ----------------------------------------------------------------------------


async def eventually(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    with anyio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110 - state owned by the host's tasks
            await anyio.sleep(0.001)


def host_with(risk: dict[str, Any], storage_url: str = "memory://") -> Any:
    config = {
        "storage": {"url": storage_url},
        "brokers": {"t": {"plugin": "test"}},
        "accounts": {"acct": {"broker": "t", "environment": "live"}},
        "risk": risk,
    }
    return make_host({"test": test_broker_plugin}, config)


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    risk = {"max_order_quantity": {"max_quantity": 100}, "order_rate": {"max_per_minute": 3}}
    async with host_with(risk).running() as running:
        await eventually(lambda: running.brokers["t"].ready)
        yield running


def order(quantity: int) -> OrderRequest:
    return OrderRequest("acct", INFY, Side.BUY, quantity, price=150_000)


async def test_a_change_applies_to_the_next_order(services: Services) -> None:
    (placed,) = await services.oms.submit(TRADER, order(50))
    assert placed.status is not OrderStatus.REJECTED
    await services.risk.set_rule(
        "max_order_quantity", enabled=True, settings={"max_quantity": 10}, by="root"
    )
    with pytest.raises(RiskRejected) as info:
        await services.oms.submit(TRADER, order(11))
    assert info.value.code == "max_order_quantity"
    await services.oms.submit(TRADER, order(10))
    await services.oms.submit(TRADER, order(1))
    # Only the changed rule was rebuilt: the order-rate window still counts the three orders.
    with pytest.raises(RiskRejected) as info:
        await services.oms.submit(TRADER, order(1))
    assert info.value.code == "order_rate_per_minute"


# Across a restart ---------------------------------------------------------------------------


async def test_a_change_survives_a_restart_with_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hft.db'}"
    risk = {"max_order_quantity": {"max_quantity": 100}}
    async with host_with(risk, url).running() as running:
        await running.risk.set_rule(
            "max_order_quantity", enabled=True, settings={"max_quantity": 10}, by="root"
        )
        await running.risk.set_rule("price_band", enabled=False, settings={}, by="root")
    async with host_with(risk, url).running() as running:
        assert limit(running.risk) == 10  # the stored override wins over the config
        assert "price_band" not in running.risk.rule_names("acct")
        await eventually(lambda: running.brokers["t"].ready)
        with pytest.raises(RiskRejected):
            await running.oms.submit(TRADER, order(11))


async def _open(url: str) -> Storage:
    storage = open_storage(url, PluginHost.from_modules({}))
    await storage.open()
    return storage


async def test_stored_overrides_reload_and_unknown_rules_are_ignored(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hft.db'}"
    storage = await _open(url)
    try:
        engine = engine_for({"accounts": ACCOUNTS})
        await engine.load(storage)
        await engine.set_rule(
            "max_order_quantity", enabled=True, settings={"max_quantity": 4}, account="own", by="r"
        )
        raw = json.loads(await storage.get_state("risk", "limits") or b"")
        raw["global"]["retired_rule"] = {"enabled": True, "settings": {}, "by": "r", "at": None}
        await storage.put_state("risk", "limits", json.dumps(raw).encode())
    finally:
        await storage.close()
    storage = await _open(url)
    try:
        restarted = engine_for({"accounts": ACCOUNTS})
        with capture_logs() as logs:
            await restarted.load(storage)
        assert limit(restarted, "own") == 4
        assert limit(restarted, "plain") is None
        assert [e["rule"] for e in logs if e["event"] == "risk.limits_override_ignored"] == [
            "retired_rule"
        ]
    finally:
        await storage.close()


async def test_unreadable_stored_settings_refuse_to_start() -> None:
    storage = MemoryStorage("memory://")
    bad = {"global": {"max_order_quantity": {"enabled": True, "settings": {"max_quantity": -3}}}}
    await storage.put_state("risk", "limits", json.dumps({**bad, "accounts": {}}).encode())
    with pytest.raises(hft.HftError) as info:
        await engine_for({}).load(storage)
    assert info.value.code == "risk_limits_state_invalid"
    assert "risk.max_order_quantity: max_quantity must be positive" in info.value.message


# Counters for metrics ------------------------------------------------------------------------


async def test_core_counters_for_metrics(services: Services) -> None:
    assert services.oms.status_counts()["OPEN"] == 0
    (placed,) = await services.oms.submit(TRADER, order(5))
    await eventually(lambda: services.oms.status_counts()["OPEN"] == 1)
    counts = services.oms.status_counts()
    assert sum(counts.values()) == 1
    assert set(counts) == {str(s) for s in OrderStatus}
    with pytest.raises(RiskRejected):
        await services.oms.submit(TRADER, order(101))
    assert services.risk.rejections == {"max_order_quantity": 1}
    await services.oms.cancel(TRADER, placed.order_id)
    await eventually(lambda: services.oms.status_counts()["CANCELLED"] == 1)
    assert sum(services.oms.status_counts().values()) == 1


async def test_sql_storage_times_its_commits(tmp_path: Path) -> None:
    storage = await _open(f"sqlite:///{tmp_path / 'hft.db'}")
    try:
        await storage.put_state("risk", "x", b"1")
        await storage.put_state("risk", "y", b"2")
        buckets = getattr(storage, "commit_buckets", [])
        bounds = getattr(storage, "commit_bounds", ())
        assert len(buckets) == len(bounds) + 1
        assert buckets[-1] == getattr(storage, "commits", 0) >= 2
        assert buckets == sorted(buckets)  # cumulative
        assert getattr(storage, "commit_seconds", 0.0) > 0
    finally:
        await storage.close()
