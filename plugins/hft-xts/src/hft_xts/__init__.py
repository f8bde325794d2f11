"""hft-xts: the Symphony XTS broker (Interactive and Market Data APIs, Pro and dealer logins).

Public surface: :class:`XtsBroker`, :class:`XtsConfig`, :class:`XtsNormaliser` and the pure
decoders :func:`parse_json_message` (a full-mode 15xx JSON payload) and
:func:`parse_partial_message` (a partial-mode text message); the plugin README shows their use.
"""

from hft_xts.broker import XtsBroker
from hft_xts.config import XtsConfig
from hft_xts.normaliser import XtsNormaliser
from hft_xts.parsing.marketdata import Candle, parse_json_message, parse_partial_message
from hft_xts.parsing.orders import Balance

__all__ = [
    "Balance",
    "Candle",
    "XtsBroker",
    "XtsConfig",
    "XtsNormaliser",
    "parse_json_message",
    "parse_partial_message",
]
