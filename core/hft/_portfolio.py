"""Positions and PnL per account, built from fills and marked from the market-data hub; a
broker's product conversion (MIS → NRML) moves open quantity between an instrument's products."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_EVEN, Decimal

from hft._errors import ValidationError
from hft.model import Fill, Position, Product

__all__ = ["Portfolio"]

PositionKey = tuple[str, str, Product]
PAISE_SCALE = 2


class Portfolio:
    """Every account's positions; ``last_price`` (usually the hub's) marks them to market."""

    def __init__(self, last_price: Callable[[str], int | None]) -> None:
        self._last_price = last_price
        self._positions: dict[PositionKey, Position] = {}

    def load(self, positions: Iterable[Position]) -> None:
        for position in positions:
            self._positions[(position.account, position.instrument, position.product)] = position

    def apply_fill(self, fill: Fill, product: Product) -> Position:
        """Book ``fill`` into its position (created on first fill) and return the position."""
        key = (fill.account, fill.instrument, product)
        position = self._positions.get(key)
        if position is None:
            position = self._positions[key] = Position(fill.account, fill.instrument, product)
        position.apply_fill(fill.side, fill.quantity, fill.price)
        return position

    def convert(
        self, account: str, instrument: str, source: Product, target: Product, quantity: int
    ) -> tuple[Position, Position]:
        """Move ``quantity`` (signed: ``+q`` of a long, ``-q`` of a short) of the ``source``
        product's position to the ``target`` product's; return both positions, changed.

        The open cost moves with the quantity at the source's average price, so the target's
        average is the weighted mean of both; realised PnL, and the day's traded quantities and
        values, stay with the product they were made in. The account's net quantity and open
        cost in the instrument are unchanged. Refused with :class:`ValidationError`, changing
        nothing, when the source holds less than ``quantity`` in that direction or the target
        holds the opposite direction (moving into it would close a position, which a
        conversion never does).
        """
        if source is target or not quantity:
            raise ValidationError("a conversion moves some quantity between two products")
        held = self._positions.get((account, instrument, source))
        held_quantity = held.quantity if held is not None else 0
        if held is None or held_quantity * quantity <= 0 or abs(quantity) > abs(held_quantity):
            raise ValidationError(
                f"{account} {instrument}: cannot convert {quantity} from {source}, "
                f"which holds {held_quantity}",
                code="bad_conversion",
            )
        key = (account, instrument, target)
        into = self._positions.get(key)
        if into is not None and into.quantity * quantity < 0:
            raise ValidationError(
                f"{account} {instrument}: cannot convert {quantity} into {target}, "
                f"which holds {into.quantity}",
                code="bad_conversion",
            )
        if into is None:
            into = self._positions[key] = Position(account, instrument, target)
        moved_cost = held.average_price * abs(quantity)
        total = abs(into.quantity) + abs(quantity)
        into.average_price = (into.average_price * abs(into.quantity) + moved_cost) / total
        into.quantity += quantity
        held.quantity -= quantity
        if held.quantity == 0:
            held.average_price = Decimal(0)
        return held, into

    def positions(self, account: str | None = None) -> list[Position]:
        """Positions (of one account, or all), marked at the latest known price."""
        out = []
        for position in self._positions.values():
            if account is None or position.account == account:
                self._mark(position)
                out.append(position)
        return out

    def net_quantity(self, account: str, instrument: str) -> int:
        """The account's net quantity in ``instrument`` across products."""
        return sum(
            p.quantity
            for (acct, inst, _), p in self._positions.items()
            if acct == account and inst == instrument
        )

    def position(self, account: str, instrument: str) -> Position | None:
        """The account's position in ``instrument`` summed across products (None if flat)."""
        parts = [p for (a, i, _), p in self._positions.items() if a == account and i == instrument]
        if not parts:
            return None
        if len(parts) == 1:
            self._mark(parts[0])
            return parts[0]
        quantity = sum(p.quantity for p in parts)
        open_cost = sum((p.average_price * p.quantity for p in parts), Decimal(0))
        combined = Position(
            account,
            instrument,
            parts[0].product,
            quantity=quantity,
            average_price=open_cost / quantity if quantity else Decimal(0),
            realised_pnl=sum((p.realised_pnl for p in parts), Decimal(0)),
            buy_quantity=sum(p.buy_quantity for p in parts),
            buy_value=sum(p.buy_value for p in parts),
            sell_quantity=sum(p.sell_quantity for p in parts),
            sell_value=sum(p.sell_value for p in parts),
        )
        self._mark(combined)
        return combined

    def day_pnl(self, account: str, price_scale: Callable[[str], int] | None = None) -> int:
        """Realised plus mark-to-market PnL of the account in paise (rounded half-even).

        ``price_scale(instrument)`` gives each instrument's decimal places (default 2, paise), so
        PnL of instruments quoted more finely is converted before it is added up.
        """
        total = Decimal(0)
        for position in self.positions(account):
            scale = price_scale(position.instrument) if price_scale else PAISE_SCALE
            total += position.total_pnl.scaleb(PAISE_SCALE - scale)
        return int(total.to_integral_value(ROUND_HALF_EVEN))

    def _mark(self, position: Position) -> None:
        price = self._last_price(position.instrument)
        if price is not None:
            position.last_price = price
