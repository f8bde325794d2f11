"""The matching benchmark: replay an OFLOW1 order flow through the engine and report the result.

OFLOW1 is the shared workload format (``shared/bench/README.md``): a 16-byte header (the magic
``OFLOW1\\0\\0`` and a little-endian u64 record count), then one 14-byte ``<BBIiI`` record per
operation: ``op, side, order_id, price, quantity``. ADD (0) and LIMIT (2) are both a limit order
for the engine, CANCEL (1) a cancel, MARKET (3) a market order.

The replay loop is plain interpreted Python calling the engine once per operation, as a client
of the engine would; it is deliberately not part of the compiled module.
"""

from __future__ import annotations

import gc
import struct
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import attrs

from hft_ext import COMPILED, load_engine
from hft_ext._engine import BUY, MARKET, SELL, Engine

__all__ = [
    "ReplayResult",
    "book_checksum",
    "measure_resting_memory",
    "read_workload",
    "replay",
    "run_matching",
]

MAGIC: Final = b"OFLOW1\0\0"
_HEADER: Final = struct.Struct("<8sQ")
_RECORD: Final = struct.Struct("<BBIiI")
OP_ADD: Final = 0
OP_CANCEL: Final = 1
OP_LIMIT: Final = 2
OP_MARKET: Final = 3

#: One operation as the replay loop consumes it: ``(op, side, order_id, price, quantity)``.
Op = tuple[int, int, int, int, int]

_FNV_OFFSET: Final = 1469598103934665603
_FNV_PRIME: Final = 1099511628211
_MASK48: Final = 0xFFFFFFFFFFFF
_MASK64: Final = 0xFFFFFFFFFFFFFFFF


@attrs.frozen
class ReplayResult:
    """What ``hft bench matching`` reports."""

    ops: int
    seconds: float  # the fastest of ``repeat`` replays, each on a fresh engine
    ops_per_s: float
    compiled: bool
    n_fills: int
    filled_qty: int
    live_orders: int
    checksum: int
    repeat: int


def read_workload(path: Path) -> list[Op]:
    """Decode an OFLOW1 file; raise ValueError when it is not one."""
    data = path.read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"{path}: too short for an OFLOW1 header")
    magic, count = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"{path}: not an OFLOW1 file")
    end = _HEADER.size + count * _RECORD.size
    if len(data) < end:
        raise ValueError(f"{path}: header says {count} records, the file holds fewer")
    ops: list[Op] = []
    for op, side, order_id, price, quantity in _RECORD.iter_unpack(data[_HEADER.size : end]):
        if op > OP_MARKET or side > SELL:
            raise ValueError(f"{path}: bad record op={op} side={side} order_id={order_id}")
        ops.append((op, side, order_id, price, quantity))
    return ops


def replay(engine: Engine, ops: Sequence[Op]) -> float:
    """Apply ``ops`` to ``engine`` one call each; return the seconds it took."""
    submit = engine.submit
    cancel = engine.cancel
    op_cancel = OP_CANCEL
    op_market = OP_MARKET
    market = MARKET
    start = time.perf_counter()
    for op, side, order_id, price, quantity in ops:
        if op == op_cancel:
            cancel(order_id)
        elif op == op_market:
            submit(order_id, 0, side, 0, quantity, market)
        else:
            submit(order_id, 0, side, price, quantity)
    return time.perf_counter() - start


def book_checksum(engine: Engine) -> int:
    """The shared workload's checksum of the final book.

    Bids best first, then asks best first, each level in queue order, each order folded in as
    ``(side, price, order_id, remaining)`` by the FNV-1a style loop of ``workload.py``.
    """
    h = _FNV_OFFSET
    for side in (BUY, SELL):
        for price, orders in engine.queue(side):
            for order_id, _owner, remaining in orders:
                for value in (side, price, order_id, remaining):
                    h = ((h ^ (value & _MASK48)) * _FNV_PRIME) & _MASK64
    return h


def run_matching(path: Path, *, interpreted: bool = False, repeat: int = 5) -> ReplayResult:
    """Replay the workload ``repeat`` times on fresh engines and report the fastest run."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    ops = read_workload(path)
    engine_class = load_engine(interpreted)
    best = float("inf")
    engine = engine_class()
    for _ in range(repeat):
        engine = engine_class()
        best = min(best, replay(engine, ops))
    return ReplayResult(
        ops=len(ops),
        seconds=best,
        ops_per_s=len(ops) / best if best > 0 else float("inf"),
        compiled=COMPILED and not interpreted,
        n_fills=engine.n_fills,
        filled_qty=engine.filled_qty,
        live_orders=engine.live_orders,
        checksum=book_checksum(engine),
        repeat=repeat,
    )


def measure_resting_memory(orders: int, *, interpreted: bool = False) -> float:
    """Bytes the engine holds per resting order with ``orders`` orders resting.

    Orders alternate sides over 500 price levels per side, so levels hold many orders each, as
    in a deep book. Counted with tracemalloc: everything the engine allocated and still holds.
    """
    engine_class = load_engine(interpreted)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine = engine_class()
        submit = engine.submit
        for i in range(orders):
            offset = (i >> 1) % 500
            if i & 1:
                submit(i + 1, 0, SELL, 100_001 + offset, 10)
            else:
                submit(i + 1, 0, BUY, 99_999 - offset, 10)
        engine.take_events()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    if engine.live_orders != orders:
        raise RuntimeError(
            f"expected {orders} resting orders, the engine holds {engine.live_orders}"
        )
    return held / orders
