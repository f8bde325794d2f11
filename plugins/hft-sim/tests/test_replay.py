"""Replay of a recorded tick file (``timestamp,price,qty``) at 1× or faster."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hft_sim.broker import SimBroker

from hft import ConfigError
from hft.model import StreamMode, Tick

from .conftest import make_sim

INFY = "NSE:INFY"
TICKS = """timestamp,price,qty
2024-07-01T09:15:00.000+05:30,1650.00,10
2024-07-01T09:15:01.000+05:30,1651.20,5
2024-07-01T09:15:02.500+05:30,1649.50,7
2024-07-01T09:15:03.000+05:30,1652.00,3
"""


def write(tmp_path: Path, text: str = TICKS) -> Path:
    path = tmp_path / "infy.csv"
    path.write_text(text, encoding="utf-8")
    return path


async def ltp_by_step(broker: SimBroker, steps: int) -> list[int]:
    book = broker.book(INFY)
    seen = []
    for _ in range(steps):
        broker.step()
        seen.append(book.market.last)
    return seen


@pytest.mark.anyio
@pytest.mark.parametrize("speed", [1.0, 2.0])
async def test_the_last_price_follows_the_file_at_its_pace(tmp_path: Path, speed: float) -> None:
    write(tmp_path)
    broker = make_sim(
        data_dir=tmp_path,
        step_ms=100,
        fair_value={"replay": {INFY: "infy.csv"}, "replay_speed": speed, "replay_loop": False},
    )
    await broker.connect()
    try:
        book = broker.book(INFY)
        # The file's first price is the replay's previous close; the band is set around it.
        assert book.market.previous_close == 165_000
        assert (book.band_low, book.band_high) == (132_000, 198_000)
        seen = await ltp_by_step(broker, 40)
    finally:
        await broker.close()
    # Row offsets 0, 1.0, 2.5 and 3.0 s, at ``speed``: the step at which each shows.
    expected = {0: 165_000, 10: 165_120, 25: 164_950, 30: 165_200}
    for offset_step, price in expected.items():
        step = max(0, math.ceil(offset_step / speed) - 1)
        assert seen[step] == price, (step, seen)
        if step:
            assert seen[step - 1] != price
    assert seen[-1] == 165_200  # no loop: the last row's price stays
    assert book.market.volume == 10 + 5 + 7 + 3  # the replay's trades, and only those


@pytest.mark.anyio
async def test_a_replay_loops(tmp_path: Path) -> None:
    write(tmp_path)
    broker = make_sim(
        data_dir=tmp_path, step_ms=100, fair_value={"replay": {INFY: str(write(tmp_path))}}
    )
    await broker.connect()
    try:
        await broker.subscribe([broker.book(INFY).instrument], StreamMode.LTP)
        seen = await ltp_by_step(broker, 80)
        ticks = [e.last_price for e in broker.take_events() if isinstance(e, Tick)]
    finally:
        await broker.close()
    prices = [165_000, 165_120, 164_950, 165_200]
    changes = [p for i, p in enumerate(seen) if i == 0 or p != seen[i - 1]]
    assert changes[:8] == prices + prices
    assert set(ticks) == set(prices)


@pytest.mark.anyio
async def test_orders_trade_with_the_replay(tmp_path: Path) -> None:
    from hft.model import OrderRequest, OrderStatus, Side

    from .conftest import INSTANT

    write(tmp_path)
    broker = make_sim(
        data_dir=tmp_path,
        step_ms=100,
        latency=INSTANT,
        fair_value={"replay": {INFY: "infy.csv"}, "replay_loop": False},
    )
    await broker.connect()
    try:
        book = broker.book(INFY)
        # A bid below the market rests, until the replay's third row moves the market
        # through it.
        request = OrderRequest("default", INFY, Side.BUY, 5, price=164_990)
        await ltp_by_step(broker, 2)
        order_id = await broker.place_order("default", book.instrument, request)
        assert broker.order(order_id).status is OrderStatus.OPEN
        await ltp_by_step(broker, 20)
        assert broker.order(order_id).status is OrderStatus.OPEN
        await ltp_by_step(broker, 10)
        assert broker.order(order_id).status is OrderStatus.FILLED
        assert broker.order(order_id).filled_value == 5 * 164_990
    finally:
        await broker.close()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("time,price,qty\n1,1.00,1\n", "first row must be timestamp,price,qty"),
        ("timestamp,price,qty\n", "has no rows"),
        ("timestamp,price,qty\n0,1650.05,1\n", ":2: price 1650.05 is not on the tick grid"),
        ("timestamp,price,qty\n0,1650.00,0\n", ":2: qty 0"),
        ("timestamp,price,qty\n5,1650.00,1\n4,1650.00,1\n", ":3: timestamp goes backwards"),
        ("timestamp,price,qty\nsoon,1650.00,1\n", ":2:"),
    ],
)
def test_bad_files_are_refused_with_the_line(tmp_path: Path, text: str, error: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError, match=error):
        make_sim(data_dir=tmp_path, fair_value={"replay": {INFY: "infy.csv"}})


def test_replay_of_an_unlisted_instrument_is_refused(tmp_path: Path) -> None:
    write(tmp_path)
    with pytest.raises(ConfigError, match="does not list NSE:NOPE"):
        make_sim(data_dir=tmp_path, fair_value={"replay": {"NSE:NOPE": "infy.csv"}})


def test_epoch_seconds_are_accepted(tmp_path: Path) -> None:
    from hft_sim.agents import read_ticks

    write(tmp_path, "timestamp,price,qty\n1719805500,1650.00,1\n1719805500.25,1650.10,2\n")
    rows = read_ticks(tmp_path / "infy.csv", tick_size=10, lot_size=1)
    assert [(r.offset_ns, r.price, r.quantity) for r in rows] == [
        (0, 165_000, 1),
        (250_000_000, 165_010, 2),
    ]
