"""hft-ext's engine is the MatchingEngine of hft.contracts, codes included."""

from __future__ import annotations

import hft_ext
from hft.contracts import EngineCodes, EngineEvent, MatchingEngine


def test_codes_match_the_contract() -> None:
    names = [name for name in vars(EngineCodes) if name.isupper()]
    assert len(names) == 35
    for name in names:
        assert getattr(hft_ext, name) == getattr(EngineCodes, name), name
    assert len(hft_ext.REASON_NAMES) == EngineCodes.EXPIRED + 1
    assert len(hft_ext.EVENT_KIND_NAMES) == EngineCodes.MODIFIED + 1


def test_engine_has_every_member_of_the_protocol(engine_class: type[hft_ext.Engine]) -> None:
    engine = engine_class()
    for protocol, instance in ((MatchingEngine, engine), (EngineEvent, hft_ext.Event())):
        members = [n for n in vars(protocol) if not n.startswith("_")]
        assert members
        for name in members:
            assert hasattr(instance, name), f"{type(instance).__name__} lacks {name}"


def test_codes_are_accepted_as_arguments(engine_class: type[hft_ext.Engine]) -> None:
    engine = engine_class(EngineCodes.STP_CANCEL_RESTING)
    engine.submit(1, 1, EngineCodes.SELL, 100, 1, EngineCodes.LIMIT, EngineCodes.DAY)
    engine.submit(2, 2, EngineCodes.BUY, 0, 1, EngineCodes.MARKET, EngineCodes.IOC)
    assert [e.kind for e in engine.take_events()] == [EngineCodes.ACCEPTED, EngineCodes.FILL]
