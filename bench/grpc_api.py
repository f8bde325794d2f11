"""gRPC transport: unary order placement (calls/s, p50/p99) and ticks/s streamed to 50 clients.

A real host (the ``test`` broker in instant mode, the ``grpc`` transport, and SQLite with every
order durable before the broker sees it, or the in-memory store) runs in a separate process.

*Placement:* this process signs in once, then ``concurrency`` grpc.aio callers on one channel
place marketable limit orders back to back (``OrderService.Place`` with a bearer token); each
fills at once, buys and sells alternating. Latency is the client's: call made → reply read.

*Streaming:* the server process publishes full-mode ticks (OHLC, five levels of depth) into the
market-data hub as fast as its loop allows, round-robin over the venue's instruments, while
``--clients`` ``StreamTicks`` calls in this process (quote mode, every instrument) read them.
Delivered is what the clients received; the rest was conflated to the latest per instrument.

    python bench/grpc_api.py [--orders 3000] [--concurrency 1 16] [--storage sqlite memory]
                             [--clients 50] [--seconds 5]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for bench._report, when run as a script

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import anyio  # noqa: E402
import anyio.lowlevel  # noqa: E402
import grpc  # noqa: E402
import grpc.aio  # noqa: E402
from hft_grpc._generated import (  # noqa: E402  # noqa: E402
    auth_pb2,
    auth_pb2_grpc,
    market_data_pb2,
    market_data_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)
from hft_grpc._generated import common_pb2 as pb  # noqa: E402

from bench._report import machine, write_section  # noqa: E402

PASSWORD = "bench password"
STORAGES = {"sqlite": "sqlite:///{data_dir}/bench.db", "memory": "memory://"}
WARMUP = 300


# The server ------------------------------------------------------------------------------------


async def serve(data_dir: Path, storage: str, rate: int | None) -> None:
    """Run the host, print its address, and stop when stdin closes."""
    import hft_grpc.plugin

    import hft.testing._plugin
    from hft import _logging
    from hft.model import Depth, DepthLevel, Environment, Ohlc, Role, StreamMode, Tick
    from hft.testing import make_host

    _logging.configure(level="warning")
    config = {
        "storage": {"url": STORAGES[storage].format(data_dir=data_dir)},
        "brokers": {"venue": {"plugin": "test", "instant": True}},
        "accounts": {"bench": {"broker": "venue", "environment": "live"}},
        "transports": {
            "grpc": {
                "port": 0,
                "login_rate_per_s": 1000,
                "login_burst": 1000,
                "rate_limit_per_s": 10**6,
                "rate_limit_burst": 10**6,
                "max_streams_per_user": 1000,  # the streaming clients all sign in as one user
            }
        },
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
    }
    plugins = {"test": hft.testing._plugin, "grpc": hft_grpc.plugin}
    host = make_host(plugins, config, data_dir=data_dir)
    async with host.running() as services:
        with anyio.fail_after(10):
            while not all(h.ready for h in services.brokers.values()):  # noqa: ASYNC110
                await anyio.sleep(0.001)
        await services.auth.add_user(
            "bench", PASSWORD, role=Role.TRADER, kind=Environment.LIVE, accounts=("bench",)
        )
        instruments = sorted(services.brokers["venue"].instruments)
        # Marketable orders are valued at the last price, which the hub learns by subscribing.
        prices = services.hub.subscribe(["NSE:INFY"])
        print(json.dumps({"address": services.transports["grpc"], "instruments": instruments}))
        sys.stdout.flush()
        async with anyio.create_task_group() as tg:
            if rate is not None:

                async def publish_forever() -> None:
                    # Bursts every millisecond at ``rate`` ticks/s; 0: 100 a burst, no pause.
                    hub, n = services.hub, 0
                    burst = max(1, rate // 1000) if rate else 100
                    next_burst = anyio.current_time()
                    while True:
                        for _ in range(burst):
                            key = instruments[n % len(instruments)]
                            price = 100_000 + n % 1000 * 5
                            levels = tuple(
                                DepthLevel(price - i * 5, 100 * i, i) for i in range(1, 6)
                            )
                            asks = tuple(DepthLevel(price + i * 5, 100 * i, i) for i in range(1, 6))
                            hub.publish(
                                Tick(
                                    key,
                                    StreamMode.FULL,
                                    price,
                                    time.time_ns(),
                                    last_quantity=1,
                                    volume=n,
                                    ohlc=Ohlc(100_000, 105_000, 95_000, 100_000),
                                    depth=Depth(levels, asks),
                                )
                            )
                            n += 1
                        if rate:
                            next_burst += 0.001
                            await anyio.sleep_until(next_burst)
                        else:
                            await anyio.lowlevel.checkpoint()

                tg.start_soon(publish_forever)
            await anyio.to_thread.run_sync(sys.stdin.read)
            tg.cancel_scope.cancel()
        prices.close()


# The client ------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of process ``pid`` so far (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sign_in(channel: grpc.aio.Channel) -> tuple[tuple[str, str], ...]:
    reply = await auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(username="bench", password=PASSWORD), timeout=30
    )
    return (("authorization", f"Bearer {reply.tokens.access_token}"),)


async def place_load(address: str, orders: int, concurrency: int, pid: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        metadata = await _sign_in(channel)
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        latencies: list[float] = []
        failures = 0

        async def worker(index: int, count: int, record: bool) -> None:
            nonlocal failures
            for n in range(count):
                request = orders_pb2.PlaceRequest(
                    account="bench",
                    instrument="NSE:INFY",
                    side=pb.SIDE_BUY if (index + n) % 2 else pb.SIDE_SELL,
                    quantity=1,
                    price="1500.00",
                )
                start = time.perf_counter()
                try:
                    await stub.Place(request, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError:
                    failures += 1
                if record:
                    latencies.append(time.perf_counter() - start)

        await asyncio.gather(
            *(worker(i, WARMUP // concurrency + 1, False) for i in range(concurrency))
        )
        failures = 0
        cpu_before = cpu_seconds(pid)
        start = time.perf_counter()
        await asyncio.gather(*(worker(i, orders // concurrency, True) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
        cpu_after = cpu_seconds(pid)
    latencies.sort()
    server_cpu_ms = (
        (cpu_after - cpu_before) * 1000 / len(latencies)
        if cpu_before is not None and cpu_after is not None
        else None
    )
    return {
        "concurrency": concurrency,
        "orders": len(latencies),
        "failures": failures,
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "server_cpu_ms": server_cpu_ms,
    }


async def stream_load(
    address: str, instruments: list[str], clients: int, seconds: float, pid: int
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        metadata = await _sign_in(channel)
        stub = market_data_pb2_grpc.MarketDataServiceStub(channel)
        counts = [0] * clients
        last_seq: dict[str, int] = {}
        counting = False

        async def client(index: int) -> None:
            call = stub.StreamTicks(
                market_data_pb2.StreamTicksRequest(
                    instruments=instruments, mode=pb.STREAM_MODE_QUOTE
                ),
                metadata=metadata,
            )
            try:
                async for message in call:
                    if counting:
                        # Connection events are rare (none here): count without a Python loop.
                        counts[index] += len(message.events)
                    if index == 0:
                        for event in message.events:
                            last_seq[event.tick.instrument] = event.tick.seq
            finally:
                call.cancel()

        tasks = [asyncio.create_task(client(i)) for i in range(clients)]
        await asyncio.sleep(1.0)  # every stream open and flowing
        counting = True
        first_seq = dict(last_seq)
        cpu_before, own_before = cpu_seconds(pid), time.process_time()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        counting = False
        elapsed = time.perf_counter() - start
        cpu_after, own_after = cpu_seconds(pid), time.process_time()
        published = sum(last_seq.get(k, 0) - first_seq.get(k, 0) for k in last_seq)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    delivered = sum(counts)
    server_cpu_us = (
        (cpu_after - cpu_before) * 1e6 / delivered
        if cpu_before is not None and cpu_after is not None and delivered
        else None
    )
    return {
        "server_cpu_us_per_tick": server_cpu_us,
        "server_cores": None
        if server_cpu_us is None
        else server_cpu_us * delivered / elapsed / 1e6,
        "client_cores": (own_after - own_before) / elapsed,
        "clients": clients,
        "seconds": round(elapsed, 2),
        "ticks_delivered": delivered,
        "ticks_per_s": delivered / elapsed,
        "per_client_per_s": delivered / elapsed / clients,
        "published_per_s": published / elapsed,
        "slowest_client_per_s": min(counts) / elapsed,
    }


def _start_server(
    tmp: str, storage: str, rate: int | None
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    args = [sys.executable, __file__, "--serve", tmp, "--storage", storage]
    server = subprocess.Popen(
        args if rate is None else [*args, "--publish", str(rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("HFT_")},
    )
    assert server.stdout is not None
    # The first start on a fresh store also prints its bootstrap users' passwords.
    line = server.stdout.readline()
    while line and not line.startswith("{"):
        line = server.stdout.readline()
    if not line:
        raise SystemExit("the benchmark server did not start")
    return server, json.loads(line)


def _stop_server(server: subprocess.Popen[str]) -> None:
    if server.stdin is not None:
        server.stdin.close()
    server.wait(30)


def run_orders(orders: int, concurrency: int, storage: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server, hello = _start_server(tmp, storage, None)
        try:
            result = asyncio.run(place_load(hello["address"], orders, concurrency, server.pid))
        finally:
            _stop_server(server)
    return {"storage": storage, **result}


def run_streams(clients: int, seconds: float, rate: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server, hello = _start_server(tmp, "memory", rate)
        try:
            result = asyncio.run(
                stream_load(hello["address"], hello["instruments"], clients, seconds, server.pid)
            )
            return {"rate": rate, **result}
        finally:
            _stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=3000, help="orders per placement run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--storage", nargs="+", choices=STORAGES, default=list(STORAGES))
    parser.add_argument("--clients", type=int, default=50, help="StreamTicks calls")
    parser.add_argument("--seconds", type=float, default=5.0, help="streaming run length")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument(
        "--rates",
        type=int,
        nargs="+",
        default=[6000, 0],
        help="ticks/s the server publishes in each streaming run (0: as fast as it can)",
    )
    parser.add_argument("--publish", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        (storage,) = args.storage
        anyio.run(serve, Path(args.serve), storage, args.publish, backend="trio")
        return
    load_before = os.getloadavg()[0]
    placements = [run_orders(args.orders, c, s) for s in args.storage for c in args.concurrency]
    streaming = [run_streams(args.clients, args.seconds, rate) for rate in args.rates]
    load_after = os.getloadavg()[0]
    rows = []
    for result in placements:
        print(json.dumps(result))
        cpu = result["server_cpu_ms"]
        rows.append(
            f"| {result['storage']} | {result['concurrency']} | {result['orders']:,} | "
            f"{result['failures']} | {result['calls_per_s']:,.0f} | {result['p50_ms']:.2f} | "
            f"{result['p99_ms']:.2f} | {result['max_ms']:.2f} | "
            f"{'n/a' if cpu is None else f'{cpu:.2f}'} |"
        )
    stream_rows = []
    for result in streaming:
        print(json.dumps(result))
        cpu = result["server_cpu_us_per_tick"]
        stream_rows.append(
            f"| {result['rate'] or 'unpaced'} | {result['clients']} | "
            f"{result['published_per_s']:,.0f} | {result['ticks_per_s']:,.0f} | "
            f"{result['per_client_per_s']:,.0f} | {result['slowest_client_per_s']:,.0f} | "
            f"{'n/a' if cpu is None else f'{cpu:.1f}'} | "
            f"{result['server_cores'] or 0:.2f} / {result['client_cores']:.2f} |"
        )
    if args.no_write:
        return
    command = (
        f"python bench/grpc_api.py --orders {args.orders} "
        f"--concurrency {' '.join(map(str, args.concurrency))} --storage {' '.join(args.storage)} "
        f"--clients {args.clients} --seconds {args.seconds:g} "
        f"--rates {' '.join(map(str, args.rates))}"
    )
    table = "\n".join(rows)
    stream_table = "\n".join(stream_rows)
    body = f"""Command: `{command}` (run by `nox -s bench`).
