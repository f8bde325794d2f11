"""Positions and PnL per account, built from fills and marked from the market-data hub."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_EVEN, Decimal

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
