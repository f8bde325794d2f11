"""WebSocket market-data fan-out: tick deliveries/s and tick-to-client latency, 100 clients.

The server is a real host in its own process with the ``websocket`` transport and a bench-only
broker plugin (``ticks``, defined below) that lists ``--instruments`` instruments and streams
synthetic LTP ticks at ``--rates`` ticks/s in total, round robin, each stamped with the wall
clock when it is made. Ticks take the host's own path: broker pump → market-data hub → the
transport's fan-out → one binary frame per connection per send. ``--clients`` connections, spread
over ``--processes`` client processes (one epoll loop each, a minimal frame reader), authenticate
with an API key, choose the binary encoding and subscribe to every instrument in ``ltp`` mode.
They count records from each frame's header and, in one frame of every 16, decode every record's
timestamp: latency = client wall clock on receipt − the tick's timestamp (one machine, one
clock). A delivery is one record received by one client; offered deliveries are ticks/s × clients.
A client that falls behind is conflated (latest tick per instrument), so delivered < offered
then, by design.

    python bench/websocket_ticks.py [--rates 1000 10000 20000] [--clients 100] [--instruments 1000]
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # for bench._report, when run as a script

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import AsyncIterator, Sequence  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import anyio  # noqa: E402
import attrs  # noqa: E402

from bench._report import machine, write_section  # noqa: E402

WINDOW_S = 5.0
SETUP_S = 6.0  # from the clients' start to the measured window: connect, subscribe, settle
SAMPLE_EVERY = 16  # frames
RESERVOIR = 20_000  # latency samples kept per client process
_TIMESTAMPS = struct.Struct("<24xq")  # an ltp record's timestamp_ns (docs/protocol.md §6)


# The server ------------------------------------------------------------------------------------


@attrs.frozen
class TicksConfig:
    rate_per_s: float = 1000.0
    instruments: int = 1000


def ticks_plugin() -> Any:
    """The bench-only ``ticks`` broker: instruments and a synthetic LTP stream, no orders."""
    import types

    import hft
    from hft import BrokerRejected
    from hft.contracts import Broker
    from hft.model import (
        Fill,
        Instrument,
        ModifyRequest,
        OrderRequest,
        OrderUpdate,
        Position,
        StreamMode,
        Tick,
    )

    class TickSource(Broker):
        def __init__(self, config: TicksConfig, context: object) -> None:
            self.config = config
            self._instruments = [
                Instrument(exchange="BENCH", symbol=f"S{n:04d}", token=n + 1, tick_size=5)
                for n in range(config.instruments)
            ]

        async def connect(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def place_order(
            self, broker_account: str, instrument: Instrument, request: OrderRequest
        ) -> str:
            raise BrokerRejected("the bench tick source takes no orders")

        async def modify_order(
            self,
            broker_account: str,
            broker_order_id: str,
            instrument: Instrument,
            change: ModifyRequest,
        ) -> None:
            raise BrokerRejected("the bench tick source takes no orders")

        async def cancel_order(self, broker_account: str, broker_order_id: str) -> None:
            raise BrokerRejected("the bench tick source takes no orders")

        async def orders(self, broker_account: str) -> list[OrderUpdate]:
            return []

        async def trades(self, broker_account: str) -> list[Fill]:
            return []

        async def positions(self, broker_account: str) -> list[Position]:
            return []

        async def instruments(self) -> list[Instrument]:
            return list(self._instruments)

        async def subscribe(self, instruments: Sequence[Instrument], mode: StreamMode) -> None:
            pass

        async def unsubscribe(self, instruments: Sequence[Instrument]) -> None:
            pass

        async def events(self) -> AsyncIterator[Tick]:  # type: ignore[override]
            keys = [i.key for i in self._instruments]
            rate = self.config.rate_per_s
            start = time.perf_counter()
            made = 0
            n = len(keys)
            while True:
                due = int((time.perf_counter() - start) * rate)
                for _ in range(min(due - made, 20_000)):
                    made += 1
                    yield Tick(
                        keys[made % n], StreamMode.LTP, 100_000 + made % 997 * 5, time.time_ns()
                    )
                await anyio.sleep(0.0005)

    def hft_register_brokers(register: Any) -> None:
        register("ticks", TickSource, config=TicksConfig)

    return types.SimpleNamespace(hft_register_brokers=hft.hookimpl(hft_register_brokers))


async def serve(data_dir: Path, rate: float, instruments: int) -> None:
    """Run the host, print its address and an API key, and stop when stdin closes."""
    import hft_websocket.plugin

    from hft import _logging
    from hft.model import Environment, Role
    from hft.testing import make_host

    _logging.configure(level="warning")
    config = {
        "brokers": {"feed": {"plugin": "ticks", "rate_per_s": rate, "instruments": instruments}},
        "accounts": {"bench": {"broker": "feed", "environment": "sim"}},
        "transports": {
            "websocket": {"port": 0, "max_subscriptions": instruments, "max_frame_records": 2000}
        },
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
    }
    plugins = {"ticks": ticks_plugin(), "websocket": hft_websocket.plugin}
    host = make_host(plugins, config, data_dir=data_dir)
    async with host.running() as services:
        with anyio.fail_after(10):
            while not all(h.ready for h in services.brokers.values()):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        await services.auth.add_user(
            "bench", "bench password", role=Role.VIEWER, kind=Environment.SIM
        )
        _, key = await services.auth.create_api_key("bench", "bench")
        keys = list(services.brokers["feed"].instruments)
        print(
            json.dumps(
                {"address": services.transports["websocket"], "key": key, "instruments": keys}
            ),
            flush=True,
        )
        await anyio.to_thread.run_sync(sys.stdin.read)


# The clients -----------------------------------------------------------------------------------


def connect(url: str, key: str, instruments: list[str]) -> tuple[socket.socket, bytes]:
    """One authenticated, subscribed connection (blocking), and what it has read past the
    handshake."""
    address = urlsplit(url)
    assert address.hostname is not None
    assert address.port is not None
    sock = socket.create_connection((address.hostname, address.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    handshake = (
        f"GET {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"
        "\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(handshake.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked(1, json.dumps({"op": "auth", "token": key, "encoding": "binary"})))
    subscribe = {"op": "subscribe", "id": "s", "instruments": instruments, "mode": "ltp"}
    sock.sendall(_masked(1, json.dumps(subscribe)))
    sock.setblocking(False)
    return sock, buf


def read_frames(sock: socket.socket, buf: bytes, counting: bool, out: dict[str, Any]) -> bytes:
    """Consume the whole frames at the start of ``buf``; return the rest. The server's frames
    are unmasked, and records are counted from the frame header (offset 6, docs §6)."""
    samples: list[int] = out["samples"]
    pos, end = 0, len(buf)
    while end - pos >= 2:
        b0, length = buf[pos], buf[pos + 1] & 0x7F
        header = 2
        if length == 126:
            if end - pos < 4:
                break
            length, header = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif length == 127:
            if end - pos < 10:
                break
            length, header = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        if end - pos < header + length:
            break
        start = pos + header
        pos = start + length
        opcode = b0 & 0x0F
        if opcode == 2 and counting:
            out["frames"] += 1
            out["records"] += buf[start + 6] | buf[start + 7] << 8
            if out["frames"] % SAMPLE_EVERY == 0:
                now = time.time_ns()
                for (stamp,) in _TIMESTAMPS.iter_unpack(buf[start + 24 : pos]):
                    if len(samples) < RESERVOIR:
                        samples.append(now - stamp)
                    else:
                        samples[random.randrange(RESERVOIR)] = now - stamp
        elif opcode == 9:
            sock.sendall(_masked(10, buf[start:pos]))
        elif opcode == 8:
            raise SystemExit(f"the server closed the connection: {buf[start:pos]!r}")
    return buf[pos:]


def _masked(opcode: int, payload: str | bytes) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    mask = os.urandom(4)
    n = len(data)
    size = bytes([0x80 | n]) if n < 126 else bytes([0xFE]) + n.to_bytes(2, "big")
    if n >= 65536:
        size = bytes([0xFF]) + n.to_bytes(8, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x80 | opcode]) + size + mask + masked


def client_process(url: str, key: str, connections: int, start_at: float, stop_at: float) -> None:
    """``connections`` connections read by one epoll loop: the client is measuring apparatus,
    kept as light as a reader can be (a few µs per read) so the cores go to the server."""
    instruments = json.loads(sys.stdin.readline())
    out: dict[str, Any] = {"frames": 0, "records": 0, "samples": []}
    poller = select.epoll()
    socks: dict[int, socket.socket] = {}
    bufs: dict[int, bytes] = {}
    for _ in range(connections):
        sock, buf = connect(url, key, instruments)
        socks[sock.fileno()] = sock
        bufs[sock.fileno()] = buf
        poller.register(sock.fileno(), select.EPOLLIN)
    try:
        while (now := time.time()) < stop_at:
            counting = now >= start_at
            for fd, _ in poller.poll(0.05):
                sock = socks[fd]
                try:
                    data = sock.recv(262144)
                except BlockingIOError:
                    continue
                if not data:
                    raise SystemExit("the server closed a connection")
                bufs[fd] = read_frames(sock, bufs[fd] + data, counting, out)
    finally:
        poller.close()
        for sock in socks.values():
            sock.close()
    print(json.dumps(out), flush=True)


# The driver ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[int], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] / 1e6


def run(rate: float, clients: int, processes: int, instruments: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                tmp,
                "--rates",
                str(rate),
                "--instruments",
                str(instruments),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        workers: list[subprocess.Popen[str]] = []
        try:
            assert server.stdout is not None
            assert server.stdin is not None
            line = server.stdout.readline()
            while line and not line.startswith("{"):
                line = server.stdout.readline()
            if not line:
                raise SystemExit("the benchmark server did not start")
            hello = json.loads(line)
            start_at = time.time() + SETUP_S
            stop_at = start_at + WINDOW_S
            per = [clients // processes + (i < clients % processes) for i in range(processes)]
            for count in per:
                worker = subprocess.Popen(
                    [sys.executable, __file__, "--client", hello["address"], hello["key"],
                     str(count), str(start_at), str(stop_at)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )  # fmt: skip
                assert worker.stdin is not None
                worker.stdin.write(json.dumps(hello["instruments"]) + "\n")
                worker.stdin.flush()
                workers.append(worker)
            time.sleep(max(0.0, start_at - time.time()))
            cpu_before = cpu_seconds(server.pid)
            time.sleep(max(0.0, stop_at - time.time()))
            cpu_after = cpu_seconds(server.pid)
            results = []
            for worker in workers:
                out, _ = worker.communicate(timeout=120)
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
            if server.stdin is not None:
                server.stdin.close()
            server.wait(30)
    samples = sorted(s for r in results for s in r["samples"])
    records = sum(r["records"] for r in results)
    frames = sum(r["frames"] for r in results)
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "ticks_per_s": rate,
        "clients": clients,
        "processes": processes,
        "offered_per_s": rate * clients,
        "deliveries_per_s": records / WINDOW_S,
        "records_per_frame": records / frames if frames else 0.0,
        "p50_ms": percentile(samples, 0.50) if samples else None,
        "p99_ms": percentile(samples, 0.99) if samples else None,
        "samples": len(samples),
        "server_cpu_per_s": None if server_cpu is None else server_cpu / WINDOW_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1000.0, 10_000.0, 20_000.0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument(
        "--also-processes",
        type=int,
        default=2,
        help="re-run the first rate with this many client processes, for comparison (0: no)",
    )
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    parser.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, Path(args.serve), args.rates[0], args.instruments, backend="trio")
        return
    if args.client:
        url, key, count, start_at, stop_at = args.client
        client_process(url, key, int(count), float(start_at), float(stop_at))
        return
    load_before = os.getloadavg()[0]
    results = [run(rate, args.clients, args.processes, args.instruments) for rate in args.rates]
    contrast = None
    if args.also_processes and args.also_processes != args.processes:
        contrast = run(args.rates[0], args.clients, args.also_processes, args.instruments)
    load_after = os.getloadavg()[0]
    rows = []
    for r in results if contrast is None else [*results, contrast]:
        print(json.dumps(r))
        cpu = r["server_cpu_per_s"]
        rows.append(
            f"| {r['processes']} proc. | {r['ticks_per_s']:,.0f} | {r['offered_per_s']:,.0f} | "
            f"{r['deliveries_per_s']:,.0f} | "
            f"{r['records_per_frame']:.1f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{'n/a' if cpu is None else f'{cpu:.2f}'} |"
        )  # fmt: skip
    if args.no_write:
        return
    best = max(results, key=lambda r: r["deliveries_per_s"])
    at_100k = min(results, key=lambda r: abs(r["offered_per_s"] - 100_000))
    verdict = (
        f"Targets: ≥ 1,000,000 deliveries/s sustained — measured {best['deliveries_per_s']:,.0f} "
        f"({best['deliveries_per_s'] / 1e6:.2f}× the target, "
        f"{'met' if best['deliveries_per_s'] >= 1e6 else 'NOT met'}); p99 ≤ 5 ms at 100,000 "
        f"deliveries/s offered — measured {at_100k['p99_ms']:.2f} ms "
        f"({'met' if at_100k['p99_ms'] <= 5 else 'NOT met'}, "
        f"{at_100k['p99_ms'] / 5:.2f}× the bound) with the clients in {args.processes} "
        f"process{'es' if args.processes > 1 else ''}."
    )
    if contrast is not None:
        verdict += (
            f" With the same clients in {contrast['processes']} processes: "
            f"p99 {contrast['p99_ms']:.2f} ms."
        )
    command = (
        f"python bench/websocket_ticks.py --rates {' '.join(f'{r:g}' for r in args.rates)} "
        f"--clients {args.clients} --processes {args.processes} "
        f"--also-processes {args.also_processes} --instruments {args.instruments}"
    )
    body = f"""Command: `{command}` (run by `nox -s bench`).
