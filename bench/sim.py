"""The simulation broker: market data produced per second, and order round trip submit → ack.

Market data: a ``sim`` broker on a manual clock with every instrument subscribed in full mode
(five levels of depth) is stepped as fast as one core allows: fair values move, market makers
re-quote, noise takers trade, and a tick goes out for every instrument whose book changed. The
figure is ticks taken from the broker per second of wall time, with the demo universe (20
instruments) and a synthetic one (1,000).

Round trip, zero configured latency, in-process:

- *broker*: ``SimBroker.place_order`` → the order's ``OPEN`` update read from
  ``SimBroker.events()`` (the matching engine has the order when it is read);
- *OMS*: ``OrderManager.submit`` on a running host (in-memory storage, every built-in risk rule)
  → the ``OPEN`` event on the owner's order feed, i.e. after the acknowledgement was applied
  and journalled.

Orders are limit orders resting ten ticks behind the touch, round robin over the universe,
sent one at a time.

    python bench/sim.py [--steps 500] [--orders 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hft_sim.broker import SimBroker
from hft_sim.config import SimConfig

from bench._report import git_revision, machine, write_section
from hft import _logging
from hft._builtin.memory import MemoryStorage
from hft._config import config_from_mapping, resolve_config, structure_section
from hft._host import Host
from hft._plugins import PluginContext, PluginHost
from hft.model import (
    Environment,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Role,
    Side,
    StreamMode,
    Tick,
    User,
)

ZERO_LATENCY = {"order_ms": 0, "report_ms": 0, "jitter_ms": 0}


def make_broker(plugins: PluginHost, **settings: Any) -> SimBroker:
    config = structure_section(settings, SimConfig, "brokers.sim")
    storage = MemoryStorage("memory://")
    return SimBroker(config, PluginContext("sim", Path("."), storage, plugins))


async def market_data(plugins: PluginHost, instruments: int, steps: int) -> dict[str, float]:
    settings: dict[str, Any] = {"clock": "manual", "persist": False}
    if instruments != 20:
        settings |= {"universe": "synthetic", "synthetic_instruments": instruments}
    broker = make_broker(plugins, **settings)
    await broker.connect()
    await broker.subscribe(await broker.instruments(), StreamMode.FULL)
    for _ in range(20):  # books populated, snapshots out of the way
        broker.step()
    broker.take_events()
    ticks = 0
    start = time.perf_counter()
    for _ in range(steps):
        broker.step()
        ticks += sum(1 for event in broker.take_events() if isinstance(event, Tick))
    elapsed = time.perf_counter() - start
    await broker.close()
    simulated_s = steps * broker.config.step_ms / 1000
    return {
        "instruments": instruments,
        "steps": steps,
        "ticks": ticks,
        "ticks_per_s": ticks / elapsed,
        "steps_per_s": steps / elapsed,
        "speedup": simulated_s / elapsed,
    }


def _resting(broker: SimBroker, n: int, account: str) -> tuple[Any, OrderRequest]:
    books = list(broker.exchange)
    book = books[n % len(books)]
    side = Side.BUY if n % 2 else Side.SELL
    touch = book.market.last
    price = touch - 10 * book.tick if side is Side.BUY else touch + 10 * book.tick
    lot = book.instrument.lot_size
    return book, OrderRequest(account, book.key, side, lot, price=price)


async def broker_round_trip(plugins: PluginHost, orders: int) -> list[int]:
    broker = make_broker(
        plugins,
        clock="manual",
        persist=False,
        latency=ZERO_LATENCY,
        accounts={"default": {"cash_paise": 10**15}},
    )
    await broker.connect()
    for _ in range(20):
        broker.step()
    broker.take_events()
    stream = broker.events()
    latencies: list[int] = []
    for n in range(orders):
        book, request = _resting(broker, n, "default")
        start = time.perf_counter_ns()
        order_id = await broker.place_order("default", book.instrument, request)
        async for event in stream:
            if (
                isinstance(event, OrderUpdate)
                and event.broker_order_id == order_id
                and event.status is OrderStatus.OPEN
            ):
                break
        latencies.append(time.perf_counter_ns() - start)
    await broker.close()
    return latencies


async def oms_round_trip(plugins: PluginHost, orders: int) -> list[int]:
    tree = {
        "storage": {"url": "memory://"},
        "brokers": {
            "sim": {
                "environment": "sim",
                "latency": ZERO_LATENCY,
                "persist": False,
                "market_log_interval_s": 0,
                "accounts": {"default": {"cash_paise": 10**15}},
            }
        },
    }
    host = Host(resolve_config(config_from_mapping(tree), plugins), plugins)
    trader = User("bench", Role.TRADER, Environment.SIM, accounts=("sim",))
    latencies: list[int] = []
    async with host.running() as services:
        with anyio.fail_after(10):
            while not services.brokers["sim"].ready:  # noqa: ASYNC110 - another task's state
                await anyio.sleep(0.001)
        await anyio.sleep(0.5)  # market makers quote
        broker = services.brokers["sim"].broker
        assert isinstance(broker, SimBroker)
        feed = services.oms.subscribe(trader)
        for n in range(orders):
            _, request = _resting(broker, n, "sim")
            start = time.perf_counter_ns()
            (order,) = await services.oms.submit(trader, request)
            acked = False
            while not acked:
                for message in await feed.receive_batch():
                    if message.order.order_id == order.order_id:
                        acked = acked or message.order.status is OrderStatus.OPEN
            latencies.append(time.perf_counter_ns() - start)
        feed.close()
    return latencies


def summary(latencies: list[int]) -> dict[str, float]:
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    return {
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "max_us": ordered[-1] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
    }


def best_market_data(
    plugins: PluginHost, instruments: int, steps: int, rounds: int
) -> dict[str, float]:
    results = [
        anyio.run(market_data, plugins, instruments, steps, backend="trio") for _ in range(rounds)
    ]
    return max(results, key=lambda r: r["ticks_per_s"])


def _load_average() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="market steps per universe")
    parser.add_argument("--orders", type=int, default=5_000, help="orders per round-trip run")
    parser.add_argument("--rounds", type=int, default=3, help="market-data rounds (best kept)")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    _logging.configure(level="warning")
    plugins = PluginHost.load(only=["ext", "sim"])
    engine = plugins.plugins["ext"].details or "unknown build"
    load_before = _load_average()

    market = [best_market_data(plugins, n, args.steps, args.rounds) for n in (20, 1000)]
    direct = summary(anyio.run(broker_round_trip, plugins, args.orders, backend="trio"))
    through_oms = summary(anyio.run(oms_round_trip, plugins, args.orders, backend="trio"))

    for row in market:
        print(
            f"{row['instruments']:>5} instruments: {row['ticks_per_s']:,.0f} ticks/s, "
            f"{row['steps_per_s']:,.1f} steps/s ({row['speedup']:,.1f}× real time)"
        )
    for label, figures in (("broker", direct), ("OMS", through_oms)):
        print(f"round trip via {label}: " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()))
    if args.no_write:
        return

    command = f"python bench/sim.py --steps {args.steps} --orders {args.orders}"
    market_rows = "\n".join(
        f"| {row['instruments']:,} | {row['ticks']:,} | {row['ticks_per_s']:,.0f} | "
        f"{row['steps_per_s']:,.1f} | {row['speedup']:,.1f}× |"
        for row in market
    )
    trip_rows = "\n".join(
        f"| {label} | {f['p50_us']:,.1f} | {f['p99_us']:,.1f} | {f['mean_us']:,.1f} | "
        f"{f['max_us']:,.1f} |"
        for label, f in (
            ("`SimBroker.place_order` → `OPEN` from `events()`", direct),
            ("`OrderManager.submit` → `OPEN` on the order feed", through_oms),
        )
    )
    body = f"""Command: `{command}` (run by `nox -s bench`), revision {git_revision()}.
Machine: {machine()}; load average {load_before} at start, {_load_average()} at the end (the
cores are shared, so the tails carry other work). Matching engine: hft-ext, {engine}.

Market data produced: a `sim` broker on a manual clock, every instrument subscribed in full
mode (five levels of depth), stepped as fast as one core allows ({args.steps} steps of the
default 200 ms after 20 warm-up steps; best of {args.rounds}). Each step moves every fair value,
lets the market makers re-quote and the noise takers trade (60 trades per instrument per
simulated minute), and sends a tick for each instrument whose book changed.

| instruments | ticks | ticks/s | steps/s | simulated time vs wall |
|---:|---:|---:|---:|---:|
{market_rows}

Order round trip with zero configured latency, in-process, {args.orders:,} limit orders sent one
at a time, resting ten ticks behind the touch, round robin over the 20 demo instruments:

| path | p50 µs | p99 µs | mean µs | max µs |
|---|---:|---:|---:|---:|
{trip_rows}
"""
    write_section("Simulation broker", body)


if __name__ == "__main__":
    main()
