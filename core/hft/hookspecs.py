"""Every hook a plugin may implement, in the order the host calls them.

A plugin is a module (named by an entry point in the ``hft.plugins`` group) holding functions
decorated with :data:`hft.hookimpl` whose names are the hooks below. Importing the module must do
no I/O.

The wiring hooks (``hft_register_*``) run once at start-up and receive a ``register`` callback;
the host keeps what is registered in one registry per family and refuses a name registered twice.
Nothing on the per-tick or per-order path goes through a hook: the host calls the objects built by
the registered factories directly.

``docs/plugin_hooks.md`` documents every hook under its exact signature; a test keeps the two in
step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import pluggy

if TYPE_CHECKING:
    import argparse

    from hft._host import Services
    from hft._plugins import PluginContext
    from hft.contracts import Broker, MatchingEngine, Normaliser, RiskRule, Storage, Transport
    from hft.model import Instrument

hookspec = pluggy.HookspecMarker("hft")

__all__ = [
    "BrokerFactory",
    "CommandRunner",
    "EngineFactory",
    "NormaliserFactory",
    "RegisterBroker",
    "RegisterCommand",
    "RegisterEngine",
    "RegisterNormaliser",
    "RegisterRiskRule",
    "RegisterStorage",
    "RegisterTransport",
    "RiskRuleFactory",
    "StorageFactory",
    "TransportFactory",
    "hookspec",
]

# Factories: what a plugin hands to ``register``. ``config`` is an instance of the attrs class the
# plugin registered alongside the factory, structured from its section of ``hft.toml``.

BrokerFactory: TypeAlias = "Callable[[Any, PluginContext], Broker]"
TransportFactory: TypeAlias = "Callable[[Any, PluginContext], Transport]"
RiskRuleFactory: TypeAlias = "Callable[[Any], RiskRule]"
StorageFactory: TypeAlias = "Callable[[str], Storage]"
NormaliserFactory: TypeAlias = "Callable[[Sequence[Instrument]], Normaliser]"
EngineFactory: TypeAlias = "Callable[..., MatchingEngine]"
CommandRunner: TypeAlias = "Callable[[argparse.Namespace], int | Awaitable[int | None] | None]"


class RegisterBroker(Protocol):
    def __call__(
        self, name: str, factory: BrokerFactory, *, config: type[Any] | None = None
    ) -> None: ...


class RegisterNormaliser(Protocol):
    def __call__(self, name: str, factory: NormaliserFactory) -> None: ...


class RegisterRiskRule(Protocol):
    def __call__(
        self,
        name: str,
        factory: RiskRuleFactory,
        *,
        config: type[Any] | None = None,
        enabled_by_default: bool = False,
    ) -> None: ...


class RegisterStorage(Protocol):
    def __call__(self, scheme: str, factory: StorageFactory) -> None: ...


class RegisterTransport(Protocol):
    def __call__(
        self, name: str, factory: TransportFactory, *, config: type[Any] | None = None
    ) -> None: ...


class RegisterEngine(Protocol):
    def __call__(self, name: str, factory: EngineFactory) -> None: ...


class RegisterCommand(Protocol):
    def __call__(
        self,
        name: str,
        help: str,
        configure: Callable[[argparse.ArgumentParser], None],
        run: CommandRunner,
    ) -> None: ...


# ----------------------------------------------------------------------------------------------
# Wiring: called once, when the host loads its plugins, before the configuration is resolved
# ----------------------------------------------------------------------------------------------


@hookspec
def hft_register_storage(register: RegisterStorage) -> None:
    """Register storage backends by URL scheme.

    Called once at start-up. The host opens the backend whose scheme matches ``storage.url``
    (``sqlite:///hft.db`` → the ``sqlite`` backend).

    :param register: ``register(scheme, factory)``; ``factory(url)`` returns an unopened
        :class:`hft.contracts.Storage`. A scheme registered twice is an error.
    :return: nothing.
    """


@hookspec
def hft_register_brokers(register: RegisterBroker) -> None:
    """Register broker implementations by the name a user writes as ``plugin`` in config.

    Called once at start-up. For each ``[brokers.<instance>]`` section naming this broker the
    host structures the section into ``config`` and calls ``factory(config, context)``.

    :param register: ``register(name, factory, config=ConfigClass)``; ``factory(config, context)``
        returns an unconnected :class:`hft.contracts.Broker`. ``config`` is an attrs class for
        the section's keys (omit it for a broker without settings). A name registered twice is
        an error.
    :return: nothing.
    """


@hookspec
def hft_register_normalisers(register: RegisterNormaliser) -> None:
    """Register normalisers that turn a broker's raw payloads into domain events.

    Called once at start-up. Brokers, tools and benchmarks look them up by name and build one
    per connection with the instruments it will meet.

    :param register: ``register(name, factory)``; ``factory(instruments)`` returns a
        :class:`hft.contracts.Normaliser`. Names are dotted by broker, e.g. ``zerodha.ticker``.
    :return: nothing.
    """


@hookspec
def hft_register_risk_rules(register: RegisterRiskRule) -> None:
    """Register pre-trade risk rules.

    Called once at start-up. The risk engine builds each enabled rule once per account from its
    ``[risk.<name>]`` section and runs the chain in configuration order; the first rejection wins.

    :param register: ``register(name, factory, config=ConfigClass, enabled_by_default=False)``;
        ``factory(config)`` returns a :class:`hft.contracts.RiskRule`.
    :return: nothing.
    """


@hookspec
def hft_register_matching_engines(register: RegisterEngine) -> None:
    """Register price-time matching engine implementations.

    Called once at start-up. Simulated exchanges ask the host for an engine by name and build
    one per instrument, never importing an engine package directly.

    :param register: ``register(name, factory)``; ``factory(**options)`` returns a fresh
        :class:`hft.contracts.MatchingEngine` for one instrument.
    :return: nothing.
    """


@hookspec
def hft_register_transports(register: RegisterTransport) -> None:
    """Register transports: servers the host runs for clients.

    Called once at start-up. For each enabled ``[transports.<name>]`` section (every registered
    transport is enabled by default) the host calls ``factory(config, context)`` and runs the
    transport's ``serve`` in its task group.

    :param register: ``register(name, factory, config=ConfigClass)``; ``factory(config,
        context)`` returns a :class:`hft.contracts.Transport`.
    :return: nothing.
    """


@hookspec
def hft_register_commands(register: RegisterCommand) -> None:
    """Add subcommands to the ``hft`` command line.

    Called once when ``hft`` starts, before arguments are parsed.

    :param register: ``register(name, help, configure, run)``: ``configure(parser)`` adds the
        command's arguments (or sub-parsers) to its own ``argparse`` parser; ``run(args)``
        returns an exit code, ``None`` for success, or an awaitable of either (run under trio).
    :return: nothing.
    """


# ----------------------------------------------------------------------------------------------
# Introspection: called by ``hft version`` and ``hft plugins list``
# ----------------------------------------------------------------------------------------------


@hookspec
def hft_describe() -> str | None:
    """Describe how this plugin was built or is running, in a few words.

    Called by ``hft version`` and ``hft plugins list`` for each plugin that implements it
    (``hft-ext`` says whether it runs compiled by mypyc or interpreted).

    :return: a short phrase, or ``None`` for nothing to say.
    """


# ----------------------------------------------------------------------------------------------
# Lifecycle: called by ``hft serve`` around the running host
# ----------------------------------------------------------------------------------------------


@hookspec
def hft_startup(services: Services) -> Awaitable[None] | None:
    """React to the host having started: storage open, brokers connecting, transports bound.

    Called once per ``hft serve``, after every component is up and before the host reports
    itself started.

    :param services: the running host's services (config, storage, brokers, plugins).
    :return: ``None``, or an awaitable the host awaits before going on (keep it short).
    """


@hookspec
def hft_shutdown(services: Services) -> Awaitable[None] | None:
    """React to the host shutting down (SIGINT/SIGTERM or a fatal error).

    Called once, after transports stop accepting and before brokers and storage close.

    :param services: the host's services, still usable.
    :return: ``None``, or an awaitable the host awaits (bounded by ``host.shutdown_timeout_s``).
    """
