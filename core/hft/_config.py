"""Configuration: ``hft.toml`` plus ``HFT_...`` environment overrides, structured by cattrs.

Loading has two steps because plugins contribute section types. :func:`read_config` reads the file
and the environment and structures the core's own sections (enough to know which plugins to
load); :func:`resolve_config` then structures every plugin section with the attrs class its plugin
registered, and fills in the embedded default for whatever is not configured. Every error names the
full path of the key (``brokers.zerodha.api_key: missing``) and all errors are reported at once.

Environment overrides: ``HFT_<PATH>`` with ``__`` between path parts, e.g.
``HFT_STORAGE__URL=postgresql://...`` or ``HFT_BROKERS__ZERODHA__API_KEY=...``. Values are strings
(converted by the target field's type); a value starting with ``[`` or ``{`` is read as a TOML
array or inline table.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
import typing
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import cattrs
import structlog
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from hft._errors import ConfigError
from hft._plugins import PluginHost, Registration
from hft._secret import Secret
from hft.model import Environment

__all__ = [
    "AccountSection",
    "AuthSection",
    "BrokerSection",
    "Config",
    "CoreConfig",
    "HostSection",
    "LoggingSection",
    "OmsSection",
    "RiskRuleSection",
    "StorageSection",
    "TransportSection",
    "config_from_mapping",
    "read_config",
    "resolve_config",
    "structure_section",
]

log = structlog.get_logger("hft.config")

CONFIG_ENV: Final = "HFT_CONFIG"
DEFAULT_CONFIG_FILE: Final = "hft.toml"
ENV_PREFIX: Final = "HFT_"
#: Names under the prefix that are not config overrides.
RESERVED_ENV: Final = frozenset({"HFT_CONFIG", "HFT_PLUGINS"})


@attrs.frozen
class HostSection:
    """``[host]``: the process itself."""

    data_dir: Path = Path(".")
    required_plugins: tuple[str, ...] = ()
    disabled_plugins: tuple[str, ...] = ()
    shutdown_timeout_s: float = 10.0
    broker_retry_max_s: float = 60.0


@attrs.frozen
class LoggingSection:
    """``[logging]``."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


@attrs.frozen
class StorageSection:
    """``[storage]``: ``url`` empty means the embedded default (SQLite in ``data_dir``)."""

    url: str = ""


@attrs.frozen
class AccountSection:
    """``[accounts.<id>]``: an hft account on a configured broker instance."""

    broker: str
    broker_account: str = "default"
    environment: Environment = Environment.LIVE
    name: str = ""
    #: ``[accounts.<id>.risk.<rule>]``: per-account values merged over ``[risk.<rule>]``.
    risk: Mapping[str, RiskRuleSection] = attrs.field(factory=dict)


@attrs.frozen
class OmsSection:
    """``[oms]``: order management."""

    #: Split an order above the instrument's freeze quantity into child orders (else reject it).
    slice_freeze_quantity: bool = False
    #: How long ``place_order`` may take before the outcome is treated as unknown and reconciled.
    broker_timeout_s: float = 10.0


def _signing_key_length(
    _: object, attribute: attrs.Attribute[Secret | None], value: Secret | None
) -> None:
    # HS256 wants a key at least as long as its 256-bit hash; a shorter one is guessable offline.
    if value is not None and len(value.reveal().encode()) < 32:
        raise ValueError(f"{attribute.name} must be at least 32 bytes long")


@attrs.frozen
class AuthSection:
    """``[auth]``: users' passwords, tokens and API keys."""

    #: How long an access token (a JWT) is accepted after it is issued.
    access_ttl_s: int = attrs.field(default=900, validator=attrs.validators.ge(1))
    #: How long a refresh token may be used; each refresh issues a new one with a new lifetime.
    refresh_ttl_s: int = attrs.field(default=7 * 24 * 3600, validator=attrs.validators.ge(1))
    #: The HS256 key for tokens; ``None``: a random key made on first start and kept in storage.
    signing_key: Secret | None = attrs.field(default=None, validator=_signing_key_length)
    #: argon2id cost of a password hash (the argon2-cffi defaults, RFC 9106's low-memory choice).
    argon2_time_cost: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    argon2_memory_kib: int = attrs.field(default=65536, validator=attrs.validators.ge(8))
    argon2_parallelism: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    min_password_length: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    #: Logged-in sessions a user may hold at once; a new login beyond it ends the oldest.
    max_sessions_per_user: int = attrs.field(default=20, validator=attrs.validators.ge(1))
    #: How often the host re-reads users and revocations (``hft users ...`` changes them).
    reload_interval_s: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))


