"""Crash recovery: ``hft serve`` killed with SIGKILL mid-stream loses nothing it acknowledged.

A real ``hft serve`` process trades through the ``test`` broker on a venue kept in a state file
(so that, like a real broker, it outlives the process) and takes orders from the ``lines``
transport (tests/plugins/hft-lineclient). A client streams orders with several in flight and
records every acknowledgement; after some of them the process is killed with SIGKILL. A new
process on the same files must then report every acknowledged order, with its id and a state the
venue's books agree with, duplicate nothing, hold the positions the venue's fills imply, and
answer a retried client order id with the order it already made.

The same holds with the simulation broker (hft-sim), whose exchange lives in the killed process
and keeps its books in the host's storage: what it acknowledged must come back with it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hft.model import OrderStatus, Side
from hft.testing import TestVenue

pytestmark = pytest.mark.slow


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


if not all(map(_installed, ("hft-testbroker", "hft-lineclient", "hft-sim", "hft-ext"))):
    reason = (
        "the test plugins in tests/plugins, hft-sim or hft-ext are not installed "
        "(run through `nox -s tests`)"
    )
    if os.environ.get("CI") or os.environ.get("HFT_TEST_PLUGINS_INSTALLED"):
        raise RuntimeError(reason)  # in CI a missing install is a failure, never a skip
    pytest.skip(reason, allow_module_level=True)

# The venue: instant mode fills a marketable order on arrival and leaves the others resting.
# Nothing moves the last price, so a resting order stays OPEN.
LAST = {"NSE:INFY": 150000, "NSE:RELIANCE": 125000, "NSE:IDEA": 750}
TICK = {"NSE:INFY": 5, "NSE:RELIANCE": 5, "NSE:IDEA": 1}
ACCOUNTS = {"acc1": "D1", "acc2": "D2"}  # hft account → broker account
ORDERS = 80
KILL_AFTER = 30  # acknowledgements
WINDOW = 8  # requests in flight at most
TIMEOUT_S = 30.0

CONFIG = """\
[host]
data_dir = "{data_dir}"

[brokers.paper]
plugin = "test"
environment = "sim"
instant = true
accounts = ["D1", "D2"]
state_file = "{state_file}"
"""
# Both brokers' configs end with the same hft accounts and client transport.
ACCOUNTS_AND_CLIENT = """
[accounts.acc1]
broker = "paper"
broker_account = "D1"
environment = "sim"

[accounts.acc2]
broker = "paper"
broker_account = "D2"
environment = "sim"

[transports.lines]
username = "crash"
accounts = ["acc1", "acc2"]
"""


def stream_of_orders() -> list[dict[str, Any]]:
    """Buys and sells over two accounts and three instruments, half marketable, half resting,
    a third of them with a client order id."""
    orders = []
    for n in range(ORDERS):
        instrument = list(LAST)[n % 3]
        kind = n % 4
        side = "BUY" if kind in (0, 3) else "SELL"
        ticks = 10 if kind in (0, 2) else -20  # through the last price, or away from it
        price = LAST[instrument] + (ticks if side == "BUY" else -ticks) * TICK[instrument]
        order: dict[str, Any] = {
            "account": list(ACCOUNTS)[n % 2],
            "instrument": instrument,
            "side": side,
            "quantity": 1 + n % 7,
            "order_type": "LIMIT",
            "price": price,
        }
        if n % 8 == 2:
            order.update(order_type="MARKET", price=None)
        if n % 3 == 0:
            order["client_order_id"] = f"crash-{n}"
        orders.append(order)
    return orders


def marketable(order: dict[str, Any]) -> bool:
    if order["order_type"] == "MARKET":
        return True
    last = LAST[order["instrument"]]
    return bool(order["price"] >= last if order["side"] == "BUY" else order["price"] <= last)


# ----------------------------------------------------------------------------------------------
# The process and its client
# ----------------------------------------------------------------------------------------------


@contextmanager
def serving(
    tmp_path: Path, run: int, plugins: str = "test,lines"
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``hft serve`` on the config in tmp_path, logging JSON to a file; yields the process, the
    lines transport's address and the log file. Kills the process on the way out."""
    log_path = tmp_path / f"serve-{run}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    env.update(HFT_LOGGING__FORMAT="json", HFT_PLUGINS=plugins)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "hft", "serve"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        started = wait_for_event(process, log_path, "host.started")
        assert str(started["storage"]).startswith("sqlite:///"), started
        yield process, str(started["transports"]["lines"]), log_path
    finally:
        process.kill()
        process.wait(timeout=TIMEOUT_S)


