"""Market-data hub: publish cost and fan-out to draining subscribers, on trio.

Run ``python bench/hub.py`` (``nox -s bench`` runs it); ``--no-write`` only prints. Writes the
"Market-data hub" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import git_revision, machine, write_section
from hft._hub import MarketDataHub, Subscription
from hft.model import Depth, DepthLevel, Ohlc, StreamMode, Tick


def make_ticks(instruments: int, count: int) -> list[Tick]:
    """``count`` full-mode ticks cycling over ``instruments`` (built before timing starts)."""
    depth = Depth(
        tuple(DepthLevel(10_000 - i * 5, 100 + i, 3) for i in range(5)),
        tuple(DepthLevel(10_005 + i * 5, 100 + i, 3) for i in range(5)),
    )
    ohlc = Ohlc(9_900, 10_100, 9_800, 9_950)
    base = [
        Tick(
            f"NSE:SYM{i}",
            StreamMode.FULL,
            10_000 + i,
            timestamp_ns=1,
            last_quantity=10,
            volume=1_000_000,
            average_price=10_000,
            total_buy_quantity=5_000,
            total_sell_quantity=6_000,
            ohlc=ohlc,
            depth=depth,
        )
        for i in range(instruments)
    ]
    return [base[i % instruments] for i in range(count)]


def publish_only(ticks: list[Tick], subscribers: int, instruments: list[str]) -> float:
    """Seconds to publish ``ticks`` to ``subscribers`` that never read (all but one conflated)."""
    hub = MarketDataHub()
    subs = [hub.subscribe(instruments) for _ in range(subscribers)]
    publish = hub.publish
    start = time.perf_counter()
    for tick in ticks:
        publish(tick)
    elapsed = time.perf_counter() - start
    for sub in subs:
        sub.close()
    return elapsed


class Run:
    """One fan-out run: a publisher yielding every ``burst`` ticks, subscribers draining."""

    def __init__(self, ticks: list[Tick], subscribers: int, burst: int) -> None:
        self.ticks, self.subscribers, self.burst = ticks, subscribers, burst
        self.hub = MarketDataHub()
        self.elapsed = 0.0
        self.batches = 0

    async def drain(self, sub: Subscription) -> None:
        receive = sub.receive_batch
        batches = 0
        while await receive():
            batches += 1
        self.batches += batches

    async def main(self) -> None:
        instruments = list(dict.fromkeys(t.instrument for t in self.ticks))
        subs = [self.hub.subscribe(instruments) for _ in range(self.subscribers)]
        publish, burst, ticks = self.hub.publish, self.burst, self.ticks
        async with anyio.create_task_group() as tg:
            for sub in subs:
                tg.start_soon(self.drain, sub)
            await anyio.sleep(0.05)  # every reader is waiting
            start = time.perf_counter()
            for offset in range(0, len(ticks), burst):
                for tick in ticks[offset : offset + burst]:
                    publish(tick)
                await anyio.lowlevel.checkpoint()  # the readers run: one feed packet handled
            await anyio.wait_all_tasks_blocked()  # every reader has drained
            self.elapsed = time.perf_counter() - start
            for sub in subs:
                sub.close()


def best_of(repeat: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=1_000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print, leave the docs alone")
    args = parser.parse_args()

    ticks = make_ticks(args.instruments, args.ticks)
    names = list(dict.fromkeys(t.instrument for t in ticks))
    lines = [
        f"`python bench/hub.py` (run by `nox -s bench`), revision {git_revision()}, "
        f"on {machine()} (load average {os.getloadavg()[0]:.1f} at start); trio backend; "
        f"best of {args.repeat}. "
        f"{args.instruments:,} instruments, {args.ticks:,} full-mode ticks cycling over them, "
        "built before timing.",
        "",
        "Publish alone (`publish` stamps the sequence, stores the snapshot and enqueues for "
        "each subscriber; readers never drain, so every subscriber holds one pending tick per "
        "instrument and the rest conflate):",
        "",
        "| subscribers | publishes/s | µs per publish | ns per subscriber enqueue |",
        "|---:|---:|---:|---:|",
    ]
    base = 0.0
    for subscribers in (0, 10, args.subscribers):
        seconds = best_of(args.repeat, partial(publish_only, ticks, subscribers, names))
        per_publish = seconds / len(ticks)
        if subscribers == 0:
            base = per_publish
            fanout = "–"
        else:
            fanout = f"{(per_publish - base) / subscribers * 1e9:.0f}"
        lines.append(
            f"| {subscribers} | {len(ticks) / seconds:,.0f} | {per_publish * 1e6:.2f} | {fanout} |"
        )
        print(lines[-1], flush=True)

    lines += [
        "",
        f"Fan-out with draining readers: {args.subscribers} subscribers, each subscribed to "
        "every instrument, each draining with `receive_batch()` in its own task; the publisher "
        "yields to the scheduler once per burst of ticks (one feed packet). Deliveries are "
        "ticks handed to readers; conflated ticks were replaced before their reader ran.",
        "",
        "| burst | ticks | ticks published/s | deliveries/s | conflation ratio | mean batch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for burst in (1, 10, 100, 1_000):
        # Small bursts pay a scheduler round per burst: fewer ticks keep the run short.
        sample = ticks[: min(len(ticks), 5_000 * burst)]
        best: Run | None = None
        for _ in range(args.repeat):
            run = Run(sample, args.subscribers, burst)
            anyio.run(run.main, backend="trio")
            if best is None or run.elapsed < best.elapsed:
                best = run
        assert best is not None
        metrics = best.hub.metrics()
        delivered, conflated = metrics.delivered, metrics.conflated
        lines.append(
            f"| {burst:,} | {len(sample):,} | {len(sample) / best.elapsed:,.0f} "
            f"| {delivered / best.elapsed:,.0f} "
            f"| {conflated / (delivered + conflated):.1%} "
            f"| {delivered / max(best.batches, 1):,.1f} |"
        )
        print(lines[-1], flush=True)

    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Market-data hub", body)


if __name__ == "__main__":
    main()
