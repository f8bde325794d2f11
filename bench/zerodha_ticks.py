"""KiteTicker decoding: hft_zerodha.decode_ticks against the official kiteconnect parser.

Both decode the same binary frames (100 packets each, ltp / quote / full mode, instruments of
the NSE, CDS and NCO segments, every field different from packet to packet); the decoded values
are compared first, then ticks per second measured, interleaving the two parsers and keeping
the median of each in CPU time, so that load on a shared machine hurts both alike.

Needs the ``kiteconnect`` package (only the bench needs it: ``pip install kiteconnect``); without
it the script says so and leaves its section of docs/benchmarks.md as it was.

Run: ``python bench/zerodha_ticks.py`` (``nox -s bench`` runs it too).
"""

from __future__ import annotations

import datetime as dt
import gc
import random
import statistics
import struct
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hft_zerodha import decode_ticks

from bench._report import git_revision, machine, write_section

PACKETS_PER_FRAME = 100
ROUNDS = 15
ROUND_S = 0.1
TARGET_FULL = 3.0
#: segment → divisor, as the spec's table gives them.
SEGMENTS = {1: 100, 3: 10_000_000, 12: 10_000}
_FULL = struct.Struct(">I10i5i" + "iiH2x" * 10)


def _packet(rng: random.Random, token: int, size: int) -> bytes:
    price = rng.randrange(10_000, 5_000_000)
    quote = [
        token,
        price,
        rng.randrange(1, 5000),
        price - rng.randrange(0, 500),
        rng.randrange(0, 10**9),
        rng.randrange(0, 10**7),
        rng.randrange(0, 10**7),
        price - 100,
        price + 200,
        price - 300,
        price - 50,
    ]
    stamp = 1_768_970_000 + rng.randrange(0, 20_000)
    extended = [stamp, rng.randrange(0, 10**6), 10**6, 10**5, stamp + 1]
    depth: list[int] = []
    for side in (-1, 1):
        for level in range(5):
            depth += [rng.randrange(1, 10**5), price + side * 5 * (level + 1), rng.randrange(1, 50)]
    full = _FULL.pack(*quote, *extended, *depth)
    return full[:size]


def frames(rng: random.Random) -> dict[str, bytes]:
    result = {}
    for mode, size in (("ltp", 8), ("quote", 44), ("full", 184)):
        packets = []
        for i in range(PACKETS_PER_FRAME):
            segment = list(SEGMENTS)[i % len(SEGMENTS)]
            token = (rng.randrange(1, 2**20) << 8) | segment
            packets.append(_packet(rng, token, size))
        body = b"".join(struct.pack(">H", len(p)) + p for p in packets)
        result[mode] = struct.pack(">H", len(packets)) + body
    return result


def check_equal(ours: list[object], theirs: list[dict[str, object]]) -> None:
    """Every value kiteconnect decodes, ours gives too (prices in units = rupees × divisor)."""
    assert len(ours) == len(theirs), (len(ours), len(theirs))
    for tick, kite in zip(ours, theirs, strict=True):
        token = kite["instrument_token"]
        assert isinstance(token, int)
        divisor = SEGMENTS[token & 0xFF]

        def units(value: object, divisor: int = divisor) -> int:
            assert isinstance(value, float)
            return round(value * divisor)

        assert tick.instrument == str(token)  # type: ignore[attr-defined]
        assert tick.last_price == units(kite["last_price"])  # type: ignore[attr-defined]
        if kite["mode"] == "ltp":
            continue
        ohlc = kite["ohlc"]
        assert isinstance(ohlc, dict)
        mine = tick.ohlc  # type: ignore[attr-defined]
        assert (mine.open, mine.high, mine.low, mine.close) == tuple(
            units(ohlc[k]) for k in ("open", "high", "low", "close")
        )
        assert tick.volume == kite["volume_traded"]  # type: ignore[attr-defined]
        assert tick.last_quantity == kite["last_traded_quantity"]  # type: ignore[attr-defined]
        assert tick.average_price == units(kite["average_traded_price"])  # type: ignore[attr-defined]
        assert tick.total_buy_quantity == kite["total_buy_quantity"]  # type: ignore[attr-defined]
        assert tick.total_sell_quantity == kite["total_sell_quantity"]  # type: ignore[attr-defined]
        if kite["mode"] != "full":
            continue
        assert tick.open_interest == kite["oi"]  # type: ignore[attr-defined]
        stamp = kite["exchange_timestamp"]
        assert isinstance(stamp, dt.datetime)
        assert tick.timestamp_ns == int(stamp.timestamp()) * 10**9  # type: ignore[attr-defined]
        depth = kite["depth"]
        assert isinstance(depth, dict)
        for levels, entries in ((tick.depth.bids, depth["buy"]), (tick.depth.asks, depth["sell"])):  # type: ignore[attr-defined]
            got = [(lv.quantity, lv.price, lv.orders) for lv in levels]
            assert got == [(e["quantity"], units(e["price"]), e["orders"]) for e in entries]


