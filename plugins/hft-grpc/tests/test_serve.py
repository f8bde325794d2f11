"""A real ``hft serve`` (sim broker, gRPC only) and a real gRPC client, as a user would run them:
sign in, stream ticks, trade, follow order events across a dropped stream, stop the host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from hft_grpc._generated import (
    auth_pb2,
    auth_pb2_grpc,
    market_data_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)
from hft_grpc._generated import common_pb2 as pb
from hft_grpc._generated import market_data_pb2 as md

INSTRUMENT = "NSE:RELIANCE"
ROOT = Path(__file__).resolve().parents[1]


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], str, list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    # Only the plugins this is about, so that other installed transports need no free port.
    env["HFT_PLUGINS"] = "sim,ext,grpc"
    env["HFT_TRANSPORTS__GRPC__PORT"] = "0"
    process = subprocess.Popen(
        [sys.executable, "-m", "hft", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[dict[str, Any]] = []
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        raw = process.stdout.readline()
        if not raw:
            break
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        lines.append(line)
        if line.get("event") == "host.started":
            return process, line["transports"]["grpc"], lines
    process.kill()
    raise AssertionError(f"hft serve did not start: {[line.get('event') for line in lines]}")


def _password(tmp_path: Path, user: str) -> str:
    for line in (tmp_path / "hft-admin-password.txt").read_text().splitlines():
        name, _, password = line.partition(": ")
        if name == user:
            return password
    raise AssertionError(f"no password for {user}")


def _events_until(stream: Any, done: Any) -> list[orders_pb2.OrderEvent]:
    events = []
    for message in stream:
        events.append(message.event)
        if done(message.event):
            return events
    raise AssertionError("the stream ended")


@pytest.mark.slow
def test_hft_serve_over_grpc(tmp_path: Path) -> None:
    process, address, _ = _start(tmp_path)
    try:
        channel = grpc.insecure_channel(address)
        login = auth_pb2_grpc.AuthServiceStub(channel).Login(
            auth_pb2.LoginRequest(username="trader", password=_password(tmp_path, "trader")),
            timeout=10,
        )
        me = (("authorization", f"Bearer {login.tokens.access_token}"),)
        market = market_data_pb2_grpc.MarketDataServiceStub(channel)
        orders = orders_pb2_grpc.OrderServiceStub(channel)

        # Ticks: the sim market moves, each instrument's seq rises.
        ticks = market.StreamTicks(
            md.StreamTicksRequest(instruments=[INSTRUMENT, "NSE:INFY"], mode=pb.STREAM_MODE_QUOTE),
            metadata=me,
            timeout=30,
        )
        seqs: list[int] = []
        last = 0
        for message in ticks:
            for event in message.events:
                if event.HasField("tick") and event.tick.instrument == INSTRUMENT:
                    seqs.append(event.tick.seq)
                    last = event.tick.last_price
            if len(seqs) >= 3:
                break
        ticks.cancel()
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)

        # Trade while following the order events.
        events = orders.StreamEvents(orders_pb2.StreamEventsRequest(), metadata=me, timeout=30)
        after = next(events).started.after_seq
        price = last * 95 // 100 // 100 * 100  # a whole rupee, well below the market
        placed = orders.Place(
            orders_pb2.PlaceRequest(
                account="sim",
                instrument=INSTRUMENT,
                side=pb.SIDE_BUY,
                quantity=1,
                price=f"{price // 100}.00",
            ),
            metadata=me,
            timeout=10,
        ).orders[0]
        _events_until(events, lambda e: e.order.status == pb.ORDER_STATUS_OPEN)
        orders.Modify(
            orders_pb2.ModifyRequest(order_id=placed.order_id, quantity=2),
            metadata=me,
            timeout=10,
        )
        orders.Cancel(orders_pb2.CancelRequest(order_id=placed.order_id), metadata=me, timeout=10)
        seen = _events_until(events, lambda e: e.order.status == pb.ORDER_STATUS_CANCELLED)
        assert {e.order.order_id for e in seen} == {placed.order_id}
        assert any(e.order.quantity == 2 for e in seen)
        assert [e.seq for e in seen] == sorted({e.seq for e in seen})
        assert seen[0].seq > after
        events.cancel()  # the stream drops

        second = orders.Place(
            orders_pb2.PlaceRequest(
                account="sim",
                instrument=INSTRUMENT,
                side=pb.SIDE_BUY,
                quantity=1,
                price=f"{price // 100 - 1}.00",
            ),
            metadata=me,
            timeout=10,
        ).orders[0]
        resumed = orders.StreamEvents(
            orders_pb2.StreamEventsRequest(after_seq=seen[-1].seq), metadata=me, timeout=30
        )
        assert next(resumed).started.after_seq == seen[-1].seq
        first = next(resumed).event
        assert first.order.order_id == second.order_id
        assert first.kind == orders_pb2.ORDER_EVENT_KIND_CREATED
        assert first.seq > seen[-1].seq

        # The README's example client runs as written (with this host's address and password).
        readme = (ROOT / "README.md").read_text()
        example = readme.split("## Example: a Python client")[1].split("```python")[1]
        example = example.split("```")[0]
        example = example.replace('"127.0.0.1:50051"', repr(address)).replace(
            '"the password from hft-admin-password.txt"', repr(_password(tmp_path, "trader"))
        )
        run = subprocess.run(
            [sys.executable, "-c", example], capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, run.stderr
        assert "placed" in run.stdout
        assert "ORDER_EVENT_KIND_CREATED" in run.stdout

        # Stopping the host ends the open stream with UNAVAILABLE, for the client to reconnect.
        process.send_signal(signal.SIGINT)
        with pytest.raises(grpc.RpcError) as ended:
            for _ in resumed:
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        rest, _ = process.communicate(timeout=30)
        channel.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    events_logged = [json.loads(x).get("event") for x in rest.splitlines() if x.startswith("{")]
    assert "grpc.stopping" in events_logged
    assert "host.stopped" in events_logged
