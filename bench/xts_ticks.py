"""XTS market-data normalising: socket.io event frames → hft ticks, per second.

Four kinds of message, each 2,000 distinct frames over 200 instruments of the NSE cash and F&O
segments, prices and quantities varying from frame to frame: 1501 touchline and 1502 market
depth in full-mode JSON (``42["1501-json-full","{...}"]``, the payload a JSON string inside the
frame, as XTS sends it), and the same two codes in the compact partial-mode text. The normaliser
is built through the plugin's ``xts.marketdata`` normaliser hook, as a host would build it; the
partial cache is seeded from full snapshots first. For scale, the last column gives what the
stdlib's ``json.loads`` alone manages on the same frames (twice: the frame, then its payload).
Rates are the median of several short rounds in CPU time.

Run: ``python bench/xts_ticks.py`` (``nox -s bench`` runs it too).
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._report import git_revision, machine, write_section
from hft._plugins import PluginHost
from hft.model import Instrument, InstrumentType

FRAMES = 2000
INSTRUMENTS = 200
ROUNDS = 9
ROUND_S = 0.15
_EPOCH_1980_NOW = 1_447_000_000


def instruments() -> list[Instrument]:
    found = []
    for i in range(INSTRUMENTS):
        fo = i % 2 == 1
        found.append(
            Instrument(
                exchange="NFO" if fo else "NSE",
                symbol=f"SYM{i}",
                token=10_000 + i,
                segment="NSEFO" if fo else "NSECM",
                instrument_type=InstrumentType.FUTURE if fo else InstrumentType.EQUITY,
                lot_size=50 if fo else 1,
            )
        )
    return found


def _touchline(rng: random.Random, price: float) -> dict[str, object]:
    return {
        "BidInfo": {
            "Size": rng.randrange(1, 500),
            "Price": round(price - 0.05, 2),
            "TotalOrders": 3,
        },
        "AskInfo": {
            "Size": rng.randrange(1, 500),
            "Price": round(price + 0.05, 2),
            "TotalOrders": 2,
        },
        "LastTradedPrice": price,
        "LastTradedQunatity": rng.randrange(1, 100),
        "TotalBuyQuantity": rng.randrange(10**4, 10**6),
        "TotalSellQuantity": rng.randrange(10**4, 10**6),
        "TotalTradedQuantity": rng.randrange(10**5, 10**7),
        "AverageTradedPrice": round(price - 1.1, 2),
        "LastTradedTime": _EPOCH_1980_NOW,
        "LastUpdateTime": _EPOCH_1980_NOW + rng.randrange(0, 60),
        "PercentChange": 0.5,
        "Open": round(price - 3, 2),
        "High": round(price + 7, 2),
        "Low": round(price - 9, 2),
        "Close": round(price - 2, 2),
        "TotalValueTraded": None,
    }


def full_frames(rng: random.Random, code: int, listed: Sequence[Instrument]) -> list[str]:
    frames = []
    for n in range(FRAMES):
        instrument = listed[n % len(listed)]
        price = rng.randrange(10_000, 2_500_000) * 5 / 100
        message: dict[str, object] = {
            "MessageCode": code,
            "MessageVersion": 4,
            "ApplicationType": 0,
            "TokenID": 0,
            "ExchangeSegment": 2 if instrument.segment == "NSEFO" else 1,
            "ExchangeInstrumentID": instrument.token,
            "ExchangeTimeStamp": _EPOCH_1980_NOW,
            "BookType": 1,
            "XMarketType": 1,
            "SequenceNumber": 1_736_142_367_000_000 + n,
            "Touchline": _touchline(rng, price),
        }
        if code == 1502:
            message["Bids"] = [
                {
                    "Size": rng.randrange(1, 999),
                    "Price": round(price - 0.05 * (k + 1), 2),
                    "TotalOrders": k + 1,
                    "BuyBackMarketMaker": 0,
                }
                for k in range(5)
            ]
            message["Asks"] = [
                {
                    "Size": rng.randrange(1, 999),
                    "Price": round(price + 0.05 * (k + 1), 2),
                    "TotalOrders": k + 1,
                    "BuyBackMarketMaker": 0,
                }
                for k in range(5)
            ]
        frames.append("42" + json.dumps([f"{code}-json-full", json.dumps(message)]))
    return frames


def partial_frames(rng: random.Random, code: int, listed: Sequence[Instrument]) -> list[str]:
    frames = []
    for n in range(FRAMES):
        instrument = listed[n % len(listed)]
        segment = 2 if instrument.segment == "NSEFO" else 1
        price = rng.randrange(10_000, 2_500_000) * 5 / 100
        pairs = [
            f"t:{segment}_{instrument.token}",
            f"ltp:{price:.2f}",
            f"ltq:{rng.randrange(1, 100)}",
            f"v:{rng.randrange(10**5, 10**7)}",
            f"lut:{_EPOCH_1980_NOW + n}",
        ]
        levels = 5 if code == 1502 else 1
        for key, sign in (("bi", -1), ("ai", 1)):
            groups = [
                f"{k}|{rng.randrange(1, 999)}|{price + sign * 0.05 * (k + 1):.2f}|{k + 1}"
                for k in range(levels)
            ]
            pairs.append(f"{key}:{'|'.join(groups)}")
        frames.append("42" + json.dumps([f"{code}-json-partial", ",".join(pairs)]))
    return frames


def rate(fn: Callable[[], object]) -> float:
    """Frames per CPU second: the median of ROUNDS rounds of about ROUND_S each."""
    rates = []
    for _ in range(ROUNDS):
        gc.collect()
        done, start = 0, time.process_time()
        while (elapsed := time.process_time() - start) < ROUND_S:
            fn()
            done += FRAMES
        rates.append(done / elapsed)
    return statistics.median(rates)


def main() -> None:
    rng = random.Random(7)
    listed = instruments()
    host = PluginHost.load(only=["xts"])
    factory = host.normalisers.get("xts.marketdata").factory
    normaliser = factory(listed)
    cases = {
        "1501 touchline, full JSON": full_frames(rng, 1501, listed),
        "1502 depth, full JSON": full_frames(rng, 1502, listed),
        "1501 touchline, partial text": partial_frames(rng, 1501, listed),
        "1502 depth, partial text": partial_frames(rng, 1502, listed),
    }
    # Seed the partial cache as a subscription's listQuotes would, and check every frame decodes.
    for frame in cases["1502 depth, full JSON"][: len(listed)]:
        normaliser.normalise(frame)
    for name, frames in cases.items():
        target = factory(listed) if "full" in name else normaliser
        assert all(len(target.normalise(f)) == 1 for f in frames), name

    rows = []
    for name, frames in cases.items():

        def decode(frames: list[str] = frames, fresh: bool = "full" in name) -> None:
            # A fresh normaliser per pass for JSON, so the sequence-number dedupe never skips.
            target = factory(listed) if fresh else normaliser
            for frame in frames:
                target.normalise(frame)

        def stdlib(frames: list[str] = frames, twice: bool = "full" in name) -> None:
            for frame in frames:
                event = json.loads(frame[2:])
                if twice:
                    json.loads(event[1])

        ours, baseline = rate(decode), rate(stdlib)
        rows.append(f"| {name} | {ours:,.0f} | {1e6 / ours:.1f} | {baseline:,.0f} |")
        print(f"{name}: {ours:,.0f} messages/s (json.loads alone {baseline:,.0f}/s)")

    body = f"""`python bench/xts_ticks.py` (also in `nox -s bench`) on {machine()}, revision
{git_revision()}. {FRAMES:,} distinct socket.io frames per kind over {INSTRUMENTS} NSE cash and
F&O instruments, normalised to hft ticks by the `xts.marketdata` normaliser (built through the
plugin hook): JSON parsed with exact decimals, prices to integer units, 1980-epoch IST times to
UTC, partial messages merged into the per-instrument snapshot. Median of {ROUNDS} rounds, CPU
time. The last column is the stdlib `json.loads` alone on the same frames, for scale.

| message | messages/s | µs/message | json.loads alone /s |
|---|---:|---:|---:|
""" + "\n".join(rows)
    write_section("XTS market-data normalising (hft-xts)", body)


if __name__ == "__main__":
    main()