@attrs.frozen
class BrokerSection:
    """``[brokers.<instance>]``: ``plugin`` names the broker (default: the instance name)."""

    plugin: str
    environment: Environment
    settings: Any  # an instance of the config class the plugin registered, or None


@attrs.frozen
class TransportSection:
    enabled: bool
    settings: Any


@attrs.frozen
class RiskRuleSection:
    enabled: bool
    settings: Any


@attrs.frozen
class CoreConfig:
    """What is known before plugins load: the raw tree plus the core's own sections."""

    raw: Mapping[str, Any]
    source: Path | None
    host: HostSection
    logging: LoggingSection


@attrs.frozen
class Config:
    """The whole resolved configuration of one host."""

    source: Path | None
    host: HostSection
    logging: LoggingSection
    storage: StorageSection
    brokers: Mapping[str, BrokerSection]
    accounts: Mapping[str, AccountSection]
    transports: Mapping[str, TransportSection]
    risk: Mapping[str, RiskRuleSection]
    oms: OmsSection = OmsSection()
    auth: AuthSection = AuthSection()


_TOP_LEVEL: Final = frozenset(
    {"host", "logging", "storage", "brokers", "accounts", "transports", "risk", "oms", "auth"}
)

# ----------------------------------------------------------------------------------------------
# Converter: strict about types, because a config typo must not silently become a value
# ----------------------------------------------------------------------------------------------

_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


def _structure_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def _structure_float(value: object, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number, got {value!r}")


def _structure_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {value!r}")


def _structure_enum(value: object, cls: type[enum.Enum]) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"expected one of {allowed}, got {value!r}") from None


def _structure_secret(value: object, _: type) -> Secret:
    if isinstance(value, str):
        return Secret(value)
    raise ValueError("expected a string")


def _is_str_tuple(t: object) -> bool:
    return typing.get_origin(t) is tuple and typing.get_args(t) == (str, ...)


def _structure_str_tuple(value: object, _: type) -> tuple[str, ...]:
    # An environment override is a plain string: "a,b" means two names, not four characters.
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(_structure_str(item, str) for item in value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _is_literal(t: object) -> bool:
    return typing.get_origin(t) is typing.Literal


def _structure_literal(value: object, cls: type) -> object:
    allowed = typing.get_args(cls)
    if value in allowed:
        return value
    raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook_func(_is_str_tuple, _structure_str_tuple)
    conv.register_structure_hook_func(_is_literal, _structure_literal)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook_func(lambda t: t is str, _structure_str)
    conv.register_structure_hook(Secret, _structure_secret)
    conv.register_structure_hook(Path, lambda value, _: Path(_structure_str(value, str)))
    conv.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _structure_enum
    )
    return conv


_converter: Final = _make_converter()


