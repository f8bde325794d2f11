"""hft-ext: the price-time matching engine of hft.

The engine lives in one hot module, compiled with mypyc when the distribution was built with a C
compiler; the same source runs interpreted otherwise. :data:`COMPILED` says which is running, and
:func:`load_engine` gives either one on request (the interpreted engine is loaded from the
shipped source under another module name, so both can run in one process).

Simulated exchanges should not import this package: they ask the host for the engine registered
as ``ext`` (see :mod:`hft.hookspecs`). Tests and benchmarks use it directly.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Final, cast

from hft_ext import _engine
from hft_ext._engine import (
    ACCEPTED,
    BUY,
    CANCEL_REQUESTED,
    CANCELLED,
    DAY,
    DUPLICATE_ORDER_ID,
    EVENT_KIND_NAMES,
    EXPIRED,
    FILL,
    FOK,
    FOK_UNFILLABLE,
    GTC,
    INVALID_ORDER_TYPE,
    INVALID_POST_ONLY,
    INVALID_QUANTITY,
    INVALID_SIDE,
    INVALID_TIME_IN_FORCE,
    IOC,
    IOC_REMAINDER,
    LIMIT,
    MARKET,
    MARKET_REMAINDER,
    MODIFIED,
    NO_REASON,
    POST_ONLY_WOULD_CROSS,
    REASON_NAMES,
    REJECTED,
    SELF_TRADE,
    SELL,
    STOP,
    STOP_LIMIT,
    STOP_NOT_MODIFIABLE,
    STP_ALLOW,
    STP_CANCEL_INCOMING,
    STP_CANCEL_RESTING,
    TRIGGERED,
    UNKNOWN_ORDER,
    Engine,
    Event,
    OrderInfo,
)

__all__ = [
    "ACCEPTED",
    "BUY",
    "CANCELLED",
    "CANCEL_REQUESTED",
    "COMPILED",
    "DAY",
    "DUPLICATE_ORDER_ID",
    "EVENT_KIND_NAMES",
    "EXPIRED",
    "FILL",
    "FOK",
    "FOK_UNFILLABLE",
    "GTC",
    "INVALID_ORDER_TYPE",
    "INVALID_POST_ONLY",
    "INVALID_QUANTITY",
    "INVALID_SIDE",
    "INVALID_TIME_IN_FORCE",
    "IOC",
    "IOC_REMAINDER",
    "LIMIT",
    "MARKET",
    "MARKET_REMAINDER",
    "MODIFIED",
    "NO_REASON",
    "POST_ONLY_WOULD_CROSS",
    "REASON_NAMES",
    "REJECTED",
    "SELF_TRADE",
    "SELL",
    "STOP",
    "STOP_LIMIT",
    "STOP_NOT_MODIFIABLE",
    "STP_ALLOW",
    "STP_CANCEL_INCOMING",
    "STP_CANCEL_RESTING",
    "TRIGGERED",
    "UNKNOWN_ORDER",
    "Engine",
    "Event",
    "OrderInfo",
    "describe",
    "load_engine",
]

#: True when the engine module running is the mypyc-compiled extension.
COMPILED: Final = not (_engine.__file__ or "").endswith(".py")

_INTERPRETED_NAME: Final = "hft_ext._engine_interpreted"


def describe() -> str:
    """How the engine runs, in the words ``hft version`` and ``hft plugins list`` show."""
    return "compiled (mypyc)" if COMPILED else "interpreted"


def load_engine(interpreted: bool = False) -> type[Engine]:
    """The engine class: the installed build's, or the interpreted one from the shipped source.

    With a pure build installed both are the same class.
    """
    if not interpreted or not COMPILED:
        return Engine
    return cast("type[Engine]", _interpreted_module().Engine)


def _interpreted_module() -> ModuleType:
    module = sys.modules.get(_INTERPRETED_NAME)
    if module is not None:
        return module
    source = Path(_engine.__file__ or "").with_name("_engine.py")
    if not source.is_file():
        raise ImportError(f"the engine's source is not installed beside the extension: {source}")
    spec = importlib.util.spec_from_file_location(_INTERPRETED_NAME, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the engine's source from {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_INTERPRETED_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_INTERPRETED_NAME]
        raise
    return module