def events(log_path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in log_path.read_text().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict):
            lines.append(line)
    return lines


def wait_for_event(
    process: subprocess.Popen[bytes], log_path: Path, event: str, **fields: object
) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for line in events(log_path):
            if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
                return line
        if process.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"no {event!r} log line; the log:\n{log_path.read_text()}")


class Client:
    """A blocking client of the lines transport, one request at a time."""

    def __init__(self, address: str) -> None:
        host, port = address.rsplit(":", 1)
        self.socket = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.replies = self.socket.makefile("rb")
        self.next_id = 0

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self.next_id += 1
        request = {"id": f"c{self.next_id}", "op": op, **fields}
        self.socket.sendall(json.dumps(request).encode() + b"\n")
        reply: dict[str, Any] = json.loads(self.replies.readline())
        assert reply["id"] == request["id"]
        return reply

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while (readiness := self.call("readiness")["readiness"])["broker:paper"] is not None:
            assert time.monotonic() < deadline, readiness
            time.sleep(0.02)

    def close(self) -> None:
        self.replies.close()
        self.socket.close()


class Stream:
    """Sends the orders pipelined (at most WINDOW unanswered), reads replies on another thread,
    and SIGKILLs the server from that thread once KILL_AFTER acknowledgements have arrived and
    more requests are unanswered."""

    def __init__(self, address: str, process: subprocess.Popen[bytes]) -> None:
        host, port = address.rsplit(":", 1)
        self.socket = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        self.process = process
        self.sent: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}
        self.killed = threading.Event()
        self._room = threading.Condition()

    def run(self, orders: list[dict[str, Any]]) -> None:
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        try:
            for n, order in enumerate(orders):
                with self._room:
                    self._room.wait_for(
                        lambda: self._unanswered() < WINDOW or self.killed.is_set(), TIMEOUT_S
                    )
                    if self.killed.is_set():
                        break
                    self.sent.append(order)  # before it goes: its reply may come at once
                line = json.dumps({"id": n, "op": "submit", "order": order}).encode() + b"\n"
                try:
                    self.socket.sendall(line)
                except OSError:
                    break  # the server is gone
            with self._room:
                self._room.wait_for(
                    lambda: self._unanswered() == 0 or self.killed.is_set(), TIMEOUT_S
                )
            if not self.killed.is_set():  # every order answered, none killed: stop the reader
                self.socket.shutdown(socket.SHUT_RDWR)
            reader.join(TIMEOUT_S)
            assert not reader.is_alive(), "the server neither answered nor died"
        finally:
            self.socket.close()

    def _unanswered(self) -> int:
        return len(self.sent) - len(self.replies)

    def _read(self) -> None:
        acknowledged = 0
        with self.socket.makefile("rb") as replies:
            while True:
                try:
                    raw = replies.readline()
                except OSError:
                    raw = b""  # reset by the dying server: what was read is all it said
                if not raw:
                    break
                reply = json.loads(raw)
                acknowledged += reply["ok"]
                with self._room:
                    self.replies[reply["id"]] = reply
                    if (
                        acknowledged >= KILL_AFTER
                        and self._unanswered()
                        and not self.killed.is_set()
                    ):
                        # Mid-stream, never between requests.
                        self.process.send_signal(signal.SIGKILL)
                        self.killed.set()
                    self._room.notify_all()
        with self._room:
            self._room.notify_all()


