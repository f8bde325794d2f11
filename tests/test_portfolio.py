"""The portfolio: product conversions (MIS → NRML) between an instrument's positions."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hft import ValidationError
from hft._portfolio import Portfolio
from hft.model import Fill, Product, Side

MIS, NRML, CNC = Product.MIS, Product.NRML, Product.CNC


def fill(side: Side, quantity: int, price: int, n: int = 0) -> Fill:
    return Fill(f"f{n}", "b1", "acct", "NSE:INFY", side, quantity, price)


def open_cost(portfolio: Portfolio) -> Decimal:
    return sum((p.average_price * p.quantity for p in portfolio.positions()), Decimal(0))


# --------------------------------------------------------------------------------------------
# Portfolio
# --------------------------------------------------------------------------------------------


def test_a_conversion_moves_quantity_and_cost_and_leaves_realised_pnl() -> None:
    portfolio = Portfolio(lambda _: None)
    portfolio.apply_fill(fill(Side.BUY, 10, 100), MIS)
    portfolio.apply_fill(fill(Side.SELL, 2, 110), MIS)  # realises 20 in MIS
    portfolio.apply_fill(fill(Side.BUY, 4, 130), NRML)
    source, target = portfolio.convert("acct", "NSE:INFY", MIS, NRML, 6)
    assert (source.product, source.quantity, source.average_price) == (MIS, 2, 100)
    assert (target.product, target.quantity) == (NRML, 10)
    assert target.average_price == Decimal(6 * 100 + 4 * 130) / 10
    assert (source.realised_pnl, target.realised_pnl) == (20, 0)
    assert (source.buy_quantity, source.sell_quantity, target.buy_quantity) == (10, 2, 4)
    # Closing the converted quantity later realises PnL in NRML, against the moved cost.
    portfolio.apply_fill(fill(Side.SELL, 10, 120), NRML)
    assert target.realised_pnl == (120 - target.average_price) * 0 + Decimal(6 * 20 + 4 * -10)


def test_a_whole_short_position_converts_and_the_source_is_flat() -> None:
    portfolio = Portfolio(lambda _: None)
    portfolio.apply_fill(fill(Side.SELL, 5, 200), MIS)
    source, target = portfolio.convert("acct", "NSE:INFY", MIS, NRML, -5)
    assert (source.quantity, source.average_price) == (0, 0)
    assert (target.quantity, target.average_price) == (-5, 200)
    assert portfolio.net_quantity("acct", "NSE:INFY") == -5


@pytest.mark.parametrize(
    ("quantity", "source", "target"),
    [
        (11, MIS, NRML),  # more than held
        (-3, MIS, NRML),  # the wrong direction
        (3, NRML, MIS),  # nothing held in the source
        (3, MIS, CNC),  # the target holds the opposite direction
        (0, MIS, NRML),
        (3, MIS, MIS),
    ],
)
def test_a_conversion_the_positions_cannot_take_is_refused_and_changes_nothing(
    quantity: int, source: Product, target: Product
) -> None:
    portfolio = Portfolio(lambda _: None)
    portfolio.apply_fill(fill(Side.BUY, 10, 100), MIS)
    portfolio.apply_fill(fill(Side.SELL, 1, 100), CNC)
    before = [(p.product, p.quantity, p.average_price) for p in portfolio.positions()]
    with pytest.raises(ValidationError):
        portfolio.convert("acct", "NSE:INFY", source, target, quantity)
    assert [(p.product, p.quantity, p.average_price) for p in portfolio.positions()] == before


fills = st.lists(
    st.tuples(
        st.sampled_from(Side),
        st.integers(1, 50),
        st.integers(1, 10_000),
        st.sampled_from([MIS, NRML, CNC]),
    ),
    max_size=20,
)
conversions = st.lists(
    st.tuples(
        st.sampled_from([MIS, NRML, CNC]), st.sampled_from([MIS, NRML, CNC]), st.integers(-60, 60)
    ),
    max_size=20,
)


@given(fills, conversions)
def test_conversions_conserve_net_quantity_open_cost_and_realised_pnl(
    trades: list[tuple[Side, int, int, Product]], moves: list[tuple[Product, Product, int]]
) -> None:
    portfolio = Portfolio(lambda _: None)
    for n, (side, quantity, price, product) in enumerate(trades):
        portfolio.apply_fill(fill(side, quantity, price, n), product)
    net = portfolio.net_quantity("acct", "NSE:INFY")
    cost = open_cost(portfolio)
    realised = {p.product: p.realised_pnl for p in portfolio.positions()}
    for source, target, quantity in moves:
        with contextlib.suppress(ValidationError):
            portfolio.convert("acct", "NSE:INFY", source, target, quantity)
        assert portfolio.net_quantity("acct", "NSE:INFY") == net
        # Averages are exact decimals to 28 digits, so a cost may differ in the last one.
        assert abs(open_cost(portfolio) - cost) < Decimal("1e-12")
        assert {
            p.product: p.realised_pnl for p in portfolio.positions() if p.product in realised
        } == realised
        for position in portfolio.positions():
            assert position.quantity or position.average_price == 0
