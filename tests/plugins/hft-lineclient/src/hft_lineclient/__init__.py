"""A test-only client transport for hft: newline-delimited JSON over loopback TCP."""