def stream_until_killed(
    tmp_path: Path, orders: list[dict[str, Any]], plugins: str = "test,lines", settle_s: float = 0
) -> tuple[Stream, dict[int, list[dict[str, Any]]]]:
    """Run 1: ``hft serve`` takes the stream and is SIGKILLed after KILL_AFTER acknowledgements;
    returns the stream and the orders each acknowledged request created, by request number."""
    with serving(tmp_path, 1, plugins) as (process, address, _):
        client = Client(address)
        client.wait_until_ready()
        client.close()
        time.sleep(settle_s)
        stream = Stream(address, process)
        stream.run(orders)
        assert stream.killed.is_set(), "every order was answered before the kill"
        assert process.wait(timeout=TIMEOUT_S) == -signal.SIGKILL
    assert [r for r in stream.replies.values() if not r["ok"]] == []
    acked = {n: r["orders"] for n, r in stream.replies.items()}
    assert len(acked) >= KILL_AFTER
    assert all(len(created) == 1 for created in acked.values())
    return stream, acked


# ----------------------------------------------------------------------------------------------
# The test
# ----------------------------------------------------------------------------------------------


def test_nothing_acknowledged_is_lost_when_serve_is_killed_mid_stream(tmp_path: Path) -> None:
    data_dir, state_file = tmp_path / "data", tmp_path / "venue.log"
    (tmp_path / "hft.toml").write_text(
        CONFIG.format(data_dir=data_dir, state_file=state_file) + ACCOUNTS_AND_CLIENT
    )
    orders = stream_of_orders()

    stream, acked = stream_until_killed(tmp_path, orders)

    # Run 2: the same files. Readiness waits for the broker's reconciliation.
    with serving(tmp_path, 2) as (process, address, log_path):
        client = Client(address)
        client.wait_until_ready()
        reconciled = wait_for_event(process, log_path, "oms.reconciled", broker="paper")
        # A retried client order id returns the order it made, and nothing reaches the venue.
        places_before = _places(state_file)
        retried = {}
        for n in acked:
            if "client_order_id" in orders[n]:
                reply = client.call("submit", order=orders[n])
                assert reply["ok"], reply
                retried[n] = reply["orders"]
        assert _places(state_file) == places_before
        # And trading goes on: a new order gets the venue's next id.
        fresh = client.call("submit", order={**orders[3], "client_order_id": "after-restart"})
        assert fresh["ok"], fresh
        assert fresh["orders"][0]["broker_order_id"] == f"TB{places_before + 1:08d}"
        listing = client.call("orders")["orders"]
        positions = client.call("positions")["positions"]
        client.close()

    venue = _venue_as_left(state_file, tmp_path / "venue-copy.log", places_before)
    venue_orders = [u for account in ACCOUNTS.values() for u in venue._book(account)]
    books = {u.client_order_id: u for u in venue_orders}  # the venue knows orders by hft's id
    recovered = {o["order_id"]: o for o in listing}

    # Every acknowledged order is there, with its id, its request and the venue's state.
    for n, (created,) in acked.items():
        order = recovered.get(created["order_id"])
        assert order is not None, f"acknowledged order {n} ({created['order_id']}) was lost"
        request = order["request"]
        for key in ("account", "instrument", "side", "quantity", "order_type", "price"):
            assert request[key] == orders[n].get(key), (n, key)
        assert request["client_order_id"] == orders[n].get("client_order_id", "")
        update = books[order["order_id"]]
        assert order["broker_order_id"] == update.broker_order_id
        expected = OrderStatus.FILLED if marketable(orders[n]) else OrderStatus.OPEN
        assert (order["status"], update.status) == (expected, expected), n
        filled = orders[n]["quantity"] if expected is OrderStatus.FILLED else 0
        assert (order["filled_quantity"], update.filled_quantity) == (filled, filled), n
    for n, (again,) in retried.items():
        assert again["order_id"] == acked[n][0]["order_id"]

    # Nothing is duplicated, and every order that reached the venue is known to hft (durable
    # before it was sent), in the venue's state; the rest never left hft and are closed.
    assert len(recovered) == len(listing)
    assert len(books) == len(venue_orders)
    by_client_id = Counter(o["request"]["client_order_id"] for o in listing)
    assert all(count == 1 for cid, count in by_client_id.items() if cid), by_client_id
    assert set(books) <= set(recovered)
    assert len(books) <= len(stream.sent) + 1  # the stream's, and one after the restart
    for order_id, order in recovered.items():
        at_venue = books.get(order_id)
        if at_venue is None:
            assert order["status"] == "REJECTED", order
            assert order["reason"] == "never reached the broker"
        else:
            assert order["broker_order_id"] == at_venue.broker_order_id
            assert (order["status"], order["filled_quantity"]) == (
                at_venue.status,
                at_venue.filled_quantity,
            )
    assert (reconciled["unknown"], reconciled["mismatches"]) == (0, 0), reconciled

    # Positions are the venue's fills, to the share and the paisa.
    implied: dict[tuple[str, str], list[int]] = {}
    for account_id, broker_account in ACCOUNTS.items():
        for fill in venue._trades(broker_account):
            totals = implied.setdefault((account_id, fill.instrument), [0, 0, 0, 0])
            index = 0 if fill.side is Side.BUY else 2
            totals[index] += fill.quantity
            totals[index + 1] += fill.quantity * fill.price
    reported = {
        (p["account"], p["instrument"]): [
            p["buy_quantity"],
            p["buy_value"],
            p["sell_quantity"],
            p["sell_value"],
        ]
        for p in positions
    }
    assert reported == implied
    assert implied  # the stream did trade
    net = {(p["account"], p["instrument"]): p["quantity"] for p in positions}
    assert net == {
        (account_id, p.instrument): p.quantity
        for account_id, broker_account in ACCOUNTS.items()
        for p in venue._positions_of(broker_account)
    }


