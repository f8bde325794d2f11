"""A client that is not ours: the ``websockets`` library, driven from ``docs/protocol.md`` alone.

Nothing of ``hft_websocket`` is imported here. The binary frames are read by a decoder written
from section 6 of the protocol document, independent of the one in the SDK.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_DOWN, Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .conftest import ACCOUNT, Server

NULL = -(2**63)
RECORD_SIZE = {1: 32, 2: 144, 3: 384}
MODE_NAME = {1: "ltp", 2: "quote", 3: "full"}
RANK = {"ltp": 1, "quote": 2, "full": 3}


# -- section 6, decoded by hand ------------------------------------------------------------------


def decode(frame: bytes) -> tuple[int, str, list[dict[str, Any]]]:
    """(connection seq, mode, records) of one binary frame; AssertionError if it is malformed."""
    assert len(frame) >= 24
    assert frame[0:2] == b"HT"
    assert frame[2] == 1
    mode = frame[3]
    record_size = int.from_bytes(frame[4:6], "little")
    count = int.from_bytes(frame[6:8], "little")
    seq = int.from_bytes(frame[8:16], "little")
    crc = int.from_bytes(frame[16:20], "little")
    payload_size = int.from_bytes(frame[20:24], "little")
    assert record_size == RECORD_SIZE[mode]
    assert count >= 1
    assert payload_size == count * record_size == len(frame) - 24
    payload = frame[24:]
    assert zlib.crc32(payload) == crc
    records = []
    for n in range(count):
        r = payload[n * record_size : (n + 1) * record_size]

        def i64(offset: int, r: bytes = r) -> int:
            return int.from_bytes(r[offset : offset + 8], "little", signed=True)

        record: dict[str, Any] = {
            "iid": int.from_bytes(r[0:4], "little"),
            "seq": int.from_bytes(r[8:16], "little"),
            "last_price": i64(16),
            "timestamp_ns": i64(24),
        }
        if mode >= 2:
            names = [
                "last_quantity", "volume", "average_price", "total_buy_quantity",
                "total_sell_quantity", "open_interest", "open", "high", "low", "close",
                "bid_price", "bid_quantity", "ask_price", "ask_quantity",
            ]  # fmt: skip
            for k, name in enumerate(names):
                record[name] = i64(32 + 8 * k)
        if mode == 3:
            levels = [(i64(144 + 24 * k), i64(152 + 24 * k), i64(160 + 24 * k)) for k in range(10)]
            record["bids"] = [lv for lv in levels[:5] if lv[0] != NULL]
            record["asks"] = [lv for lv in levels[5:] if lv[0] != NULL]
        records.append(record)
    return seq, MODE_NAME[mode], records


# -- a thin client ---------------------------------------------------------------------------------


class Raw:
    """One connection; checks that every server message's ``seq`` is the next one."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seq = 0
        self.held: list[Any] = []
        self.orders: list[dict[str, Any]] = []  # every order event received, in order

    def send(self, **message: Any) -> None:
        self.ws.send(json.dumps(message))

    def receive(self, timeout: float = 10) -> Any:
        if self.held:
            return self.held.pop(0)
        raw = self.ws.recv(timeout=timeout)
        if isinstance(raw, bytes):
            seq, mode, records = decode(raw)
            message: Any = {"type": "frame", "seq": seq, "mode": mode, "records": records}
        else:
            message = json.loads(raw)
        assert message["seq"] == self.seq + 1, (message, self.seq)
        self.seq = message["seq"]
        if message["type"] == "order":
            self.orders.append(message)
        return message

    def until(self, kind: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """The next message of ``kind`` (with ``fields``); messages skipped are kept in order."""
        skipped = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                message = self.receive(timeout=max(0.01, deadline - time.monotonic()))
                if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                    return dict(message)
                skipped.append(message)
        finally:
            self.held = skipped + self.held

    def request(self, op: str, rid: str, **fields: Any) -> dict[str, Any]:
        self.send(op=op, id=rid, **fields)
        deadline = time.monotonic() + 10
        skipped = []
        try:
            while True:
                message = self.receive(timeout=max(0.01, deadline - time.monotonic()))
                if message.get("id") == rid and message["type"] != "frame":
                    return dict(message)
                skipped.append(message)
        finally:
            self.held = skipped + self.held

    def order_events(self, timeout: float) -> list[dict[str, Any]]:
        """Every ``order`` message until nothing arrives for ``timeout`` seconds."""
        events = []
        while True:
            try:
                message = self.receive(timeout=timeout)
            except TimeoutError:
                return events
            if message["type"] == "order":
                events.append(message)


@contextmanager
def session(
    server: Server, user: str = "trader", sock: socket.socket | None = None, **auth: Any
) -> Iterator[tuple[Raw, dict[str, Any]]]:
    with connect(server.ws_url, sock=sock, max_size=None, close_timeout=1) as ws:
        raw = Raw(ws)
        raw.send(op="auth", id="a", token=server.tokens[user], **auth)
        welcome = raw.receive()
        assert welcome["type"] == "welcome", welcome
        yield raw, welcome


def error_of(raw: Raw, rid: str | None = None) -> dict[str, Any]:
    message = raw.until("error", **({"id": rid} if rid else {}))
    assert set(message) >= {"code", "message", "seq", "id"}
    return message


def close_code(ws: ClientConnection, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006


# -- the flows ---------------------------------------------------------------------------------


def test_welcome_then_positions(server: Server) -> None:
    with session(server) as (raw, welcome):
        assert welcome["seq"] == 1
        assert welcome["id"] == "a"
        assert welcome["user"] == "trader"
        assert welcome["encoding"] == "json"
        assert welcome["resume"] is None
        assert welcome["market_data"] == "snapshot"
        assert welcome["limits"]["max_message_bytes"] == 4096
        positions = raw.receive()
        assert positions["type"] == "positions"
        assert isinstance(positions["positions"], list)
        pong = raw.request("ping", "p")
        assert pong["type"] == "pong"
        assert pong["time_ns"] > 0


def test_open_connections_are_a_gauge_on_the_http_metrics(server: Server) -> None:
    def connections() -> float:
        response = server.http("GET", "/metrics", "admin")
        assert response.status_code == 200, response.text
        (line,) = [
            line
            for line in response.text.splitlines()
            if line.startswith("hft_websocket_connections ")
        ]
        return float(line.split()[1])

    before = connections()
    with session(server), session(server, user="admin"):
        assert connections() == before + 2
    deadline = time.monotonic() + 5
    while connections() != before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert connections() == before


@pytest.mark.parametrize("mode", ["ltp", "quote", "full"])
def test_binary_frames_decode_from_the_document(server: Server, mode: str) -> None:
    keys = ["NSE:INFY", "NSE:RELIANCE", "NSE:HDFCBANK"]
    with session(server, encoding="binary") as (raw, _):
        reply = raw.request("subscribe", "s", instruments=keys, mode=mode)
        assert reply["type"] == "subscribed"
        names = {i["iid"]: i["instrument"] for i in reply["instruments"]}
        last_seq: dict[int, int] = {}
        frames = 0
        while frames < 10 or len(last_seq) < 3:
            frame = raw.until("frame")
            raw.held = [m for m in raw.held if m["type"] != "frame"]
            frames += 1
            for record in frame["records"]:
                assert record["iid"] in names
                assert record["seq"] > last_seq.get(record["iid"], 0)
                last_seq[record["iid"]] = record["seq"]
                assert record["last_price"] > 0
                assert record["timestamp_ns"] > 0
                if frame["mode"] == "full":
                    assert len(record["bids"]) <= 5
                    assert len(record["asks"]) <= 5
            # Never above the mode subscribed (below it while the broker catches up).
            assert RANK[frame["mode"]] <= RANK[mode]


def test_json_ticks(server: Server) -> None:
    with session(server) as (raw, _):
        raw.request("subscribe", "s", instruments=["NSE:TCS"], mode="full")
        ticks = raw.until("ticks")["ticks"]
        tick = ticks[0]
        assert tick["instrument"] == "NSE:TCS"
        Decimal(tick["last_price"])
        assert {"iid", "seq", "mode", "timestamp_ns"} <= set(tick)


def resting_price(raw: Raw, key: str) -> str:
    raw.request("subscribe", "px", instruments=[key], mode="ltp")
    last = Decimal(raw.until("ticks")["ticks"][0]["last_price"])
    raw.request("unsubscribe", "upx", instruments=[key])
    return str((last * Decimal("0.95")).quantize(Decimal("0.1"), rounding=ROUND_DOWN))


def wait_status(raw: Raw, order_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = raw.receive()
        order = message.get("order", {})
        if message["type"] == "order" and (order["order_id"], order["status"]) == (
            order_id,
            status,
        ):
            return
    raise AssertionError(f"order {order_id} never became {status}")


def wait_open(raw: Raw, order_id: str) -> None:
    wait_status(raw, order_id, "OPEN")


def test_orders_fill_modify_and_cancel(server: Server) -> None:
    with session(server) as (raw, _):
        ack = raw.request(
            "submit",
            "o1",
            order={"account": ACCOUNT, "instrument": "NSE:ITC", "side": "BUY", "quantity": 1,
                   "order_type": "MARKET"},
        )  # fmt: skip
        assert ack["type"] == "ack"
        assert ack["op"] == "submit"
        order_id = ack["orders"][0]["order_id"]
        wait_status(raw, order_id, "FILLED")
        raw.until("position")

        price = resting_price(raw, "NSE:ITC")
        ack = raw.request(
            "submit",
            "o2",
            order={"account": ACCOUNT, "instrument": "NSE:ITC", "side": "BUY", "quantity": 1,
                   "price": price, "client_order_id": "foreign-1"},
        )  # fmt: skip
        order_id = ack["orders"][0]["order_id"]
        wait_open(raw, order_id)
        modified = raw.request("modify", "m", order_id=order_id, quantity=2)
        assert modified["type"] == "ack", modified
        assert modified["orders"][0]["quantity"] == 2
        cancelled = raw.request("cancel", "c", order_id=order_id)
        assert cancelled["type"] == "ack"
        again = raw.request(
            "submit",
            "o3",
            order={"account": ACCOUNT, "instrument": "NSE:ITC", "side": "BUY", "quantity": 1,
                   "price": price, "client_order_id": "foreign-1"},
        )  # fmt: skip
        assert again["type"] in ("ack", "error")  # the same id: never a second order
        if again["type"] == "ack":
            assert again["orders"][0]["order_id"] == order_id


def test_resume_replays_the_missed_order_events(server: Server) -> None:
    with session(server) as (raw, welcome):
        after = welcome["order_seq"]
    # Orders placed while no connection listens.
    with session(server) as (raw, _):
        price = resting_price(raw, "NSE:SBIN")
        ids = []
        for n in range(3):
            ack = raw.request(
                "submit",
                f"o{n}",
                order={"account": ACCOUNT, "instrument": "NSE:SBIN", "side": "BUY",
                       "quantity": 1, "price": price},
            )  # fmt: skip
            ids.append(ack["orders"][0]["order_id"])
            wait_open(raw, ids[-1])
        raw.order_events(timeout=0.3)
        live = [e for e in raw.orders if e["order_seq"] > after]
    with session(server, resume_after=after) as (raw, welcome):
        assert welcome["resume"]["after"] == after
        replayed = [raw.receive() for _ in range(welcome["resume"]["replayed"])]
        assert all(m["type"] == "order" for m in replayed)
        # In journal order, once each, and every event the live connection saw, unchanged.
        seqs = [m["order_seq"] for m in replayed]
        assert seqs == sorted(set(seqs))
        assert seqs[0] > after
        by_seq = {m["order_seq"]: {k: v for k, v in m.items() if k != "seq"} for m in replayed}
        assert len(live) >= 6
        for event in live:
            assert by_seq[event["order_seq"]] == {k: v for k, v in event.items() if k != "seq"}
        assert {m["order"]["order_id"] for m in replayed} >= set(ids)
        assert raw.receive()["type"] == "positions"
        for order_id in ids:
            raw.request("cancel", f"c-{order_id}", order_id=order_id)


# -- errors --------------------------------------------------------------------------------------


def test_bad_tokens_are_refused_and_closed(server: Server) -> None:
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"op": "auth", "id": "a", "token": "not-a-token"}))
        error = json.loads(ws.recv(timeout=10))
        assert (error["type"], error["id"], error["code"]) == ("error", "a", "invalid_token")
        assert close_code(ws) == 4003
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"op": "auth", "token": "hft_bogus_key"}))
        assert json.loads(ws.recv(timeout=10))["code"] == "invalid_api_key"
        assert close_code(ws) == 4003


