"""The pre-trade risk engine: one ordered chain of rules per account, and the kill switch.

The engine is built once from the resolved configuration and the rules plugins registered. For
each account it builds the enabled rules of its chain (the account's own chain when its config
overrides values, else the global one), in chain order, once; :meth:`RiskEngine.check` runs them
in order and the first rejection wins. Nothing on that path goes through pluggy or does I/O.

The kill switch sits in front of every chain and cannot be disabled by config: a manual safety
control must not depend on a config file being right. It has a global setting and one per
account, each ``off``, ``reduce_only`` or ``halt``; the stricter of the two applies. Changes are
kept in :class:`~hft.contracts.Storage` (state plus an audit entry each) so they survive a
restart, and logged as ``risk.kill_switch``.

Admins can change a rule at runtime (:meth:`RiskEngine.set_rule`): globally or for one account.
The new settings are structured with the rule's config class (a wrong key or value changes
nothing), only that rule is rebuilt in the chains it applies to (other rules keep their state,
an order-rate window say), and the override is kept in storage (state ``risk/limits`` plus a
``risk_limits`` audit entry) so that it wins over the config file after a restart.

How the OMS drives it, per order::

    rejection = engine.check(request, context)
    if rejection is not None:
        if rejection.kill_switch is not None:
            await engine.flush()  # a rule tripped the account's kill switch: persist it
        raise RiskRejected(rejection.reason, code=rejection.code)
    engine.commit(request, context)  # the order was accepted by the whole chain
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Mapping
from typing import Final

import anyio
import attrs
import structlog

from hft._config import Config, RiskRuleSection, structure_section
from hft._errors import ConfigError, HftError, NotFound, PluginError, ValidationError
from hft._plugins import PluginHost, Registry
from hft.contracts import RiskContext, RiskRejection, RiskRule, Storage
from hft.hookspecs import RiskRuleFactory
from hft.model import OrderRequest, Side, utcnow

__all__ = [
    "KillSwitchMode",
    "KillSwitchState",
    "RiskEngine",
    "reduces_position",
]

log = structlog.get_logger("hft.risk")

#: Where the kill-switch state lives in storage (``put_state``/``get_state``), and the audit kind.
STATE_NAMESPACE: Final = "risk"
STATE_KEY: Final = "kill_switch"
AUDIT_KIND: Final = "kill_switch"
_STATE_VERSION: Final = 1
#: Where runtime rule overrides live in storage, and their audit kind.
LIMITS_KEY: Final = "limits"
LIMITS_AUDIT_KIND: Final = "risk_limits"
_LIMITS_VERSION: Final = 1

_Check = Callable[[OrderRequest, RiskContext], "RiskRejection | None"]
_Commit = Callable[[OrderRequest, RiskContext], None]


class KillSwitchMode(enum.StrEnum):
    """What a kill switch lets through: everything, only position-reducing orders, nothing."""

    OFF = "off"
    REDUCE_ONLY = "reduce_only"
    HALT = "halt"

    @property
    def level(self) -> int:
        """Strictness, for picking the stricter of two switches: off 0, reduce_only 1, halt 2."""
        return _LEVELS[self]


_LEVELS: Final = {KillSwitchMode.OFF: 0, KillSwitchMode.REDUCE_ONLY: 1, KillSwitchMode.HALT: 2}


@attrs.frozen
class KillSwitchState:
    """One kill switch (global or an account's): its mode, and who set it, when and why."""

    mode: KillSwitchMode = KillSwitchMode.OFF
    reason: str = ""
    by: str = ""
    at: dt.datetime | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "mode": str(self.mode),
            "reason": self.reason,
            "by": self.by,
            "at": self.at.isoformat() if self.at else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> KillSwitchState:
        at = data.get("at")
        return cls(
            mode=KillSwitchMode(str(data["mode"])),
            reason=str(data.get("reason", "")),
            by=str(data.get("by", "")),
            at=dt.datetime.fromisoformat(at) if isinstance(at, str) else None,
        )


_OFF: Final = KillSwitchState()


def reduces_position(request: OrderRequest, context: RiskContext) -> bool:
    """Whether ``request`` can only bring the net position closer to zero, never through it.

    The account's live orders on the same side count too, so that two orders which each reduce
    a position cannot flip it together: a sell passes when the position is long by at least the
    pending sells plus this order's quantity (and the other way round for a buy).
    """
    position = context.position
    held = position.quantity if position is not None else 0
    if request.side is Side.BUY:
        return held < 0 and context.pending_buy_quantity + request.quantity <= -held
    return held > 0 and context.pending_sell_quantity + request.quantity <= held


@attrs.frozen
class _Chain:
    """One account's built rules, with their bound methods looked up once."""

    names: tuple[str, ...]
    checks: tuple[_Check, ...]
    commits: tuple[_Commit, ...]
    rules: tuple[RiskRule, ...] = ()


@attrs.frozen
class _Override:
    """A rule changed at runtime: its section, the settings as given (JSON), who, when, why."""

    section: RiskRuleSection
    settings: Mapping[str, object]
    by: str
    reason: str
    at: dt.datetime

    def to_json(self) -> dict[str, object]:
        return {
            "enabled": self.section.enabled,
            "settings": dict(self.settings),
            "by": self.by,
            "reason": self.reason,
            "at": self.at.isoformat(),
        }


class RiskEngine:
    """Runs each account's rule chain and keeps the kill switches.

    Build it with :meth:`from_config`; call :meth:`load` once with the host's storage before the
    first order so that kill switches set before a restart apply again. An account that is not in
    the configuration (one created at runtime) gets the global chain, built on its first order.
    """

    def __init__(
        self,
        risk: Mapping[str, RiskRuleSection],
        rules: Registry[RiskRuleFactory],
        accounts: Mapping[str, Mapping[str, RiskRuleSection]] | None = None,
    ) -> None:
        """``risk`` is the global chain, ``accounts`` each account's own chain (empty: global).

        Every enabled rule is built here (the global chain is built per account, lazily, for
        accounts not named); a rule that cannot be built raises :class:`ConfigError`.
        """
        self._config_global = dict(risk)
        self._config_accounts = {a: dict(s) for a, s in (accounts or {}).items() if s}
        self._global_overrides: dict[str, _Override] = {}
        self._account_overrides: dict[str, dict[str, _Override]] = {}
        self._rules = rules
        self._chains: dict[str, _Chain] = {}
        for account in accounts or {}:
            self._chains[account] = self._build(account, self.sections(account))
        # A throwaway build, so that a global rule that cannot be built fails at start-up.
        self._build("", self._config_global)
        self._global = _OFF
        self._accounts: dict[str, KillSwitchState] = {}
        # Strictness per scope, kept beside the states so ``check`` reads two ints.
        self._global_level = 0
        self._account_levels: dict[str, int] = {}
        self._storage: Storage | None = None
        #: Orders refused by :meth:`check`, by rejection code (read by metrics transports).
        self.rejections: dict[str, int] = {}
        self._unsaved: list[dict[str, object]] = []
        self._lock = anyio.Lock()

    @classmethod
    def from_config(cls, config: Config, plugins: PluginHost) -> RiskEngine:
        """The engine for a resolved configuration and the rules its plugins registered."""
        accounts = {name: section.risk for name, section in config.accounts.items()}
        return cls(config.risk, plugins.risk_rules, accounts)

    def _build(
        self,
        account: str,
        sections: Mapping[str, RiskRuleSection],
        keep: _Chain | None = None,
        rebuild: str = "",
    ) -> _Chain:
        """Build the enabled rules of ``sections``, reusing ``keep``'s except ``rebuild``."""
        kept = dict(zip(keep.names, keep.rules, strict=True)) if keep is not None else {}
        names: list[str] = []
        built: list[RiskRule] = []
        for name, section in sections.items():
            if not section.enabled:
                continue
            rule = kept.get(name) if name != rebuild else None
            if rule is None:
                rule = self._build_rule(account, name, section)
            names.append(name)
            built.append(rule)
        commits: list[_Commit] = []
        for rule in built:
            commit = getattr(rule, "commit", None)
            if callable(commit):
                commits.append(commit)
        return _Chain(
            tuple(names), tuple(rule.check for rule in built), tuple(commits), tuple(built)
        )

    def _build_rule(self, account: str, name: str, section: RiskRuleSection) -> RiskRule:
        path = f"accounts.{account}.risk.{name}" if account else f"risk.{name}"
        registration = self._rules.get(name)
        try:
            rule = registration.factory(section.settings)
        except Exception as exc:
            raise ConfigError(f"{path}: the rule could not be built: {exc}") from exc
        if not isinstance(rule, RiskRule):
            raise PluginError(
                f"{path}: plugin {registration.plugin!r} built {type(rule).__name__}, "
                "which is not a RiskRule (it needs code and check)"
            )
        return rule

    def _chain(self, account: str) -> _Chain:
        chain = self._chains.get(account)
        if chain is None:
            chain = self._chains[account] = self._build(account, self.sections(account))
        return chain

    def rule_names(self, account: str) -> tuple[str, ...]:
        """The enabled rules of ``account``'s chain, in the order they run."""
        return self._chain(account).names

    # Rule settings ----------------------------------------------------------------------------

    def sections(self, account: str | None = None) -> dict[str, RiskRuleSection]:
        """The rules of the global chain (``account`` None) or ``account``'s, in chain order.

        Runtime overrides included: an account's own override of a rule, else its own config
        values for it (when they differ from the global ones), else the global rule.
        """
        result: dict[str, RiskRuleSection] = {}
        own_config = self._config_accounts.get(account, {}) if account else {}
        own_overrides = self._account_overrides.get(account, {}) if account else {}
        for name, config_section in (own_config or self._config_global).items():
            if (override := own_overrides.get(name)) is not None:
                result[name] = override.section
            elif config_section != self._config_global.get(name):
                result[name] = config_section
            else:
                result[name] = self._global_section(name)
        return result

    def _global_section(self, name: str) -> RiskRuleSection:
        override = self._global_overrides.get(name)
        return override.section if override is not None else self._config_global[name]

    def own_accounts(self) -> list[str]:
        """The accounts whose chain is not the global one (own config values or overrides)."""
        return sorted(set(self._config_accounts) | set(self._account_overrides))

    def _structure(
        self, name: str, enabled: bool, settings: Mapping[str, object], account: str | None
    ) -> RiskRuleSection:
        if name not in self._config_global:
            known = ", ".join(self._config_global) or "none installed"
            raise NotFound(
                f"no risk rule named {name!r} (known: {known})", code="unknown_risk_rule"
            )
        path = f"accounts.{account}.risk.{name}" if account else f"risk.{name}"
        registration = self._rules.get(name)
        if registration.config is None:
            if settings:
                keys = ", ".join(f"{path}.{key}: unknown key" for key in sorted(settings))
                raise ConfigError(keys, code="risk_settings_invalid", status=400)
            return RiskRuleSection(bool(enabled), None)
        try:
            structured = structure_section(settings, registration.config, path)
        except ConfigError as exc:
            raise ConfigError(exc.message, code="risk_settings_invalid", status=400) from None
        return RiskRuleSection(bool(enabled), structured)

    async def set_rule(
        self,
        name: str,
        *,
        enabled: bool,
        settings: Mapping[str, object],
        account: str | None = None,
        by: str,
        reason: str = "",
    ) -> RiskRuleSection:
        """Change rule ``name`` globally (``account`` None) or for one account, and persist it.

        ``settings`` replace the rule's settings entirely (keys left out take their defaults).
        A global change applies to every account that has no own value for the rule; an
        account's change to that account only. Only that rule is rebuilt; it applies from the
        next order, before the write completes. Returns the new section.

        Raises :class:`NotFound` (``unknown_risk_rule``) for a rule not installed, and
        :class:`ConfigError` (``risk_settings_invalid``, status 400, naming each wrong field's
        path) for settings the rule does not accept; either way nothing changes.
        """
        section = self._structure(name, enabled, settings, account)
        try:
            raw = json.loads(json.dumps(dict(settings)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"risk.{name}: settings are not plain JSON values: {exc}",
                code="risk_settings_invalid",
                status=400,
            ) from None
        override = _Override(section, raw, by, reason, utcnow())
        previous = self.sections(account)[name]
        # The overrides change first (sections() reads them), then every affected chain is
        # built; if a build fails the overrides are put back, so a failure changes nothing.
        old = (self._global_overrides, self._account_overrides)
        if account is None:
            self._global_overrides = {**self._global_overrides, name: override}
            affected = [a for a in self._chains if self._inherits(a, name)]
        else:
            own = {**self._account_overrides.get(account, {}), name: override}
            self._account_overrides = {**self._account_overrides, account: own}
            affected = [account]
        try:
            rebuilt = {
                a: self._build(a, self.sections(a), self._chains.get(a), name) for a in affected
            }
            if account is None and section.enabled:
                self._build_rule("", name, section)  # fails even when no chain is built yet
        except Exception:
            self._global_overrides, self._account_overrides = old
            raise
        self._chains.update(rebuilt)
        entry: dict[str, object] = {
            "scope": "global" if account is None else "account",
            "account": account,
            "rule": name,
            "enabled": section.enabled,
            "settings": raw,
            "previous_enabled": previous.enabled,
            "reason": reason,
            "by": by,
        }
        log.warning("risk.limits", **entry)
        if self._storage is not None:
            async with self._lock:
                await self._storage.put_state(STATE_NAMESPACE, LIMITS_KEY, self._limits_snapshot())
                await self._storage.append_audit(LIMITS_AUDIT_KIND, entry)
        return section

    def _inherits(self, account: str, name: str) -> bool:
        """Whether ``account``'s rule ``name`` is the global one (no own value or override)."""
        if name in self._account_overrides.get(account, {}):
            return False
        own = self._config_accounts.get(account)
        return own is None or own.get(name) == self._config_global.get(name)

    def _limits_snapshot(self) -> bytes:
        data = {
            "version": _LIMITS_VERSION,
            "global": {n: o.to_json() for n, o in sorted(self._global_overrides.items())},
            "accounts": {
                a: {n: o.to_json() for n, o in sorted(rules.items())}
                for a, rules in sorted(self._account_overrides.items())
                if rules
            },
        }
        return json.dumps(data, sort_keys=True).encode()

    def _load_limits(self, raw: bytes) -> None:
        try:
            data = json.loads(raw)
            scopes: list[tuple[str | None, Mapping[str, Mapping[str, object]]]] = [
                (None, data["global"]),
                *data["accounts"].items(),
            ]
            loaded: list[tuple[str | None, str, _Override]] = []
            for account, rules in scopes:
                for name, value in rules.items():
                    if name not in self._config_global:
                        log.warning(
                            "risk.limits_override_ignored",
                            rule=name,
                            account=account,
                            reason="no such risk rule is installed",
                        )
                        continue
                    settings = value["settings"]
                    if not isinstance(settings, Mapping):
                        raise TypeError(f"{name}: settings are not a table")
                    at = value.get("at")
                    override = _Override(
                        self._structure(name, bool(value["enabled"]), settings, account),
                        dict(settings),
                        str(value.get("by", "")),
                        str(value.get("reason", "")),
                        dt.datetime.fromisoformat(at) if isinstance(at, str) else utcnow(),
                    )
                    loaded.append((account, name, override))
        except (ValueError, KeyError, TypeError, AttributeError, HftError) as exc:
            detail = exc.message if isinstance(exc, HftError) else f"{type(exc).__name__}: {exc}"
            raise HftError(
                f"the stored risk limits are unreadable ({detail}); "
                f"fix or delete state {STATE_NAMESPACE}/{LIMITS_KEY}",
                code="risk_limits_state_invalid",
            ) from None
        for account, name, override in loaded:
            if account is None:
                self._global_overrides[name] = override
            else:
                self._account_overrides.setdefault(account, {})[name] = override
        self._chains = {a: self._build(a, self.sections(a)) for a in self._chains}
        self._build("", self.sections())

    # The order path ---------------------------------------------------------------------------

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        """The first rejection of the kill switch or ``request.account``'s chain, else ``None``.

        Changes no state, except that a rejection asking for a kill switch (see
        :class:`~hft.contracts.RiskRejection`) trips the account's switch at once; the change
        is persisted by the next :meth:`flush` or :meth:`set_kill_switch`. A rule that raises
        refuses the order with code ``risk_rule_failed`` and is logged as ``risk.rule_failed``.
        """
        account = request.account
        level = self._global_level
        own = self._account_levels.get(account, 0)
        if own > level:
            level = own
        if level:
            rejection = self._kill_switch_rejection(level, request, context)
            if rejection is not None:
                return self._counted(rejection)
        chain = self._chains.get(account) or self._chain(account)
        check = None
        try:
            for check in chain.checks:
                rejection = check(request, context)
                if rejection is not None:
                    if rejection.kill_switch is not None:
                        self._trip(account, KillSwitchMode(rejection.kill_switch), rejection)
                    return self._counted(rejection)
        except Exception as exc:
            # A broken rule refuses the order (fail closed) instead of failing the request.
            name = chain.names[chain.checks.index(check)] if check is not None else "?"
            log.exception("risk.rule_failed", rule=name, account=account)
            return self._counted(
                RiskRejection(
                    "risk_rule_failed",
                    f"risk rule {name} failed ({type(exc).__name__}: {exc}); the order was refused",
                )
            )
        return None

    def _counted(self, rejection: RiskRejection) -> RiskRejection:
        code = rejection.code
        self.rejections[code] = self.rejections.get(code, 0) + 1
        return rejection

    def commit(self, request: OrderRequest, context: RiskContext) -> None:
        """Tell the rules that the whole chain accepted ``request`` (an order-rate rule counts it).

        Call it once per accepted order, with the context it was checked with.
        """
        for commit in (self._chains.get(request.account) or self._chain(request.account)).commits:
            commit(request, context)

    def _kill_switch_rejection(
        self, level: int, request: OrderRequest, context: RiskContext
    ) -> RiskRejection | None:
        state = self._effective_state(request.account)
        scope = "every account" if state is self._global else f"account {request.account}"
        setter = f"{state.reason} (set by {state.by})" if state.by else state.reason
        if level == KillSwitchMode.HALT.level:
            return RiskRejection("kill_switch_halt", f"trading is halted for {scope}: {setter}")
        if reduces_position(request, context):
            return None
        position = context.position
        held = position.quantity if position is not None else 0
        pending = (
            context.pending_buy_quantity
            if request.side is Side.BUY
            else context.pending_sell_quantity
        )
        side = "buy" if request.side is Side.BUY else "sell"
        detail = f" with {pending} more pending on that side" if pending else ""
        return RiskRejection(
            "kill_switch_reduce_only",
            f"{scope} is reduce-only: {setter}; a {side} of {request.quantity} "
            f"{context.instrument.key} would not reduce the net position of {held}{detail}",
        )

    # The kill switch --------------------------------------------------------------------------

    def kill_switch(self, account: str | None = None) -> KillSwitchState:
        """The global switch, or ``account``'s own switch (not counting the global one)."""
        if account is None:
            return self._global
        return self._accounts.get(account, _OFF)

    def effective_kill_switch(self, account: str) -> KillSwitchMode:
        """The mode that applies to ``account``'s orders: the stricter of its own and global."""
        return self._effective_state(account).mode

    def _effective_state(self, account: str) -> KillSwitchState:
        own = self._accounts.get(account, _OFF)
        return own if own.mode.level > self._global.mode.level else self._global

    async def set_kill_switch(
        self,
        mode: KillSwitchMode | str,
        *,
        account: str | None = None,
        reason: str,
        by: str,
    ) -> KillSwitchState:
        """Set the global switch (``account`` None) or one account's, and persist the change.

        Takes effect for the next order, before the write completes; the caller (an admin
        action; the transport checks the role) is recorded as ``by``. Returns the new state.
        Raises :class:`ValidationError` for an unknown mode, and whatever storage raises.
        """
        try:
            mode = KillSwitchMode(mode)
        except ValueError:
            allowed = ", ".join(m.value for m in KillSwitchMode)
            raise ValidationError(
                f"kill switch mode must be one of {allowed}, got {mode!r}", code="bad_kill_switch"
            ) from None
        state = self._apply(account, mode, reason, by)
        await self.flush()
        return state

    def _trip(self, account: str, mode: KillSwitchMode, rejection: RiskRejection) -> None:
        if self.kill_switch(account).mode.level >= mode.level:
            return  # only ever stricter: a rule must not lift what an admin set
        self._apply(account, mode, rejection.reason, f"rule {rejection.code}")

    def _apply(
        self, account: str | None, mode: KillSwitchMode, reason: str, by: str
    ) -> KillSwitchState:
        previous = self.kill_switch(account)
        state = KillSwitchState(mode, reason, by, utcnow())
        if account is None:
            self._global = state
            self._global_level = mode.level
        else:
            self._accounts[account] = state
            self._account_levels[account] = mode.level
        scope = "global" if account is None else "account"
        log_method = log.info if mode is KillSwitchMode.OFF else log.warning
        log_method(
            "risk.kill_switch",
            scope=scope,
            account=account,
            mode=str(mode),
            previous=str(previous.mode),
            reason=reason,
            by=by,
        )
        self._unsaved.append(
            {
                "scope": scope,
                "account": account,
                "mode": str(mode),
                "previous": str(previous.mode),
                "reason": reason,
                "by": by,
            }
        )
        return state

    # Persistence ------------------------------------------------------------------------------

    async def load(self, storage: Storage) -> None:
        """Restore the kill switches and rule overrides from ``storage`` and keep it.

        Call it once, before the first order; it replaces the in-memory switches, and stored
        rule overrides win over the config (one for a rule no longer installed is logged as
        ``risk.limits_override_ignored`` and skipped). Raises :class:`HftError` (code
        ``kill_switch_state_invalid`` or ``risk_limits_state_invalid``) when the stored state
        is unreadable, rather than trade without switches or limits that may have been set.
        """
        limits = await storage.get_state(STATE_NAMESPACE, LIMITS_KEY)
        if limits is not None:
            self._load_limits(limits)
        raw = await storage.get_state(STATE_NAMESPACE, STATE_KEY)
        self._storage = storage
        if raw is None:
            return
        try:
            data = json.loads(raw)
            global_state = KillSwitchState.from_json(data["global"])
            accounts = {
                name: KillSwitchState.from_json(value) for name, value in data["accounts"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HftError(
                f"the stored kill-switch state is unreadable ({type(exc).__name__}: {exc}); "
                f"fix or delete state {STATE_NAMESPACE}/{STATE_KEY}",
                code="kill_switch_state_invalid",
            ) from None
        self._global = global_state
        self._global_level = global_state.mode.level
        self._accounts = accounts
        self._account_levels = {name: s.mode.level for name, s in accounts.items()}

    async def flush(self) -> None:
        """Persist kill-switch changes not yet written (a trip made inside :meth:`check`).

        Without storage (before :meth:`load`) changes stay in memory only.
        """
        if self._storage is None:
            self._unsaved.clear()
            return
        async with self._lock:
            if not self._unsaved:
                return
            # The snapshot is taken under the lock, so a later write never stores older state.
            await self._storage.put_state(STATE_NAMESPACE, STATE_KEY, self._snapshot())
            while self._unsaved:
                await self._storage.append_audit(AUDIT_KIND, self._unsaved[0])
                del self._unsaved[0]

    def _snapshot(self) -> bytes:
        data = {
            "version": _STATE_VERSION,
            "global": self._global.to_json(),
            "accounts": {name: s.to_json() for name, s in sorted(self._accounts.items())},
        }
        return json.dumps(data, sort_keys=True).encode()
