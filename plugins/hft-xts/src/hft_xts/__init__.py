"""hft-xts: the Symphony XTS broker (Interactive and Market Data APIs, Pro and dealer logins).

Public surface: :class:`XtsBroker`, :class:`XtsConfig`, :class:`XtsNormaliser` and the pure
decoders :func:`parse_json_message` (a full-mode 15xx JSON payload), :func:`parse_partial_message`
(a partial-mode text message) and :func:`decode_bar` (a parsed 1505 candle as an
:class:`hft.model.Bar`); the plugin README shows their use.
"""

from hft_xts.broker import XtsBroker
from hft_xts.config import XtsConfig
from hft_xts.normaliser import XtsNormaliser
from hft_xts.parsing.marketdata import (
    Candle,
    decode_bar,
    parse_json_message,
    parse_partial_message,
)
from hft_xts.parsing.orders import Balance

__all__ = [
    "Balance",
    "Candle",
    "XtsBroker",
    "XtsConfig",
    "XtsNormaliser",
    "decode_bar",
    "parse_json_message",
    "parse_partial_message",
]
