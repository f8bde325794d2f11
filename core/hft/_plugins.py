"""Plugin discovery and the registries behind the ``register`` callbacks.

Plugins are found with stevedore on the entry-point group ``hft.plugins`` and registered with one
``pluggy.PluginManager("hft")``; the core's built-ins are registered the same way first. A plugin
that fails to load is recorded (``PluginInfo.error``) and skipped, unless the configuration names
it as required.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import attrs
import pluggy
import structlog

import hft
from hft import hookspecs
from hft._errors import PluginError

if TYPE_CHECKING:
    from hft.contracts import MatchingEngine, Normaliser, Storage
    from hft.model import Instrument

__all__ = ["PluginContext", "PluginHost", "PluginInfo", "Registration", "Registry"]

ENTRY_POINT_GROUP: Final = "hft.plugins"
#: Subcommands of ``hft`` that plugins may not register.
CORE_COMMANDS: Final = frozenset({"version", "plugins", "config", "serve"})
PLUGINS_ENV: Final = "HFT_PLUGINS"

#: The core's own plugins: (name, module path). Registered before anything installed.
BUILTINS: Final = (
    ("memory", "hft._builtin.memory"),
    ("sql", "hft._builtin.sql"),
    ("risk", "hft._builtin.risk"),
)

log = structlog.get_logger("hft.plugins")

F = TypeVar("F")


@attrs.frozen
class PluginInfo:
    """What ``hft plugins list`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...] = ()
    error: str | None = None
    builtin: bool = False
    details: str | None = None


@attrs.frozen
class PluginContext:
    """What a broker or transport factory receives besides its own config section.

    ``name`` is the configured instance name (``[brokers.<name>]``, ``[transports.<name>]``),
    ``data_dir`` the host's data directory, ``storage`` the open store. Matching engines and
    normalisers registered by any plugin are built through :meth:`matching_engine` and
    :meth:`normaliser`, so a plugin never imports another plugin's package.
    """

    name: str
    data_dir: Path
    storage: Storage
    plugins: PluginHost | None = None

    def matching_engine(self, name: str = "ext", **options: Any) -> MatchingEngine:
        """A fresh order book from the matching engine registered as ``name``."""
        return self._host().engines.get(name).factory(**options)

    def normaliser(self, name: str, instruments: Sequence[Instrument]) -> Normaliser:
        """The normaliser registered as ``name``, built for ``instruments``."""
        return self._host().normalisers.get(name).factory(instruments)

    def _host(self) -> PluginHost:
        if self.plugins is None:
            raise PluginError("this context was built without access to the plugin registries")
        return self.plugins


@attrs.frozen
class Registration(Generic[F]):
    name: str
    factory: F
    plugin: str
    config: type[Any] | None = None
    enabled_by_default: bool = False


class Registry(Generic[F]):
    """Named factories of one family (brokers, transports, ...); a name may be taken once."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Registration[F]] = {}

    def add(self, registration: Registration[F]) -> None:
        name = registration.name
        if not name or not isinstance(name, str):
            raise PluginError(
                f"plugin {registration.plugin!r} registered a {self.family} with no name"
            )
        if (taken := self._entries.get(name)) is not None:
            raise PluginError(
                f"{self.family} {name!r} is registered by both plugin {taken.plugin!r} and plugin "
                f"{registration.plugin!r}; uninstall one or disable it with HFT_PLUGINS",
                code="duplicate_name",
            )
        self._entries[name] = registration

    def get(self, name: str) -> Registration[F]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none installed"
            raise PluginError(
                f"no {self.family} named {name!r} (known: {known})", code="unknown_plugin"
            ) from None

    def drop_plugin(self, plugin: str) -> None:
        self._entries = {k: v for k, v in self._entries.items() if v.plugin != plugin}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration[F]]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return list(self._entries)


class PluginHost:
    """The loaded plugins, their pluggy manager, and what they registered."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("hft")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.storages: Registry[hookspecs.StorageFactory] = Registry("storage backend")
        self.brokers: Registry[hookspecs.BrokerFactory] = Registry("broker")
        self.normalisers: Registry[hookspecs.NormaliserFactory] = Registry("normaliser")
        self.risk_rules: Registry[hookspecs.RiskRuleFactory] = Registry("risk rule")
        self.engines: Registry[hookspecs.EngineFactory] = Registry("matching engine")
        self.transports: Registry[hookspecs.TransportFactory] = Registry("transport")
        self.commands: Registry[tuple[str, Callable[..., None], hookspecs.CommandRunner]] = (
            Registry("command")
        )

    # Loading ----------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        only: Collection[str] | None = None,
        disabled: Collection[str] = (),
        required: Collection[str] = (),
    ) -> PluginHost:
        """Built-ins plus the installed plugins (``only`` restricts them, as HFT_PLUGINS does)."""
        host = cls()
        host._add_builtins()
        host._discover(only=only, disabled=disabled, required=required)
        host._wire(required)
        return host

    @classmethod
    def from_modules(
        cls, modules: Mapping[str, ModuleType | object], *, builtins: bool = True
    ) -> PluginHost:
        """A host with exactly these plugin objects (and the built-ins): what tests use."""
        host = cls()
        if builtins:
            host._add_builtins()
        for name, module in modules.items():
            host.add(name, module, distribution="(test)", version="")
        host._wire(required=modules.keys())
        return host

    def add(self, name: str, plugin: object, *, distribution: str, version: str) -> None:
        """Register one plugin object with the manager (hooks are checked in ``_wire``)."""
        if name in self.plugins:
            raise PluginError(f"two plugins are named {name!r}", code="duplicate_name")
        self.pm.register(plugin, name=name)
        self.plugins[name] = PluginInfo(name=name, distribution=distribution, version=version)

    def _add_builtins(self) -> None:
        import importlib

        for name, module_path in BUILTINS:
            self.pm.register(importlib.import_module(module_path), name=name)
            self.plugins[name] = PluginInfo(
                name=name, distribution="hft", version=hft.__version__, builtin=True
            )

    def _discover(
        self, *, only: Collection[str] | None, disabled: Collection[str], required: Collection[str]
    ) -> None:
        from stevedore import ExtensionManager, NamedExtensionManager

        failures: list[tuple[Any, BaseException]] = []

        def on_failure(_manager: object, entry_point: Any, exc: BaseException) -> None:
            failures.append((entry_point, exc))

        common: dict[str, Any] = {
            "namespace": ENTRY_POINT_GROUP,
            "invoke_on_load": False,
            "on_load_failure_callback": on_failure,
        }
        # stevedore caches entry points without their distribution; ask importlib for those.
        dists = {
            ep.name: (ep.dist.name, ep.dist.version) if ep.dist else ("?", "?")
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        }
        if only is None and not disabled:
            manager = ExtensionManager(**common)
        else:
            wanted = (set(dists) if only is None else set(only)) - set(disabled)
            unknown = sorted(set(only or ()) - set(dists))
            if unknown:
                log.warning("plugins.unknown", names=unknown, available=sorted(dists))
            manager = NamedExtensionManager(names=sorted(wanted & set(dists)), **common)

        for ext in manager:
            distribution, version = dists.get(ext.name, ("?", "?"))
            self.add(ext.name, ext.plugin, distribution=distribution, version=version)
        for entry_point, exc in failures:
            distribution, version = dists.get(entry_point.name, ("?", "?"))
            error = f"{type(exc).__name__}: {exc}"
            if entry_point.name in required:
                raise PluginError(
                    f"required plugin {entry_point.name!r} failed to load: {error}",
                    code="plugin_load",
                )
            log.error("plugins.load_failed", plugin=entry_point.name, error=error)
            self.plugins[entry_point.name] = PluginInfo(
                name=entry_point.name, distribution=distribution, version=version, error=error
            )
        for name in required:
            if name not in self.plugins:
                raise PluginError(
                    f"required plugin {name!r} is not installed", code="plugin_missing"
                )

    # Wiring -----------------------------------------------------------------------------------

    def _wire(self, required: Collection[str]) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin {self.pm.get_name(exc.plugin)!r} implements a hook hft does not define: "
                f"{str(exc).split(' in plugin ')[0]}",
                code="unknown_hook",
            ) from None
        families: list[tuple[str, Registry[Any], set[str]]] = [
            ("hft_register_storage", self.storages, set()),
            ("hft_register_brokers", self.brokers, {"config"}),
            ("hft_register_normalisers", self.normalisers, set()),
            ("hft_register_risk_rules", self.risk_rules, {"config", "enabled_by_default"}),
            ("hft_register_matching_engines", self.engines, set()),
            ("hft_register_transports", self.transports, {"config"}),
        ]
        for hook_name, registry, options in families:
            for impl in self._impls(hook_name):
                self._call_register(impl, hook_name, registry, options, required)
        for impl in self._impls("hft_register_commands"):

            def register_command(
                name: str,
                help: str,
                configure: Callable[..., None],
                run: hookspecs.CommandRunner,
                _plugin: str = impl.plugin_name,
            ) -> None:
                if name in CORE_COMMANDS:
                    raise PluginError(f"command name {name!r} is taken by hft itself")
                self.commands.add(Registration(name, (help, configure, run), _plugin))

            self._guarded(impl, "hft_register_commands", register_command, required)
        self._record_hooks()

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        # In registration order: built-ins first, then plugins as discovered.
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        return [i for i in impls if self.pm.is_registered(i.plugin)]

    def _call_register(
        self,
        impl: pluggy.HookImpl,
        hook_name: str,
        registry: Registry[Any],
        options: set[str],
        required: Collection[str],
    ) -> None:
        plugin = impl.plugin_name

        def register(name: str, factory: Any, **kwargs: Any) -> None:
            extra = set(kwargs) - options
            if extra:
                raise PluginError(
                    f"plugin {plugin!r}: {hook_name} register() got unknown options {sorted(extra)}"
                )
            registry.add(Registration(name, factory, plugin, **kwargs))

        self._guarded(impl, hook_name, register, required)

    def _guarded(
        self,
        impl: pluggy.HookImpl,
        hook_name: str,
        register: Callable[..., None],
        required: Collection[str],
    ) -> None:
        plugin = impl.plugin_name
        try:
            impl.function(register=register)
        except PluginError as exc:
            if exc.code == "duplicate_name":
                raise
            self._fail(plugin, hook_name, exc, required)
        except Exception as exc:
            self._fail(plugin, hook_name, exc, required)

    def _fail(self, plugin: str, hook_name: str, exc: Exception, required: Collection[str]) -> None:
        error = f"{hook_name} raised {type(exc).__name__}: {exc}"
        if plugin in required or self.plugins.get(plugin, PluginInfo("", "", "")).builtin:
            raise PluginError(f"plugin {plugin!r}: {error}", code="plugin_load") from exc
        log.error("plugins.wiring_failed", plugin=plugin, error=error)
        for registry in (
            self.storages,
            self.brokers,
            self.normalisers,
            self.risk_rules,
            self.engines,
            self.transports,
            self.commands,
        ):
            registry.drop_plugin(plugin)
        self.pm.unregister(name=plugin)
        self.plugins[plugin] = attrs.evolve(self.plugins[plugin], error=error)

    def _record_hooks(self) -> None:
        for name, info in list(self.plugins.items()):
            plugin = self.pm.get_plugin(name)
            if plugin is None:
                continue
            hooks = tuple(
                sorted(h.name for h in self.pm.get_hookcallers(plugin) or () if h.has_spec())
            )
            details = None
            if "hft_describe" in hooks:
                try:
                    details = plugin.hft_describe()
                except Exception as exc:
                    # A description is cosmetic: it must never stop the command line.
                    log.warning("plugins.describe_failed", plugin=name, error=repr(exc))
                    details = "(describe failed)"
            self.plugins[name] = attrs.evolve(info, hooks=hooks, details=details)

    # Queries ----------------------------------------------------------------------------------

    def infos(self) -> list[PluginInfo]:
        return sorted(self.plugins.values(), key=lambda p: (not p.builtin, p.name))


def plugins_from_env(environ: Mapping[str, str] = os.environ) -> list[str] | None:
    """The plugin names ``HFT_PLUGINS=a,b`` restricts loading to, or ``None`` for all."""
    raw = environ.get(PLUGINS_ENV)
    if raw is None:
        return None
    return [name.strip() for name in raw.split(",") if name.strip()]
