"""Fails on import, as a plugin with a missing dependency would."""

raise RuntimeError("hft-broken fails on import on purpose")