def rate(fn: Callable[[], object]) -> float:
    """Ticks per CPU second of one round: as many calls as fit in ROUND_S of CPU time.

    CPU time of this process, not wall time: the machine is shared, and time spent waiting
    for a core is nobody's decoding."""
    calls = 0
    start = time.process_time()
    while (elapsed := time.process_time() - start) < ROUND_S:
        for _ in range(20):
            fn()
        calls += 20
    return calls * PACKETS_PER_FRAME / elapsed


def main() -> int:
    try:
        from kiteconnect import KiteTicker
    except ImportError:
        print(
            "zerodha_ticks: kiteconnect is not installed (pip install kiteconnect); "
            "docs/benchmarks.md keeps its figures"
        )
        return 0
    parser = KiteTicker("bench", "bench")._parse_binary
    rows = []
    decoded = frames(random.Random(20260121))
    # As in `hft serve`, which freezes its start-up heap once running: full collections then
    # no longer traverse every module and instrument for each batch of tick objects promoted.
    gc.collect()
    gc.freeze()
    for mode, frame in decoded.items():
        # Ticks are named by instrument key, as the broker's normaliser names them.
        keys = {t["instrument_token"]: f"NSE:S{t['instrument_token']}" for t in parser(frame)}
        check_equal(decode_ticks(frame), parser(frame))
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(ROUNDS):
            ours.append(rate(lambda frame=frame, keys=keys: decode_ticks(frame, keys)))
            theirs.append(rate(lambda frame=frame: parser(frame)))
        best_ours, best_theirs = statistics.median(ours), statistics.median(theirs)
        rows.append((mode, best_ours, best_theirs))
        print(f"{mode:28} hft_zerodha {best_ours:12,.0f}/s  kiteconnect {best_theirs:12,.0f}/s")

    full_ratio = next(o / t for m, o, t in rows if m == "full")
    verdict = "met" if full_ratio >= TARGET_FULL else "NOT met"
    table = "\n".join(
        f"| {mode} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}× |"
        for mode, ours, theirs in rows
    )
    body = f"""
`python bench/zerodha_ticks.py` (also in `nox -s bench`; needs `pip install kiteconnect`) on
{machine()}, revision {git_revision()}, kiteconnect {version("kiteconnect")}.

Ticks decoded per second from KiteTicker binary frames of {PACKETS_PER_FRAME} packets (NSE,
CDS and NCO instruments, every field varying): `hft_zerodha.decode_ticks` producing hft
`Tick` objects named by instrument key (fixed-point prices, depth as `DepthLevel`s) against
kiteconnect's own `KiteTicker._parse_binary` (dicts of floats and datetimes) on the same
frames, after checking that both decode equal values. Median of {ROUNDS} interleaved rounds of
{ROUND_S} s of CPU time each (process CPU time, so that other work on a shared machine counts
less), with the start-up heap frozen out of the garbage collector's sight as `hft serve` runs.

| mode | hft_zerodha ticks/s | kiteconnect ticks/s | ratio |
|---|---|---|---|
{table}

Target: at least {TARGET_FULL:g}× kiteconnect on full-mode packets: **{verdict}**
({full_ratio:.2f}×). One precompiled `struct` unpack reads a whole packet; what remains is
building the model: a full tick is 15 objects (`Tick`, `Ohlc`, `Depth`, two tuples, ten
`DepthLevel`s), filled through their slot descriptors rather than attrs' `__init__`. Those
objects are tracked by Python's cyclic garbage collector while kiteconnect's dicts holding only
numbers are not; with the heap unfrozen the collections that traverse it cost the full-mode
ratio about a fifth (2.5× measured that way). LTP packets are so small that both parsers spend
their time on the frame loop.
"""
    write_section("KiteTicker decoding (hft-zerodha)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