def test_no_auth_in_time_is_closed(server: Server) -> None:
    with connect(server.ws_url) as ws:
        ws.send(json.dumps({"op": "ping", "id": "p"}))
        error = json.loads(ws.recv(timeout=10))
        assert (error["id"], error["code"]) == ("p", "unauthenticated")
        assert close_code(ws) == 4001  # the test server's auth_timeout_s is 1


def test_malformed_unknown_and_oversized_messages(server: Server) -> None:
    with session(server) as (raw, _):
        raw.ws.send("{not json")
        assert error_of(raw)["code"] == "bad_json"
        raw.ws.send("[1, 2]")
        assert error_of(raw)["code"] == "bad_json"
        raw.send(op="fly", id="f")
        assert error_of(raw, "f")["code"] == "unknown_op"
        raw.send(op="subscribe", id="s", instruments="NSE:INFY")
        assert error_of(raw, "s")["code"] == "bad_message"
        raw.send(op="subscribe", id="s2", instruments=["NSE:NOPE"])
        error = error_of(raw, "s2")
        assert (error["code"], error["instruments"]) == ("unknown_instrument", ["NSE:NOPE"])
        raw.send(op="auth", id="a2", token="x")
        assert error_of(raw, "a2")["code"] == "already_authenticated"
        raw.ws.send(b"\x00\x01")
        assert error_of(raw)["code"] == "bad_message"
        raw.send(op="ping", id="big", pad="x" * 5000)  # over max_message_bytes (4096)
        assert error_of(raw)["code"] == "too_large"
        assert raw.request("ping", "still-open")["type"] == "pong"
        raw.send(op="ping", pad="x" * 20_000)  # over four times the limit
        assert close_code(raw.ws) == 1009