def _messages(exc: Exception, path: str) -> list[str]:
    """cattrs errors as ``dotted.path: what is wrong`` lines."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        lines: list[str] = []
        with_notes, without_notes = exc.group_exceptions()
        for inner, note in with_notes:
            name = getattr(note, "name", getattr(note, "index", "?"))
            lines.extend(_messages(inner, f"{path}.{name}" if path else str(name)))
        for inner in without_notes:
            lines.extend(_messages(inner, path))
        return lines
    if isinstance(exc, ForbiddenExtraKeysError):
        return [
            f"{path}.{key}: unknown key" if path else f"{key}: unknown key"
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, KeyError):
        return [f"{path}: missing"]
    return [f"{path}: {exc}"]


def structure_section(data: object, cls: type[Any], path: str) -> Any:
    """Structure one section into ``cls``, raising ConfigError with every wrong key's path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a table, got {type(data).__name__}")
    try:
        return _converter.structure(dict(data), cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as exc:
        raise ConfigError("\n".join(_messages(exc, path))) from None
    except Exception as exc:
        raise ConfigError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _find_file(path: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env_path := environ.get(CONFIG_ENV):
        return Path(env_path)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _env_value(raw: str) -> object:
    if raw.lstrip().startswith(("[", "{")):
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            pass
    return raw


def _apply_env(tree: MutableMapping[str, Any], environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(f"{name}: empty part in an override name")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, MutableMapping):
                raise ConfigError(f"{name}: {'.'.join(parts)} is not inside a table")
            node = child
        node[parts[-1]] = _env_value(environ[name])


def read_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> CoreConfig:
    """Read ``path`` (else ``$HFT_CONFIG``, else ``./hft.toml`` if present, else nothing)."""
    environ = os.environ if environ is None else environ
    source = _find_file(path, environ)
    tree: dict[str, Any] = {}
    if source is not None:
        try:
            tree = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such config file", code="config_missing") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    _apply_env(tree, environ)
    return config_from_mapping(tree, source)


def config_from_mapping(tree: Mapping[str, Any], source: Path | None = None) -> CoreConfig:
    """The core sections of an already-parsed config tree (what tests and tools build)."""
    errors = [f"{key}: unknown section" for key in sorted(set(tree) - _TOP_LEVEL)]
    host = _collect(errors, structure_section, tree.get("host", {}), HostSection, "host")
    logging = _collect(
        errors, structure_section, tree.get("logging", {}), LoggingSection, "logging"
    )
    if errors:
        raise ConfigError("\n".join(errors))
    return CoreConfig(raw=tree, source=source, host=host, logging=logging)


# ----------------------------------------------------------------------------------------------
# Resolving plugin sections and the embedded default
# ----------------------------------------------------------------------------------------------


def _plugin_settings(data: Mapping[str, Any], registration: Registration[Any], path: str) -> Any:
    if registration.config is None:
        if data:
            keys = ", ".join(f"{path}.{key}: unknown key" for key in sorted(data))
            raise ConfigError(keys)
        return None
    return structure_section(data, registration.config, path)


def _tables(tree: Mapping[str, Any], name: str) -> dict[str, Mapping[str, Any]]:
    section = tree.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"{name}: expected a table")
    for key, value in section.items():
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}.{key}: expected a table, got {type(value).__name__}")
    return dict(section)


