"""Order throughput and submit→ack latency through the OMS.

An in-process host with an instant-ack broker (``place_order`` answers with an id at once and
streams the OPEN update), SQLite durability on (WAL, synchronous=FULL, group commit) and every
built-in risk rule enabled with limits that pass. Latency is measured from the submit call (or,
in the open-loop runs, from when the order was due) to its return, which is after the order is
durable and the broker has acknowledged it. The broker does nothing else, so what is measured
is the OMS: authorisation, validation, idempotency, risk, journal, routing, event handling.

Open loop: orders arrive at a fixed rate, taken by a pool of workers (the sustained-rate
target).
Closed loop: N clients each submit the next order when the last one returns (capacity).

    python bench/oms.py [--orders 20000] [--concurrency 4 8 16 64] [--rates 2500 5000 6000]
                        [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hft
from bench._report import cpu_ticks, machine, python_speed_ms, steal_percent, write_section
from hft import _logging
from hft._builtin._sql_storage import COMMIT_BUCKETS
from hft._config import config_from_mapping, resolve_config
from hft._host import Host, Services
from hft._plugins import PluginHost
from hft.contracts import Broker, BrokerEvent
from hft.model import (
    ConnectionEvent,
    ConnectionState,
    Environment,
    Fill,
    Instrument,
    ModifyRequest,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    Position,
    Role,
    Side,
    StreamMode,
    Tick,
    User,
)
from hft.testing._broker import DEFAULT_UNIVERSE


class InstantBroker(Broker):
    """Acknowledges every order at once (OPEN) and does nothing else."""

    def __init__(self) -> None:
        self._events: list[BrokerEvent] = []
        self._wakeup = anyio.Event()
        self._closed = False
        self._next_id = 0

    def _emit(self, event: BrokerEvent) -> None:
        self._events.append(event)
        self._wakeup.set()

    async def connect(self) -> None:
        self._emit(ConnectionEvent(self.name, ConnectionState.CONNECTED))

    async def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def events(self) -> AsyncIterator[BrokerEvent]:  # type: ignore[override]
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup = anyio.Event()
            batch, self._events = self._events, []
            for event in batch:
                yield event

    async def place_order(
        self, broker_account: str, instrument: Instrument, request: OrderRequest
    ) -> str:
        self._next_id += 1
        broker_order_id = str(self._next_id)
        self._emit(OrderUpdate(self.name, broker_account, broker_order_id, OrderStatus.OPEN))
        return broker_order_id

    async def modify_order(
        self,
        broker_account: str,
        broker_order_id: str,
        instrument: Instrument,
        request: ModifyRequest,
    ) -> None:
        pass

    async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
        pass

    async def orders(self, broker_account: str) -> list[OrderUpdate]:
        return []

    async def trades(self, broker_account: str) -> list[Fill]:
        return []

    async def positions(self, broker_account: str) -> list[Position]:
        return []

    async def instruments(self) -> list[Instrument]:
        return list(DEFAULT_UNIVERSE)

    async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
        for instrument in instruments:
            self._emit(Tick(instrument.key, mode, DEFAULT_UNIVERSE[instrument]))

    async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
        pass


def _plugin() -> types.SimpleNamespace:
    def hft_register_brokers(register: Any) -> None:
        register("instant", lambda config, context: InstantBroker())

    return types.SimpleNamespace(hft_register_brokers=hft.hookimpl(hft_register_brokers))


STORAGE_URL = ""
Result = dict[str, float]

RISK: dict[str, dict[str, Any]] = {
    "daily_loss_limit": {"max_loss_paise": 10**13},
    "max_order_quantity": {"max_quantity": 10_000},
    "max_order_value": {"max_value_paise": 10**11},
    "price_band": {"max_deviation_bps": 2_000},
    "max_position": {"max_quantity": 10**6, "max_value_paise": 10**13},
    "max_account_position": {"max_quantity": 10**7, "max_value_paise": 10**14},
    "max_open_orders": {"max_open_orders": 10**7},
    "order_rate": {"max_per_second": 10**6, "max_per_minute": 10**7},
}


def percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000


@asynccontextmanager
async def bench_host(data_dir: Path) -> AsyncIterator[tuple[Services, User, list[str]]]:
    tree = {
        "storage": {"url": STORAGE_URL or f"sqlite:///{data_dir / 'bench.db'}"},
        "host": {"data_dir": str(data_dir)},
        "brokers": {"t": {"plugin": "instant"}},
        "risk": {name: {"enabled": True, **values} for name, values in RISK.items()},
    }
    plugins = PluginHost.from_modules({"instant": _plugin()})
    host = Host(resolve_config(config_from_mapping(tree), plugins), plugins)
    trader = User("bench", Role.TRADER, Environment.LIVE, accounts=("t",))
    async with host.running() as services:
        with anyio.fail_after(10):
            while not services.brokers["t"].ready:  # noqa: ASYNC110 - another task's state
                await anyio.sleep(0.001)
        instruments = ["NSE:INFY", "NSE:RELIANCE", "NSE:TCS"]
        # Market orders are valued at the last price, which the hub learns by subscribing.
        prices = services.hub.subscribe(instruments)
        with anyio.fail_after(10):
            while any(services.hub.last_price(i) is None for i in instruments):  # noqa: ASYNC110
                await anyio.sleep(0.001)
        yield services, trader, instruments
        prices.close()


def order_request(services: Services, instruments: list[str], n: int) -> OrderRequest:
    instrument = instruments[n % len(instruments)]
    side = Side.BUY if n % 2 else Side.SELL
    return OrderRequest("t", instrument, side, 1, price=services.hub.last_price(instrument))


def writer_cpu(services: Services) -> float:
    """CPU seconds of the SQLite journal's writer process so far (0 without one)."""
    writer = getattr(services.storage, "_process", None)  # white-box: not in any contract
    process = getattr(writer, "_process", None)
    if process is None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slow_commits(services: Services) -> int:
    """Journal commits so far that took over 5 ms, timed in the host (from the request sent
    to the reply read, so a busy loop's delay in reading it counts too)."""
    buckets = getattr(services.storage, "commit_buckets", None)  # white-box, as writer_cpu
    if not buckets:
        return 0
    return int(buckets[-1] - buckets[COMMIT_BUCKETS.index(0.005)])


