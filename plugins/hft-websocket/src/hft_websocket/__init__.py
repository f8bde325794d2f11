"""hft-websocket."""