def _split(data: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    own = {k: v for k, v in data.items() if k in keys}
    rest = {k: v for k, v in data.items() if k not in keys}
    return own, rest


def _collect(errors: list[str], fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ConfigError as exc:
        errors.append(exc.message)
        return None


def resolve_config(core: CoreConfig, plugins: PluginHost) -> Config:
    """Structure every section against what ``plugins`` registered; fill in the defaults."""
    tree = core.raw
    errors: list[str] = []

    storage = _collect(
        errors, structure_section, tree.get("storage", {}), StorageSection, "storage"
    )
    if storage is not None and not storage.url:
        storage = StorageSection(url=default_storage_url(core.host.data_dir, plugins))

    brokers: dict[str, BrokerSection] = {}
    broker_tables = _tables(tree, "brokers")
    if not broker_tables and "sim" in plugins.brokers:
        broker_tables = {"sim": {"environment": "sim"}}
    for instance, data in broker_tables.items():
        own, rest = _split(data, ("plugin", "environment"))
        plugin_name = own.get("plugin", instance)
        path = f"brokers.{instance}"
        if not isinstance(plugin_name, str) or plugin_name not in plugins.brokers:
            known = ", ".join(plugins.brokers.names()) or "none installed"
            errors.append(f"{path}.plugin: no broker plugin named {plugin_name!r} (known: {known})")
            continue
        environment = _collect(
            errors, _structure_environment, own.get("environment", "live"), f"{path}.environment"
        )
        settings = _collect(errors, _plugin_settings, rest, plugins.brokers.get(plugin_name), path)
        if environment is not None:
            brokers[instance] = BrokerSection(plugin_name, environment, settings)

    risk_tables = _tables(tree, "risk")
    for name in risk_tables:
        if name not in plugins.risk_rules:
            known = ", ".join(plugins.risk_rules.names()) or "none installed"
            errors.append(f"risk.{name}: no risk rule named {name!r} (known: {known})")
    risk = _resolve_risk(errors, risk_tables, {}, plugins, "risk")

    accounts: dict[str, AccountSection] = {}
    account_tables = _tables(tree, "accounts")
    if not account_tables:
        # One account per broker instance, named after it, until the operator says otherwise.
        account_tables = {
            name: {"broker": name, "environment": str(b.environment)} for name, b in brokers.items()
        }
    for account_id, data in account_tables.items():
        path = f"accounts.{account_id}"
        overrides, own = _split(data, ("risk",))
        broker_section = brokers.get(own.get("broker"))  # type: ignore[arg-type]
        if "environment" not in own and broker_section is not None:
            # A sim broker's accounts are sim accounts unless the operator says otherwise.
            own["environment"] = str(broker_section.environment)
        section = _collect(errors, structure_section, own, AccountSection, path)
        if section is None:
            continue
        if section.broker not in brokers and section.broker not in broker_tables:
            errors.append(f"{path}.broker: no broker instance named {section.broker!r}")
            continue
        account_risk = _tables(overrides, "risk") if overrides else {}
        for name in account_risk:
            if name not in plugins.risk_rules:
                errors.append(f"{path}.risk.{name}: no risk rule named {name!r}")
        if account_risk:
            merged = _resolve_risk(errors, risk_tables, account_risk, plugins, f"{path}.risk")
            section = attrs.evolve(section, risk=merged)
        accounts[account_id] = section

    transports: dict[str, TransportSection] = {}
    transport_tables = _tables(tree, "transports")
    for name in transport_tables:
        if name not in plugins.transports:
            known = ", ".join(plugins.transports.names()) or "none installed"
            errors.append(f"transports.{name}: no transport plugin named {name!r} (known: {known})")
    for registration in plugins.transports:
        path = f"transports.{registration.name}"
        if registration.name not in transport_tables:
            # Not configured: runs on its defaults, unless it has settings with no default.
            try:
                settings = _plugin_settings({}, registration, path)
            except ConfigError as exc:
                transports[registration.name] = TransportSection(False, None)
                log.warning(
                    "config.transport_needs_settings",
                    transport=registration.name,
                    error=exc.message,
                )
                continue
            transports[registration.name] = TransportSection(True, settings)
            continue
        own, rest = _split(transport_tables[registration.name], ("enabled",))
        enabled = _collect(
            errors, _structure_path_bool, own.get("enabled", True), f"{path}.enabled"
        )
        settings = _collect(errors, _plugin_settings, rest, registration, path)
        transports[registration.name] = TransportSection(bool(enabled), settings)

    oms = _collect(errors, structure_section, tree.get("oms", {}), OmsSection, "oms")
    auth = _collect(errors, structure_section, tree.get("auth", {}), AuthSection, "auth")

    if errors:
        raise ConfigError("\n".join(errors))
    return Config(
        source=core.source,
        host=core.host,
        logging=core.logging,
        storage=storage,
        brokers=brokers,
        accounts=accounts,
        transports=transports,
        risk=risk,
        oms=oms,
        auth=auth,
    )


def _resolve_risk(
    errors: list[str],
    tables: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Mapping[str, Any]],
    plugins: PluginHost,
    path_prefix: str,
) -> dict[str, RiskRuleSection]:
    """The rule chain: configured rules in file order, then the other registered ones.

    ``overrides`` (an account's own ``risk`` tables) are merged key by key over ``tables``.
    """
    ordered = [n for n in tables if n in plugins.risk_rules]
    ordered += [n for n in plugins.risk_rules.names() if n not in tables]
    chain: dict[str, RiskRuleSection] = {}
    for name in ordered:
        rule = plugins.risk_rules.get(name)
        data = {**tables.get(name, {}), **overrides.get(name, {})}
        own, rest = _split(data, ("enabled",))
        path = f"{path_prefix}.{name}"
        enabled = _collect(
            errors,
            _structure_path_bool,
            own.get("enabled", rule.enabled_by_default),
            f"{path}.enabled",
        )
        if enabled is False and name not in tables and name not in overrides:
            # An unconfigured rule that is off need not be buildable from defaults alone.
            try:
                settings = _plugin_settings({}, rule, path)
            except ConfigError:
                settings = None
            chain[name] = RiskRuleSection(False, settings)
            continue
        settings = _collect(errors, _plugin_settings, rest, rule, path)
        chain[name] = RiskRuleSection(bool(enabled), settings)
    return chain


def _structure_environment(value: object, path: str) -> Environment:
    try:
        return Environment(str(value))
    except ValueError:
        raise ConfigError(f"{path}: expected 'live' or 'sim', got {value!r}") from None


def _structure_path_bool(value: object, path: str) -> bool:
    try:
        return _structure_bool(value, bool)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def default_storage_url(data_dir: Path, plugins: PluginHost) -> str:
    """SQLite in ``data_dir`` when a SQL backend is installed, else the in-process store."""
    if "sqlite" in plugins.storages:
        return f"sqlite:///{(data_dir / 'hft.db').as_posix()}"
    return "memory://"
