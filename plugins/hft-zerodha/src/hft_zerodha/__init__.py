"""hft-zerodha: the Zerodha Kite Connect v3 broker for hft.

The public surface is :func:`decode_ticks` (one KiteTicker binary message → normalised ticks),
for tools and benchmarks; the broker itself is reached through the host (``plugin = "zerodha"``).
"""

from __future__ import annotations

from hft_zerodha.parsing.ticks import decode_ticks

__all__ = ["decode_ticks"]
