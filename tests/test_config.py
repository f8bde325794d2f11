"""Configuration: file + environment, plugin sections, full-path errors, the embedded default."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import attrs
import pytest

import hft
from hft import ConfigError, Secret
from hft._config import config_from_mapping, read_config, resolve_config
from hft._plugins import PluginHost
from hft.model import Environment


@attrs.frozen
class KiteLikeConfig:
    api_key: Secret
    timeout_s: float = 7.0
    sharding: bool = False
    max_instruments: int = 3000


@attrs.frozen
class HttpLikeConfig:
    host: str = "127.0.0.1"
    port: int = 8080


def _plugins() -> PluginHost:
    def hft_register_brokers(register: Any) -> None:
        register("kite", lambda config, context: None, config=KiteLikeConfig)
        register("plain", lambda config, context: None)

    def hft_register_transports(register: Any) -> None:
        register("http", lambda config, context: None, config=HttpLikeConfig)

    module = types.SimpleNamespace(
        hft_register_brokers=hft.hookimpl(hft_register_brokers),
        hft_register_transports=hft.hookimpl(hft_register_transports),
    )
    return PluginHost.from_modules({"fake": module})


def _resolve(tree: dict[str, Any]) -> Any:
    return resolve_config(config_from_mapping(tree), _plugins())


def test_plugin_sections_are_structured_into_their_registered_types() -> None:
    config = _resolve(
        {
            "brokers": {
                "z1": {"plugin": "kite", "api_key": "k3y", "timeout_s": 3, "sharding": True}
            },
            "accounts": {"main": {"broker": "z1", "broker_account": "AB1234"}},
            "transports": {"http": {"port": 9090}},
        }
    )
    settings = config.brokers["z1"].settings
    assert settings == KiteLikeConfig(api_key=Secret("k3y"), timeout_s=3.0, sharding=True)
    assert "k3y" not in repr(settings)
    assert config.brokers["z1"].environment is Environment.LIVE
    assert config.accounts["main"].broker_account == "AB1234"
    assert config.transports["http"].enabled
    assert config.transports["http"].settings == HttpLikeConfig(port=9090)


def test_every_error_is_reported_with_its_full_path() -> None:
    with pytest.raises(ConfigError) as info:
        _resolve(
            {
                "brokers": {
                    "z1": {"plugin": "kite", "timeout_s": "soon", "colour": "red"},
                    "x": {"plugin": "nope"},
                    "p": {"plugin": "plain", "extra": 1},
                },
                "transports": {"http": {"port": 80.5, "enabled": "maybe"}, "smtp": {}},
                "accounts": {"a": {"broker": "ghost"}},
            }
        )
    lines = set(info.value.message.splitlines())
    assert "brokers.z1.api_key: missing" in lines
    assert "brokers.z1.colour: unknown key" in lines
    assert any(line.startswith("brokers.z1.timeout_s: expected a number") for line in lines)
    assert "brokers.x.plugin: no broker plugin named 'nope' (known: kite, plain)" in lines
    assert "brokers.p.extra: unknown key" in lines
    assert any(line.startswith("transports.http.port: expected an integer") for line in lines)
    assert any(line.startswith("transports.http.enabled: expected true or false") for line in lines)
    assert "transports.smtp: no transport plugin named 'smtp' (known: http)" in lines
    assert "accounts.a.broker: no broker instance named 'ghost'" in lines


def test_core_sections_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"logging\.level: "):
        config_from_mapping({"logging": {"level": "loud"}})
    with pytest.raises(ConfigError, match=r"frobnicate: unknown section$"):
        config_from_mapping({"frobnicate": {}})
    with pytest.raises(ConfigError, match=r"host\.shutdown_timeout_s: expected a number"):
        config_from_mapping({"host": {"shutdown_timeout_s": [1]}})


def test_environment_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hft.toml"
    path.write_text(
        '[brokers.z1]\nplugin = "kite"\napi_key = "from-file"\n[transports.http]\nport = 1\n'
    )
    environ = {
        "HFT_BROKERS__Z1__API_KEY": "from-env",
        "HFT_TRANSPORTS__HTTP__PORT": "8181",
        "HFT_TRANSPORTS__HTTP__ENABLED": "false",
        "HFT_HOST__REQUIRED_PLUGINS": '["fake"]',
        "HFT_PLUGINS": "fake",  # not an override: it restricts plugin loading
    }
    core = read_config(path, environ)
    assert core.host.required_plugins == ("fake",)
    config = resolve_config(core, _plugins())
    assert config.brokers["z1"].settings.api_key.reveal() == "from-env"
    assert config.transports["http"].settings.port == 8181
    assert not config.transports["http"].enabled


def test_config_file_is_found_by_env_and_errors_name_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[host\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        read_config(None, {"HFT_CONFIG": str(bad)})
    with pytest.raises(ConfigError, match="no such config file") as info:
        read_config(tmp_path / "missing.toml", {})
    assert info.value.code == "config_missing"


def test_no_config_at_all_is_a_working_embedded_default(tmp_path: Path) -> None:
    core = read_config(None, {})  # the tests run where there is no ./hft.toml
    config = resolve_config(core, _plugins())
    assert config.source is None
    assert config.storage.url == "sqlite:///hft.db"  # the built-in SQL backend, in data_dir
    assert config.transports["http"].enabled
    assert config.transports["http"].settings == HttpLikeConfig()
    assert config.brokers == {}


def test_a_sim_broker_is_the_default_when_installed() -> None:
    def hft_register_brokers(register: Any) -> None:
        register("sim", lambda config, context: None)

    plugins = PluginHost.from_modules(
        {"sim": types.SimpleNamespace(hft_register_brokers=hft.hookimpl(hft_register_brokers))}
    )
    config = resolve_config(config_from_mapping({}), plugins)
    assert config.brokers["sim"].environment is Environment.SIM
    assert config.accounts["sim"].broker == "sim"
    assert config.accounts["sim"].environment is Environment.SIM


def test_risk_rules_run_in_file_order_then_registration_order() -> None:
    @attrs.frozen
    class Limit:
        max_quantity: int = 100

    def hft_register_risk_rules(register: Any) -> None:
        register("first", lambda config: None, enabled_by_default=True)
        register("second", lambda config: None, config=Limit)
        register("third", lambda config: None)

    plugins = PluginHost.from_modules(
        {"r": types.SimpleNamespace(hft_register_risk_rules=hft.hookimpl(hft_register_risk_rules))},
        builtins=False,
    )
    config = resolve_config(
        config_from_mapping({"risk": {"third": {"enabled": True}, "second": {"max_quantity": 5}}}),
        plugins,
    )
    assert list(config.risk) == ["third", "second", "first"]
    assert [config.risk[n].enabled for n in config.risk] == [True, False, True]
    assert config.risk["second"].settings == Limit(max_quantity=5)
    with pytest.raises(ConfigError, match=r"risk.ghost: no risk rule named 'ghost'"):
        resolve_config(config_from_mapping({"risk": {"ghost": {}}}), plugins)


def test_accounts_override_risk_values_key_by_key() -> None:
    @attrs.frozen
    class Limits:
        max_quantity: int = 100
        max_value: int = 10**9

    def hft_register_risk_rules(register: Any) -> None:
        register("limits", lambda config: None, config=Limits, enabled_by_default=True)

    tree: dict[str, Any] = {
        "brokers": {"b": {"plugin": "kite", "api_key": "k"}},
        "risk": {"limits": {"max_quantity": 50}},
        "accounts": {
            "small": {"broker": "b", "risk": {"limits": {"max_value": 7}}},
            "plain": {"broker": "b"},
        },
    }

    def hft_register_brokers(register: Any) -> None:
        register("kite", lambda config, context: None, config=KiteLikeConfig)

    plugins = PluginHost.from_modules(
        {
            "r": types.SimpleNamespace(
                hft_register_risk_rules=hft.hookimpl(hft_register_risk_rules)
            ),
            "k": types.SimpleNamespace(hft_register_brokers=hft.hookimpl(hft_register_brokers)),
        }
    )
    config = resolve_config(config_from_mapping(tree), plugins)
    assert config.risk["limits"].settings == Limits(max_quantity=50)
    assert config.accounts["small"].risk["limits"].settings == Limits(max_quantity=50, max_value=7)
    assert config.accounts["plain"].risk == {}
    tree["accounts"]["small"]["risk"] = {"limits": {"max_value": "lots"}, "nope": {}}
    with pytest.raises(ConfigError) as info:
        resolve_config(config_from_mapping(tree), plugins)
    lines = info.value.message.splitlines()
    assert "accounts.small.risk.nope: no risk rule named 'nope'" in lines
    assert any(
        line.startswith("accounts.small.risk.limits.max_value: expected an integer")
        for line in lines
    )


def test_list_settings_from_the_environment_are_comma_separated() -> None:
    core = read_config(None, {"HFT_HOST__DISABLED_PLUGINS": "broken, other"})
    assert core.host.disabled_plugins == ("broken", "other")


def test_core_section_errors_are_all_reported_in_the_usual_format() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping({"host": {"shutdown_timeout_s": "x"}, "logging": {"level": "loud"}})
    lines = info.value.message.splitlines()
    assert "host.shutdown_timeout_s: expected a number, got 'x'" in lines
    assert "logging.level: expected one of 'debug', 'info', 'warning', 'error', got 'loud'" in lines


def test_accounts_of_a_sim_broker_are_sim_by_default() -> None:
    def hft_register_brokers(register: Any) -> None:
        register("paper", lambda config, context: None)

    plugins = PluginHost.from_modules(
        {"p": types.SimpleNamespace(hft_register_brokers=hft.hookimpl(hft_register_brokers))}
    )
    tree = {
        "brokers": {"b": {"plugin": "paper", "environment": "sim"}},
        "accounts": {"a": {"broker": "b"}, "l": {"broker": "b", "environment": "live"}},
    }
    config = resolve_config(config_from_mapping(tree), plugins)
    assert config.accounts["a"].environment is Environment.SIM
    assert config.accounts["l"].environment is Environment.LIVE


def test_an_unconfigured_transport_that_needs_settings_is_left_off() -> None:
    @attrs.frozen
    class NeedsKey:
        key: str

    def hft_register_transports(register: Any) -> None:
        register("keyed", lambda config, context: None, config=NeedsKey)

    plugins = PluginHost.from_modules(
        {"t": types.SimpleNamespace(hft_register_transports=hft.hookimpl(hft_register_transports))}
    )
    config = resolve_config(config_from_mapping({}), plugins)
    assert not config.transports["keyed"].enabled
    with pytest.raises(ConfigError, match=r"transports\.keyed\.key: missing"):
        resolve_config(config_from_mapping({"transports": {"keyed": {}}}), plugins)
