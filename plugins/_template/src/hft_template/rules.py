"""The template's risk rule: refuse an order worth more than a configured limit.

Values are exact integers: an order's value is its price in the instrument's price units times
its quantity, compared with a limit in paise without ever going through a float.
"""

from __future__ import annotations

from typing import Final

import attrs

from hft.contracts import RiskContext, RiskRejection
from hft.model import Instrument, OrderRequest, format_price

#: The rule's name (its config section is ``[risk.template_max_notional]``) and its reject code.
NAME: Final = "template_max_notional"

PAISE_SCALE: Final = 2


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value}")


@attrs.frozen
class MaxNotionalConfig:
    """``[risk.template_max_notional]``.

    Every field has a default: the host structures the section of every installed rule, enabled
    or not, so a required field would break the configuration of hosts that never use the rule.
    """

    #: The largest order value let through, in paise (the default is ₹1,00,000).
    max_notional_paise: int = attrs.field(default=10_000_000, validator=_positive)
    #: Let through a market order when there is no last price to value it at.
    allow_unpriced: bool = False


def exceeds_limit(value: int, price_scale: int, max_notional_paise: int) -> bool:
    """Whether ``value`` (price units at ``price_scale`` × quantity) is above the limit."""
    # value / 10**price_scale > max / 10**2, cross-multiplied to stay in integers.
    units_per_rupee: int = 10**price_scale
    return value * 10**PAISE_SCALE > max_notional_paise * units_per_rupee


def describe(value: int, price_scale: int, max_notional_paise: int) -> str:
    """``value`` against the limit, in words a trader reads."""
    relation = "exceeds" if exceeds_limit(value, price_scale, max_notional_paise) else "is within"
    limit = format_price(max_notional_paise, PAISE_SCALE)
    return f"order value {format_price(value, price_scale)} {relation} the limit of {limit}"


def reference_price(request: OrderRequest, last_price: int | None) -> int | None:
    """The price an order is valued at: its limit price, else its trigger, else the last trade."""
    if request.price is not None:
        return request.price
    if request.trigger_price is not None:
        return request.trigger_price
    return last_price


@attrs.frozen
class MaxNotionalRule:
    """A :class:`hft.contracts.RiskRule`, built once per account from its config section.

    ``check`` runs for every order: it is quick, does no I/O and changes nothing.
    """

    config: MaxNotionalConfig
    code: str = NAME

    def check(self, request: OrderRequest, context: RiskContext) -> RiskRejection | None:
        price = reference_price(request, context.last_price)
        if price is None:
            if self.config.allow_unpriced:
                return None
            return RiskRejection(
                self.code, f"{context.instrument.key}: no price to value the order"
            )
        return self._check_value(context.instrument, price * request.quantity)

    def _check_value(self, instrument: Instrument, value: int) -> RiskRejection | None:
        limit = self.config.max_notional_paise
        if not exceeds_limit(value, instrument.price_scale, limit):
            return None
        return RiskRejection(
            self.code, f"{instrument.key}: {describe(value, instrument.price_scale, limit)}"
        )