def _places(state_file: Path) -> int:
    return sum(json.loads(line)["op"] == "place" for line in state_file.read_text().splitlines())


def _venue_as_left(state_file: Path, copy: Path, places: int) -> TestVenue:
    """The venue rebuilt from a copy of its log (the test must not write to the original)."""
    copy.write_bytes(state_file.read_bytes())
    venue = TestVenue(accounts=tuple(ACCOUNTS.values()), instant=True, state_file=copy)
    assert venue._order_seq == places + 1
    return venue


# ----------------------------------------------------------------------------------------------
# The same crash on the simulation broker
# ----------------------------------------------------------------------------------------------

SIM_CONFIG = """\
[host]
data_dir = "{data_dir}"

[brokers.paper]
plugin = "sim"
environment = "sim"
seed = 7

[brokers.paper.accounts.D1]
[brokers.paper.accounts.D2]
"""
SIM_INSTRUMENTS = ("NSE:INFY", "NSE:RELIANCE", "NSE:TCS")


def sim_orders() -> list[dict[str, Any]]:
    """Market orders, which the sim's market makers fill at once, over two accounts and three
    instruments, a third of them with a client order id."""
    orders = []
    for n in range(ORDERS):
        order: dict[str, Any] = {
            "account": list(ACCOUNTS)[n % 2],
            "instrument": SIM_INSTRUMENTS[n % 3],
            "side": "BUY" if n % 4 in (0, 3) else "SELL",
            "quantity": 1 + n % 5,
            "order_type": "MARKET",
        }
        if n % 3 == 0:
            order["client_order_id"] = f"crash-{n}"
        orders.append(order)
    return orders


