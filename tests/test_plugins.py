"""The plugin host: registries, hook validation, isolation of a plugin that fails while wiring."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest

import hft
from hft import PluginError
from hft._plugins import PluginHost, plugins_from_env


def plugin(**hooks: Callable[..., Any]) -> types.SimpleNamespace:
    """A plugin object whose attributes are hook implementations."""
    return types.SimpleNamespace(**{name: hft.hookimpl(fn) for name, fn in hooks.items()})


def broker_plugin(name: str) -> types.SimpleNamespace:
    def hft_register_brokers(register: Any) -> None:
        register(name, lambda config, context: None)

    return plugin(hft_register_brokers=hft_register_brokers)


def test_builtins_register_like_any_plugin() -> None:
    host = PluginHost.from_modules({})
    assert "memory" in host.storages
    info = host.plugins["memory"]
    assert info.builtin
    assert info.distribution == "hft"
    assert info.hooks == ("hft_register_storage",)


def test_registrations_are_recorded_with_their_plugin() -> None:
    host = PluginHost.from_modules({"alpha": broker_plugin("alpha-broker")})
    registration = host.brokers.get("alpha-broker")
    assert registration.plugin == "alpha"
    assert host.plugins["alpha"].hooks == ("hft_register_brokers",)


def test_duplicate_names_are_refused_naming_both_plugins() -> None:
    with pytest.raises(PluginError, match="'same' is registered by both plugin 'a' and plugin 'b'"):
        PluginHost.from_modules({"a": broker_plugin("same"), "b": broker_plugin("same")})


def test_unknown_names_list_what_is_known() -> None:
    host = PluginHost.from_modules({"alpha": broker_plugin("alpha-broker")})
    with pytest.raises(PluginError, match=r"no broker named 'zerodha' \(known: alpha-broker\)"):
        host.brokers.get("zerodha")


def test_a_hook_without_a_spec_fails_at_start_up() -> None:
    def hft_register_brokerz(register: Any) -> None:
        raise AssertionError("never called")

    with pytest.raises(PluginError, match="typo") as info:
        PluginHost.from_modules({"typo": plugin(hft_register_brokerz=hft_register_brokerz)})
    assert info.value.code == "unknown_hook"


def test_a_plugin_failing_while_wiring_is_isolated_unless_required() -> None:
    def hft_register_brokers(register: Any) -> None:
        register("half", lambda config, context: None)
        raise RuntimeError("boom")

    host = PluginHost()
    host._add_builtins()
    host.add(
        "flaky", plugin(hft_register_brokers=hft_register_brokers), distribution="x", version="1"
    )
    host.add("good", broker_plugin("fine"), distribution="y", version="1")
    host._wire(required=())
    assert "half" not in host.brokers  # nothing the failed plugin registered survives
    assert "fine" in host.brokers
    assert host.plugins["flaky"].error == "hft_register_brokers raised RuntimeError: boom"
    assert not host.pm.has_plugin("flaky")

    with pytest.raises(PluginError, match="flaky"):
        PluginHost.from_modules({"flaky": plugin(hft_register_brokers=hft_register_brokers)})


def test_register_refuses_unknown_options() -> None:
    def hft_register_storage(register: Any) -> None:
        register("x", lambda url: None, config=object)

    with pytest.raises(PluginError, match="unknown options"):
        PluginHost.from_modules({"bad": plugin(hft_register_storage=hft_register_storage)})


def test_commands_and_describe_are_collected() -> None:
    def hft_register_commands(register: Any) -> None:
        register("greet", "say hi", lambda parser: None, lambda args: 0)

    host = PluginHost.from_modules(
        {
            "p": plugin(
                hft_register_commands=hft_register_commands, hft_describe=lambda: "fast build"
            )
        }
    )
    assert host.commands.get("greet").factory[0] == "say hi"
    assert host.plugins["p"].details == "fast build"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", []), ("a", ["a"]), (" a, b ,,", ["a", "b"])],
)
def test_hft_plugins_env_restricts_loading(value: str | None, expected: list[str] | None) -> None:
    environ = {} if value is None else {"HFT_PLUGINS": value}
    assert plugins_from_env(environ) == expected


def test_a_plugin_may_not_take_a_core_command_name() -> None:
    def hft_register_commands(register: Any) -> None:
        register("serve", "hijack", lambda parser: None, lambda args: 0)

    host = PluginHost()
    host._add_builtins()
    host.add(
        "thief", plugin(hft_register_commands=hft_register_commands), distribution="x", version="1"
    )
    host._wire(required=())
    assert "serve" not in host.commands
    assert host.plugins["thief"].error is not None
    assert "taken by hft itself" in host.plugins["thief"].error


def test_a_failing_describe_is_reported_not_fatal() -> None:
    def hft_describe() -> str:
        raise RuntimeError("no idea")

    host = PluginHost.from_modules({"vague": plugin(hft_describe=hft_describe)})
    assert host.plugins["vague"].details == "(describe failed)"
