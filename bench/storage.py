"""Journal append throughput and latency of the SQL storage backend, with group commit.

``writers`` tasks each append order events back to back (``append_order_events`` with
``--entries`` entries, each a full order snapshot, as the OMS journals them) until ``--appends``
appends are done, on SQLite (a temporary file; WAL, ``synchronous=FULL``) and on PostgreSQL
(``HFT_BENCH_POSTGRES_URL``, by default the test server ``postgresql://postgres@127.0.0.1:5432/test``,
in a schema of its own dropped afterwards; skipped when it does not answer). An append returns
once it is durable. Writers are 1 (sequential: one commit per append), 10 and 100.

    python bench/storage.py [--appends 4000] [--entries 1] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import git_revision, machine, write_section
from hft import _logging
from hft._builtin._sql_storage import SqlStorage, redact_url
from hft.model import Order, OrderRequest, OrderStatus, Side

POSTGRES_URL = os.environ.get("HFT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
WRITERS = (1, 10, 100)


def make_order(n: int, prefix: str = "o") -> Order:
    """An order as the OMS journals it once acknowledged: three history entries."""
    request = OrderRequest(
        "acc1",
        "NSE:INFY",
        Side.BUY if n % 2 else Side.SELL,
        1 + n % 50,
        price=150_000 + 5 * (n % 100),
        client_order_id=f"c-{n}",
    )
    order = Order(f"{prefix}-{n:09d}", request, "bench")
    order.transition(OrderStatus.PENDING)
    order.broker_order_id = str(n)
    order.transition(OrderStatus.OPEN)
    return order


async def scenario(url: str, writers: int, appends: int, entries: int) -> dict[str, float]:
    store = SqlStorage(url)
    await store.open()
    per_writer = max(1, appends // writers)
    # Built beforehand: what is timed is the store. New order ids in every scenario.
    orders = iter(make_order(n, f"w{writers}") for n in range(per_writer * writers * entries + 50))
    batches = [
        [(next(orders), "created") for _ in range(entries)] for _ in range(per_writer * writers)
    ]
    for _ in range(50):  # warm-up: connections, prepared statements
        await store.append_order_events([(next(orders), "created")])
    latencies: list[int] = []

    async def writer(index: int) -> None:
        for i in range(per_writer):
            events = batches[index * per_writer + i]
            start = time.perf_counter_ns()
            await store.append_order_events(events)
            latencies.append(time.perf_counter_ns() - start)

    try:
        commits_before = store.commits
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for index in range(writers):
                tg.start_soon(writer, index)
        wall = time.perf_counter() - wall_start
        cpu = time.process_time() - cpu_start
        commits = store.commits - commits_before
    finally:
        await store.close()
    latencies.sort()
    done = len(latencies)
    return {
        "writers": writers,
        "appends": done,
        "appends_per_s": done / wall,
        "entries_per_s": done * entries / wall,
        "appends_per_commit": done / max(commits, 1),
        "p50_ms": latencies[done // 2] / 1e6,
        "p99_ms": latencies[min(done - 1, int(done * 0.99))] / 1e6,
        "mean_ms": statistics.fmean(latencies) / 1e6,
        "cpu_us_per_entry": cpu / (done * entries) * 1e6,
    }


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A URL whose tables land in a fresh schema, dropped afterwards; None without a server."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3, autocommit=True) as conn:
            schema = f"hft_bench_{uuid.uuid4().hex[:12]}"
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        print(f"PostgreSQL at {redact_url(POSTGRES_URL)} skipped: {' '.join(str(exc).split())}")
        yield None
        return
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def run_backend(
    name: str, url_for: Callable[[int], str], appends: int, entries: int
) -> list[dict[str, Any]]:
    results = []
    for writers in WRITERS:
        # Sequential appends pay one commit each: fewer of them keep the run short.
        count = appends // 4 if writers == 1 else appends
        result = anyio.run(scenario, url_for(writers), writers, count, entries, backend="trio")
        result["backend"] = name
        results.append(result)
        print(
            f"{name:10s} writers={writers:<4d} "
            + " ".join(
                f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in result.items()
                if k not in ("backend", "writers")
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=4_000, help="appends per scenario")
    parser.add_argument("--entries", type=int, default=1, help="journal entries per append")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    _logging.configure(level="warning")
    backends = args.backends.split(",")
    results: list[dict[str, Any]] = []
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory() as tmp:
            # A fresh database file for each row, as for PostgreSQL a fresh schema for the run.
            results += run_backend(
                "SQLite",
                lambda writers: f"sqlite:///{Path(tmp) / f'bench-{writers}.db'}",
                args.appends,
                args.entries,
            )
    if "postgresql" in backends:
        with postgres_schema() as url:
            if url is not None:
                results += run_backend("PostgreSQL", lambda _: url, args.appends, args.entries)
    if args.no_write or not results:
        return
    rows = "\n".join(
        f"| {r['backend']} | {r['writers']} | {r['appends']:,} | {r['appends_per_s']:,.0f} "
        f"| {r['appends_per_commit']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
        f"| {r['cpu_us_per_entry']:.0f} |"
        for r in results
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    command = f"python bench/storage.py --appends {args.appends} --entries {args.entries}"
    entries = "1 journal entry" if args.entries == 1 else f"{args.entries} journal entries"
    body = f"""Command: `{command}` (run by `nox -s bench`), revision {git_revision()}.
Machine: {machine()}; load average {load} when it finished.

`SqlStorage.append_order_events` alone, {entries} (a full order snapshot each) per
append; 1 (sequential), 10 or 100 tasks append back to back, and each append returns once
durable. SQLite: a file, WAL, `synchronous=FULL`; PostgreSQL: the local server,
`synchronous_commit` on. Group commit puts every append queued during one commit into the next.
"CPU" is the process's CPU time (event loop and writer thread) per journal entry: the figure
that other work on the machine disturbs least.

| backend | writers | appends | appends/s | appends per commit | p50 ms | p99 ms | CPU µs/entry |
|---|---:|---:|---:|---:|---:|---:|---:|
{rows}
"""
    write_section("Storage group commit", body)


if __name__ == "__main__":
    main()
