"""Replay the standard order flow through NautilusTrader's Rust L3 order book, for comparison.

Nautilus's ``OrderBook`` (the pyo3 binding of its Rust book, L3_MBO) is a book, not a matching
engine: it does not match an incoming order against itself. So the flow is replayed the way a
venue simulator drives it: for each taker, ``simulate_fills`` computes the fills, and the book is
then maintained from the market-by-order feed the flow implies (``workload.generate`` yields it:
ADD, UPDATE of partly filled makers, DELETE of filled or cancelled ones). Passive orders and
cancels are one ``add`` or ``delete`` each.

Every ``BookOrder``, ``Price`` and ``Quantity`` is built before the clock starts, so the timed loop
is only the calls into the book: the most favourable setting for Nautilus.

Run it in a venv with ``nautilus-trader`` installed (never the project's dev venv)::

    python nautilus_book.py --workload-py ../../../shared/bench/workload.py --n 300000 --seed 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

_ADD, _UPDATE, _DELETE = 1, 2, 3  # the feed's actions (nautilus BookAction numbering)
_LIMIT, _MARKET = 2, 3


def load_workload(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("shared_workload", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["shared_workload"] = module
    spec.loader.exec_module(module)
    return module


def build_calls(workload: ModuleType, n: int, seed: int) -> tuple[list[tuple[int, Any]], Any]:
    """The flat list of ``(action, BookOrder)`` book calls for the flow, and its summary."""
    from nautilus_trader.core import nautilus_pyo3 as nt

    marks: list[int] = []
    ops, summary, feed = workload.generate(n, seed, with_feed=True, feed_marks=marks)
    sides = (nt.OrderSide.BUY, nt.OrderSide.SELL)
    prices: dict[int, Any] = {}
    quantities: dict[int, Any] = {}

    def price(value: int) -> Any:
        if value not in prices:
            prices[value] = nt.Price(float(value), 0)
        return prices[value]

    def quantity(value: int) -> Any:
        if value not in quantities:
            quantities[value] = nt.Quantity(float(value), 0)
        return quantities[value]

    calls: list[tuple[int, Any]] = []
    start = 0
    for (op, oid, side, limit, qty), end in zip(ops, marks, strict=True):
        if op in (_LIMIT, _MARKET):
            # A market order crosses everything: give it a price beyond any level.
            taker_price = limit if op == _LIMIT else (10**9 if side == 0 else 1)
            calls.append((0, nt.BookOrder(sides[side], price(taker_price), quantity(qty), oid)))
        for action, f_oid, f_side, f_price, f_qty in feed[start:end]:
            calls.append(
                (action, nt.BookOrder(sides[f_side], price(f_price), quantity(f_qty), f_oid))
            )
        start = end
    return calls, summary


def replay(calls: list[tuple[int, Any]]) -> tuple[Any, float, int]:
    """Run the calls on a fresh book; return it, the seconds, and the fills simulated."""
    from nautilus_trader.core import nautilus_pyo3 as nt

    book = nt.OrderBook(nt.InstrumentId.from_str("BENCH.SIM"), nt.BookType.L3_MBO)
    add = book.add
    update = book.update
    delete = book.delete
    simulate = book.simulate_fills
    fills = 0
    begin = time.perf_counter()
    for seq, (action, order) in enumerate(calls, 1):
        if action == _ADD:
            add(order, 0, seq, seq)
        elif action == _DELETE:
            delete(order, 0, seq, seq)
        elif action == _UPDATE:
            update(order, 0, seq, seq)
        else:
            result = simulate(order)
            fills += len(result)
    seconds = time.perf_counter() - begin
    return book, seconds, fills


def checksum(book: Any) -> tuple[int, int]:
    """The shared workload's checksum of the final book, and its order count."""
    h = 1469598103934665603
    count = 0
    for side, levels in ((0, book.bids()), (1, book.asks())):
        for level in levels:
            p = int(level.price.as_double())
            for order in level.get_orders():
                count += 1
                for value in (side, p, order.order_id, int(order.size.as_double())):
                    h = ((h ^ (value & 0xFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h, count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload-py", type=Path, required=True)
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import nautilus_trader

    workload = load_workload(args.workload_py)
    calls, summary = build_calls(workload, args.n, args.seed)
    best = float("inf")
    book: Any = None
    fills = 0
    for _ in range(args.repeat):
        book, seconds, fills = replay(calls)
        best = min(best, seconds)
    h, live = checksum(book)
    result = {
        "engine": f"nautilus_trader {nautilus_trader.__version__} OrderBook (L3_MBO)",
        "ops": args.n,
        "book_calls": len(calls),
        "seconds": best,
        "ops_per_s": args.n / best,
        "n_fills": fills,
        "live_orders": live,
        "checksum": h,
        "checksum_matches": h == summary.checksum and fills == summary.n_fills,
        "repeat": args.repeat,
    }
    print(json.dumps(result) if args.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