def test_other_users_orders_are_not_found(server: Server) -> None:
    with session(server) as (raw, _):
        price = resting_price(raw, "NSE:TATASTEEL")
        ack = raw.request(
            "submit",
            "o",
            order={"account": ACCOUNT, "instrument": "NSE:TATASTEEL", "side": "BUY",
                   "quantity": 1, "price": price},
        )  # fmt: skip
        order_id = ack["orders"][0]["order_id"]
        wait_open(raw, order_id)
        with session(server, "other") as (intruder, _):
            for op in ("cancel", "modify"):
                error = intruder.request(op, op, order_id=order_id, quantity=5)
                assert (error["type"], error["code"]) == ("error", "not_found")
            error = intruder.request("cancel", "x", order_id="no-such-order")
            assert error["code"] == "not_found"
            error = intruder.request(
                "submit",
                "s",
                order={"account": ACCOUNT, "instrument": "NSE:TATASTEEL", "side": "BUY",
                       "quantity": 1, "price": price},
            )  # fmt: skip
            assert error["code"] == "forbidden"
            assert intruder.order_events(timeout=0.3) == []  # never sees the trader's orders
        assert raw.request("cancel", "c", order_id=order_id)["type"] == "ack"


def test_request_rate_and_subscription_limits(server: Server) -> None:
    with session(server) as (raw, _):
        for n in range(130):  # burst 100 at 50/s
            raw.send(op="ping", id=f"p{n}")
        replies = [raw.until("pong") if False else raw.receive() for _ in range(130)]
        codes = [m.get("code") for m in replies if m["type"] == "error"]
        assert codes
        assert set(codes) == {"rate_limited"}
        limited = next(m for m in replies if m["type"] == "error")
        assert limited["retry_after_ms"] > 0
        time.sleep(2)
        raw.held.clear()
        keys = [f"NSE:{s}" for s in ("RELIANCE", "TCS", "HDFCBANK", "INFY", "ICICIBANK", "SBIN")]
        keys += [f"NSE:{s}" for s in ("BHARTIARTL", "ITC", "LT", "HINDUNILVR", "AXISBANK")]
        error = raw.request("subscribe", "many", instruments=keys)
        assert error["code"] == "too_many_subscriptions"  # the test server allows 10


