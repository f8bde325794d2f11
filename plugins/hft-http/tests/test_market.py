"""Instruments, quotes and the per-user market watch."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.anyio


async def test_instrument_search_ranks_exact_then_prefix_then_name(harness: Any) -> None:
    found = (await harness.get("/api/v1/instruments", "viewer_live", params={"q": "nifty"})).json()
    assert [i["key"] for i in found] == ["NSE:NIFTY 50", "NFO:NIFTY25JANFUT"]
    exact = (await harness.get("/api/v1/instruments", "viewer_live", params={"q": "tcs"})).json()
    assert exact[0]["key"] == "NSE:TCS"
    by_name = await harness.get("/api/v1/instruments", "viewer_live", params={"q": "INFOSYS"})
    assert [i["key"] for i in by_name.json()] == ["NSE:INFY"]
    futures = await harness.get(
        "/api/v1/instruments", "viewer_live", params={"instrument_type": "FUT"}
    )
    assert [i["key"] for i in futures.json()] == ["NFO:NIFTY25JANFUT"]
    nse = await harness.get("/api/v1/instruments", "viewer_live", params={"exchange": "nse"})
    assert len(nse.json()) == 5
    limited = await harness.get("/api/v1/instruments", "viewer_live", params={"limit": 2})
    assert len(limited.json()) == 2
    none = await harness.get("/api/v1/instruments", "viewer_live", params={"broker": "other"})
    assert none.json() == []


async def test_get_an_instrument(harness: Any) -> None:
    future = (await harness.get("/api/v1/instruments/NFO:NIFTY25JANFUT", "viewer_sim")).json()
    assert future == {
        "key": "NFO:NIFTY25JANFUT",
        "broker": "venue",
        "exchange": "NFO",
        "symbol": "NIFTY25JANFUT",
        "token": 13238786,
        "segment": "NFO-FUT",
        "name": "NIFTY",
        "instrument_type": "FUT",
        "tick_size": "0.05",
        "lot_size": 75,
        "freeze_quantity": 1800,
        "price_scale": 2,
        "expiry": "2025-01-30",
        "strike": None,
    }
    index = await harness.get("/api/v1/instruments/NSE:NIFTY%2050", "viewer_sim")
    assert index.json()["instrument_type"] == "INDEX"
    missing = await harness.get("/api/v1/instruments/NSE:NOPE", "viewer_sim")
    assert missing.status_code == 404
    elsewhere = await harness.get(
        "/api/v1/instruments/NSE:INFY", "viewer_sim", params={"broker": "other"}
    )
    assert elsewhere.status_code == 404


async def test_quotes_come_from_the_hub_or_else_the_broker(harness: Any) -> None:
    snapshot = await harness.get(
        "/api/v1/quotes", "viewer_live", params={"instruments": ["NSE:INFY", "NSE:TCS"]}
    )
    assert snapshot.status_code == 200
    quotes = snapshot.json()["quotes"]
    assert quotes["NSE:INFY"]["last_price"] == "1500.00"
    assert quotes["NSE:INFY"]["seq"] == 0  # straight from the broker
    assert quotes["NSE:TCS"]["last_price"] == "4000.00"

    subscription = harness.services.hub.subscribe(["NSE:INFY"])
    harness.venue.set_last_price("NSE:INFY", 150105)
    await harness.settle()
    live = (
        await harness.get("/api/v1/quotes", "viewer_live", params={"instruments": "NSE:INFY"})
    ).json()["quotes"]["NSE:INFY"]
    assert live["last_price"] == "1501.05"
    assert live["seq"] >= 1
    assert all(isinstance(level["price"], str) for level in live["bids"] + live["asks"])
    subscription.close()

    unknown = await harness.get(
        "/api/v1/quotes", "viewer_live", params={"instruments": ["NSE:INFY", "NSE:NOPE"]}
    )
    assert unknown.status_code == 404
    empty = await harness.get("/api/v1/quotes", "viewer_live")
    assert empty.status_code == 400


async def test_the_market_watch_is_kept_per_user_in_storage(harness: Any) -> None:
    assert (await harness.get("/api/v1/watchlist", "trader_live")).json() == {
        "instruments": [],
        "quotes": {},
    }
    for key in ("NSE:TCS", "NSE:INFY", "NSE:TCS"):
        added = await harness.post("/api/v1/watchlist", "trader_live", {"instrument": key})
        assert added.status_code == 200
    watch = (await harness.get("/api/v1/watchlist", "trader_live")).json()
    assert watch["instruments"] == ["NSE:TCS", "NSE:INFY"]
    assert watch["quotes"]["NSE:TCS"]["last_price"] == "4000.00"
    stored = await harness.storage.get_state("watch", "trader_live")
    assert json.loads(stored)["instruments"] == ["NSE:TCS", "NSE:INFY"]
    # Another user's watch is their own.
    assert (await harness.get("/api/v1/watchlist", "trader_sim")).json()["instruments"] == []

    removed = await harness.delete("/api/v1/watchlist/NSE:TCS", "trader_live")
    assert removed.json()["instruments"] == ["NSE:INFY"]
    again = await harness.delete("/api/v1/watchlist/NSE:TCS", "trader_live")
    assert again.status_code == 404
    unknown = await harness.post("/api/v1/watchlist", "trader_live", {"instrument": "NSE:NOPE"})
    assert unknown.status_code == 404
    malformed = await harness.post("/api/v1/watchlist", "trader_live", {"instrument": "INFY"})
    assert malformed.status_code == 400


async def test_the_market_watch_survives_a_restart(harness_factory: Any) -> None:
    async with harness_factory() as first:
        await first.post("/api/v1/watchlist", "viewer_sim", {"instrument": "NSE:IDEA"})
        storage = first.storage
    async with harness_factory(storage=storage) as second:
        watch = (await second.get("/api/v1/watchlist", "viewer_sim")).json()
        assert watch["instruments"] == ["NSE:IDEA"]
        assert watch["quotes"]["NSE:IDEA"]["last_price"] == "7.50"


async def test_the_market_watch_has_a_size_limit(harness_factory: Any) -> None:
    async with harness_factory(max_watchlist=2) as harness:
        for key in ("NSE:TCS", "NSE:INFY"):
            await harness.post("/api/v1/watchlist", "viewer_live", {"instrument": key})
        full = await harness.post("/api/v1/watchlist", "viewer_live", {"instrument": "NSE:IDEA"})
        assert full.status_code == 409
        assert full.json()["error"]["code"] == "watchlist_full"
        present = await harness.post("/api/v1/watchlist", "viewer_live", {"instrument": "NSE:TCS"})
        assert present.status_code == 200
