"""Authenticated order placement over HTTP: requests/s and latency, keep-alive, local client.

A real host (the ``test`` broker in instant mode; SQLite durability: WAL, synchronous=FULL,
group commit, or the in-memory store; every built-in risk rule on, with limits that pass)
serves the REST API in a separate process. This process signs in once and then ``concurrency``
clients, each on its own keep-alive connection, place limit orders back to back with
``POST /api/v1/orders`` and a bearer token; each order is marketable and fills at once,
alternating buys and sells. Latency is the
client's: request sent → 201 answer read. The server's access log is on, filtered at level
``warning``, as in a quiet production host.

    python bench/http_api.py [--orders 3000] [--concurrency 1 16] [--storage sqlite memory]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for bench._report, when run as a script

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import anyio  # noqa: E402
import httpx  # noqa: E402

from bench._report import machine, write_section  # noqa: E402

PASSWORD = "bench password"
#: ``--storage`` choices: the server's storage URL.
STORAGES = {"sqlite": "sqlite:///{data_dir}/bench.db", "memory": "memory://"}
WARMUP = 300
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


# The server ------------------------------------------------------------------------------------


async def serve(data_dir: Path, storage: str) -> None:
    """Run the host, print its address, and stop when stdin closes."""
    import hft_http.plugin

    import hft.testing._plugin
    from hft import _logging
    from hft.model import Environment, Role
    from hft.testing import make_host

    _logging.configure(level="warning")
    config = {
        "storage": {"url": STORAGES[storage].format(data_dir=data_dir)},
        "brokers": {"venue": {"plugin": "test", "instant": True}},
        "accounts": {"bench": {"broker": "venue", "environment": "live"}},
        "risk": {name: {"enabled": True, **values} for name, values in RISK.items()},
        "transports": {"http": {"port": 0, "rate_limit_per_s": 10**6, "rate_limit_burst": 10**6}},
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
    }
    plugins = {"test": hft.testing._plugin, "http": hft_http.plugin}
    host = make_host(plugins, config, data_dir=data_dir)
    async with host.running() as services:
        with anyio.fail_after(10):
            while not all(h.ready for h in services.brokers.values()):  # noqa: ASYNC110
                await anyio.sleep(0.001)
        await services.auth.add_user(
            "bench", PASSWORD, role=Role.TRADER, kind=Environment.LIVE, accounts=("bench",)
        )
        # Marketable orders are valued at the last price, which the hub learns by subscribing.
        prices = services.hub.subscribe(["NSE:INFY"])
        print(json.dumps({"address": services.transports["http"]}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
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


async def load(address: str, orders: int, concurrency: int, server_pid: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=address, limits=limits, timeout=30) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        latencies: list[float] = []
        failures = 0

        async def place(n: int) -> float:
            nonlocal failures
            body = {
                "account": "bench",
                "instrument": "NSE:INFY",
                "side": "BUY" if n % 2 else "SELL",
                "quantity": 1,
                "price": "1500.00",
            }
            start = time.perf_counter()
            response = await client.post("/api/v1/orders", json=body, headers=headers)
            elapsed = time.perf_counter() - start
            if response.status_code != 201:
                failures += 1
            return elapsed

        async def worker(index: int, count: int, record: bool) -> None:
            for n in range(count):
                elapsed = await place(index + n)
                if record:
                    latencies.append(elapsed)

        async with anyio.create_task_group() as tg:
            for index in range(concurrency):
                tg.start_soon(worker, index, WARMUP // concurrency + 1, False)
        failures = 0
        per_client = orders // concurrency
        cpu_before = cpu_seconds(server_pid)
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(concurrency):
                tg.start_soon(worker, index, per_client, True)
        elapsed = time.perf_counter() - start
        cpu_after = cpu_seconds(server_pid)
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
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "server_cpu_ms": server_cpu_ms,
    }


def run(orders: int, concurrency: int, storage: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp, "--storage", storage],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("HFT_")},
        )
        try:
            assert server.stdout is not None
            # The first start on a fresh store also prints its bootstrap users' passwords.
            line = server.stdout.readline()
            while line and not line.startswith("{"):
                line = server.stdout.readline()
            if not line:
                raise SystemExit("the benchmark server did not start")
            address = json.loads(line)["address"]
            result: dict[str, Any] = anyio.run(
                load, address, orders, concurrency, server.pid, backend="trio"
            )
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(30)
    return {"storage": storage, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=3000, help="orders per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--storage", nargs="+", choices=STORAGES, default=list(STORAGES))
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        (storage,) = args.storage
        anyio.run(serve, Path(args.serve), storage, backend="trio")
        return
    load_before = os.getloadavg()[0]
    results = [run(args.orders, c, storage) for storage in args.storage for c in args.concurrency]
    load_after = os.getloadavg()[0]
    rows = []
    for result in results:
        print(json.dumps(result))
        cpu = result["server_cpu_ms"]
        rows.append(
            f"| {result['storage']} | {result['concurrency']} | {result['orders']:,} | "
            f"{result['failures']} | {result['requests_per_s']:,.0f} | {result['p50_ms']:.2f} | "
            f"{result['p99_ms']:.2f} | {result['max_ms']:.2f} | "
            f"{'n/a' if cpu is None else f'{cpu:.2f}'} |"
        )
    if args.no_write:
        return
    command = (
        f"python bench/http_api.py --orders {args.orders} "
        f"--concurrency {' '.join(map(str, args.concurrency))} --storage {' '.join(args.storage)}"
    )
    table = "\n".join(rows)
    body = f"""Command: `{command}` (run by `nox -s bench`).
Machine: {machine()}; load average {load_before:.1f} before the run, {load_after:.1f} after.

A host in its own process: the REST transport (hypercorn's trio worker, FastAPI), the `test`
broker in instant mode, every built-in risk rule on with limits that pass, and either SQLite
(WAL, `synchronous=FULL`, group commit: every order durable before the broker sees it) or the
in-memory store (the HTTP and OMS cost alone). The client (httpx on trio, in this process)
signs in once, then each of `concurrency` keep-alive connections places marketable limit orders
back to back with a bearer token. Latency is the client's: request sent → `201 Created` read,
the order journalled and acknowledged by the broker. Client and server share the machine's
cores (and, here, with whatever else the machine was running: see the load average), so
requests/s is the pair's; "CPU ms" is the server process's CPU time per order, the figure that
bounds what one server core can serve.

| storage | concurrency | orders | failures | requests/s | p50 ms | p99 ms | max ms | CPU ms |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
{table}
"""
    write_section("HTTP order placement", body)


if __name__ == "__main__":
    main()