@attrs.frozen
class Start:
    """Readings taken just before a run, for :func:`summary` to subtract."""

    cpu: tuple[float, float, float]  # loop thread, process, writer process
    machine: tuple[int, int]  # cpu_ticks()
    speed_ms: float
    slow_commits: int

    @classmethod
    def now(cls, services: Services) -> Start:
        speed_ms = python_speed_ms()
        return cls(
            (time.thread_time(), time.process_time(), writer_cpu(services)),
            cpu_ticks(),
            speed_ms,
            slow_commits(services),
        )


def summary(
    latencies: list[int],
    elapsed: float,
    services: Services,
    trader: User,
    start: Start,
    late_ms: float = math.nan,
) -> Result:
    latencies.sort()
    loop_cpu = time.thread_time() - start.cpu[0]
    process_cpu = time.process_time() - start.cpu[1]
    writer = writer_cpu(services) - start.cpu[2]
    acked = sum(1 for o in services.oms.orders(trader) if o.status is OrderStatus.OPEN)
    return {
        "orders": len(latencies),
        "acked": acked,
        "commits": getattr(services.storage, "commits", 0),
        "commit_ms": getattr(services.storage, "commit_seconds", 0.0)
        * 1e3
        / max(1, getattr(services.storage, "commits", 0)),
        "seconds": elapsed,
        "orders_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) / 1000,
        "p99_ms": percentile(latencies, 0.99) / 1000,
        "max_ms": latencies[-1] / 1e6,
        "mean_ms": statistics.fmean(latencies) / 1e6,
        # CPU per order: the event loop's thread, the whole process (storage threads too), and
        # the journal's writer process.
        "loop_us": loop_cpu * 1e6 / len(latencies),
        "process_us": process_cpu * 1e6 / len(latencies),
        "writer_us": writer * 1e6 / len(latencies),
        # How much of the machine the hypervisor took meanwhile, and how fast it ran Python
        # just before: on a shared virtual machine, these differ from one run to the next.
        "steal_pct": steal_percent(start.machine, cpu_ticks()),
        "speed_ms": start.speed_ms,
        # What a slow run's tail came from: the disk (commits over 5 ms) or a loop that could
        # not run (how late the open loop's 1 ms release ticker woke, at worst).
        "slow_commits": slow_commits(services) - start.slow_commits,
        "late_ms": late_ms,
    }


async def closed_loop(orders: int, concurrency: int, data_dir: Path) -> Result:
    """``concurrency`` clients, each submitting its next order when the last one returns."""
    latencies: list[int] = []
    async with bench_host(data_dir) as (services, trader, instruments):
        per_client = orders // concurrency
        # Built beforehand: parsing a request is the transport's work, not the OMS's.
        requests = [
            order_request(services, instruments, n) for n in range(per_client + concurrency)
        ]

        async def client(index: int) -> None:
            for n in range(per_client):
                request = requests[index + n]
                start = time.perf_counter_ns()
                await services.oms.submit(trader, request)
                latencies.append(time.perf_counter_ns() - start)

        before = Start.now(services)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(concurrency):
                tg.start_soon(client, index)
        await services.oms.flush()
        elapsed = time.perf_counter() - start
        return summary(latencies, elapsed, services, trader, before)