Machine: {machine()}; load average {load_before:.1f} before the run, {load_after:.1f} after.
The server, its synthetic feed and the client processes share the machine's two cores.

A host in its own process runs the `websocket` transport and a bench-only broker plugin that
streams synthetic LTP ticks round robin over {args.instruments:,} instruments at the rate below,
through the host's own path (broker pump → market-data hub → the transport's fan-out: one hub
subscription per mode, each tick's binary record encoded once and shared, one frame per
connection per send). {args.clients} WebSocket connections, in the number of client processes
given below, each subscribe to every instrument in `ltp` mode with the binary encoding. A client
process reads all its connections from one epoll loop and counts records from frame headers, so
that it takes as little of the machine's two cores from the server as a reader can; latency (tick
made → frame read by the client, one wall clock) is sampled from every record of one frame in
{SAMPLE_EVERY}. Delivered below offered means clients were conflated to the latest tick per
instrument, as the protocol does for any client that falls behind. "Server CPU" is the server
process's CPU seconds per second in the {WINDOW_S:g} s window. The last row repeats the first rate
with the clients split over more processes: on two cores, every extra busy process competes with
the server, and the tail latency shows it.

| clients in | ticks/s | offered/s | delivered/s | records/frame | p50 ms | p99 ms | server CPU |
|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

{verdict}
"""
    write_section("WebSocket tick fan-out", body)


if __name__ == "__main__":
    main()