Machine: {machine()}; load average {load_before:.1f} before the run, {load_after:.1f} after. The
machine is shared with other engineers' work at the time of this run, so the figures are low
and noisy; compare runs made on the same machine.

A host in its own process: the gRPC transport (grpc.aio on its own thread and asyncio loop,
every call bridged to the host's trio loop), the `test` broker in instant mode, and SQLite
(WAL, `synchronous=FULL`, group commit: every order durable before the broker sees it) or the
in-memory store. The client is grpc.aio in this process, on one HTTP/2 connection, sharing the
machine's two cores with the server. "CPU ms" is the server process's CPU time per order.

Unary `OrderService.Place`, `concurrency` callers placing marketable limit orders back to back
(each fills at once); latency is the client's, call made → reply read:

| storage | concurrency | orders | failures | calls/s | p50 ms | p99 ms | max ms | CPU ms |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{table}

`MarketDataService.StreamTicks` to {args.clients} clients (quote mode, all
{len(hello_instruments())} instruments of the venue each) for {args.seconds:g} s, while the
server publishes full-mode ticks (OHLC, five levels of depth) into the hub: paced in 1 ms
bursts at the given rate, or unpaced (as fast as its loop allows, an overload). "Published" is
what the hub stamped meanwhile (from the seqs a client saw), "delivered" what the clients read;
the rest was conflated to the latest tick per instrument, which keeps every client current
however far it falls behind. "CPU µs" is the server process's CPU time per delivered tick
(publishing included); "cores" is the CPU the server / the client process used meanwhile (the
50 clients share one Python process, which decodes every message). Unpaced, the host's loop
never idles, so the gRPC thread gets the GIL only when the switch interval forces a hand-over
(the host sets 0.5 ms; at Python's default 5 ms nothing at all was delivered in this window):
delivery drops to what those hand-overs carry, and every client still holds the latest tick of
each instrument.

| feed/s | clients | published/s | delivered/s, all | per client/s | slowest/s | CPU µs | cores |
|---|---:|---:|---:|---:|---:|---:|---:|
{stream_table}
"""
    write_section("gRPC order placement and tick streaming", body)


def hello_instruments() -> list[str]:
    import hft.testing._broker

    return [i.key for i in hft.testing._broker.DEFAULT_UNIVERSE]


if __name__ == "__main__":
    main()