async def open_loop(
    rate: float, seconds: float, data_dir: Path, workers: int = 64, *, harness_only: bool = False
) -> Result:
    """Orders arriving on a fixed schedule of ``rate`` a second, each handed to an idle one of
    ``workers`` tasks (as a transport's connections would take requests), none of which waits
    for another's order.

    Latency runs from the moment an order was due, not from when a worker got to submit it, so
    time spent queueing behind a busy host counts (no coordinated omission). ``harness_only``
    replaces the submit with a bare scheduler pass: what the harness itself costs the loop.
    """
    latencies: list[int] = []
    async with bench_host(data_dir) as (services, trader, instruments):
        count = int(rate * seconds)
        # Built beforehand: parsing a request is the transport's work, not the OMS's.
        requests = [order_request(services, instruments, n) for n in range(count)]
        due: deque[tuple[int, int]] = deque()  # (order number, when it came due)
        idle: list[anyio.Event] = []  # one per parked worker
        finished = False

        async def worker() -> None:
            # Takes due orders while there are any, then parks until handed another: one wake
            # per order, as a connection's task is woken by its socket (a memory stream would
            # cost the harness as much loop time as the OMS's own work).
            while True:
                while due:
                    n, due_ns = due.popleft()
                    if harness_only:
                        await anyio.lowlevel.checkpoint()
                    else:
                        await services.oms.submit(trader, requests[n])
                    latencies.append(time.perf_counter_ns() - due_ns)
                if finished:
                    return
                wakeup = anyio.Event()
                idle.append(wakeup)
                await wakeup.wait()

        interval_ns = int(1e9 / rate)
        before = Start.now(services)
        late_ns = 0  # the most the release ticker woke after its millisecond
        start_ns = time.perf_counter_ns()
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
            n = 0
            while n < count:
                # Every millisecond, release the orders that have come due (a shorter sleep
                # would spin the loop, which waits in whole milliseconds).
                now_ns = time.perf_counter_ns()
                while n < count and start_ns + n * interval_ns <= now_ns:
                    due.append((n, start_ns + n * interval_ns))
                    if idle:
                        idle.pop().set()
                    n += 1
                await anyio.sleep(0.001)
                late_ns = max(late_ns, time.perf_counter_ns() - now_ns - 1_000_000)
            finished = True
            for wakeup in idle:
                wakeup.set()
        await services.oms.flush()
        elapsed = (time.perf_counter_ns() - start_ns) / 1e9
        return summary(latencies, elapsed, services, trader, before, late_ns / 1e6)


def fmt(result: Result) -> str:
    return ", ".join(
        f"{key} {value:,.2f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in result.items()
    )