def test_a_slow_client_is_conflated_while_a_fast_one_keeps_up(server: Server) -> None:
    keys = [f"NSE:{s}" for s in ("RELIANCE", "TCS", "HDFCBANK", "INFY", "ICICIBANK", "SBIN")]
    # A tiny receive window, set before connecting: the server soon cannot write to it.
    slow_sock = socket.socket()
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    address = urlsplit(server.ws_url)
    slow_sock.connect((address.hostname, address.port))
    with (
        session(server, encoding="binary") as (fast, _),
        session(server, sock=slow_sock, encoding="json") as (slow, _),
    ):
        fast.request("subscribe", "s", instruments=keys, mode="full")
        slow.request("subscribe", "s", instruments=keys, mode="full")
        fast_seqs: dict[int, list[int]] = {}
        stalled_until = time.monotonic() + 3
        while time.monotonic() < stalled_until:  # the slow client reads nothing meanwhile
            frame = fast.until("frame")
            fast.held = [m for m in fast.held if m["type"] != "frame"]
            for record in frame["records"]:
                fast_seqs.setdefault(record["iid"], []).append(record["seq"])
        slow_seqs: dict[str, list[int]] = {}
        read_until = time.monotonic() + 2
        while time.monotonic() < read_until:
            message = slow.receive()
            if message["type"] == "ticks":
                for tick in message["ticks"]:
                    slow_seqs.setdefault(tick["instrument"], []).append(tick["seq"])
    fast_ticks = sum(len(s) for s in fast_seqs.values())
    fast_skipped = sum(s[-1] - s[0] + 1 - len(s) for s in fast_seqs.values())
    assert fast_ticks > 100, fast_ticks
    assert fast_skipped <= fast_ticks // 10, (fast_skipped, fast_ticks)
    slow_jumps = [b - a for s in slow_seqs.values() for a, b in itertools.pairwise(s)]
    assert max(slow_jumps) > 20, "the slow client got the latest ticks, not every one"


def test_invalid_orders_get_stable_codes_and_change_nothing(server: Server) -> None:
    base = {"account": ACCOUNT, "instrument": "NSE:INFY", "side": "BUY", "quantity": 1}
    cases = [
        ({**base, "price": "1500.03"}, "off_tick"),  # INFY's tick is 0.10
        (base, "missing_price"),  # a limit order without a price
        ({**base, "price": 1500}, "bad_message"),  # prices are strings, never JSON numbers
        ({**base, "price": "1500.00", "quantity": 0}, "bad_message"),
        ({**base, "price": "1500.00", "side": "HOLD"}, "bad_message"),
        ({**base, "price": "1500.00", "account": "nope"}, "not_found"),
        ({**base, "price": "1500.00", "instrument": "NSE:NOPE"}, "not_found"),
    ]
    with session(server) as (raw, _):
        for n, (order, code) in enumerate(cases):
            reply = raw.request("submit", f"bad{n}", order=order)
            assert (reply["type"], reply["code"]) == ("error", code), (order, reply)
        assert raw.order_events(timeout=0.3) == []
