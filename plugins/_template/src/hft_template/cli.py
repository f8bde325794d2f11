"""``hft template-notional``: value an order the way the rule does, from the command line."""

from __future__ import annotations

import argparse

from hft.model import to_price_units
from hft_template.rules import MaxNotionalConfig, describe, exceeds_limit


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("price", help="price as a decimal string, e.g. 1234.05")
    parser.add_argument("quantity", type=int, help="quantity in shares or contracts")
    parser.add_argument(
        "--price-scale",
        type=int,
        default=2,
        help="decimal places of the instrument's prices (default: 2, paise)",
    )
    parser.add_argument(
        "--max-notional-paise",
        type=int,
        default=MaxNotionalConfig().max_notional_paise,
        help="the limit to compare with, in paise (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the order's value against the limit; exit 1 when the rule would refuse it.

    A malformed price raises :class:`hft.ValidationError`, which ``hft`` prints as an error.
    """
    value = to_price_units(args.price, args.price_scale) * args.quantity
    print(describe(value, args.price_scale, args.max_notional_paise))
    return 1 if exceeds_limit(value, args.price_scale, args.max_notional_paise) else 0
