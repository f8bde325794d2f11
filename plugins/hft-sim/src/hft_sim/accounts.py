"""Sim accounts: cash, margin, positions, holdings and PnL, all integers in paise.

The rules (``docs/simulation.md`` states them for users):

- **Cash** is the ledger balance. A CNC (delivery) buy is paid in full when it fills and a CNC
  sell is credited when it fills. MIS and NRML trades move no cash: their PnL is *realised* when
  a fill closes open quantity (first in, first out, so every figure is an exact integer) and
  settles into cash at the day reset.
- **Margin.** Live orders block margin per instrument and product: the unfilled quantity of
  the orders that would open or extend a position, valued at their prices, times the product's
  rate (100 % for CNC buys, ``mis_pct`` for MIS, ``nrml_pct`` for NRML futures). Orders on the
  side that reduces an existing position block nothing for the quantity the position covers;
  beyond it they block pro rata to their value. With no position, buys and sells both block.
  An open MIS or NRML position blocks its quantity times the last price times its rate; CNC
  positions are paid for and block nothing. A CNC sell needs shares: holdings plus today's CNC
  net position, less CNC sells still open.
- **Available funds** = cash + realised PnL today + unrealised PnL today if it is a loss
  (MTM losses count at once, gains only once realised) − position margin − order margin. An
  order that needs more than is available is refused.
- **Day reset**: MIS positions are squared off at the last price; NRML positions are marked to
  the last price (the difference is realised) and carried; today's CNC net positions move into
  holdings; realised PnL settles into cash; day counters restart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import attrs

from hft.model import Holding, Position, Product, Side

__all__ = ["BPS", "Funds", "HoldingBook", "MarginRates", "OpenOrder", "PositionBook", "SimAccount"]

#: Basis points in one: rates are integers so money never passes through a float.
BPS: Final = 10_000

Marks = Callable[[str], int]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@attrs.frozen
class MarginRates:
    """Margin as basis points of notional per product (CNC is always paid in full)."""

    mis_bps: int
    nrml_bps: int

    @classmethod
    def from_percent(cls, mis_pct: float, nrml_pct: float) -> MarginRates:
        return cls(round(mis_pct * 100), round(nrml_pct * 100))

    def rate(self, product: Product) -> int:
        if product is Product.MIS:
            return self.mis_bps
        if product is Product.NRML:
            return self.nrml_bps
        return BPS


@attrs.frozen
class OpenOrder:
    """Unfilled quantity of a live order, and the price it is valued at (its limit price, a
    stop's trigger, or the last price when a market order was placed)."""

    instrument: str
    product: Product
    side: Side
    quantity: int
    price: int


@attrs.frozen
class Funds:
    """An account's funds as the broker reports them, in paise."""

    cash: int
    realised: int
    unrealised: int
    position_margin: int
    order_margin: int
    available: int


@attrs.define
class PositionBook:
    """Today's trades in one instrument and product, with the open lots they leave.

    ``lots`` are ``[signed quantity, price]``, oldest first; a fill first closes lots of the
    other sign (realising their PnL), then opens a new lot with what is left.
    """

    instrument: str
    product: Product
    lots: list[list[int]] = attrs.field(factory=list)
    realised: int = 0
    buy_quantity: int = 0
    buy_value: int = 0
    sell_quantity: int = 0
    sell_value: int = 0

    @property
    def quantity(self) -> int:
        return sum(lot[0] for lot in self.lots)

    @property
    def cost(self) -> int:
        """Signed cost of the open quantity (negative for a short)."""
        return sum(q * p for q, p in self.lots)

    def unrealised(self, mark: int) -> int:
        return self.quantity * mark - self.cost

    def fill(self, side: Side, quantity: int, price: int) -> int:
        """Book a fill; return the PnL it realised."""
        if side is Side.BUY:
            self.buy_quantity += quantity
            self.buy_value += quantity * price
        else:
            self.sell_quantity += quantity
            self.sell_value += quantity * price
        signed = quantity if side is Side.BUY else -quantity
        realised = 0
        lots = self.lots
        while signed and lots and (lots[0][0] > 0) != (signed > 0):
            lot_qty, lot_price = lots[0]
            closed = min(abs(signed), abs(lot_qty))
            direction = 1 if lot_qty > 0 else -1
            realised += closed * (price - lot_price) * direction
            if closed == abs(lot_qty):
                lots.pop(0)
            else:
                lots[0][0] = lot_qty - closed * direction
            signed += closed * direction
        if signed:
            lots.append([signed, price])
        self.realised += realised
        return realised

    def position(self, account: str, last: int | None) -> Position:
        quantity = self.quantity
        average = Decimal(self.cost) / quantity if quantity else Decimal(0)
        return Position(
            account=account,
            instrument=self.instrument,
            product=self.product,
            quantity=quantity,
            average_price=average,
            realised_pnl=Decimal(self.realised),
            buy_quantity=self.buy_quantity,
            buy_value=self.buy_value,
            sell_quantity=self.sell_quantity,
            sell_value=self.sell_value,
            last_price=last,
        )

    def new_day(self) -> None:
        self.realised = 0
        self.buy_quantity = self.buy_value = self.sell_quantity = self.sell_value = 0


@attrs.define
class HoldingBook:
    """Delivery shares held overnight: quantity and what they cost in total."""

    quantity: int = 0
    cost: int = 0


@attrs.define
class SimAccount:
    """One simulated account. Every method is synchronous and does no I/O."""

    code: str
    starting_cash: int
    cash: int
    realised_day: int = 0
    positions: dict[tuple[str, Product], PositionBook] = attrs.field(factory=dict)
    holdings: dict[str, HoldingBook] = attrs.field(factory=dict)
    # Live orders' unfilled [quantity, value] per (instrument, product, side): kept by the
    # broker as orders come and go, so a funds check never walks the order book.
    open_orders: dict[tuple[str, Product, Side], list[int]] = attrs.field(
        factory=dict, eq=False, repr=False
    )
    # What each (instrument, product) group of live orders blocks, their total, the groups to
    # recompute and the rates the figures are for: a funds check costs O(changed groups).
    _margins: dict[tuple[str, Product], int] = attrs.field(
        init=False, factory=dict, eq=False, repr=False
    )
    _margin_total: int = attrs.field(init=False, default=0, eq=False, repr=False)
    _stale: set[tuple[str, Product]] = attrs.field(init=False, factory=set, eq=False, repr=False)
    _margin_rates: MarginRates | None = attrs.field(init=False, default=None, eq=False, repr=False)

    @classmethod
    def new(cls, code: str, cash: int) -> SimAccount:
        return cls(code, cash, cash)

    # Trading ----------------------------------------------------------------------------------

    def apply_fill(
        self, instrument: str, product: Product, side: Side, quantity: int, price: int
    ) -> None:
        """Book a fill: the position, and cash for CNC or realised PnL for MIS and NRML."""
        book = self.positions.get((instrument, product))
        if book is None:
            book = self.positions[(instrument, product)] = PositionBook(instrument, product)
        realised = book.fill(side, quantity, price)
        self._changed(instrument, product)
        if product is Product.CNC:
            value = quantity * price
            self.cash += -value if side is Side.BUY else value
        else:
            self.realised_day += realised

    def sellable(self, instrument: str) -> int:
        """Shares a CNC sell may deliver: holdings plus today's CNC net position."""
        held = self.holdings.get(instrument)
        today = self.positions.get((instrument, Product.CNC))
        return (held.quantity if held else 0) + (today.quantity if today else 0)

    # Funds ------------------------------------------------------------------------------------

    def unrealised(self, marks: Marks) -> int:
        """Mark-to-market PnL of the open MIS and NRML quantity."""
        return sum(
            book.unrealised(marks(key))
            for (key, product), book in self.positions.items()
            if product is not Product.CNC and book.lots
        )

    def position_margin(self, marks: Marks, rates: MarginRates) -> int:
        total = 0
        for (key, product), book in self.positions.items():
            if product is Product.CNC or not book.lots:
                continue
            total += _ceil_div(abs(book.quantity) * marks(key) * rates.rate(product), BPS)
        return total

    def add_order(self, order: OpenOrder) -> None:
        """Count a live order's unfilled part (or more of it) towards margin."""
        entry = self.open_orders.setdefault((order.instrument, order.product, order.side), [0, 0])
        entry[0] += order.quantity
        entry[1] += order.quantity * order.price
        self._changed(order.instrument, order.product)

    def remove_order(self, order: OpenOrder) -> None:
        """Stop counting ``order.quantity`` of a live order (filled, cancelled or changed)."""
        key = (order.instrument, order.product, order.side)
        entry = self.open_orders[key]
        entry[0] -= order.quantity
        entry[1] -= order.quantity * order.price
        if entry[0] == 0:
            del self.open_orders[key]
        self._changed(order.instrument, order.product)

    def pending(self, instrument: str, product: Product, side: Side) -> int:
        """Unfilled quantity of the live orders of one instrument, product and side."""
        entry = self.open_orders.get((instrument, product, side))
        return entry[0] if entry else 0

    def order_margin(self, rates: MarginRates) -> int:
        """What the live orders block, over every instrument and product they are for."""
        margins = self._margins
        if rates != self._margin_rates:
            self._margin_rates = rates
            self._stale.update(margins)
            self._stale.update((i, p) for i, p, _ in self.open_orders)
        for group in self._stale:
            self._margin_total -= margins.pop(group, 0)
            value = self._group_margin(*group, rates, None)
            if value:
                margins[group] = value
                self._margin_total += value
        self._stale.clear()
        return self._margin_total

    def _changed(self, instrument: str, product: Product) -> None:
        self._stale.add((instrument, product))

    def margin_change(
        self, rates: MarginRates, add: OpenOrder, remove: OpenOrder | None = None
    ) -> int:
        """How much more margin the live orders would block with ``add`` (replacing
        ``remove``, for a modify)."""
        changes = [(add, 1)] + ([(remove, -1)] if remove is not None else [])
        groups = {(order.instrument, order.product) for order, _ in changes}
        return sum(
            self._group_margin(i, p, rates, changes) - self._group_margin(i, p, rates, None)
            for i, p in groups
        )

    def _group_margin(
        self,
        instrument: str,
        product: Product,
        rates: MarginRates,
        changes: list[tuple[OpenOrder, int]] | None,
    ) -> int:
        buys = list(self.open_orders.get((instrument, product, Side.BUY), (0, 0)))
        sells = list(self.open_orders.get((instrument, product, Side.SELL), (0, 0)))
        for order, sign in changes or ():
            if (order.instrument, order.product) == (instrument, product):
                entry = buys if order.side is Side.BUY else sells
                entry[0] += sign * order.quantity
                entry[1] += sign * order.quantity * order.price
        if product is Product.CNC:
            return buys[1]
        book = self.positions.get((instrument, product))
        held = book.quantity if book else 0
        if held == 0:
            value = buys[1] + sells[1]
        else:
            opening, reducing = (buys, sells) if held > 0 else (sells, buys)
            excess = max(0, reducing[0] - abs(held))
            value = opening[1] + (reducing[1] * excess // reducing[0] if excess else 0)
        return _ceil_div(value * rates.rate(product), BPS)

    def funds(self, marks: Marks, rates: MarginRates) -> Funds:
        unrealised = self.unrealised(marks)
        position_margin = self.position_margin(marks, rates)
        order_margin = self.order_margin(rates)
        available = (
            self.cash + self.realised_day + min(0, unrealised) - position_margin - order_margin
        )
        return Funds(
            self.cash, self.realised_day, unrealised, position_margin, order_margin, available
        )

    def equity(self, marks: Marks) -> int:
        """Cash + realised + unrealised + the value of CNC positions and holdings at ``marks``:
        what the account is worth if everything were closed at those prices."""
        value = self.cash + self.realised_day + self.unrealised(marks)
        for (key, product), book in self.positions.items():
            if product is Product.CNC:
                value += book.quantity * marks(key)
        for key, held in self.holdings.items():
            value += held.quantity * marks(key)
        return value

    # Admin ------------------------------------------------------------------------------------

    def top_up(self, paise: int) -> None:
        """Add cash (a negative amount withdraws; the balance may not go below zero)."""
        if self.cash + paise < 0:
            raise ValueError(
                f"account {self.code!r} holds {self.cash} paise; cannot withdraw {-paise}"
            )
        self.cash += paise

    def reset_funds(self) -> None:
        """Cash back to the starting amount and today's realised PnL to zero; positions and
        holdings stay."""
        self.cash = self.starting_cash
        self.realised_day = 0

    # Day reset --------------------------------------------------------------------------------

    def end_day(self, marks: Marks) -> None:
        """Square off MIS, mark NRML to market, move CNC into holdings, settle PnL into cash."""
        for (key, product), book in list(self.positions.items()):
            mark = marks(key)
            quantity = book.quantity
            if product is Product.MIS and quantity:
                self.realised_day += book.unrealised(mark)
                book.lots.clear()
            elif product is Product.NRML and quantity:
                self.realised_day += book.unrealised(mark)
                book.lots[:] = [[quantity, mark]]
            elif product is Product.CNC and quantity:
                self._to_holdings(key, book)
                book.lots.clear()
            book.new_day()
            if not book.lots:
                del self.positions[(key, product)]
        self.cash += self.realised_day
        self.realised_day = 0
        self._stale.update(self._margins)

    def _to_holdings(self, key: str, book: PositionBook) -> None:
        held = self.holdings.setdefault(key, HoldingBook())
        quantity = book.quantity
        if quantity > 0:
            held.quantity += quantity
            held.cost += book.cost
        else:
            sold = min(-quantity, held.quantity)
            if held.quantity:
                held.cost -= held.cost * sold // held.quantity
            held.quantity -= sold
        if held.quantity == 0:
            del self.holdings[key]

    # Reporting --------------------------------------------------------------------------------

    def position_list(self, marks: Callable[[str], int | None]) -> list[Position]:
        return [book.position(self.code, marks(key)) for (key, _), book in self.positions.items()]

    def holding_list(self, marks: Callable[[str], int | None]) -> list[Holding]:
        return [
            Holding(
                account=self.code,
                instrument=key,
                quantity=held.quantity,
                average_price=Decimal(held.cost) / held.quantity,
                last_price=marks(key),
            )
            for key, held in self.holdings.items()
            if held.quantity
        ]

    # Persistence ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "starting_cash": self.starting_cash,
            "cash": self.cash,
            "realised_day": self.realised_day,
            "positions": [
                {
                    "instrument": b.instrument,
                    "product": str(b.product),
                    "lots": [list(lot) for lot in b.lots],
                    "realised": b.realised,
                    "buy_quantity": b.buy_quantity,
                    "buy_value": b.buy_value,
                    "sell_quantity": b.sell_quantity,
                    "sell_value": b.sell_value,
                }
                for b in self.positions.values()
            ],
            "holdings": [
                {"instrument": k, "quantity": h.quantity, "cost": h.cost}
                for k, h in self.holdings.items()
            ],
        }

    @classmethod
    def from_json(cls, code: str, data: Mapping[str, Any]) -> SimAccount:
        account = cls(code, int(data["starting_cash"]), int(data["cash"]))
        account.realised_day = int(data.get("realised_day", 0))
        for row in data.get("positions", ()):
            product = Product(row["product"])
            book = PositionBook(
                row["instrument"],
                product,
                [[int(q), int(p)] for q, p in row["lots"]],
                int(row["realised"]),
                int(row["buy_quantity"]),
                int(row["buy_value"]),
                int(row["sell_quantity"]),
                int(row["sell_value"]),
            )
            account.positions[(book.instrument, product)] = book
        for row in data.get("holdings", ()):
            account.holdings[row["instrument"]] = HoldingBook(
                int(row["quantity"]), int(row["cost"])
            )
        return account
