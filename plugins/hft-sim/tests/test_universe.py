"""The universes and the clock's handling of market hours, speed and lag."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog.testing
from hft_sim.universe import demo_universe, equity_tick_size, load_instruments, synthetic_universe

from hft import BrokerRejected, ConfigError
from hft.model import InstrumentType, OrderRequest, Side

from .conftest import INSTANT, make_sim

HEADER = (
    "exchange,symbol,instrument_type,price,tick_size,lot_size,freeze_quantity,"
    "price_band_pct,volatility_annual_pct\n"
)


def test_demo_universe() -> None:
    listings = demo_universe()
    assert len(listings) == 20
    assert len({x.key for x in listings}) == len({x.instrument.token for x in listings}) == 20
    kinds = [x.instrument.instrument_type for x in listings]
    assert kinds.count(InstrumentType.EQUITY) == 16
    assert kinds.count(InstrumentType.FUTURE) == 4
    for listing in listings:
        instrument = listing.instrument
        if instrument.instrument_type is InstrumentType.EQUITY:
            assert instrument.tick_size == equity_tick_size(listing.price)
        else:
            assert instrument.lot_size > 1
            assert instrument.freeze_quantity


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        (750, 1),
        (24_999, 1),
        (25_000, 5),
        (99_999, 5),
        (100_000, 10),
        (500_000, 50),
        (1_000_000, 100),
        (2_000_000, 500),
        (13_000_000, 500),
    ],
)
def test_equity_tick_schedule(price: int, tick: int) -> None:
    assert equity_tick_size(price) == tick


def test_synthetic_universe_is_seeded() -> None:
    first, again, other = (
        synthetic_universe(300, 1),
        synthetic_universe(300, 1),
        synthetic_universe(300, 2),
    )
    assert first == again != other
    assert len({x.key for x in first}) == 300
    for listing in first:
        assert 5_000 <= listing.price <= 500_000
        assert listing.instrument.tick_size == equity_tick_size(listing.price) or (
            listing.price % listing.instrument.tick_size == 0
        )


@pytest.mark.anyio
async def test_an_instruments_file_replaces_the_universe(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text(
        HEADER + "NSE,ACME,EQ,412.35,,1,,20,30\n" + "NFO,ACME-I,FUT,413.00,0.05,500,10000,10,25\n",
        encoding="utf-8",
    )
    broker = make_sim(data_dir=tmp_path, instruments_file="u.csv", latency=INSTANT)
    await broker.connect()
    try:
        assert [i.key for i in await broker.instruments()] == ["NSE:ACME", "NFO:ACME-I"]
        future = broker.book("NFO:ACME-I").instrument
        assert (future.lot_size, future.freeze_quantity, future.tick_size) == (500, 10000, 5)
        assert broker.book("NSE:ACME").instrument.tick_size == 5
        broker.step()
        assert broker.book("NSE:ACME").best_bid() is not None
    finally:
        await broker.close()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("", "lists no instruments"),
        ("NSE,ACME,EQ,412.35,,1,,20\n", ":2: expected 9 columns"),
        ("NSE,ACME,XX,412.35,,1,,20,30\n", ":2: 'XX' is not a valid InstrumentType"),
        ("NSE,ACME,EQ,412.33,0.05,1,,20,30\n", ":2: .*not a multiple of the tick size"),
        ("NSE,ACME,EQ,412.35,,1,,20,30\nNSE,ACME,EQ,412.35,,1,,20,30\n", ":3: NSE:ACME is listed"),
        ("NSE,NIFTY,INDEX,100.00,,1,,20,30\n", ":2: .*equities and futures"),
    ],
)
def test_bad_instruments_files(tmp_path: Path, body: str, error: str) -> None:
    path = tmp_path / "u.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    with pytest.raises(ConfigError, match=error):
        load_instruments(path)
    path.write_text("symbol,price\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="first row"):
        load_instruments(path)


@pytest.mark.anyio
async def test_market_hours_close_settle_and_reopen() -> None:
    broker = make_sim(
        latency=INSTANT,
        step_ms=60_000,
        start_at="2025-01-01T15:28:00+05:30",
        rules={"market_hours": True},
    )
    await broker.connect()
    try:
        infy = broker.book("NSE:INFY")
        request = OrderRequest("default", infy.key, Side.BUY, 1, price=140_000)
        await broker.place_order("default", infy.instrument, request)
        with structlog.testing.capture_logs() as logs:
            broker.step(2)  # 15:30: the close
        assert [e["event"] for e in logs] == ["sim.day_reset"]
        with pytest.raises(BrokerRejected) as info:
            await broker.place_order("default", infy.instrument, request)
        assert info.value.code == "market_closed"
        assert await broker.orders("default") == []  # the DAY order expired at the close
        volume = infy.market.volume
        broker.step(60 * 17)  # through the night: nothing trades
        assert infy.market.volume == volume
        broker.step(46)  # 09:16 the next day
        assert broker.now.isoformat() == "2025-01-02T03:46:00+00:00"
        await broker.place_order("default", infy.instrument, request)
        broker.step(5)
        assert infy.market.volume > volume
    finally:
        await broker.close()


@pytest.mark.anyio
async def test_speed_and_a_lagging_reader() -> None:
    broker = make_sim(clock="realtime", speed=100, step_ms=10, persist=False)
    await broker.connect()
    try:
        start = broker.now
        # Block the event loop on purpose: nothing reads events, 5 s of simulated time pass.
        time.sleep(0.05)  # noqa: ASYNC251
        with structlog.testing.capture_logs() as logs:
            broker.trade("NSE:INFY", broker.book("NSE:INFY").market.last)
        elapsed = (broker.now - start).total_seconds()
        assert elapsed >= 5
        (lag,) = [e for e in logs if e["event"] == "sim.lagging"]
        assert lag["skipped_steps"] >= 250  # only the last 2 s were stepped
    finally:
        await broker.close()