def test_nothing_the_sim_acknowledged_is_lost_when_serve_is_killed_mid_stream(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    (tmp_path / "hft.toml").write_text(SIM_CONFIG.format(data_dir=data_dir) + ACCOUNTS_AND_CLIENT)
    orders = sim_orders()
    plugins = "sim,ext,lines"

    # A few market steps (200 ms each) first: the market makers' quotes to trade on.
    _, acked = stream_until_killed(tmp_path, orders, plugins, settle_s=1.0)

    # Run 2: the same files; the sim comes back from the host's storage.
    with serving(tmp_path, 2, plugins) as (process, address, log_path):
        client = Client(address)
        client.wait_until_ready()
        reconciled = wait_for_event(process, log_path, "oms.reconciled", broker="paper")
        retried = {}
        for n in acked:
            if "client_order_id" in orders[n]:
                reply = client.call("submit", order=orders[n])
                assert reply["ok"], reply
                retried[n] = reply["orders"]
        listing = client.call("orders")["orders"]
        positions = client.call("positions")["positions"]
        client.close()
    # Read after the second SIGKILL too: the sim stores what it reports before it reports it.
    sim = _sim_state(data_dir / "hft.db")
    at_sim = {row["id"]: row for row in sim["orders"]}

    # Every acknowledged order is there, final, as the sim has it.
    recovered = {o["order_id"]: o for o in listing}
    for n, (created,) in acked.items():
        order = recovered.get(created["order_id"])
        assert order is not None, f"acknowledged order {n} ({created['order_id']}) was lost"
        assert order["broker_order_id"] == created["broker_order_id"], n
        row = at_sim.get(order["broker_order_id"])
        assert row is not None, f"the sim lost acknowledged order {n} ({created})"
        assert row["request"]["client_order_id"] == order["order_id"]
        # Filled, or (while the market makers' first quotes are still coming) filled as far as
        # the book went, the rest cancelled: either way final, and the same on both sides.
        assert order["status"] in ("FILLED", "CANCELLED"), (n, order)
        assert (order["status"], order["filled_quantity"]) == (
            row["status"],
            row["filled_quantity"],
        ), n
    for n, (again,) in retried.items():
        assert again["order_id"] == acked[n][0]["order_id"]

    # No broker order id was handed out twice, and hft knows every order the sim has.
    broker_ids = [o["broker_order_id"] for o in listing if o["broker_order_id"]]
    assert len(broker_ids) == len(set(broker_ids))
    by_broker_id = {o["broker_order_id"]: o for o in listing if o["broker_order_id"]}
    assert set(at_sim) <= set(by_broker_id)
    for broker_order_id, row in at_sim.items():
        order = by_broker_id[broker_order_id]
        assert (order["status"], order["filled_quantity"]) == (
            row["status"],
            row["filled_quantity"],
        )
    for order in listing:
        if order["broker_order_id"] is None:
            assert (order["status"], order["reason"]) == ("REJECTED", "never reached the broker")
    assert (reconciled["unknown"], reconciled["mismatches"]) == (0, 0), reconciled

    # Positions are the sim's fills, to the share and the paisa.
    account_of = {broker_account: account for account, broker_account in ACCOUNTS.items()}
    implied: dict[tuple[str, str], list[int]] = {}
    for fill in sim["trades"]:
        totals = implied.setdefault((account_of[fill["account"]], fill["instrument"]), [0] * 4)
        index = 0 if fill["side"] == "BUY" else 2
        totals[index] += fill["quantity"]
        totals[index + 1] += fill["quantity"] * fill["price"]
    reported = {
        (p["account"], p["instrument"]): [
            p["buy_quantity"],
            p["buy_value"],
            p["sell_quantity"],
            p["sell_value"],
        ]
        for p in positions
    }
    assert reported == implied
    assert sum(o["filled_quantity"] for o in listing) > 0  # the stream did trade


def _sim_state(database: Path) -> dict[str, Any]:
    """The sim broker's stored state, read straight from the host's SQLite file."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        (value,) = db.execute(
            "SELECT value FROM state WHERE namespace = 'sim' AND key = 'paper'"
        ).fetchone()
    state: dict[str, Any] = json.loads(value)
    return state