def one_run(kind: str, value: float, args: argparse.Namespace) -> Result:
    """One run in a process of its own, as ``hft serve`` has one host per process (and so
    that one run's heap does not weigh on the next)."""
    command = [sys.executable, __file__, "--one", kind, str(value)]
    command += ["--orders", str(args.orders), "--seconds", str(args.seconds)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: Result = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=20_000, help="orders per closed-loop run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16, 64])
    parser.add_argument("--rates", type=float, nargs="+", default=[2_500, 5_000, 6_000])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of an open-loop run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="open-loop runs per rate (their p99 varies a lot)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "VALUE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    _logging.configure(level="warning")
    if args.one:
        kind, value = args.one
        with tempfile.TemporaryDirectory() as tmp:
            if kind == "closed":
                result = anyio.run(closed_loop, args.orders, int(value), Path(tmp), backend="trio")
            else:
                run = functools.partial(open_loop, harness_only=kind == "harness")
                result = anyio.run(run, float(value), args.seconds, Path(tmp), backend="trio")
        print(json.dumps(result))
        return
    closed: list[tuple[int, Result]] = []
    for concurrency in args.concurrency:
        result = one_run("closed", concurrency, args)
        print(f"closed loop, {concurrency} clients: {fmt(result)}")
        closed.append((concurrency, result))
    harness = one_run("harness", 5_000, args)
    print(f"harness alone, 5,000 orders/s: {fmt(harness)}")
    opened: list[tuple[float, Result]] = []
    for rate in args.rates:
        for _ in range(args.repeat):
            result = one_run("open", rate, args)
            print(f"open loop, {rate:,.0f} orders/s offered: {fmt(result)}")
            opened.append((rate, result))
    if args.no_write:
        return

    def cells(first: str, r: Result) -> str:
        values = [f"{r['orders']:,}", f"{r['orders_per_s']:,.0f}"]
        values += [f"{r[k]:.2f}" for k in ("p50_ms", "p99_ms", "max_ms")]
        values += [f"{r['loop_us']:.0f}", f"{r['process_us']:.0f}", f"{r['writer_us']:.0f}"]
        values += [f"{r['steal_pct']:.0f}", f"{r['speed_ms']:.1f}"]
        late = r["late_ms"]
        values += [f"{r['slow_commits']:,}", "–" if math.isnan(late) else f"{late:.1f}"]
        return "| " + " | ".join([first, *values]) + " |"

    def table_head(first: str, rate: str) -> str:
        names = [first, "orders", rate, "p50 ms", "p99 ms", "max ms", "loop µs", "CPU µs"]
        names += ["writer µs", "steal %", "speed ms", "commits > 5 ms", "late ms"]
        return "| " + " | ".join(names) + " |\n|" + "---:|" * len(names)

    closed_rows = "\n".join(cells(str(c), r) for c, r in closed)
    open_rows = "\n".join(cells(f"{rate:,.0f}", r) for rate, r in opened)
    # Met at a rate only if every run at it was.
    met = [
        rate
        for rate in args.rates
        if rate >= 5_000
        and all(
            r["orders_per_s"] >= 0.99 * rate and r["p99_ms"] <= 5.0
            for offered, r in opened
            if offered == rate
        )
    ]
    verdict = (
        f"Both targets at once (≥ 5,000 orders/s sustained with p99 ≤ 5 ms, in every run): "
        f"**met** at {max(met):,.0f} orders/s offered."
        if met
        else "Both targets at once (≥ 5,000 orders/s sustained with p99 ≤ 5 ms, in every run): "
        "**not met**."
    )
    command = (
        f"python bench/oms.py --orders {args.orders} --concurrency "
        + " ".join(str(c) for c in args.concurrency)
        + " --rates "
        + " ".join(f"{r:g}" for r in args.rates)
        + f" --seconds {args.seconds:g} --repeat {args.repeat}"
    )
    body = f"""Command: `{command}` (run by `nox -s bench`).
Machine: {machine()}.

Each run in a process of its own: a host, an instant-ack broker, SQLite (WAL, synced at every
commit; the journal's commits run in a writer process of their own, see docs/storage.md) with
group commit, every built-in risk rule enabled with limits that pass. Latency is submit call →
return (the order durable, then acknowledged by the broker). "loop µs" is the event loop
thread's CPU time per order, "CPU µs" the host process's (storage threads too), "writer µs"
the journal's writer process's. "steal %" is the share of the machine's CPU time its
hypervisor took during the run, and "speed ms" how long a fixed piece of pure Python took just
before it (`python_speed_ms` in bench/_report.py; smaller is faster): on a shared virtual
machine both change from one run to the next, and the loop's cost per order with them.
"commits > 5 ms" counts the journal's commits that took longer, timed in the host (request sent
to reply read, so a busy loop's delay in reading the reply counts too); "late ms" is the most
the open loop's 1 ms release ticker woke after its time: the longest the loop could not run.
Between them they say where a run's tail came from. The bench's own order generator and
workers run on the same loop and are included: with a bare scheduler pass in place of the
submit, they cost the loop {harness["loop_us"]:.0f} µs per order at 5,000 orders/s.

**Sustained rate** (open loop): orders come due on a fixed schedule at the offered rate for
{args.seconds:g} s (released each millisecond), each handed to an idle one of 64 worker tasks,
as a transport's connections would take them; latency counts from the moment the order was due,
so queueing behind a busy host is included. {args.repeat} runs per rate, each its own row: near
the loop's capacity, the p99 of one run differs a lot from the next. Targets: ≥ 5,000 orders/s
sustained, p99 ≤ 5 ms.

{table_head("offered/s", "achieved/s")}
{open_rows}

{verdict}

**Capacity** (closed loop): N clients each submit their next order when the last returns, so
their orders share commits; this shows the ceiling (the larger the batches, the less each
order pays of a commit's fixed cost) and how latency grows with clients, not a rate a desk
would run at.

{table_head("clients", "orders/s")}
{closed_rows}
"""
    write_section("Order management throughput and latency", body)


if __name__ == "__main__":
    main()
